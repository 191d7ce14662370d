"""Seal and open compaction items: AES-256-GCM with a server key, bound to the owner.

A compaction item's `encrypted_content` is the state it replaces (a summary written by the
model, plus the items kept verbatim), encrypted and authenticated. A client can hand it back
but can neither read nor alter it: a changed byte, or an item presented by another owner,
fails authentication and the request is refused with a 400.

The key comes from the `compaction_key` setting (32 bytes, base64url). Without one, a key
is generated on first use and kept in `<data_dir>/compaction.key` (mode 0600), so items
outlive a restart; processes that share a database must share the key too.
"""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from loom.config import ConfigError, Settings, default_data_dir
from loom.errors import InvalidRequestError

_VERSION = b"\x01"
_NONCE = 12
_lock = threading.Lock()
_ciphers: dict[tuple[str | None, str], AESGCM] = {}


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError(f"{where} must be 32 bytes, base64url-encoded")
    return key


def _load_or_create(path: Path) -> bytes:
    if path.exists():
        return _decode_key(path.read_text(), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = AESGCM.generate_key(bit_length=256)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(base64.urlsafe_b64encode(key).decode())
    return key


def cipher(settings: Settings) -> AESGCM:
    data_dir = settings.data_dir or str(default_data_dir())
    cache_key = (settings.compaction_key, data_dir)
    with _lock:
        found = _ciphers.get(cache_key)
        if found is None:
            if settings.compaction_key:
                key = _decode_key(settings.compaction_key, "compaction_key")
            else:
                key = _load_or_create(Path(data_dir) / "compaction.key")
            found = _ciphers[cache_key] = AESGCM(key)
        return found


def seal(settings: Settings, owner: str, state: dict[str, Any]) -> str:
    nonce = os.urandom(_NONCE)
    sealed = cipher(settings).encrypt(nonce, orjson.dumps(state), owner.encode())
    return base64.urlsafe_b64encode(_VERSION + nonce + sealed).decode().rstrip("=")


def open_sealed(settings: Settings, owner: str, token: Any, param: str) -> dict[str, Any]:
    refused = InvalidRequestError(
        f"'{param}' is not a valid compaction item: its encrypted_content was altered, "
        "truncated, or sealed by another server or owner.",
        param=param,
        code="invalid_encrypted_content",
    )
    if not isinstance(token, str):
        raise refused
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        raise refused from None
    if len(raw) < 1 + _NONCE + 16 or raw[:1] != _VERSION:
        raise refused
    try:
        plain = cipher(settings).decrypt(raw[1 : 1 + _NONCE], raw[1 + _NONCE :], owner.encode())
    except InvalidTag:
        raise refused from None
    return orjson.loads(plain)
