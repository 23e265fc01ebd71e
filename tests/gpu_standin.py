"""Backends that stand in for a GPU on a machine without one.

- ``standin_gpu_ops()``: ``mtpdec.gpu.backend.GpuOps`` over numpy, with launchers that
  have ``mtpdec.gpu.runtime``'s signatures and compute with the CPU functions (the
  matvec in float64 from gguf dequantized weights, one input row at a time). It runs
  every line of the GPU backend's glue (weight upload, 8-row matvec groups, the decay
  and slot arguments of the delta rule, ring and positions) but none of the CUDA code,
  which tests/test_gpu_kernels.py checks through its host harness.
- ``CopyingCpuOps``: the CPU ops whose ``upload`` / ``to_host`` copy, so that a hybrid
  model with it as the trunk moves real arrays across its FFN boundary.
"""

from __future__ import annotations

import numpy as np

from mtpdec.cpu import attention, gdn, ops
from mtpdec.cpu.backend import CpuOps
from mtpdec.gpu.backend import GpuOps
from mtpdec.quants import dequantize_raw


class ReferenceLaunchers:
    """``mtpdec.gpu.runtime``'s launchers over numpy arrays; ``calls`` counts each."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self._weights: dict[int, np.ndarray] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def matvec(self, w, t, x, out=None):
        self._count("matvec")
        assert x.shape[0] <= 8 and x.flags.c_contiguous and x.dtype == np.float32
        key = id(w)
        if key not in self._weights:
            self._weights[key] = dequantize_raw(w, t, (w.shape[0], x.shape[1])).astype(np.float64)
        dense = self._weights[key]
        if out is None:
            out = np.empty((x.shape[0], w.shape[0]), dtype=np.float32)
        for i in range(x.shape[0]):
            out[i] = (dense @ x[i].astype(np.float64)).astype(np.float32)
        return out

    def rmsnorm(self, x, w, eps):
        self._count("rmsnorm")
        assert x.ndim == 2
        return ops.rmsnorm(x, w, eps)

    def l2norm(self, x, eps):
        self._count("l2norm")
        assert x.ndim == 2
        return ops.l2norm(x, eps)

    def gate(self, name, x, m):
        self._count(name)
        assert x.shape == m.shape and x.flags.c_contiguous and m.flags.c_contiguous
        return {"silu_mul": ops.silu, "sigmoid_mul": ops.sigmoid, "gelu_mul": ops.gelu}[name](x, m)

    def rope_neox(self, x, cos, sin):
        self._count("rope_neox")
        return ops.rope_neox(x, cos, sin)

    def attend(self, q, k_cache, v_cache, positions, scale, window=0):
        self._count("attend")
        assert positions.dtype == np.int32
        return attention.attend(q, k_cache, v_cache, positions, scale, window)

    def conv_silu(self, x, state, w, ring):
        self._count("conv_silu")
        return gdn.causal_conv_silu(x, state, w, ring)

    def argmax_rows(self, x):
        self._count("argmax")
        return np.argmax(x, axis=1).astype(np.int32)

    def delta_rule(self, m, q, k, v, decay, beta, ring, slots):
        self._count("delta_rule")
        assert slots.dtype == np.int64 and decay.dtype == np.float32
        return gdn.delta_rule(m, q, k, v, np.log(decay), beta, ring, slots)


def standin_gpu_ops() -> GpuOps:
    """GpuOps over numpy and ``ReferenceLaunchers`` (its ``kernels``)."""
    return GpuOps(xp=np, kernels=ReferenceLaunchers())


class CopyingCpuOps(CpuOps):
    """CPU ops standing in for a device: arrays cross ``upload`` / ``to_host`` as copies,
    counted in ``crossings``."""

    name = "stand-in"

    def __init__(self) -> None:
        self.crossings = 0

    def upload(self, a: np.ndarray) -> np.ndarray:
        self.crossings += 1
        return np.array(a, copy=True)

    def to_host(self, a: np.ndarray) -> np.ndarray:
        self.crossings += 1
        return np.array(a, copy=True)
