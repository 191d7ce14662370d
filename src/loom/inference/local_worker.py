"""The thread side of the local provider: a loaded llama.cpp model and its generation loop.

Everything here blocks, and llama.cpp is not thread-safe, so `local.py` calls into this
module only from one dedicated thread per model; nothing here knows about asyncio. The loop
drives `Llama.generate()` token by token (rather than `create_chat_completion`) so that it
knows exact token counts for `usage`, can stop between any two tokens when the consumer
goes away, and can later pass a grammar for constrained decoding.
"""

from __future__ import annotations

import codecs
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loom.errors import InvalidRequestError, UpstreamError
from loom.inference.local_request import GenerationRequest


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


class LoadedModel:
    """A GGUF model in memory, with the chat template from its own metadata."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int | None):
        # Imported here so that starting Loom does not pay for llama.cpp until it is used.
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        # Half the cores by default, for prompts too: the event loop needs a core, and a
        # llama.cpp thread that has to share one stalls all the others at every step.
        threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        self.llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        # llama.cpp may round the context up; Python-side buffers keep the size asked for.
        self.n_ctx = min(n_ctx, self.llm.n_ctx())
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise UpstreamError(f"{path} has no chat template in its GGUF metadata")
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._token_text(self.llm.token_eos()),
            bos_token=self._token_text(self.llm.token_bos()),
        )
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._is_end = lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token))

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", "replace")

    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        try:
            rendered = self._formatter(messages=messages)
        except Exception as exc:  # the template may reject a message order, for one
            raise InvalidRequestError(
                f"the model's chat template rejected the messages: {exc}", param="messages"
            ) from None
        return self.llm.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )

    def generate(
        self, request: GenerationRequest, cancel: threading.Event, emit: Callable[[str], None]
    ) -> Finish:
        """Generate a reply, passing each piece of text to `emit` as soon as it is final.

        Returns early, between two tokens, once `cancel` is set."""
        prompt = self.prompt_tokens(request.messages)
        room = self.n_ctx - len(prompt)
        if room <= 0:
            raise InvalidRequestError(
                f"this model's context window is {self.n_ctx} tokens and the messages "
                f"use {len(prompt)}",
                param="messages",
                code="context_length_exceeded",
            )
        limit = min(request.max_tokens or room, room)
        seed = request.seed if request.seed is not None else random.getrandbits(32)
        self.llm.set_seed(seed % 2**32)

        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        text = StopFilter(request.stop)
        reason, count = "length", 0
        tokens = self.llm.generate(prompt, **request.sampling)
        try:
            for token in tokens:
                if cancel.is_set():
                    break
                if self._is_end(token):
                    reason = "stop"
                    break
                count += 1
                piece, stopped = text.feed(decoder.decode(self.llm.detokenize([token])))
                if piece:
                    emit(piece)
                if stopped:
                    return Finish("stop", len(prompt), count)
                if count >= limit:
                    break
        finally:
            tokens.close()
        tail, stopped = text.feed(decoder.decode(b"", final=True))
        if not stopped:
            tail += text.pending  # no stop sequence can complete now
        if tail and not cancel.is_set():
            emit(tail)
        return Finish("stop" if stopped else reason, len(prompt), count)

    def close(self) -> None:
        self.llm.close()


class StopFilter:
    """Passes text through, holding back any tail that could be the start of a stop sequence."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops = stops
        self.pending = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """The text that is safe to emit, and whether a stop sequence was reached."""
        if not self.stops:
            return piece, False
        text = self.pending + piece
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.pending = ""
            return text[: min(hits)], True
        keep = max(
            (k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0
        )
        self.pending = text[len(text) - keep :]
        return text[: len(text) - keep], False
