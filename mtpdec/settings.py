"""Process-wide run settings that the CLI sets once."""

from __future__ import annotations

import os

from mtpdec.errors import MtpdecError


def set_threads(threads: int) -> int:
    """Set Numba's worker threads; 0 means all cores. Returns the count in force."""
    if threads < 0:
        raise MtpdecError(f"--threads must be >= 0, got {threads}")
    if threads == 0:
        return cpu_count()  # Numba's default; importing numba here would slow every command
    import numba

    available = numba.config.NUMBA_NUM_THREADS
    if threads > available:
        raise MtpdecError(f"--threads {threads} exceeds the {available} threads available")
    count = threads or available
    numba.set_num_threads(count)
    return count


def cpu_count() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
