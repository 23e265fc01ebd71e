"""`mtpdec generate`: load a model, decode a prompt, stream the text, report timings.

Output contract:
- streaming (default): stdout gets the generated text only (not the prompt, not an
  end-of-generation token), flushed after every step, then a newline; stderr gets one
  stats line (``Timings.line()`` and the stop reason).
- ``--json``: stdout gets one JSON object (``result_json``), stderr nothing.
A spinner shows loading and compiling on stderr when stderr is a terminal.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtpdec.draft import check_draft_name
from mtpdec.draft.setup import (
    AUTO_MAX_N,
    check_drafter,
    decode_steps,
    default_drafter,
    greedy_reference,
    make_policy,
    parse_draft_n,
)
from mtpdec.errors import MtpdecError
from mtpdec.metrics import SpecStats, Timings
from mtpdec.sampling import Sampler, check_sampling

if TYPE_CHECKING:
    from mtpdec.gpu.placement import DeviceOptions

DEFAULT_CTX = 4096


def read_prompt(prompt: str | None, prompt_file: Path | None) -> str:
    """The prompt text from exactly one of PROMPT and --prompt-file; never empty."""
    if prompt is not None and prompt_file is not None:
        raise MtpdecError("give either PROMPT or --prompt-file, not both")
    if prompt_file is not None:
        try:
            prompt = Path(prompt_file).read_bytes().decode("utf-8")  # keep \r\n as is
        except UnicodeDecodeError:
            raise MtpdecError(f"--prompt-file {prompt_file}: not UTF-8 text") from None
        except OSError as exc:
            raise MtpdecError(f"--prompt-file {prompt_file}: {exc.strerror or exc}") from None
    if prompt is None:
        raise MtpdecError("missing the prompt: give PROMPT or --prompt-file")
    if not prompt:
        raise MtpdecError("the prompt is empty")
    return prompt


def check_ctx(ctx: int | None, n_ctx_train: int) -> int:
    """The context size to allocate: --ctx, or min(4096, the training context)."""
    if ctx is None:
        return min(DEFAULT_CTX, n_ctx_train)
    if ctx < 1:
        raise MtpdecError(f"--ctx must be >= 1, got {ctx}")
    if ctx > n_ctx_train:
        raise MtpdecError(f"--ctx {ctx} exceeds the model's training context of {n_ctx_train}")
    return ctx


def plan_memory(
    model_path: Path,
    ctx: int | None,
    activations: str,
    dense_budget: int,
    snapshot_slots: int,
    device: DeviceOptions | None = None,
) -> dict[str, int]:
    """Host bytes a run will take (state for --ctx, weight copies), from the file's header
    alone: MtpdecError naming the option to lower, before anything is allocated, when
    they exceed the available memory (``mtpdec.memory``). On a GPU (``device``) the state
    is on the device and the host copies only the matrices it runs (offloaded FFNs)."""
    from mtpdec.gpu.placement import host_matrices
    from mtpdec.loader import open_gguf
    from mtpdec.memory import check_plan_fits, state_nbytes, weights_nbytes

    with open_gguf(model_path) as f:
        n_ctx = check_ctx(ctx, int(f.config.context_length))  # type: ignore[attr-defined]
        plan = state_nbytes(f.config, n_ctx, snapshot_slots)
        on_host = None if device is None else host_matrices(f, device)
        if on_host is not None:  # a GPU model: its state lives on the device
            plan = dict.fromkeys(plan, 0)
        check_plan_fits(plan, n_ctx)  # first without the kernels' (slow) imports
        plan |= weights_nbytes(f, activations, dense_budget, on_host)
    check_plan_fits(plan, n_ctx)
    return plan


@contextlib.contextmanager
def _spinner(text: str) -> Iterator[Any]:
    """A rich status spinner on stderr when it is a terminal; otherwise nothing."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console

    with Console(stderr=True).status(text) as status:
        yield status


def upload_progress(status: Any, what: str, device: str) -> Callable[[int, int], None] | None:
    """``load_model``'s on_layer: a rich progress bar of the trunk layers built (their
    weights uploaded) in the status line ``status``; None without a status or on the CPU."""
    if status is None or device == "cpu":
        return None
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    def on_layer(i: int, n: int) -> None:
        line = Table.grid(padding=(0, 1))
        line.add_row(
            f"{what}: weights to the {device}",
            ProgressBar(total=n, completed=i + 1, width=30),
            f"layer {i + 1}/{n}",
        )
        status.update(line)

    return on_layer


@dataclass(frozen=True)
class GenerateOptions:
    """Everything `mtpdec generate` takes besides the model and the prompt (see the CLI
    help for each); ``check()`` raises MtpdecError naming the first bad one."""

    n_predict: int = 128
    temp: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    ctx: int | None = None
    as_json: bool = False
    prefill_mib: int = 2048
    activations: str = "q8"
    draft: str | None = None  # None: mtp when the model has an MTP head, else none
    draft_n: str = "auto"
    accept: float = 0.9  # the oracle drafter's acceptance
    draft_vocab: int | None = None  # MTP drafts score token ids below this only
    device: str = "cpu"
    cpu_ffn: str = "0"  # FFN layers on the CPU with --device gpu: a count or "auto"
    vram_gb: float | None = None

    def check(self) -> None:
        from mtpdec.cpu.matvec import ACTIVATION_MODES

        if self.activations not in ACTIVATION_MODES:
            known = " or ".join(ACTIVATION_MODES)
            raise MtpdecError(f"--activations must be {known}, got {self.activations!r}")
        if self.prefill_mib < 0:
            raise MtpdecError(f"--prefill-mib must be >= 0, got {self.prefill_mib}")
        if self.n_predict < 0:
            raise MtpdecError(f"-n/--n-predict must be >= 0, got {self.n_predict}")
        check_sampling(self.temp, self.top_k, self.top_p, self.seed)
        parse_draft_n(self.draft_n)
        if self.draft is not None:
            check_draft_name(self.draft)
        if not 0.0 <= self.accept <= 1.0:
            raise MtpdecError(f"--accept must be in [0, 1], got {self.accept}")
        if self.draft_vocab is not None and self.draft_vocab < 1:
            raise MtpdecError(f"--draft-vocab must be >= 1, got {self.draft_vocab}")
        if self.ctx is not None and self.ctx < 1:
            raise MtpdecError(f"--ctx must be >= 1, got {self.ctx}")


