"""``mtpdec.gpu.runtime``'s launchers run for real on a machine without a GPU.

``install(monkeypatch)`` makes ``runtime.require_cupy`` return numpy and ``runtime.kernel``
return ``FakeKernel``s: a launch checks its arguments against the kernel's C signature,
parsed from kernels/*.cu (count, scalar types, pointer element types), takes every
array argument as a flat buffer from its data pointer, as the GPU does (bounds checked
against the allocation, C-contiguity required), checks that the grid covers the work,
and computes the kernel's result with the CPU functions into those buffers. What it
finds goes to ``Fakes.problems``. Only the launchers' glue is tested here; the CUDA
arithmetic is tests/test_gpu_kernels.py's.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtpdec.cpu import attention, gdn, ops
from mtpdec.gpu import runtime
from mtpdec.gpu.sources import BLOCK_STRUCTS, KERNEL_DIR
from mtpdec.quants import dequantize_raw
from mtpdec.quants.types import GGMLType

F32, I32, I64, U8 = np.float32, np.int32, np.int64, np.uint8
C_SCALARS = {"int": np.int32, "float": np.float32, "long long": np.int64}
C_POINTEES = {"float": F32, "int": I32, "long long": I64, "uint8_t": U8}
STRUCT_TYPES = {struct.split("::")[1]: t for t, struct in BLOCK_STRUCTS.items()}


def kernel_signatures() -> dict[str, list[tuple[str, Any]]]:
    """{kernel: [("ptr", dtype) | ("scalar", type)]} from every ``__global__`` of
    kernels/*.cu (the matvec template under the name "matvec")."""
    pattern = re.compile(r"__global__\s+void\s+(\w+)\s*\(([^)]*)\)", re.S)
    sigs: dict[str, list[tuple[str, Any]]] = {}
    for path in sorted(KERNEL_DIR.glob("*.cu")):
        for name, params in pattern.findall(path.read_text()):
            args = []
            for p in params.split(","):
                p = re.sub(r"\b(const|__restrict__)\b", " ", p).strip()
                ctype = " ".join(p.replace("*", " * ").split()[:-1])  # drop the name
                if ctype.endswith("*"):
                    args.append(("ptr", C_POINTEES[ctype[:-1].strip()]))
                else:
                    args.append(("scalar", C_SCALARS[ctype]))
            sigs[name] = args
    return sigs


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


@dataclass
class Fakes:
    """What the fake launches saw: ``launches`` per kernel, ``problems`` found."""

    signatures: dict[str, list[tuple[str, Any]]] = field(default_factory=kernel_signatures)
    launches: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    dense: dict[tuple, np.ndarray] = field(default_factory=dict)

    def buffer(self, a: Any, dtype: Any, count: int, what: str) -> np.ndarray:
        """count elements of dtype from a's data pointer, as a kernel reads them."""
        if not isinstance(a, np.ndarray):
            self.problems.append(f"{what}: not an array ({type(a).__name__})")
            raise TypeError(self.problems[-1])
        if a.dtype != dtype or (count and not a.flags.c_contiguous):
            self.problems.append(f"{what}: {a.dtype} {a.shape} strides {a.strides}")
        if count == 0:
            return np.empty(0, dtype)
        root = _root(a)
        lo, start = root.__array_interface__["data"][0], a.__array_interface__["data"][0]
        size = count * np.dtype(dtype).itemsize
        if not (lo <= start and start + size <= lo + root.nbytes):
            self.problems.append(f"{what}: {size} bytes from offset {start - lo} pass the end")
            raise IndexError(self.problems[-1])
        return np.frombuffer((ctypes.c_char * size).from_address(start), dtype=dtype)


class FakeKernel:
    """One kernel: ``kernel(grid, block, args)`` as a CuPy RawKernel is called."""

    def __init__(self, fakes: Fakes, name: str) -> None:
        self.fakes = fakes
        matvec = re.match(r"mtpdec::matvec<mtpdec::(\w+), (\d)>", name)
        self.name = "matvec" if matvec else name
        self.matvec = (STRUCT_TYPES[matvec.group(1)], int(matvec.group(2))) if matvec else None

    def __call__(self, grid: tuple, block: tuple, args: tuple) -> None:
        f = self.fakes
        f.launches[self.name] = f.launches.get(self.name, 0) + 1
        sig = f.signatures[self.name]
        if len(sig) != len(args):
            f.problems.append(f"{self.name}: {len(args)} arguments for {len(sig)} parameters")
            raise TypeError(f.problems[-1])
        for i, ((kind, t), a) in enumerate(zip(sig, args)):
            if kind == "scalar" and type(a) is not t:
                f.problems.append(f"{self.name} argument {i}: {type(a).__name__}, not {t.__name__}")
            if kind == "ptr" and isinstance(a, np.ndarray) and a.size and a.dtype != t:
                f.problems.append(f"{self.name} argument {i}: {a.dtype} array, not {np.dtype(t)}")
        if block[0] % 32 or any(g < 1 for g in grid):
            f.problems.append(f"{self.name}: grid {grid}, block {block}")
        threads = grid[0] * block[0]
        pointers = [a for (kind, _), a in zip(sig, args) if kind == "ptr"]
        scalars = [a.item() for (kind, _), a in zip(sig, args) if kind == "scalar"]
        getattr(self, f"_{self.name}")(threads, pointers, scalars)

    def _covers(self, threads: int, need: int) -> None:
        if threads < need:
            self.fakes.problems.append(f"{self.name}: {threads} threads for {need}")

    def _matvec(self, threads, p, s):
        (w, x, out), (rows, row_bytes) = p, s
        t, n = self.matvec
        self._covers(threads // 32, rows)
        elems = 256 if t in (GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K) else 32
        nbytes = {"Q4_K": 144, "Q5_K": 176, "Q6_K": 210, "Q8_0": 34, "Q5_0": 22,
                  "F32": 128, "F16": 64}[GGMLType(t).name]  # fmt: skip
        cols = row_bytes // nbytes * elems
        b = self.fakes.buffer
        raw = b(w, U8, rows * row_bytes, "matvec w").reshape(rows, row_bytes)
        key = (w.__array_interface__["data"][0], rows, row_bytes, t)
        if key not in self.fakes.dense:
            self.fakes.dense[key] = dequantize_raw(np.array(raw), t, (rows, cols)).astype(
                np.float64
            )
        xs = b(x, F32, n * cols, "matvec x").reshape(n, cols).astype(np.float64)
        b(out, F32, n * rows, "matvec out")[:] = (xs @ self.fakes.dense[key].T).astype(F32).ravel()

    def _rmsnorm(self, threads, p, s):
        (x, w, out), (eps, rows, d) = p, s
        self._covers(threads // 32, rows)
        b = self.fakes.buffer
        xs = b(x, F32, rows * d, "rmsnorm x").reshape(rows, d)
        b(out, F32, rows * d, "rmsnorm out")[:] = ops.rmsnorm(
            xs, b(w, F32, d, "rmsnorm w"), eps
        ).ravel()

    def _l2norm(self, threads, p, s):
        (x, out), (eps, rows, d) = p, s
        self._covers(threads // 32, rows)
        b = self.fakes.buffer
        xs = b(x, F32, rows * d, "l2norm x").reshape(rows, d)
        b(out, F32, rows * d, "l2norm out")[:] = ops.l2norm(xs, eps).ravel()

    def _argmax(self, threads, p, s):
        (x, out), (rows, d) = p, s
        self._covers(threads // 32, rows)
        b = self.fakes.buffer
        b(out, I32, rows, "argmax out")[:] = np.argmax(
            b(x, F32, rows * d, "argmax x").reshape(rows, d), axis=1
        )

    def _rope_neox(self, threads, p, s):
        (x, cos, sin, out), (n, heads, hd, half) = p, s
        self._covers(threads, n * heads * hd)
        b = self.fakes.buffer
        xs = b(x, F32, n * heads * hd, "rope x").reshape(n, heads, hd)
        c, sn = (b(a, F32, n * half, "rope table").reshape(n, half) for a in (cos, sin))
        b(out, F32, n * heads * hd, "rope out")[:] = ops.rope_neox(xs, c, sn).ravel()

    def _gate(self, threads, p, s, act):
        (x, m, out), (count,) = p, s
        self._covers(threads, count)
        b = self.fakes.buffer
        xs, ms = b(x, F32, count, "gate x"), b(m, F32, count, "gate m")
        b(out, F32, count, "gate out")[:] = act(np.array(xs), np.array(ms))

    def _silu_mul(self, threads, p, s):
        self._gate(threads, p, s, ops.silu)

    def _sigmoid_mul(self, threads, p, s):
        self._gate(threads, p, s, ops.sigmoid)

    def _gelu_mul(self, threads, p, s):
        self._gate(threads, p, s, ops.gelu)

    def _attend(self, threads, p, s):
        (q, k, v, pos, probs, out), (scale, window, n, n_head, n_kv, ctx, hd_k, hd_v) = p, s
        self._covers(threads // 32, n * n_head)
        b = self.fakes.buffer
        qs = b(q, F32, n * n_head * hd_k, "attend q").reshape(n, n_head, hd_k)
        ks = b(k, F32, n_kv * ctx * hd_k, "attend k").reshape(n_kv, ctx, hd_k)
        vs = b(v, F32, n_kv * ctx * hd_v, "attend v").reshape(n_kv, ctx, hd_v)
        positions = b(pos, I32, n, "attend positions")
        b(probs, F32, n * n_head * ctx, "attend probs")
        o = attention.attend(np.array(qs), ks, vs, positions.astype(np.int64), scale, window)
        b(out, F32, n * n_head * hd_v, "attend out")[:] = o.ravel()

    def _conv_silu(self, threads, p, s):
        (x, state, w, out, ring), (ring_count, n, channels, taps) = p, s
        self._covers(threads, channels)
        b = self.fakes.buffer
        xs = b(x, F32, n * channels, "conv x").reshape(n, channels)
        st = b(state, F32, (taps - 1) * channels, "conv state").reshape(taps - 1, channels)
        ws = b(w, F32, taps * channels, "conv taps").reshape(taps, channels)
        kept = min(ring_count, n)
        rs = b(ring, F32, kept * (taps - 1) * channels, "conv ring").reshape(
            kept, taps - 1, channels
        )
        b(out, F32, n * channels, "conv out")[:] = gdn.causal_conv_silu(
            np.array(xs), st, np.array(ws), rs
        ).ravel()

    def _delta_rule(self, threads, p, s):
        (m, q, k, v, decay, beta, out, ring, slots), (scale, count, n, h_k, h_v) = p, s
        d = 128
        self._covers(threads // 32, h_v * d)
        if scale != np.float32(1 / np.sqrt(np.float32(d))):
            self.fakes.problems.append(f"delta_rule: scale {scale}")
        b = self.fakes.buffer
        ms = b(m, F32, h_v * d * d, "delta m").reshape(h_v, d, d)
        qs, ks = (b(a, F32, n * h_k * d, "delta q/k").reshape(n, h_k, d) for a in (q, k))
        vs = b(v, F32, n * h_v * d, "delta v").reshape(n, h_v, d)
        g = np.log(b(decay, F32, n * h_v, "delta decay").reshape(n, h_v))
        bs = b(beta, F32, n * h_v, "delta beta").reshape(n, h_v)
        sl = b(slots, I64, count, "delta slots")
        pool = int(sl.max()) + 1 if count else 0
        rs = b(ring, F32, pool * h_v * d * d, "delta ring").reshape(pool, h_v, d, d)
        o = gdn.delta_rule(
            ms, np.array(qs), np.array(ks), np.array(vs), g, np.array(bs), rs, np.array(sl)
        )
        b(out, F32, n * h_v * d, "delta out")[:] = o.ravel()


def install(monkeypatch: Any) -> Fakes:
    """Route ``mtpdec.gpu.runtime`` to the fakes for one test (``monkeypatch``)."""
    fakes = Fakes()
    monkeypatch.setattr(runtime, "require_cupy", lambda: np)
    monkeypatch.setattr(runtime, "kernel", lambda source, name, names=(): FakeKernel(fakes, name))
    runtime._matvec_kernel.cache_clear()  # it holds kernel() results
    return fakes
