"""Building blocks shared by the architectures: linear maps, attention, gated FFN.

Every block maps float32 ``(k, n_embd)`` rows to float32 rows and treats each row with
the same operations whatever k. The one exception is asked for by name: ``prefill=True``
(a prompt) lets ``Linear`` multiply batches of DENSE_MIN_ROWS or more rows densely with
exact float32 inputs (not bitwise the kernels' results). A decode or verify forward never
passes it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from mtpdec.cpu.attention import attend
from mtpdec.cpu.matvec import InputRows, MatVec, as_rows, check_activations
from mtpdec.cpu.ops import RopeTable, rmsnorm, rope_neox, sigmoid
from mtpdec.loader.reader import GGUFFile
from mtpdec.quants import dequantize
from mtpdec.state import KVCache
from mtpdec.tensor import Tensor

F32 = np.float32
DENSE_MIN_ROWS = 9  # prefill batches of at least this many rows may use dense fp32 weights


class DenseBudget:
    """How many bytes of dequantized fp32 weights a model may keep for batched prefill."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit, self.used = limit_bytes, 0

    def take(self, nbytes: int) -> bool:
        """Reserve nbytes; False (nothing reserved) when that would pass the limit."""
        if self.used + nbytes > self.limit:
            return False
        self.used += nbytes
        return True


@dataclass(frozen=True)
class Numerics:
    """How a model's matrices multiply, fixed when it is loaded.

    activations: "q8" (inputs rounded to 8 bits, integer dot products) or "f32"
      (``mtpdec.cpu.matvec``).
    budget: fp32 weight copies for dense prefill; None: the kernels only (the LM head).
    """

    activations: str = "q8"
    budget: DenseBudget | None = None

    def __post_init__(self) -> None:
        check_activations(self.activations)

    def kernels_only(self) -> Numerics:
        return replace(self, budget=None)


class Linear:
    """``y = x @ W^T`` for a GGUF matrix W (rows, cols).

    x float32 (k, cols) (or an InputRows) -> float32 (k, rows), through the n-input
    kernels in the model's activation mode: every row bitwise the same whatever k. With
    ``prefill=True`` and at least DENSE_MIN_ROWS rows, a matrix whose fp32 copy fits the
    budget is multiplied densely (BLAS) with the exact float32 inputs, in both modes:
    faster for long prompts (rounding the rows to 8 bits and back cost 20% of Gemma's
    prefill), as exact as the f32 kernels.
    """

    def __init__(self, w: Tensor, numerics: Numerics, keep_file_pages: bool = False) -> None:
        self.w, self.budget = w, numerics.budget
        self.kernel = MatVec(w, numerics.activations, keep_file_pages=keep_file_pages)
        self.dense: np.ndarray | None = None
        self._dense_refused = self.budget is None

    @property
    def dense_nbytes(self) -> int:
        """Bytes of W's float32 copy for the dense path."""
        return 4 * self.w.rows * self.w.cols

    def prepare_dense(self) -> bool:
        """Dequantize W once for the dense path if the budget allows; True when ready."""
        if self.dense is None and not self._dense_refused:
            if self.budget is not None and self.budget.take(self.dense_nbytes):
                self.dense = np.ascontiguousarray(dequantize(self.w))
            else:
                self._dense_refused = True
        return self.dense is not None

    def __call__(self, x: np.ndarray | InputRows, prefill: bool = False) -> np.ndarray:
        rows = as_rows(x)
        if prefill and rows.n >= DENSE_MIN_ROWS and self.prepare_dense():
            return np.ascontiguousarray(rows.x @ self.dense.T, dtype=F32)
        return self.kernel(rows)


FUSE_LIMIT_BYTES = 16 << 20  # matrices at most this big are copied into fused ones


class LinearGroup:
    """Several matrices applied to the same input: ``x -> [x @ W_i^T for each i]``.

    Consecutive matrices of the same type and width, each at most FUSE_LIMIT_BYTES, are
    copied once into one fused matrix, so one kernel call reads them all (fewer calls
    per token; the copy costs RAM equal to those small matrices). Rows of a fused call
    get the same bits as separate calls: every row is computed independently. The input
    is rounded to 8 bits once for all of them.
    """

    def __init__(self, tensors: list[Tensor], numerics: Numerics) -> None:
        self.parts: list[tuple[Linear, list[tuple[int, int]]]] = []
        run: list[Tensor] = []
        for t in tensors + [None]:  # type: ignore[list-item]
            if run and (t is None or not _fusable(run[-1], t)):
                ends = np.cumsum([r.rows for r in run]).tolist()
                spans = list(zip([0] + ends[:-1], ends))
                self.parts.append((Linear(_concat(run), numerics), spans))
                run = []
            if t is not None:
                run.append(t)

    def linears(self) -> list[Linear]:
        return [lin for lin, _ in self.parts]

    def __call__(self, x: np.ndarray, prefill: bool = False) -> list[np.ndarray]:
        """x float32 (k, cols) -> [float32 (k, rows_i)] per matrix, in the given order
        (column slices of one fused output where matrices were fused)."""
        rows = InputRows(x)
        outs: list[np.ndarray] = []
        for lin, spans in self.parts:
            y = lin(rows, prefill)
            outs += [y[:, a:b] for a, b in spans] if len(spans) > 1 else [y]
        return outs


