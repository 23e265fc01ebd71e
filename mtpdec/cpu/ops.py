"""Row-wise CPU ops of the forward passes: norms, activations, rotary embedding.

Every op treats each row (token) independently with the same float operations whatever
the number of rows, so a token's result does not depend on how many tokens were batched
with it (speculative.md's bit-identity contract). Numerics follow llama.cpp's CPU ops
(ggml-cpu/ops.cpp, vec.h) where it is cheap to do so: float64 sums of squares in the
norms and float32 chained rotary angles.
"""

from __future__ import annotations

import numpy as np
from numba import njit

F32 = np.float32


@njit(cache=True)
def _rmsnorm_rows(x, w, eps, out):  # pragma: no cover - compiled
    """x, out: float32 (rows, d); w: float32 (d,). out = x / sqrt(mean(x^2) + eps) * w."""
    rows, d = x.shape
    for r in range(rows):
        acc = 0.0
        for i in range(d):
            v = np.float64(x[r, i])
            acc += v * v
        mean = np.float32(acc / d)
        scale = np.float32(1.0) / np.sqrt(mean + eps)
        for i in range(d):
            out[r, i] = (x[r, i] * scale) * w[i]


@njit(cache=True)
def _l2norm_rows(x, eps, out):  # pragma: no cover - compiled
    """x, out: float32 (rows, d). out = x / max(sqrt(sum(x^2)), eps) (llama.cpp l2_norm)."""
    rows, d = x.shape
    for r in range(rows):
        acc = 0.0
        for i in range(d):
            v = np.float64(x[r, i])
            acc += v * v
        scale = np.float32(1.0) / max(np.float32(np.sqrt(acc)), eps)
        for i in range(d):
            out[r, i] = x[r, i] * scale


def rmsnorm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """RMSNorm over the last axis: x float32 (..., d), w float32 (d,) -> float32 (..., d)."""
    x = np.ascontiguousarray(x, dtype=F32)
    flat = x.reshape(-1, x.shape[-1])
    out = np.empty_like(flat)
    _rmsnorm_rows(flat, w, F32(eps), out)
    return out.reshape(x.shape)


def l2norm(x: np.ndarray, eps: float) -> np.ndarray:
    """L2 normalisation over the last axis: float32 (..., d) -> float32 (..., d)."""
    x = np.ascontiguousarray(x, dtype=F32)
    flat = x.reshape(-1, x.shape[-1])
    out = np.empty_like(flat)
    _l2norm_rows(flat, F32(eps), out)
    return out.reshape(x.shape)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """float32 1 / (1 + exp(-x))."""
    return (F32(1) / (F32(1) + np.exp(-x))).astype(F32, copy=False)


def silu(x: np.ndarray) -> np.ndarray:
    """float32 x * sigmoid(x)."""
    return (x / (F32(1) + np.exp(-x))).astype(F32, copy=False)


def softplus(x: np.ndarray) -> np.ndarray:
    """float32 log(1 + exp(x)), x itself above 20 (as llama.cpp)."""
    return np.where(x > F32(20), x, np.log1p(np.exp(np.minimum(x, F32(20))))).astype(F32)


_GELU_A = F32(0.044715)
_SQRT_2_OVER_PI = F32(0.7978845608028654)


def gelu(x: np.ndarray) -> np.ndarray:
    """Tanh-approximated GELU in float32: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

    (llama.cpp's CPU path rounds x to fp16 and looks the result up in an fp16 table;
    mtpdec computes it exactly.)
    """
    x = np.asarray(x, dtype=F32)
    inner = _SQRT_2_OVER_PI * x * (F32(1) + _GELU_A * x * x)
    return (F32(0.5) * x * (F32(1) + np.tanh(inner))).astype(F32, copy=False)


def rope_angles(positions: np.ndarray, n_rot: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin float32 (k, n_rot/2) of the rotary angles ``pos * base^(-2i/n_rot)``.

    Angles are chained in float32 (theta_{i+1} = theta_i * base^(-2/n_rot)) as ggml does.
    """
    half = n_rot // 2
    step = F32(base) ** F32(-2.0 / n_rot)
    factors = np.full((len(positions), half), step, dtype=F32)
    factors[:, 0] = np.asarray(positions, dtype=F32)
    theta = np.cumprod(factors, axis=1, dtype=F32)
    return np.cos(theta).astype(F32), np.sin(theta).astype(F32)


def rope_neox(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate the first n_rot dims of each head, NEOX pairing (i with i + n_rot/2).

    x: float32 (k, heads, head_dim); cos, sin: float32 (k, n_rot/2). Returns a new array.
    """
    half = cos.shape[1]
    c, s = cos[:, None, :], sin[:, None, :]
    x0, x1 = x[..., :half], x[..., half : 2 * half]
    out = x.copy()
    out[..., :half] = x0 * c - x1 * s
    out[..., half : 2 * half] = x0 * s + x1 * c
    return out
