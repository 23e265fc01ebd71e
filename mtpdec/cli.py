"""The `mtpdec` command line: one thin function per command; the work lives in the library."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from mtpdec.errors import MtpdecError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Speculative decoding for GGUF models (MTP head, prompt lookup) on one box.",
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (print a table, write JSON).")
app.add_typer(bench_app, name="bench")

F = TypeVar("F", bound=Callable[..., Any])


# options that generate and sweep share
ACCEPT_OPTION = typer.Option(
    0.9, "--accept", help="The oracle drafter's acceptance per position (0..1)."
)
DRAFT_VOCAB_OPTION = typer.Option(
    None,
    "--draft-vocab",
    help="MTP drafts score only token ids below N (the most frequent in BPE vocabularies): "
    "a cheaper draft head; the verify stays exact (default: all).",
)


DEVICE_OPTION = typer.Option(
    "cpu",
    "--device",
    help="cpu, or gpu: the trunk on an NVIDIA GPU through CuPy (float32 activations there; "
    "--activations applies to FFN layers left on the CPU).",
)
CPU_FFN_OPTION = typer.Option(
    "0",
    "--cpu-ffn",
    help="With --device gpu: run the FFN of the last N trunk layers on the CPU from the "
    "mmap, or auto (as many as needed to fit --vram).",
)
VRAM_OPTION = typer.Option(
    None, "--vram", help="GPU memory to plan for, in GiB (needed by --cpu-ffn auto)."
)


def user_errors(func: F) -> F:
    """Turn an MtpdecError into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MtpdecError as exc:
            print(f"mtpdec: error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        from mtpdec import __version__

        typer.echo(f"mtpdec {__version__}")
        raise typer.Exit()


@app.callback()
@user_errors
def main(
    threads: int = typer.Option(
        0, "--threads", "-t", help="Numba worker threads (0 = all cores).", show_default=False
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Global options."""
    from mtpdec.settings import set_threads

    set_threads(threads)


@app.command()
@user_errors
def info(
    model: str = typer.Argument(..., help="GGUF model file, or tiny-mtp (the built-in model)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Architecture, hyperparameters, layer plan and tensor types of a GGUF file."""
    from mtpdec.builtin import resolve_model
    from mtpdec.info import run_info

    run_info(resolve_model(model), as_json=json_out)


@app.command()
@user_errors
def generate(
    model: str | None = typer.Argument(
        None,
        help="GGUF model file, or tiny-mtp (the built-in model, also used when only a "
        "PROMPT is given).",
        show_default=False,
    ),
    prompt: str | None = typer.Argument(None, help="Prompt text (or --prompt-file)."),
    prompt_file: Path | None = typer.Option(
        None, "--prompt-file", "-f", help="Read the prompt from this UTF-8 file."
    ),
    n_predict: int = typer.Option(128, "--n-predict", "-n", help="Tokens to generate at most."),
    temp: float = typer.Option(0.0, "--temp", help="Sampling temperature (0 = greedy)."),
    top_k: int = typer.Option(0, "--top-k", help="Sample from the k most likely (0 = all)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus mass to sample from (1 = all)."),
    seed: int | None = typer.Option(None, "--seed", help="Sampling seed (default: random)."),
    ctx: int | None = typer.Option(
        None, "--ctx", help="Context size in tokens (default: min(4096, training context))."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object at the end."),
    prefill_mib: int = typer.Option(
        2048,
        "--prefill-mib",
        help="RAM for dequantized fp32 weights that speed up long prompts (0 = none; "
        "used only when all of the model's matrices fit).",
    ),
    activations: str = typer.Option(
        "q8",
        "--activations",
        help="q8: round each matmul's input rows to 8 bits and use integer dot products "
        "(as llama.cpp; fast); f32: exact float32 inputs (slower reference).",
    ),
    draft: str | None = typer.Option(
        None,
        "--draft",
        help="Drafter: mtp, lookup, mtp+lookup, oracle (benchmarks) or none "
        "(default: mtp when the model has an MTP head, else none).",
    ),
    draft_n: str = typer.Option(
        "auto", "--draft-n", help="Drafts per step: 0..16, or auto (picked each step)."
    ),
    accept: float = ACCEPT_OPTION,
    draft_vocab: int | None = DRAFT_VOCAB_OPTION,
    device: str = DEVICE_OPTION,
    cpu_ffn: str = CPU_FFN_OPTION,
    vram: float | None = VRAM_OPTION,
) -> None:
    """Generate text from a prompt: stream it to stdout, timings to stderr."""
    from mtpdec.builtin import split_generate_args
    from mtpdec.generate import GenerateOptions, run_generate

    opts = GenerateOptions(
        n_predict=n_predict,
        temp=temp,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        ctx=ctx,
        as_json=json_out,
        prefill_mib=prefill_mib,
        activations=activations,
        draft=draft,
        draft_n=draft_n,
        accept=accept,
        draft_vocab=draft_vocab,
        device=device,
        cpu_ffn=cpu_ffn,
        vram_gb=vram,
    )
    model_path, prompt = split_generate_args(model, prompt, prompt_file)
    run_generate(model_path, prompt, prompt_file, opts)


@app.command()
@user_errors
def synth(
    out: Path = typer.Argument(..., help="GGUF file to write (must not exist unless --force)."),
    preset: str = typer.Option(
        ..., "--preset", "-p", help="qwen35-tiny, qwen35-0.8b or qwen35-27b."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed for the weights."),
    layers: int | None = typer.Option(None, "--layers", help="Trunk layers (MTP block excluded)."),
    n_embd: int | None = typer.Option(None, "--n-embd", help="Model width."),
    n_head: int | None = typer.Option(None, "--n-head", help="Attention query heads."),
    n_head_kv: int | None = typer.Option(None, "--n-head-kv", help="Attention key/value heads."),
    ssm_groups: int | None = typer.Option(None, "--ssm-groups", help="GDN key heads H_k."),
    ssm_heads: int | None = typer.Option(
        None, "--ssm-heads", help="GDN value heads H_v (multiple of H_k)."
    ),
    vocab: int | None = typer.Option(None, "--vocab", help="Vocabulary size."),
    mtp: bool = typer.Option(True, "--mtp/--no-mtp", help="Append the MTP (NextN) block."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT if it exists."),
) -> None:
    """Write a random-weight GGUF with the tensor names, shapes and Q4_K_M type mix of a preset."""
    from mtpdec.synth import SynthOverrides, write_synth

    overrides = SynthOverrides(
        layers=layers,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        ssm_groups=ssm_groups,
        ssm_heads=ssm_heads,
        vocab=vocab,
        mtp=mtp,
    )
    write_synth(out, preset, seed=seed, overrides=overrides, force=force)


@app.command()
@user_errors
def sweep(
    model: str | None = typer.Argument(
        None, help="GGUF model file (default: tiny-mtp, the built-in model).", show_default=False
    ),
    draft_n: str = typer.Option(
        "0,1,2,3,4", "--draft-n", help="Comma-separated drafts per step (0 = plain) and/or auto."
    ),
    draft: str | None = typer.Option(
        None,
        "--draft",
        help="Drafter: mtp, lookup, mtp+lookup or oracle (default: mtp when the model has "
        "an MTP head).",
    ),
    accept: float = ACCEPT_OPTION,
    prompts: Path | None = typer.Option(
        None,
        "--prompts",
        help="Prompts file, one per line, \\n for a newline (default: the built-in model's "
        "held-out code prompts on it, else three general prompts).",
    ),
    n_predict: int = typer.Option(64, "--n-predict", "-n", help="Tokens per prompt and run."),
    repeats: int = typer.Option(3, "--repeats", help="Timed rounds (medians reported)."),
    ctx: int | None = typer.Option(None, "--ctx", help="Context size in tokens."),
    activations: str = typer.Option("q8", "--activations", help="q8 (default) or f32."),
    json_path: Path | None = typer.Option(None, "--json", help="Write one record per n here."),
    plot_path: Path | None = typer.Option(
        None, "--plot", help="Write a PNG of tok/s and acceptance against n (needs matplotlib)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the oracle's corruptions."),
    draft_vocab: int | None = DRAFT_VOCAB_OPTION,
    device: str = DEVICE_OPTION,
    cpu_ffn: str = CPU_FFN_OPTION,
    vram: float | None = VRAM_OPTION,
) -> None:
    """Greedy speculative decoding at every n on the same prompts: tok/s, speedup,
    acceptance, AL, per-position acceptance, step costs."""
    from mtpdec.builtin import builtin_file, is_builtin, resolve_model
    from mtpdec.sweep import SweepOptions, run_sweep

    if prompts is None and is_builtin(model):
        prompts = builtin_file(".prompts.txt")
    run_sweep(
        resolve_model(model),
        SweepOptions(
            draft=draft,
            draft_ns=draft_n,
            accept=accept,
            prompts=prompts,
            n_predict=n_predict,
            repeats=repeats,
            ctx=ctx,
            activations=activations,
            json_path=json_path,
            plot_path=plot_path,
            seed=seed,
            draft_vocab=draft_vocab,
            device=device,
            cpu_ffn=cpu_ffn,
            vram_gb=vram,
        ),
    )


@bench_app.command("kernels")
@user_errors
def bench_kernels(
    formats: str = typer.Option("all", "--formats", help="Comma-separated formats, or 'all'."),
    inputs: str = typer.Option("1,2,4,8", "--n", help="Comma-separated input counts."),
    matrix_mb: int = typer.Option(
        64, "--matrix-mb", help="Weight matrix size per format (MB, >= 64)."
    ),
    repeats: int = typer.Option(7, "--repeats", help="Timed calls per cell (median reported)."),
    json_path: Path | None = typer.Option(
        None, "--json", help="Also write the results as JSON here."
    ),
    activations: str = typer.Option(
        "q8,f32", "--activations", help="Activation modes to time: q8, f32 or both."
    ),
    path: str | None = typer.Option(
        None,
        "--path",
        help="Instruction path of the integer kernels (avx512vnni, avxvnni, avx2, portable; "
        "default: the widest this CPU runs).",
    ),
) -> None:
    """Time the n-input dequant MatVec kernels against the machine's measured read bandwidth."""
    from mtpdec.bench.kernels import run_kernel_bench

    run_kernel_bench(
        formats=formats,
        inputs=inputs,
        matrix_mb=matrix_mb,
        repeats=repeats,
        json_path=json_path,
        activations=activations,
        path=path,
    )


def run() -> None:
    """Console-script entry point: Typer's own usage errors become one line as well."""
    # Typer raises click's UsageError (from its vendored click in recent versions)
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    try:
        code = app(standalone_mode=False)
    except usage_error as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
            print(exc.ctx.get_help())
            sys.exit(0)
        print(f"mtpdec: error: {exc.format_message()}", file=sys.stderr)
        code = 2
    except typer.Abort:
        print("mtpdec: aborted", file=sys.stderr)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
