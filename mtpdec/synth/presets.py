"""Shapes of the qwen35 models that ``mtpdec synth`` can write, and option validation.

Sources for the real shapes:
- qwen35-0.8b: Qwen/Qwen3.5-0.8B ``config.json`` (text_config): hidden 1024, 24 layers,
  FFN 3584, 8 q / 2 kv heads of 256, partial rotary 0.25 (64 dims), M-RoPE sections
  [11, 11, 10], rope theta 1e7, GDN 16 key / 16 value heads of 128, conv 4, vocab 248320,
  tied embeddings (no ``output.weight``), one MTP layer, rms eps 1e-6.
- qwen35-27b: docs/qwen35.md (Qwen3.6-27B-MTP): 64 layers, n_embd 5120, FFN 17408,
  24 q / 4 kv heads of 256, 64 rotary dims, 16 key / 48 value heads of 128, conv 4,
  vocab 248320, untied output, MTP block at blk.64.
- qwen35-tiny: a made-up small model with the same structure (seconds to write). Its FFN
  width (640) is not a multiple of 256, so ``ffn_down`` falls back to Q5_0 / Q8_0 the way
  llama.cpp's quantizer does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from mtpdec.errors import MtpdecError
from mtpdec.loader.config import ATTENTION, GDN, MTP
from mtpdec.synth.vocab import MIN_VOCAB

# Smallest block of any type the synth writer may fall back to (Q5_0 / Q8_0).
MIN_BLOCK = 32


@dataclass(frozen=True)
class SynthOverrides:
    """Command-line overrides of a preset; None keeps the preset's value."""

    layers: int | None = None
    n_embd: int | None = None
    n_head: int | None = None
    n_head_kv: int | None = None
    ssm_groups: int | None = None
    ssm_heads: int | None = None
    vocab: int | None = None
    mtp: bool = True


@dataclass(frozen=True)
class Qwen35Shape:
    """Hyperparameters of one qwen35 model (names follow the GGUF metadata)."""

    name: str
    n_layer: int  # trunk layers, MTP block excluded
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    ssm_groups: int  # H_k
    ssm_heads: int  # H_v
    n_vocab: int
    mtp: bool = True
    tied_embeddings: bool = False  # True: no output.weight, token_embd is the LM head
    head_dim: int = 256
    n_rot: int = 64
    ssm_state: int = 128  # GDN head dim d
    ssm_conv: int = 4
    full_attention_interval: int = 4
    rope_freq_base: float = 10_000_000.0
    rope_sections: tuple[int, int, int, int] = (11, 11, 10, 0)
    rms_eps: float = 1e-6
    context_length: int = 262_144

    @property
    def n_layer_all(self) -> int:
        return self.n_layer + (1 if self.mtp else 0)

    def is_recurrent(self, il: int) -> bool:
        """Trunk layer il is Gated-DeltaNet (else full attention); the MTP block is not."""
        return il < self.n_layer and (il + 1) % self.full_attention_interval != 0

    def layer_kind(self, il: int) -> str:
        if il >= self.n_layer:
            return MTP
        return GDN if self.is_recurrent(il) else ATTENTION


PRESETS: dict[str, Qwen35Shape] = {
    "qwen35-tiny": Qwen35Shape(
        name="qwen35-tiny",
        n_layer=8,
        n_embd=256,
        n_ff=640,
        n_head=4,
        n_head_kv=2,
        ssm_groups=2,
        ssm_heads=2,
        n_vocab=4096,
        context_length=32_768,
    ),
    "qwen35-0.8b": Qwen35Shape(
        name="qwen35-0.8b",
        n_layer=24,
        n_embd=1024,
        n_ff=3584,
        n_head=8,
        n_head_kv=2,
        ssm_groups=16,
        ssm_heads=16,
        n_vocab=248_320,
        tied_embeddings=True,
    ),
    "qwen35-27b": Qwen35Shape(
        name="qwen35-27b",
        n_layer=64,
        n_embd=5120,
        n_ff=17408,
        n_head=24,
        n_head_kv=4,
        ssm_groups=16,
        ssm_heads=48,
        n_vocab=248_320,
    ),
}

MAX_LAYERS = 511  # llama.cpp's LLAMA_MAX_LAYERS is 512, the MTP block included


def _positive(option: str, value: int) -> None:
    if value < 1:
        raise MtpdecError(f"{option} must be at least 1, got {value}")


def resolve_shape(preset: str, overrides: SynthOverrides) -> Qwen35Shape:
    """The preset with the overrides applied; MtpdecError for an impossible combination."""
    try:
        base = PRESETS[preset]
    except KeyError:
        names = ", ".join(PRESETS)
        raise MtpdecError(f"unknown preset {preset!r} (choose one of: {names})") from None

    changes: dict[str, object] = {"mtp": overrides.mtp}
    for option, field, value in (
        ("--layers", "n_layer", overrides.layers),
        ("--n-embd", "n_embd", overrides.n_embd),
        ("--n-head", "n_head", overrides.n_head),
        ("--n-head-kv", "n_head_kv", overrides.n_head_kv),
        ("--ssm-groups", "ssm_groups", overrides.ssm_groups),
        ("--ssm-heads", "ssm_heads", overrides.ssm_heads),
        ("--vocab", "n_vocab", overrides.vocab),
    ):
        if value is not None:
            _positive(option, value)
            changes[field] = value
    shape = dataclasses.replace(base, **changes)  # type: ignore[arg-type]

    if shape.n_layer > MAX_LAYERS:
        raise MtpdecError(f"--layers {shape.n_layer} is above the maximum {MAX_LAYERS}")
    if shape.n_embd % MIN_BLOCK:
        raise MtpdecError(
            f"--n-embd {shape.n_embd} is not a multiple of {MIN_BLOCK} (the smallest quant block)"
        )
    if shape.n_head % shape.n_head_kv:
        raise MtpdecError(
            f"--n-head {shape.n_head} is not a multiple of --n-head-kv {shape.n_head_kv}"
        )
    if shape.ssm_heads % shape.ssm_groups:
        raise MtpdecError(
            f"--ssm-heads (H_v) {shape.ssm_heads} is not a multiple of "
            f"--ssm-groups (H_k) {shape.ssm_groups}"
        )
    if shape.n_vocab < MIN_VOCAB:
        raise MtpdecError(
            f"--vocab {shape.n_vocab} is below the minimum {MIN_VOCAB} "
            "(256 byte tokens and the special tokens)"
        )
    return shape


def check_output_path(out: Path, *, force: bool) -> None:
    """OUT must not exist (unless force) and its directory must."""
    if out.is_dir():
        raise MtpdecError(f"output {str(out)!r} is a directory")
    if out.exists() and not force:
        raise MtpdecError(f"output {str(out)!r} exists (use --force to overwrite)")
    if out.exists() and not out.is_file():
        raise MtpdecError(f"output {str(out)!r} is not a regular file; --force replaces only files")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise MtpdecError(f"directory {str(parent)!r} of the output does not exist")
