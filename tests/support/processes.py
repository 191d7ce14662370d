"""Loom as a real child process (`loom serve`), so tests can SIGTERM and kill -9 it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOM_CLI = ["-c", "import sys; from loom.cli import main; sys.exit(main())"]


class LoomProcess:
    def __init__(self, env: dict[str, str], log_path: Path, args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.log_path = log_path
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "OPENAI_"))}
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *LOOM_CLI, "serve", "--port", str(self.port), *args],
                cwd=REPO_ROOT,
                env={**clean, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> LoomProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"loom exited at start-up:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        raise TimeoutError(f"loom not ready in {timeout}s:\n{self.log()}")

    def accepts_connections(self) -> bool:
        try:
            httpx.get(f"{self.url}/v1/health", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def sigterm(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def loom_processes(log_dir: Path) -> Iterator:
    """A factory of started Loom processes, all stopped at the end."""
    started: list[LoomProcess] = []

    def start(env: dict[str, str], *args: str, ready: bool = True) -> LoomProcess:
        process = LoomProcess(env, log_dir / f"loom-{len(started)}.log", args)
        started.append(process)
        return process.wait_ready() if ready else process

    try:
        yield start
    finally:
        for process in started:
            process.stop()
