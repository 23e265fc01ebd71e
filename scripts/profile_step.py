"""Where a speculative step's time goes: trunk forward, MTP drafts, rollback, and how much
of it is compiled kernels against Python (and numpy) around them.

    python scripts/profile_step.py [--model tiny-mtp] [--draft-n 0,1,2,3] [-n 64] [--threads 2]

Per n, greedy decoding with the MTP drafter (n = 0: plain) over the model's prompts (the
built-in model's held-out prompts by default), timed once without a profiler, then once
under cProfile. The step parts come from the decoder's own timers (``Step.draft_s``,
``verify_s``, ``rollback_s``); the rest of a step's wall time is the loop around them.
The kernel share is the self time of the Numba-jitted functions (found as the
functions under an ``@njit`` decorator in ``mtpdec/``; a call into one shows in cProfile
as that function) over the profiled wall time; everything else is Python and numpy
glue. cProfile adds its own cost per Python call, so the Python share it reports is an
upper bound; the unprofiled ms per token are the real figures.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import time
from pathlib import Path

import numpy as np

import mtpdec

_NJIT = re.compile(r"^\s*@(numba\.)?njit\b")


def jitted_functions() -> set[tuple[str, int]]:
    """(file, line of the decorator) of every @njit function in the package: how cProfile
    names such a function (its code object's first line is the decorator's)."""
    root = Path(mtpdec.__file__).resolve().parent
    found = set()
    for path in root.rglob("*.py"):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if _NJIT.match(line):
                found.add((str(path), i))
    return found


def run(model, prompts, n: int, n_predict: int) -> dict[str, float]:
    from mtpdec.decode import decode_plain
    from mtpdec.draft import make_drafter
    from mtpdec.draft.adaptive import FixedN
    from mtpdec.sampling import Sampler
    from mtpdec.speculative import decode_speculative

    parts = dict.fromkeys(("draft", "verify", "rollback", "step", "wall"), 0.0)
    tokens = steps = 0
    for ids in prompts:
        state = model.new_state(len(ids) + n_predict + 8, snapshot_slots=max(n, 1))
        t0 = time.perf_counter()
        if n:
            drafter = make_drafter("mtp", model, state, None, None, 1.0, 0)
            gen = decode_speculative(model, ids, n_predict, Sampler(), state, drafter, FixedN(n),
                                     stop_at_eog=False)  # fmt: skip
        else:
            gen = decode_plain(model, ids, n_predict, Sampler(), state, stop_at_eog=False)
        prefill = None
        for step in gen:
            if step.prefill:
                prefill = time.perf_counter() - t0
                continue
            steps += 1
            tokens += len(step.tokens)
            parts["draft"] += step.draft_s
            parts["verify"] += step.verify_s if n else step.seconds
            parts["rollback"] += step.rollback_s
            parts["step"] += step.seconds
        parts["wall"] += time.perf_counter() - t0 - (prefill or 0.0)
    return {k: 1e3 * v / tokens for k, v in parts.items()} | {"tokens_per_step": tokens / steps}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny-mtp")
    p.add_argument("--prompts", type=Path, default=None)
    p.add_argument("--draft-n", default="0,1,2,3")
    p.add_argument("-n", "--n-predict", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--activations", default="q8")
    args = p.parse_args(argv)

    from mtpdec.builtin import builtin_file, is_builtin, resolve_model
    from mtpdec.cpu.isa import host_path
    from mtpdec.models import load_model
    from mtpdec.settings import apply_threads, set_threads
    from mtpdec.sweep import read_prompts

    set_threads(args.threads)
    model = load_model(resolve_model(args.model), activations=args.activations)
    apply_threads()
    path = args.prompts or (builtin_file(".prompts.txt") if is_builtin(args.model) else None)
    texts = read_prompts(path)
    prompts = [np.asarray(model.tokenizer.encode(t), dtype=np.int32) for t in texts]
    jitted = jitted_functions()
    print(f"{resolve_model(args.model).name}: {len(prompts)} prompts, -n {args.n_predict}, "
          f"{args.threads} threads, {args.activations} ({host_path()}); ms per emitted token")  # fmt: skip
    head = f"{'n':>3} {'tok/step':>8} {'wall':>7} {'draft':>7} {'verify':>7} {'rollback':>8} {'loop':>6} {'kernels':>8} {'python':>7}"
    print(head)
    for n in [int(x) for x in args.draft_n.split(",")]:
        run(model, prompts[:1], n, 8)  # warm-up (compiles)
        ms = run(model, prompts, n, args.n_predict)
        prof = cProfile.Profile()
        prof.enable()
        t0 = time.perf_counter()
        run(model, prompts, n, args.n_predict)
        wall = time.perf_counter() - t0
        prof.disable()
        stats = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tottime, ...)
        kernels = sum(v[2] for (f, line, _), v in stats.items() if (f, line) in jitted)
        share = kernels / wall
        loop = ms["wall"] - ms["draft"] - ms["verify"] - ms["rollback"]
        print(f"{n:>3} {ms['tokens_per_step']:>8.2f} {ms['wall']:>7.3f} {ms['draft']:>7.3f} "
              f"{ms['verify']:>7.3f} {ms['rollback']:>8.3f} {loop:>6.3f} {share:>8.0%} "
              f"{1 - share:>7.0%}")  # fmt: skip


if __name__ == "__main__":
    main()
