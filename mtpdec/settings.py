"""Process-wide run settings that the CLI sets once.

The thread count is validated when given and applied to Numba lazily, at the first
kernel call, so that commands that never run a kernel (``info``) never import Numba.
"""

from __future__ import annotations

import os

from mtpdec.errors import MtpdecError

_requested_threads = 0  # 0 = Numba's default (all cores)
_applied = False


def max_threads() -> int:
    """Threads Numba can run: NUMBA_NUM_THREADS when set, else the CPU count (Numba's rule)."""
    env = os.environ.get("NUMBA_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else os.cpu_count() or 1


def set_threads(threads: int) -> None:
    """Request Numba worker threads; 0 means all cores. Applied by ``apply_threads``."""
    global _requested_threads, _applied
    if threads < 0:
        raise MtpdecError(f"--threads must be >= 0, got {threads}")
    if threads > max_threads():
        raise MtpdecError(f"--threads {threads} exceeds the {max_threads()} threads available")
    _requested_threads, _applied = threads, False


def apply_threads() -> None:
    """Apply the requested thread count to Numba (once; cheap to call before every kernel)."""
    global _applied
    if _applied:
        return
    _applied = True
    if _requested_threads:
        import numba

        numba.set_num_threads(_requested_threads)


def cpu_count() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
