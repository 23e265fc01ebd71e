"""`mtpdec sweep`: speculative decoding at every n on the same prompts, one table.

For each n (drafts per step; 0 is plain decoding, ``auto`` the adaptive policy) the
same prompts are decoded greedily; a warm-up runs every n once on the first prompt, then
``repeats`` rounds run every n on every prompt, in a rotated order per round so that
drift in the machine's speed spreads over all n. Per n: decode tok/s (median over
rounds), speedup over n = 0, acceptance rate, mean acceptance length AL, per-position
acceptance, ms per step (draft / verify / rollback), and achieved / ideal speedup, with
ideal = AL / (verify ms per step at n / verify ms per step at n = 0). Greedy outputs of
every run are checked equal to plain decoding's.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtpdec.errors import MtpdecError
from mtpdec.metrics import PartTimes, SpecStats, Timings

DEFAULT_PROMPTS = [
    "Write a Python function that returns the n-th Fibonacci number, then explain it.",
    "Repeat this sentence three times: the quick brown fox jumps over the lazy dog.",
    "List the planets of the solar system in order, one per line, with their moons.",
]


def parse_ns(spec: str) -> list[int | None]:
    """``--draft-n``: comma-separated integers 0..16 and/or ``auto`` (None), in order."""
    from mtpdec.draft.setup import parse_draft_n

    out: list[int | None] = []
    for part in spec.split(","):
        n = parse_draft_n(part)
        if n in out:
            raise MtpdecError(f"--draft-n lists {part.strip()} twice")
        out.append(n)
    if not out:
        raise MtpdecError("--draft-n is empty")
    return out


def read_prompts(path: Path | None) -> list[str]:
    """One prompt per non-empty line (``\\n`` in a line stands for a newline)."""
    if path is None:
        return list(DEFAULT_PROMPTS)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise MtpdecError(f"--prompts {path}: {exc}") from None
    prompts = [line.replace("\\n", "\n") for line in lines if line.strip()]
    if not prompts:
        raise MtpdecError(f"--prompts {path}: no prompts in the file")
    return prompts


def label(n: int | None) -> str:
    return "auto" if n is None else str(n)


@dataclass
class Cell:
    """Everything measured for one n."""

    n: int | None
    spec: SpecStats
    rounds: list[Timings] = field(default_factory=list)  # one per round, over all prompts
    parts: PartTimes = field(default_factory=PartTimes)  # offloaded FFNs, decode steps only
    steps: int = 0  # decode steps (prefills excluded) behind ``parts``

    def tok_s(self) -> float | None:
        rates = [t.decode_tok_s for t in self.rounds if t.decode_tok_s]
        return statistics.median(rates) if rates else None


@dataclass
class SweepOptions:
    draft: str | None = None
    draft_ns: str = "0,1,2,3,4"
    accept: float = 0.9
    prompts: Path | None = None
    n_predict: int = 64
    repeats: int = 3
    ctx: int | None = None
    activations: str = "q8"
    json_path: Path | None = None
    plot_path: Path | None = None
    seed: int = 0
    draft_vocab: int | None = None
    device: str = "cpu"
    cpu_ffn: str = "0"
    vram_gb: float | None = None


def run_sweep(model_path: Path, opts: SweepOptions) -> None:
    """Everything `mtpdec sweep` does; MtpdecError for any bad input."""
    from rich.console import Console
    from rich.progress import Progress

    from mtpdec.cpu.matvec import ACTIVATION_MODES
    from mtpdec.draft.setup import (
        AUTO_MAX_N,
        check_drafter,
        decode_steps,
        default_drafter,
        greedy_reference,
        make_policy,
    )
    from mtpdec.generate import check_ctx, plan_memory, upload_progress
    from mtpdec.gpu.placement import device_options
    from mtpdec.models import load_model
    from mtpdec.models.base import DEFAULT_DENSE_BUDGET
    from mtpdec.sampling import Sampler
    from mtpdec.settings import apply_threads

    ns = parse_ns(opts.draft_ns)
    prompts = read_prompts(opts.prompts)
    if opts.n_predict < 1 or opts.repeats < 1:
        raise MtpdecError("-n and --repeats must be >= 1")
    if opts.activations not in ACTIVATION_MODES:
        raise MtpdecError(f"--activations must be q8 or f32, got {opts.activations!r}")
    if not 0.0 <= opts.accept <= 1.0:
        raise MtpdecError(f"--accept must be in [0, 1], got {opts.accept}")
    if opts.draft_vocab is not None and opts.draft_vocab < 1:
        raise MtpdecError(f"--draft-vocab must be >= 1, got {opts.draft_vocab}")
    if opts.plot_path is not None:
        _check_matplotlib()

    slots = max(AUTO_MAX_N if n is None else n for n in ns)
    device = device_options(opts.device, opts.cpu_ffn, opts.vram_gb, opts.ctx, slots)
    memory = plan_memory(
        model_path, opts.ctx, opts.activations, DEFAULT_DENSE_BUDGET, slots, device
    )
    console = Console(stderr=True)
    with console.status(f"loading {model_path}") as status:
        on_layer = upload_progress(status, f"loading {model_path}", opts.device)
        model = load_model(
            model_path, activations=opts.activations, device=device, on_layer=on_layer
        )
        apply_threads()
        draft = opts.draft or default_drafter(model)
        if draft == "none":
            raise MtpdecError("sweep needs a drafter: this model has no MTP head; use --draft")
        check_drafter(draft, model)
        n_ctx = check_ctx(opts.ctx, model.n_ctx_train)
        ids = [model.tokenizer.encode(p) for p in prompts]
        for i in ids:
            need = len(i) + opts.n_predict + max(AUTO_MAX_N if n is None else n for n in ns) + 1
            if need > n_ctx:
                raise MtpdecError(
                    f"a prompt of {len(i)} tokens, -n and the drafts need --ctx {need}"
                )
        model.compile(dense=False)
        # plain greedy outputs: the oracle's reference and the bit-identity check
        refs = [greedy_reference(model, i, opts.n_predict, n_ctx) for i in ids]
        if None in ns:
            console.log("measuring verify costs for auto (cached)")
            make_policy(model, None)

    cells = {label(n): Cell(n, SpecStats(AUTO_MAX_N if n is None else n)) for n in ns}

    part_times = model.backends.times

    def run(n: int | None, p: int, timings: Timings | None, cell: Cell | None) -> None:
        policy = make_policy(model, n)  # auto: fresh estimates, the cached cost curve
        steps = decode_steps(
            model,
            ids[p],
            opts.n_predict,
            Sampler(),
            n_ctx,
            draft,
            policy,
            refs[p],
            opts.accept,
            opts.seed + p,
            stop_at_eog=False,
            draft_vocab=opts.draft_vocab,
        )
        out = []
        for step in steps:
            out.extend(step.tokens)
            if timings is not None:
                timings.record(step)
            if cell is not None:
                cell.spec.record(step)
                if step.prefill:
                    part_times.reset()  # the split covers decode steps only
                else:
                    cell.steps += 1
        if cell is not None:
            cell.parts.add(part_times)
        if out != list(refs[p][len(ids[p]) :]):
            raise MtpdecError(f"n={label(n)}: greedy output differs from plain decoding (a bug)")

    total = len(ns) * (len(prompts) * opts.repeats + 1)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("sweep", total=total)
        for n in ns:  # warm-up: every n once on the first prompt
            run(n, 0, None, None)
            progress.advance(task)
        for r in range(opts.repeats):
            order = ns[r % len(ns) :] + ns[: r % len(ns)]
            for n in order:
                cell = cells[label(n)]
                timings = Timings()
                for p in range(len(prompts)):
                    run(n, p, timings, cell)
                    progress.advance(task)
                cell.rounds.append(timings)

    records = _records(cells, model, draft, opts)
    placement = model.placement.summary() if model.placement is not None else None
    _print_table(records, model_path, draft, opts)
    if opts.json_path is not None:
        out = {"records": records, "memory_plan_bytes": memory, "placement": placement}
        opts.json_path.write_text(json.dumps(out, indent=2))
    if opts.plot_path is not None:
        _plot(records, opts.plot_path, model_path, draft)


def _records(cells: dict[str, Cell], model: Any, draft: str, opts: SweepOptions) -> list[dict]:
    import numba

    base = cells.get("0")
    base_rate = base.tok_s() if base else None
    base_verify = base.spec.ms_per_step()["verify"] if base else None
    out = []
    for key, cell in cells.items():
        rate = cell.tok_s()
        spec = cell.spec
        speedup = rate / base_rate if rate and base_rate else None
        verify = spec.ms_per_step()["verify"]
        al = spec.mean_acceptance_length
        ideal = al / (verify / base_verify) if al and verify and base_verify else None
        out.append(
            {
                "draft_n": key,
                "drafter": draft,
                "accept_setting": opts.accept if draft == "oracle" else None,
                "draft_vocab": opts.draft_vocab,
                "decode_tok_s": rate,
                "decode_tok_s_rounds": [t.decode_tok_s for t in cell.rounds],
                "speedup": speedup,
                "ideal_speedup": ideal,
                "achieved_over_ideal": speedup / ideal if speedup and ideal else None,
                **model.backends.numerics(opts.activations),
                "threads": numba.get_num_threads(),
                "n_predict": opts.n_predict,
                "repeats": opts.repeats,
                "device": model.backends.name,
                "step_split_ms": cell.parts.ms_per_step(cell.steps, verify),
            }
            | spec.as_dict()
        )
    return out


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _print_table(records: list[dict], model_path: Path, draft: str, opts: SweepOptions) -> None:
    from rich.console import Console
    from rich.table import Table

    r0 = records[0]
    title = (
        f"sweep: {model_path.name}, draft {draft}"
        + (f" (accept {opts.accept})" if draft == "oracle" else "")
        + f", {r0['activations']} ({r0['kernel_path']}), {r0['threads']} threads, "
        f"-n {opts.n_predict}, medians of {opts.repeats} rounds, on {r0['device']}"
    )
    table = Table(title=title)
    split = any(r["step_split_ms"]["host_ffn"] for r in records)  # FFNs offloaded
    for col in ("n", "tok/s", "speedup", "accept", "AL", "per position", "draft ms",
                "verify ms", "rollback ms", "achieved/ideal"):  # fmt: skip
        table.add_column(col, justify="right")
    if split:
        table.add_column("verify: trunk / cpu ffn / transfer ms", justify="right")
    for r in records:
        ms = r["ms_per_step"]
        pos = " ".join(_fmt(p, ".2f") for p in r["per_position_acceptance"])
        rate = r["acceptance_rate"]
        table.add_row(
            r["draft_n"],
            _fmt(r["decode_tok_s"], ".1f"),
            _fmt(r["speedup"], ".2f"),
            "-" if rate is None else f"{100 * rate:.1f}%",
            _fmt(r["mean_acceptance_length"], ".2f"),
            pos or "-",
            _fmt(ms["draft"], ".2f"),
            _fmt(ms["verify"], ".2f"),
            _fmt(ms["rollback"], ".3f"),
            _fmt(r["achieved_over_ideal"], ".2f"),
            *([" / ".join(_fmt(v, ".2f") for v in r["step_split_ms"].values())] if split else []),
        )
    Console(file=sys.stdout, width=160).print(table)


def _check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MtpdecError("--plot needs matplotlib: pip install 'mtpdec[plot]'") from None


def _plot(records: list[dict], path: Path, model_path: Path, draft: str) -> None:
    """tok/s and acceptance against n (auto drawn as a dashed line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fixed = [r for r in records if r["draft_n"] != "auto"]
    xs = [int(r["draft_n"]) for r in fixed]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(xs, [r["decode_tok_s"] for r in fixed], "o-", color="tab:blue", label="decode tok/s")
    for r in records:
        if r["draft_n"] == "auto" and r["decode_tok_s"]:
            ax.axhline(r["decode_tok_s"], ls="--", color="tab:blue", label="auto tok/s")
    ax.set_xticks(xs)
    ax.set_xlabel("drafts per step n")
    ax.set_ylabel("decode tok/s")
    ax2 = ax.twinx()
    acc = [r["acceptance_rate"] for r in fixed]
    ax2.plot(xs, [a if a is not None else float("nan") for a in acc], "s-", color="tab:orange",
             label="acceptance")  # fmt: skip
    ax2.set_ylabel("acceptance rate")
    ax2.set_ylim(0, 1.05)
    ax.set_title(f"{model_path.name}: draft {draft}")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="best")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise MtpdecError(f"--plot {path}: {exc}") from None
    finally:
        plt.close(fig)
