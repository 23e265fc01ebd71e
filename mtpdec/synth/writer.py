"""Write a random-weight qwen35 GGUF, streaming tensor by tensor.

``gguf.GGUFWriter`` writes the header, the metadata and the tensor infos; the tensor data
is then appended chunk by chunk (a few MiB of rows at a time), so memory stays flat
whatever the file size. The file is written as ``OUT.partial`` and renamed at the end:
an interrupted run never leaves a truncated OUT behind.

Values: quantized matrices are random valid blocks (``mtpdec.quants.pack.random_blocks``)
with a per-tensor std of ``gain/sqrt(row length)``, so activations stay O(1) through the
model; F32 vectors follow their recipe in plan.py. Every tensor draws from its own
generator, seeded by (seed, crc32(name)): the same seed gives the same bytes.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mtpdec.errors import MtpdecError
from mtpdec.quants import quantize
from mtpdec.quants.pack import random_blocks
from mtpdec.quants.types import BLOCK_SIZES, GGMLType
from mtpdec.synth import plan as P
from mtpdec.synth.plan import TensorPlan, tensor_plan
from mtpdec.synth.presets import Qwen35Shape, SynthOverrides, check_output_path, resolve_shape
from mtpdec.synth.vocab import Vocab, build_vocab

ARCH = "qwen35"
ALIGNMENT = 32  # GGUF default (general.alignment is not written)
CHUNK_BYTES = 8 << 20  # rows generated and written per step
FTYPE_Q4_K_M = 15  # llama_ftype LLAMA_FTYPE_MOSTLY_Q4_K_M
PROGRESS_MIN_BYTES = 64 << 20  # show a progress bar for files at least this big


@dataclass(frozen=True)
class SynthResult:
    path: Path
    shape: Qwen35Shape
    n_tensors: int
    nbytes: int  # file size
    seconds: float
    type_counts: dict[str, int]


@dataclass(frozen=True)
class Labels:
    """What a file says of itself: general.name, general.description, and mtpdec's own
    keys (``extra``: strings, or integers written as uint64)."""

    name: str
    description: str
    extra: tuple[tuple[str, str | int], ...] = ()


def synth_labels(preset: str, seed: int) -> Labels:
    return Labels(
        f"mtpdec synth {preset}",
        f"random weights for testing (mtpdec synth, seed {seed})",
        (("mtpdec.synth.preset", preset), ("mtpdec.synth.seed", seed)),
    )


def _metadata(writer, shape: Qwen35Shape, vocab: Vocab, labels: Labels) -> None:
    """All KV pairs (key names from llama.cpp's src/llama-arch.cpp, LLM_KV_NAMES)."""
    a = ARCH
    s = shape
    writer.add_string("general.type", "model")
    writer.add_string("general.name", labels.name)
    writer.add_string("general.description", labels.description)
    writer.add_uint32("general.file_type", FTYPE_Q4_K_M)
    writer.add_uint32("general.quantization_version", 2)
    for key, value in labels.extra:
        if isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_uint64(key, value)

    writer.add_uint32(f"{a}.context_length", s.context_length)
    writer.add_uint32(f"{a}.embedding_length", s.n_embd)
    writer.add_uint32(f"{a}.feed_forward_length", s.n_ff)
    writer.add_uint32(f"{a}.block_count", s.n_layer_all)
    if s.mtp:
        writer.add_uint32(f"{a}.nextn_predict_layers", 1)
    writer.add_uint32(f"{a}.attention.head_count", s.n_head)
    writer.add_uint32(f"{a}.attention.head_count_kv", s.n_head_kv)
    writer.add_uint32(f"{a}.attention.key_length", s.head_dim)
    writer.add_uint32(f"{a}.attention.value_length", s.head_dim)
    writer.add_float32(f"{a}.attention.layer_norm_rms_epsilon", s.rms_eps)
    writer.add_uint32(f"{a}.rope.dimension_count", s.n_rot)
    writer.add_float32(f"{a}.rope.freq_base", s.rope_freq_base)
    writer.add_array(f"{a}.rope.dimension_sections", [int(x) for x in s.rope_sections])
    writer.add_uint32(f"{a}.full_attention_interval", s.full_attention_interval)
    # As convert_hf_to_gguf writes it for Qwen3.5: one flag per block, MTP block included.
    writer.add_array(
        f"{a}.attention.recurrent_layers", [s.is_recurrent(i) for i in range(s.n_layer_all)]
    )
    writer.add_uint32(f"{a}.ssm.conv_kernel", s.ssm_conv)
    writer.add_uint32(f"{a}.ssm.state_size", s.ssm_state)
    writer.add_uint32(f"{a}.ssm.group_count", s.ssm_groups)
    writer.add_uint32(f"{a}.ssm.time_step_rank", s.ssm_heads)
    writer.add_uint32(f"{a}.ssm.inner_size", s.ssm_state * s.ssm_heads)

    writer.add_string("tokenizer.ggml.model", "gpt2")
    writer.add_string("tokenizer.ggml.pre", "qwen35")
    writer.add_array("tokenizer.ggml.tokens", vocab.tokens)
    writer.add_array("tokenizer.ggml.token_type", vocab.token_types)
    writer.add_array("tokenizer.ggml.merges", vocab.merges)
    writer.add_uint32("tokenizer.ggml.eos_token_id", vocab.eos_id)
    writer.add_uint32("tokenizer.ggml.bos_token_id", vocab.bos_id)
    writer.add_uint32("tokenizer.ggml.padding_token_id", vocab.pad_id)
    writer.add_bool("tokenizer.ggml.add_bos_token", False)


def initial_values(t: TensorPlan, rng: np.random.Generator) -> np.ndarray:
    """float32 (rows * cols,) values drawn by the tensor's recipe (``TensorPlan.init``):
    what synth writes for F32 tensors, and a trainer's starting point for all."""
    n = t.rows * t.cols
    if t.init == P.NORM:
        v = 1.0 + 0.1 * rng.standard_normal(n)
    elif t.init == P.SSM_A:
        v = -np.exp(rng.uniform(np.log(1.0), np.log(16.0), n))
    elif t.init == P.DT_BIAS:
        dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), n))
        v = np.log(np.expm1(dt))  # inverse softplus
    elif t.init == P.CONV:
        v = 0.5 * rng.standard_normal(n)
    elif t.init == P.MATRIX:
        v = t.scale * rng.standard_normal(n)
    else:
        raise AssertionError(f"unknown init {t.init!r}")
    return v.astype(np.float32)


