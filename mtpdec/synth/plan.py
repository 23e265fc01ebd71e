"""The tensors of a qwen35 GGUF: names, GGUF shapes, Q4_K_M-style types, value recipes.

Names and shapes come from the loader's ``Qwen35Config.tensor_specs`` (written from
llama.cpp's ``llama_model_qwen35::load_arch_tensors``), so a synth file and the loader
agree by construction and llama.cpp loading synth files checks both; shapes here are
GGUF ``ne`` order (``ne[0]`` is the row length).
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

from mtpdec.loader.qwen35 import Qwen35Config
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


# Value recipe by name suffix (first match wins): (init, gain, Q4_K_M role).
_RECIPES: tuple[tuple[str, str, float, str], ...] = (
    ("norm.weight", NORM, 1.0, ""),
    ("ssm_conv1d.weight", CONV, 1.0, ""),
    ("ssm_dt.bias", DT_BIAS, 1.0, ""),
    ("ssm_a", SSM_A, 1.0, ""),
    ("attn_output.weight", MATRIX, 0.5, ""),
    ("ssm_out.weight", MATRIX, 0.5, ""),
    ("ffn_down.weight", MATRIX, 0.5, "ffn_down"),
    ("attn_v.weight", MATRIX, 1.0, "attn_v"),
    ("attn_qkv.weight", MATRIX, 1.0, "attn_v"),  # llama.cpp counts them together
    ("output.weight", MATRIX, 2.0, "output"),  # logits of std ~2 for a unit-RMS hidden
    ("", MATRIX, 1.0, ""),
)


def config_of(s: Qwen35Shape) -> Qwen35Config:
    """The loader's config for a synth shape: the one source of tensor names and shapes."""
    kinds = tuple(s.layer_kind(il) for il in range(s.n_layer_all))
    return Qwen35Config(
        n_vocab=s.n_vocab,
        n_embd=s.n_embd,
        n_ff=s.n_ff,
        n_layer=s.n_layer_all,
        n_trunk=s.n_layer,
        n_mtp=s.n_layer_all - s.n_layer,
        n_head=s.n_head,
        n_head_kv=s.n_head_kv,
        head_dim=s.head_dim,
        n_rot=s.n_rot,
        rope_freq_base=s.rope_freq_base,
        rope_freq_scale=1.0,
        rope_sections=s.rope_sections,
        rms_eps=s.rms_eps,
        context_length=s.context_length,
        full_attention_interval=s.full_attention_interval,
        ssm_conv_kernel=s.ssm_conv,
        ssm_state_size=s.ssm_state,
        ssm_group_count=s.ssm_groups,
        ssm_time_step_rank=s.ssm_heads,
        ssm_inner_size=s.ssm_heads * s.ssm_state,
        tied_output=s.tied_embeddings,
        layer_kinds=kinds,
    )


def _written(name: str, required: bool, s: Qwen35Shape) -> bool:
    """Required tensors, plus the optional ones a converted Qwen3.5 file carries."""
    if name == "output.weight":
        return not s.tied_embeddings
    return required or name.endswith("nextn.shared_head_norm.weight")


def _specs(s: Qwen35Shape) -> list[_Spec]:
    specs = []
    for spec in config_of(s).tensor_specs():
        if not _written(spec.name, spec.required, s):
            continue
        _, init, gain, role = next(r for r in _RECIPES if spec.name.endswith(r[0]))
        if spec.name == "token_embd.weight":  # the LM head too when tied
            gain, role = (
                (2.0, "output") if s.tied_embeddings else (math.sqrt(s.n_embd), "token_embd")
            )
        specs.append(_Spec(spec.name, tuple(reversed(spec.shape)), init, gain, role))
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
