"""Fuzz mtpdec's GGUF loading: mutants of small qwen35 and gemma3 files through what
``mtpdec info`` and ``generate`` do (``tests/gguf_mutants.py``), in worker processes.

Every mutant must end in a loaded model or a one-line MtpdecError; an unhandled
exception, a dead worker (segfault) or a mutant that runs past --timeout is a failure.
Prints outcomes by mutation kind, the failures (re-run one with --only INDEX), peak
memory of a worker and the slowest mutant; exit 1 when anything failed.

    python scripts/fuzz_gguf.py --count 100000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the mutants live with the tests that use them

from gguf_mutants import exercise, fuzz_sources, mutant, run_mutants, scan  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=10_000, help="mutants to try")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per mutant")
    p.add_argument("--only", type=int, help="run mutant INDEX in this process (debugging)")
    p.add_argument("--json", type=Path, help="write the report as JSON")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mtpdec-fuzz-src-") as tmp:
        srcs = fuzz_sources(Path(tmp))
        if args.only is not None:
            import numpy as np

            rng = np.random.default_rng([args.seed, args.only])
            datas = [s.read_bytes() for s in srcs]
            i = int(rng.integers(len(datas)))
            data, kind = mutant(datas[i], scan(datas[i]), rng)
            path = Path(tmp) / "mutant.gguf"
            path.write_bytes(data)
            print(f"mutant {args.only}: {kind} of {srcs[i].name}")
            print(exercise(path))
            return 0

        def progress(r) -> None:
            while len(shown_live) < len(r.failures):
                index, kind, what = r.failures[len(shown_live)]
                shown_live.append(index)
                print(f"failure: mutant {index} ({kind}): {what.splitlines()[0]}", file=sys.stderr)
            if r.tried % 1000 == 0:
                print(f"{r.tried} tried, {len(r.failures)} failures", file=sys.stderr, flush=True)

        shown_live: list[int] = []
        r = run_mutants(srcs, args.count, args.seed, args.workers, args.timeout, progress)

    kinds = sorted({k for k, _ in r.outcomes})
    print(f"{r.tried} mutants in {r.seconds:.0f} s, {args.workers} workers, seed {args.seed}")
    for kind in kinds:
        parts = ", ".join(f"{o} {n}" for (k, o), n in sorted(r.outcomes.items()) if k == kind)
        print(f"  {kind:10s} {parts}")
    print(f"peak worker memory {r.peak_rss_mb:.0f} MiB; slowest mutant {r.slowest_s:.2f} s")
    print(f"failures: {len(r.failures)}")
    shown: set[str] = set()
    for index, kind, what in r.failures:  # one example per message head and last frame
        lines = what.strip().split("\n")
        signature = lines[0].split(":")[0] + " @ " + (lines[-3] if len(lines) > 3 else "")
        if signature not in shown and len(shown) < 20:
            shown.add(signature)
            print(f"--- mutant {index} ({kind}):\n{what}")
    if args.json:
        out = {
            "tried": r.tried,
            "seconds": r.seconds,
            "seed": args.seed,
            "outcomes": [[k, o, n] for (k, o), n in sorted(r.outcomes.items())],
            "failures": r.failures,
            "peak_rss_mib": r.peak_rss_mb,
            "slowest_s": r.slowest_s,
        }
        args.json.write_text(json.dumps(out, indent=1))
    return 1 if r.failures else 0


if __name__ == "__main__":
    sys.exit(main())
