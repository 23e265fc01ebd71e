"""Forward passes, one file per architecture, picked by ``general.architecture``.

``load_model(path)`` opens and validates a GGUF file and returns its Model
(``mtpdec.models.base.Model``).
"""

from __future__ import annotations

import os

from mtpdec.cpu.matvec import check_activations
from mtpdec.errors import MtpdecError
from mtpdec.loader import open_gguf
from mtpdec.models import gemma3 as _gemma3  # noqa: F401  (registers the architecture)
from mtpdec.models import qwen35 as _qwen35  # noqa: F401
from mtpdec.models.base import DEFAULT_ACTIVATIONS, DEFAULT_DENSE_BUDGET, MODELS, Model

__all__ = ["MODELS", "Model", "load_model"]


def load_model(
    path: str | os.PathLike[str],
    dense_budget_bytes: int = DEFAULT_DENSE_BUDGET,
    activations: str = DEFAULT_ACTIVATIONS,
) -> Model:
    """Open a GGUF model file for inference; MtpdecError (one line) on any problem.

    dense_budget_bytes: RAM the model may spend on dequantized fp32 copies of its
    matrices for batched prefill (``forward(..., prefill=True)``); used only when every
    matrix fits (else none).
    activations: "q8" (default: every quantized matmul rounds its input rows to 8 bits
    and uses integer dot products, as llama.cpp does) or "f32" (exact float32 inputs).
    """
    check_activations(activations)
    f = open_gguf(path)
    builder = MODELS.get(f.architecture)
    if builder is None:
        f.close()
        raise MtpdecError(f"{f.path}: no forward pass for architecture {f.architecture!r}")
    return builder(f, dense_budget_bytes, activations)