def _chunk_jobs(t: TensorPlan, seed: int) -> list[Callable[[], np.ndarray]]:
    """The tensor's bytes as independent row-chunk jobs of about CHUNK_BYTES each.

    Chunk i draws from its own generator seeded by (seed, crc32(name), i), so chunks can
    be made in parallel and the bytes still depend only on the seed.
    """
    key = zlib.crc32(t.name.encode())
    if t.ggml_type == GGMLType.F32:
        return [lambda: initial_values(t, np.random.default_rng([seed, key, 0]))]
    elems = BLOCK_SIZES[t.ggml_type][0]
    blocks_per_row = t.cols // elems
    rows_per_chunk = max(1, CHUNK_BYTES // t.row_bytes)

    def job(i: int, nrows: int) -> np.ndarray:
        rng = np.random.default_rng([seed, key, i])
        return random_blocks(t.ggml_type, nrows * blocks_per_row, rng, t.scale)

    return [
        functools.partial(job, i, min(rows_per_chunk, t.rows - r0))
        for i, r0 in enumerate(range(0, t.rows, rows_per_chunk))
    ]


def _chunks_in_order(jobs, workers: int):
    """Run the jobs on a thread pool, at most 2*workers ahead; yield results in order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.submit(job))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _pad(f: BinaryIO) -> None:
    pad = -f.tell() % ALIGNMENT
    if pad:
        f.write(b"\0" * pad)


def _write_header(path: Path, shape: Qwen35Shape, vocab: Vocab, plan, labels: Labels) -> None:
    import gguf

    writer = gguf.GGUFWriter(path, ARCH)
    _metadata(writer, shape, vocab, labels)
    for t in plan:
        writer.add_tensor_info(
            t.name,
            tuple(reversed(t.ne)),  # numpy order; the writer stores it reversed (ne order)
            np.dtype(np.float32),
            t.nbytes,
            raw_dtype=gguf.GGMLQuantizationType(int(t.ggml_type)),
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()


class _Progress:
    """A rich progress bar on stderr (bytes, speed, ETA, current tensor), or nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]synth[/]"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[tensor]}"),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._bar.add_task("write", total=total, tensor="")

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def tensor(self, name: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, tensor=name)

    def advance(self, nbytes: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=nbytes)


ChunkJobs = Callable[[TensorPlan], list[Callable[[], np.ndarray]]]


def _write_data(f: BinaryIO, plan: list[TensorPlan], jobs_of: ChunkJobs, bar: _Progress) -> None:
    """Append every tensor's bytes (aligned), made on a few threads by the jobs
    ``jobs_of(tensor)`` (each the bytes of some of its rows), written in order."""
    jobs = [(t, job) for t in plan for job in jobs_of(t)]
    workers = max(1, min(4, (os.cpu_count() or 1)))
    chunks: Iterator[np.ndarray] = _chunks_in_order((job for _, job in jobs), workers)
    written = 0
    for i, ((t, _), chunk) in enumerate(zip(jobs, chunks, strict=True)):
        if written == 0:
            bar.tensor(t.name)
        f.write(np.ascontiguousarray(chunk).data)
        written += chunk.nbytes
        bar.advance(chunk.nbytes)
        if i + 1 == len(jobs) or jobs[i + 1][0] is not t:  # the tensor's last chunk
            if written != t.nbytes:
                raise AssertionError(f"{t.name}: wrote {written} bytes, planned {t.nbytes}")
            _pad(f)
            bar.advance(-t.nbytes % ALIGNMENT)
            written = 0


