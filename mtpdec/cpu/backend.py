"""The op surface a model's blocks run through, and its CPU implementation.

``mtpdec.gpu.backend.GpuOps`` implements the same surface over CuPy arrays, so one
forward pass (``mtpdec.models``) runs on either, and a placement plan can put parts of a
model on each (``mtpdec.models.hybrid``). Arrays are the backend's own (numpy here);
shapes and dtypes are those of the CPU functions each op names.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from mtpdec.cpu import attention, gdn, ops
from mtpdec.cpu.linear import Linear, LinearGroup, Numerics
from mtpdec.cpu.stream import aligned_zeros
from mtpdec.tensor import Tensor

F32 = np.float32


class Ops(Protocol):
    """What a forward pass needs from a backend.

    name: "cpu" or "gpu"; xp: its array module (numpy or cupy).
    fixed_activations: the one activation mode its matrices take (the GPU's "f32"), or
      None when they take every mode (``Numerics.on``).
    upload(a) / to_host(a): a host numpy array onto the backend / back (the same array
      where they are one memory); synchronize(): wait for queued work (timing).
    zeros(shape), pool_zeros(shape): float32 state buffers (the pool of delta-rule
      states and snapshots, 64-byte aligned on the CPU).
    linear(w, numerics, keep_file_pages) / linear_group(ws, numerics): callables
      ``(x (k, cols), prefill=False) -> (k, rows)`` (``mtpdec.cpu.linear``).
    rmsnorm, l2norm, silu, sigmoid, gelu, softplus, rope_neox: ``mtpdec.cpu.ops``;
    attend: ``mtpdec.cpu.attention.attend`` (positions a host int array);
    causal_conv_silu, delta_rule: ``mtpdec.cpu.gdn`` (ring_slots a host int64 array);
    argmax_rows(x (k, d)) -> host int32 (k,): each row's lowest index of its maximum,
      found where x lives (a greedy verify brings back k ints, not k logits rows).
    """

    name: str
    xp: Any
    fixed_activations: str | None

    def upload(self, a: np.ndarray) -> Any: ...
    def to_host(self, a: Any) -> np.ndarray: ...
    def synchronize(self) -> None: ...
    def zeros(self, shape: tuple[int, ...]) -> Any: ...
    def pool_zeros(self, shape: tuple[int, ...]) -> Any: ...
    def linear(self, w: Tensor, numerics: Numerics, keep_file_pages: bool = False) -> Any: ...
    def linear_group(self, ws: list[Tensor], numerics: Numerics) -> Any: ...
    def rmsnorm(self, x: Any, w: Any, eps: float) -> Any: ...
    def l2norm(self, x: Any, eps: float) -> Any: ...
    def silu(self, x: Any, mul: Any = None) -> Any: ...
    def sigmoid(self, x: Any, mul: Any = None) -> Any: ...
    def gelu(self, x: Any, mul: Any = None) -> Any: ...
    def softplus(self, x: Any) -> Any: ...
    def rope_neox(self, x: Any, cos: Any, sin: Any) -> Any: ...
    def attend(
        self, q: Any, k: Any, v: Any, positions: np.ndarray, scale: float, window: int = 0
    ) -> Any: ...
    def causal_conv_silu(self, x: Any, conv_state: Any, taps: Any, ring: Any = None) -> Any: ...
    def delta_rule(
        self, m: Any, q: Any, k: Any, v: Any, g: Any, beta: Any, ring: Any, ring_slots: Any
    ) -> Any: ...
    def argmax_rows(self, x: Any) -> np.ndarray: ...


class CpuOps:
    """``Ops`` on the CPU: numpy arrays, the Numba kernels of ``mtpdec.cpu``."""

    name = "cpu"
    xp = np
    fixed_activations = None

    def upload(self, a: np.ndarray) -> np.ndarray:
        return a

    def to_host(self, a: np.ndarray) -> np.ndarray:
        return a

    def synchronize(self) -> None:
        pass

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, dtype=F32)

    def pool_zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return aligned_zeros(shape)  # streamed into (cpu/stream.py)

    def linear(self, w: Tensor, numerics: Numerics, keep_file_pages: bool = False) -> Linear:
        return Linear(w, numerics, keep_file_pages=keep_file_pages)

    def linear_group(self, ws: list[Tensor], numerics: Numerics) -> LinearGroup:
        return LinearGroup(ws, numerics)

    rmsnorm = staticmethod(ops.rmsnorm)
    l2norm = staticmethod(ops.l2norm)
    silu = staticmethod(ops.silu)
    sigmoid = staticmethod(ops.sigmoid)
    gelu = staticmethod(ops.gelu)
    softplus = staticmethod(ops.softplus)
    rope_neox = staticmethod(ops.rope_neox)
    attend = staticmethod(attention.attend)
    causal_conv_silu = staticmethod(gdn.causal_conv_silu)
    delta_rule = staticmethod(gdn.delta_rule)

    @staticmethod
    def argmax_rows(x: np.ndarray) -> np.ndarray:
        return np.argmax(x, axis=1).astype(np.int32)


CPU = CpuOps()
