"""Gated-DeltaNet pieces (qwen35.md): the causal depthwise conv and the delta-rule scan.

The recurrent state of a value head is kept transposed, ``M[j, i] = S[i, j]`` (d x d,
float32), so that every output channel j owns one contiguous row: the decay, the
``S^T k`` read, the rank-1 update and the ``S^T q`` read of row j touch that row only.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from mtpdec.cpu.ops import silu

F32 = np.float32


@njit(cache=True, parallel=True, fastmath={"reassoc", "contract"})
def _delta_rule_token(m, q, k, v, g, beta, scale, out):  # pragma: no cover - compiled
    """One token through every value head; updates m in place.

    m: float32 (H_v, d, d) transposed states; q, k: float32 (H_k, d) (l2-normalised);
    v: float32 (H_v, d); g, beta: float32 (H_v,); out: float32 (H_v, d).
    Value head h reads key head h % H_k.
    """
    h_v, d = v.shape
    h_k = q.shape[0]
    for h in prange(h_v):
        kh = h % h_k
        decay = np.float32(np.exp(g[h]))
        for j in range(d):
            row = m[h, j]
            acc = np.float32(0.0)
            for i in range(d):
                row[i] = row[i] * decay
                acc += row[i] * k[kh, i]
            delta = (v[h, j] - acc) * beta[h]
            o = np.float32(0.0)
            for i in range(d):
                row[i] = row[i] + delta * k[kh, i]
                o += row[i] * q[kh, i]
            out[h, j] = o * scale


def delta_rule(
    m: np.ndarray,
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    g: np.ndarray,
    beta: np.ndarray,
) -> np.ndarray:
    """Run tokens through the gated delta rule one after another; m updated in place.

    m: float32 (H_v, d, d) transposed state (``M[h, j, i] = S_h[i, j]``).
    q, k: float32 (n, H_k, d), l2-normalised; v: float32 (n, H_v, d);
    g (log decay, < 0), beta: float32 (n, H_v).
    Per token: S = exp(g) S; u = beta (v - S^T k); S += k u^T; o = S^T q / sqrt(d).
    Returns o float32 (n, H_v, d).
    """
    n, h_v, d = v.shape
    out = np.empty((n, h_v, d), dtype=F32)
    scale = F32(1.0 / np.sqrt(np.float32(d)))
    for t in range(n):
        _delta_rule_token(m, q[t], k[t], v[t], g[t], beta[t], scale, out[t])
    return out


@njit(cache=True)
def _conv(x, state, taps_w, out):  # pragma: no cover - compiled
    """x (n, C), state (K-1, C), taps_w (K, C) float32; out (n, C) = the conv."""
    n, channels = x.shape
    past = state.shape[0]
    for t in range(n):
        for c in range(channels):
            acc = np.float32(0.0)
            for j in range(past + 1):
                src = t + j  # index into state ++ x
                v = state[src, c] if src < past else x[src - past, c]
                acc = acc + taps_w[j, c] * v if j else taps_w[j, c] * v
            out[t, c] = acc
    keep = min(past, n)
    for r in range(past - keep):  # older state rows shift up
        for c in range(channels):
            state[r, c] = state[r + keep, c]
    for r in range(keep):
        for c in range(channels):
            state[past - keep + r, c] = x[n - keep + r, c]


def causal_conv_silu(x: np.ndarray, conv_state: np.ndarray, taps_w: np.ndarray) -> np.ndarray:
    """SiLU of the depthwise causal conv over time; conv_state updated in place.

    x: float32 (n, C) new inputs; conv_state: float32 (K-1, C), the previous K-1 inputs
    (oldest first); taps_w: float32 (K, C), ``ssm_conv1d`` transposed: the last tap
    multiplies the current input. Returns float32 (n, C): silu(sum_j taps_w[j, c] *
    seq[t + j, c]) over seq = conv_state ++ x, summed tap by tap in order.
    """
    x = np.ascontiguousarray(x, dtype=F32)
    out = np.empty_like(x)
    _conv(x, conv_state, taps_w, out)
    return silu(out)