def run_generate(
    model_path: Path, prompt: str | None, prompt_file: Path | None, opts: GenerateOptions
) -> None:
    """Everything `mtpdec generate` does; MtpdecError for any bad input."""
    text = read_prompt(prompt, prompt_file)
    opts.check()

    from mtpdec.cpu.linear import DENSE_MIN_ROWS
    from mtpdec.gpu.placement import device_options
    from mtpdec.models import load_model
    from mtpdec.settings import apply_threads

    draft_n = parse_draft_n(opts.draft_n)
    slots = AUTO_MAX_N if draft_n is None else draft_n
    device = device_options(opts.device, opts.cpu_ffn, opts.vram_gb, opts.ctx, slots)
    memory = plan_memory(
        model_path, opts.ctx, opts.activations, opts.prefill_mib << 20, slots, device
    )
    timings = Timings()
    with _spinner(f"loading {model_path}") as status:
        t0 = time.perf_counter()
        model = load_model(
            model_path,
            dense_budget_bytes=opts.prefill_mib << 20,
            activations=opts.activations,
            device=device,
            on_layer=upload_progress(status, f"loading {model_path}", opts.device),
        )
        timings.load_s = time.perf_counter() - t0
        n_ctx = check_ctx(opts.ctx, model.n_ctx_train)
        prompt_ids = model.tokenizer.encode(text)
        if not prompt_ids:
            raise MtpdecError("the prompt has no tokens")
        if len(prompt_ids) > n_ctx:
            raise MtpdecError(f"the prompt is {len(prompt_ids)} tokens, longer than --ctx {n_ctx}")
        if status is not None:
            status.update("compiling kernels (cached after the first run)")
        apply_threads()
        # dense prefill weights only pay off for prompts that take the batched path
        timings.compile_s = model.compile(dense=len(prompt_ids) >= DENSE_MIN_ROWS)
        draft = opts.draft or default_drafter(model)
        policy = None
        if draft != "none":
            check_drafter(draft, model)
            if status is not None and draft_n is None:
                status.update("measuring verify costs for --draft-n auto (cached)")
            policy = make_policy(model, draft_n)
        reference = None
        if draft == "oracle":
            if status is not None:
                status.update("decoding the oracle's reference (plain greedy)")
            reference = greedy_reference(model, prompt_ids, opts.n_predict, n_ctx)

    sampler = Sampler(opts.temp, opts.top_k, opts.top_p, opts.seed)
    spec = SpecStats(policy.max_n if policy is not None else 0)
    try:
        steps = decode_steps(
            model,
            prompt_ids,
            opts.n_predict,
            sampler,
            n_ctx,
            draft,
            policy,
            reference,
            opts.accept,
            sampler.seed,
            draft_vocab=opts.draft_vocab,
        )
    except MemoryError:
        raise MtpdecError(
            f"no memory for the state of a {n_ctx}-token context; lower --ctx"
        ) from None
    out_ids: list[int] = []
    stop = None
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for step in steps:
        timings.record(step)
        spec.record(step)
        out_ids.extend(step.tokens)
        stop = step.stop
        if not opts.as_json and step.tokens:
            chunk = b"".join(model.tokenizer.token_bytes(t) for t in step.tokens)
            sys.stdout.write(utf8.decode(chunk))
            sys.stdout.flush()

    if opts.as_json:
        result = result_json(model_path, model, text, prompt_ids, out_ids, sampler, n_ctx, stop)
        result["stats"] = timings.as_dict()
        result["memory_plan_bytes"] = memory
        result["draft"] = {"drafter": draft, "draft_n": opts.draft_n} | spec.as_dict()
        if model.placement is not None:
            result["placement"] = model.placement.summary()
            result["offloaded_ffn_s"] = asdict(model.backends.times)
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(utf8.decode(b"", final=True) + "\n")
        sys.stdout.flush()
        print(f"{timings.line()} | stop: {stop}", file=sys.stderr)
        if draft != "none":
            print(f"draft {draft}, n {opts.draft_n}: {spec.line()}", file=sys.stderr)


def result_json(
    model_path: Path,
    model: Any,
    prompt: str,
    prompt_ids: list[int],
    out_ids: list[int],
    sampler: Sampler,
    n_ctx: int,
    stop: str | None,
) -> dict[str, Any]:
    """The --json object, less ``stats``: prompt and output as text and token ids."""
    import numba

    return {
        "model": str(model_path),
        "architecture": model.config.architecture,
        **model.backends.numerics(model.activations),
        "device": model.backends.name,
        "prompt": prompt,
        "prompt_ids": [int(t) for t in prompt_ids],
        "output_ids": [int(t) for t in out_ids],
        "output": model.tokenizer.decode(out_ids, continuation=True),
        "stop": stop,
        "ctx": n_ctx,
        "threads": numba.get_num_threads(),
        "sampling": sampler.options(),
    }
