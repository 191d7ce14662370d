"""The `local` provider: GGUF models run in-process by llama.cpp (see `provider`).

`provider` is the async face, `worker` the blocking generation loop on the model's thread,
`request` and `grammar` turn an OpenAI body into what the worker needs, `files` finds the
weights, and `llama_patch` holds the one change made to llama-cpp-python's private API.
"""

from loom.inference.local.provider import LocalProvider

__all__ = ["LocalProvider"]
