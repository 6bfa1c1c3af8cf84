"""A fast HTTP receiver on loopback for the benchmarks: asyncio, raw HTTP/1.1, keep-alive, own process.

It answers every POST with 200 and keeps, per received event, the `bench_seq` the sender put in
its custom_data and the time it arrived, so latency is measured where the event lands. It parses
no JSON (a byte regex finds the sequence numbers), so it costs the sender's side little CPU.
`GET /stats` returns what it has seen as JSON, `GET /reset` forgets it.

Run: `.venv/bin/python bench/receiver.py PORT` (prints "ready" once listening).
"""

from __future__ import annotations

import asyncio
import re
import sys
import time

import orjson

SEQ = re.compile(rb'"bench_seq":"?(\d+)')  # a number, or a rendered template (a string)


class Seen:
    def __init__(self) -> None:
        self.requests = 0
        self.seqs: list[int] = []
        self.times: list[float] = []
        self.first = 0.0
        self.last = 0.0

    def record(self, body: bytes) -> None:
        now = time.time()
        found = [int(s) for s in SEQ.findall(body)]
        if not self.requests:
            self.first = now
        self.requests += 1
        self.last = now
        self.seqs.extend(found)
        self.times.extend([now] * len(found))

    def dump(self) -> bytes:
        return orjson.dumps({"requests": self.requests, "events": len(self.seqs), "first": self.first,
                             "last": self.last, "seqs": self.seqs, "times": self.times})


seen = Seen()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP/1.1 request off a keep-alive connection: its head (request line and headers) and body
    (by Content-Length; no chunked bodies: the engine and the load generators send none)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, (await reader.readexactly(length) if length else b"")


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global seen
    try:
        while True:
            head, body = await read_request(reader)
            request_line = head.partition(b"\r\n")[0]
            reply = b"ok"
            if request_line.startswith(b"GET /stats"):
                reply = seen.dump()
            elif request_line.startswith(b"GET /reset"):
                seen = Seen()
            else:
                seen.record(body)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(reply), reply))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024, limit=1 << 24)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
