"""The qwen35 forward in PyTorch, for training (docs/qwen35.md; the same math as
``mtpdec.models.qwen35`` and tests/qwen35_reference.py).

``Qwen35Torch(cfg)`` holds one parameter per GGUF tensor, under the tensor's name
(``weight("blk.0.attn_qkv.weight")``), in numpy's (rows, cols) order, so a trained model
is written out tensor by tensor. ``from_gguf(path)`` loads a file's weights (dequantized)
instead, which lets the tests compare this forward with the float64 reference.

Shapes: ids int64 (B, T); hidden rows float (B, T, n_embd); logits (B, T, n_vocab).
``trunk(ids)`` returns the logits and ``hn`` (final-normed hiddens) of every position;
``mtp(ids, hn)`` the MTP block's logits at every position p, from token ids[p] and the
trunk's hn[p - 1] (zeros at p = 0), as mtpdec's drafter feeds it: row p predicts
ids[p + 1], like the trunk's row p, but seeing the trunk only up to p - 1.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtpdec.loader import GDN, Qwen35Config, open_gguf
from mtpdec.quants import dequantize


def rmsnorm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def l2norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)


def tensor_shapes(cfg: Qwen35Config) -> dict[str, tuple[int, ...]]:
    """The tensors of a trained model, numpy order (rows, cols): the config's required ones
    (``Qwen35Config.tensor_specs``), ``output.weight`` unless the head is tied, and the MTP
    block's ``shared_head_norm`` (converted Qwen3.5 files carry it; mtpdec synth writes it)."""
    return {
        s.name: s.shape
        for s in cfg.tensor_specs()
        if s.required
        or s.name.endswith("nextn.shared_head_norm.weight")
        or (s.name == "output.weight" and not cfg.tied_output)
    }


