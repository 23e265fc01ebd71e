"""Fast activation quantizers computing exactly ``mtpdec.quants.activations``' reference
(same float32 operations, so the same bits; tested): Q8_K in vector IR
(``mtpdec.cpu.actquant_ir``), Q8_0 as a Numba loop. Float division follows
numpy (inf/nan, no exception), as the reference does for non-finite activations.

``quantize_rows(x, kind)``: float32 (n, cols) C-contiguous -> ``QuantizedRows``;
``words_rows(rows)``: Q8_K rows -> the same values as ``Q8_K_WORDS`` rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mtpdec.cpu.actquant_ir import q8_k_driver
from mtpdec.quants.activations import (
    Q8_K,
    Q8_K_WORDS,
    ActivationKind,
    QuantizedRows,
    check_rows,
    check_words,
)

F32 = np.float32


@njit(cache=True, nogil=True)
def _round_to_half(d, bits, r, blk):  # pragma: no cover - compiled
    """d[r, blk] rounded in place to the nearest float16 value (ties to even); ``bits`` is
    d viewed as uint32 (Numba has no float16 scalars). Normal range: the mantissa rounded
    to 10 bits on the bit pattern; below 2^-14 (float16 subnormals): to a multiple of
    2^-24; from 65520 on: inf."""
    v = d[r, blk]
    a = abs(v)
    if a >= np.float32(65520.0):
        d[r, blk] = np.float32(np.inf) if v > 0 else np.float32(-np.inf)
    elif a < np.float32(6.103515625e-05):
        d[r, blk] = np.rint(v * np.float32(16777216.0)) / np.float32(16777216.0)
    else:
        u = bits[r, blk]
        u = (u + np.uint32(0x0FFF) + ((u >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)
        bits[r, blk] = u


@njit(cache=True, nogil=True, error_model="numpy")
def _q8_0(x, q, d, sums, dsums, d_bits):  # pragma: no cover - compiled
    n, cols = x.shape
    for r in range(n):
        for blk in range(cols // 32):
            at = blk * 32
            amax = np.float32(0.0)
            for j in range(32):
                amax = max(amax, abs(x[r, at + j]))
            d[r, blk] = amax / np.float32(127.0)
            _round_to_half(d, d_bits, r, blk)
            inv = np.float32(127.0) / amax if amax != 0 else np.float32(0.0)
            s = 0
            for j in range(32):
                v = np.int8(np.rint(x[r, at + j] * inv))
                q[r, at + j] = v
                s += v
            sums[r, blk] = s
            dsums[r, blk] = d[r, blk] * np.float32(s)


@njit(cache=True, nogil=True)
def _words(q, q_words):  # pragma: no cover - compiled
    n, cols = q.shape
    for r in range(n):
        for at in range(0, cols, 256):
            for j in range(16):
                for s in range(4):
                    for t in range(4):
                        v = q[r, at + 16 * j + 4 * s + t] ^ np.int8(-128)
                        q_words[r, at + 64 * s + 4 * j + t] = v


def words_rows(rows: QuantizedRows) -> QuantizedRows:
    """Q8_K rows -> the same values as Q8_K_WORDS rows (``words_rows_ref``'s bits)."""
    check_words(rows.q.shape[1])
    q = np.empty_like(rows.q)
    _words(rows.q, q)
    return QuantizedRows(Q8_K_WORDS, q, rows.d, rows.sums, rows.dsums)


def quantize_rows(x: np.ndarray, kind: ActivationKind) -> QuantizedRows:
    """float32 (n, cols) -> 8-bit rows of ``kind`` (Q8_K, Q8_K256, Q8_K_WORDS or Q8_0)."""
    if kind.words:
        return words_rows(quantize_rows(x, Q8_K))
    if not (x.dtype == F32 and x.ndim == 2 and x.flags.c_contiguous):  # else: decode's case
        x = np.ascontiguousarray(x, dtype=F32)
    if x.ndim != 2 or x.shape[1] % kind.block:
        check_rows(x, kind)  # raises the one-line error
    n, cols = x.shape
    q = np.empty((n, cols), dtype=np.int8)
    d = np.empty((n, cols // kind.block), dtype=F32)
    sums = np.empty((n, cols // kind.sum_span), dtype=np.int16)
    dsums = np.empty((n, cols // kind.sum_span), dtype=F32)
    if kind.ggml_type == Q8_K.ggml_type:
        q8_k_driver()(x, q, d, sums, dsums)
    else:
        _q8_0(x, q, d, sums, dsums, d.view(np.uint32))
    return QuantizedRows(kind, q, d, sums, dsums)
