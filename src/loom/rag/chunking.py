"""Split text into overlapping chunks measured in tokens, as OpenAI's chunking strategies do.

`auto` is 800 tokens with 400 overlapping; `static` takes `max_chunk_size_tokens`
(100..4096) and `chunk_overlap_tokens` (at most half of it). Tokens are counted by the
bundled embedding model's WordPiece tokenizer (tiktoken's files cannot be fetched offline);
its counts run close to cl100k's for English prose. Chunks are cut at token boundaries and
keep the original characters between them, whitespace and case included.
"""

from __future__ import annotations

from typing import Any

from loom.errors import InvalidRequestError

AUTO = {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}


def resolve_strategy(raw: Any, param: str = "chunking_strategy") -> dict[str, Any]:
    """The stored (always `static`) form of a request's chunking strategy; 400 if invalid."""
    if raw is None:
        return AUTO
    if not isinstance(raw, dict) or raw.get("type") not in ("auto", "static"):
        raise InvalidRequestError(
            "'chunking_strategy.type' must be 'auto' or 'static'.", param=f"{param}.type"
        )
    if raw["type"] == "auto":
        return AUTO
    static = raw.get("static")
    if not isinstance(static, dict):
        raise InvalidRequestError(
            "A static chunking strategy needs 'static'.", param=f"{param}.static"
        )
    size, overlap = static.get("max_chunk_size_tokens"), static.get("chunk_overlap_tokens")
    if not isinstance(size, int) or isinstance(size, bool) or not 100 <= size <= 4096:
        raise InvalidRequestError(
            "'max_chunk_size_tokens' must be an integer from 100 to 4096.",
            param=f"{param}.static.max_chunk_size_tokens",
        )
    if not isinstance(overlap, int) or isinstance(overlap, bool) or not 0 <= overlap <= size // 2:
        raise InvalidRequestError(
            "'chunk_overlap_tokens' must be an integer from 0 to half of max_chunk_size_tokens.",
            param=f"{param}.static.chunk_overlap_tokens",
        )
    return {
        "type": "static",
        "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap},
    }


def split(text: str, tokenizer: Any, strategy: dict[str, Any]) -> list[str]:
    """Chunks of `text` by `strategy` (a resolved one); `tokenizer` is a `tokenizers` one."""
    size = strategy["static"]["max_chunk_size_tokens"]
    overlap = strategy["static"]["chunk_overlap_tokens"]
    offsets = tokenizer.encode(text, add_special_tokens=False).offsets
    if not offsets:
        return [text.strip()] if text.strip() else []
    chunks: list[str] = []
    step = max(1, size - overlap)
    for start in range(0, len(offsets), step):
        window = offsets[start : start + size]
        begin = window[0][0] if start else 0
        end = window[-1][1] if start + size < len(offsets) else len(text)
        piece = text[begin:end].strip()
        if piece:
            chunks.append(piece)
        if start + size >= len(offsets):
            break
    return chunks