def _fusable(a: Tensor, b: Tensor) -> bool:
    small = max(a.nbytes, b.nbytes) <= FUSE_LIMIT_BYTES
    return small and a.ggml_type == b.ggml_type and a.cols == b.cols and len(b.shape) == 2


def _concat(tensors: list[Tensor]) -> Tensor:
    if len(tensors) == 1:
        return tensors[0]
    raw = np.concatenate([t.raw for t in tensors], axis=0)
    name = "+".join(t.name for t in tensors)
    return Tensor(name, tensors[0].ggml_type, (raw.shape[0], tensors[0].cols), raw)


def vector(f: GGUFFile, name: str) -> np.ndarray:
    """A 1-D tensor (norm weight, bias) as float32."""
    return np.ascontiguousarray(dequantize(f.tensors[name]).reshape(-1), dtype=F32)


def linear(f: GGUFFile, name: str, numerics: Numerics) -> Linear:
    """The Linear map of the file's matrix ``name``."""
    return Linear(f.tensors[name], numerics)


@dataclass(frozen=True)
class AttentionSpec:
    """Shape and flavour of one attention layer.

    gated:     attn_q rows hold [q | gate] per head; output is multiplied by sigmoid(gate).
    q_scale:   multiplies q after the rotary embedding (Gemma's query_pre_attn_scalar).
    kq_scale:  multiplies q.k inside the softmax.
    n_rot:     leading dims of each head that rotate (NEOX pairing); the rest pass through.
    rope_scale: linear rotary scaling, multiplies every angle (1 / scaling factor).
    window:    sliding window (0 = full causal attention).
    """

    n_head: int
    n_kv: int
    head_dim: int
    n_rot: int
    rope_base: float
    eps: float
    rope_scale: float = 1.0
    gated: bool = False
    q_scale: float = 1.0
    kq_scale: float = 1.0
    window: int = 0


@functools.cache
def rope_table(n_rot: int, base: float, freq_scale: float) -> RopeTable:
    """One shared table per (n_rot, base, scale): layers with the same rotary share it."""
    return RopeTable(n_rot, base, freq_scale)


class Attention:
    """Self-attention with per-head q/k RMSNorm, rotary embedding and GQA over a KVCache."""

    def __init__(self, f: GGUFFile, prefix: str, spec: AttentionSpec, numerics: Numerics):
        self.spec = spec
        names = [f"{prefix}.attn_{m}.weight" for m in ("q", "k", "v")]
        self.wqkv = LinearGroup([f.tensors[n] for n in names], numerics)
        self.wo = linear(f, f"{prefix}.attn_output.weight", numerics)
        self.q_norm = vector(f, f"{prefix}.attn_q_norm.weight")
        self.k_norm = vector(f, f"{prefix}.attn_k_norm.weight")

    def linears(self) -> list[Linear]:
        return self.wqkv.linears() + [self.wo]

    def __call__(
        self, x: np.ndarray, positions: np.ndarray, cache: KVCache, prefill: bool = False
    ) -> np.ndarray:
        """x float32 (k, n_embd) normed input of tokens at ``positions`` -> (k, n_embd).

        Writes the tokens' keys and values into ``cache`` at their positions first.
        ``prefill``: the tokens are (part of) a prompt (see ``Linear``).
        """
        s, n = self.spec, x.shape[0]
        hd = s.head_dim
        q, k, v = self.wqkv(x, prefill)
        q = q.reshape(n, s.n_head, -1)
        gate = None
        if s.gated:
            q, gate = q[..., :hd], q[..., hd:].reshape(n, s.n_head * hd)
        q = rmsnorm(q, self.q_norm, s.eps)
        k = rmsnorm(k.reshape(n, s.n_kv, hd), self.k_norm, s.eps)
        v = v.reshape(n, s.n_kv, -1)
        cos, sin = rope_table(s.n_rot, s.rope_base, s.rope_scale)(positions)
        q, k = rope_neox(q, cos, sin), rope_neox(k, cos, sin)
        if s.q_scale != 1.0:
            q = q * F32(s.q_scale)
        cache.write(int(positions[0]), k, v)
        out = attend(q, cache.k, cache.v, positions, s.kq_scale, s.window).reshape(n, -1)
        if gate is not None:
            out = sigmoid(gate, out)
        return self.wo(out, prefill)


class FeedForward:
    """Gated FFN: ``down(act(gate @ x) * (up @ x))``; ``act(g, u)`` returns act(g) * u."""

    def __init__(
        self,
        f: GGUFFile,
        prefix: str,
        act: Callable[[np.ndarray, np.ndarray], np.ndarray],
        numerics: Numerics,
    ) -> None:
        self.act = act
        names = [f"{prefix}.ffn_gate.weight", f"{prefix}.ffn_up.weight"]
        self.gate_up = LinearGroup([f.tensors[n] for n in names], numerics)
        self.down = linear(f, f"{prefix}.ffn_down.weight", numerics)

    def linears(self) -> list[Linear]:
        return self.gate_up.linears() + [self.down]

    def __call__(self, x: np.ndarray, prefill: bool = False) -> np.ndarray:
        gate, up = self.gate_up(x, prefill)
        return self.down(self.act(gate, up), prefill)
