"""gemma3 (Gemma 3): interleaved sliding-window and global attention layers.

Keys and shapes: llama.cpp src/models/gemma3.cpp (load_arch_hparams, load_arch_tensors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mtpdec.loader.config import (
    ATTENTION,
    SLIDING,
    Meta,
    TensorSpec,
    attention_specs,
    ffn_specs,
    head_specs,
    register,
    rope_freq_scale,
    vocab_size,
)
from mtpdec.loader.reader import GGUFFile


@register
@dataclass(frozen=True)
class Gemma3Config:
    """Gemma 3: sliding-window ('sliding') and global ('attention') layers.

    Without an ``attention.sliding_window_pattern`` key, layer i is global iff
    ``(i + 1) % 6 == 0``; with no sliding window every layer is global.
    """

    architecture: ClassVar[str] = "gemma3"
    n_vocab: int
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim_k: int  # attention.key_length
    head_dim_v: int  # attention.value_length
    rms_eps: float
    rope_freq_base: float  # global layers
    rope_freq_base_swa: float  # sliding layers (rope.freq_base_swa, default 10000)
    rope_freq_scale: float  # global layers: 1 / rope.scaling.factor (sliding layers: 1)
    sliding_window: int  # 0: none
    context_length: int
    final_logit_softcapping: float  # 0: none
    attn_scale: float  # query scale (llama.cpp: 1/sqrt(n_embd/n_head) for the 27B)
    tied_output: bool
    layer_kinds: tuple[str, ...]

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> Gemma3Config:
        m = Meta(f, cls.architecture)
        n_embd, n_layer = m.int("embedding_length"), m.block_count()
        n_head = m.int("attention.head_count")
        m.positive(embedding_length=n_embd, block_count=n_layer, head_count=n_head)
        n_head_kv = m.int("attention.head_count_kv", n_head)
        head_dim_k = m.int("attention.key_length", n_embd // n_head)
        head_dim_v = m.int("attention.value_length", head_dim_k)
        m.positive(head_count_kv=n_head_kv, key_length=head_dim_k, value_length=head_dim_v)
        m.multiple("attention.head_count", n_head, "attention.head_count_kv", n_head_kv)

        window = m.int("attention.sliding_window", 0)
        if window > 0:
            key = m.key("attention.sliding_window_pattern")
            if isinstance(f.get(key), np.ndarray):
                flags = m.ints("attention.sliding_window_pattern", n_layer) or ()
                sliding = [bool(x) for x in flags]
            else:
                n_pat = m.int("attention.sliding_window_pattern", 6)
                sliding = [n_pat == 0 or i % n_pat < n_pat - 1 for i in range(n_layer)]
        else:
            sliding = [False] * n_layer
        kinds = tuple(SLIDING if s else ATTENTION for s in sliding)
        scale_dim = n_embd / n_head if n_layer == 62 else head_dim_k  # 62 layers: 27B
        return cls(
            n_vocab=vocab_size(f, n_embd),
            n_embd=n_embd,
            n_ff=m.int("feed_forward_length"),
            n_layer=n_layer,
            n_head=n_head,
            n_head_kv=n_head_kv,
            head_dim_k=head_dim_k,
            head_dim_v=head_dim_v,
            rms_eps=m.positive_float("attention.layer_norm_rms_epsilon"),
            rope_freq_base=m.positive_float("rope.freq_base", 10000.0),
            rope_freq_base_swa=m.positive_float("rope.freq_base_swa", 10000.0),
            rope_freq_scale=rope_freq_scale(m),
            sliding_window=max(window, 0),
            context_length=m.int("context_length"),
            final_logit_softcapping=m.float("final_logit_softcapping", 0.0),
            attn_scale=1.0 / math.sqrt(scale_dim),
            tied_output="output.weight" not in f.tensors,
            layer_kinds=kinds,
        )

    def tensor_specs(self) -> list[TensorSpec]:
        e, hk, hv = self.n_embd, self.head_dim_k, self.head_dim_v
        specs = head_specs(self.n_vocab, e)
        for il in range(self.n_layer):
            p = f"blk.{il}"
            specs += [
                TensorSpec(f"{p}.attn_norm.weight", (e,)),
                TensorSpec(f"{p}.post_attention_norm.weight", (e,)),
                TensorSpec(f"{p}.ffn_norm.weight", (e,)),
                TensorSpec(f"{p}.post_ffw_norm.weight", (e,)),
            ]
            specs += attention_specs(
                p,
                e,
                hk * self.n_head,
                hk * self.n_head_kv,
                hv * self.n_head_kv,
                hv * self.n_head,  # attn_output reads the concatenated value heads
                hk,
            )
            specs += ffn_specs(p, e, self.n_ff)
        return specs
