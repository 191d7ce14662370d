"""Where a benchmark's CPU went, read from /proc: Loom's processes one by one, PostgreSQL,
the fake upstream, the load generator and the whole machine, at one instant.

`bench.scale` reads these clocks at both ends of its measured window and divides by the
responses finished in it. The machine is shared with other engineers' jobs, so each part
counts only what is its own where /proc can tell: PostgreSQL's live backends serving other
databases go to "the rest of the machine", not to PostgreSQL.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.harness import machine_busy_seconds

_TICKS = os.sysconf("SC_CLK_TCK")


def _process_stats() -> Iterator[tuple[int, str, list[str]]]:
    """Each process on the machine: its pid, its name and the fields of /proc/<pid>/stat
    after the name (the list starts at field 3, state)."""
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_path.read_text()
        except OSError:  # it exited meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        yield int(stat_path.parent.name), name, stat[stat.rindex(")") + 2 :].split()


def _own_seconds(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _children_seconds(fields: list[str]) -> float:
    return (int(fields[13]) + int(fields[14])) / _TICKS  # cutime + cstime: exited children


def postgres_database(pid: int) -> str | None:
    """The database a PostgreSQL backend serves, from its process title
    (`postgres: 15/main: user database 127.0.0.1(port) state`); None for the server's own
    processes (checkpointer, WAL writer...)."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    words = title.split(": ", 2)[-1].split()
    if len(words) >= 3 and (words[2].endswith(")") or words[2] == "[local]"):
        return words[1]
    return None


@dataclass(frozen=True)
class Clocks:
    """CPU seconds used so far, at one instant."""

    loom: dict[int, float]  # per process: the server and, with --workers, each worker
    postgres: float  # the server's own processes, the backends of `database` and exited ones
    upstream: float
    client: float  # this process
    machine: float  # every core, every process, and the kernel's interrupt work

    @classmethod
    def read(cls, loom_pid: int, upstream_pid: int, database: str | None = None) -> Clocks:
        """One walk of /proc. Without `database`, every PostgreSQL process counts."""
        client = time.process_time()
        loom: dict[int, float] = {}
        postgres = upstream = 0.0
        for pid, name, fields in _process_stats():
            if pid == loom_pid or int(fields[1]) == loom_pid:
                loom[pid] = _own_seconds(fields)
            elif pid == upstream_pid:
                upstream = _own_seconds(fields)
            elif name == "postgres":
                serves = postgres_database(pid) if database else None
                if serves is None or serves == database:
                    # Connections closed during the run (pool overflow) end up in the
                    # postmaster's children's time, whoever's they were.
                    postgres += _own_seconds(fields) + _children_seconds(fields)
        return cls(loom, postgres, upstream, client, machine_busy_seconds())

    def since(self, start: Clocks) -> dict[str, float]:
        """Seconds used by each part between `start` and this reading, and by the rest of
        the machine (other processes, interrupts)."""
        parts = {
            "Loom": sum(s - start.loom.get(pid, 0.0) for pid, s in self.loom.items()),
            "PostgreSQL": self.postgres - start.postgres,
            "upstream": self.upstream - start.upstream,
            "load generator": self.client - start.client,
        }
        busy = self.machine - start.machine
        parts["rest of the machine"] = max(0.0, busy - sum(parts.values()))
        parts["machine"] = busy
        return parts

    def loom_processes_since(self, start: Clocks) -> dict[int, float]:
        return {pid: s - start.loom.get(pid, 0.0) for pid, s in self.loom.items()}


def tree_seconds(pid: int) -> float:
    """CPU time of a process and its children (uvicorn's workers)."""
    return sum(
        _own_seconds(fields)
        for proc_pid, _, fields in _process_stats()
        if proc_pid == pid or int(fields[1]) == pid
    )


def wait_idle(pid: int, timeout: float = 60.0, window: float = 0.5, busy: float = 0.05) -> float:
    """Wait until a process and its children use less than `busy` of a core over `window`
    seconds; returns the CPU seconds they used meanwhile. Each uvicorn worker builds its
    own /openapi.json on a thread at start-up (seconds of CPU), and one request for it
    reaches only one worker: waiting on the whole tree keeps that work out of a window."""
    deadline = time.monotonic() + timeout
    start = last = tree_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = tree_seconds(pid)
        if now - last < busy * window:
            break
        last = now
    return tree_seconds(pid) - start


def connections_by_process(port: int, pids: list[int]) -> dict[int, int]:
    """How many established TCP connections to local `port` each of `pids` holds: the
    load generator's connections per uvicorn worker, which share one listening socket."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # ESTABLISHED
                inodes.add(fields[9])
    counts = {}
    for pid in pids:
        n = 0
        try:
            for fd in os.scandir(f"/proc/{pid}/fd"):
                target = os.readlink(fd.path)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    n += 1
        except OSError:
            pass
        counts[pid] = n
    return counts
