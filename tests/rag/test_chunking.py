"""Chunking by tokens with the bundled tokenizer, and chunking strategy validation."""

from __future__ import annotations

import pytest

from loom.errors import InvalidRequestError
from loom.rag.chunking import AUTO, resolve_strategy, split
from loom.rag.local_embedder import LocalEmbedder


@pytest.fixture(scope="module")
def tokenizer():
    return LocalEmbedder().tokenizer


def static(size: int, overlap: int) -> dict:
    return {
        "type": "static",
        "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap},
    }


def test_chunks_have_the_size_and_overlap_asked(tokenizer):
    text = " ".join(f"lighthouse{i}" for i in range(400))
    chunks = split(text, tokenizer, resolve_strategy(static(100, 30)))
    sizes = [len(tokenizer.encode(c, add_special_tokens=False).ids) for c in chunks]
    assert all(s <= 100 for s in sizes) and sizes[0] == 100
    first, second = (tokenizer.encode(c, add_special_tokens=False).ids for c in chunks[:2])
    assert first[-30:] == second[:30]
    assert chunks[0].startswith("lighthouse0 ") and chunks[-1].endswith("lighthouse399")


def test_short_and_empty_texts(tokenizer):
    assert split("One sentence.", tokenizer, AUTO) == ["One sentence."]
    assert split("   \n ", tokenizer, AUTO) == []


def test_auto_is_800_with_400_overlap():
    assert resolve_strategy(None) == resolve_strategy({"type": "auto"}) == static(800, 400)


@pytest.mark.parametrize(
    ("strategy", "param"),
    [
        ({"type": "semantic"}, "chunking_strategy.type"),
        ({"type": "static"}, "chunking_strategy.static"),
        (static(50, 10), "chunking_strategy.static.max_chunk_size_tokens"),
        (static(5000, 10), "chunking_strategy.static.max_chunk_size_tokens"),
        (static(200, 101), "chunking_strategy.static.chunk_overlap_tokens"),
        (static(200, -1), "chunking_strategy.static.chunk_overlap_tokens"),
    ],
)
def test_bad_strategies_name_the_field(strategy, param):
    with pytest.raises(InvalidRequestError) as caught:
        resolve_strategy(strategy)
    assert caught.value.param == param
