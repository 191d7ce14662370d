"""OpenAI's `metadata` field, validated the same way for every resource that carries it.

Responses, conversations and chat completions all accept at most 16 string pairs, keys up to
64 and values up to 512 characters; one annotated type keeps those limits in one place.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

MAX_KEYS = 16
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 512


def _metadata_limits(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_KEYS:
        raise ValueError(f"metadata holds at most {MAX_KEYS} keys")
    for key, item in value.items():
        if len(key) > MAX_KEY_CHARS or len(item) > MAX_VALUE_CHARS:
            raise ValueError(
                f"metadata keys are at most {MAX_KEY_CHARS} and values {MAX_VALUE_CHARS} characters"
            )
    return value


Metadata = Annotated[dict[str, str], AfterValidator(_metadata_limits)]
