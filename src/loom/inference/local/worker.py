"""The thread side of the local provider: a loaded llama.cpp model and its generation loop.

Everything here blocks, and llama.cpp is not thread-safe, so `provider.py` calls into this
module only from one dedicated thread per model; nothing here knows about asyncio. The loop
drives `Llama.generate()` token by token (rather than `create_chat_completion`) so that it
knows exact token counts for `usage`, can stop between any two tokens when the consumer
goes away, and can pass a grammar for constrained decoding. `Reply` sorts the generated text
into content and tool calls.
"""

from __future__ import annotations

import codecs
import os
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loom.errors import InvalidRequestError, UpstreamError
from loom.inference.local.grammar import CALL_HEAD, CALL_TRIGGER
from loom.inference.local.llama_patch import hook_grammar_sampling
from loom.inference.local.request import GenerationRequest

GRAMMAR_CACHE_SIZE = 32
# What may follow the arguments of a call as the grammar writes it: the call's closing brace.
_CALL_END = re.compile(r" ?(\} ?)?$")


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str  # "stop" | "length" | "tool_calls" | "cancelled"
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class CallStart:
    """The model calls a tool: its name is known, its arguments follow."""

    name: str


@dataclass(frozen=True, slots=True)
class CallArguments:
    """The next piece of the JSON arguments of the call."""

    text: str


Piece = str | CallStart | CallArguments


class LoadedModel:
    """A GGUF model in memory, with the chat template from its own metadata."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int | None):
        # Imported here so that starting Loom does not pay for llama.cpp until it is used.
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        # Half the cores by default, for prompts too: the event loop needs a core, and
        # llama.cpp's threads wait for each other at every step, so one that has to share
        # its core with other work slows them all (on 2 cores, 2 prompt threads were ~3x
        # slower than 1 while anything else ran).
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
        vocab = self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._is_end = lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token))
        self._grammars: dict[str, Any] = {}  # GBNF text -> LlamaGrammar known to parse
        hook_grammar_sampling(self.llm, vocab)
        self.closed = False

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
        self, request: GenerationRequest, cancel: threading.Event, emit: Callable[[Piece], None]
    ) -> Finish:
        """Generate a reply, passing each piece of it to `emit` as soon as it is final: text,
        or a tool call as a CallStart then CallArguments.

        Once `cancel` is set it stops before the next token and returns a "cancelled" Finish."""
        if self.closed:
            raise UpstreamError("the local model has been shut down")
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
        grammar = self._grammar(request.grammar)
        seed = request.seed if request.seed is not None else random.getrandbits(32)
        self.llm.set_seed(seed % 2**32)

        reply = Reply(request, emit)
        reason, count = self._decode(prompt, request.sampling, grammar, limit, cancel, reply)
        if reason == "restart":  # "auto", and the model began a call: redo it under its grammar
            grammar = self._grammar(request.call_grammar)
            reason, more = "length", 0
            if count < limit:
                reason, more = self._decode(
                    prompt, request.sampling, grammar, limit - count, cancel, reply
                )
            count += more
        if reason == "cancelled":
            return Finish("cancelled", len(prompt), count)
        return Finish(reply.finish(reason), len(prompt), count)

    def _decode(
        self,
        prompt: list[int],
        sampling: dict[str, Any],
        grammar: Any,
        budget: int,
        cancel: threading.Event,
        reply: Reply,
    ) -> tuple[str, int]:
        """Generate up to `budget` tokens into `reply`: why it ended, and how many tokens."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        reason, count = "length", 0
        tokens = self.llm.generate(prompt, grammar=grammar, **sampling)
        try:
            for token in tokens:
                if cancel.is_set():
                    return "cancelled", count
                if self._is_end(token):
                    reason = "stop"
                    break
                count += 1
                signal = reply.feed(decoder.decode(self.llm.detokenize([token])))
                if signal:
                    return signal, count
                if count >= budget:
                    break
        finally:
            tokens.close()
        return reply.feed(decoder.decode(b"", final=True)) or reason, count

    def _grammar(self, text: str | None) -> Any:
        """The LlamaGrammar for GBNF `text`, checked to parse: llama-cpp-python hands a
        grammar that does not parse to the sampler chain as a null pointer."""
        if text is None:
            return None
        grammar = self._grammars.get(text)
        if grammar is None:
            import llama_cpp

            sampler = llama_cpp.llama_sampler_init_grammar(
                self._vocab, text.encode("utf-8"), b"root"
            )
            if not sampler:
                raise InvalidRequestError(
                    "the local model could not build a grammar for the requested tools or "
                    "response format"
                )
            llama_cpp.llama_sampler_free(sampler)
            if len(self._grammars) >= GRAMMAR_CACHE_SIZE:
                self._grammars.clear()
            grammar = self._grammars[text] = llama_cpp.LlamaGrammar.from_string(text)
        return grammar

    def close(self) -> None:
        self.closed = True
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