class Qwen35Torch(nn.Module):
    """A qwen35 model with its MTP block (see the module docstring). ``chunk``: tokens per
    block of the GDN layers' delta rule (``chunked_delta_rule``; 0: token by token)."""

    def __init__(
        self, cfg: Qwen35Config, dtype: torch.dtype = torch.float32, chunk: int = 64
    ) -> None:
        super().__init__()
        self.cfg, self.chunk = cfg, chunk
        self.params = nn.ParameterDict(
            {
                _key(n): nn.Parameter(torch.zeros(s, dtype=dtype))
                for n, s in tensor_shapes(cfg).items()
            }
        )

    def weight(self, name: str) -> torch.Tensor:
        return self.params[_key(name)]

    # ---- pieces -------------------------------------------------------------------

    def _rope(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x (B, T, heads, hd): NEOX rotation of the first n_rot dims at positions pos (T,)."""
        n_rot = self.cfg.n_rot
        half = n_rot // 2
        inv = self.cfg.rope_freq_base ** (-2.0 * torch.arange(half, dtype=x.dtype) / n_rot)
        theta = (pos.to(x.dtype) * self.cfg.rope_freq_scale)[:, None] * inv
        c, s = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
        x0, x1, rest = x[..., :half], x[..., half:n_rot], x[..., n_rot:]
        return torch.cat([x0 * c - x1 * s, x0 * s + x1 * c, rest], dim=-1)

    def _attention(self, p: str, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        cfg, (b, t, _) = self.cfg, x.shape
        hd, eps, w = cfg.head_dim, cfg.rms_eps, self.weight
        qg = (x @ w(f"{p}.attn_q.weight").T).view(b, t, cfg.n_head, 2 * hd)
        q, gate = qg[..., :hd], qg[..., hd:].reshape(b, t, -1)
        q = self._rope(rmsnorm(q, w(f"{p}.attn_q_norm.weight"), eps), pos)
        k = (x @ w(f"{p}.attn_k.weight").T).view(b, t, cfg.n_head_kv, hd)
        k = self._rope(rmsnorm(k, w(f"{p}.attn_k_norm.weight"), eps), pos)
        v = (x @ w(f"{p}.attn_v.weight").T).view(b, t, cfg.n_head_kv, hd)
        group = cfg.n_head // cfg.n_head_kv
        k, v = (a.repeat_interleave(group, dim=2).transpose(1, 2) for a in (k, v))
        scores = (q.transpose(1, 2) @ k.transpose(-1, -2)) / math.sqrt(hd)
        causal = torch.ones(t, t, dtype=torch.bool).triu(1)
        probs = torch.softmax(scores.masked_fill(causal, float("-inf")), dim=-1)
        out = (probs @ v).transpose(1, 2).reshape(b, t, -1)
        return (out * torch.sigmoid(gate)) @ w(f"{p}.attn_output.weight").T

    def _gated_delta_net(self, p: str, x: torch.Tensor) -> torch.Tensor:
        cfg, w, (b, t, _) = self.cfg, self.weight, x.shape
        d, h_k, h_v, taps = (
            cfg.ssm_state_size,
            cfg.ssm_group_count,
            cfg.ssm_time_step_rank,
            cfg.ssm_conv_kernel,
        )
        qkv = x @ w(f"{p}.attn_qkv.weight").T
        padded = torch.nn.functional.pad(qkv, (0, 0, taps - 1, 0))
        conv_w = w(f"{p}.ssm_conv1d.weight")  # (channels, K), the last tap: the current input
        conv = sum(padded[:, j : j + t] * conv_w[:, j] for j in range(taps))
        conv = conv * torch.sigmoid(conv)
        kd = h_k * d
        q = l2norm(conv[..., :kd].view(b, t, h_k, d), cfg.rms_eps) / math.sqrt(d)
        k = l2norm(conv[..., kd : 2 * kd].view(b, t, h_k, d), cfg.rms_eps)
        v = conv[..., 2 * kd :].view(b, t, h_v, d)
        tile = torch.arange(h_v) % h_k  # value head h reads key head h % H_k
        q, k = q[:, :, tile], k[:, :, tile]
        beta = torch.sigmoid(x @ w(f"{p}.ssm_beta.weight").T)
        a = x @ w(f"{p}.ssm_alpha.weight").T + w(f"{p}.ssm_dt.bias")
        g = w(f"{p}.ssm_a") * torch.nn.functional.softplus(a)
        if self.chunk:
            o = chunked_delta_rule(q, k, v, g, beta, self.chunk)
        else:
            o = delta_rule(q, k, v, g, beta)
        z = (x @ w(f"{p}.attn_gate.weight").T).view(b, t, h_v, d)
        y = rmsnorm(o, w(f"{p}.ssm_norm.weight"), cfg.rms_eps) * z * torch.sigmoid(z)
        return y.reshape(b, t, -1) @ w(f"{p}.ssm_out.weight").T

    def _ffn(self, p: str, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        g, u = x @ w(f"{p}.ffn_gate.weight").T, x @ w(f"{p}.ffn_up.weight").T
        return (g * torch.sigmoid(g) * u) @ w(f"{p}.ffn_down.weight").T

    def _block(self, p: str, h: torch.Tensor, pos: torch.Tensor, attention: bool) -> torch.Tensor:
        eps, w = self.cfg.rms_eps, self.weight
        x = rmsnorm(h, w(f"{p}.attn_norm.weight"), eps)
        h = h + (self._attention(p, x, pos) if attention else self._gated_delta_net(p, x))
        return h + self._ffn(p, rmsnorm(h, w(f"{p}.post_attention_norm.weight"), eps))

    def _head(self) -> torch.Tensor:
        return self.weight("token_embd.weight" if self.cfg.tied_output else "output.weight")

    # ---- passes -------------------------------------------------------------------

    def trunk(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        pos = torch.arange(ids.shape[1])
        h = self.weight("token_embd.weight")[ids]
        for il in range(cfg.n_trunk):
            h = self._block(f"blk.{il}", h, pos, cfg.layer_kinds[il] != GDN)
        hn = rmsnorm(h, self.weight("output_norm.weight"), cfg.rms_eps)
        return hn @ self._head().T, hn

    def mtp(self, ids: torch.Tensor, hn: torch.Tensor) -> torch.Tensor:
        cfg, w, eps = self.cfg, self.weight, self.cfg.rms_eps
        p = f"blk.{cfg.n_trunk}"
        prev = torch.nn.functional.pad(hn[:, :-1], (0, 0, 1, 0))  # hn[p - 1], zeros at 0
        e = rmsnorm(w("token_embd.weight")[ids], w(f"{p}.nextn.enorm.weight"), eps)
        h = rmsnorm(prev, w(f"{p}.nextn.hnorm.weight"), eps)
        x = torch.cat([e, h], dim=-1) @ w(f"{p}.nextn.eh_proj.weight").T  # embedding first
        x = self._block(p, x, torch.arange(ids.shape[1]), attention=True)
        hm = rmsnorm(x, w(f"{p}.nextn.shared_head_norm.weight"), eps)
        return hm @ self._head().T


def delta_rule(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """The gated delta rule from a zero state, token by token: q, k, v (B, T, H, d) (q
    already scaled, key heads tiled to the value heads), g, beta (B, T, H). Per token
    ``S = exp(g) S; u = beta (v - S^T k); S += k u^T; o = S^T q``; returns o (B, T, H, d)."""
    b, t, h, d = v.shape
    state = q.new_zeros(b, h, d, d)
    out = []
    for i in range(t):
        state = state * torch.exp(g[:, i])[..., None, None]
        kk = k[:, i]
        u = beta[:, i, :, None] * (v[:, i] - torch.einsum("bhij,bhi->bhj", state, kk))
        state = state + kk[..., :, None] * u[..., None, :]
        out.append(torch.einsum("bhij,bhi->bhj", state, q[:, i]))
    return torch.stack(out, dim=1)


def chunked_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    chunk: int = 64,
) -> torch.Tensor:
    """``delta_rule`` in blocks of ``chunk`` tokens (the same function, reassociated),
    so that training runs matrix products instead of a Python loop over tokens.

    Within a block starting from state S0, with G the running sum of g in the block,
    A[t, s] = beta_t exp(G_t - G_s) k_t.k_s (s < t), U = (I + A)^-1 (beta V - beta exp(G) K S0)
    are the rank-1 update vectors; O = (exp(G) Q) S0 + (Q K^T * exp(G_t - G_s), s <= t) U;
    the block's last state is exp(G_C) S0 + (K exp(G_C - G))^T U.
    """
    b, t, h, d = v.shape
    pad = (-t) % chunk
    if pad:  # trailing zero tokens (g = 0, beta = 0) change nothing before them
        q, k, v = (torch.nn.functional.pad(a, (0, 0, 0, 0, 0, pad)) for a in (q, k, v))
        g, beta = (torch.nn.functional.pad(a, (0, 0, 0, pad)) for a in (g, beta))
    n = (t + pad) // chunk
    # (B, H, blocks, C, d) and (B, H, blocks, C)
    q, k, v = (a.permute(0, 2, 1, 3).reshape(b, h, n, chunk, d) for a in (q, k, v))
    g, beta = (a.permute(0, 2, 1).reshape(b, h, n, chunk) for a in (g, beta))
    cum = g.cumsum(-1)
    diff = cum[..., :, None] - cum[..., None, :]  # G_t - G_s
    lower = torch.ones(chunk, chunk, dtype=torch.bool).tril()
    strict = lower.logical_and(~torch.eye(chunk, dtype=torch.bool))
    decay = torch.exp(diff.masked_fill(~lower, float("-inf")))  # 0 above the diagonal
    a = (k @ k.transpose(-1, -2)) * decay * beta[..., None]
    eye_plus_a = a.masked_fill(~strict, 0.0) + torch.eye(chunk, dtype=q.dtype)
    bv = beta[..., None] * v
    bk = (beta * torch.exp(cum))[..., None] * k
    solve = torch.linalg.solve_triangular
    v_part = solve(eye_plus_a, bv, upper=False, unitriangular=True)
    k_part = solve(eye_plus_a, bk, upper=False, unitriangular=True)
    scores = (q @ k.transpose(-1, -2)) * decay
    state = q.new_zeros(b, h, d, d)
    out = []
    for i in range(n):
        u = v_part[:, :, i] - k_part[:, :, i] @ state
        o = (q[:, :, i] * torch.exp(cum[:, :, i])[..., None]) @ state + scores[:, :, i] @ u
        out.append(o)
        last = cum[:, :, i, -1:]
        carried = k[:, :, i] * torch.exp(last - cum[:, :, i])[..., None]
        state = state * torch.exp(last)[..., None] + carried.transpose(-1, -2) @ u
    o = torch.stack(out, dim=2).reshape(b, h, n * chunk, d).permute(0, 2, 1, 3)
    return o[:, :t]


def _key(name: str) -> str:
    return name.replace(".", "__")


def from_gguf(path: str | Path, dtype: torch.dtype = torch.float64, chunk: int = 0) -> Qwen35Torch:
    """A model with a qwen35 file's weights, dequantized (``mtpdec.quants.dequantize``)."""
    with open_gguf(path) as f:
        cfg = f.config
        assert isinstance(cfg, Qwen35Config)
        model = Qwen35Torch(cfg, dtype, chunk)
        with torch.no_grad():
            for name, shape in tensor_shapes(cfg).items():
                values = np.asarray(dequantize(f.tensors[name]), dtype=np.float64)
                model.weight(name).copy_(torch.from_numpy(values.reshape(shape)))
    return model
