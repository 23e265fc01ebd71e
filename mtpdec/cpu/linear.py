"""Linear maps of GGUF matrices on the CPU: ``Linear`` (one matrix), ``LinearGroup``
(several matrices reading one input), and the numerics a model fixes for them.

Every map treats each input row with the same operations whatever the number of rows.
The one exception is asked for by name: ``prefill=True`` (a prompt) lets ``Linear``
multiply batches of DENSE_MIN_ROWS or more rows densely with exact float32 inputs (not
bitwise the kernels' results). A decode or verify forward never passes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mtpdec.cpu.matvec import SERIAL_MAX_BYTES, InputRows, MatVec, as_rows, check_activations
from mtpdec.quants import dequantize
from mtpdec.tensor import Tensor

F32 = np.float32
DENSE_MIN_ROWS = 9  # prefill batches of at least this many rows may use dense fp32 weights


class DenseBudget:
    """How many bytes of dequantized fp32 weights a model may keep for batched prefill."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit, self.used = limit_bytes, 0

    def take(self, nbytes: int) -> bool:
        """Reserve nbytes; False (nothing reserved) when that would pass the limit."""
        if self.used + nbytes > self.limit:
            return False
        self.used += nbytes
        return True


@dataclass(frozen=True)
class Numerics:
    """How a model's matrices multiply, fixed when it is loaded.

    activations: "q8" (inputs rounded to 8 bits, integer dot products) or "f32"
      (``mtpdec.cpu.matvec``).
    budget: fp32 weight copies for dense prefill; None: the kernels only (the LM head).
    serial_max_bytes: matrices up to this size run their kernels in the calling thread,
      bigger ones on the worker threads (the same bits either way; ``MatVec``).
    """

    activations: str = "q8"
    budget: DenseBudget | None = None
    serial_max_bytes: int = SERIAL_MAX_BYTES

    def __post_init__(self) -> None:
        check_activations(self.activations)

    def kernels_only(self) -> Numerics:
        return replace(self, budget=None)

    def on(self, fixed_activations: str | None) -> Numerics:
        """These numerics on a backend whose matrices take only ``fixed_activations``
        (``Ops.fixed_activations``; None: any mode, the numerics unchanged). Such a
        backend has no dense prefill copies either."""
        if fixed_activations is None:
            return self
        return Numerics(fixed_activations, None, self.serial_max_bytes)


class Linear:
    """``y = x @ W^T`` for a GGUF matrix W (rows, cols).

    x float32 (k, cols) (or an InputRows) -> float32 (k, rows), through the n-input
    kernels in the model's activation mode: every row bitwise the same whatever k. With
    ``prefill=True`` and at least DENSE_MIN_ROWS rows, a matrix whose fp32 copy fits the
    budget is multiplied densely (BLAS) with the exact float32 inputs, in both modes:
    faster for long prompts (rounding the rows to 8 bits and back cost 20% of Gemma's
    prefill), as exact as the f32 kernels.
    """

    def __init__(self, w: Tensor, numerics: Numerics, keep_file_pages: bool = False) -> None:
        self.w, self.budget = w, numerics.budget
        self.kernel = MatVec(
            w,
            numerics.activations,
            keep_file_pages=keep_file_pages,
            parallel=w.nbytes > numerics.serial_max_bytes,
        )
        self.dense: np.ndarray | None = None
        self._dense_refused = self.budget is None

    @property
    def dense_nbytes(self) -> int:
        """Bytes of W's float32 copy for the dense path."""
        return 4 * self.w.rows * self.w.cols

    def prepare_dense(self) -> bool:
        """Dequantize W once for the dense path if the budget allows; True when ready."""
        if self.dense is None and not self._dense_refused:
            if self.budget is not None and self.budget.take(self.dense_nbytes):
                self.dense = np.ascontiguousarray(dequantize(self.w))
            else:
                self._dense_refused = True
        return self.dense is not None

    def __call__(self, x: np.ndarray | InputRows, prefill: bool = False) -> np.ndarray:
        rows = as_rows(x)
        if prefill and rows.n >= DENSE_MIN_ROWS and self.prepare_dense():
            return np.ascontiguousarray(rows.x @ self.dense.T, dtype=F32)
        return self.kernel(rows)


FUSE_LIMIT_BYTES = 16 << 20  # matrices at most this big are copied into fused ones


class LinearGroup:
    """Several matrices applied to the same input: ``x -> [x @ W_i^T for each i]``.

    Consecutive matrices of the same type and width, each at most FUSE_LIMIT_BYTES, are
    copied once into one fused matrix, so one kernel call reads them all (fewer calls
    per token; the copy costs RAM equal to those small matrices). Rows of a fused call
    get the same bits as separate calls: every row is computed independently.
    make(tensor, numerics): the linear map of one (fused) matrix; share(x): the input as
    the maps take it, made once for all of them (CPU: ``InputRows``, rounded to 8 bits
    once). Both default to the CPU's.
    """

    def __init__(
        self,
        tensors: list[Tensor],
        numerics: Numerics,
        make: Callable[[Tensor, Numerics], Any] = Linear,
        share: Callable[[Any], Any] = InputRows,
    ) -> None:
        self.share = share
        self.parts: list[tuple[Any, list[tuple[int, int]]]] = []
        run: list[Tensor] = []
        for t in tensors + [None]:  # type: ignore[list-item]
            if run and (t is None or not _fusable(run[-1], t)):
                ends = np.cumsum([r.rows for r in run]).tolist()
                spans = list(zip([0] + ends[:-1], ends))
                self.parts.append((make(_concat(run), numerics), spans))
                run = []
            if t is not None:
                run.append(t)

    def linears(self) -> list[Any]:
        return [lin for lin, _ in self.parts]

    def __call__(self, x: Any, prefill: bool = False) -> list[Any]:
        """x float32 (k, cols) -> [float32 (k, rows_i)] per matrix, in the given order
        (column slices of one fused output where matrices were fused)."""
        rows = self.share(x)
        outs: list[Any] = []
        for lin, spans in self.parts:
            y = lin(rows, prefill)
            outs += [y[:, a:b] for a, b in spans] if len(spans) > 1 else [y]
        return outs


def _fusable(a: Tensor, b: Tensor) -> bool:
    small = max(a.nbytes, b.nbytes) <= FUSE_LIMIT_BYTES
    return small and a.ggml_type == b.ggml_type and a.cols == b.cols and len(b.shape) == 2


def _concat(tensors: list[Tensor]) -> Tensor:
    if len(tensors) == 1:
        return tensors[0]
    raw = np.concatenate([t.raw for t in tensors], axis=0)
    name = "+".join(t.name for t in tensors)
    return Tensor(name, tensors[0].ggml_type, (raw.shape[0], tensors[0].cols), raw)
