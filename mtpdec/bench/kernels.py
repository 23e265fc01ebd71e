"""`mtpdec bench kernels`: n-input MatVec speed against the machine's read bandwidth.

For each format and activation mode a random weight matrix of at least ``matrix_mb`` MiB
is timed at each input count n (median of ``repeats`` calls, after a warm-up call that
also compiles or loads the Numba cache). A q8 call includes rounding its n input rows to
8 bits (as a model's matmul does once per input). Reported per cell: ms per call, weight
GB/s, that as a fraction of the read bandwidth measured in the same run (the median of
readings taken before each format and at the end, since the shared machines drift), and
t(n)/t(1). The instruction path of the integer kernels is part of the title and JSON.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mtpdec.bench.bandwidth import read_bandwidth
from mtpdec.cpu.idecoders import INT_FORMATS
from mtpdec.cpu.isa import check_path, host_path
from mtpdec.cpu.matvec import ACTIVATION_MODES, MatVec
from mtpdec.errors import MtpdecError
from mtpdec.quants.pack import random_blocks
from mtpdec.quants.types import SUPPORTED, GGMLType, block_size
from mtpdec.settings import cpu_count
from mtpdec.tensor import Tensor

COLS = 4096


@dataclass
class KernelCell:
    format: str
    activations: str
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


def parse_modes(spec: str) -> list[str]:
    modes = [m.strip() for m in spec.split(",")]
    bad = [m for m in modes if m not in ACTIVATION_MODES]
    if bad or not modes:
        known = ", ".join(ACTIVATION_MODES)
        raise MtpdecError(f"--activations takes a list of {known}, got {spec!r}")
    return list(dict.fromkeys(modes))


def time_cells(
    mv: MatVec, ns: list[int], repeats: int, rng: np.random.Generator
) -> dict[int, tuple[float, float]]:
    """n -> (first call seconds, median seconds per call) of mv(x[n]), rounding included.
    The repeats take every n in turn (rotating the order), so that a drift of the
    machine's speed reaches all n alike and t(n)/t(1) compares like with like."""
    xs = {n: rng.standard_normal((n, mv.cols)).astype(np.float32) for n in ns}
    outs = {n: np.empty((n, mv.rows), dtype=np.float32) for n in ns}
    first, times = {}, {n: [] for n in ns}
    for n in ns:
        t0 = time.perf_counter()
        mv(xs[n], outs[n])
        first[n] = time.perf_counter() - t0
    for r in range(repeats):
        for n in ns[r % len(ns) :] + ns[: r % len(ns)]:
            t0 = time.perf_counter()
            mv(xs[n], outs[n])
            times[n].append(time.perf_counter() - t0)
    return {n: (first[n], float(np.median(times[n]))) for n in ns}


def cpu_model() -> str:
    """The CPU's model name (Linux), for the report."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def run_kernel_bench(
    *,
    formats: str,
    inputs: str,
    matrix_mb: int,
    repeats: int,
    json_path: Path | None,
    activations: str = "q8,f32",
    path: str | None = None,
) -> dict:
    """Run the benchmark, print a rich table, optionally write JSON; returns the results.

    activations: comma-separated modes to time (q8 rows only for formats with an integer
    kernel); path: the integer kernels' instruction path (default: the host's widest)."""
    import numba
    from rich.console import Console
    from rich.table import Table

    if matrix_mb < 64:
        raise MtpdecError(f"--matrix-mb must be >= 64 (bandwidth-bound size), got {matrix_mb}")
    if repeats < 1:
        raise MtpdecError(f"--repeats must be >= 1, got {repeats}")
    fmts, ns, modes = parse_formats(formats), parse_inputs(inputs), parse_modes(activations)
    int_path = check_path(path) if path is not None else host_path()
    integer_types = {t for t, _ in INT_FORMATS}
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
        for mode in modes:
            if mode == "q8" and t not in integer_types:
                continue
            mv = MatVec(w, mode, int_path if mode == "q8" else None)
            with console.status(f"{t.name} {mode} n={','.join(map(str, ns))}"):
                timed = time_cells(mv, ns, repeats, rng)
            for n in ns:
                first, sec = timed[n]
                gbps = w.nbytes / sec / 1e9
                cells.append(
                    KernelCell(
                        t.name,
                        mode,
                        n,
                        w.rows,
                        w.cols,
                        w.nbytes / 2**20,
                        first,
                        sec * 1e3,
                        gbps,
                        0.0,
                        0.0,
                    )
                )
        del w
    readings.append(read_bandwidth())
    bandwidth = float(np.median(readings))
    for c in cells:
        t1 = next(
            o.ms_per_call
            for o in cells
            if o.format == c.format and o.activations == c.activations and o.n == 1
        )
        c.of_read_bandwidth = c.weight_gbps / bandwidth
        c.t_over_t1 = c.ms_per_call / t1
    result = {
        "cpu": cpu_model(),
        "instruction_path": int_path,
        "threads": numba.get_num_threads(),
        "cores": cpu_count(),
        "read_bandwidth_gbps": bandwidth,
        "read_bandwidth_readings_gbps": readings,
        "repeats": repeats,
        "cells": [asdict(c) for c in cells],
    }
    table = Table(
        title=f"n-input MatVec on {result['cpu']}, {result['threads']} threads, integer path "
        f"{int_path}; read bandwidth {bandwidth:.1f} GB/s (median of {len(readings)} "
        f"readings, {min(readings):.1f}-{max(readings):.1f})"
    )
    columns = ("format", "act.", "n", "MiB", "first call s", "ms/call", "GB/s", "of read BW")
    for col in columns + ("t(n)/t(1)",):
        table.add_column(col, justify="right")
    for c in cells:
        table.add_row(
            c.format,
            c.activations,
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
