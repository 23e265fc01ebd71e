"""CuPy runtime of the GPU kernels: one RawModule per ``kernels/*.cu`` file (the matvec
one with every instance of ``mtpdec.gpu.sources``) and a launcher per kernel over cupy
arrays. Needs CuPy and an NVIDIA GPU (``pip install mtpdec[cuda]``); run on one only by
``scripts/gpu_check.sh`` (tests/test_gpu_kernels.py), not yet in this repository's history.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from mtpdec.errors import MtpdecError
from mtpdec.gpu.sources import (
    kernel_path,
    matvec_name,
    matvec_names,
    nvrtc_options,
    sources_digest,
)
from mtpdec.quants.types import GGMLType

WARPS_PER_BLOCK = 8


@functools.cache
def module(source: str, names: tuple[str, ...] = ()) -> Any:
    """kernels/``source`` compiled for this GPU by NVRTC with our options only (CuPy's own
    compile path appends ``-ftz=true``; here float32 subnormals stay, as on the CPU), the
    binary cached on disk by source digest, options and architecture, and loaded as a
    CuPy RawModule. Returns (module, {name expression: mangled name})."""
    cupy = require_cupy()
    from mtpdec.gpu.nvrtc import compile_source, find_library

    cc = cupy.cuda.Device().compute_capability
    options = nvrtc_options(f"sm_{cc}")
    lib = find_library(cupy.cuda.runtime.runtimeGetVersion() // 1000)
    if lib is None:
        raise MtpdecError("the GPU path needs NVRTC (pip install nvidia-cuda-nvrtc)")
    text = f"{source} {options} {names} {sources_digest()} {lib}"
    key = hashlib.sha256(text.encode()).hexdigest()
    cache = Path(os.environ.get("MTPDEC_CUDA_CACHE", Path.home() / ".cache" / "mtpdec" / "cuda"))
    cubin, lowered_file = cache / f"{key[:24]}.cubin", cache / f"{key[:24]}.names"
    if not cubin.is_file():
        built = compile_source(lib, kernel_path(source).read_text(), options, list(names))
        if not built.ok:
            raise MtpdecError(f"NVRTC failed on kernels/{source}: {built.log.strip()[-500:]}")
        cache.mkdir(parents=True, exist_ok=True)
        lowered_file.write_text("\n".join(f"{k}\t{v}" for k, v in built.lowered.items()))
        cubin.write_bytes(built.binary)
    lines = lowered_file.read_text().splitlines() if lowered_file.is_file() else []
    lowered = dict(line.split("\t", 1) for line in lines if line)
    return cupy.RawModule(path=str(cubin)), lowered


@functools.cache
def kernel(source: str, name: str, names: tuple[str, ...] = ()) -> Any:
    """The function ``name`` (a plain extern "C" name or one of ``names``) of a module."""
    mod, lowered = module(source, names)
    return mod.get_function(lowered.get(name, name))


_CUPY: list[Any] = []  # the cupy module once a GPU was found (checked once per process)


def require_cupy() -> Any:
    """The cupy module, or a one-line MtpdecError saying how to get a GPU build."""
    if _CUPY:
        return _CUPY[0]
    try:
        import cupy
    except ImportError as e:
        raise MtpdecError(f"the GPU path needs CuPy (pip install 'mtpdec[cuda]'): {e}") from None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise MtpdecError("the GPU path needs an NVIDIA GPU; CuPy sees none")
    except cupy.cuda.runtime.CUDARuntimeError as e:
        raise MtpdecError(f"the GPU path needs an NVIDIA GPU: {e}") from None
    _CUPY.append(cupy)
    return cupy


def describe() -> dict[str, Any]:
    """What the GPU path would run on here, for ``mtpdec info``; never raises:
    {"usable", "reason" (why not, or None), "cupy", "device", "compute_capability",
    "cuda_runtime", "nvrtc"}."""
    from mtpdec.gpu.nvrtc import find_library

    facts: dict[str, Any] = dict.fromkeys(
        ("cupy", "device", "compute_capability", "cuda_runtime", "nvrtc")
    )
    try:
        cupy = require_cupy()
        facts["cupy"] = cupy.__version__
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        facts["device"] = name.decode() if isinstance(name, bytes) else str(name)
        facts["compute_capability"] = f"sm_{cupy.cuda.Device().compute_capability}"
        major = cupy.cuda.runtime.runtimeGetVersion() // 1000
        facts["cuda_runtime"] = major
        facts["nvrtc"] = find_library(major)
        if facts["nvrtc"] is None:
            raise MtpdecError("no NVRTC library (pip install nvidia-cuda-nvrtc)")
    except MtpdecError as e:
        return {"usable": False, "reason": str(e), **facts}
    return {"usable": True, "reason": None, **facts}


def delta_rule(m: Any, q: Any, k: Any, v: Any, decay: Any, beta: Any, ring: Any, slots: Any) -> Any:
    """The gated delta rule of kernels/gdn.cu over n tokens: m (H_v, 128, 128) updated in
    place, ring[slots[t]] the state after token t < len(slots); decay = exp(g). Returns
    out float32 (n, H_v, 128). All cupy float32 (slots int64), C-contiguous."""
    cupy = require_cupy()
    n, h_k, d = q.shape
    h_v = v.shape[1]
    if d != 128:
        raise MtpdecError(f"the GPU delta rule is built for head size 128, got {d}")
    out = cupy.empty((n, h_v, d), dtype=np.float32)
    threads = 32 * WARPS_PER_BLOCK
    grid = max(1, (h_v * d + WARPS_PER_BLOCK - 1) // WARPS_PER_BLOCK)
    scale = np.float32(1.0 / np.sqrt(np.float32(d)))
    args = (m, q, k, v, decay, beta, scale, out, ring, slots, np.int32(len(slots)))
    kernel("gdn.cu", "delta_rule")(
        (grid,), (threads,), (*args, np.int32(n), np.int32(h_k), np.int32(h_v))
    )
    return out


def conv_silu(x: Any, state: Any, w: Any, ring: Any) -> Any:
    """SiLU of the causal depthwise conv (kernels/gdn.cu): x (n, C), state (K-1, C)
    updated in place, w (K, C) taps, ring (slots, K-1, C). Returns float32 (n, C)."""
    cupy = require_cupy()
    n, channels = x.shape
    out = cupy.empty_like(x)
    threads = 256
    args = (x, state, w, out, ring, np.int32(len(ring)), np.int32(n), np.int32(channels))
    kernel("gdn.cu", "conv_silu")(
        (max(1, (channels + threads - 1) // threads),), (threads,), (*args, np.int32(w.shape[0]))
    )
    return out


def _row_launch(name: str, rows: int, args: tuple) -> None:
    threads = 32 * WARPS_PER_BLOCK
    grid = max(1, (rows + WARPS_PER_BLOCK - 1) // WARPS_PER_BLOCK)
    kernel("rows.cu", name)((grid,), (threads,), args)


def rmsnorm(x: Any, w: Any, eps: float) -> Any:
    """kernels/rows.cu rmsnorm of cupy float32 (rows, d) rows with weights (d,)."""
    out = require_cupy().empty_like(x)
    rows, d = x.shape
    _row_launch("rmsnorm", rows, (x, w, np.float32(eps), out, np.int32(rows), np.int32(d)))
    return out


def l2norm(x: Any, eps: float) -> Any:
    """kernels/rows.cu l2norm of cupy float32 (rows, d) rows."""
    out = require_cupy().empty_like(x)
    rows, d = x.shape
    _row_launch("l2norm", rows, (x, np.float32(eps), out, np.int32(rows), np.int32(d)))
    return out


def argmax_rows(x: Any) -> Any:
    """int32 (rows,): each row's lowest index of its maximum (the greedy verify epilogue)."""
    rows, d = x.shape
    out = require_cupy().empty(rows, dtype=np.int32)
    _row_launch("argmax", rows, (x, out, np.int32(rows), np.int32(d)))
    return out


