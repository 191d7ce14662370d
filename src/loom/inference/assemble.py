"""Fold streamed chat-completion chunks into the ChatCompletion they add up to.

Used where a stream must also be kept whole, e.g. to store a streamed chat completion.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


class ChunkAccumulator:
    def __init__(self) -> None:
        self.id: str | None = None
        self.model: str | None = None
        self.created: int = 0
        self.usage: Json | None = None
        self.system_fingerprint: str | None = None
        self._choices: dict[int, Json] = {}

    def add(self, chunk: Json) -> None:
        self.id = self.id or chunk.get("id")
        self.model = self.model or chunk.get("model")
        self.created = self.created or chunk.get("created") or 0
        self.system_fingerprint = self.system_fingerprint or chunk.get("system_fingerprint")
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            acc = self._choices.get(index)
            if acc is None:
                acc = self._choices[index] = {
                    "index": index,
                    "content": [],
                    "reasoning": [],
                    "tool_calls": {},
                    "finish_reason": None,
                    "role": "assistant",
                }
            delta = choice.get("delta") or {}
            if delta.get("content"):
                acc["content"].append(delta["content"])
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                acc["reasoning"].append(reasoning)
            for call in delta.get("tool_calls") or ():
                slot = acc["tool_calls"].setdefault(
                    call.get("index", 0),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": []}},
                )
                if call.get("id"):
                    slot["id"] = call["id"]
                function = call.get("function") or {}
                if function.get("name"):
                    slot["function"]["name"] += function["name"]
                if function.get("arguments"):
                    slot["function"]["arguments"].append(function["arguments"])
            if choice.get("finish_reason"):
                acc["finish_reason"] = choice["finish_reason"]

    def completion(self) -> Json:
        choices = []
        for index in sorted(self._choices):
            acc = self._choices[index]
            message: Json = {"role": "assistant", "content": "".join(acc["content"]) or None}
            if acc["reasoning"]:
                message["reasoning_content"] = "".join(acc["reasoning"])
            if acc["tool_calls"]:
                message["tool_calls"] = [
                    {
                        "id": slot["id"],
                        "type": "function",
                        "function": {
                            "name": slot["function"]["name"],
                            "arguments": "".join(slot["function"]["arguments"]),
                        },
                    }
                    for _, slot in sorted(acc["tool_calls"].items())
                ]
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "finish_reason": acc["finish_reason"] or "stop",
                    "logprobs": None,
                }
            )
        completion: Json = {
            "id": self.id or "",
            "object": "chat.completion",
            "created": self.created,
            "model": self.model or "",
            "choices": choices,
        }
        if self.usage:
            completion["usage"] = self.usage
        if self.system_fingerprint:
            completion["system_fingerprint"] = self.system_fingerprint
        return completion
