"""What every benchmark shares: the machine line, medians, the summary table, RSS of a process tree.

Benchmarks run from the repository root (`.venv/bin/python bench/<name>.py`); they start real
processes through the test harness (tests/support/engine.py), so the engine is measured exactly
as a user runs it, and they stop every process they start.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/ first, not the root
    sys.path.insert(0, str(ROOT))


def machine() -> str:
    """One line naming the machine the figures came from: cores, CPU model, Python."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"nproc={os.cpu_count()}, {model}, Python {platform.python_version()}, load avg {_load()}"


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, ready to paste into the README."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = [f"### {title}", "", f"_{machine()}_", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def tree_pids(pid: int) -> list[int]:
    """`pid` and all its descendants (prefork children included), from /proc."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def rss_mb(pid: int) -> float:
    """Resident size of a process and its children, in MB."""
    return sum(rss_each_mb(pid))


def rss_each_mb(pid: int) -> list[float]:
    """Resident size of a process and of each of its children, in MB."""
    sizes = []
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return sizes


@contextmanager
def profiled(procs: Mapping[str, subprocess.Popen[bytes]], folder: Path | None, prefix: str,
             *, gil: bool = False) -> Iterator[None]:
    """py-spy every process of `procs` (children included) while the block runs, if `folder` is given;
    writes <prefix>-<role>.raw (collapsed stacks) and .txt (the frames most often on CPU, self time).
    `gil`: sample only the thread holding the GIL (Python CPU, without threads waiting for it or for
    a core, which a loaded machine otherwise shows as busy)."""
    if folder is None or not procs:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    spies = {}
    for role, proc in procs.items():
        raw = folder / f"{prefix}-{role}.raw"
        spies[role] = (raw, subprocess.Popen(
            [_py_spy(), "record", "--pid", str(proc.pid), "--subprocesses",
             "--format", "raw", "--rate", "200", "--output", str(raw), "--nonblocking", *(["--gil"] if gil else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        yield
    finally:
        for role, (raw, spy) in spies.items():
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            if raw.exists():
                summary = top_frames(raw)
                (folder / f"{prefix}-{role}.txt").write_text(summary)
                print(f"--- py-spy {prefix} {role} (self time, top frames):\n{summary}", file=sys.stderr)


def _py_spy() -> str:
    """py-spy beside this Python (the project's virtualenv), else the one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy") or str(beside)


def top_frames(raw: Path, n: int = 15) -> str:
    """The leaf frames that held the CPU most often, from py-spy's collapsed-stack output."""
    leaves: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        leaves[frames[-1]] += int(count)
        for frame in {f for f in frames if "actionhooks/" in f}:
            ours[frame] += int(count)
        total += int(count)
    if not total:
        return "(no samples)"
    self_time = "\n".join(f"{c / total:6.1%}  {frame}" for frame, c in leaves.most_common(n))
    inclusive = "\n".join(f"{c / total:6.1%}  {frame}" for frame, c in ours.most_common(n))
    return f"self:\n{self_time}\nactionhooks frames, inclusive:\n{inclusive}"


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and its living children."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except OSError:
            continue
    return total / ticks


def parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except OSError:
        return 0


def pids_named(name: str) -> list[int]:
    """Processes whose command name is `name` (e.g. postgres, redis-server), to account their CPU."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@contextmanager
def cpu_per_event(procs: Mapping[str, int], events: Callable[[], int], label: str) -> Iterator[None]:
    """Print the CPU-µs per event each process tree (and this process) spent while the block ran."""
    before = {role: cpu_seconds(pid) for role, pid in procs.items()}
    own = os.times()
    yield
    after = {role: cpu_seconds(pid) for role, pid in procs.items()}
    now = os.times()
    n = max(1, events())
    parts = {role: (after[role] - before[role]) / n * 1e6 for role in procs}
    parts["bench client"] = (now.user + now.system - own.user - own.system) / n * 1e6
    text = ", ".join(f"{role} {us:.0f}" for role, us in parts.items())
    print(f"  {label}: CPU-µs per event: {text}; total {sum(parts.values()):.0f}", file=sys.stderr, flush=True)


@contextmanager
def own_redis() -> Iterator[tuple[str, int]]:
    """A private redis-server on a free loopback port, stopped at the end.

    The shared Redis on 6379 has 16 databases and the test suites of everyone on this machine use
    them (and flush them): a benchmark's triggers there can be consumed or erased by someone else's
    worker. Yields (broker URL, pid).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--daemonize", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        proc.terminate()
        proc.wait(10)