def _check_space(out: Path, nbytes: int) -> None:
    free = shutil.disk_usage(out.parent if str(out.parent) else ".").free
    if free < nbytes:
        raise MtpdecError(
            f"not enough disk space for {str(out)!r}: {nbytes / 2**30:.1f} GiB needed, "
            f"{free / 2**30:.1f} GiB free"
        )


def write_synth(
    out: Path,
    preset: str,
    *,
    seed: int,
    overrides: SynthOverrides,
    force: bool,
    progress: bool | None = None,
    report: Callable[[str], None] | None = None,
) -> SynthResult:
    """Write the preset (with overrides) to OUT; return what was written.

    progress: show a progress bar on stderr (default: for files of 64 MiB or more).
    report: called with a one-line summary at the end (default: print it to stderr).
    """
    shape = resolve_shape(preset, overrides)
    if seed < 0:
        raise MtpdecError(f"--seed must be non-negative, got {seed}")
    result = _write(
        Path(out),
        shape,
        lambda: build_vocab(shape.n_vocab),
        lambda t: _chunk_jobs(t, seed),
        synth_labels(preset, seed),
        force=force,
        progress=progress,
    )
    _report(_summary(result, preset), report)
    return result


def write_weights(
    out: Path,
    shape: Qwen35Shape,
    vocab: Vocab,
    values: Mapping[str, np.ndarray],
    labels: Labels,
    *,
    force: bool,
    progress: bool | None = None,
) -> SynthResult:
    """Write a model of ``shape`` with the given float weights (every tensor of
    ``tensor_plan(shape)``, by name, numpy shape) and vocabulary, each tensor quantized to
    its planned type (the Q4_K_M-style mix of ``mtpdec.synth.plan``) by
    ``mtpdec.quants.quantize``."""
    plan = tensor_plan(shape)
    missing = [t.name for t in plan if t.name not in values]
    if missing:
        raise MtpdecError(f"no values for {len(missing)} tensors, e.g. {missing[0]!r}")

    def jobs_of(t: TensorPlan) -> list[Callable[[], np.ndarray]]:
        def job() -> np.ndarray:
            v = np.asarray(values[t.name], dtype=np.float32)
            if v.size != t.rows * t.cols:
                raise MtpdecError(f"{t.name}: {v.size} values for {t.rows} x {t.cols}")
            return quantize(v.reshape(t.rows, t.cols), t.ggml_type)

        return [job]

    return _write(Path(out), shape, lambda: vocab, jobs_of, labels, force=force, progress=progress)


def _write(
    out: Path,
    shape: Qwen35Shape,
    vocab_of: Callable[[], Vocab],
    jobs_of: ChunkJobs,
    labels: Labels,
    *,
    force: bool,
    progress: bool | None,
) -> SynthResult:
    """Header and data through a ``.partial`` file renamed at the end (removed on failure)."""
    check_output_path(out, force=force)
    t0 = time.perf_counter()
    plan = tensor_plan(shape)
    data_bytes = sum(t.nbytes + (-t.nbytes % ALIGNMENT) for t in plan)
    _check_space(out, data_bytes)

    partial = out.with_name(out.name + ".partial")
    show = data_bytes >= PROGRESS_MIN_BYTES if progress is None else progress
    try:
        with _Progress(data_bytes, show) as bar:
            bar.tensor("learning the BPE vocabulary")
            vocab = vocab_of()
            if len(vocab.tokens) != shape.n_vocab:
                raise MtpdecError(f"{len(vocab.tokens)} tokens for a vocab of {shape.n_vocab}")
            bar.tensor("writing metadata and tensor infos")
            _write_header(partial, shape, vocab, plan, labels)
            with open(partial, "r+b") as f:
                f.seek(0, os.SEEK_END)
                _pad(f)
                _write_data(f, plan, jobs_of, bar)
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise MtpdecError(f"cannot write {str(out)!r}: {exc.strerror or exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return SynthResult(
        path=out,
        shape=shape,
        n_tensors=len(plan),
        nbytes=out.stat().st_size,
        seconds=time.perf_counter() - t0,
        type_counts=dict(Counter(t.ggml_type.name for t in plan)),
    )


def _report(summary: str, report: Callable[[str], None] | None) -> None:
    if report is None:
        import sys

        print(summary, file=sys.stderr)
    else:
        report(summary)


def _summary(r: SynthResult, preset: str) -> str:
    s = r.shape
    n_gdn = sum(s.is_recurrent(i) for i in range(s.n_layer))
    types = ", ".join(f"{k} x{v}" for k, v in sorted(r.type_counts.items()))
    line = (
        f"wrote {r.path} ({preset}: {s.n_layer} trunk layers = {n_gdn} gdn + "
        f"{s.n_layer - n_gdn} attention{' + mtp' if s.mtp else ''}, n_embd {s.n_embd}, "
        f"vocab {s.n_vocab}; {r.n_tensors} tensors [{types}]; "
        f"{r.nbytes / 2**20:.1f} MiB in {r.seconds:.1f} s)"
    )
    if n_gdn == s.n_layer:
        line += (
            f"\nnote: no full-attention layer in the trunk (--layers < "
            f"{s.full_attention_interval}); llama.cpp aborts on such a file"
        )
    return line
