"""Model configs from GGUF metadata: the registry keyed by ``general.architecture``,
layer kinds, tensor specs and typed metadata reads shared by the architectures.

Each config (qwen35.py, gemma3.py) is a frozen dataclass that knows its per-layer plan
(``layer_kinds``) and the tensors it computes with (``tensor_specs()``: name, numpy
shape ``(rows, cols)`` or ``(n,)``, required or optional). Key names, defaults and
shapes follow llama.cpp (src/llama-arch.cpp, src/models/*.cpp).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

from mtpdec.errors import MtpdecError
from mtpdec.loader.reader import GGUFFile

# Layer kinds of a layer plan.
GDN = "gdn"  # Gated-DeltaNet (recurrent) mixer
ATTENTION = "attention"  # full (global) causal attention
SLIDING = "sliding"  # sliding-window (local) attention
MTP = "mtp"  # NextN / multi-token-prediction block

_REQUIRED: Any = object()
MAX_LAYERS = 512  # llama.cpp's LLAMA_MAX_LAYERS


@dataclass(frozen=True)
class TensorSpec:
    """A tensor a config computes with; ``shape`` in numpy order."""

    name: str
    shape: tuple[int, ...]
    required: bool = True


class ModelConfig(Protocol):
    architecture: ClassVar[str]
    n_vocab: int
    n_embd: int
    layer_kinds: tuple[str, ...]

    def tensor_specs(self) -> list[TensorSpec]: ...


C = TypeVar("C")
CONFIGS: dict[str, Callable[[GGUFFile], Any]] = {}


def register(cls: type[C]) -> type[C]:
    """Class decorator: make ``cls.from_gguf`` the builder for ``cls.architecture``."""
    CONFIGS[cls.architecture] = cls.from_gguf  # type: ignore[attr-defined]
    return cls


def build_config(f: GGUFFile) -> ModelConfig:
    """The config for the file's ``general.architecture``; MtpdecError when unknown."""
    if "general.architecture" not in f:
        raise MtpdecError(f"{f.path}: missing required metadata key 'general.architecture'")
    arch = f.get("general.architecture")
    builder = CONFIGS.get(arch) if isinstance(arch, str) else None
    if builder is None:
        names = ", ".join(sorted(CONFIGS))
        raise MtpdecError(f"{f.path}: unsupported architecture {arch!r} (supported: {names})")
    return builder(f)


class Meta:
    """Typed reads of ``{arch}.{name}`` keys with llama.cpp-style defaults."""

    def __init__(self, f: GGUFFile, arch: str) -> None:
        self.f, self.arch = f, arch

    def key(self, name: str) -> str:
        return f"{self.arch}.{name}"

    def fail(self, msg: str) -> MtpdecError:
        return MtpdecError(f"{self.f.path}: {msg}")

    def _raw(self, name: str, default: Any) -> Any:
        key = self.key(name)
        if key not in self.f:
            if default is _REQUIRED:
                raise self.fail(f"missing required metadata key {key!r}")
            return default
        return self.f.get(key)

    def int(self, name: str, default: Any = _REQUIRED) -> int:
        """A scalar integer, or a per-layer array whose entries are all equal."""
        v = self._raw(name, default)
        if isinstance(v, np.ndarray) and v.ndim == 1 and v.size and v.dtype.kind in "iu":
            if (v != v[0]).any():
                raise self.fail(f"per-layer values of {self.key(name)!r} are not supported")
            v = int(v[0])
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.fail(f"metadata key {self.key(name)!r} is not an integer: {v!r}")
        return v

    def float(self, name: str, default: Any = _REQUIRED) -> float:
        v = self._raw(name, default)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise self.fail(f"metadata key {self.key(name)!r} is not a finite number: {v!r}")
        return float(v)

    def positive_float(self, name: str, default: Any = _REQUIRED) -> float:
        v = self.float(name, default)
        if v <= 0:
            raise self.fail(f"metadata key {self.key(name)!r} must be positive, got {v!r}")
        return v

    def block_count(self) -> int:
        """``block_count``, 1..MAX_LAYERS."""
        n = self.int("block_count")
        if not 1 <= n <= MAX_LAYERS:
            raise self.fail(f"metadata block_count {n} is not within 1..{MAX_LAYERS}")
        return n

    def str(self, name: str, default: Any = _REQUIRED) -> str:
        v = self._raw(name, default)
        if not isinstance(v, str):
            raise self.fail(f"metadata key {self.key(name)!r} is not a string: {v!r}")
        return v

    def ints(self, name: str, n: int, default: Any = _REQUIRED) -> tuple[int, ...] | None:
        """``n`` integers from an array of length n or a scalar (llama.cpp get_key_or_arr)."""
        v = self._raw(name, default)
        if v is None:
            return None
        if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "iub":
            if v.size != n:
                raise self.fail(
                    f"metadata key {self.key(name)!r} has {v.size} entries, expected {n}"
                )
            return tuple(int(x) for x in v)
        if isinstance(v, int):
            return (int(v),) * n
        raise self.fail(f"metadata key {self.key(name)!r} is not an integer array: {v!r}")

    def positive(self, **values: int) -> None:
        for name, v in values.items():
            if v <= 0:
                raise self.fail(f"metadata {name} must be positive, got {v}")

    def multiple(self, a: str, av: int, b: str, bv: int) -> None:
        if av % bv:
            raise self.fail(f"metadata {a} {av} is not a multiple of {b} {bv}")


