"""Causal softmax attention of a few query tokens over a position-indexed KV cache."""

from __future__ import annotations

import numpy as np

F32 = np.float32


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
    Tokens are processed one at a time, so a token's output does not depend on k.
    """
    n_tok, n_head, _ = q.shape
    n_kv = k_cache.shape[0]
    group = n_head // n_kv
    out = np.empty((n_tok, n_head, v_cache.shape[2]), dtype=F32)
    s = F32(scale)
    for t in range(n_tok):
        p = int(positions[t])
        lo = max(0, p - window + 1) if window > 0 else 0
        for g in range(n_kv):
            heads = slice(g * group, (g + 1) * group)
            scores = (q[t, heads] @ k_cache[g, lo : p + 1].T) * s  # (group, L)
            scores -= scores.max(axis=1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=1, keepdims=True)
            out[t, heads] = scores @ v_cache[g, lo : p + 1]
    return out
