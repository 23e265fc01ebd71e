"""A float64 numpy Gemma 3 forward written from the model's math (llama.cpp gemma3.cpp).

Weights come from gguf's own reader and dequantizer, so nothing here shares code with
mtpdec. The LM head runs in float32 (262K x 640 per row); everything else in float64.
"""

from __future__ import annotations

import functools

import gguf
import numpy as np


class GemmaReference:
    """``logits(tokens) -> float64 (n, n_vocab)`` of a gemma3 file, weights dequantized once."""

    def __init__(self, reader: gguf.GGUFReader, cfg) -> None:
        self.tensors = {t.name: t for t in reader.tensors}
        self.cfg = cfg
        self._weights: dict[str, np.ndarray] = {}

    def w(self, name: str) -> np.ndarray:
        if name not in self._weights:
            t = self.tensors[name]
            self._weights[name] = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
        return self._weights[name]

    @functools.cached_property
    def head(self) -> np.ndarray:
        embd = self.tensors["token_embd.weight"]
        return gguf.quants.dequantize(embd.data, embd.tensor_type)  # float32 (vocab, n_embd)

    def logits(self, tokens: list[int]) -> np.ndarray:
        """float64 (len(tokens), n_vocab): row i predicts the token after tokens[i]."""
        cfg, w = self.cfg, self.w

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
        embd = self.tensors["token_embd.weight"]
        rows = gguf.quants.dequantize(embd.data[tokens], embd.tensor_type).astype(np.float64)
        h = rows * np.sqrt(cfg.n_embd)
        causal = np.tril(np.ones((n, n), dtype=bool))
        for il, kind in enumerate(cfg.layer_kinds):
            p = f"blk.{il}"
            x = rms(h, w(f"{p}.attn_norm.weight"))
            q = rms(
                (x @ w(f"{p}.attn_q.weight").T).reshape(n, -1, hd), w(f"{p}.attn_q_norm.weight")
            )
            k = rms(
                (x @ w(f"{p}.attn_k.weight").T).reshape(n, -1, hd), w(f"{p}.attn_k_norm.weight")
            )
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
        return (hn.astype(np.float32) @ self.head.T).astype(np.float64)
