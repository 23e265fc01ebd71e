"""Compiling CUDA sources with NVRTC (the compiler CuPy's RawModule uses) through ctypes,
without CuPy or a GPU: NVRTC only needs its library, from the ``nvidia-cuda-nvrtc``
wheel (``pip install nvidia-cuda-nvrtc``) or a CUDA toolkit."""

from __future__ import annotations

import ctypes
import glob
import os


def find_library() -> str | None:
    """Path of libnvrtc.so from the nvidia wheels or the CUDA toolkit, or None."""
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
    for pattern in patterns:
        found = sorted(p for p in glob.glob(pattern) if "builtins" not in p)
        if found:
            return found[0]
    return None


def compile_source(
    lib_path: str, source: str, options: list[str], names: list[str]
) -> tuple[bool, str, dict[str, str]]:
    """(success, compile log, name expression -> lowered name) for NVRTC on ``source``."""
    lib = ctypes.CDLL(lib_path)
    prog = ctypes.c_void_p()
    check = lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"kernel.cu", 0, None, None)
    assert check == 0, f"nvrtcCreateProgram: {check}"
    try:
        for name in names:
            assert lib.nvrtcAddNameExpression(prog, name.encode()) == 0, name
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        ok = lib.nvrtcCompileProgram(prog, len(options), opts) == 0
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        lowered = {}
        if ok:
            for name in names:
                out = ctypes.c_char_p()
                assert lib.nvrtcGetLoweredName(prog, name.encode(), ctypes.byref(out)) == 0
                lowered[name] = out.value.decode()
        return ok, log.value.decode(errors="replace"), lowered
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
