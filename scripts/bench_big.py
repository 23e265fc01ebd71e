#!/usr/bin/env python
"""Decode speed of mtpdec against llama.cpp's ``llama-bench`` on a model too big for two
copies in RAM (e.g. the ``qwen35-27b`` synth shape, 16 GB, on a 24 GB machine).

Each engine runs in its own process, one after the other, rounds alternating which goes
first (two copies of the model would not fit, and llama.cpp repacks its Q4_K weights into
memory as mtpdec does):

- mtpdec: ``mtpdec --threads T generate MODEL PROMPT -n N --json --activations A``; its
  decode tok/s (tokens after the first over the time of their forwards, as llama.cpp's
  ``tg``), load and compile seconds come from the JSON stats;
- llama.cpp: ``llama-bench -m MODEL -t T -p 0 -n N -r 1 -o json`` (tg N), built from the
  llama.cpp sources in the llama-cpp-python sdist (README, "Benchmarks").

The read bandwidth is measured in this process before each round and at the end, and
the weights read per decoded token (``bench_generate.decode_weight_bytes``) give each
engine's weight read rate. Medians over the rounds; asserts nothing; prints a table and
writes JSON.

Example:
    mtpdec synth q35_27b.gguf --preset qwen35-27b
    python scripts/bench_big.py --model q35_27b.gguf --llama-bench llama.cpp/build/bin/llama-bench
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROMPT = "The history of the printing press begins in the fifteenth century"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="GGUF file")
    p.add_argument("--llama-bench", type=Path, required=True, help="llama-bench executable")
    p.add_argument("--threads", type=int, default=2, help="threads for both (default 2)")
    p.add_argument("--n-predict", type=int, default=16, help="tokens decoded (default 16)")
    p.add_argument("--rounds", type=int, default=2, help="rounds (default 2)")
    p.add_argument("--activations", default="q8", help="mtpdec mode (default q8)")
    p.add_argument("--json", type=Path, default=Path("bench_big.json"), help="JSON output")
    args = p.parse_args(argv)
    if min(args.threads, args.n_predict, args.rounds) < 1:
        p.error("--threads, --n-predict and --rounds must be >= 1")
    if not args.llama_bench.is_file():
        p.error(f"--llama-bench {args.llama_bench}: no such file")
    return args


def run_mtpdec(args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, "-m", "mtpdec", "--threads", str(args.threads), "generate"]
    cmd += [str(args.model), PROMPT, "-n", str(args.n_predict), "--json"]
    cmd += ["--activations", args.activations]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    stats = json.loads(out.stdout)["stats"]
    return {
        "decode_tok_s": stats["decode_tok_s"],
        "load_s": stats["load_s"],
        "compile_s": stats["compile_s"],
        "wall_s": time.perf_counter() - t0,
    }


def run_llama(args: argparse.Namespace) -> dict[str, float]:
    cmd = [str(args.llama_bench), "-m", str(args.model), "-t", str(args.threads), "-p", "0"]
    cmd += ["-n", str(args.n_predict), "-r", "1", "-o", "json"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    (test,) = [t for t in json.loads(out.stdout) if t.get("n_gen")]
    return {"decode_tok_s": float(test["avg_ts"]), "wall_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_generate import decode_weight_bytes

    from mtpdec.bench.bandwidth import read_bandwidth
    from mtpdec.bench.kernels import cpu_model
    from mtpdec.cpu.isa import host_path
    from mtpdec.loader import open_gguf

    with open_gguf(args.model) as f:
        weight_bytes = decode_weight_bytes(f)
    runs: dict[str, list[dict[str, float]]] = {"mtpdec": [], "llama.cpp": []}
    readings = []
    for r in range(args.rounds):
        readings.append(read_bandwidth())
        order = [("mtpdec", run_mtpdec), ("llama.cpp", run_llama)]
        for name, run in order if r % 2 == 0 else order[::-1]:
            runs[name].append(run(args))
            print(f"round {r}: {name} {runs[name][-1]}", file=sys.stderr)
    readings.append(read_bandwidth())
    bandwidth = statistics.median(readings)
    result: dict[str, Any] = {
        "model": str(args.model),
        "machine": cpu_model(),
        "instruction_path": host_path(),
        "activations": args.activations,
        "threads": args.threads,
        "n_predict": args.n_predict,
        "rounds": args.rounds,
        "decode_weight_bytes": weight_bytes,
        "read_bandwidth_gbps": bandwidth,
        "read_bandwidth_readings_gbps": readings,
        "runs": runs,
    }
    for name, rs in runs.items():
        tok_s = statistics.median(x["decode_tok_s"] for x in rs)
        result[name] = {
            "decode_tok_s": tok_s,
            "weight_gbps": tok_s * weight_bytes / 1e9,
            "of_read_bandwidth": tok_s * weight_bytes / 1e9 / bandwidth,
        }
    result["ratio"] = result["mtpdec"]["decode_tok_s"] / result["llama.cpp"]["decode_tok_s"]
    render(result)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


def render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{Path(result['model']).name}: decode {result['n_predict']} tokens, "
        f"{result['threads']} threads, {result['rounds']} rounds, read bandwidth "
        f"{result['read_bandwidth_gbps']:.1f} GB/s; {result['machine']}, mtpdec "
        f"{result['activations']} ({result['instruction_path']})"
    )
    for col in ("", "decode tok/s", "weights GB/s", "of read BW"):
        table.add_column(col, justify="right")
    for name in ("mtpdec", "llama.cpp"):
        r = result[name]
        table.add_row(
            name,
            f"{r['decode_tok_s']:.3f}",
            f"{r['weight_gbps']:.2f}",
            f"{r['of_read_bandwidth']:.0%}",
        )
    table.add_row("mtpdec / llama.cpp", f"{result['ratio']:.2f}x", "", "")
    Console().print(table)


if __name__ == "__main__":
    main()
