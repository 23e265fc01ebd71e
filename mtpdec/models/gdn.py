"""The Gated-DeltaNet mixer of qwen35 trunk layers (qwen35.md, llama.cpp qwen35.cpp)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mtpdec.cpu.backend import CPU, Ops
from mtpdec.cpu.linear import Linear, Numerics
from mtpdec.loader.qwen35 import Qwen35Config
from mtpdec.loader.reader import GGUFFile
from mtpdec.models.layers import linear, vector
from mtpdec.state import RecurrentState

F32 = np.float32


class GatedDeltaNet:
    """x float32 (k, n_embd) normed input -> (k, n_embd), advancing a RecurrentState;
    arrays of the backend ``ops``.

    qkv = attn_qkv @ x -> causal conv + SiLU -> q, k (H_k x d, l2-normed), v (H_v x d);
    beta = sigmoid(ssm_beta @ x); g = ssm_a * softplus(ssm_alpha @ x + ssm_dt.bias);
    delta rule per token; y = rmsnorm(o) * ssm_norm * silu(attn_gate @ x); ssm_out @ y.
    """

    def __init__(
        self, f: GGUFFile, prefix: str, cfg: Qwen35Config, numerics: Numerics, ops: Ops = CPU
    ):
        self.cfg, self.ops = cfg, ops
        names = ["attn_qkv.weight", "attn_gate.weight", "ssm_beta.weight", "ssm_alpha.weight"]
        self.w_in = ops.linear_group([f.tensors[f"{prefix}.{n}"] for n in names], numerics)
        self.wout = linear(f, f"{prefix}.ssm_out.weight", numerics, ops)
        conv = f.tensors[f"{prefix}.ssm_conv1d.weight"]
        taps = np.ascontiguousarray(vector(f, conv.name).reshape(conv.shape).T)  # (K, C)
        self.conv_taps = ops.upload(taps)
        self.dt_bias = ops.upload(vector(f, f"{prefix}.ssm_dt.bias"))
        self.a = ops.upload(vector(f, f"{prefix}.ssm_a"))
        self.norm = ops.upload(vector(f, f"{prefix}.ssm_norm.weight"))

    def linears(self) -> list[Linear]:
        return self.w_in.linears() + [self.wout]

    def new_state(self, slots: int = 0) -> RecurrentState:
        c = self.cfg
        return RecurrentState(
            c.ssm_time_step_rank, c.ssm_state_size, c.ssm_conv_kernel, c.conv_dim, slots, self.ops
        )

    def __call__(
        self, x: Any, state: RecurrentState, prefill: bool = False, snapshots: bool = False
    ) -> Any:
        """``snapshots``: keep the state after each token but the last (a verify)."""
        c, n, ops = self.cfg, x.shape[0], self.ops
        slots, conv_ring = state.snapshot_plan(n, snapshots)
        d, h_k, h_v = c.ssm_state_size, c.ssm_group_count, c.ssm_time_step_rank
        qkv, z, b, a = self.w_in(x, prefill)
        mixed = ops.causal_conv_silu(qkv, state.conv, self.conv_taps, conv_ring)
        q = ops.l2norm(mixed[:, : c.key_dim].reshape(n, h_k, d), c.rms_eps)
        k = ops.l2norm(mixed[:, c.key_dim : 2 * c.key_dim].reshape(n, h_k, d), c.rms_eps)
        v = ops.xp.ascontiguousarray(mixed[:, 2 * c.key_dim :].reshape(n, h_v, d))
        beta = ops.sigmoid(b)
        g = (ops.softplus(a + self.dt_bias) * self.a).astype(F32)
        o = ops.delta_rule(state.s, q, k, v, g, beta, state.pool, slots)
        z = z.reshape(n, h_v, d)
        y = ops.silu(z, ops.rmsnorm(o, self.norm, c.rms_eps))
        return self.wout(y.reshape(n, h_v * d), prefill)
