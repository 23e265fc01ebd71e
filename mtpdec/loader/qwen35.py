"""qwen35 (Qwen3.5/3.6 dense): Gated-DeltaNet / attention hybrid with an MTP head.

Keys and shapes: llama.cpp src/models/qwen35.cpp (load_arch_hparams, load_arch_tensors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mtpdec.loader.config import (
    ATTENTION,
    GDN,
    MTP,
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
class Qwen35Config:
    """Qwen3.5/3.6 dense GDN hybrid with an MTP head (docs/qwen35.md).

    ``layer_kinds[i]`` for i < n_layer: 'gdn' or 'attention' for the n_trunk trunk
    layers, 'mtp' for the last n_mtp blocks.
    """

    architecture: ClassVar[str] = "qwen35"
    n_vocab: int
    n_embd: int
    n_ff: int
    n_layer: int  # block_count: trunk + MTP blocks
    n_trunk: int
    n_mtp: int
    n_head: int
    n_head_kv: int
    head_dim: int  # attention.key_length (== value_length)
    n_rot: int  # rope.dimension_count (partial rotary)
    rope_freq_base: float
    rope_freq_scale: float  # 1 / rope.scaling.factor
    rope_sections: tuple[int, ...]
    rms_eps: float
    context_length: int
    full_attention_interval: int
    ssm_conv_kernel: int  # K
    ssm_state_size: int  # d, GDN head dim
    ssm_group_count: int  # H_k, key heads
    ssm_time_step_rank: int  # H_v, value heads
    ssm_inner_size: int  # H_v * d
    tied_output: bool  # no output.weight: token_embd is the LM head
    layer_kinds: tuple[str, ...]

    @property
    def key_dim(self) -> int:
        return self.ssm_state_size * self.ssm_group_count

    @property
    def value_dim(self) -> int:
        return self.ssm_state_size * self.ssm_time_step_rank

    @property
    def conv_dim(self) -> int:
        return 2 * self.key_dim + self.value_dim

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> Qwen35Config:
        m = Meta(f, cls.architecture)
        n_embd = m.int("embedding_length")
        n_layer = m.block_count()
        n_mtp = m.int("nextn_predict_layers", 0)
        n_head = m.int("attention.head_count")
        head_dim = m.int("attention.key_length", n_embd // max(n_head, 1))
        value_len = m.int("attention.value_length", head_dim)
        h_k, h_v = m.int("ssm.group_count"), m.int("ssm.time_step_rank")
        d, inner = m.int("ssm.state_size"), m.int("ssm.inner_size")
        m.positive(
            embedding_length=n_embd,
            block_count=n_layer,
            head_count=n_head,
            key_length=head_dim,
            group_count=h_k,
            time_step_rank=h_v,
            state_size=d,
        )
        if not 0 <= n_mtp < n_layer:
            raise m.fail(f"nextn_predict_layers {n_mtp} must be below block_count {n_layer}")
        if value_len != head_dim:
            raise m.fail(f"attention.value_length {value_len} != key_length {head_dim}")
        n_head_kv = m.int("attention.head_count_kv", n_head)
        m.positive(head_count_kv=n_head_kv)
        m.multiple("attention.head_count", n_head, "attention.head_count_kv", n_head_kv)
        m.multiple("ssm.time_step_rank", h_v, "ssm.group_count", h_k)
        if inner != h_v * d:
            raise m.fail(f"ssm.inner_size {inner} != time_step_rank * state_size {h_v * d}")
        n_rot = m.int("rope.dimension_count", head_dim)
        if n_rot <= 0 or n_rot > head_dim or n_rot % 2:
            raise m.fail(f"rope.dimension_count {n_rot} must be even and in 1..{head_dim}")

        n_trunk = n_layer - n_mtp
        interval = m.int("full_attention_interval", 4)
        m.positive(full_attention_interval=interval)
        recurrent = m.ints("attention.recurrent_layers", n_layer, None)
        if recurrent is None:
            recurrent = tuple(int((i + 1) % interval != 0) for i in range(n_layer))
        kinds = tuple(
            MTP if i >= n_trunk else GDN if recurrent[i] else ATTENTION for i in range(n_layer)
        )
        return cls(
            n_vocab=vocab_size(f, n_embd),
            n_embd=n_embd,
            n_ff=m.int("feed_forward_length"),
            n_layer=n_layer,
            n_trunk=n_trunk,
            n_mtp=n_mtp,
            n_head=n_head,
            n_head_kv=n_head_kv,
            head_dim=head_dim,
            n_rot=n_rot,
            rope_freq_base=m.positive_float("rope.freq_base", 10000.0),
            rope_freq_scale=rope_freq_scale(m),
            rope_sections=m.ints("rope.dimension_sections", 4) or (),
            rms_eps=m.positive_float("attention.layer_norm_rms_epsilon"),
            context_length=m.int("context_length"),
            full_attention_interval=interval,
            ssm_conv_kernel=m.int("ssm.conv_kernel"),
            ssm_state_size=d,
            ssm_group_count=h_k,
            ssm_time_step_rank=h_v,
            ssm_inner_size=inner,
            tied_output="output.weight" not in f.tensors,
            layer_kinds=kinds,
        )

    def tensor_specs(self) -> list[TensorSpec]:
        e, hd = self.n_embd, self.head_dim
        specs = head_specs(self.n_vocab, e)
        for il, kind in enumerate(self.layer_kinds):
            p = f"blk.{il}"
            specs += [
                TensorSpec(f"{p}.attn_norm.weight", (e,)),
                TensorSpec(f"{p}.post_attention_norm.weight", (e,)),
            ]
            if kind == GDN:
                h_v = self.ssm_time_step_rank
                specs += [
                    TensorSpec(f"{p}.attn_qkv.weight", (self.conv_dim, e)),
                    TensorSpec(f"{p}.attn_gate.weight", (self.value_dim, e)),
                    TensorSpec(f"{p}.ssm_conv1d.weight", (self.conv_dim, self.ssm_conv_kernel)),
                    TensorSpec(f"{p}.ssm_dt.bias", (h_v,)),
                    TensorSpec(f"{p}.ssm_a", (h_v,)),
                    TensorSpec(f"{p}.ssm_beta.weight", (h_v, e)),
                    TensorSpec(f"{p}.ssm_alpha.weight", (h_v, e)),
                    TensorSpec(f"{p}.ssm_norm.weight", (self.ssm_state_size,)),
                    TensorSpec(f"{p}.ssm_out.weight", (e, self.value_dim)),
                ]
            else:  # trunk attention and the MTP block share the attention layout
                q_rows, kv_rows = 2 * hd * self.n_head, hd * self.n_head_kv
                specs += attention_specs(p, e, q_rows, kv_rows, kv_rows, hd * self.n_head, hd)
            specs += ffn_specs(p, e, self.n_ff)
            if kind == MTP:
                n = f"{p}.nextn"
                specs += [
                    TensorSpec(f"{n}.eh_proj.weight", (e, 2 * e)),
                    TensorSpec(f"{n}.enorm.weight", (e,)),
                    TensorSpec(f"{n}.hnorm.weight", (e,)),
                    TensorSpec(f"{n}.embed_tokens.weight", (self.n_vocab, e), required=False),
                    TensorSpec(f"{n}.shared_head_head.weight", (self.n_vocab, e), required=False),
                    TensorSpec(f"{n}.shared_head_norm.weight", (e,), required=False),
                ]
        return specs
