"""The real Codex CLI (`npm install @openai/codex`) against Loom, with the model faked.

Codex is pointed at Loom the way a user does it: a `model_providers` entry in its
`config.toml` (kept in a temp CODEX_HOME) with `base_url` = Loom and `wire_api = "responses"`.
It sends its default tool set, namespace tools included. Codex opens a WebSocket first
(`OpenAI-Beta: responses_websockets=...`) and falls back to HTTP on a 426. Loom's app is
wrapped in a recorder so each test can see which transport Codex really used.

The CLI is installed once into `.cache/codex-npm` (the pinned version below) by this module's
fixture when missing. Without npm or the registry, the tests are skipped and say so, except
under CI, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from loom.app import build_app
from loom.config import load_settings
from tests.support.servers import serve
from tests.support.stream_validator import TERMINAL, parse_sse
from tests.support.upstream import Turn
from tests.support.ws import check_frame, validated

CODEX_VERSION = "0.171.0"
NPM_DIR = Path(__file__).resolve().parents[2] / ".cache" / "codex-npm"
CODEX = NPM_DIR / "node_modules" / ".bin" / "codex"
MODEL = "openai/gpt-4o"


def _install_codex() -> Path:
    if CODEX.exists():
        return CODEX
    npm = shutil.which("npm")
    problem = "npm is not installed" if npm is None else None
    if npm is not None:
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NPM_DIR),
             f"@openai/codex@{CODEX_VERSION}"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if result.returncode != 0 or not CODEX.exists():
            problem = f"npm install @openai/codex failed: {result.stderr[-500:]}"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(f"Codex CLI unavailable: {problem}")
    return CODEX


@pytest.fixture(scope="module")
def codex_bin() -> Path:
    return _install_codex()


class Recorder:
    """ASGI wrapper noting each request's transport, method, path and OpenAI-Beta header,
    and keeping every Responses event Loom sends (WebSocket messages, SSE bodies)."""

    def __init__(self, app):
        self.app = app
        self.seen: list[tuple[str, str | None, str, str | None]] = []
        self.events: list[dict] = []  # in the order sent, all responses
        self._sse = bytearray()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        beta = dict(scope["headers"]).get(b"openai-beta")
        self.seen.append(
            (scope["type"], scope.get("method"), scope["path"], beta and beta.decode())
        )

        async def spy(message):
            if message["type"] == "websocket.send" and message.get("text"):
                self.events.append(orjson.loads(message["text"]))
            elif message["type"] == "http.response.body" and scope["path"] == "/v1/responses":
                self._sse += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, spy)

    def responses(self) -> list[dict]:
        """Every response Loom sent, each validated event by event; the final Responses."""
        for frame in self.events:  # WebSocket messages: the SDK's server-event union too
            check_frame(frame)
        events = self.events + [event for _, event in parse_sse(bytes(self._sse))]
        finals, current = [], []
        for event in events:
            current.append(event)
            if event["type"] in TERMINAL:
                finals.append(validated(current))
                current = []
        assert not current, f"events after the last terminal event: {current}"
        return finals


def _loom(loom_env, tmp_path, websocket: bool):
    env = {
        **loom_env,
        "LOOM_DATA_DIR": str(tmp_path),
        "LOOM_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}",
    }
    env["LOOM_WEBSOCKET_ENABLED"] = "true" if websocket else "false"
    return Recorder(build_app(load_settings(env=env)))


def codex(codex_bin: Path, loom_url: str, home: Path, *args: str) -> subprocess.CompletedProcess:
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        f'model = "{MODEL}"\n'
        'model_provider = "loom"\n'
        "[model_providers.loom]\n"
        'name = "Loom"\n'
        f'base_url = "{loom_url}/v1"\n'
        'wire_api = "responses"\n'
        'env_key = "LOOM_API_KEY"\n'
        "supports_websockets = true\n"
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "LOOM_API_KEY": "any",
    }
    workdir = home / "work"
    workdir.mkdir(exist_ok=True)
    command = [str(codex_bin), "exec", "--skip-git-repo-check", "-C", str(workdir), *args]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _tool_turns(upstream) -> None:
    upstream.script(
        Turn(tool_calls=[("exec_command", {"cmd": "echo loom-tool-ran"})]),
        Turn(text="The command printed loom-tool-ran."),
    )


def _check_tool_round_trip(upstream) -> None:
    first, second = upstream.requests[:2]
    offered = {t["function"]["name"] for t in first["tools"]}
    assert "exec_command" in offered
    # Codex's default tools include namespace tools; they reach the model flattened.
    assert any("__" in name for name in offered), offered
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool" and "loom-tool-ran" in tool_message["content"]
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "exec_command"


def test_codex_exec_over_websocket_with_a_tool_call(codex_bin, loom_env, tmp_path, upstream):
    recorder = _loom(loom_env, tmp_path, websocket=True)
    _tool_turns(upstream)
    with serve(recorder) as loom:
        result = codex(codex_bin, loom.url, tmp_path, "run a command")
    assert "The command printed loom-tool-ran." in result.stdout
    _check_tool_round_trip(upstream)
    finals = recorder.responses()
    # Codex warms the connection up first (`generate: false`: no output, no model call).
    assert [[o["type"] for o in f["output"]] for f in finals] == [
        [],
        ["function_call"],
        ["message"],
    ]
    transports = {(kind, method, path) for kind, method, path, _ in recorder.seen}
    assert ("websocket", None, "/v1/responses") in transports
    assert ("http", "POST", "/v1/responses") not in transports  # no fallback was needed
    beta = [b for kind, _, _, b in recorder.seen if kind == "websocket"]
    assert all(b and b.startswith("responses_websockets=") for b in beta)


def test_codex_falls_back_to_http_after_426(codex_bin, loom_env, tmp_path, upstream):
    recorder = _loom(loom_env, tmp_path, websocket=False)
    _tool_turns(upstream)
    with serve(recorder) as loom:
        result = codex(codex_bin, loom.url, tmp_path, "run a command")
    assert "The command printed loom-tool-ran." in result.stdout
    _check_tool_round_trip(upstream)
    outputs = [[o["type"] for o in f["output"]] for f in recorder.responses()]
    assert outputs == [["function_call"], ["message"]]  # no warm-up over HTTP
    kinds = [(kind, method) for kind, method, path, _ in recorder.seen if path == "/v1/responses"]
    assert kinds[0] == ("websocket", None)  # tried first, refused with 426
    assert kinds.count(("http", "POST")) == 2  # then both model calls over HTTP


def test_codex_multi_turn_session_with_tool_calls(codex_bin, loom_env, tmp_path, upstream):
    recorder = _loom(loom_env, tmp_path, websocket=True)
    _tool_turns(upstream)
    upstream.script(Turn(text="Second turn answer."))
    with serve(recorder) as loom:
        codex(codex_bin, loom.url, tmp_path, "run a command")
        result = codex(codex_bin, loom.url, tmp_path, "resume", "--last", "and then?")
    assert "Second turn answer." in result.stdout
    assert len(upstream.requests) == 3
    outputs = [[o["type"] for o in f["output"]] for f in recorder.responses()]
    # Each `codex exec` warms its connection up first, then runs its turns.
    assert outputs == [[], ["function_call"], ["message"], [], ["message"]]
    history = [(m["role"], m.get("content") or "") for m in upstream.requests[2]["messages"]]
    roles = [role for role, _ in history]
    assert roles[-4:] == ["assistant", "tool", "assistant", "user"]
    assert history[-2] == ("assistant", "The command printed loom-tool-ran.")
    assert history[-1] == ("user", "and then?")
    assert "loom-tool-ran" in history[-3][1]
