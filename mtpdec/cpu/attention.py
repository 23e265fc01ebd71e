"""Causal softmax attention of a few query tokens over a position-indexed KV cache."""

from __future__ import annotations

import numpy as np
from numba import njit

F32 = np.float32


@njit(cache=True, fastmath={"reassoc", "contract"})
def _attend(q, k_cache, v_cache, positions, scale, window, out):  # pragma: no cover
    n_tok, n_head, hd_k = q.shape
    n_kv, n_ctx, hd_v = v_cache.shape
    group = n_head // n_kv
    probs = np.empty(n_ctx, dtype=np.float32)
    for t in range(n_tok):
        p = positions[t]
        lo = max(0, p - window + 1) if window > 0 else 0
        for h in range(n_head):
            g = h // group
            top = -np.inf
            for j in range(lo, p + 1):
                s = np.float32(0.0)
                for i in range(hd_k):
                    s += q[t, h, i] * k_cache[g, j, i]
                s *= scale
                probs[j] = s
                top = max(top, s)
            total = 0.0
            for j in range(lo, p + 1):
                e = np.exp(probs[j] - top)
                probs[j] = e
                total += e
            inv = np.float32(1.0 / total)
            for i in range(hd_v):
                out[t, h, i] = 0.0
            for j in range(lo, p + 1):
                w = probs[j] * inv
                for i in range(hd_v):
                    out[t, h, i] += w * v_cache[g, j, i]


def attend(
    q: np.ndarray,
    k_cache: np.ndarray,
    v_cache: np.ndarray,
    positions: np.ndarray,
    scale: float,
    window: int = 0,
) -> np.ndarray:
    """Attention output of each query token over the cached keys up to its own position.

    q:        float32 (k, n_head, hd_k), query token t sits at ``positions[t]``.
    k_cache:  float32 (n_kv, n_ctx, hd_k); v_cache: float32 (n_kv, n_ctx, hd_v); both
              already hold every position up to ``positions[-1]``.
    scale:    multiplies q.k before the softmax.
    window:   0 for full causal attention; else a key at position j is seen from
              position p only when p - j < window (sliding window, llama.cpp's rule).
    Returns float32 (k, n_head, hd_v). GQA: query head h reads kv head h // (n_head/n_kv).
    Each (token, head) is computed alone by the same loops, so a token's output does not
    depend on how many tokens came with it.
    """
    q = np.ascontiguousarray(q, dtype=F32)
    out = np.empty((q.shape[0], q.shape[1], v_cache.shape[2]), dtype=F32)
    pos = np.ascontiguousarray(positions, dtype=np.int64)
    _attend(q, k_cache, v_cache, pos, F32(scale), int(window), out)
    return out
