"""Gemma 3 forward pass (llama.cpp src/models/gemma3.cpp).

Per layer: ``h += post_attention_norm(attn(attn_norm(h)))``, then
``h += post_ffw_norm(ffn(ffn_norm(h)))`` with a GeGLU FFN. Embeddings are scaled by
sqrt(n_embd); sliding layers attend to the last ``sliding_window`` positions with their
own rotary base; queries are scaled by ``attn_scale`` before q.k; the LM head is tied
to ``token_embd`` unless the file has ``output.weight``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from mtpdec.cpu.backend import CPU, Ops
from mtpdec.cpu.linear import Linear, Numerics
from mtpdec.loader.config import SLIDING
from mtpdec.loader.gemma3 import Gemma3Config
from mtpdec.loader.reader import GGUFFile
from mtpdec.models.base import (
    DEFAULT_ACTIVATIONS,
    DEFAULT_DENSE_BUDGET,
    ModelBase,
    check_position,
    check_tokens,
    register_model,
    run_in_chunks,
)
from mtpdec.models.hybrid import Backends
from mtpdec.models.layers import Attention, AttentionSpec, FeedForward, vector
from mtpdec.state import KVCache, ModelState

F32 = np.float32


def geglu(ops: Ops, gate: Any, up: Any) -> Any:
    """gelu(gate) * up (Gemma's FFN activation)."""
    return ops.gelu(gate, up)


class Gemma3Layer:
    """One layer on the backend ``ops``."""

    def __init__(
        self, f: GGUFFile, il: int, spec: AttentionSpec, numerics: Numerics, ops: Ops = CPU
    ) -> None:
        p = f"blk.{il}"
        self.ops, self.window = ops, spec.window
        self.attn_norm = ops.upload(vector(f, f"{p}.attn_norm.weight"))
        self.post_attn_norm = ops.upload(vector(f, f"{p}.post_attention_norm.weight"))
        self.ffn_norm = ops.upload(vector(f, f"{p}.ffn_norm.weight"))
        self.post_ffn_norm = ops.upload(vector(f, f"{p}.post_ffw_norm.weight"))
        self.attn = Attention(f, p, spec, numerics, ops)
        self.ffn = FeedForward(f, p, geglu, numerics, ops)

    def __call__(
        self, h: Any, pos: np.ndarray, cache: KVCache, eps: float, prefill: bool = False
    ) -> Any:
        norm = self.ops.rmsnorm
        a = self.attn(norm(h, self.attn_norm, eps), pos, cache, prefill)
        h = h + norm(a, self.post_attn_norm, eps)
        m = self.ffn(norm(h, self.ffn_norm, eps), prefill)
        return h + norm(m, self.post_ffn_norm, eps)


@register_model("gemma3")
class Gemma3Model(ModelBase):
    """Gemma 3 on one backend (the CPU, or all on a GPU: ``backends.trunk``; no FFN is
    offloaded); see ``mtpdec.models.base.Model`` for the contract."""

    def __init__(
        self,
        f: GGUFFile,
        dense_budget_bytes: int = DEFAULT_DENSE_BUDGET,
        activations: str = DEFAULT_ACTIVATIONS,
        backends: Backends | None = None,
        on_layer: Callable[[int, int], None] | None = None,
    ) -> None:
        cfg = f.config
        assert isinstance(cfg, Gemma3Config)
        self.backends = backends = Backends() if backends is None else backends
        assert not backends.host_ffn, "gemma3 runs on one backend"
        ops = self.ops = backends.trunk
        self._load_common(f, dense_budget_bytes, activations, ops)
        numerics = self.numerics.on(ops.fixed_activations)
        self.embd_scale = F32(math.sqrt(cfg.n_embd))
        self.layers = []
        for il, kind in enumerate(cfg.layer_kinds):
            sliding = kind == SLIDING
            spec = AttentionSpec(
                n_head=cfg.n_head,
                n_kv=cfg.n_head_kv,
                head_dim=cfg.head_dim_k,
                n_rot=cfg.head_dim_k,
                rope_base=cfg.rope_freq_base_swa if sliding else cfg.rope_freq_base,
                rope_scale=1.0 if sliding else cfg.rope_freq_scale,
                eps=cfg.rms_eps,
                q_scale=cfg.attn_scale,
                window=cfg.sliding_window if sliding else 0,
            )
            self.layers.append(Gemma3Layer(f, il, spec, numerics, ops))
            if on_layer is not None:
                on_layer(il, len(cfg.layer_kinds))
        self._fit_dense_budget()

    def linears(self) -> list[Linear]:
        return [lin for layer in self.layers for lin in layer.attn.linears() + layer.ffn.linears()]

    def new_state(self, n_ctx: int, snapshot_slots: int = 0) -> ModelState:
        """KV caches for n_ctx positions (attention rolls back by position: no slots)."""
        c = self.config
        caches = [
            KVCache(c.n_head_kv, n_ctx, c.head_dim_k, c.head_dim_v, self.ops) for _ in self.layers
        ]
        return ModelState(n_ctx=n_ctx, layers=caches)

    def forward(
        self,
        tokens: np.ndarray,
        start_pos: int,
        state: ModelState,
        last_only: bool = False,
        prefill: bool = False,
        snapshots: bool = False,
    ) -> np.ndarray:
        return self.ops.to_host(self._logits(tokens, start_pos, state, last_only, prefill))

    def forward_picks(
        self, tokens: np.ndarray, start_pos: int, state: ModelState, snapshots: bool = False
    ) -> np.ndarray:
        return self.ops.argmax_rows(self._logits(tokens, start_pos, state))

    def _logits(
        self,
        tokens: np.ndarray,
        start_pos: int,
        state: ModelState,
        last_only: bool = False,
        prefill: bool = False,
    ) -> Any:
        """``forward``'s logits rows, arrays of the backend."""
        tokens = check_tokens(tokens, self.n_vocab)
        check_position(start_pos, len(tokens), state)
        eps, ops = self.config.rms_eps, self.ops

        def trunk(part: np.ndarray, pos: np.ndarray) -> Any:
            h = ops.upload(self.embed.rows(part) * self.embd_scale)
            for layer, cache in zip(self.layers, state.layers):
                h = layer(h, pos, cache, eps, prefill)
            return h[-1:] if last_only else h

        h = run_in_chunks(tokens, start_pos, state, trunk, ops.xp)
        logits = self.head(ops.rmsnorm(h[-1:] if last_only else h, self.output_norm, eps))
        cap = self.config.final_logit_softcapping
        if cap:
            logits = (ops.xp.tanh(logits / F32(cap)) * F32(cap)).astype(F32)
        return logits
