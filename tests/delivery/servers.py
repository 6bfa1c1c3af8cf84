"""Private broker processes for the restart tests, and the worker's retry loop those tests drive.

The machine's Redis, NATS and Mosquitto are shared by other engineers: a test that restarts a server
starts its own on a free loopback port (data in a temporary folder), restarts THAT one, and stops
it by its pid.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from actionhooks.delivery.base import Batch, Transport
from actionhooks.errors import DeliveryError

__all__ = [
    "PrivateServer", "RetryingSender", "free_port", "mosquitto_command", "private_server", "stop_process", "wait_for",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0, every: float = 0.05) -> None:
    """Poll `condition` until it holds; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)  # polling a server from outside: nothing to wait on but time


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_process(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM `process` by its pid, SIGKILL it if it is still there after `grace` seconds."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)


class PrivateServer:
    """One server process on its own port; `restart()` stops it (SIGTERM, by pid) and starts it again."""

    def __init__(self, command: Callable[[int, Path], Sequence[str]], workdir: Path, name: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.name = name
        self._command = command
        self._process: subprocess.Popen[bytes] | None = None
        self._log = workdir / f"{name}.log"

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                list(self._command(self.port, self.workdir)), cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(lambda: _accepts(self.port) or self._exited(), f"{self.name} to listen on {self.port}")
        if self._exited():
            raise AssertionError(f"{self.name} exited at start: {self._log.read_text()[-2000:]}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)

    def restart(self, down_for: float = 0.5) -> None:
        self.stop()
        time.sleep(down_for)  # the outage itself: senders must see the server gone for a while
        self.start()

    def _exited(self) -> bool:
        return self._process is not None and self._process.poll() is not None


@contextmanager
def private_server(
    binary: str, command: Callable[[int, Path], Sequence[str]], tmp_path: Path, name: str
) -> Iterator[PrivateServer]:
    """A started PrivateServer, stopped at the end; the test fails (not skips) when `binary` is missing."""
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} is not installed: the restart test needs it (see scripts/services.sh)")
    server = PrivateServer(command, tmp_path, name)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def mosquitto_command(extra: str = "allow_anonymous true\n") -> Callable[[int, Path], list[str]]:
    """The command of a private mosquitto: persistent (saved on SIGTERM), no limit on queued messages."""

    def command(port: int, workdir: Path) -> list[str]:
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            # `user`: run as root, mosquitto would switch to "mosquitto", who cannot use the folder.
            f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\npersistence true\n"
            f"persistence_location {workdir}/\nmax_queued_messages 0\n{extra}"
        )
        return ["mosquitto", "-c", str(conf)]

    return command


class RetryingSender:
    """What the worker does with a transport, in a thread: send each batch; on a DeliveryError, send the
    events it did not deliver again (same batch id) until all went through or the deadline passed."""

    def __init__(
        self, transport: Transport[Any], batches: list[Batch], deadline_sec: float = 90.0, pause: float = 0.01
    ) -> None:
        self.transport = transport
        self.batches = batches
        self.pause = pause
        self.deadline = time.monotonic() + deadline_sec
        self.sent_batches = 0
        self.failures: list[DeliveryError] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="retrying-sender", daemon=True)

    def __enter__(self) -> RetryingSender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(max(0.0, self.deadline - time.monotonic()) + 5)

    def join(self) -> None:
        self._thread.join(max(0.0, self.deadline - time.monotonic()) + 5)
        assert not self._thread.is_alive(), "the sender did not finish before its deadline"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            for batch in self.batches:
                events, attempt = batch.events, 1
                while events:
                    try:
                        self.transport.send(Batch(batch.hook_id, batch.batch_id, attempt, events))
                        events = []
                    except DeliveryError as exc:
                        self.failures.append(exc)
                        if not exc.retryable or time.monotonic() > self.deadline:
                            raise
                        events = [e for i, e in enumerate(events) if i not in exc.delivered]
                        attempt += 1
                        time.sleep(0.2)  # the worker's retry delay, shortened
                self.sent_batches += 1
                time.sleep(self.pause)  # a steady flow, so the restart lands mid-delivery
        except BaseException as exc:
            self.error = exc
