"""Token usage summed over every model call of a turn, in the Responses shape."""

from __future__ import annotations

from typing import Any


class UsageTotals:
    __slots__ = ("cached", "input", "output", "reasoning", "seen")

    def __init__(self) -> None:
        self.input = self.output = self.cached = self.reasoning = 0
        self.seen = False

    def add(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        self.seen = True
        self.input += usage.get("prompt_tokens") or 0
        self.output += usage.get("completion_tokens") or 0
        self.cached += (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        details = usage.get("completion_tokens_details") or {}
        self.reasoning += details.get("reasoning_tokens") or 0

    def as_response_usage(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input,
            "input_tokens_details": {"cached_tokens": self.cached, "cache_write_tokens": 0},
            "output_tokens": self.output,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.input + self.output,
        }
