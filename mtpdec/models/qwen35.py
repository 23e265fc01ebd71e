"""qwen35 forward pass: Gated-DeltaNet / gated-attention hybrid trunk and its MTP head.

Every block (trunk and MTP) is ``h += mixer(rmsnorm(h) * attn_norm)`` then
``h += ffn(rmsnorm(h) * post_attention_norm)`` with a SwiGLU FFN (qwen35.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mtpdec.cpu.backend import CPU, Ops
from mtpdec.cpu.linear import Linear, Numerics
from mtpdec.errors import MtpdecError
from mtpdec.loader.config import ATTENTION, GDN
from mtpdec.loader.qwen35 import Qwen35Config
from mtpdec.loader.reader import GGUFFile
from mtpdec.models.base import (
    DEFAULT_ACTIVATIONS,
    DEFAULT_DENSE_BUDGET,
    EmbeddingRows,
    ModelBase,
    check_position,
    check_tokens,
    register_model,
    run_in_chunks,
)
from mtpdec.models.gdn import GatedDeltaNet
from mtpdec.models.hybrid import Backends, OffloadedFeedForward
from mtpdec.models.layers import Attention, AttentionSpec, FeedForward, linear, swiglu, vector
from mtpdec.state import KVCache, ModelState, RecurrentState
from mtpdec.tensor import Tensor

F32 = np.float32


def attention_spec(cfg: Qwen35Config) -> AttentionSpec:
    return AttentionSpec(
        n_head=cfg.n_head,
        n_kv=cfg.n_head_kv,
        head_dim=cfg.head_dim,
        n_rot=cfg.n_rot,
        rope_base=cfg.rope_freq_base,
        rope_scale=cfg.rope_freq_scale,
        eps=cfg.rms_eps,
        gated=True,
        kq_scale=1.0 / float(np.sqrt(cfg.head_dim)),
    )


class Block:
    """One trunk or MTP block: a mixer (GatedDeltaNet or Attention) and a SwiGLU FFN; norms
    and the mixer on ``ops``, the FFN given (on ``ops`` or offloaded to the host)."""

    def __init__(
        self,
        f: GGUFFile,
        prefix: str,
        mixer: Attention | GatedDeltaNet,
        ffn: FeedForward | OffloadedFeedForward,
        ops: Ops = CPU,
    ):
        self.ops = ops
        self.attn_norm = ops.upload(vector(f, f"{prefix}.attn_norm.weight"))
        self.post_norm = ops.upload(vector(f, f"{prefix}.post_attention_norm.weight"))
        self.mixer = mixer
        self.ffn = ffn

    def linears(self) -> list[Linear]:
        return self.mixer.linears() + self.ffn.linears()

    def __call__(
        self,
        h: Any,
        pos: np.ndarray,
        layer_state: KVCache | RecurrentState,
        eps: float,
        prefill: bool = False,
        snapshots: bool = False,
    ) -> Any:
        x = self.ops.rmsnorm(h, self.attn_norm, eps)
        if isinstance(self.mixer, Attention):
            assert isinstance(layer_state, KVCache)
            h = h + self.mixer(x, pos, layer_state, prefill)
        else:
            assert isinstance(layer_state, RecurrentState)
            h = h + self.mixer(x, layer_state, prefill, snapshots)
        return h + self.ffn(self.ops.rmsnorm(h, self.post_norm, eps), prefill)


class MtpHead:
    """The NextN block ``blk.{n_trunk}`` (qwen35.md "MTP head"), on the trunk's backend."""

    def __init__(
        self,
        f: GGUFFile,
        cfg: Qwen35Config,
        numerics: Numerics,
        output: Any,
        embed: EmbeddingRows,
        ops: Ops = CPU,
    ):
        """output, embed: the trunk's LM head and embedding rows, used unless the block
        has its own (``shared_head_head``, ``embed_tokens``)."""
        p = f"blk.{cfg.n_trunk}"
        n = f"{p}.nextn"
        self.eh_proj = linear(f, f"{n}.eh_proj.weight", numerics, ops)
        self.enorm = ops.upload(vector(f, f"{n}.enorm.weight"))
        self.hnorm = ops.upload(vector(f, f"{n}.hnorm.weight"))
        own_embd = f.tensors.get(f"{n}.embed_tokens.weight")
        self.embed = EmbeddingRows(own_embd) if own_embd is not None else embed
        norm = f"{n}.shared_head_norm.weight"
        self.head_norm = ops.upload(vector(f, norm if norm in f.tensors else "output_norm.weight"))
        own_head = f.tensors.get(f"{n}.shared_head_head.weight")
        self.head = (
            ops.linear(own_head, numerics.kernels_only()) if own_head is not None else output
        )
        attention = Attention(f, p, attention_spec(cfg), numerics, ops)
        self.block = Block(f, p, attention, FeedForward(f, p, swiglu, numerics, ops), ops)

    def linears(self) -> list[Linear]:
        return [self.eh_proj] + self.block.linears()


