"""Building blocks shared by the architectures: attention and the gated FFN, over any
backend's ops (``mtpdec.cpu.backend.Ops``; the CPU's by default).

Every block maps float32 ``(k, n_embd)`` rows to float32 rows and treats each row with
the same operations whatever k; ``prefill=True`` (a prompt) is the one exception, asked
for by name (``mtpdec.cpu.linear.Linear``). A decode or verify forward never passes it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtpdec.cpu.backend import CPU, Ops
from mtpdec.cpu.linear import Linear, Numerics
from mtpdec.cpu.ops import RopeTable
from mtpdec.loader.reader import GGUFFile
from mtpdec.quants import dequantize
from mtpdec.state import KVCache

F32 = np.float32


def vector(f: GGUFFile, name: str) -> np.ndarray:
    """A 1-D tensor (norm weight, bias) as float32 host array."""
    return np.ascontiguousarray(dequantize(f.tensors[name]).reshape(-1), dtype=F32)


def linear(f: GGUFFile, name: str, numerics: Numerics, ops: Ops = CPU) -> Any:
    """The linear map of the file's matrix ``name`` on ``ops``' backend."""
    return ops.linear(f.tensors[name], numerics)


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

    def __init__(
        self, f: GGUFFile, prefix: str, spec: AttentionSpec, numerics: Numerics, ops: Ops = CPU
    ):
        self.spec, self.ops = spec, ops
        names = [f"{prefix}.attn_{m}.weight" for m in ("q", "k", "v")]
        self.wqkv = ops.linear_group([f.tensors[n] for n in names], numerics)
        self.wo = linear(f, f"{prefix}.attn_output.weight", numerics, ops)
        self.q_norm = ops.upload(vector(f, f"{prefix}.attn_q_norm.weight"))
        self.k_norm = ops.upload(vector(f, f"{prefix}.attn_k_norm.weight"))

    def linears(self) -> list[Linear]:
        return self.wqkv.linears() + [self.wo]

    def __call__(self, x: Any, positions: np.ndarray, cache: KVCache, prefill: bool = False) -> Any:
        """x float32 (k, n_embd) normed input of tokens at ``positions`` (host ints) ->
        (k, n_embd), arrays of the block's backend.

        Writes the tokens' keys and values into ``cache`` at their positions first.
        ``prefill``: the tokens are (part of) a prompt (see ``Linear``).
        """
        s, n, ops = self.spec, x.shape[0], self.ops
        hd = s.head_dim
        q, k, v = self.wqkv(x, prefill)
        q = q.reshape(n, s.n_head, -1)
        gate = None
        if s.gated:
            q, gate = q[..., :hd], q[..., hd:].reshape(n, s.n_head * hd)
        q = ops.rmsnorm(q, self.q_norm, s.eps)
        k = ops.rmsnorm(k.reshape(n, s.n_kv, hd), self.k_norm, s.eps)
        v = v.reshape(n, s.n_kv, -1)
        cos, sin = map(ops.upload, rope_table(s.n_rot, s.rope_base, s.rope_scale)(positions))
        q, k = ops.rope_neox(q, cos, sin), ops.rope_neox(k, cos, sin)
        if s.q_scale != 1.0:
            q = q * F32(s.q_scale)
        cache.write(int(positions[0]), k, v)
        out = ops.attend(q, cache.k, cache.v, positions, s.kq_scale, s.window).reshape(n, -1)
        if gate is not None:
            out = ops.sigmoid(gate, out)
        return self.wo(out, prefill)


def swiglu(ops: Ops, gate: Any, up: Any) -> Any:
    """silu(gate) * up (qwen35's FFN activation)."""
    return ops.silu(gate, up)


class FeedForward:
    """Gated FFN: ``down(act(gate @ x) * (up @ x))``; ``act(ops, g, u)`` returns
    act(g) * u on the block's backend."""

    def __init__(
        self,
        f: GGUFFile,
        prefix: str,
        act: Callable[[Ops, Any, Any], Any],
        numerics: Numerics,
        ops: Ops = CPU,
    ) -> None:
        self.act, self.ops = act, ops
        names = [f"{prefix}.ffn_gate.weight", f"{prefix}.ffn_up.weight"]
        self.gate_up = ops.linear_group([f.tensors[n] for n in names], numerics)
        self.down = linear(f, f"{prefix}.ffn_down.weight", numerics, ops)

    def linears(self) -> list[Linear]:
        return self.gate_up.linears() + [self.down]

    def __call__(self, x: Any, prefill: bool = False) -> Any:
        gate, up = self.gate_up(x, prefill)
        return self.down(self.act(self.ops, gate, up), prefill)
