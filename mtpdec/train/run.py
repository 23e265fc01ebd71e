"""Train the tiny qwen35 model with its MTP head on the standard library (issue 10).

``train(opts)`` does everything ``scripts/train_tiny_mtp.py`` does, in ``opts.out``:
1. the corpus split and the vocabulary (``mtpdec.train.data``), cached as ``vocab.json``,
   and both splits tokenized, cached as ``tokens.npz`` (files joined by <|endoftext|>);
2. a model of ``opts.shape`` (``mtpdec.train.model``) from the synth recipes' initial
   values, trained with AdamW on random windows of the training tokens: loss = trunk CE
   + ``mtp_weight`` x MTP CE (the block predicts token p + 1 from the trunk's hidden at
   p - 1 and the token at p), warm-up then cosine learning rate, gradients clipped at 1;
   every ``log_every`` steps a line of ``loss.tsv``, every ``save_every`` steps
   ``checkpoint.pt`` (model, optimizer, step, generator states): a run that stops
   continues from there with the same options (``resume``);
3. held-out figures of the float model and of the quantized file: trunk and MTP loss,
   and the first draft's acceptance (MTP argmax equal to the trunk's argmax);
4. ``model.gguf`` (``mtpdec.synth.writer.write_weights``) and ``card.json``.
A seed fixes the data order and the initial values; torch's multi-threaded CPU kernels
may still differ in the last digits between runs (a full re-run matched the first one's
held-out loss to 0.003 nats and its acceptance to 0.3 points, not bit for bit).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtpdec.synth import SynthOverrides
from mtpdec.synth.plan import config_of, tensor_plan
from mtpdec.synth.presets import Qwen35Shape, resolve_shape
from mtpdec.synth.vocab import Vocab
from mtpdec.synth.writer import Labels, initial_values, write_weights
from mtpdec.tokenizer.bpe import build_bpe
from mtpdec.train.data import (
    HELD_OUT_PERCENT,
    read_text,
    split,
    stdlib_files,
    stdlib_root,
    train_vocab,
)
from mtpdec.train.model import Qwen35Torch, from_gguf
from mtpdec.train.prompts import held_out_prompts, prompts_file_text


@dataclass(frozen=True)
class TrainOptions:
    out: Path
    steps: int = 500
    batch: int = 8
    seq: int = 256
    lr: float = 3e-3
    warmup: int = 50
    mtp_weight: float = 0.3
    seed: int = 0
    chunk: int = 64
    n_vocab: int = 4096
    max_files: int | None = None  # a corpus subset (tests)
    eval_windows: int = 32
    log_every: int = 10
    save_every: int = 50
    overrides: SynthOverrides = SynthOverrides(ssm_groups=2, ssm_heads=4)  # H_k < H_v

    @property
    def shape(self) -> Qwen35Shape:
        over = dataclasses.replace(self.overrides, vocab=self.n_vocab)
        return resolve_shape("qwen35-tiny", over)


def _vocab(opts: TrainOptions, train_files: list[Path]) -> Vocab:
    path = opts.out / "vocab.json"
    if path.is_file():
        return Vocab(**json.loads(path.read_text()))
    vocab = train_vocab((read_text(p) for p in train_files), opts.n_vocab)
    path.write_text(json.dumps(dataclasses.asdict(vocab)))
    return vocab


def _tokens(
    opts: TrainOptions, vocab: Vocab, files: dict[str, list[Path]]
) -> dict[str, np.ndarray]:
    path = opts.out / "tokens.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    ids = {t: i for i, t in enumerate(vocab.tokens)}
    tok = build_bpe(ids, vocab.merges, "qwen35", "trained vocabulary")
    out = {}
    for part, paths in files.items():
        encoded = tok.encode_batch([read_text(p) for p in paths])
        stream = [i for e in encoded for i in [*e.ids, vocab.bos_id]]  # <|endoftext|> between
        out[part] = np.asarray(stream, dtype=np.int32)
    np.savez(path, **out)
    return out


def initialize(model: Qwen35Torch, shape: Qwen35Shape, seed: int) -> None:
    """The synth recipes' values (``initial_values``): norms ~1, ssm_a < 0, dt biases,
    conv taps, matrices with std gain / sqrt(cols)."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for t in tensor_plan(shape):
            p = model.weight(t.name)
            p.copy_(torch.from_numpy(initial_values(t, rng).reshape(p.shape)))


def losses(model: Qwen35Torch, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """(trunk CE, MTP CE, (trunk logits, MTP logits)) of windows ids (B, T + 1)."""
    x = ids[:, :-1]
    logits, hn = model.trunk(x)
    mtp = model.mtp(x, hn)
    v, ce = logits.shape[-1], torch.nn.functional.cross_entropy
    trunk = ce(logits.reshape(-1, v), ids[:, 1:].reshape(-1))
    draft = ce(mtp[:, 1:].reshape(-1, v), ids[:, 2:].reshape(-1))  # row 0 has no hidden
    return trunk, draft, (logits, mtp)


def _windows(stream: np.ndarray, starts: np.ndarray, seq: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([stream[s : s + seq + 1] for s in starts]).astype(np.int64))


def evaluate(model: Qwen35Torch, stream: np.ndarray, opts: TrainOptions) -> dict[str, float]:
    """Held-out trunk and MTP loss over fixed windows, and the first draft's acceptance."""
    rng = np.random.default_rng(1234)
    starts = rng.integers(0, len(stream) - opts.seq - 1, opts.eval_windows)
    trunk = draft = agree = 0.0
    with torch.no_grad():
        for i in range(0, len(starts), opts.batch):
            ids = _windows(stream, starts[i : i + opts.batch], opts.seq)
            t, d, (logits, mtp) = losses(model, ids)
            n = len(ids)
            trunk, draft = trunk + float(t) * n, draft + float(d) * n
            same = mtp[:, 1:].argmax(-1) == logits[:, 1:].argmax(-1)
            agree += float(same.double().mean()) * n
    n = len(starts)
    return {"trunk_loss": trunk / n, "mtp_loss": draft / n, "first_draft_acceptance": agree / n}


def _lr(opts: TrainOptions, step: int) -> float:
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    done = (step - opts.warmup) / max(1, opts.steps - opts.warmup)
    return opts.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))


