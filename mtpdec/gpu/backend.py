"""The GPU backend: ``mtpdec.cpu.backend.Ops`` over CuPy arrays and the kernels of
``kernels/*.cu`` (``mtpdec.gpu.runtime``).

Weights are uploaded once, when a model's layers are built (``GpuLinear``); states
live on the device (``ops.zeros``). The GPU matvec takes exact float32 inputs, so GPU
linear maps exist in the "f32" activation mode only: asking for "q8" is an error, not
a silent switch. Each op treats every row (token) alike whatever their number, as the
kernels do, so greedy speculative decoding stays bitwise plain decoding on the GPU.

``GpuOps(xp, kernels)`` takes its array module and kernel launchers as arguments so
that the tests can run this glue with numpy and the runtime's launchers over fake CUDA
(tests/fake_cuda.py); a real GPU uses cupy and ``mtpdec.gpu.runtime``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtpdec.cpu.linear import LinearGroup, Numerics
from mtpdec.errors import MtpdecError
from mtpdec.gpu.sources import MAX_INPUTS, matvec_name
from mtpdec.quants.types import ggml_type
from mtpdec.tensor import Tensor

F32 = np.float32
SOFTPLUS_LINEAR_ABOVE = F32(20)  # softplus(x) = x from here on (as llama.cpp)


class GpuLinear:
    """``y = x @ W^T`` on the GPU: W's blocks uploaded once (rows, row_bytes) uint8;
    x float32 (k, cols) device rows -> float32 (k, rows), MAX_INPUTS rows per weight read
    (each output row bitwise the same whatever k). No dense prefill path."""

    dense_nbytes = 0  # nothing for the CPU's dense prefill budget

    def __init__(self, w: Tensor, numerics: Numerics, ops: GpuOps) -> None:
        if numerics.activations != "f32":
            raise MtpdecError(
                f"the GPU matvec takes float32 activations; {w.name!r} was asked for "
                f"{numerics.activations!r} (use --activations f32 for GPU layers)"
            )
        self.w, self.t, self.ops = w, ggml_type(w.ggml_type, tensor=w.name), ops
        matvec_name(self.t, 1)  # MtpdecError for a type without a GPU kernel
        self.device_raw = ops.upload(np.ascontiguousarray(w.raw))

    def prepare_dense(self) -> bool:
        return False

    def __call__(self, x: Any, prefill: bool = False) -> Any:
        xp = self.ops.xp
        x = xp.ascontiguousarray(x, dtype=F32)
        out = xp.empty((x.shape[0], self.w.rows), dtype=F32)
        for at in range(0, x.shape[0], MAX_INPUTS):
            part = slice(at, at + MAX_INPUTS)
            self.ops.kernels.matvec(self.device_raw, self.t, x[part], out[part])
        return out


class GpuOps:
    """``Ops`` on an NVIDIA GPU (see the module docstring).

    xp: cupy (or numpy, standing in); kernels: ``mtpdec.gpu.runtime`` (or launchers with
    its signatures). ``uploaded_bytes`` counts the bytes uploaded so far (weights at
    load, then activation rows).
    """

    name = "gpu"
    fixed_activations = "f32"

    def __init__(self, xp: Any = None, kernels: Any = None) -> None:
        if xp is None or kernels is None:
            from mtpdec.gpu import runtime

            xp = runtime.require_cupy() if xp is None else xp
            kernels = runtime if kernels is None else kernels
        self.xp, self.kernels = xp, kernels
        self.uploaded_bytes = 0

    def upload(self, a: np.ndarray) -> Any:
        self.uploaded_bytes += a.nbytes
        return self.xp.asarray(a)

    def to_host(self, a: Any) -> np.ndarray:
        return a if isinstance(a, np.ndarray) else a.get()

    def synchronize(self) -> None:
        cuda = getattr(self.xp, "cuda", None)
        if cuda is not None:
            cuda.get_current_stream().synchronize()

    def zeros(self, shape: tuple[int, ...]) -> Any:
        return self.xp.zeros(shape, dtype=F32)

    pool_zeros = zeros

    def linear(self, w: Tensor, numerics: Numerics, keep_file_pages: bool = False) -> GpuLinear:
        return GpuLinear(w, numerics, self)

    def linear_group(self, ws: list[Tensor], numerics: Numerics) -> LinearGroup:
        return LinearGroup(ws, numerics, make=self.linear, share=self._rows)

    def _rows(self, x: Any) -> Any:
        return self.xp.ascontiguousarray(x, dtype=F32)

    def _flat(self, x: Any) -> Any:
        return self._rows(x).reshape(-1, x.shape[-1])

    def rmsnorm(self, x: Any, w: Any, eps: float) -> Any:
        return self.kernels.rmsnorm(self._flat(x), w, eps).reshape(x.shape)

    def l2norm(self, x: Any, eps: float) -> Any:
        return self.kernels.l2norm(self._flat(x), eps).reshape(x.shape)

    def _gate(self, name: str, x: Any, mul: Any) -> Any:
        x = self._rows(x)
        mul = self.xp.ones_like(x) if mul is None else self._rows(mul)
        return self.kernels.gate(name, x, mul)

    def silu(self, x: Any, mul: Any = None) -> Any:
        return self._gate("silu_mul", x, mul)

    def sigmoid(self, x: Any, mul: Any = None) -> Any:
        return self._gate("sigmoid_mul", x, mul)

    def gelu(self, x: Any, mul: Any = None) -> Any:
        return self._gate("gelu_mul", x, mul)

    def softplus(self, x: Any) -> Any:
        xp, cap = self.xp, SOFTPLUS_LINEAR_ABOVE
        return xp.where(x > cap, x, xp.log1p(xp.exp(xp.minimum(x, cap)))).astype(F32)

    def rope_neox(self, x: Any, cos: Any, sin: Any) -> Any:
        return self.kernels.rope_neox(self._rows(x), cos, sin)

    def attend(
        self, q: Any, k: Any, v: Any, positions: np.ndarray, scale: float, window: int = 0
    ) -> Any:
        pos = self.xp.asarray(np.asarray(positions, dtype=np.int32))
        return self.kernels.attend(self._rows(q), k, v, pos, scale, window)

    def causal_conv_silu(self, x: Any, conv_state: Any, taps: Any, ring: Any = None) -> Any:
        if ring is None:
            ring = self.xp.empty((0, *conv_state.shape), dtype=F32)
        return self.kernels.conv_silu(self._rows(x), conv_state, taps, ring)

    def argmax_rows(self, x: Any) -> np.ndarray:
        """The verify epilogue: kernels/rows.cu argmax on the device, k ints to the host."""
        return self.to_host(self.kernels.argmax_rows(self._rows(x)))

    def delta_rule(
        self, m: Any, q: Any, k: Any, v: Any, g: Any, beta: Any, ring: Any, ring_slots: Any
    ) -> Any:
        """As ``mtpdec.cpu.gdn.delta_rule`` with a ring and its host slot indices; the
        decay exp(g) is taken here, the kernel multiplies by it."""
        xp = self.xp
        slots = xp.asarray(np.asarray(ring_slots, dtype=np.int64))
        decay = xp.exp(self._rows(g))
        return self.kernels.delta_rule(
            m, self._rows(q), self._rows(k), self._rows(v), decay, self._rows(beta), ring, slots
        )
