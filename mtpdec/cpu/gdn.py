"""Gated-DeltaNet pieces (qwen35.md): the causal depthwise conv and the delta-rule scan.

The recurrent state of a value head is kept transposed, ``M[j, i] = S[i, j]`` (d x d,
float32), so that every output channel j owns one contiguous row: the decay, the
``S^T k`` read, the rank-1 update and the ``S^T q`` read of row j touch that row only.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

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


def causal_conv(x: np.ndarray, conv_state: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Depthwise causal conv over time; conv_state updated in place.

    x: float32 (n, C) new inputs; conv_state: float32 (K-1, C), the previous K-1 inputs
    (oldest first); weight: float32 (C, K), last tap multiplies the current input.
    Returns float32 (n, C): out[t, c] = sum_j weight[c, j] * seq[t + j, c] over the
    sequence seq = conv_state ++ x, summed tap by tap in order.
    """
    taps = weight.shape[1]
    seq = np.concatenate([conv_state, x], axis=0)
    n = x.shape[0]
    out = seq[0:n] * weight[:, 0]
    for j in range(1, taps):
        out += seq[j : j + n] * weight[:, j]
    conv_state[:] = seq[n:]
    return out.astype(F32, copy=False)
