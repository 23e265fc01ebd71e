"""The machine's memory read bandwidth, measured with the plain-float streaming kernel.

A plain read of a float32 matrix: the F32 MatVec kernel with one input reads each
16-float vector once and does one fused multiply-add with it. On the development
machines it reads faster than any plain Numba loop we wrote (those reach 60-80% of
it), so it is the fairest ceiling to hold the quantized kernels against.
"""

from __future__ import annotations

import time

import numpy as np

from mtpdec.cpu.matvec import matvec
from mtpdec.quants.types import GGMLType
from mtpdec.tensor import Tensor

_COLS = 4096


def read_bandwidth(size_mb: int = 512, repeats: int = 7) -> float:
    """Median GB/s (1e9 bytes/s) of reading a ``size_mb`` MiB float32 buffer once."""
    rows = (size_mb << 20) // (4 * _COLS)
    data = np.ones((rows, _COLS), dtype=np.float32)
    w = Tensor("bandwidth", int(GGMLType.F32), (rows, _COLS), data.view(np.uint8))
    x = np.ones((1, _COLS), dtype=np.float32)
    out = np.empty((1, rows), dtype=np.float32)
    matvec(w, x, out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        matvec(w, x, out)
        times.append(time.perf_counter() - t0)
    return data.nbytes / float(np.median(times)) / 1e9
