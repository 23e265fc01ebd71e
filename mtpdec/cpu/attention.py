"""Causal softmax attention of a few query tokens over a position-indexed KV cache."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

F32 = np.float32


def _attend_body(q, k_cache, v_cache, positions, scale, window, probs, out):  # pragma: no cover
    """One (token, head) pair per loop step; probs: float32 scratch (n_tok * n_head, L)."""
    n_tok, n_head, hd_k = q.shape
    n_kv, _, hd_v = v_cache.shape
    group = n_head // n_kv
    for th in prange(n_tok * n_head):
        t, h = th // n_head, th % n_head
        g = h // group
        p = positions[t]
        lo = max(0, p - window + 1) if window > 0 else 0
        row = probs[th]
        qv = q[t, h]
        top = np.float32(-np.inf)
        for j in range(lo, p + 1):
            kv = k_cache[g, j]
            s = np.float32(0.0)
            for i in range(hd_k):
                s += qv[i] * kv[i]
            s *= scale
            row[j - lo] = s
            top = max(top, s)
        total = 0.0  # float64 sum of the exponentials (as ggml's softmax)
        for j in range(p + 1 - lo):
            e = np.exp(row[j] - top)
            row[j] = e
            total += e
        inv = np.float32(1.0 / total)
        acc = np.zeros(hd_v, dtype=np.float32)  # a local row: no aliasing with the cache
        for j in range(p + 1 - lo):
            w = row[j] * inv
            vv = v_cache[g, lo + j]
            for i in range(hd_v):
                acc[i] += w * vv[i]
        out[t, h] = acc


# One source, two builds: serial for small problems (no thread start-up), parallel over
# (token, head) pairs for long contexts and verify batches. Each pair is computed by the
# same loops either way, so the bits do not depend on the build or on the batch.
_FLAGS = {"cache": True, "fastmath": {"reassoc", "contract"}}
_attend_serial = njit(**_FLAGS)(_attend_body)
_attend_parallel = njit(parallel=True, **_FLAGS)(_attend_body)
PARALLEL_MIN_MACS = 1 << 20  # q.k and p.v multiply-adds from which threads pay off


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
    n_tok, n_head, hd_k = q.shape
    out = np.empty((n_tok, n_head, v_cache.shape[2]), dtype=F32)
    pos = np.ascontiguousarray(positions, dtype=np.int64)
    span = int(pos.max()) + 1 if window <= 0 else min(int(pos.max()) + 1, window)
    probs = np.empty((n_tok * n_head, span), dtype=F32)
    macs = n_tok * n_head * span * (hd_k + v_cache.shape[2])
    kernel = _attend_parallel if macs >= PARALLEL_MIN_MACS else _attend_serial
    kernel(q, k_cache, v_cache, pos, F32(scale), int(window), probs, out)
    return out
