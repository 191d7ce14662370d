"""The `loom` command: `loom serve` runs the server, `loom models` lists what it serves."""

from __future__ import annotations

import asyncio
import os
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
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    help="Processes to run on this port (PostgreSQL only; default 1).",
)
def serve(host: str | None, port: int | None, config: str | None, workers: int) -> None:
    """Serve the OpenAI-compatible API under /v1."""
    import uvicorn

    from loom.app import build_app
    from loom.observability.logs import configure_logging
    from loom.startup import stored_key_count, summary

    settings = _settings(config)
    logging_is_ours = configure_logging(settings.log_format, settings.log_level)
    if host:
        settings.host = host
    if port:
        settings.port = port
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,
        # SIGTERM: stop accepting, let open requests end within the grace period.
        "timeout_graceful_shutdown": settings.shutdown_grace,
        **({"log_config": None} if logging_is_ours else {}),  # LOOM_LOG_FORMAT=json
    }
    if workers > 1:
        if not settings.db_url.startswith("postgresql"):
            click.echo(
                "loom: --workers needs a PostgreSQL database (LOOM_DB_URL=postgresql://...): "
                "SQLite allows one Loom process. Run one worker, or use PostgreSQL.",
                err=True,
            )
            sys.exit(2)
        # Each worker process builds its own app from the same settings.
        if config:
            os.environ["LOOM_CONFIG"] = config
        os.environ["LOOM_HOST"], os.environ["LOOM_PORT"] = settings.host, str(settings.port)
        uvicorn.run("loom.app:app_from_env", factory=True, workers=workers, **common)
        return
    try:
        app = build_app(settings)
    except ConfigError as exc:
        click.echo(f"loom: {exc}", err=True)
        sys.exit(2)
    click.echo(summary(settings, asyncio.run(stored_key_count(settings.db_url))))
    sys.stdout.flush()  # before uvicorn takes over, even when stdout is a pipe
    uvicorn.run(app, **common)


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


@main.group("keys")
def keys() -> None:
    """Make, list and revoke API keys kept in Loom's database."""


def _with_stores(config: str | None, work):
    """Run `work(stores)` against the configured database, then close it."""
    from loom.store import open_stores

    settings = _settings(config)

    async def run():
        stores = await open_stores(settings.db_url)
        try:
            return await work(stores)
        finally:
            await stores.close()

    return asyncio.run(run())


_config_option = click.option(
    "--config", "config", type=click.Path(), default=None, help="YAML config file."
)


@keys.command("create")
@click.option("--owner", required=True, help="The principal the key acts for.")
@click.option("--name", default=None, help="A label to tell keys apart.")
@_config_option
def keys_create(owner: str, name: str | None, config: str | None) -> None:
    """Make a key; its value is printed once and kept nowhere."""
    from loom.security.keys import issue_key

    record = _with_stores(config, lambda stores: issue_key(stores.api_keys, owner, name))
    click.echo(f"id:    {record['id']}")
    click.echo(f"owner: {record['owner']}")
    click.echo(f"key:   {record['value']}")


@keys.command("list")
@_config_option
def keys_list(config: str | None) -> None:
    """List every key: id, owner, hint, name, and whether it is revoked."""

    async def work(stores):
        out, after = [], None
        while True:
            page, more = await stores.api_keys.list(after=after, limit=100)
            out.extend(page)
            if not more:
                return out
            after = page[-1]["id"]

    for record in _with_stores(config, work):
        state = "revoked" if record["revoked_at"] is not None else "active"
        click.echo(
            f"{record['id']}\t{record['owner']}\t{record['redacted_value']}\t{state}"
            f"\t{record['name'] or ''}"
        )


@keys.command("revoke")
@click.argument("key_id")
@_config_option
def keys_revoke(key_id: str, config: str | None) -> None:
    """Revoke a key by id. Running servers stop accepting it within auth.key_cache_seconds."""
    if not _with_stores(config, lambda stores: stores.api_keys.revoke(key_id)):
        click.echo(f"loom: no API key with id {key_id}", err=True)
        sys.exit(1)
    click.echo(f"revoked {key_id}")


if __name__ == "__main__":
    main()
