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
