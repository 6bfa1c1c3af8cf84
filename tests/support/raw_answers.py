"""A loopback HTTP receiver that answers with exact bytes: malformed, oversized, cut or unusual answers
a real server library would never send, for the HTTP client's edge cases."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.support.trickle import read_request


class RawAnswerServer:
    """Answers the n-th request on 127.0.0.1 with `answers[n]` (the last one repeats). With
    `keep_open` a connection stays open for the next request after an answer, else it is closed.
    Counts the connections accepted, the requests read and the connections the client closed."""

    def __init__(self, *answers: bytes, keep_open: bool = False) -> None:
        self.answers = list(answers)
        self.keep_open = keep_open
        self.requests = 0
        self.connections = 0
        self.client_closes = 0
        self._lock = threading.Lock()
        self._closed_by_client = threading.Condition(self._lock)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._open: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self.connections += 1
                self._open.append(conn)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client gave up reading: what a test may expect of it
            while read_request(conn) is not None:
                with self._lock:
                    answer = self.answers[min(self.requests, len(self.answers) - 1)]
                    self.requests += 1
                conn.sendall(answer)
                if not self.keep_open:
                    return
            with self._lock:
                if conn in self._open:  # not one drop_connections ended from this side
                    self._open.remove(conn)
                    self.client_closes += 1
                    self._closed_by_client.notify_all()

    def wait_for_client_closes(self, count: int, timeout: float = 5.0) -> None:
        """Block until the client closed `count` connections (this side read their end), or fail at the
        deadline."""
        with self._closed_by_client:
            if not self._closed_by_client.wait_for(lambda: self.client_closes >= count, timeout):
                raise AssertionError(f"the client closed {self.client_closes} of {count} connection(s) "
                                     f"within {timeout}s")

    def drop_connections(self) -> None:
        """Close every connection from this side (as a server's idle timeout does); returns once their
        serving threads have ended (the FIN has been sent)."""
        with self._lock:
            conns, self._open = self._open, []
            serving = self._threads[1:]
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in serving:
            thread.join(5)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone would not)
        self._listener.close()
        self.drop_connections()
        for thread in self._threads:
            thread.join(5)
            assert not thread.is_alive()
