"""The tensors of a qwen35 GGUF: names, GGUF shapes, Q4_K_M-style types, value recipes.

Names and shapes follow llama.cpp's ``llama_model_qwen35::load_arch_tensors``
(src/models/qwen35.cpp); shapes are GGUF ``ne`` order (``ne[0]`` is the row length).
The type mix follows llama.cpp's Q4_K_M recipe (src/llama-quant.cpp):
- 1-D tensors, norms and ``ssm_conv1d`` stay F32;
- ``output.weight`` (or ``token_embd`` when it is also the LM head) is Q6_K;
- ``attn_v`` / ``attn_qkv`` (one counter) and ``ffn_down`` are Q6_K on the layers
  ``use_more_bits`` picks (first and last eighth, every third in between), else Q4_K;
- everything else is Q4_K;
- a row length that is not a multiple of 256 falls back: Q4_K -> Q5_0, Q6_K -> Q8_0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mtpdec.quants.types import BLOCK_SIZES, GGMLType
from mtpdec.synth.presets import Qwen35Shape

# How values are drawn (see writer.py): a dense matrix with std `scale`, or one of the
# special F32 vectors.
MATRIX = "matrix"
NORM = "norm"  # ~1: RMSNorm weights are stored ready to use
SSM_A = "ssm_a"  # -exp(A_log), A_log ~ U(log 1, log 16): negative
DT_BIAS = "dt_bias"  # softplus^-1(dt), dt log-uniform in [1e-3, 1e-1]
CONV = "conv"  # depthwise conv taps

_FALLBACK = {GGMLType.Q4_K: GGMLType.Q5_0, GGMLType.Q6_K: GGMLType.Q8_0}


@dataclass(frozen=True)
class TensorPlan:
    name: str
    ne: tuple[int, ...]  # GGUF order
    ggml_type: GGMLType
    init: str
    scale: float = 0.0  # std of a MATRIX

    @property
    def cols(self) -> int:
        return self.ne[0]

    @property
    def rows(self) -> int:
        return math.prod(self.ne[1:])

    @property
    def row_bytes(self) -> int:
        elems, nbytes = BLOCK_SIZES[self.ggml_type]
        return self.cols // elems * nbytes

    @property
    def nbytes(self) -> int:
        return self.rows * self.row_bytes


@dataclass(frozen=True)
class _Spec:
    name: str
    ne: tuple[int, ...]
    init: str
    gain: float = 1.0  # MATRIX std = gain / sqrt(ne[0])
    role: str = ""  # Q4_K_M category: output, token_embd, attn_v, ffn_down or ""


def _matrix(name: str, ne: tuple[int, int], gain: float = 1.0, role: str = "") -> _Spec:
    return _Spec(name, ne, MATRIX, gain, role)


def _attention(p: str, s: Qwen35Shape) -> list[_Spec]:
    hd = s.head_dim
    return [
        _matrix(f"{p}.attn_q.weight", (s.n_embd, 2 * hd * s.n_head)),  # q and gate per head
        _matrix(f"{p}.attn_k.weight", (s.n_embd, hd * s.n_head_kv)),
        _matrix(f"{p}.attn_v.weight", (s.n_embd, hd * s.n_head_kv), role="attn_v"),
        _matrix(f"{p}.attn_output.weight", (hd * s.n_head, s.n_embd), gain=0.5),
        _Spec(f"{p}.attn_q_norm.weight", (hd,), NORM),
        _Spec(f"{p}.attn_k_norm.weight", (hd,), NORM),
    ]


def _gdn(p: str, s: Qwen35Shape) -> list[_Spec]:
    d = s.ssm_state
    key_dim, value_dim = d * s.ssm_groups, d * s.ssm_heads
    conv_dim = 2 * key_dim + value_dim
    return [
        _matrix(f"{p}.attn_qkv.weight", (s.n_embd, conv_dim), role="attn_v"),
        _matrix(f"{p}.attn_gate.weight", (s.n_embd, value_dim)),
        _Spec(f"{p}.ssm_conv1d.weight", (s.ssm_conv, conv_dim), CONV),
        _Spec(f"{p}.ssm_dt.bias", (s.ssm_heads,), DT_BIAS),
        _Spec(f"{p}.ssm_a", (s.ssm_heads,), SSM_A),
        _matrix(f"{p}.ssm_beta.weight", (s.n_embd, s.ssm_heads)),
        _matrix(f"{p}.ssm_alpha.weight", (s.n_embd, s.ssm_heads)),
        _Spec(f"{p}.ssm_norm.weight", (d,), NORM),
        _matrix(f"{p}.ssm_out.weight", (value_dim, s.n_embd), gain=0.5),
    ]


def _ffn(p: str, s: Qwen35Shape) -> list[_Spec]:
    return [
        _matrix(f"{p}.ffn_gate.weight", (s.n_embd, s.n_ff)),
        _matrix(f"{p}.ffn_down.weight", (s.n_ff, s.n_embd), gain=0.5, role="ffn_down"),
        _matrix(f"{p}.ffn_up.weight", (s.n_embd, s.n_ff)),
    ]


def _specs(s: Qwen35Shape) -> list[_Spec]:
    # LM head std 2/sqrt(n_embd): logits of std ~2 for a unit-RMS hidden.
    specs = [
        _matrix(
            "token_embd.weight",
            (s.n_embd, s.n_vocab),
            gain=2.0 if s.tied_embeddings else math.sqrt(s.n_embd),
            role="output" if s.tied_embeddings else "token_embd",
        ),
        _Spec("output_norm.weight", (s.n_embd,), NORM),
    ]
    if not s.tied_embeddings:
        specs.append(_matrix("output.weight", (s.n_embd, s.n_vocab), gain=2.0, role="output"))
    for il in range(s.n_layer):
        p = f"blk.{il}"
        specs += [
            _Spec(f"{p}.attn_norm.weight", (s.n_embd,), NORM),
            _Spec(f"{p}.post_attention_norm.weight", (s.n_embd,), NORM),
        ]
        specs += _gdn(p, s) if s.is_recurrent(il) else _attention(p, s)
        specs += _ffn(p, s)
    if s.mtp:
        p = f"blk.{s.n_layer}"
        specs += [
            _Spec(f"{p}.attn_norm.weight", (s.n_embd,), NORM),
            _Spec(f"{p}.post_attention_norm.weight", (s.n_embd,), NORM),
        ]
        specs += _attention(p, s) + _ffn(p, s)
        specs += [
            _matrix(f"{p}.nextn.eh_proj.weight", (2 * s.n_embd, s.n_embd)),
            _Spec(f"{p}.nextn.enorm.weight", (s.n_embd,), NORM),
            _Spec(f"{p}.nextn.hnorm.weight", (s.n_embd,), NORM),
            _Spec(f"{p}.nextn.shared_head_norm.weight", (s.n_embd,), NORM),
        ]
    return specs


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama.cpp's choice of the layers that get more bits in the *_M mixes."""
    return (
        i_layer < n_layers // 8
        or i_layer >= 7 * n_layers // 8
        or (i_layer - n_layers // 8) % 3 == 2
    )


def _fallback(t: GGMLType, cols: int) -> GGMLType:
    if cols % BLOCK_SIZES[t][0] == 0:
        return t
    t = _FALLBACK[t]
    if cols % BLOCK_SIZES[t][0]:
        raise AssertionError(f"row length {cols} is not a multiple of 32")  # validated earlier
    return t


def tensor_plan(shape: Qwen35Shape) -> list[TensorPlan]:
    """Every tensor of the file, in file order, with its type and value recipe."""
    specs = _specs(shape)
    counts = {role: sum(sp.role == role for sp in specs) for role in ("attn_v", "ffn_down")}
    seen = dict.fromkeys(counts, 0)
    plan = []
    for sp in specs:
        if sp.init != MATRIX:
            plan.append(TensorPlan(sp.name, sp.ne, GGMLType.F32, sp.init))
            continue
        t = GGMLType.Q4_K
        if sp.role == "output":
            t = GGMLType.Q6_K
        elif sp.role in counts:
            if use_more_bits(seen[sp.role], counts[sp.role]):
                t = GGMLType.Q6_K
            seen[sp.role] += 1
        t = _fallback(t, sp.ne[0])
        plan.append(TensorPlan(sp.name, sp.ne, t, MATRIX, sp.gain / math.sqrt(sp.ne[0])))
    return plan
