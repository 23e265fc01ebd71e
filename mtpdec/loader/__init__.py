"""GGUF loading: ``open_gguf(path) -> GGUFFile`` with metadata, a per-architecture
config and zero-copy tensor views, all validated up front.

Configs are registered by ``general.architecture`` in ``mtpdec.loader.config.CONFIGS``
(``qwen35``, ``gemma3``).
"""

from __future__ import annotations

import os

from mtpdec.loader.config import (
    ATTENTION,
    CONFIGS,
    GDN,
    MTP,
    SLIDING,
    ModelConfig,
    TensorSpec,
    build_config,
)
from mtpdec.loader.gemma3 import Gemma3Config
from mtpdec.loader.qwen35 import Qwen35Config
from mtpdec.loader.reader import GGUFFile, read_gguf
from mtpdec.loader.validate import validate

__all__ = [
    "ATTENTION",
    "CONFIGS",
    "GDN",
    "MTP",
    "SLIDING",
    "GGUFFile",
    "Gemma3Config",
    "ModelConfig",
    "Qwen35Config",
    "TensorSpec",
    "open_gguf",
    "read_gguf",
]


def open_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Map, parse and validate a GGUF model file; MtpdecError (one line) on any problem.

    Checks, in order: the file exists and is a GGUF v2/v3 file, header and tensor data
    lie within the file, every tensor type id is known, the architecture is supported,
    required metadata is present and consistent, required tensors are present with the
    config's shapes, and every tensor the config uses has a type mtpdec computes with.
    """
    f = read_gguf(path)
    try:
        config = build_config(f)
        validate(f, config)
    except BaseException:
        f.close()
        raise
    f._config = config
    return f
