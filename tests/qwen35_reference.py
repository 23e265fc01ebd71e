"""A float64 numpy qwen35 forward written from docs/qwen35.md: trunk and MTP head.

Weights come from gguf's own reader and dequantizer, so nothing here shares code with
mtpdec. Slow and simple: meant for tiny synth files.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class Qwen35Reference:
    """``trunk(ids) -> (logits, hn)`` and ``mtp_step(token, hidden, pos) -> (logits, hm)``."""

    def __init__(self, path: Path, swap_concat: bool = False) -> None:
        r = gguf.GGUFReader(path)
        self.w = {
            t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
            for t in r.tensors
        }

        def meta(key: str):
            f = r.fields[f"qwen35.{key}"]
            return f.parts[f.data[0]][0].item()

        self.n_trunk = meta("block_count") - meta("nextn_predict_layers")
        self.eps = meta("attention.layer_norm_rms_epsilon")
        self.n_head, self.n_kv = meta("attention.head_count"), meta("attention.head_count_kv")
        self.hd, self.n_rot = meta("attention.key_length"), meta("rope.dimension_count")
        self.base = meta("rope.freq_base")
        self.interval = meta("full_attention_interval")
        self.h_k, self.h_v = meta("ssm.group_count"), meta("ssm.time_step_rank")
        self.d, self.taps = meta("ssm.state_size"), meta("ssm.conv_kernel")
        self.swap = swap_concat
        self.keys: list[np.ndarray] = []  # the MTP head's KV cache, one entry per position
        self.values: list[np.ndarray] = []

    # ------------------------------------------------------------------ pieces

    def rms(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """x (T, heads, hd): NEOX rotation of the first n_rot dims at positions pos (T,)."""
        half = self.n_rot // 2
        theta = pos[:, None] * self.base ** (-2.0 * np.arange(half) / self.n_rot)
        c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
        out = x.copy()
        x0, x1 = x[..., :half], x[..., half : 2 * half]
        out[..., :half], out[..., half : 2 * half] = x0 * c - x1 * s, x0 * s + x1 * c
        return out

    def attention(
        self, p: str, x: np.ndarray, pos: np.ndarray, keys: np.ndarray, values: np.ndarray
    ) -> np.ndarray:
        """Gated attention of queries x (T, e) over keys/values (L, n_kv, hd) + their own."""
        t = len(x)
        qg = (x @ self.w[f"{p}.attn_q.weight"].T).reshape(t, self.n_head, 2 * self.hd)
        q, gate = qg[..., : self.hd], qg[..., self.hd :].reshape(t, -1)
        q = self.rope(self.rms(q, self.w[f"{p}.attn_q_norm.weight"]), pos)
        k = (x @ self.w[f"{p}.attn_k.weight"].T).reshape(t, self.n_kv, self.hd)
        k = self.rope(self.rms(k, self.w[f"{p}.attn_k_norm.weight"]), pos)
        v = (x @ self.w[f"{p}.attn_v.weight"].T).reshape(t, self.n_kv, self.hd)
        keys, values = np.concatenate([keys, k]), np.concatenate([values, v])
        n_past = len(keys) - t
        group = self.n_head // self.n_kv
        out = np.empty((t, self.n_head, self.hd))
        for i in range(t):
            seen = n_past + i + 1
            for head in range(self.n_head):
                kv = head // group
                scores = keys[:seen, kv] @ q[i, head] / np.sqrt(self.hd)
                probs = np.exp(scores - scores.max())
                out[i, head] = (probs / probs.sum()) @ values[:seen, kv]
        self._last_kv = (k, v)
        return (out.reshape(t, -1) * _sigmoid(gate)) @ self.w[f"{p}.attn_output.weight"].T

    def gated_delta_net(self, p: str, x: np.ndarray) -> np.ndarray:
        """GDN mixer over a whole sequence x (T, e) from a zero state."""
        t, d, h_k, h_v = len(x), self.d, self.h_k, self.h_v
        qkv = x @ self.w[f"{p}.attn_qkv.weight"].T
        conv_w = self.w[f"{p}.ssm_conv1d.weight"]  # (channels, K), last tap = current input
        padded = np.concatenate([np.zeros((self.taps - 1, qkv.shape[1])), qkv])
        conv = sum(padded[j : j + t] * conv_w[:, j] for j in range(self.taps))
        conv = conv * _sigmoid(conv)
        q = conv[:, : h_k * d].reshape(t, h_k, d)
        k = conv[:, h_k * d : 2 * h_k * d].reshape(t, h_k, d)
        v = conv[:, 2 * h_k * d :].reshape(t, h_v, d)
        q = q / np.sqrt((q * q).sum(-1, keepdims=True) + self.eps) / np.sqrt(d)
        k = k / np.sqrt((k * k).sum(-1, keepdims=True) + self.eps)
        beta = _sigmoid(x @ self.w[f"{p}.ssm_beta.weight"].T)
        a = x @ self.w[f"{p}.ssm_alpha.weight"].T + self.w[f"{p}.ssm_dt.bias"]
        g = self.w[f"{p}.ssm_a"] * np.log1p(np.exp(a))
        state = np.zeros((h_v, d, d))
        o = np.empty((t, h_v, d))
        for i in range(t):
            for h in range(h_v):
                kk, qq = k[i, h % h_k], q[i, h % h_k]  # value head h reads key head h % H_k
                state[h] *= np.exp(g[i, h])
                u = beta[i, h] * (v[i, h] - state[h].T @ kk)
                state[h] += np.outer(kk, u)
                o[i, h] = state[h].T @ qq
        z = (x @ self.w[f"{p}.attn_gate.weight"].T).reshape(t, h_v, d)
        y = self.rms(o, self.w[f"{p}.ssm_norm.weight"]) * z * _sigmoid(z)
        return y.reshape(t, -1) @ self.w[f"{p}.ssm_out.weight"].T

    def ffn(self, p: str, x: np.ndarray) -> np.ndarray:
        g, u = x @ self.w[f"{p}.ffn_gate.weight"].T, x @ self.w[f"{p}.ffn_up.weight"].T
        return (g * _sigmoid(g) * u) @ self.w[f"{p}.ffn_down.weight"].T

    def output(self) -> np.ndarray:
        return self.w.get("output.weight", self.w["token_embd.weight"])

    # ------------------------------------------------------------------ passes

    def trunk(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Logits (T, vocab) and final-normed hiddens hn (T, e) of a whole sequence."""
        pos = np.arange(len(ids), dtype=np.float64)
        h = self.w["token_embd.weight"][ids]
        empty = np.zeros((0, self.n_kv, self.hd))
        for il in range(self.n_trunk):
            p = f"blk.{il}"
            x = self.rms(h, self.w[f"{p}.attn_norm.weight"])
            if (il + 1) % self.interval == 0:
                h = h + self.attention(p, x, pos, empty, empty)
            else:
                h = h + self.gated_delta_net(p, x)
            h = h + self.ffn(p, self.rms(h, self.w[f"{p}.post_attention_norm.weight"]))
        hn = self.rms(h, self.w["output_norm.weight"])
        return hn @ self.output().T, hn

    def mtp_step(self, token: int, hidden: np.ndarray, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """One MTP position: logits (vocab,) and hm (e,); the head's cache is cut at pos."""
        p, n = f"blk.{self.n_trunk}", f"blk.{self.n_trunk}.nextn"
        embd = self.w.get(f"{n}.embed_tokens.weight", self.w["token_embd.weight"])
        e = self.rms(embd[token], self.w[f"{n}.enorm.weight"])
        h = self.rms(hidden.astype(np.float64), self.w[f"{n}.hnorm.weight"])
        x = self.w[f"{n}.eh_proj.weight"] @ np.concatenate([h, e] if self.swap else [e, h])
        del self.keys[pos:], self.values[pos:]
        past_k = np.array(self.keys).reshape(-1, self.n_kv, self.hd)
        past_v = np.array(self.values).reshape(-1, self.n_kv, self.hd)
        xn = self.rms(x, self.w[f"{p}.attn_norm.weight"])[None]
        x = x + self.attention(p, xn, np.array([float(pos)]), past_k, past_v)[0]
        self.keys.append(self._last_kv[0][0])
        self.values.append(self._last_kv[1][0])
        x = x + self.ffn(p, self.rms(x, self.w[f"{p}.post_attention_norm.weight"]))
        norm = self.w.get(f"{n}.shared_head_norm.weight", self.w["output_norm.weight"])
        hm = self.rms(x, norm)
        head = self.w.get(f"{n}.shared_head_head.weight", self.output())
        return head @ hm, hm
