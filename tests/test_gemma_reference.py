"""Gemma-3-270M against a float64 numpy forward pass written from the model's math.

Weights come from gguf's own reader and dequantizer (the ``gemma_ref`` fixture), so the
reference shares no code with mtpdec. It pins down the exact math (embedding scale,
per-head q/k norms, NEOX rotary with per-layer bases, sliding window, query scale,
pre/post norms, GeGLU with the tanh GELU, tied head) far more tightly than llama.cpp
can, whose own activation rounding moves logits by more than that (test_parity.py).
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from mtpdec.models import load_model
from tests.ggufs import gemma3_tiny, write_gguf

TOKENS = [2, 818, 3823, 8864, 37423, 506, 1024]  # BOS + arbitrary ids


def _reference_logits(reader: gguf.GGUFReader, cfg, tokens: list[int]) -> np.ndarray:
    tensors = {t.name: t for t in reader.tensors}

    def w(name: str) -> np.ndarray:
        t = tensors[name]
        return gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)

    def rms(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + cfg.rms_eps) * weight

    def rope(x: np.ndarray, base: float, scale: float) -> np.ndarray:  # x (n, heads, hd)
        hd = x.shape[-1]
        half = hd // 2
        theta = scale * np.arange(len(tokens))[:, None] * base ** (-2.0 * np.arange(half) / hd)
        c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
        x0, x1 = x[..., :half], x[..., half:]
        return np.concatenate([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1)

    def gelu(x: np.ndarray) -> np.ndarray:
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))

    n, hd = len(tokens), cfg.head_dim_k
    embd = tensors["token_embd.weight"]
    rows = gguf.quants.dequantize(embd.data[tokens], embd.tensor_type).astype(np.float64)
    h = rows * np.sqrt(cfg.n_embd)
    causal = np.tril(np.ones((n, n), dtype=bool))
    for il, kind in enumerate(cfg.layer_kinds):
        p = f"blk.{il}"
        x = rms(h, w(f"{p}.attn_norm.weight"))
        q = rms((x @ w(f"{p}.attn_q.weight").T).reshape(n, -1, hd), w(f"{p}.attn_q_norm.weight"))
        k = rms((x @ w(f"{p}.attn_k.weight").T).reshape(n, -1, hd), w(f"{p}.attn_k_norm.weight"))
        v = (x @ w(f"{p}.attn_v.weight").T).reshape(n, -1, hd)
        sliding = kind == "sliding"
        base = cfg.rope_freq_base_swa if sliding else cfg.rope_freq_base
        scale = 1.0 if sliding else cfg.rope_freq_scale  # linear scaling: global layers
        q, k = rope(q, base, scale) * cfg.attn_scale, rope(k, base, scale)
        group = q.shape[1] // k.shape[1]
        out = np.empty_like(q)
        mask = causal & (np.subtract.outer(np.arange(n), np.arange(n)) < cfg.sliding_window)
        if not sliding:
            mask = causal
        for head in range(q.shape[1]):
            scores = q[:, head] @ k[:, head // group].T
            scores = np.where(mask, scores, -np.inf)
            probs = np.exp(scores - scores.max(axis=1, keepdims=True))
            out[:, head] = (probs / probs.sum(axis=1, keepdims=True)) @ v[:, head // group]
        a = out.reshape(n, -1) @ w(f"{p}.attn_output.weight").T
        h = h + rms(a, w(f"{p}.post_attention_norm.weight"))
        x = rms(h, w(f"{p}.ffn_norm.weight"))
        ff = gelu(x @ w(f"{p}.ffn_gate.weight").T) * (x @ w(f"{p}.ffn_up.weight").T)
        h = h + rms(ff @ w(f"{p}.ffn_down.weight").T, w(f"{p}.post_ffw_norm.weight"))
    hn = rms(h, w("output_norm.weight"))
    head = gguf.quants.dequantize(embd.data, embd.tensor_type)  # float32 (vocab, n_embd)
    return np.stack([head @ row.astype(np.float32) for row in hn]).astype(np.float64)


def _compare(got: np.ndarray, want: np.ndarray) -> None:
    for pos, (g, r) in enumerate(zip(got, want)):
        corr = np.corrcoef(g, r)[0, 1]
        rel = np.abs(g - r).max() / np.abs(r).max()
        assert corr > 0.99999 and rel < 1e-4, f"position {pos}: corr {corr}, rel {rel}"
    assert (got.argmax(1) == want.argmax(1)).all()


@pytest.mark.model
@pytest.mark.slow
def test_gemma_forward_matches_float64_reference(gemma_path, gemma_ref):
    model = load_model(gemma_path)
    want = _reference_logits(gemma_ref, model.config, TOKENS)
    state = model.new_state(16)
    got = np.concatenate([model.forward(np.array([t]), i, state) for i, t in enumerate(TOKENS)])
    _compare(got, want)


def test_sliding_window_matches_float64_reference(tmp_path):
    """A random 6-layer gemma3 with a 16-position window, run over 28 positions, so the
    sliding layers drop keys (prefill in kernel chunks and dense, then single tokens);
    its global layer has linear rope scaling (factor 8, as Gemma 3 4B and up)."""
    kv, tensors = gemma3_tiny()
    kv |= {"gemma3.rope.scaling.type": "linear", "gemma3.rope.scaling.factor": 8.0}
    path = write_gguf(tmp_path / "gemma_tiny.gguf", "gemma3", kv, tensors)
    model = load_model(path)
    assert 0 < model.config.sliding_window < 28 and model.config.rope_freq_scale == 0.125
    ids = np.random.default_rng(7).integers(0, model.n_vocab, 28)
    want = _reference_logits(gguf.GGUFReader(path), model.config, ids.tolist())
    state = model.new_state(32)
    got = [model.forward(ids[:4], 0, state), model.forward(ids[4:16], 4, state)]
    got += [model.forward(ids[i : i + 1], i, state) for i in range(16, 28)]
    _compare(np.concatenate(got), want)