@register_model("qwen35")
class Qwen35Model(ModelBase):
    """qwen35 on the CPU; see ``mtpdec.models.base.Model`` for the forward contract."""

    def __init__(
        self,
        f: GGUFFile,
        dense_budget_bytes: int = DEFAULT_DENSE_BUDGET,
        activations: str = DEFAULT_ACTIVATIONS,
        backends: Backends | None = None,
        on_layer: Callable[[int, int], None] | None = None,
    ) -> None:
        """backends: where the trunk and each FFN run (default: all on the CPU); the
        trunk's matrices take ``activations`` unless its backend fixes one (the GPU's
        "f32"), host-run FFNs always take ``activations``. on_layer(i, n): called after
        trunk layer i of n is built (weights uploaded), for a progress bar."""
        cfg = f.config
        assert isinstance(cfg, Qwen35Config)
        self.backends = backends = Backends() if backends is None else backends
        trunk = self.ops = backends.trunk
        self._load_common(f, dense_budget_bytes, activations, trunk)
        on_trunk = self.numerics.on(trunk.fixed_activations)
        self.blocks: list[Block] = []
        for il in range(cfg.n_trunk):
            p = f"blk.{il}"
            kind = cfg.layer_kinds[il]
            mixer: Attention | GatedDeltaNet
            if kind == GDN:
                mixer = GatedDeltaNet(f, p, cfg, on_trunk, trunk)
            elif kind == ATTENTION:
                mixer = Attention(f, p, attention_spec(cfg), on_trunk, trunk)
            else:
                raise MtpdecError(f"{f.path}: unexpected qwen35 trunk layer kind {kind!r}")
            ffn: FeedForward | OffloadedFeedForward
            if il in backends.host_ffn:
                host_ffn = FeedForward(f, p, swiglu, self.numerics, backends.host)
                ffn = OffloadedFeedForward(host_ffn, backends)
            else:
                ffn = FeedForward(f, p, swiglu, on_trunk, trunk)
            self.blocks.append(Block(f, p, mixer, ffn, trunk))
            if on_layer is not None:
                on_layer(il, cfg.n_trunk)
        self.mtp = MtpHead(f, cfg, on_trunk, self.head, self.embed, trunk) if cfg.n_mtp else None
        self._mtp_heads: dict[int, Any] = {}  # reduced draft heads by vocabulary size
        self._fit_dense_budget()

    def linears(self) -> list[Linear]:
        lins = [lin for b in self.blocks for lin in b.linears()]
        return lins + (self.mtp.linears() if self.mtp is not None else [])

    def _warm_extra(self) -> None:
        from mtpdec.cpu.matvec import FLOAT_WIDTHS, INT_WIDTHS

        if self.mtp is not None:
            widths = INT_WIDTHS if self.activations == "q8" else FLOAT_WIDTHS
            state = self.new_state(sum(widths))
            for n in widths:
                hidden = np.zeros((n, self.config.n_embd), dtype=F32)
                self.mtp_forward(np.zeros(n, dtype=np.int32), hidden, state.mtp_length, state)

    def new_state(self, n_ctx: int, snapshot_slots: int = 0) -> ModelState:
        c = self.config
        layers: list[KVCache | RecurrentState] = []
        for b in self.blocks:
            if isinstance(b.mixer, GatedDeltaNet):
                layers.append(b.mixer.new_state(snapshot_slots))
            else:
                layers.append(KVCache(c.n_head_kv, n_ctx, c.head_dim, c.head_dim, self.ops))
        mtp = KVCache(c.n_head_kv, n_ctx, c.head_dim, c.head_dim, self.ops) if self.mtp else None
        return ModelState(n_ctx=n_ctx, layers=layers, mtp=mtp)

    def hidden(
        self,
        tokens: np.ndarray,
        start_pos: int,
        state: ModelState,
        prefill: bool = False,
        snapshots: bool = False,
    ) -> np.ndarray:
        """The trunk's final-normed hidden ``hn`` float32 (k, n_embd) of each token, a host
        array; ``prefill`` and ``snapshots`` as in ``forward``."""
        return self.ops.to_host(self._trunk_rows(tokens, start_pos, state, prefill, snapshots))

    def _trunk_rows(
        self,
        tokens: np.ndarray,
        start_pos: int,
        state: ModelState,
        prefill: bool = False,
        snapshots: bool = False,
    ) -> Any:
        """``hidden``'s rows, arrays of the backend (no round trip to the host)."""
        tokens = check_tokens(tokens, self.n_vocab)
        check_position(start_pos, len(tokens), state)
        eps, ops = self.config.rms_eps, self.ops

        def trunk(part: np.ndarray, pos: np.ndarray) -> Any:
            h = ops.upload(self.embed.rows(part))
            for block, layer_state in zip(self.blocks, state.layers):
                h = block(h, pos, layer_state, eps, prefill, snapshots)
            return ops.rmsnorm(h, self.output_norm, eps)

        return run_in_chunks(tokens, start_pos, state, trunk, ops.xp)

    def logits(self, hn: np.ndarray) -> np.ndarray:
        """LM head: float32 (k, n_embd) -> (k, n_vocab), host arrays."""
        return self.ops.to_host(self.head(self.ops.upload(hn)))

    def head_picks(self, hn: np.ndarray) -> np.ndarray:
        """int32 (k,): the argmax of each row of ``logits(hn)``, found on the backend."""
        return self.ops.argmax_rows(self.head(self.ops.upload(hn)))

    def forward_picks(
        self, tokens: np.ndarray, start_pos: int, state: ModelState, snapshots: bool = False
    ) -> np.ndarray:
        hn = self._trunk_rows(tokens, start_pos, state, snapshots=snapshots)
        return self.ops.argmax_rows(self.head(hn))

    def forward(
        self,
        tokens: np.ndarray,
        start_pos: int,
        state: ModelState,
        last_only: bool = False,
        prefill: bool = False,
        snapshots: bool = False,
    ) -> np.ndarray:
        hn = self._trunk_rows(tokens, start_pos, state, prefill, snapshots)
        return self.ops.to_host(self.head(hn[-1:] if last_only else hn))

    def mtp_forward(
        self,
        tokens: np.ndarray,
        hidden: np.ndarray,
        start_pos: int,
        state: ModelState,
        last_only: bool = False,
        vocab: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draft logits from the MTP head, and its own output hidden for chaining.

        tokens: int32 (k,) at positions start_pos..start_pos+k-1; hidden: float32
        (k, n_embd), row i the hidden of position start_pos+i-1 (the trunk's ``hn``, or
        the MTP head's own ``hm`` when chaining). The head's cache position of a pair is
        its token's position, as llama.cpp's draft-mtp batches it; position 0 has no
        previous hidden, so callers pass zeros there. The head's KV cache is written at
        those positions; entries from start_pos+k on are dropped. start_pos may rewind
        (rebuild after acceptance) but not skip: start_pos <= state.mtp_length.
        Returns (logits float32 (k, n_vocab), hm float32 (k, n_embd)); with ``last_only``
        the last row of each (a draft after rebuilding the cache entries before it);
        with ``vocab`` the logits of token ids 0..vocab-1 only (a drafter's reduced head:
        ``mtp_head(vocab)``).
        """
        x = self._mtp_rows(tokens, hidden, start_pos, state)
        eps, ops, mtp = self.config.rms_eps, self.ops, self.mtp
        assert mtp is not None
        hm = ops.rmsnorm(x[-1:] if last_only else x, mtp.head_norm, eps)
        return ops.to_host(self.mtp_head(vocab)(hm)), ops.to_host(hm)

    def mtp_fill(
        self, tokens: np.ndarray, hidden: np.ndarray, start_pos: int, state: ModelState
    ) -> None:
        """Write the MTP head's cache entries of a prompt's pairs (``mtp_forward``'s
        arguments and position rule) and nothing else: no head, no logits; the rows go
        through the block as a prompt does (``prefill``: dense products for long ones)."""
        self._mtp_rows(tokens, hidden, start_pos, state, prefill=True)

    def _mtp_rows(
        self,
        tokens: np.ndarray,
        hidden: np.ndarray,
        start_pos: int,
        state: ModelState,
        prefill: bool = False,
    ) -> Any:
        """The MTP block's output rows (backend arrays), after writing its cache entries
        at start_pos.. (``mtp_forward``'s checks and position rule)."""
        mtp = self.mtp
        if mtp is None or state.mtp is None:
            raise MtpdecError(f"{self.file.path}: the model has no MTP head")
        tokens = check_tokens(tokens, self.n_vocab)
        n = len(tokens)
        if not 0 <= start_pos <= state.mtp_length or start_pos + n > state.n_ctx:
            raise MtpdecError(
                f"MTP start_pos {start_pos} must be within 0..{state.mtp_length} and the "
                f"{n} tokens within the context of {state.n_ctx}"
            )
        if hidden.shape != (n, self.config.n_embd):
            raise MtpdecError(f"MTP hidden must have shape {(n, self.config.n_embd)}")
        eps, ops = self.config.rms_eps, self.ops
        e = ops.rmsnorm(ops.upload(mtp.embed.rows(tokens)), mtp.enorm, eps)
        h = ops.rmsnorm(ops.upload(np.asarray(hidden, dtype=F32)), mtp.hnorm, eps)
        x = mtp.eh_proj(ops.xp.concatenate([e, h], axis=1), prefill)  # embedding first
        pos = np.arange(start_pos, start_pos + n)
        state.mtp_length = start_pos  # entries from here on are being rewritten
        x = mtp.block(x, pos, state.mtp, eps, prefill)
        state.mtp_length = start_pos + n
        return x

    def mtp_head(self, vocab: int | None = None) -> Any:
        """The MTP head's output matrix, or its first ``vocab`` rows (token ids
        0..vocab-1: in BPE vocabularies the earliest merges, the most frequent tokens),
        built once per size."""
        assert self.mtp is not None
        if vocab is None or vocab >= self.n_vocab:
            return self.mtp.head
        if vocab < 1:
            raise MtpdecError(f"--draft-vocab must be >= 1, got {vocab}")
        heads = self._mtp_heads
        if vocab not in heads:
            w = self.mtp.head.w
            part = Tensor(f"{w.name}[:{vocab}]", w.ggml_type, (vocab, w.cols), w.raw[:vocab])
            # rows of a tied embedding table, which the lookup still reads from the file
            keep = self.mtp.head is self.head and "output.weight" not in self.file.tensors
            numerics = self.numerics.kernels_only().on(self.ops.fixed_activations)
            heads[vocab] = self.ops.linear(part, numerics, keep_file_pages=keep)
        return heads[vocab]
