"""MTP speculation in mtpdec and in llama.cpp on the same file, prompts, threads and n.

    python scripts/bench_mtp_vs_llama.py --llama-bin LLAMA_CPP/build/bin \\
        [--model tiny-mtp] [--prompts FILE] [--draft-n 0,1,2,3,4,5,6] [-n 64] [--repeats 3] \\
        [--threads 2] [--json OUT.json] [--plot OUT.png]

mtpdec: one ``mtpdec sweep --draft mtp`` (warm-up, interleaved rounds, medians).
llama.cpp: ``llama-speculative-simple --spec-type draft-mtp --spec-draft-n-max n`` once
per prompt and n >= 1 (it asserts at n = 0), and for n = 0 its plain decoding,
``llama-completion`` (eval + sampling time over the tokens evaluated); ``repeats``
rounds in a rotated order after one warm-up round; its decode tok/s per round is tokens
over decode seconds summed over the prompts, as mtpdec's; acceptance is n_accept over
n_drafted. Both greedy. Prints one table with both curves and the factor between the
two speedups over their own plain decoding.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RETRIES = 4  # llama.cpp now and then dies while setting up its MTP context (3 in a row once)
FAILURES: list[str] = []  # llama.cpp runs that died and were run again
_DECODED = re.compile(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds")
_EVAL = re.compile(r"\beval time =\s+([\d.]+) ms /\s+(\d+) runs")
_SAMPLING = re.compile(r"sampling time =\s+([\d.]+) ms")
_DRAFTED = re.compile(r"n_drafted\s*=\s*(\d+)")
_ACCEPTED = re.compile(r"n_accept\s*=\s*(\d+)")


def read_prompts(path: Path) -> list[str]:
    from mtpdec.sweep import read_prompts as read

    return read(path)


def run_mtpdec(args: argparse.Namespace, ns: list[int]) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep.json"
        cmd = [sys.executable, "-m", "mtpdec", "--threads", str(args.threads), "sweep",
               args.model, "--draft", "mtp", "--draft-n", ",".join(map(str, ns)),
               "-n", str(args.n_predict), "--repeats", str(args.repeats),
               "--prompts", str(args.prompts), "--json", str(out)]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        records = json.loads(out.read_text())["records"]
    return {r["draft_n"]: r for r in records}


def llama_once(args: argparse.Namespace, model: Path, prompt: str, n: int) -> dict[str, float]:
    common = ["-m", str(model), "-p", prompt, "-n", str(args.n_predict), "--temp", "0",
              "-t", str(args.threads), "-tb", str(args.threads), "-c", "2048", "--seed", "0",
              "-ngl", "0"]  # fmt: skip
    if n == 0:
        cmd = [str(args.llama_bin / "llama-completion"), *common, "-no-cnv", "--no-warmup"]
    else:
        cmd = [str(args.llama_bin / "llama-speculative-simple"), *common, "--spec-type",
               "draft-mtp", "--spec-draft-n-max", str(n), "--spec-draft-n-min", "0"]  # fmt: skip
    done = _EVAL if n == 0 else _DECODED
    for _ in range(RETRIES + 1):  # llama.cpp now and then dies while setting up MTP
        run = subprocess.run(cmd, capture_output=True, text=True)
        log = run.stdout + run.stderr
        if run.returncode == 0 and done.search(log):
            break
        # (once it exited 0 without its closing statistics: its log thread lost them)
        FAILURES.append(f"n={n} exit {run.returncode}")
    if n == 0:
        ev, sampling = _EVAL.search(log), _SAMPLING.search(log)
        if run.returncode != 0 or ev is None or sampling is None:
            raise SystemExit(f"llama-completion failed:\n{log[-3000:]}")
        seconds = (float(ev.group(1)) + float(sampling.group(1))) / 1e3
        return {"tokens": int(ev.group(2)), "seconds": seconds, "drafted": 0, "accepted": 0}
    decoded = _DECODED.search(log)
    if run.returncode != 0 or decoded is None:
        raise SystemExit(
            f"llama-speculative-simple failed (n={n}, exit {run.returncode}):\n{log[-3000:]}"
        )
    drafted, accepted = _DRAFTED.search(log), _ACCEPTED.search(log)
    return {
        "tokens": int(decoded.group(1)),
        "seconds": float(decoded.group(2)),
        "drafted": int(drafted.group(1)) if drafted else 0,
        "accepted": int(accepted.group(1)) if accepted else 0,
    }


def run_llama(args: argparse.Namespace, model: Path, ns: list[int]) -> dict[str, dict]:
    prompts = read_prompts(args.prompts)
    for n in ns:  # warm-up round (page cache, CPU clocks)
        llama_once(args, model, prompts[0], n)
    rates: dict[int, list[float]] = {n: [] for n in ns}
    drafted = dict.fromkeys(ns, 0)
    accepted = dict.fromkeys(ns, 0)
    for r in range(args.repeats):
        for n in ns[r % len(ns) :] + ns[: r % len(ns)]:
            runs = [llama_once(args, model, p, n) for p in prompts]
            rates[n].append(sum(x["tokens"] for x in runs) / sum(x["seconds"] for x in runs))
            drafted[n] += sum(x["drafted"] for x in runs)
            accepted[n] += sum(x["accepted"] for x in runs)
    base = statistics.median(rates[0]) if 0 in rates else None
    out = {}
    for n in ns:
        rate = statistics.median(rates[n])
        out[str(n)] = {
            "decode_tok_s": rate,
            "decode_tok_s_rounds": rates[n],
            "speedup": rate / base if base else None,
            "acceptance_rate": accepted[n] / drafted[n] if drafted[n] else None,
            "drafted": drafted[n],
            "accepted": accepted[n],
        }
    return out


def _f(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(ns: list[int], ours: dict, theirs: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("n", "mtpdec tok/s", "speedup", "accept", "AL", "per position",
                "draft / verify / rollback ms", "llama.cpp tok/s", "speedup", "accept",
                "speedup factor ratio"):  # fmt: skip
        table.add_column(col, justify="right")
    for n in ns:
        a, b = ours[str(n)], theirs[str(n)]
        ms = a["ms_per_step"]
        acc_a, acc_b = a["acceptance_rate"], b["acceptance_rate"]
        ratio = a["speedup"] / b["speedup"] if a["speedup"] and b["speedup"] else None
        table.add_row(
            str(n),
            _f(a["decode_tok_s"], ".1f"),
            _f(a["speedup"], ".2f"),
            "-" if acc_a is None else f"{100 * acc_a:.1f}%",
            _f(a["mean_acceptance_length"], ".2f"),
            " ".join(_f(p, ".2f") for p in a["per_position_acceptance"]) or "-",
            " / ".join(_f(ms[k], ".2f") for k in ("draft", "verify", "rollback")),
            _f(b["decode_tok_s"], ".1f"),
            _f(b["speedup"], ".2f"),
            "-" if acc_b is None else f"{100 * acc_b:.1f}%",
            _f(ratio, ".2f"),
        )
    Console(width=200).print(table)


def plot(ns: list[int], ours: dict, theirs: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, rec, color in (("mtpdec", ours, "tab:blue"), ("llama.cpp", theirs, "tab:red")):
        ax1.plot(ns, [rec[str(n)]["speedup"] for n in ns], "o-", color=color, label=name)
        acc = [rec[str(n)]["acceptance_rate"] for n in ns if n > 0]
        ax2.plot([n for n in ns if n > 0], [100 * a for a in acc], "o-", color=color, label=name)
    ax1.axhline(1.0, color="grey", lw=0.8)
    ax1.set_xlabel("drafts per step n")
    ax1.set_ylabel("decode speedup over own plain decoding")
    ax2.set_xlabel("drafts per step n")
    ax2.set_ylabel("draft acceptance (%)")
    for ax in (ax1, ax2):
        ax.set_xticks(ns)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--llama-bin", type=Path, required=True, help="llama.cpp's build/bin")
    p.add_argument("--model", default="tiny-mtp")
    p.add_argument("--prompts", type=Path, default=None)
    p.add_argument("--draft-n", default="0,1,2,3,4,5,6")
    p.add_argument("-n", "--n-predict", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--plot", type=Path, default=None)
    args = p.parse_args(argv)
    from mtpdec.builtin import builtin_file, is_builtin, resolve_model

    if args.prompts is None:
        if not is_builtin(args.model):
            p.error("--prompts is needed for a model other than the built-in one")
        args.prompts = builtin_file(".prompts.txt")
    ns = [int(x) for x in args.draft_n.split(",")]
    if 0 not in ns:
        ns = [0, *ns]
    model = resolve_model(args.model)
    ours = run_mtpdec(args, ns)
    theirs = run_llama(args, model, ns)
    from mtpdec.cpu.isa import host_path

    title = (f"MTP speculation on {model.name}: {len(read_prompts(args.prompts))} prompts, "
             f"-n {args.n_predict}, {args.threads} threads, medians of {args.repeats} rounds, "
             f"mtpdec {ours['0']['activations']} ({host_path()})")  # fmt: skip
    print_table(ns, ours, theirs, title)
    drafting = [n for n in ns if n > 0]  # the best MTP speedup of each engine
    best_a = max(drafting, key=lambda n: ours[str(n)]["speedup"] or 0)
    best_b = max(drafting, key=lambda n: theirs[str(n)]["speedup"] or 0)
    sa, sb = ours[str(best_a)]["speedup"], theirs[str(best_b)]["speedup"]
    if FAILURES:
        print(f"llama.cpp runs that died and were run again: {', '.join(FAILURES)}")
    print(f"best MTP speedup over own plain decoding: mtpdec {sa:.2f}x at n={best_a}; llama.cpp {sb:.2f}x at n={best_b}; "
          f"factor ratio {sa / sb:.2f}")  # fmt: skip
    if args.json:
        out = {"title": title, "mtpdec": ours, "llama_cpp": theirs, "llama_failures": FAILURES}
        args.json.write_text(json.dumps(out, indent=2))
    if args.plot:
        plot(ns, ours, theirs, args.plot, title)


if __name__ == "__main__":
    main()
