"""`mtpdec bench kernels`: n-input MatVec speed against the machine's read bandwidth.

For each format a random weight matrix of at least ``matrix_mb`` MiB is timed at each
input count n (median of ``repeats`` calls, after a warm-up call that also compiles or
loads the Numba cache). Reported per cell: ms per call, weight GB/s, that as a fraction
of the read bandwidth measured in the same run (the median of readings taken before each
format and at the end, since the shared machines drift), and t(n)/t(1).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mtpdec.bench.bandwidth import read_bandwidth
from mtpdec.cpu.matvec import matvec
from mtpdec.errors import MtpdecError
from mtpdec.quants.pack import random_blocks
from mtpdec.quants.types import SUPPORTED, GGMLType, block_size
from mtpdec.settings import cpu_count
from mtpdec.tensor import Tensor

COLS = 4096


@dataclass
class KernelCell:
    format: str
    n: int
    rows: int
    cols: int
    weight_mb: float
    first_call_s: float  # compile or cache load + one call
    ms_per_call: float
    weight_gbps: float
    of_read_bandwidth: float
    t_over_t1: float


def parse_formats(spec: str) -> list[GGMLType]:
    if spec == "all":
        return list(SUPPORTED)
    out = []
    for name in spec.split(","):
        try:
            t = GGMLType[name.strip().upper()]
        except KeyError:
            raise MtpdecError(
                f"unknown format {name!r} (known: {', '.join(s.name for s in SUPPORTED)})"
            ) from None
        if t not in SUPPORTED:
            raise MtpdecError(f"format {t.name} has no kernel")
        out.append(t)
    return out


def parse_inputs(spec: str) -> list[int]:
    try:
        values = [int(v) for v in spec.split(",")]
    except ValueError:
        raise MtpdecError(f"--n must be comma-separated integers, got {spec!r}") from None
    if not values or min(values) < 1:
        raise MtpdecError(f"--n values must be >= 1, got {spec!r}")
    return values


def random_matrix(t: GGMLType, matrix_mb: int, rng: np.random.Generator) -> Tensor:
    """A random (rows, COLS) weight of at least matrix_mb MiB."""
    elems, nbytes = block_size(t)
    row_bytes = COLS // elems * nbytes
    rows = -(-(matrix_mb << 20) // row_bytes)
    raw = random_blocks(t, rows * (COLS // elems), rng, scale=0.02).reshape(rows, row_bytes)
    return Tensor(f"bench.{t.name}", int(t), (rows, COLS), raw)


def time_cell(w: Tensor, n: int, repeats: int, rng: np.random.Generator) -> tuple[float, float]:
    """(first call seconds, median seconds per call) of matvec(w, x[n])."""
    x = rng.standard_normal((n, w.cols)).astype(np.float32)
    out = np.empty((n, w.rows), dtype=np.float32)
    t0 = time.perf_counter()
    matvec(w, x, out)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        matvec(w, x, out)
        times.append(time.perf_counter() - t0)
    return first, float(np.median(times))


def run_kernel_bench(
    *, formats: str, inputs: str, matrix_mb: int, repeats: int, json_path: Path | None
) -> dict:
    """Run the benchmark, print a rich table, optionally write JSON; returns the results."""
    import numba
    from rich.console import Console
    from rich.table import Table

    if matrix_mb < 64:
        raise MtpdecError(f"--matrix-mb must be >= 64 (bandwidth-bound size), got {matrix_mb}")
    if repeats < 1:
        raise MtpdecError(f"--repeats must be >= 1, got {repeats}")
    fmts, ns = parse_formats(formats), parse_inputs(inputs)
    if json_path is not None and not json_path.parent.is_dir():
        raise MtpdecError(f"--json: directory {str(json_path.parent)!r} does not exist")
    ns = sorted(set(ns) | {1})  # t(n)/t(1) needs n = 1
    console = Console(stderr=True)
    rng = np.random.default_rng(0)
    readings: list[float] = []  # read bandwidth, measured before each format and at the end
    cells: list[KernelCell] = []
    for t in fmts:
        with console.status("measuring read bandwidth"):
            readings.append(read_bandwidth())
        w = random_matrix(t, matrix_mb, rng)
        for n in ns:
            with console.status(f"{t.name} n={n}"):
                first, sec = time_cell(w, n, repeats, rng)
            gbps = w.nbytes / sec / 1e9
            cells.append(
                KernelCell(
                    t.name, n, w.rows, w.cols, w.nbytes / 2**20, first, sec * 1e3, gbps, 0.0, 0.0
                )
            )
        del w
    readings.append(read_bandwidth())
    bandwidth = float(np.median(readings))
    for c in cells:
        t1 = next(o.ms_per_call for o in cells if o.format == c.format and o.n == 1)
        c.of_read_bandwidth = c.weight_gbps / bandwidth
        c.t_over_t1 = c.ms_per_call / t1
    result = {
        "threads": numba.get_num_threads(),
        "cores": cpu_count(),
        "read_bandwidth_gbps": bandwidth,
        "read_bandwidth_readings_gbps": readings,
        "repeats": repeats,
        "cells": [asdict(c) for c in cells],
    }
    table = Table(
        title=f"n-input MatVec, {result['threads']} threads, read bandwidth {bandwidth:.1f} GB/s "
        f"(median of {len(readings)} readings, {min(readings):.1f}-{max(readings):.1f})"
    )
    for col in ("format", "n", "MiB", "first call s", "ms/call", "GB/s", "of read BW", "t(n)/t(1)"):
        table.add_column(col, justify="right")
    for c in cells:
        table.add_row(
            c.format,
            str(c.n),
            f"{c.weight_mb:.0f}",
            f"{c.first_call_s:.2f}",
            f"{c.ms_per_call:.2f}",
            f"{c.weight_gbps:.1f}",
            f"{c.of_read_bandwidth:.0%}",
            f"{c.t_over_t1:.2f}",
        )
    Console().print(table)
    if json_path is not None:
        try:
            json_path.write_text(json.dumps(result, indent=2))
        except OSError as exc:
            raise MtpdecError(f"cannot write {str(json_path)!r}: {exc.strerror or exc}") from None
    return result
