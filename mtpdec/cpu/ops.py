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
def _sum_squares(row):  # pragma: no cover - compiled
    """float64 sum of the squares of a float32 row, left to right."""
    acc = 0.0
    for i in range(row.shape[0]):
        v = np.float64(row[i])
        acc += v * v
    return acc


@njit(cache=True)
def _rmsnorm_rows(x, w, eps, out):  # pragma: no cover - compiled
    """x, out: float32 (rows, d); w: float32 (d,). out = x / sqrt(mean(x^2) + eps) * w."""
    rows, d = x.shape
    for r in range(rows):
        mean = np.float32(_sum_squares(x[r]) / d)
        scale = np.float32(1.0) / np.sqrt(mean + eps)
        for i in range(d):
            out[r, i] = (x[r, i] * scale) * w[i]


@njit(cache=True)
def _l2norm_rows(x, eps, out):  # pragma: no cover - compiled
    """x, out: float32 (rows, d). out = x / max(sqrt(sum(x^2)), eps) (llama.cpp l2_norm)."""
    rows, d = x.shape
    for r in range(rows):
        scale = np.float32(1.0) / max(np.float32(np.sqrt(_sum_squares(x[r]))), eps)
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


# Activations use numpy's vectorized float32 exp (about 3x faster here than a scalar
# Numba loop). On contiguous float32 arrays it runs one SIMD routine for every element,
# so a token's values do not depend on how many rows are batched (tested bitwise).
_ONE = F32(1.0)
_GELU_2C = F32(2 * 0.7978845608028654)  # 2 sqrt(2/pi)
_GELU_A = F32(0.044715)


def _one_plus_exp_neg(x: np.ndarray) -> np.ndarray:
    """A new array 1 + exp(-x), with -x capped at 88 so that it stays finite
    (1 / (1 + e^88) ~ 0); computed in place, one buffer."""
    t = np.negative(x)
    np.minimum(t, F32(88.0), out=t)
    np.exp(t, out=t)
    return np.add(t, _ONE, out=t)


def _times(y: np.ndarray, mul: np.ndarray | None) -> np.ndarray:
    """y (a fresh buffer) times mul, in place."""
    return y if mul is None else np.multiply(y, np.asarray(mul, dtype=F32), out=y)


def sigmoid(x: np.ndarray, mul: np.ndarray | None = None) -> np.ndarray:
    """float32 1 / (1 + exp(-x)) (times ``mul`` of the same shape when given)."""
    x = np.ascontiguousarray(x, dtype=F32)
    t = _one_plus_exp_neg(x)
    return _times(np.divide(_ONE, t, out=t), mul)


def silu(x: np.ndarray, mul: np.ndarray | None = None) -> np.ndarray:
    """float32 x * sigmoid(x) (times ``mul`` of the same shape when given)."""
    x = np.ascontiguousarray(x, dtype=F32)
    t = _one_plus_exp_neg(x)
    return _times(np.divide(x, t, out=t), mul)


def gelu(x: np.ndarray, mul: np.ndarray | None = None) -> np.ndarray:
    """Tanh-approximated GELU in float32, 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x +
    0.044715 x^3), computed as x / (1 + exp(-2u)) (the same function), times ``mul`` when
    given. (llama.cpp's CPU path rounds x to fp16 and reads an fp16 table; mtpdec
    computes it exactly.)"""
    x = np.ascontiguousarray(x, dtype=F32)
    two_u = _GELU_2C * x * (_ONE + _GELU_A * x * x)
    t = _one_plus_exp_neg(two_u)
    return _times(np.divide(x, t, out=t), mul)


def softplus(x: np.ndarray) -> np.ndarray:
    """float32 log(1 + exp(x)), x itself above 20 (as llama.cpp)."""
    return np.where(x > F32(20), x, np.log1p(np.exp(np.minimum(x, F32(20))))).astype(F32)


def rope_angles(
    positions: np.ndarray, n_rot: int, base: float, freq_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin float32 (k, n_rot/2) of the angles ``freq_scale * pos * base^(-2i/n_rot)``.

    Angles are chained in float32 (theta_{i+1} = theta_i * base^(-2/n_rot)) and then
    scaled (linear rope scaling), as ggml does.
    """
    half = n_rot // 2
    step = F32(base) ** F32(-2.0 / n_rot)
    factors = np.full((len(positions), half), step, dtype=F32)
    factors[:, 0] = np.asarray(positions, dtype=F32)
    theta = np.cumprod(factors, axis=1, dtype=F32)
    if freq_scale != 1.0:
        theta *= F32(freq_scale)
    return np.cos(theta).astype(F32), np.sin(theta).astype(F32)


class RopeTable:
    """cos/sin rows of ``rope_angles`` for positions 0..n-1, grown on demand (each row
    depends on its position only, so a token gets the same bits however it is batched)."""

    def __init__(self, n_rot: int, base: float, freq_scale: float = 1.0) -> None:
        self.n_rot, self.base, self.freq_scale = n_rot, base, freq_scale
        self.cos = np.empty((0, n_rot // 2), dtype=F32)
        self.sin = self.cos

    def __call__(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        need = int(positions.max()) + 1
        if need > len(self.cos):
            size = max(need, 2 * len(self.cos), 256)
            self.cos, self.sin = rope_angles(
                np.arange(size), self.n_rot, self.base, self.freq_scale
            )
        return self.cos[positions], self.sin[positions]


@njit(cache=True)
def _rope_rows(x, cos, sin, out):  # pragma: no cover - compiled
    n, heads, hd = x.shape
    half = cos.shape[1]
    for t in range(n):
        for h in range(heads):
            for i in range(half):
                x0, x1 = x[t, h, i], x[t, h, i + half]
                out[t, h, i] = x0 * cos[t, i] - x1 * sin[t, i]
                out[t, h, i + half] = x0 * sin[t, i] + x1 * cos[t, i]
            for i in range(2 * half, hd):
                out[t, h, i] = x[t, h, i]


def rope_neox(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate the first n_rot dims of each head, NEOX pairing (i with i + n_rot/2).

    x: float32 (k, heads, head_dim); cos, sin: float32 (k, n_rot/2). Returns a new array.
    """
    x = np.ascontiguousarray(x, dtype=F32)
    out = np.empty_like(x)
    _rope_rows(x, cos, sin, out)
    return out
