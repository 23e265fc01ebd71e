"""Gated-DeltaNet pieces (qwen35.md): the causal depthwise conv and the delta-rule scan.

The recurrent state of a value head is kept transposed, ``M[j, i] = S[i, j]`` (d x d,
float32), so that every output channel j owns one contiguous row: the decay, the
``S^T k`` read, the rank-1 update and the ``S^T q`` read of row j touch that row only.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from mtpdec.cpu.ops import silu
from mtpdec.cpu.stream import ALIGN, is_aligned, stream_copy

F32 = np.float32


def _delta_rule_body(m, q, k, v, g, beta, scale, out, pool, slots, stream):  # pragma: no cover
    """Tokens one after another through every value head; m updated in place.

    m: float32 (H_v, d, d) transposed states; q, k: float32 (n, H_k, d) (l2-normalised);
    v: float32 (n, H_v, d); g, beta: float32 (n, H_v); out: float32 (n, H_v, d);
    pool: float32 (P, H_v, d, d), slots: int64 (count,): the state after token t goes to
    pool[slots[t]] for t < count, by streaming stores when ``stream`` (every pool[i, h]
    64-byte aligned).
    Value head h reads key head h % H_k. Heads run in parallel (the parallel build),
    each one walks all tokens with its 64 KB state in cache.
    """
    n, h_v, d = v.shape
    h_k = q.shape[1]
    count = slots.shape[0]
    for h in prange(h_v):
        kh = h % h_k
        for t in range(n):
            decay = np.float32(np.exp(g[t, h]))
            for j in range(d):
                row = m[h, j]
                acc = np.float32(0.0)
                for i in range(d):
                    row[i] = row[i] * decay
                    acc += row[i] * k[t, kh, i]
                delta = (v[t, h, j] - acc) * beta[t, h]
                o = np.float32(0.0)
                for i in range(d):
                    row[i] = row[i] + delta * k[t, kh, i]
                    o += row[i] * q[t, kh, i]
                out[t, h, j] = o * scale
            if t < count:
                if stream:
                    stream_copy(pool[slots[t], h], m[h])
                else:
                    pool[slots[t], h] = m[h]


def delta_rule(
    m: np.ndarray,
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    g: np.ndarray,
    beta: np.ndarray,
    ring: np.ndarray | None = None,
    ring_slots: np.ndarray | None = None,
) -> np.ndarray:
    """Run tokens through the gated delta rule one after another; m updated in place.

    m: float32 (H_v, d, d) transposed state (``M[h, j, i] = S_h[i, j]``).
    q, k: float32 (n, H_k, d), l2-normalised; v: float32 (n, H_v, d);
    g (log decay, < 0), beta: float32 (n, H_v).
    ring: optional float32 (P, H_v, d, d) snapshot buffers; ring_slots: int64 (count,)
    indices into it (default: 0..P-1): ring[ring_slots[t]] receives the state after token
    t (t < count), for rollback after a verify; written with streaming stores (no cache
    pollution, no read-for-ownership) when each slot's head is 64-byte aligned
    (``RecurrentState`` allocates it so), by plain copies otherwise; same bits.
    Per token: S = exp(g) S; u = beta (v - S^T k); S += k u^T; o = S^T q / sqrt(d).
    Returns o float32 (n, H_v, d).
    """
    n, h_v, d = v.shape
    out = np.empty((n, h_v, d), dtype=F32)
    scale = F32(1.0 / np.sqrt(np.float32(d)))
    if ring is None:
        ring = np.empty((0, h_v, d, d), dtype=F32)
    if ring_slots is None:
        ring_slots = np.arange(len(ring), dtype=np.int64)
    stream = is_aligned(ring) and (d * d * 4) % ALIGN == 0
    run = _delta_rule_parallel if 3 * n * h_v * d * d >= PARALLEL_MIN_MACS else _delta_rule_serial
    run(m, q, k, v, g, beta, scale, out, ring, ring_slots, stream)
    return out


# One source, two builds: serial for small problems (a tiny model's few heads: no thread
# start-up, which costs more than the work on a busy 2-core machine), parallel over the
# value heads otherwise. A head is computed by the same loops either way: the same bits.
_FLAGS = {"cache": True, "fastmath": {"reassoc", "contract"}}
_delta_rule_serial = njit(**_FLAGS)(_delta_rule_body)
_delta_rule_parallel = njit(parallel=True, **_FLAGS)(_delta_rule_body)
PARALLEL_MIN_MACS = 1 << 20  # state multiply-adds per call from which threads pay off


@njit(cache=True)
def _copy_row(dst, src):  # pragma: no cover - compiled
    """dst[:] = src for float32 rows (an explicit loop: Numba's slice assignment is
    several times slower on these short rows)."""
    for c in range(dst.shape[0]):
        dst[c] = src[c]


@njit(cache=True)
def _conv(x, state, taps_w, out, ring):  # pragma: no cover - compiled
    """x (n, C), state (K-1, C), taps_w (K, C) float32; out (n, C) = the conv.

    Each output element is (w0 s0) + w1 s1 + ... in tap order; the channel loop is the
    inner one (contiguous rows), which changes nothing per element. ring (slots, K-1, C)
    receives the conv state after token t (rows t+1..t+K-1 of state ++ x) for t < slots.
    """
    n, channels = x.shape
    past = state.shape[0]
    for t in range(n):
        o = out[t]
        for j in range(past + 1):
            src = t + j  # index into state ++ x
            row = state[src] if src < past else x[src - past]
            w = taps_w[j]
            if j == 0:
                for c in range(channels):
                    o[c] = w[c] * row[c]
            else:
                for c in range(channels):
                    o[c] = o[c] + w[c] * row[c]
    for t in range(min(ring.shape[0], n)):
        for r in range(past):
            src = t + 1 + r
            _copy_row(ring[t, r], state[src] if src < past else x[src - past])
    keep = min(past, n)
    for r in range(past - keep):  # older state rows shift up
        _copy_row(state[r], state[r + keep])
    for r in range(keep):
        _copy_row(state[past - keep + r], x[n - keep + r])


def causal_conv_silu(
    x: np.ndarray, conv_state: np.ndarray, taps_w: np.ndarray, ring: np.ndarray | None = None
) -> np.ndarray:
    """SiLU of the depthwise causal conv over time; conv_state updated in place.

    x: float32 (n, C) new inputs; conv_state: float32 (K-1, C), the previous K-1 inputs
    (oldest first); taps_w: float32 (K, C), ``ssm_conv1d`` transposed: the last tap
    multiplies the current input. ring: optional float32 (slots, K-1, C); ring[t]
    receives the conv state after token t (t < slots). Returns float32 (n, C):
    silu(sum_j taps_w[j, c] * seq[t + j, c]) over seq = conv_state ++ x, summed tap by
    tap in order.
    """
    x = np.ascontiguousarray(x, dtype=F32)
    if ring is None:
        ring = np.empty((0,) + conv_state.shape, dtype=F32)
    out = np.empty_like(x)
    _conv(x, conv_state, taps_w, out, ring)
    return silu(out)