def rope_freq_scale(m: Meta) -> float:
    """Rotary frequency scale 1/factor (llama.cpp's rope_freq_scale_train).

    ``rope.scaling.type`` defaults to linear; its ``rope.scaling.factor`` (or the older
    ``rope.scale_linear``) divides every angle. Other scaling types (yarn, longrope, ...)
    are refused unless their factor is 1.
    """
    kind = m.str("rope.scaling.type", "linear")
    factor = m.float("rope.scaling.factor", 0.0) or m.float("rope.scale_linear", 0.0) or 1.0
    if factor <= 0:
        raise m.fail(f"rope scaling factor must be positive, got {factor}")
    if kind not in ("linear", "none") and factor != 1.0:
        raise m.fail(f"unsupported rope scaling type {kind!r} (factor {factor})")
    return 1.0 if kind == "none" else 1.0 / factor


def vocab_size(f: GGUFFile, n_embd: int) -> int:
    """Vocabulary size: rows of ``token_embd.weight`` (rows, n_embd)."""
    t = f.tensors.get("token_embd.weight")
    if t is None:
        raise MtpdecError(
            f"{f.path}: missing tensor 'token_embd.weight' required by {f.architecture}"
        )
    if len(t.shape) != 2 or t.shape[1] != n_embd:
        raise MtpdecError(
            f"{f.path}: tensor 'token_embd.weight' has shape {t.shape}, "
            f"expected (n_vocab, {n_embd})"
        )
    return t.shape[0]


def ffn_specs(p: str, n_embd: int, n_ff: int) -> list[TensorSpec]:
    return [
        TensorSpec(f"{p}.ffn_gate.weight", (n_ff, n_embd)),
        TensorSpec(f"{p}.ffn_up.weight", (n_ff, n_embd)),
        TensorSpec(f"{p}.ffn_down.weight", (n_embd, n_ff)),
    ]


def attention_specs(
    p: str, n_embd: int, q_rows: int, kv_rows: int, v_rows: int, o_cols: int, head_dim: int
) -> list[TensorSpec]:
    return [
        TensorSpec(f"{p}.attn_q.weight", (q_rows, n_embd)),
        TensorSpec(f"{p}.attn_k.weight", (kv_rows, n_embd)),
        TensorSpec(f"{p}.attn_v.weight", (v_rows, n_embd)),
        TensorSpec(f"{p}.attn_output.weight", (n_embd, o_cols)),
        TensorSpec(f"{p}.attn_q_norm.weight", (head_dim,)),
        TensorSpec(f"{p}.attn_k_norm.weight", (head_dim,)),
    ]


def head_specs(n_vocab: int, n_embd: int) -> list[TensorSpec]:
    return [
        TensorSpec("token_embd.weight", (n_vocab, n_embd)),
        TensorSpec("output_norm.weight", (n_embd,)),
        TensorSpec("output.weight", (n_vocab, n_embd), required=False),
    ]
