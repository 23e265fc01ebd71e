"""The machine's memory read bandwidth, measured the way the kernels read weights."""

from __future__ import annotations

import time

import numpy as np
from numba import njit, prange

_CHUNKS = 256
_LANES = 16  # float64 lanes: the loop shape Numba turns into the fastest plain read here


@njit(parallel=True, cache=True, nogil=True)
def _read_all(a):
    """Sum of a float64[n] array read once, in parallel chunks (n % (chunks*lanes) == 0)."""
    chunk = a.shape[0] // _CHUNKS
    partial = np.zeros(_CHUNKS, dtype=np.float64)
    for c in prange(_CHUNKS):
        acc = np.zeros(_LANES, dtype=np.float64)
        for i in range(c * chunk, (c + 1) * chunk, _LANES):
            for lane in range(_LANES):
                acc[lane] += a[i + lane]
        partial[c] = acc.sum()
    return partial.sum()


def read_bandwidth(size_mb: int = 512, repeats: int = 7) -> float:
    """Median GB/s (1e9 bytes/s) of a plain parallel read of a ``size_mb`` MiB buffer."""
    n = (size_mb << 20) // 8 // (_CHUNKS * _LANES) * (_CHUNKS * _LANES)
    a = np.ones(n, dtype=np.float64)
    _read_all(a)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _read_all(a)
        times.append(time.perf_counter() - t0)
    return a.nbytes / float(np.median(times)) / 1e9