def train(opts: TrainOptions, progress: bool = True) -> dict[str, Any]:
    """Run (or continue) a training to ``opts.steps`` steps; returns the model card."""
    opts.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(opts.seed)
    files = stdlib_files()
    train_files, held_files = split(files)
    if opts.max_files is not None:
        train_files, held_files = train_files[: opts.max_files], held_files[: opts.max_files]
    vocab = _vocab(opts, train_files)
    streams = _tokens(opts, vocab, {"train": train_files, "held_out": held_files})
    shape = opts.shape
    model = Qwen35Torch(config_of(shape), torch.float32, opts.chunk)
    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=0.01)
    rng = np.random.default_rng(opts.seed)
    step, ckpt = 0, opts.out / "checkpoint.pt"
    seconds: float | None = 0.0
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, seconds = state["step"], state.get("seconds")  # None: not recorded
        rng.bit_generator.state = state["rng"]
    else:
        initialize(model, shape, opts.seed)
    log = opts.out / "loss.tsv"
    if step == 0:
        log.write_text("step\tloss\ttrunk\tmtp\tlr\tseconds\n")
    else:  # rows logged after the checkpoint are run again: drop them
        head, *rows = log.read_text().splitlines()
        kept = [r for r in rows if int(float(r.split("\t")[0])) <= step]
        log.write_text("\n".join([head, *kept]) + "\n")
    stream = streams["train"]
    with _progress(opts.steps, step, progress) as bar:
        while step < opts.steps:
            t0 = time.perf_counter()
            lr = _lr(opts, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            starts = rng.integers(0, len(stream) - opts.seq - 1, opts.batch)
            trunk, draft, _ = losses(model, _windows(stream, starts, opts.seq))
            loss = trunk + opts.mtp_weight * draft
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            if seconds is not None:
                seconds += time.perf_counter() - t0
            if step % opts.log_every == 0 or step == opts.steps:
                with log.open("a") as f:
                    row = (
                        step,
                        loss.item(),
                        trunk.item(),
                        draft.item(),
                        lr,
                        time.perf_counter() - t0,
                    )
                    f.write("\t".join(f"{v:.6g}" for v in row) + "\n")
            if step % opts.save_every == 0 or step == opts.steps:
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "step": step, "rng": rng.bit_generator.state,
                         "seconds": seconds}  # fmt: skip
                torch.save(state, ckpt.with_suffix(".tmp"))
                ckpt.with_suffix(".tmp").replace(ckpt)
            bar(step, loss.item())
    corpus = {
        "source": f"the .py files of Python {platform.python_version()}'s standard library "
        f"({stdlib_root()}), split by file: {HELD_OUT_PERCENT}% held out by SHA-1 of the path",
        "files": {"train": len(train_files), "held_out": len(held_files)},
        "tokens": {k: int(len(v)) for k, v in streams.items()},
    }
    prompts = held_out_prompts(held_files, stdlib_root())
    (opts.out / "prompts.txt").write_text(prompts_file_text(prompts))
    facts = {"data": corpus, "train_seconds": None if seconds is None else round(seconds, 1),
             "torch": torch.__version__,
             "torch_threads": torch.get_num_threads()}  # fmt: skip
    return _finish(model, shape, vocab, streams["held_out"], opts, facts)


def _finish(
    model: Qwen35Torch,
    shape: Qwen35Shape,
    vocab: Vocab,
    held: np.ndarray,
    opts: TrainOptions,
    facts: dict[str, Any],
) -> dict[str, Any]:
    values = {t.name: model.weight(t.name).detach().numpy() for t in tensor_plan(shape)}
    labels = Labels(
        "mtpdec tiny-mtp",
        "a tiny qwen35 model with an MTP head, trained by mtpdec on the Python standard library",
        (("mtpdec.train.seed", opts.seed), ("mtpdec.train.steps", opts.steps)),
    )
    path = write_weights(opts.out / "model.gguf", shape, vocab, values, labels, force=True).path
    quantized = from_gguf(path, torch.float32, opts.chunk)
    card = {
        "name": labels.name,
        "description": labels.description,
        **facts,
        "objective": f"trunk cross-entropy + {opts.mtp_weight} x MTP cross-entropy (the MTP "
        "block predicts token p + 2 from the trunk's final hidden at p and token p + 1)",
        "shape": dataclasses.asdict(shape),
        "options": {k: str(v) for k, v in dataclasses.asdict(opts).items()},
        "parameters": sum(p.numel() for p in model.parameters()),
        "held_out": {
            "float32": evaluate(model, held, opts),
            "gguf": evaluate(quantized, held, opts),
        },
        "file_bytes": path.stat().st_size,
    }
    (opts.out / "card.json").write_text(json.dumps(card, indent=2))
    return card


@contextlib.contextmanager
def _progress(total: int, done: int, enabled: bool) -> Iterator[Callable[[int, float], None]]:
    """A rich progress bar of the steps (loss shown) while the loop runs, or nothing."""
    if not enabled:
        yield lambda step, loss: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("training", total=total, completed=done)
        yield lambda step, loss: progress.update(
            task, completed=step, description=f"training (loss {loss:.3f})"
        )
