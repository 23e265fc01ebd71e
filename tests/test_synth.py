"""`mtpdec synth`: tensor plan, file contents, option errors, and (when installed) llama.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mtpdec.cli import app
from mtpdec.quants.types import GGMLType
from mtpdec.synth import PRESETS, SynthOverrides, resolve_shape, write_synth
from mtpdec.synth.plan import tensor_plan
from mtpdec.synth.vocab import MIN_VOCAB, SPECIAL_TOKENS, build_vocab

runner = CliRunner()

# A file with H_k < H_v (the 27B layout), small enough for a test.
HK_LT_HV = ["--ssm-groups", "2", "--ssm-heads", "4", "--layers", "4", "--vocab", "1024"]


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny.gguf"
    write_synth(out, "qwen35-tiny", seed=0, overrides=SynthOverrides(), force=False, report=_quiet)
    return out


@pytest.fixture(scope="module")
def hk_lt_hv(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "hk_lt_hv.gguf"
    result = runner.invoke(app, ["synth", str(out), "--preset", "qwen35-tiny", *HK_LT_HV])
    assert result.exit_code == 0, result.output
    return out


# ---------------------------------------------------------------- plan (no files)


def test_27b_plan_matches_llama_cpp_shapes():
    shape = resolve_shape("qwen35-27b", SynthOverrides())
    plan = {t.name: t for t in tensor_plan(shape)}
    kinds = [shape.layer_kind(i) for i in range(shape.n_layer_all)]
    assert kinds.count("gdn") == 48 and kinds.count("attention") == 16 and kinds[64] == "mtp"
    assert [i for i, k in enumerate(kinds) if k == "attention"][:3] == [3, 7, 11]
    expect = {
        "token_embd.weight": ((5120, 248320), GGMLType.Q4_K),
        "output.weight": ((5120, 248320), GGMLType.Q6_K),
        "blk.0.attn_qkv.weight": ((5120, 2 * 16 * 128 + 48 * 128), None),
        "blk.0.attn_gate.weight": ((5120, 48 * 128), GGMLType.Q4_K),
        "blk.0.ssm_conv1d.weight": ((4, 10240), GGMLType.F32),
        "blk.0.ssm_a": ((48,), GGMLType.F32),
        "blk.0.ssm_dt.bias": ((48,), GGMLType.F32),
        "blk.0.ssm_beta.weight": ((5120, 48), GGMLType.Q4_K),
        "blk.0.ssm_alpha.weight": ((5120, 48), GGMLType.Q4_K),
        "blk.0.ssm_norm.weight": ((128,), GGMLType.F32),
        "blk.0.ssm_out.weight": ((6144, 5120), GGMLType.Q4_K),
        "blk.3.attn_q.weight": ((5120, 2 * 24 * 256), GGMLType.Q4_K),
        "blk.3.attn_k.weight": ((5120, 4 * 256), GGMLType.Q4_K),
        "blk.3.attn_v.weight": ((5120, 4 * 256), None),
        "blk.3.attn_output.weight": ((24 * 256, 5120), GGMLType.Q4_K),
        "blk.3.attn_q_norm.weight": ((256,), GGMLType.F32),
        "blk.3.ffn_down.weight": ((17408, 5120), None),
        "blk.64.nextn.eh_proj.weight": ((10240, 5120), GGMLType.Q4_K),
        "blk.64.nextn.enorm.weight": ((5120,), GGMLType.F32),
        "blk.64.nextn.hnorm.weight": ((5120,), GGMLType.F32),
        "blk.64.nextn.shared_head_norm.weight": ((5120,), GGMLType.F32),
        "blk.64.attn_q.weight": ((5120, 12288), GGMLType.Q4_K),
    }
    for name, (ne, ggml_type) in expect.items():
        assert plan[name].ne == ne, name
        if ggml_type is not None:
            assert plan[name].ggml_type == ggml_type, name
    assert "blk.64.attn_qkv.weight" not in plan and "blk.65.attn_norm.weight" not in plan
    size = sum(t.nbytes for t in plan.values())
    assert 15 * 2**30 < size < 17 * 2**30  # ~16 GB as Q4_K_M
    # the Q4_K_M mix: some attn_v/attn_qkv and ffn_down in Q6_K, the rest Q4_K
    for suffix in ("ffn_down.weight", "attn_qkv.weight"):
        types = {t.ggml_type for n, t in plan.items() if n.endswith(suffix)}
        assert types == {GGMLType.Q4_K, GGMLType.Q6_K}, suffix


def test_08b_plan_is_tied():
    shape = resolve_shape("qwen35-0.8b", SynthOverrides())
    plan = {t.name: t for t in tensor_plan(shape)}
    assert "output.weight" not in plan
    assert plan["token_embd.weight"].ggml_type == GGMLType.Q6_K  # it is the LM head
    assert plan["blk.0.attn_qkv.weight"].ne == (1024, 3 * 16 * 128)
    assert plan["blk.24.nextn.eh_proj.weight"].ne == (2048, 1024)


def test_tiny_plan_exercises_fallback_types():
    plan = tensor_plan(resolve_shape("qwen35-tiny", SynthOverrides()))
    types = {t.ggml_type for t in plan}
    assert types == {GGMLType.F32, GGMLType.Q4_K, GGMLType.Q6_K, GGMLType.Q5_0, GGMLType.Q8_0}
    downs = {t.ggml_type for t in plan if t.name.endswith("ffn_down.weight")}
    assert downs == {GGMLType.Q5_0, GGMLType.Q8_0}  # 640 is not a multiple of 256


def test_no_mtp_and_layer_override():
    shape = resolve_shape("qwen35-27b", SynthOverrides(layers=2, mtp=False))
    names = [t.name for t in tensor_plan(shape)]
    assert shape.n_layer_all == 2
    assert not any(".nextn." in n for n in names)
    assert not any(n.startswith("blk.2.") for n in names)


# ---------------------------------------------------------------- vocabulary


def test_vocab_is_valid_byte_level_bpe():
    v = build_vocab(4096)
    assert len(v.tokens) == len(v.token_types) == 4096
    assert len(set(v.tokens)) == 4096
    index = {t: i for i, t in enumerate(v.tokens)}
    for merge in v.merges:
        a, b = merge.split(" ")
        assert a in index and b in index and a + b in index, merge
    assert len(v.merges) > 3000  # real merges, not just bytes
    specials = [text for text, _ in SPECIAL_TOKENS]
    assert v.tokens[v.eos_id] == "<|im_end|>" and v.tokens[v.bos_id] == "<|endoftext|>"
    assert set(specials) <= set(v.tokens)
    big = build_vocab(20_000)
    assert big.tokens[:256] == v.tokens[:256]
    assert big.merges[: len(v.merges)] == v.merges  # deterministic, prefix-stable
    assert big.tokens[-1] == "[PAD19999]"
    assert len(build_vocab(MIN_VOCAB).tokens) == MIN_VOCAB


# ---------------------------------------------------------------- the file


def test_tiny_file_reads_with_gguf_reader(tiny):
    import gguf

    reader = gguf.GGUFReader(tiny)
    shape = PRESETS["qwen35-tiny"]
    plan = tensor_plan(shape)
    assert [t.name for t in reader.tensors] == [t.name for t in plan]
    for rt, t in zip(reader.tensors, plan, strict=True):
        assert tuple(int(x) for x in rt.shape) == t.ne, t.name
        assert int(rt.tensor_type) == int(t.ggml_type), t.name
        assert rt.n_bytes == t.nbytes, t.name

    def field(key):
        f = reader.fields[key]
        return f.contents()

    assert field("general.architecture") == "qwen35"
    assert field("qwen35.block_count") == 9
    assert field("qwen35.nextn_predict_layers") == 1
    assert field("qwen35.embedding_length") == 256
    assert field("qwen35.ssm.group_count") == 2
    assert field("qwen35.rope.dimension_sections") == [11, 11, 10, 0]
    assert field("qwen35.attention.recurrent_layers") == [
        True, True, True, False, True, True, True, False, False
    ]  # fmt: skip
    assert field("tokenizer.ggml.model") == "gpt2"
    assert field("tokenizer.ggml.pre") == "qwen35"
    assert len(field("tokenizer.ggml.tokens")) == 4096

    by_name = {t.name: t for t in reader.tensors}
    ssm_a = np.asarray(by_name["blk.0.ssm_a"].data)
    assert (ssm_a < 0).all()
    norm = np.asarray(by_name["output_norm.weight"].data)
    assert 0.8 < norm.mean() < 1.2


def test_tiny_values_dequantize_to_small_finite_numbers(tiny):
    import gguf

    reader = gguf.GGUFReader(tiny)
    plan = {t.name: t for t in tensor_plan(PRESETS["qwen35-tiny"])}
    for t in reader.tensors:
        if t.tensor_type == gguf.GGMLQuantizationType.F32:
            continue
        w = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        assert np.isfinite(w).all(), t.name
        assert 0 < float(np.abs(w).max()) < 50, t.name
        if w.size >= 64 * 256:  # std as planned (gain / sqrt(row length))
            assert 0.8 < float(w.std()) / plan[t.name].scale < 1.25, t.name


def test_hk_lt_hv_file(hk_lt_hv):
    import gguf

    reader = gguf.GGUFReader(hk_lt_hv)
    by_name = {t.name: t for t in reader.tensors}
    assert reader.fields["qwen35.ssm.group_count"].contents() == 2
    assert reader.fields["qwen35.ssm.time_step_rank"].contents() == 4
    assert tuple(int(x) for x in by_name["blk.0.attn_qkv.weight"].shape) == (256, 2 * 256 + 512)
    assert tuple(int(x) for x in by_name["blk.0.ssm_out.weight"].shape) == (512, 256)
    assert "blk.4.nextn.eh_proj.weight" in by_name


def test_same_seed_same_bytes(tmp_path):
    small = SynthOverrides(layers=1, vocab=512, mtp=False)
    paths = [tmp_path / f"{i}.gguf" for i in range(3)]
    for path, seed in zip(paths, (7, 7, 8), strict=True):
        write_synth(path, "qwen35-tiny", seed=seed, overrides=small, force=False, report=_quiet)
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b
    assert a != c and len(a) == len(c)


def _open_gguf():
    from mtpdec import open_gguf

    return open_gguf


@pytest.mark.parametrize("which", ["tiny", "hk_lt_hv"])
def test_open_gguf_reads_config_and_tensors(which, request):
    path = request.getfixturevalue(which)
    with _open_gguf()(path) as g:
        c = g.config
        shape = resolve_shape(
            "qwen35-tiny", SynthOverrides() if which == "tiny" else SynthOverrides(
                layers=4, ssm_groups=2, ssm_heads=4, vocab=1024
            )
        )  # fmt: skip
        kinds = tuple(shape.layer_kind(i) for i in range(shape.n_layer_all))
        assert c.layer_kinds == kinds
        assert c.n_trunk == shape.n_layer and c.n_mtp == 1 and c.n_layer == shape.n_layer_all
        assert (c.n_embd, c.n_ff, c.n_vocab) == (shape.n_embd, shape.n_ff, shape.n_vocab)
        assert (c.n_head, c.n_head_kv, c.head_dim, c.n_rot) == (
            shape.n_head, shape.n_head_kv, shape.head_dim, shape.n_rot
        )  # fmt: skip
        assert (c.ssm_group_count, c.ssm_time_step_rank) == (shape.ssm_groups, shape.ssm_heads)
        assert not c.tied_output
        plan = tensor_plan(shape)
        assert set(g.tensors) == {t.name for t in plan}
        for t in plan:
            tensor = g.tensors[t.name]
            assert tensor.shape == tuple(reversed(t.ne)), t.name  # numpy order
            assert tensor.ggml_type == int(t.ggml_type), t.name


def test_open_gguf_reads_the_tied_layout(tmp_path):
    out = tmp_path / "tied.gguf"
    small = SynthOverrides(layers=4, n_embd=256, n_head=2, n_head_kv=1, ssm_groups=2,
                           ssm_heads=2, vocab=512)  # fmt: skip
    write_synth(out, "qwen35-0.8b", seed=0, overrides=small, force=False, report=_quiet)
    with _open_gguf()(out) as g:
        assert g.config.tied_output
        assert "output.weight" not in g.tensors
        assert g.tensors["token_embd.weight"].ggml_type == int(GGMLType.Q6_K)


# ---------------------------------------------------------------- command line


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "qwen35-huge"], "unknown preset"),
        (["--preset", "qwen35-tiny", "--ssm-groups", "3", "--ssm-heads", "4"], "multiple of"),
        (["--preset", "qwen35-tiny", "--n-head", "6", "--n-head-kv", "4"], "--n-head-kv"),
        (["--preset", "qwen35-tiny", "--n-embd", "100"], "--n-embd 100"),
        (["--preset", "qwen35-tiny", "--layers", "0"], "--layers"),
        (["--preset", "qwen35-tiny", "--vocab", "100"], "--vocab 100"),
        (["--preset", "qwen35-tiny", "--seed", "-1"], "--seed"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    out = tmp_path / "x.gguf"
    result = runner.invoke(app, ["synth", str(out), *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtpdec: error:"), result.stderr
    assert message in lines[0]
    assert not out.exists()


def test_missing_directory(tmp_path):
    out = tmp_path / "nope" / "x.gguf"
    result = runner.invoke(app, ["synth", str(out), "--preset", "qwen35-tiny"])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_no_overwrite_without_force(tmp_path):
    out = tmp_path / "x.gguf"
    out.write_bytes(b"keep me")
    args = ["synth", str(out), "--preset", "qwen35-tiny", "--layers", "1", "--vocab", "512"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "--force" in result.stderr
    assert out.read_bytes() == b"keep me"
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"GGUF"
    assert not (tmp_path / "x.gguf.partial").exists()


# ---------------------------------------------------------------- llama.cpp


def _llama_logits(path: Path, text: bytes) -> tuple[list[int], np.ndarray]:
    llama_cpp = pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (pip install mtpdec[ref])"
    )
    llm = llama_cpp.Llama(
        model_path=str(path), logits_all=True, n_ctx=64, n_batch=64, verbose=False
    )
    try:
        tokens = llm.tokenize(text, add_bos=False, special=False)
        llm.eval(tokens)
        logits = np.array(llm.scores[: len(tokens)], dtype=np.float32)
    finally:
        llm.close()
    return tokens, logits


@pytest.mark.llama
@pytest.mark.parametrize("which", ["tiny", "hk_lt_hv"])
def test_llama_cpp_runs_the_file(which, request):
    path = request.getfixturevalue(which)
    tokens, logits = _llama_logits(path, b"The model returns the weights of the layer.")
    assert 3 < len(tokens) < 40  # real merges: fewer tokens than bytes
    assert np.isfinite(logits).all()
    assert (logits.std(axis=1) > 0.1).all()  # not all equal
    assert np.abs(logits[0] - logits[-1]).max() > 0.1  # depends on the input


@pytest.mark.llama
def test_llama_cpp_loads_the_mtp_block(tiny):
    """With load_mtp the NextN tensors are created too, so their names and shapes are checked."""
    llama_cpp = pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (pip install mtpdec[ref])"
    )
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.load_mtp = True
    model = llama_cpp.llama_model_load_from_file(str(tiny).encode(), params)
    assert model, "llama.cpp could not load the file with its MTP block"
    try:
        assert llama_cpp.llama_model_n_layer_nextn(model) == 1
    finally:
        llama_cpp.llama_model_free(model)


def test_all_gdn_trunk_is_written_with_a_note(tmp_path):
    lines: list[str] = []
    small = SynthOverrides(layers=2, vocab=512)
    result = write_synth(
        tmp_path / "x.gguf",
        "qwen35-tiny",
        seed=0,
        overrides=small,
        force=False,
        report=lines.append,
    )
    assert result.shape.n_layer_all == 3  # two GDN layers and the MTP block
    assert "llama.cpp aborts" in lines[0]