def rope_neox(x: Any, cos: Any, sin: Any) -> Any:
    """kernels/rows.cu rope_neox: cupy float32 x (n, heads, hd), cos/sin (n, half)."""
    out = require_cupy().empty_like(x)
    n, heads, hd = x.shape
    total, threads = n * heads * hd, 256
    args = (x, cos, sin, out, np.int32(n), np.int32(heads), np.int32(hd), np.int32(cos.shape[1]))
    kernel("rows.cu", "rope_neox")(((total + threads - 1) // threads,), (threads,), args)
    return out


def gate(name: str, x: Any, m: Any) -> Any:
    """kernels/rows.cu ``silu_mul``, ``sigmoid_mul`` or ``gelu_mul`` (act(x) * m) of cupy
    float32 arrays of one shape."""
    out = require_cupy().empty_like(x)
    threads = 256
    grid = (max(1, (x.size + threads - 1) // threads),)
    kernel("rows.cu", name)(grid, (threads,), (x, m, out, np.int64(x.size)))
    return out


def attend(
    q: Any, k_cache: Any, v_cache: Any, positions: Any, scale: float, window: int = 0
) -> Any:
    """kernels/attention.cu over cupy arrays: q float32 (n, n_head, hd_k), caches
    (n_kv, ctx, hd), positions int32 (n,). Returns float32 (n, n_head, hd_v)."""
    cupy = require_cupy()
    n, n_head, hd_k = q.shape
    n_kv, ctx, hd_v = v_cache.shape
    probs = cupy.empty((n * n_head, ctx), dtype=np.float32)
    out = cupy.empty((n, n_head, hd_v), dtype=np.float32)
    threads = 32 * WARPS_PER_BLOCK
    grid = max(1, (n * n_head + WARPS_PER_BLOCK - 1) // WARPS_PER_BLOCK)
    args = (q, k_cache, v_cache, positions, np.float32(scale), np.int32(window), probs, out)
    sizes = (n, n_head, n_kv, ctx, hd_k, hd_v)
    kernel("attention.cu", "attend")((grid,), (threads,), (*args, *(np.int32(s) for s in sizes)))
    return out


@functools.cache
def _matvec_kernel(t: GGMLType, n: int) -> Any:
    return kernel("matvec.cu", matvec_name(t, n), tuple(matvec_names()))


def matvec(w: Any, t: GGMLType, x: Any, out: Any | None = None) -> Any:
    """out[i, r] = dequant(w)[r] . x[i] on the GPU.

    w: cupy uint8 (rows, row_bytes) weight blocks of type t; x: cupy float32 (n, cols),
    n <= 8; returns (or fills) cupy float32 (n, rows)."""
    cupy = require_cupy()
    n, rows = x.shape[0], w.shape[0]
    kernel = _matvec_kernel(t, n)
    if out is None:
        out = cupy.empty((n, rows), dtype=np.float32)
    threads = 32 * WARPS_PER_BLOCK
    grid = max(1, (rows + WARPS_PER_BLOCK - 1) // WARPS_PER_BLOCK)
    kernel((grid,), (threads,), (w, np.int32(rows), np.int32(w.shape[1]), x, out))
    return out
