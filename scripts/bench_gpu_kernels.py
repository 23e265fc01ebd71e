#!/usr/bin/env python
"""GPU matvec kernels (kernels/matvec.cu) against the device's copy bandwidth.

For each format a random weight matrix of --matrix-mb (cols = --cols, the 27B shape's
n_embd by default) is multiplied by n = 1..8 float32 inputs; CUDA events time --repeats
rounds of 20 back-to-back calls after a warm-up (median per call). GB/s counts the weight bytes read per call; the device
copy bandwidth is a device-to-device copy's bytes read plus written per second, measured
in the same run. Asserts nothing; prints a table and writes JSON. Needs CuPy and a GPU.

    python scripts/bench_gpu_kernels.py --json gpu_kernels.json
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np

FORMATS = ("Q4_K", "Q6_K", "Q8_0", "Q5_0")


def timed(cp, fn, repeats: int, calls: int = 20) -> float:
    """Median seconds per fn() over CUDA events around ``calls`` back-to-back launches
    (the host's launch work overlaps the GPU's), after one warm-up call."""
    fn()
    cp.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(calls):
            fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3 / calls)
    return statistics.median(times)


def copy_bandwidth(cp, repeats: int, size: int = 1 << 30) -> float:
    """GB/s of a device-to-device copy, bytes read plus written."""
    src, dst = cp.empty(size, dtype=cp.uint8), cp.empty(size, dtype=cp.uint8)
    return 2 * size / timed(cp, lambda: cp.copyto(dst, src), repeats) / 1e9


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--matrix-mb", type=int, default=512)
    p.add_argument("--cols", type=int, default=5120)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument("--json", dest="json_path")
    args = p.parse_args(argv)
    from mtpdec.gpu.runtime import matvec, require_cupy
    from mtpdec.quants.pack import random_blocks
    from mtpdec.quants.types import GGMLType

    cp = require_cupy()
    props = cp.cuda.runtime.getDeviceProperties(0)
    device = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    copy_bw = copy_bandwidth(cp, args.repeats)
    print(f"{device}: device copy {copy_bw:.0f} GB/s (read + written)")
    rows_out = []
    rng = np.random.default_rng(0)
    for name in args.formats.split(","):
        t = GGMLType[name]
        elems = 256 if name.endswith("_K") else 32
        nbytes = {"Q4_K": 144, "Q6_K": 210, "Q8_0": 34, "Q5_0": 22}[name]
        row_bytes = args.cols // elems * nbytes
        rows = args.matrix_mb * (1 << 20) // row_bytes
        raw = random_blocks(t, rows * args.cols // elems, rng, 0.05).reshape(rows, row_bytes)
        w = cp.asarray(raw)
        base = None
        for n in range(1, 9):
            x = cp.asarray(rng.standard_normal((n, args.cols)).astype(np.float32))
            out = cp.empty((n, rows), dtype=np.float32)
            sec = timed(cp, lambda w=w, x=x, out=out, t=t: matvec(w, t, x, out), args.repeats)
            base = sec if n == 1 else base
            gbs = raw.nbytes / sec / 1e9
            row = {"format": name, "n": n, "ms": sec * 1e3, "GB/s": gbs,
                   "of_copy_bw": gbs / copy_bw, "t_over_t1": sec / base}  # fmt: skip
            rows_out.append(row)
            print(f"  {name} n={n}: {sec * 1e3:.3f} ms, {gbs:.0f} GB/s, "
                  f"{gbs / copy_bw:.0%} of copy BW, t(n)/t(1) {sec / base:.2f}")  # fmt: skip
        del w
    if args.json_path:
        record = {"device": device, "copy_GBps": copy_bw, "cols": args.cols, "rows": rows_out}
        with open(args.json_path, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    from mtpdec.errors import MtpdecError

    try:
        main()
    except MtpdecError as e:
        raise SystemExit(f"error: {e}") from None
