"""A hostile HTTP receiver on loopback: it answers one byte at a time, slowly, for as long as it is let.

`mode="headers"` trickles the status line and headers; `mode="body"` sends the headers at once and
trickles a body announced as 100,000 bytes. Every byte comes sooner than any per-read timeout, so
only an overall deadline ends the request.
"""

from __future__ import annotations

import socket
import threading


def read_request_head(conn: socket.socket) -> bytes | None:
    """What the client sent up to the end of its request head (the body's first bytes may follow it),
    or None when it closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    return data


def read_request(conn: socket.socket) -> bytes | None:
    """One whole request (head and a Content-Length body), or None when the client closed first."""
    data = read_request_head(conn)
    if data is None:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return data


class TrickleServer:
    def __init__(self, mode: str = "headers", every: float = 0.2) -> None:
        self.mode = mode
        self.every = every
        self.requests = 0
        self.ended = 0  # requests whose connection the client gave up
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/hook"
        self._threads: list[threading.Thread] = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            if read_request(conn) is None:
                return
            with self._lock:
                self.requests += 1
            if self.mode == "headers":
                answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Slow: " + b"x" * 10_000 + b"\r\n\r\nok"
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                answer = b"y" * 100_000
            for i in range(len(answer)):
                if self._stop.wait(self.every):
                    return
                try:
                    conn.sendall(answer[i : i + 1])
                except OSError:
                    with self._lock:
                        self.ended += 1
                    return

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for thread in self._threads:
            thread.join(5)
