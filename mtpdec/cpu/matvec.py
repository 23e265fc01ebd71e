"""Public n-input MatVec: ``Y[n, rows] = X[n, cols] @ dequant(W)^T`` on the CPU.

Inputs are processed in groups of 4, 2 or 1 per weight read; a group of 3 is padded to
4 by repeating its last input (the padded output is discarded), as speculative.md
specifies. Every input's output row is bitwise identical whatever n and whatever its
position in a group (see ``mtpdec.cpu.kernel``).
"""

from __future__ import annotations

import numpy as np

from mtpdec.cpu.decoders import KERNEL_BLOCKS
from mtpdec.cpu.kernel import make_driver, subblock_sums
from mtpdec.errors import MtpdecError
from mtpdec.quants.types import GGMLType, ggml_type, type_name
from mtpdec.settings import apply_threads
from mtpdec.tensor import Tensor

_NO_SUMS = np.zeros((1, 8), dtype=np.float32)  # xsums for formats without a min term

# inputs per kernel call -> rows per step. Interleaving rows (more independent chains)
# wins in cache but loses from memory on the development machines (Q4_K n=1: 10.9 GB/s
# with 1 row per step, 5.2 with 4), so every width walks one row at a time.
ROWS_PER_STEP = {1: 1, 2: 1, 4: 1}


def group_widths(n: int) -> list[int]:
    """Kernel widths covering n inputs: 4s first, then 2 or 1 (3 -> one padded 4)."""
    widths = [4] * (n // 4)
    rest = n % 4
    if rest:
        widths.append({1: 1, 2: 2, 3: 4}[rest])
    return widths


def check_weight(w: Tensor) -> GGMLType:
    """The weight's type, after checking the kernel can read it (MtpdecError otherwise)."""
    t = ggml_type(w.ggml_type, tensor=w.name)
    elems = KERNEL_BLOCKS[t].elems
    if w.cols % elems:
        raise MtpdecError(
            f"tensor {w.name!r}: {type_name(t)} rows of {w.cols} elements are not a multiple of {elems}"
        )
    raw = w.raw
    if raw.dtype != np.uint8 or raw.ndim != 2 or not raw.flags.c_contiguous:
        raise MtpdecError(
            f"tensor {w.name!r}: raw bytes must be a C-contiguous uint8 (rows, row_bytes)"
        )
    if raw.shape[1] != w.cols // elems * KERNEL_BLOCKS[t].nbytes:
        raise MtpdecError(
            f"tensor {w.name!r}: {raw.shape[1]} bytes per row do not fit {w.cols} {t.name} elements"
        )
    return t


def matvec(w: Tensor, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``Y = X @ dequant(W)^T``.

    w:   a matrix Tensor (rows, cols) of a supported type.
    x:   float32 (n, cols) or (cols,); F32/F16/BF16 weights need cols % 16 == 0.
    out: optional float32 (n, rows) C-contiguous result buffer.
    Returns float32 (n, rows) (or (rows,) for 1-D x).
    """
    t = check_weight(w)
    x = np.asarray(x)
    if x.ndim not in (1, 2):
        raise MtpdecError(f"input must be (cols,) or (n, cols), got shape {x.shape}")
    squeeze = x.ndim == 1
    xs = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float32)
    n, cols = xs.shape
    if cols != w.cols:
        raise MtpdecError(f"tensor {w.name!r} has {w.cols} columns but the input has {cols}")
    rows = w.raw.shape[0]
    if out is None:
        out = np.empty((n, rows), dtype=np.float32)
    elif out.shape != (n, rows) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise MtpdecError(f"out must be a C-contiguous float32 array of shape {(n, rows)}")
    _run(t, w.raw, xs, out)
    return out[0] if squeeze else out


class MatVec:
    """A weight checked once, for repeated ``Y = X @ dequant(W)^T`` without per-call checks.

    ``__call__(x)``: x float32 C-contiguous (n, cols) -> new float32 (n, rows); the same
    kernels and grouping as ``matvec``, so the same bits.
    """

    def __init__(self, w: Tensor) -> None:
        self.type = check_weight(w)
        self.raw = w.raw
        self.rows, self.cols = w.raw.shape[0], w.cols
        self._mins = KERNEL_BLOCKS[self.type].mins
        self._single = make_driver(int(self.type), 1, ROWS_PER_STEP[1])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((x.shape[0], self.rows), dtype=np.float32)
        if x.shape[0] == 1:  # decode: the same driver call _run would make
            apply_threads()
            self._single(self.raw, x, subblock_sums(x) if self._mins else _NO_SUMS, out)
        else:
            _run(self.type, self.raw, x, out)
        return out


def _run(t: GGMLType, raw: np.ndarray, xs: np.ndarray, out: np.ndarray) -> None:
    """out[n, rows] = xs[n, cols] @ dequant(raw)^T in kernel groups of 4/2/1."""
    apply_threads()
    n, rows = out.shape
    xsums = subblock_sums(xs) if KERNEL_BLOCKS[t].mins else _NO_SUMS
    start = 0
    for width in group_widths(n):
        real = min(width, n - start)
        driver = make_driver(int(t), width, ROWS_PER_STEP[width])
        if real == width:
            sums = xsums[start : start + width] if xsums is not _NO_SUMS else xsums
            driver(raw, xs[start : start + width], sums, out[start : start + width])
        else:
            pad = np.repeat(np.arange(start, n), [1] * (real - 1) + [width - real + 1])
            sums = xsums[pad] if xsums is not _NO_SUMS else xsums
            scratch = np.empty((width, rows), dtype=np.float32)
            driver(raw, xs[pad], sums, scratch)
            out[start:n] = scratch[:real]
        start += real
