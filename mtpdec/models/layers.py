"""Building blocks shared by the architectures: linear maps, attention, gated FFN.

Every block maps float32 ``(k, n_embd)`` rows to float32 rows and treats each row with
the same operations whatever k, except the dense prefill path of ``Linear`` (k >= 9).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtpdec.cpu.attention import attend
from mtpdec.cpu.matvec import MatVec
from mtpdec.cpu.ops import RopeTable, rmsnorm, rope_neox, sigmoid
from mtpdec.loader.reader import GGUFFile
from mtpdec.quants import dequantize
from mtpdec.state import KVCache
from mtpdec.tensor import Tensor

F32 = np.float32
DENSE_MIN_ROWS = 9  # batches of at least this many rows may use dense fp32 weights


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


class Linear:
    """``y = x @ W^T`` for a GGUF matrix W (rows, cols).

    x float32 (k, cols) -> float32 (k, rows). Up to 8 rows go through the n-input
    dequant kernels (bitwise identical per row whatever k). From 9 rows on, a matrix
    whose dequantized copy fits the model's DenseBudget is multiplied densely (BLAS):
    faster for long prompts, but not bitwise equal to the kernel path.
    """

    def __init__(self, w: Tensor, budget: DenseBudget | None) -> None:
        self.w, self.budget = w, budget
        self.kernel = MatVec(w)
        self.dense: np.ndarray | None = None
        self._dense_refused = budget is None

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

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.shape[0] >= DENSE_MIN_ROWS and self.prepare_dense():
            return np.ascontiguousarray(x @ self.dense.T, dtype=F32)
        return self.kernel(np.ascontiguousarray(x, dtype=F32))


FUSE_LIMIT_BYTES = 16 << 20  # matrices at most this big are copied into fused ones


class LinearGroup:
    """Several matrices applied to the same input: ``x -> [x @ W_i^T for each i]``.

    Consecutive matrices of the same type and width, each at most FUSE_LIMIT_BYTES, are
    copied once into one fused matrix, so one kernel call reads them all (fewer calls
    per token; the copy costs RAM equal to those small matrices). Rows of a fused call
    get the same bits as separate calls: every row is computed independently.
    """

    def __init__(self, tensors: list[Tensor], budget: DenseBudget | None) -> None:
        self.parts: list[tuple[Linear, list[tuple[int, int]]]] = []
        run: list[Tensor] = []
        for t in tensors + [None]:  # type: ignore[list-item]
            if run and (t is None or not _fusable(run[-1], t)):
                ends = np.cumsum([r.rows for r in run]).tolist()
                spans = list(zip([0] + ends[:-1], ends))
                self.parts.append((Linear(_concat(run), budget), spans))
                run = []
            if t is not None:
                run.append(t)

    def linears(self) -> list[Linear]:
        return [lin for lin, _ in self.parts]

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        """x float32 (k, cols) -> [float32 (k, rows_i)] per matrix, in the given order
        (column slices of one fused output where matrices were fused)."""
        outs: list[np.ndarray] = []
        for lin, spans in self.parts:
            y = lin(x)
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


def linear(f: GGUFFile, name: str, budget: DenseBudget | None) -> Linear:
    """The Linear map of the file's matrix ``name``."""
    return Linear(f.tensors[name], budget)


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

    def __init__(self, f: GGUFFile, prefix: str, spec: AttentionSpec, budget: DenseBudget | None):
        self.spec = spec
        names = [f"{prefix}.attn_{m}.weight" for m in ("q", "k", "v")]
        self.wqkv = LinearGroup([f.tensors[n] for n in names], budget)
        self.wo = linear(f, f"{prefix}.attn_output.weight", budget)
        self.q_norm = vector(f, f"{prefix}.attn_q_norm.weight")
        self.k_norm = vector(f, f"{prefix}.attn_k_norm.weight")

    def linears(self) -> list[Linear]:
        return self.wqkv.linears() + [self.wo]

    def __call__(self, x: np.ndarray, positions: np.ndarray, cache: KVCache) -> np.ndarray:
        """x float32 (k, n_embd) normed input of tokens at ``positions`` -> (k, n_embd).

        Writes the tokens' keys and values into ``cache`` at their positions first.
        """
        s, n = self.spec, x.shape[0]
        hd = s.head_dim
        q, k, v = self.wqkv(x)
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
        return self.wo(out)


class FeedForward:
    """Gated FFN: ``down(act(gate @ x) * (up @ x))``; ``act(g, u)`` returns act(g) * u."""

    def __init__(
        self,
        f: GGUFFile,
        prefix: str,
        act: Callable[[np.ndarray, np.ndarray], np.ndarray],
        budget: DenseBudget | None,
    ) -> None:
        self.act = act
        names = [f"{prefix}.ffn_gate.weight", f"{prefix}.ffn_up.weight"]
        self.gate_up = LinearGroup([f.tensors[n] for n in names], budget)
        self.down = linear(f, f"{prefix}.ffn_down.weight", budget)

    def linears(self) -> list[Linear]:
        return self.gate_up.linears() + [self.down]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        gate, up = self.gate_up(x)
        return self.down(self.act(gate, up))
