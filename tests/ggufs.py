"""Small GGUF files for tests, written with gguf.GGUFWriter (shapes as llama.cpp's
create_tensor calls, GGUF ``ne`` order)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np

QT = gguf.GGMLQuantizationType

# ---------------------------------------------------------------- small model files


def gemma3_tiny() -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """(metadata, tensors name -> ne) of a 6-layer gemma3 (layer 5 global)."""
    e, ff, hd, nh, nkv, vocab = 64, 96, 32, 2, 1, 50
    kv = {
        "gemma3.context_length": 1024,
        "gemma3.embedding_length": e,
        "gemma3.block_count": 6,
        "gemma3.feed_forward_length": ff,
        "gemma3.attention.head_count": nh,
        "gemma3.attention.head_count_kv": nkv,
        "gemma3.attention.key_length": hd,
        "gemma3.attention.value_length": hd,
        "gemma3.attention.layer_norm_rms_epsilon": 1e-6,
        "gemma3.rope.freq_base": 1e6,
        "gemma3.attention.sliding_window": 16,
        "tokenizer.ggml.tokens": [f"t{i}" for i in range(vocab)],
    }
    t = {"token_embd.weight": (e, vocab), "output_norm.weight": (e,)}
    for i in range(6):
        p = f"blk.{i}"
        t |= {
            f"{p}.attn_norm.weight": (e,),
            f"{p}.attn_q.weight": (e, hd * nh),
            f"{p}.attn_k.weight": (e, hd * nkv),
            f"{p}.attn_v.weight": (e, hd * nkv),
            f"{p}.attn_output.weight": (hd * nh, e),
            f"{p}.post_attention_norm.weight": (e,),
            f"{p}.attn_k_norm.weight": (hd,),
            f"{p}.attn_q_norm.weight": (hd,),
            f"{p}.ffn_norm.weight": (e,),
            f"{p}.ffn_gate.weight": (e, ff),
            f"{p}.ffn_up.weight": (e, ff),
            f"{p}.ffn_down.weight": (ff, e),
            f"{p}.post_ffw_norm.weight": (e,),
        }
    return kv, t


def qwen35_tiny() -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """(metadata, tensors) of a qwen35 with 4 trunk layers (3 GDN, 1 attention) + MTP."""
    e, ff, hd, nh, nkv, vocab = 64, 96, 32, 2, 1, 50
    d, hk, hv, k = 16, 2, 4, 4
    conv = 2 * d * hk + d * hv
    kv = {
        "qwen35.context_length": 4096,
        "qwen35.embedding_length": e,
        "qwen35.feed_forward_length": ff,
        "qwen35.block_count": 5,
        "qwen35.nextn_predict_layers": 1,
        "qwen35.attention.head_count": nh,
        "qwen35.attention.head_count_kv": nkv,
        "qwen35.attention.key_length": hd,
        "qwen35.attention.value_length": hd,
        "qwen35.attention.layer_norm_rms_epsilon": 1e-6,
        "qwen35.rope.dimension_count": 16,
        "qwen35.rope.freq_base": 1e7,
        "qwen35.rope.dimension_sections": [3, 3, 2, 0],
        "qwen35.full_attention_interval": 4,
        "qwen35.ssm.conv_kernel": k,
        "qwen35.ssm.state_size": d,
        "qwen35.ssm.group_count": hk,
        "qwen35.ssm.time_step_rank": hv,
        "qwen35.ssm.inner_size": d * hv,
        "tokenizer.ggml.tokens": [f"t{i}" for i in range(vocab)],
        "tokenizer.ggml.merges": ["t 1", "t 2"],
    }
    t = {"token_embd.weight": (e, vocab), "output_norm.weight": (e,), "output.weight": (e, vocab)}
    for i in range(5):
        p = f"blk.{i}"
        t |= {f"{p}.attn_norm.weight": (e,), f"{p}.post_attention_norm.weight": (e,)}
        if i in (0, 1, 2):
            t |= {
                f"{p}.attn_qkv.weight": (e, conv),
                f"{p}.attn_gate.weight": (e, d * hv),
                f"{p}.ssm_conv1d.weight": (k, conv),
                f"{p}.ssm_dt.bias": (hv,),
                f"{p}.ssm_a": (hv,),
                f"{p}.ssm_beta.weight": (e, hv),
                f"{p}.ssm_alpha.weight": (e, hv),
                f"{p}.ssm_norm.weight": (d,),
                f"{p}.ssm_out.weight": (d * hv, e),
            }
        else:
            t |= {
                f"{p}.attn_q.weight": (e, hd * nh * 2),
                f"{p}.attn_k.weight": (e, hd * nkv),
                f"{p}.attn_v.weight": (e, hd * nkv),
                f"{p}.attn_output.weight": (hd * nh, e),
                f"{p}.attn_q_norm.weight": (hd,),
                f"{p}.attn_k_norm.weight": (hd,),
            }
        t |= {f"{p}.ffn_gate.weight": (e, ff), f"{p}.ffn_down.weight": (ff, e)}
        t |= {f"{p}.ffn_up.weight": (e, ff)}
    t |= {
        "blk.4.nextn.eh_proj.weight": (2 * e, e),
        "blk.4.nextn.enorm.weight": (e,),
        "blk.4.nextn.hnorm.weight": (e,),
        "blk.4.nextn.shared_head_norm.weight": (e,),
    }
    return kv, t


def write_gguf(
    path: Path,
    arch: str,
    kv: dict[str, Any],
    tensors: dict[str, tuple[int, ...]],
    types: dict[str, QT] | None = None,
    seed: int = 0,
) -> Path:
    """Write a GGUF: F32 random tensors (``types`` gives raw zero blocks of another type)."""
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, arch)
    for key, v in kv.items():
        if isinstance(v, bool):
            w.add_bool(key, v)
        elif isinstance(v, int):
            w.add_uint32(key, v)
        elif isinstance(v, float):
            w.add_float32(key, v)
        elif isinstance(v, str):
            w.add_string(key, v)
        else:
            w.add_array(key, v)
    for name, ne in tensors.items():
        qt = (types or {}).get(name)
        if qt is None:
            w.add_tensor(name, rng.standard_normal(ne[::-1]).astype(np.float32))
        else:
            elems, nbytes = gguf.GGML_QUANT_SIZES[qt]
            raw = np.zeros((int(np.prod(ne[1:])), ne[0] // elems * nbytes), np.uint8)
            w.add_tensor(name, raw, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
