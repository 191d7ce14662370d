"""Settings come from a YAML file plus env vars, and bad config fails with a clear message."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from loom.cli import main
from loom.config import ConfigError, load_settings


def test_zero_config(tmp_path):
    settings = load_settings(env={})
    assert settings.port == 8321 and settings.providers == []
    assert [m.name for m in settings.local_models] == ["smollm2-135m"]
    assert settings.db_url.startswith("sqlite+aiosqlite:///")


def test_openai_env_adds_provider():
    settings = load_settings(
        env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "http://127.0.0.1:9000/v1"}
    )
    (provider,) = settings.providers
    assert provider.name == "openai" and provider.base_url == "http://127.0.0.1:9000/v1"
    assert provider.api_key == "sk-x"
    assert "sk-x" not in repr(settings)


def test_yaml_and_env(tmp_path):
    path = tmp_path / "loom.yaml"
    path.write_text(
        "port: 9999\nproviders:\n  - name: vllm\n    base_url: http://h/v1\n"
        "    models: [m1]\nlocal_models: []\n"
    )
    settings = load_settings(
        path, env={"LOOM_PORT": "7000", "LOOM_DB_URL": "sqlite+aiosqlite:///x"}
    )
    assert settings.port == 7000
    assert settings.providers[0].models == ["m1"] and settings.local_models == []


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("port: [1]\n", "port"),
        ("providers:\n  - name: a/b\n    base_url: x\n", "providers.0.name"),
        ("providers:\n  - name: a\n", "base_url"),
        ("bogus_key: 1\n", "bogus_key"),
        ("- just a list\n", "mapping"),
        ("port: : :\n", "YAML"),
        ("inference_mode: sometimes\n", "inference_mode"),
    ],
)
def test_bad_config_names_the_problem(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert needle in str(info.value)


def test_cli_exits_cleanly_on_bad_config(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("port: nope\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(path)])
    assert result.exit_code == 2 and "port" in result.output
    result = CliRunner().invoke(main, ["models", "--config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "not found" in result.output


def test_replay_needs_a_directory():
    from loom.inference.factory import build_providers

    settings = load_settings(env={"LOOM_INFERENCE_MODE": "replay", "LOOM_LOCAL_MODELS": "off"})
    with pytest.raises(ConfigError, match="LOOM_RECORDINGS_DIR"):
        build_providers(settings)


def test_cli_models_lists_configured(tmp_path, upstream_server):
    _, server = upstream_server
    path = tmp_path / "loom.yaml"
    path.write_text(f"providers:\n  - name: up\n    base_url: {server.url}/v1\nlocal_models: []\n")
    result = CliRunner().invoke(main, ["models", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "up/gpt-4o" in result.output.split()


def test_api_keys_are_hashed_at_load_and_never_shown(tmp_path):
    from loom.config import key_digest

    path = tmp_path / "loom.yaml"
    path.write_text("auth:\n  api_keys:\n    yaml-key-1: alice\n")
    settings = load_settings(
        path,
        env={"LOOM_API_KEYS": "env-key-1=bob, env-key-2=carol", "LOOM_ADMIN_KEY": "admin-1"},
    )
    assert settings.auth.api_keys == {
        key_digest("yaml-key-1"): "alice",
        key_digest("env-key-1"): "bob",
        key_digest("env-key-2"): "carol",
    }
    assert settings.auth.admin_key == key_digest("admin-1")
    shown = repr(settings) + str(settings.model_dump())
    for key in ("yaml-key-1", "env-key-1", "env-key-2", "admin-1"):
        assert key not in shown


def test_limits_and_mcp_guard_from_env():
    settings = load_settings(
        env={
            "LOOM_MAX_BODY_BYTES": "1000",
            "LOOM_MAX_INPUT_ITEMS": "5",
            "LOOM_MAX_TOOLS": "6",
            "LOOM_CONCURRENT_REQUESTS_PER_KEY": "7",
            "LOOM_REQUESTS_PER_MINUTE_PER_KEY": "8",
            "LOOM_MCP_ALLOW": "127.0.0.0/8, mcp.internal",
            "LOOM_MCP_DENY": "10.9.0.0/16",
            "LOOM_MCP_ALLOW_PUBLIC": "false",
        }
    )
    limits = settings.limits
    assert (limits.max_body_bytes, limits.max_input_items, limits.max_tools) == (1000, 5, 6)
    assert (limits.concurrent_requests_per_key, limits.requests_per_minute_per_key) == (7, 8)
    assert settings.mcp_guard.allow == ["127.0.0.0/8", "mcp.internal"]
    assert settings.mcp_guard.deny == ["10.9.0.0/16"] and not settings.mcp_guard.allow_public
    defaults = load_settings(env={}).limits
    assert defaults.max_body_bytes == 32 * 1024 * 1024
    assert defaults.concurrent_requests_per_key == 0 == defaults.requests_per_minute_per_key


@pytest.mark.parametrize("value", ["justakey", "=alice", "key="])
def test_bad_api_keys_env_says_what_to_fix(value):
    with pytest.raises(ConfigError, match="key=owner"):
        load_settings(env={"LOOM_API_KEYS": value})
