"""The qwen35 MTP head against a float64 numpy reference written from docs/qwen35.md.

Weights come from gguf's own reader and dequantizer, so the reference shares no code
with mtpdec: concat order (embedding first), enorm/hnorm, eh_proj, the gated attention
block with its own KV cache, the SwiGLU FFN, shared_head_norm and the LM head.
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from mtpdec.models import load_model
from mtpdec.synth import SynthOverrides, write_synth

N = 7  # MTP positions fed


@pytest.fixture(scope="module")
def synth_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("mtp") / "tiny.gguf"
    # H_k < H_v and GQA, so head mapping mistakes show
    overrides = SynthOverrides(layers=4, ssm_groups=2, ssm_heads=4)
    write_synth(out, "qwen35-tiny", seed=5, overrides=overrides, force=False, report=lambda _: None)
    return out


class Reference:
    """float64 MTP head from the document; ``step`` feeds one (token, hidden) pair."""

    def __init__(self, path, swap_concat: bool = False) -> None:
        r = gguf.GGUFReader(path)
        self.w = {
            t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
            for t in r.tensors
        }

        def meta(key):
            f = r.fields[f"qwen35.{key}"]
            return f.parts[f.data[0]][0].item()

        self.n_trunk = meta("block_count") - meta("nextn_predict_layers")
        self.eps = meta("attention.layer_norm_rms_epsilon")
        self.n_head, self.n_kv = meta("attention.head_count"), meta("attention.head_count_kv")
        self.hd, self.n_rot = meta("attention.key_length"), meta("rope.dimension_count")
        self.base = meta("rope.freq_base")
        self.swap = swap_concat
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []

    def t(self, name: str) -> np.ndarray:
        return self.w[f"blk.{self.n_trunk}.{name}"]

    def rms(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x: np.ndarray, pos: int) -> np.ndarray:
        half = self.n_rot // 2
        theta = pos * self.base ** (-2.0 * np.arange(half) / self.n_rot)
        c, s = np.cos(theta), np.sin(theta)
        out = x.copy()
        x0, x1 = x[:, :half], x[:, half : 2 * half]
        out[:, :half], out[:, half : 2 * half] = x0 * c - x1 * s, x0 * s + x1 * c
        return out

    def step(self, token: int, hidden: np.ndarray, pos: int) -> tuple[np.ndarray, np.ndarray]:
        embd = self.w.get(
            f"blk.{self.n_trunk}.nextn.embed_tokens.weight", self.w["token_embd.weight"]
        )
        e = self.rms(embd[token], self.t("nextn.enorm.weight"))
        h = self.rms(hidden.astype(np.float64), self.t("nextn.hnorm.weight"))
        x = self.t("nextn.eh_proj.weight") @ np.concatenate([h, e] if self.swap else [e, h])
        xn = self.rms(x, self.t("attn_norm.weight"))
        qg = (self.t("attn_q.weight") @ xn).reshape(self.n_head, 2 * self.hd)
        q, gate = qg[:, : self.hd], qg[:, self.hd :].reshape(-1)
        q = self.rope(self.rms(q, self.t("attn_q_norm.weight")), pos)
        k = (self.t("attn_k.weight") @ xn).reshape(self.n_kv, self.hd)
        k = self.rope(self.rms(k, self.t("attn_k_norm.weight")), pos)
        v = (self.t("attn_v.weight") @ xn).reshape(self.n_kv, self.hd)
        del self.keys[pos:], self.values[pos:]
        self.keys.append(k)
        self.values.append(v)
        keys, values = np.stack(self.keys), np.stack(self.values)  # (L, n_kv, hd)
        group = self.n_head // self.n_kv
        att = np.empty((self.n_head, self.hd))
        for head in range(self.n_head):
            kv = head // group
            scores = keys[:, kv] @ q[head] / np.sqrt(self.hd)
            p = np.exp(scores - scores.max())
            att[head] = (p / p.sum()) @ values[:, kv]
        gated = att.reshape(-1) / (1 + np.exp(-gate))
        x = x + self.t("attn_output.weight") @ gated
        xn = self.rms(x, self.t("post_attention_norm.weight"))
        g, u = self.t("ffn_gate.weight") @ xn, self.t("ffn_up.weight") @ xn
        x = x + self.t("ffn_down.weight") @ (g / (1 + np.exp(-g)) * u)
        norm = self.w.get(
            f"blk.{self.n_trunk}.nextn.shared_head_norm.weight", self.w["output_norm.weight"]
        )
        hm = self.rms(x, norm)
        head_w = self.w.get(
            f"blk.{self.n_trunk}.nextn.shared_head_head.weight",
            self.w.get("output.weight", self.w["token_embd.weight"]),
        )
        return head_w @ hm, hm


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def _inputs(model):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, model.n_vocab, N).astype(np.int32)
    hidden = rng.standard_normal((N, model.config.n_embd)).astype(np.float32)
    return ids, hidden


def test_mtp_head_matches_numpy_reference(synth_file):
    model = load_model(synth_file)
    ids, hidden = _inputs(model)
    ref = Reference(synth_file)
    want = [ref.step(int(ids[p]), hidden[p], p) for p in range(N)]
    state = model.new_state(16)
    logits, hm = model.mtp_forward(ids[:3], hidden[:3], 0, state)
    more = model.mtp_forward(ids[3:], hidden[3:], 3, state)
    logits, hm = np.concatenate([logits, more[0]]), np.concatenate([hm, more[1]])
    for p in range(N):
        assert _rel(logits[p], want[p][0]) < 1e-5, p
        assert _rel(hm[p], want[p][1]) < 1e-5, p


def test_concat_order_matters(synth_file):
    """The reference with hidden first disagrees: the comparison above can fail."""
    model = load_model(synth_file)
    ids, hidden = _inputs(model)
    swapped = Reference(synth_file, swap_concat=True).step(int(ids[0]), hidden[0], 0)[0]
    logits, _ = model.mtp_forward(ids[:1], hidden[:1], 0, model.new_state(4))
    assert _rel(logits[0], swapped) > 1e-2


def test_rebuilding_mtp_cache_entries_replaces_them(synth_file):
    """Rewinding start_pos overwrites the head's KV entries from there on (the decoder
    rebuilds accepted positions from trunk hiddens)."""
    model = load_model(synth_file)
    ids, hidden = _inputs(model)
    ref = Reference(synth_file)
    for p in range(4):
        ref.step(int(ids[p]), hidden[p], p)
    state = model.new_state(16)
    model.mtp_forward(ids[:4], hidden[:4], 0, state)
    other = hidden[::-1].copy()
    logits, _ = model.mtp_forward(ids[2:5], other[2:5], 2, state)
    assert state.mtp_length == 5
    want = [ref.step(int(ids[p]), other[p], p)[0] for p in (2, 3, 4)]
    for row, w in zip(logits, want):
        assert _rel(row, w) < 1e-5
