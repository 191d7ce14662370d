"""Sealing compaction state: authenticated, bound to its owner, keyed from the config."""

from __future__ import annotations

import base64

import pytest

from loom.config import load_settings
from loom.engine.compaction_seal import open_sealed, seal
from loom.errors import InvalidRequestError


@pytest.fixture
def settings(tmp_path):
    return load_settings(env={"LOOM_LOCAL_MODELS": "off", "LOOM_DATA_DIR": str(tmp_path)})


def test_round_trip_and_owner_binding(settings):
    token = seal(settings, "alice", {"summary": "secret plan"})
    assert "secret" not in token
    assert open_sealed(settings, "alice", token, "input[0]") == {"summary": "secret plan"}
    with pytest.raises(InvalidRequestError) as refused:
        open_sealed(settings, "bob", token, "input[0].encrypted_content")
    assert refused.value.param == "input[0].encrypted_content"


def test_every_flipped_byte_is_refused(settings):
    raw = bytearray(base64.urlsafe_b64decode(seal(settings, "o", {"s": "x"}) + "=="))
    for position in range(len(raw)):
        changed = bytearray(raw)
        changed[position] ^= 0x01
        token = base64.urlsafe_b64encode(bytes(changed)).decode().rstrip("=")
        with pytest.raises(InvalidRequestError):
            open_sealed(settings, "o", token, "p")


def test_configured_key_is_used_instead_of_the_file(tmp_path):
    key = base64.urlsafe_b64encode(b"k" * 32).decode()
    env = {"LOOM_LOCAL_MODELS": "off", "LOOM_DATA_DIR": str(tmp_path), "LOOM_COMPACTION_KEY": key}
    token = seal(load_settings(env=env), "o", {"s": 1})
    assert not (tmp_path / "compaction.key").exists()
    assert open_sealed(load_settings(env=env), "o", token, "p") == {"s": 1}
