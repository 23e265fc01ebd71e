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


@njit(cache=True)
def _act_rows(kind, x, gate_of, out):  # pragma: no cover - compiled
    """Row by row: out = act(x) (gate_of empty) or act(x) * gate_of; float32 (rows, d).

    kind 0: sigmoid, 1: silu, 2: tanh-approximated GELU.
    """
    rows, d = x.shape
    one, half = np.float32(1.0), np.float32(0.5)
    for r in range(rows):
        for i in range(d):
            v = x[r, i]
            if kind == 0:
                y = one / (one + np.exp(-v))
            elif kind == 1:
                y = v / (one + np.exp(-v))
            else:
                inner = np.float32(0.7978845608028654) * v * (one + np.float32(0.044715) * v * v)
                y = half * v * (one + np.tanh(inner))
            out[r, i] = y * gate_of[r, i] if gate_of.shape[0] else y


_NO_GATE = np.empty((0, 0), dtype=F32)


def _act(kind: int, x: np.ndarray, mul: np.ndarray | None) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=F32)
    flat = x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)
    gate = _NO_GATE if mul is None else np.ascontiguousarray(mul, dtype=F32).reshape(flat.shape)
    out = np.empty_like(flat)
    _act_rows(kind, flat, gate, out)
    return out.reshape(x.shape)


def sigmoid(x: np.ndarray, mul: np.ndarray | None = None) -> np.ndarray:
    """float32 1 / (1 + exp(-x)) (times ``mul`` of the same shape when given)."""
    return _act(0, x, mul)


def silu(x: np.ndarray, mul: np.ndarray | None = None) -> np.ndarray:
    """float32 x * sigmoid(x) (times ``mul`` of the same shape when given)."""
    return _act(1, x, mul)


def gelu(x: np.ndarray, mul: np.ndarray | None = None) -> np.ndarray:
    """Tanh-approximated GELU in float32, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
    times ``mul`` when given. (llama.cpp's CPU path rounds x to fp16 and looks the result
    up in an fp16 table; mtpdec computes it exactly.)"""
    return _act(2, x, mul)


def softplus(x: np.ndarray) -> np.ndarray:
    """float32 log(1 + exp(x)), x itself above 20 (as llama.cpp)."""
    return np.where(x > F32(20), x, np.log1p(np.exp(np.minimum(x, F32(20))))).astype(F32)


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


class RopeTable:
    """cos/sin rows of ``rope_angles`` for positions 0..n-1, grown on demand (each row
    depends on its position only, so a token gets the same bits however it is batched)."""

    def __init__(self, n_rot: int, base: float) -> None:
        self.n_rot, self.base = n_rot, base
        self.cos = np.empty((0, n_rot // 2), dtype=F32)
        self.sin = self.cos

    def __call__(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        need = int(positions.max()) + 1
        if need > len(self.cos):
            size = max(need, 2 * len(self.cos), 256)
            self.cos, self.sin = rope_angles(np.arange(size), self.n_rot, self.base)
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
