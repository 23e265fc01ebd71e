"""GGUF loader: parsing against gguf.GGUFReader, zero-copy views, configs, validation.

Small models are written with gguf.GGUFWriter (shapes as llama.cpp's create_tensor
calls, GGUF ``ne`` order); the real Gemma-3-270M file is used when its package is
installed (visible skip otherwise).
"""

from __future__ import annotations

import mmap
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from ggufs import QT, gemma3_tiny, qwen35_tiny, write_gguf

from mtpdec.errors import MtpdecError
from mtpdec.loader import ATTENTION, GDN, MTP, SLIDING, open_gguf, read_gguf
from mtpdec.quants.types import GGMLType


@pytest.fixture(scope="module")
def gemma(gemma_path):
    with open_gguf(gemma_path) as f:
        yield f


@pytest.fixture
def tiny_gemma(tmp_path) -> Path:
    return write_gguf(tmp_path / "g.gguf", "gemma3", *gemma3_tiny())


@pytest.fixture
def tiny_qwen(tmp_path) -> Path:
    return write_gguf(tmp_path / "q.gguf", "qwen35", *qwen35_tiny())


# ---------------------------------------------------------------- real Gemma file


@pytest.mark.model
@pytest.mark.slow
def test_gemma_metadata_matches_gguf_reader(gemma, gemma_ref):
    keys = [k for k in gemma_ref.fields if not k.startswith("GGUF.")]
    assert gemma.keys() == keys
    assert gemma.version == 3 and gemma.architecture == "gemma3"
    for key in keys:
        field, ours = gemma_ref.fields[key], gemma.get(key)
        want = field.contents()
        if isinstance(ours, np.ndarray):
            assert ours.tolist() == want, key
        else:
            assert ours == want, key
    assert gemma.array_len("tokenizer.ggml.tokens") == len(
        gemma_ref.fields["tokenizer.ggml.tokens"].data
    )


@pytest.mark.model
@pytest.mark.slow
def test_gemma_config_matches_gguf_reader(gemma, gemma_ref):
    def v(key):
        return gemma_ref.fields[f"gemma3.{key}"].contents()

    c = gemma.config
    assert (c.n_embd, c.n_ff, c.n_layer) == (v("embedding_length"), v("feed_forward_length"), 18)
    assert c.n_layer == v("block_count")
    assert (c.n_head, c.n_head_kv) == (v("attention.head_count"), v("attention.head_count_kv"))
    assert (c.head_dim_k, c.head_dim_v) == (v("attention.key_length"), v("attention.value_length"))
    assert c.rms_eps == v("attention.layer_norm_rms_epsilon")
    assert c.rope_freq_base == v("rope.freq_base") and c.rope_freq_base_swa == 10000.0
    assert c.sliding_window == v("attention.sliding_window")
    assert c.context_length == v("context_length")
    assert c.n_vocab == len(gemma_ref.fields["tokenizer.ggml.tokens"].data)
    names = [t.name for t in gemma_ref.tensors]
    assert c.tied_output == ("output.weight" not in names)
    assert [i for i, k in enumerate(c.layer_kinds) if k == ATTENTION] == [5, 11, 17]
    assert c.layer_kinds.count(SLIDING) == 15


@pytest.mark.model
@pytest.mark.slow
def test_gemma_tensors_match_gguf_reader(gemma, gemma_ref):
    assert list(gemma.tensors) == [t.name for t in gemma_ref.tensors]
    for ref in gemma_ref.tensors:
        t = gemma.tensor(ref.name)
        assert t.ggml_type == int(ref.tensor_type), ref.name
        assert t.shape == tuple(int(n) for n in reversed(ref.shape)), ref.name
        assert t.raw.dtype == np.uint8 and t.raw.ndim == 2
        assert t.raw.ctypes.data - gemma.buffer.ctypes.data == ref.data_offset, ref.name
        assert np.array_equal(t.raw.reshape(-1), ref.data.reshape(-1).view(np.uint8)), ref.name


@pytest.mark.model
def test_gemma_views_are_zero_copy(gemma):
    assert gemma.buffer.size == gemma.file_size == gemma.path.stat().st_size
    assert isinstance(gemma.buffer.base.obj, mmap.mmap)  # memoryview of the map
    for t in gemma.tensors.values():
        assert np.shares_memory(t.raw, gemma.buffer) and t.raw.base is gemma.buffer
        assert not t.raw.flags.writeable


