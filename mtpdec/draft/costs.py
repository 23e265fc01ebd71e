"""The cost curve of a k-token verify forward, measured once per model file, machine,
activation mode and thread count, and cached on disk (``~/.cache/mtpdec``)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np


def _cache_file(model: Any, max_k: int) -> Path:
    import numba

    path = Path(model.file.path).resolve()
    st = path.stat()
    key = json.dumps(
        [
            str(path),
            st.st_size,
            st.st_mtime_ns,
            model.activations,
            numba.get_num_threads(),
            platform.node(),
            platform.processor(),
            max_k,
        ]
    )
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mtpdec"
    return base / f"costs-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def measure_costs(model: Any, max_k: int, repeats: int = 3, use_cache: bool = True) -> list[float]:
    """Median seconds of a forward of k tokens with snapshots (a verify), k = 1..max_k,
    after an 8-token prefill, on a scratch state."""
    cache = _cache_file(model, max_k)
    if use_cache and cache.exists():
        try:
            costs = json.loads(cache.read_text())
            if isinstance(costs, list) and len(costs) == max_k:
                return [float(c) for c in costs]
        except (OSError, ValueError):
            pass
    state = model.new_state(8 + repeats * max_k + 2 * max_k, snapshot_slots=max_k)
    model.forward(np.arange(8, dtype=np.int32), 0, state, last_only=True)
    rng = np.random.default_rng(0)
    times: dict[int, list[float]] = {k: [] for k in range(1, max_k + 1)}
    for _ in range(repeats):
        for k in range(1, max_k + 1):
            toks = rng.integers(0, model.n_vocab, k).astype(np.int32)
            start = state.length
            t0 = time.perf_counter()
            model.forward(toks, start, state, snapshots=True)
            times[k].append(time.perf_counter() - t0)
            if k > 1:
                state.rollback(start + 1)
    costs = [statistics.median(times[k]) for k in range(1, max_k + 1)]
    if use_cache:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(costs))
        except OSError:
            pass
    return costs
