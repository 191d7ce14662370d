"""Start, watch and stop the processes a benchmark talks to: the fake upstream and Loom.

Each runs in its own process, so its CPU never shares the load generator's event loop,
and each is asked to die with the benchmark (Linux `PR_SET_PDEATHSIG`) in case the
benchmark itself is killed before it can stop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parent.parent
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1
# What the `loom` console script runs (`loom.cli` has no `__main__` guard for `-m`).
_LOOM_CLI = ["-c", "import sys; from loom.cli import main; sys.exit(main())"]


class StartupError(RuntimeError):
    """A service exited or never answered at startup; the message holds its log tail."""


@dataclass
class Service:
    """A child process serving HTTP on loopback, with its log file."""

    name: str
    proc: subprocess.Popen
    base_url: str
    log_path: Path
    ready_path: str

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far, from /proc/<pid>/stat."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        # Fields 14 and 15 of stat(5); the list starts at field 3 (state).
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()  # uvicorn shuts down gracefully on SIGTERM
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: get SIGTERM when the benchmark process dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(name: str, args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only the benchmark, which stops us
            preexec_fn=_die_with_parent,
        )


def wait_ready(service: Service, timeout: float = 60.0) -> None:
    """Poll `GET ready_path` until it answers 200; fail early, with the log, if it dies."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=service.base_url, timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if service.proc.poll() is not None:
                raise StartupError(
                    f"{service.name} exited with code {service.proc.returncode} at startup:\n"
                    + service.log_tail()
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(service.ready_path).status_code == 200:
                    return
            time.sleep(0.1)
    raise StartupError(f"{service.name} not ready after {timeout:.0f}s:\n" + service.log_tail())


def wait_settled(
    service: Service, timeout: float = 60.0, window: float = 0.5, busy: float = 0.05
) -> float:
    """Wait until the idle service uses less than `busy` of a core over `window` seconds;
    returns the CPU seconds it used meanwhile. Loom answers /v1/health before its start-up
    work is done (it builds /openapi.json on a thread, about 2.5 s of CPU that holds the
    GIL): a phase measured meanwhile would count that work, and wait on it."""
    deadline = time.monotonic() + timeout
    start = last = service.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(window)
        now = service.cpu_seconds()
        if now - last < busy * window:
            break
        last = now
    return service.cpu_seconds() - start


def _clean_env() -> dict[str, str]:
    """The inherited environment minus anything that could reconfigure Loom."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "OPENAI_"))}
    env["NO_PROXY"] = ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    return env


def spawn_upstream(workdir: Path) -> Service:
    """Start the fake upstream; call `wait_ready` before using it."""
    port = free_port()
    log_path = workdir / "upstream.log"
    proc = _spawn(
        "upstream", ["-m", "bench.fake_upstream", "--port", str(port)], _clean_env(), log_path
    )
    return Service("fake upstream", proc, f"http://127.0.0.1:{port}", log_path, "/v1/models")


def spawn_loom(
    upstream: Service,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    name: str = "loom",
    serve_args: tuple[str, ...] = (),
) -> Service:
    """Start `loom serve` against the upstream (with `serve_args`, e.g. `--workers 2`);
    call `wait_ready` before using it."""
    port = free_port()
    env = _clean_env()
    env.update(
        OPENAI_API_KEY="x",
        OPENAI_BASE_URL=f"{upstream.base_url}/v1",
        LOOM_LOCAL_MODELS="off",
        LOOM_DB_URL=f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
    )
    env.update(extra_env or {})
    log_path = workdir / f"{name}.log"
    proc = _spawn(name, [*_LOOM_CLI, "serve", "--port", str(port), *serve_args], env, log_path)
    return Service("Loom", proc, f"http://127.0.0.1:{port}", log_path, "/v1/health")


def machine_busy_seconds() -> float:
    """CPU time all processes on the machine have used (every core), from /proc/stat."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, stat.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / _CLOCK_TICKS


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a load generator's coroutine on uvloop (installed with `uvicorn[standard]`), or on
    asyncio's own loop without it: uvloop's C loop costs the client about a fifth less CPU
    per streamed response (bench/README.md, "The measuring instruments' own CPU")."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
