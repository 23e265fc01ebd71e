"""Compiling CUDA sources with NVRTC through ctypes: what CuPy's RawModule does, but with
our options only (CuPy appends ``-ftz=true``, flushing float32 subnormals to zero, and
NVRTC honours the last occurrence of a flag). Needs the NVRTC library, from the
``nvidia-cuda-nvrtc`` wheel (a CuPy dependency) or a CUDA toolkit; no GPU."""

from __future__ import annotations

import ctypes
import glob
import os
import re
from dataclasses import dataclass, field


def find_library(major: int | None = None) -> str | None:
    """Path of libnvrtc.so from the nvidia wheels or the CUDA toolkit, or None; with
    ``major`` (the CUDA major version CuPy runs with) a library of that version first,
    since a CUBIN from a newer NVRTC may not load on an older driver."""
    patterns = [
        "/usr/local/cuda*/lib64/libnvrtc.so*",
        "/usr/local/cuda*/targets/*/lib/libnvrtc.so*",
    ]
    try:
        import nvidia

        for root in nvidia.__path__:
            patterns.insert(0, os.path.join(root, "*", "lib", "libnvrtc.so*"))
    except ImportError:
        pass
    found = [p for pattern in patterns for p in sorted(glob.glob(pattern)) if "builtins" not in p]
    found = prefer_major(found, major)
    return found[0] if found else None


def prefer_major(paths: list[str], major: int | None) -> list[str]:
    """paths with the libraries of CUDA major version ``major`` (``libnvrtc.so.12``,
    ``libnvrtc.so.12.4.127``) first, the order kept otherwise."""
    if major is None:
        return list(paths)
    return sorted(paths, key=lambda p: re.search(rf"\.so\.{major}(\.|$)", p) is None)


@dataclass
class Compiled:
    """ok: whether NVRTC compiled; log: its messages; lowered: name expression -> mangled
    name; binary: CUBIN for a real ``-arch=sm_XX``, else PTX (empty when not ok)."""

    ok: bool
    log: str
    lowered: dict[str, str] = field(default_factory=dict)
    binary: bytes = b""


def compile_source(lib_path: str, source: str, options: list[str], names: list[str]) -> Compiled:
    """NVRTC on ``source`` with ``options`` and the C++ name expressions ``names``."""
    lib = ctypes.CDLL(lib_path)
    prog = ctypes.c_void_p()
    check = lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"kernel.cu", 0, None, None)
    if check != 0:
        return Compiled(False, f"nvrtcCreateProgram failed ({check})")
    try:
        for name in names:
            if lib.nvrtcAddNameExpression(prog, name.encode()) != 0:
                return Compiled(False, f"bad name expression {name}")
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        ok = lib.nvrtcCompileProgram(prog, len(options), opts) == 0
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        result = Compiled(ok, log.value.decode(errors="replace"))
        if not ok:
            return result
        for name in names:
            out = ctypes.c_char_p()
            lib.nvrtcGetLoweredName(prog, name.encode(), ctypes.byref(out))
            result.lowered[name] = (out.value or b"").decode()
        cubin = any(o.startswith("-arch=sm_") for o in options)
        get_size, get = (
            (lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN)
            if cubin
            else (lib.nvrtcGetPTXSize, lib.nvrtcGetPTX)
        )
        get_size(prog, ctypes.byref(size))
        data = ctypes.create_string_buffer(size.value)
        get(prog, data)
        result.binary = data.raw
        return result
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
