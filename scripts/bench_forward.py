#!/usr/bin/env python
"""Cost of one forward pass of k tokens (k = 1, 2, 4, 8 by default): what a speculative
verify of k - 1 drafts costs against plain decoding (k = 1), with a breakdown.

mtpdec: after a prefill of --prompt-tokens, ``model.forward`` of k tokens on a state made
with ``snapshot_slots = k - 1``, ``snapshots=True`` (a verify: the GDN layers stream their state
into snapshot slots after every batch token but the last), then ``state.rollback``, repeated;
only the forward is timed. Each part of the forward is timed by wrapping it: the matrix
kernels (8-bit rounding of the inputs included) of the trunk and of the LM head, GDN
recurrences (delta rule with its snapshot copies, conv), attention over the KV cache; the
rest is norms, activations, numpy glue and Python. llama.cpp (``--llama``, through
llama-cpp-python): ``eval`` of the same k tokens after the same prefill, from a state
saved once and restored before every repeat (``save_state``/``load_state``).

Rounds interleave the k values (and engines); medians are reported, with cost(k)/cost(1).
Asserts nothing; prints a table and writes JSON.

Example:
    python scripts/bench_forward.py --model qwen35-0.8b.gguf --llama
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="GGUF file")
    p.add_argument("--ks", default="1,2,4,8", help="batch widths (default 1,2,4,8)")
    p.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    p.add_argument("--prompt-tokens", type=int, default=64, help="prefill length (default 64)")
    p.add_argument("--rounds", type=int, default=15, help="timed repeats per k (default 15)")
    p.add_argument("--activations", default="q8", help="mtpdec mode: q8 (default) or f32")
    p.add_argument("--llama", action="store_true", help="also time llama.cpp")
    p.add_argument("--json", type=Path, default=Path("bench_forward.json"), help="JSON output")
    args = p.parse_args(argv)
    args.ks = sorted({int(k) for k in args.ks.split(",")} | {1})
    if min(args.ks) < 1 or args.rounds < 1 or args.prompt_tokens < 1:
        p.error("--ks, --rounds and --prompt-tokens must be positive")
    return args


class PartTimer:
    """Seconds spent inside wrapped callables, by part name, while ``recording``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.recording = False

    def wrap(self, obj: Any, attr: str, part: str) -> None:
        inner = getattr(obj, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.recording:
                return inner(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - t0

        setattr(obj, attr, timed)

    @contextlib.contextmanager
    def record(self):
        self.seconds.clear()
        self.recording = True
        try:
            yield self.seconds
        finally:
            self.recording = False


def instrument(model: Any, timer: PartTimer) -> None:
    """Wrap the model's parts: trunk matrices, LM head, GDN recurrences, attention."""
    from mtpdec.cpu import linear as layers
    from mtpdec.cpu.backend import CPU

    linear_call = layers.Linear.__call__  # dunder calls look the method up on the class

    def call(lin: Any, *args: Any, **kwargs: Any) -> Any:
        if not timer.recording:
            return linear_call(lin, *args, **kwargs)
        part = "LM head" if lin is model.head else "matrices"
        t0 = time.perf_counter()
        try:
            return linear_call(lin, *args, **kwargs)
        finally:
            timer.seconds[part] += time.perf_counter() - t0

    layers.Linear.__call__ = call
    timer.wrap(CPU, "delta_rule", "GDN delta rule + snapshots")  # the model's ops object
    timer.wrap(CPU, "causal_conv_silu", "GDN conv + snapshots")
    timer.wrap(CPU, "attend", "attention")


def time_mtpdec(model: Any, ids: list[int], ks: list[int], rounds: int) -> dict[int, Any]:
    timer = PartTimer()
    instrument(model, timer)
    rng = np.random.default_rng(0)
    states = {}
    for k in ks:
        # each repeat keeps one of its k tokens, so the state grows by one per repeat
        state = model.new_state(len(ids) + rounds + 1 + max(ks), snapshot_slots=k - 1)
        model.forward(np.array(ids, dtype=np.int32), 0, state, last_only=True, prefill=True)
        states[k] = state
    out: dict[int, Any] = {k: {"seconds": [], "parts": defaultdict(list)} for k in ks}
    for r in range(rounds + 1):  # round 0 warms up
        for k in ks[r % len(ks) :] + ks[: r % len(ks)]:
            state = states[k]
            toks = rng.integers(0, model.n_vocab, k).astype(np.int32)
            start = state.length
            with timer.record() as parts:
                t0 = time.perf_counter()
                model.forward(toks, start, state, snapshots=True)
                sec = time.perf_counter() - t0
            if k > 1:
                state.rollback(start + 1)  # keep one token, as a verify that accepts none
            if r:
                out[k]["seconds"].append(sec)
                for part, s in parts.items():
                    out[k]["parts"][part].append(s)
    return out


def time_llama(path: Path, ids: list[int], ks: list[int], rounds: int, threads: int):
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(path),
        n_threads=threads,
        n_threads_batch=threads,
        n_ctx=len(ids) + max(ks) + 8,
        n_batch=max(512, len(ids)),
        logits_all=True,
        verbose=False,
    )
    llm.eval(ids)
    saved = llm.save_state()
    rng = np.random.default_rng(0)
    out: dict[int, list[float]] = {k: [] for k in ks}
    for r in range(rounds + 1):
        for k in ks[r % len(ks) :] + ks[: r % len(ks)]:
            llm.load_state(saved)
            toks = rng.integers(0, llm.n_vocab(), k).tolist()
            t0 = time.perf_counter()
            llm.eval(toks)
            sec = time.perf_counter() - t0
            if r:
                out[k].append(sec)
    llm.close()
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from mtpdec.bench.kernels import cpu_model
    from mtpdec.cpu.isa import host_path
    from mtpdec.models import load_model
    from mtpdec.settings import apply_threads, set_threads

    set_threads(args.threads)
    apply_threads()
    model = load_model(args.model, activations=args.activations)
    model.compile()
    ids = (np.arange(args.prompt_tokens) % 1000 + 10).tolist()
    mt = time_mtpdec(model, ids, args.ks, args.rounds)
    ll = time_llama(args.model, ids, args.ks, args.rounds, args.threads) if args.llama else None

    med = {k: statistics.median(mt[k]["seconds"]) for k in args.ks}
    parts = sorted({p for k in args.ks for p in mt[k]["parts"]})
    result: dict[str, Any] = {
        "model": str(args.model),
        "machine": cpu_model(),
        "instruction_path": host_path(),
        "activations": args.activations,
        "threads": args.threads,
        "prompt_tokens": args.prompt_tokens,
        "rounds": args.rounds,
        "mtpdec": {
            str(k): {
                "ms": med[k] * 1e3,
                "cost_over_k1": med[k] / med[1],
                "parts_ms": {p: statistics.median(mt[k]["parts"][p]) * 1e3 for p in parts},
            }
            for k in args.ks
        },
    }
    if ll is not None:
        lmed = {k: statistics.median(ll[k]) for k in args.ks}
        result["llama.cpp"] = {
            str(k): {"ms": lmed[k] * 1e3, "cost_over_k1": lmed[k] / lmed[1]} for k in args.ks
        }
    render(result, parts)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


def render(result: dict[str, Any], parts: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    mt = result["mtpdec"]
    table = Table(
        title=f"forward of k tokens: {Path(result['model']).name}, {result['threads']} threads, "
        f"{result['machine']}, mtpdec {result['activations']} ({result['instruction_path']}), "
        f"state with k-1 snapshot slots; medians of {result['rounds']}"
    )
    table.add_column("k", justify="right")
    table.add_column("mtpdec ms", justify="right")
    table.add_column("cost/cost(1)", justify="right")
    for p in parts:
        table.add_column(p + " ms", justify="right")
    table.add_column("rest ms", justify="right")
    if "llama.cpp" in result:
        table.add_column("llama.cpp ms", justify="right")
        table.add_column("llama cost/cost(1)", justify="right")
    for k, row in mt.items():
        rest = row["ms"] - sum(row["parts_ms"].values())
        cells = [k, f"{row['ms']:.2f}", f"{row['cost_over_k1']:.2f}"]
        cells += [f"{row['parts_ms'][p]:.2f}" for p in parts] + [f"{rest:.2f}"]
        if "llama.cpp" in result:
            lr = result["llama.cpp"][k]
            cells += [f"{lr['ms']:.2f}", f"{lr['cost_over_k1']:.2f}"]
        table.add_row(*cells)
    Console().print(table)


if __name__ == "__main__":
    main()