class Reply:
    """Routes generated text: to the reply's content through the stop filter, or, once the
    reply is a tool call, into CallStart and CallArguments pieces."""

    def __init__(self, request: GenerationRequest, emit: Callable[[Piece], None]):
        self.emit = emit
        self.stops = StopFilter(request.stop)
        self.deciding = request.calls == "auto"  # until the reply shows whether it calls
        self.lazy = request.grammar is None  # "auto" unconstrained: a call means a restart
        self.held = ""
        self.call: CallWriter | None = CallWriter(emit) if request.calls == "forced" else None

    def feed(self, piece: str) -> str | None:
        """Take the next piece; returns "stop" if a stop sequence ends the reply, "restart"
        if the reply turned out to be a call that must be generated under its grammar."""
        if self.call is not None:
            self.call.feed(piece)
            return None
        if self.deciding:
            self.held += piece
            start = self.held.lstrip()
            if start.startswith(CALL_TRIGGER):
                self.deciding = False
                self.call = CallWriter(self.emit)
                if self.lazy:
                    return "restart"
                self.call.feed(self.held)
                return None
            if CALL_TRIGGER.startswith(start):
                return None
            self.deciding = False
            piece, self.held = self.held, ""
        text, stopped = self.stops.feed(piece)
        if text:
            self.emit(text)
        return "stop" if stopped else None

    def finish(self, reason: str) -> str:
        """Flush what is held back; returns the finish reason."""
        if self.call is not None:
            return "tool_calls" if self.call.finish(reason == "stop") else reason
        tail, stopped = self.stops.feed(self.held) if self.held else ("", False)
        if not stopped:
            tail += self.stops.pending  # no stop sequence can complete now
        if tail:
            self.emit(tail)
        return "stop" if stopped else reason


class CallWriter:
    """Turns the text of `<tool_call>{"name": ..., "arguments": ...}` into a CallStart as soon
    as the name is known, then the arguments as they come, less the call's closing brace."""

    def __init__(self, emit: Callable[[Piece], None]):
        self.emit = emit
        self.head = ""
        self.started = False
        self.pending = ""

    def feed(self, piece: str) -> None:
        if not self.started:
            self.head += piece
            match = CALL_HEAD.match(self.head)
            if match is None:
                return
            self.started = True
            self.emit(CallStart(match[1]))
            piece = self.head[match.end() :]
        text = self.pending + piece
        end = _CALL_END.search(text)
        assert end is not None  # the pattern matches at the end of any text
        if end.start():
            self.emit(CallArguments(text[: end.start()]))
        self.pending = text[end.start() :]

    def finish(self, complete: bool) -> bool:
        """Emit the rest of the arguments; whether the call is complete."""
        if not self.started:
            return False
        tail = self.pending
        if complete:
            tail = tail.rstrip().removesuffix("}").rstrip()
        if tail:
            self.emit(CallArguments(tail))
        return complete
