"""mtpdec: speculative decoding for GGUF models on one box.

Public API (see README "Python API"), imported lazily so that light commands stay fast:

- ``open_gguf(path) -> GGUFFile``: memory-mapped GGUF file: metadata, config, tensors.
- ``dequantize(tensor) -> np.ndarray``: float32 values of a tensor, numpy shape.
- ``matvec(tensor, x) -> np.ndarray``: ``Y[n, rows] = X[n, cols] @ W^T`` with the
  n-input Numba kernels (each weight block read once for all n inputs).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "GGUFFile": "mtpdec.loader",
    "open_gguf": "mtpdec.loader",
    "dequantize": "mtpdec.quants",
    "quantize": "mtpdec.quants",
    "matvec": "mtpdec.cpu.matvec",
    "MtpdecError": "mtpdec.errors",
    "Tensor": "mtpdec.tensor",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mtpdec' has no attribute {name!r}")
