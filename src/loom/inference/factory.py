"""Build the providers that Settings describe, wrapped for record/replay when asked."""

from __future__ import annotations

from pathlib import Path

from loom.config import ConfigError, Settings
from loom.inference.base import Provider
from loom.inference.openai_compat import OpenAICompatProvider, Resilience


def build_providers(settings: Settings) -> list[Provider]:
    providers: list[Provider] = [
        OpenAICompatProvider(
            name=p.name,
            base_url=p.base_url,
            api_key=p.api_key,
            models=p.models,
            timeout=p.timeout,
            connect_timeout=p.connect_timeout,
            resilience=Resilience(
                max_retries=p.max_retries,
                retry_backoff=p.retry_backoff,
                retry_after_cap=p.retry_after_cap,
                first_token_timeout=p.first_token_timeout,
                idle_timeout=p.idle_timeout,
                breaker_threshold=p.breaker_threshold,
                breaker_cooldown=p.breaker_cooldown,
            ),
            native_custom_tools=p.custom_tools == "native",
            context_windows=p.context_windows,
        )
        for p in settings.providers
    ]
    if settings.local_models:
        from loom.inference.local import LocalProvider

        providers.append(LocalProvider(settings.local_models))
    if settings.inference_mode == "live":
        return providers
    if not settings.recordings_dir:
        raise ConfigError(
            f"LOOM_INFERENCE_MODE={settings.inference_mode} needs LOOM_RECORDINGS_DIR "
            "(or recordings_dir in the config file)"
        )
    from loom.inference.recording import RecordingProvider

    directory = Path(settings.recordings_dir)
    return [RecordingProvider(p, settings.inference_mode, directory) for p in providers]