@pytest.mark.model
def test_open_does_not_import_gguf(gemma_path, gemma):
    code = (
        "import sys; from mtpdec.loader import open_gguf; "
        f"f = open_gguf({str(gemma_path)!r}); "
        "assert 'gguf' not in sys.modules, 'gguf imported'; print(len(f.tensors))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(len(gemma.tensors))


# ---------------------------------------------------------------- small files


def test_tiny_gemma_config(tiny_gemma):
    with open_gguf(tiny_gemma) as f:
        c = f.config
        assert c.layer_kinds == (SLIDING,) * 5 + (ATTENTION,)
        assert (c.n_vocab, c.n_embd, c.head_dim_k, c.sliding_window) == (50, 64, 32, 16)
        assert c.tied_output
        assert f.tensor("blk.0.attn_q.weight").shape == (64, 64)
        assert f.get("tokenizer.ggml.tokens")[:3] == ["t0", "t1", "t2"]


@pytest.mark.parametrize(
    "extra, kinds",
    [
        ({"gemma3.attention.sliding_window_pattern": [1, 0, 1, 1, 1, 0]},
         (SLIDING, ATTENTION, SLIDING, SLIDING, SLIDING, ATTENTION)),
        ({"gemma3.attention.sliding_window": 0}, (ATTENTION,) * 6),
        ({"gemma3.feed_forward_length": [96] * 6}, (SLIDING,) * 5 + (ATTENTION,)),
    ],
)  # fmt: skip
def test_gemma_layer_plan_from_arrays(tmp_path, extra, kinds):
    """Per-layer metadata: a sliding pattern array, no window, equal per-layer values."""
    kv, tensors = gemma3_tiny()
    with open_gguf(write_gguf(tmp_path / "g.gguf", "gemma3", kv | extra, tensors)) as f:
        assert f.config.layer_kinds == kinds and f.config.n_ff == 96


def test_tiny_qwen35_config_and_data(tiny_qwen):
    ref = gguf.GGUFReader(tiny_qwen)
    with open_gguf(tiny_qwen) as f:
        c = f.config
        assert c.layer_kinds == (GDN, GDN, GDN, ATTENTION, MTP)
        assert (c.n_layer, c.n_trunk, c.n_mtp) == (5, 4, 1)
        assert (c.n_head, c.n_head_kv, c.head_dim, c.n_rot) == (2, 1, 32, 16)
        assert c.rope_sections == (3, 3, 2, 0)
        assert (c.ssm_state_size, c.ssm_group_count, c.ssm_time_step_rank) == (16, 2, 4)
        assert (c.conv_dim, c.ssm_conv_kernel, c.ssm_inner_size) == (128, 4, 64)
        assert not c.tied_output and c.n_vocab == 50
        assert np.isclose(c.rms_eps, 1e-6) and c.rope_freq_base == 1e7
        assert f.get("tokenizer.ggml.merges") == ["t 1", "t 2"]
        for r in ref.tensors:
            t = f.tensors[r.name]
            assert t.shape == tuple(int(n) for n in reversed(r.shape))
            values = t.raw.view(np.float32).reshape(t.shape)
            assert np.array_equal(values, r.data.reshape(t.shape)), r.name


def test_recurrent_layers_override(tmp_path):
    kv, tensors = qwen35_tiny()
    kv["qwen35.attention.recurrent_layers"] = [True, True, True, False, False]
    kv["qwen35.full_attention_interval"] = 2  # ignored: the array wins
    with open_gguf(write_gguf(tmp_path / "q.gguf", "qwen35", kv, tensors)) as f:
        assert f.config.layer_kinds == (GDN, GDN, GDN, ATTENTION, MTP)


def test_unused_tensor_of_unsupported_type_is_accepted(tmp_path):
    kv, tensors = gemma3_tiny()
    tensors["rope_freqs.weight"] = (64,)
    path = write_gguf(tmp_path / "g.gguf", "gemma3", kv, tensors, {"rope_freqs.weight": QT.Q8_1})
    with open_gguf(path) as f:
        assert f.tensor("rope_freqs.weight").ggml_type == GGMLType.Q8_1


def test_close_keeps_views_alive(tiny_gemma):
    f = open_gguf(tiny_gemma)
    raw = f.tensor("token_embd.weight").raw
    total = int(raw.sum())
    f.close()
    assert int(raw.sum()) == total and f.tensors == {}
    with pytest.raises(MtpdecError, match="closed"):
        f.get("tokenizer.ggml.tokens")
    del raw
    with open_gguf(tiny_gemma) as g:
        assert len(g.tensors) == 2 + 6 * 13
    assert g.tensors == {}


SCALARS = [("uint8", 200), ("int8", -3), ("uint16", 60000), ("int16", -30000),
           ("uint32", 4_000_000_000), ("int32", -7), ("float32", 0.5), ("bool", True),
           ("string", "h\u00e9llo"), ("uint64", 2**63), ("int64", -(2**40)), ("float64", 0.1)]  # fmt: skip


def test_all_value_types_and_nested_arrays(tmp_path):
    w = gguf.GGUFWriter(tmp_path / "kv.gguf", "gemma3")
    for kind, v in SCALARS:
        getattr(w, f"add_{kind}")(f"x.{kind}", v)
    w.add_array("x.nested", [[1, 2], ["a", "bc"], [[True, False]]])
    w.add_array("x.f32s", [0.5, 1.5])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with read_gguf(tmp_path / "kv.gguf") as f:
        assert [(k[2:], f.get(k)) for k in f if k[2:] in dict(SCALARS)] == SCALARS
        ints, strs, (bools,) = f.get("x.nested")
        assert ints.tolist() == [1, 2] and strs == ["a", "bc"] and bools.tolist() == [True, False]
        assert f.get("x.f32s").dtype == np.float32 and f.get("x.f32s").tolist() == [0.5, 1.5]
        assert f.get("x.absent", 42) == 42 and "x.uint8" in f


def test_missing_tensor_lookup_names_it(tiny_gemma):
    with open_gguf(tiny_gemma) as f, pytest.raises(MtpdecError, match="'nope.weight'"):
        f.tensor("nope.weight")


def test_config_needs_open_gguf(tiny_gemma):
    with read_gguf(tiny_gemma) as f, pytest.raises(MtpdecError, match="open_gguf"):
        _ = f.config


def test_bad_paths(tmp_path):
    with pytest.raises(MtpdecError, match="no such file"):
        open_gguf(tmp_path / "absent.gguf")
    with pytest.raises(MtpdecError, match="is a directory"):
        open_gguf(tmp_path)


def test_opens_a_synth_qwen35_file(tmp_path):
    from mtpdec import synth

    shape = synth.SynthOverrides(layers=4, ssm_groups=2, ssm_heads=4, vocab=1024)
    out = tmp_path / "s.gguf"
    synth.write_synth(out, "qwen35-tiny", seed=0, overrides=shape, force=False, report=print)
    with open_gguf(out) as f:
        c = f.config
        assert c.layer_kinds == (GDN, GDN, GDN, ATTENTION, MTP)
        assert (c.ssm_group_count, c.ssm_time_step_rank, c.n_vocab) == (2, 4, 1024)
        assert {GGMLType(t.ggml_type).name for t in f.tensors.values()} >= {"Q4_K", "Q6_K", "F32"}


@pytest.mark.parametrize(
    ("extra", "scale"),
    [
        ({}, 1.0),
        ({"rope.scaling.type": "linear", "rope.scaling.factor": 8.0}, 0.125),
        ({"rope.scale_linear": 4.0}, 0.25),
        ({"rope.scaling.type": "none", "rope.scaling.factor": 8.0}, 1.0),
        ({"rope.scaling.type": "yarn", "rope.scaling.factor": 1.0}, 1.0),
    ],
)
def test_rope_scaling(tmp_path, extra, scale):
    for arch, make in (("gemma3", gemma3_tiny), ("qwen35", qwen35_tiny)):
        kv, tensors = make()
        kv |= {f"{arch}.{k}": v for k, v in extra.items()}
        with open_gguf(write_gguf(tmp_path / f"{arch}.gguf", arch, kv, tensors)) as f:
            assert f.config.rope_freq_scale == scale


def test_unsupported_rope_scaling_is_refused(tmp_path):
    kv, tensors = qwen35_tiny()
    kv |= {"qwen35.rope.scaling.type": "yarn", "qwen35.rope.scaling.factor": 4.0}
    with pytest.raises(MtpdecError, match="unsupported rope scaling type 'yarn'"):
        open_gguf(write_gguf(tmp_path / "q.gguf", "qwen35", kv, tensors))
