"""The one place Loom reaches into llama-cpp-python's private API: grammar sampling.

llama-cpp-python 0.3.36 puts the grammar first in the sampler chain, so every step filters
all 49,152 tokens of SmolLM2's vocabulary through it: that halved the model's speed.
`Llama.generate` gets its sampler from the private `Llama._init_sampler` and only ever calls
`.sample(ctx, idx)` on it, so `hook_grammar_sampling` wraps that method to return a
`GrammarCheckedSampler`, which asks the grammar only about the token the plain chain chose.

Private APIs change without notice, so the hook is applied only to the versions it was
written and tested against (`PATCHED_VERSIONS`); any other version runs the library's own,
slower but correct, path. Raising the pin in pyproject.toml means re-checking this file.
"""

from __future__ import annotations

import logging
from typing import Any

from loom.errors import InvalidRequestError

log = logging.getLogger("loom.inference")

PATCHED_VERSIONS = frozenset({"0.3.36"})


def patch_applies(version: str) -> bool:
    """Whether the hook was written for this llama-cpp-python version."""
    return version in PATCHED_VERSIONS


def hook_grammar_sampling(llm: Any, vocab: Any) -> bool:
    """Have `llm.generate(grammar=...)` sample through a GrammarCheckedSampler; returns
    whether the hook is in place (False: the library's own sampling is used)."""
    import llama_cpp

    plain = getattr(llm, "_init_sampler", None)
    if plain is None or not patch_applies(llama_cpp.__version__):
        log.info(
            "llama-cpp-python %s: grammar sampling left as the library does it",
            llama_cpp.__version__,
        )
        return False
    candidates = Candidates(llm.n_vocab())

    def init_sampler(*, grammar: Any = None, **kwargs: Any) -> Any:
        chain = plain(grammar=None, **kwargs)
        if grammar is None:
            return chain
        return GrammarCheckedSampler(chain, vocab, grammar, candidates)

    llm._init_sampler = init_sampler
    return True


class Candidates:
    """A reusable llama_token_data_array over the whole vocabulary."""

    def __init__(self, n_vocab: int):
        import llama_cpp
        import numpy as np

        self.n_vocab = n_vocab
        self.data = np.zeros(n_vocab, dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
        self.ids = np.arange(n_vocab, dtype=np.int32)
        self.pointer = self.data.ctypes.data_as(llama_cpp.llama_token_data_p)
        self.array = llama_cpp.llama_token_data_array(self.pointer, n_vocab, -1, False)
        self.one = (llama_cpp.llama_token_data * 1)()
        self.one_array = llama_cpp.llama_token_data_array(self.one, 1, -1, False)

    def fill(self, ctx: Any, idx: int) -> Any:
        """The array, holding every token with its logit at output `idx` of `ctx`."""
        import llama_cpp
        import numpy as np

        logits = llama_cpp.llama_get_logits_ith(ctx, idx)
        self.data["id"] = self.ids
        self.data["logit"] = np.ctypeslib.as_array(logits, shape=(self.n_vocab,))
        self.data["p"] = 0.0
        array = self.array
        array.data, array.size, array.selected, array.sorted = self.pointer, self.n_vocab, -1, False
        return array

    def single(self, token: int) -> Any:
        """An array holding `token` alone."""
        self.one[0].id, self.one[0].logit, self.one[0].p = token, 0.0, 0.0
        array = self.one_array
        array.size, array.selected, array.sorted = 1, -1, False
        return array


class GrammarCheckedSampler:
    """Samples as the plain chain would, then asks the grammar about that one token. Only
    when the grammar rejects it does it filter the whole vocabulary through the grammar and
    sample again, as llama.cpp's own common sampler does. The result is the same as
    filtering first (the grammar has the last word), at a fraction of the cost."""

    def __init__(self, chain: Any, vocab: Any, grammar: Any, candidates: Candidates):
        import llama_cpp

        self.chain = chain  # a llama_cpp._internals.LlamaSampler without a grammar
        self.candidates = candidates
        self.grammar = llama_cpp.llama_sampler_init_grammar(
            vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not self.grammar:
            raise InvalidRequestError("the local model could not parse its output grammar")

    def sample(self, ctx: Any, idx: int = -1) -> int:
        import ctypes

        import llama_cpp

        chain, grammar = self.chain.sampler, self.grammar
        array = self.candidates.fill(ctx.ctx, idx)
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
        token = array.data[array.selected].id
        check = self.candidates.single(token)
        llama_cpp.llama_sampler_apply(grammar, ctypes.byref(check))
        if check.data[0].logit == float("-inf"):
            array = self.candidates.fill(ctx.ctx, idx)
            llama_cpp.llama_sampler_apply(grammar, ctypes.byref(array))
            llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
            token = array.data[array.selected].id
        llama_cpp.llama_sampler_accept(grammar, token)
        llama_cpp.llama_sampler_accept(chain, token)
        return token

    def __del__(self) -> None:
        grammar, self.grammar = getattr(self, "grammar", None), None
        if grammar:
            try:
                import llama_cpp

                llama_cpp.llama_sampler_free(grammar)
            except Exception:  # at interpreter exit the library may already be gone
                pass
