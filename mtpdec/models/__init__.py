"""Forward passes, one file per architecture, picked by ``general.architecture``.

``load_model(path)`` opens and validates a GGUF file and returns its Model
(``mtpdec.models.base.Model``).
"""

from __future__ import annotations

import os

from mtpdec.errors import MtpdecError
from mtpdec.loader import open_gguf
from mtpdec.models import gemma3 as _gemma3  # noqa: F401  (registers the architecture)
from mtpdec.models import qwen35 as _qwen35  # noqa: F401
from mtpdec.models.base import DEFAULT_DENSE_BUDGET, MODELS, Model

__all__ = ["MODELS", "Model", "load_model"]


def load_model(
    path: str | os.PathLike[str], dense_budget_bytes: int = DEFAULT_DENSE_BUDGET
) -> Model:
    """Open a GGUF model file for inference; MtpdecError (one line) on any problem.

    dense_budget_bytes: RAM the model may spend on dequantized fp32 copies of its
    matrices for batched prefill; used only when every matrix fits (else none).
    """
    f = open_gguf(path)
    builder = MODELS.get(f.architecture)
    if builder is None:
        f.close()
        raise MtpdecError(f"{f.path}: no forward pass for architecture {f.architecture!r}")
    return builder(f, dense_budget_bytes)
