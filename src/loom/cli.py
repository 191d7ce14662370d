"""The `loom` command: `loom serve` runs the server, `loom models` lists what it serves."""

from __future__ import annotations

import asyncio
import sys

import click

from loom.config import ConfigError, Settings, load_settings


def _settings(config: str | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        click.echo(f"loom: {exc}", err=True)
        sys.exit(2)


@click.group()
def main() -> None:
    """Loom: an OpenAI-compatible agentic API server."""


@main.command()
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8321).")
@click.option("--config", "config", type=click.Path(), default=None, help="YAML config file.")
def serve(host: str | None, port: int | None, config: str | None) -> None:
    """Serve the OpenAI-compatible API under /v1."""
    import uvicorn

    from loom.app import build_app
    from loom.observability.logs import configure_logging

    settings = _settings(config)
    logging_is_ours = configure_logging(settings.log_format, settings.log_level)
    if host:
        settings.host = host
    if port:
        settings.port = port
    try:
        app = build_app(settings)
    except ConfigError as exc:
        click.echo(f"loom: {exc}", err=True)
        sys.exit(2)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        **({"log_config": None} if logging_is_ours else {}),
    )


@main.command("models")
@click.option("--config", "config", type=click.Path(), default=None, help="YAML config file.")
def list_models(config: str | None) -> None:
    """List the models the configured providers serve."""
    from loom.inference.factory import build_providers
    from loom.inference.registry import ModelRegistry

    settings = _settings(config)

    async def run() -> list[str]:
        registry = ModelRegistry(build_providers(settings))
        try:
            return await registry.list_model_ids()
        finally:
            await registry.aclose()

    try:
        ids = asyncio.run(run())
    except ConfigError as exc:
        click.echo(f"loom: {exc}", err=True)
        sys.exit(2)
    for model_id in ids:
        click.echo(model_id)


if __name__ == "__main__":
    main()
