"""Forward passes, one file per architecture, picked by ``general.architecture``.

``load_model(path)`` opens and validates a GGUF file and returns its Model
(``mtpdec.models.base.Model``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from mtpdec.cpu.matvec import check_activations
from mtpdec.errors import MtpdecError
from mtpdec.loader import open_gguf
from mtpdec.models import gemma3 as _gemma3  # noqa: F401  (registers the architecture)
from mtpdec.models import qwen35 as _qwen35  # noqa: F401
from mtpdec.models.base import DEFAULT_ACTIVATIONS, DEFAULT_DENSE_BUDGET, MODELS, Model

if TYPE_CHECKING:
    from mtpdec.gpu.placement import DeviceOptions

__all__ = ["MODELS", "Model", "load_model"]


def load_model(
    path: str | os.PathLike[str],
    dense_budget_bytes: int = DEFAULT_DENSE_BUDGET,
    activations: str = DEFAULT_ACTIVATIONS,
    device: DeviceOptions | None = None,
    on_layer: Callable[[int, int], None] | None = None,
) -> Model:
    """Open a GGUF model file for inference; MtpdecError (one line) on any problem.

    dense_budget_bytes: RAM the model may spend on dequantized fp32 copies of its
    matrices for batched prefill (``forward(..., prefill=True)``); used only when every
    matrix fits (else none).
    activations: "q8" (default: every quantized matmul rounds its input rows to 8 bits
    and uses integer dot products, as llama.cpp does) or "f32" (exact float32 inputs).
    A GPU trunk multiplies with float32 inputs, its only mode; ``activations`` then
    applies to the FFN layers on the CPU.
    device: where the parts run (``mtpdec.gpu.placement.DeviceOptions``; default all on
    the CPU); the plan is kept as ``model.placement``. on_layer(i, n): called as the
    trunk layers are built (a GPU model uploads their weights), for a progress bar.
    """
    check_activations(activations)
    if device is not None:
        device.check()
    f = open_gguf(path)
    builder = MODELS.get(f.architecture)
    if builder is None:
        f.close()
        raise MtpdecError(f"{f.path}: no forward pass for architecture {f.architecture!r}")
    if device is None or device.device == "cpu":
        return builder(f, dense_budget_bytes, activations)
    from mtpdec.gpu.placement import backends_for

    try:
        backends, plan = backends_for(f, device)
        model = builder(f, dense_budget_bytes, activations, backends, on_layer)  # type: ignore[call-arg]
    except BaseException:
        f.close()
        raise
    model.placement = plan  # type: ignore[attr-defined]
    return model
