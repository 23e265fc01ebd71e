"""Giving back the page cache behind parts of a mapped GGUF file that are no longer read.

A matrix repacked at load (``mtpdec.cpu.repack``) is never read from the file again; on
a model that fills most of RAM its file pages would otherwise compete with the repacked
copy and with the tensors that are still read from the mapping every token.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap

import numpy as np

_MADV_PAGEOUT = 21  # Linux >= 5.4: reclaim the range (clean file pages: dropped)
_MADV_DONTNEED = 4


def mapped_file(arr: np.ndarray) -> bool:
    """Whether ``arr`` is a view of an mmap (a file mapping), not memory of its own."""
    base: object = arr
    while base is not None:
        if isinstance(base, mmap.mmap):
            return True
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return False


def release_pages(arr: np.ndarray) -> bool:
    """Ask the kernel to drop the file pages fully inside ``arr`` (a view of a read-only
    file mapping; the data is read again from the file if touched later). Arrays that
    are not mmap views are left alone. Returns whether the kernel accepted the advice."""
    if not mapped_file(arr) or not hasattr(mmap, "PAGESIZE") or arr.nbytes == 0:
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    page = mmap.PAGESIZE
    start = arr.ctypes.data
    first = -(-start // page) * page
    last = (start + arr.nbytes) // page * page
    if last <= first:
        return False
    length = ctypes.c_size_t(last - first)
    for advice in (_MADV_PAGEOUT, _MADV_DONTNEED):
        if libc.madvise(ctypes.c_void_p(first), length, advice) == 0:
            return True
    return False
