"""`mtpdec info`: tables, --json, and one-line errors (exit 2) for bad files."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from gguf_mutants import rebuild, scan
from ggufs import QT, gemma3_tiny, qwen35_tiny, write_gguf
from typer.testing import CliRunner

from mtpdec.cli import app
from mtpdec.errors import MtpdecError
from mtpdec.info import layer_runs, runs_text
from mtpdec.loader import open_gguf, read_gguf

runner = CliRunner()


def patch(path: Path, old: bytes, new: bytes) -> None:
    """Replace a unique byte string in a file."""
    data = path.read_bytes()
    assert data.count(old) == 1, old
    path.write_bytes(data.replace(old, new))


def set_tensor_type(path: Path, name: str, type_id: int) -> None:
    """Overwrite the type id in a tensor's info record."""
    data = bytearray(path.read_bytes())
    key = struct.pack("<Q", len(name)) + name.encode()
    at = data.index(key) + len(key)
    (n_dims,) = struct.unpack_from("<I", data, at)
    struct.pack_into("<I", data, at + 4 + 8 * n_dims, type_id)
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- bad files

BadCase = Callable[[Path], Path]


def _truncated_tensor(tmp: Path) -> Path:
    path = write_gguf(tmp / "t.gguf", "gemma3", *gemma3_tiny())
    with read_gguf(path) as f:
        last = list(f.tensors.values())[-1]
        end = last.raw.ctypes.data - f.buffer.ctypes.data + last.nbytes
    path.write_bytes(path.read_bytes()[: end - 1])
    return path


def _cut(n: int) -> BadCase:
    def make(tmp: Path) -> Path:
        path = write_gguf(tmp / "t.gguf", "gemma3", *gemma3_tiny())
        path.write_bytes(path.read_bytes()[:n])
        return path

    return make


def _variant(arch="gemma3", drop_kv=(), drop=(), ne=None, types=None, kv=None) -> BadCase:
    def make(tmp: Path) -> Path:
        meta, tensors = gemma3_tiny() if arch != "qwen35" else qwen35_tiny()
        for key in drop_kv:
            del meta[key]
        for name in drop:
            del tensors[name]
        tensors |= ne or {}
        meta |= kv or {}
        return write_gguf(tmp / "v.gguf", arch, meta, tensors, types)

    return make


def _patched(fn: Callable[[Path], None], base: BadCase | None = None) -> BadCase:
    def make(tmp: Path) -> Path:
        path = (base or _variant())(tmp)
        fn(path)
        return path

    return make


def _field_after(path: Path, key: str, skip: int = 0) -> int:
    """Byte offset just after a length-prefixed string (metadata key or tensor name),
    plus ``skip`` bytes."""
    data = path.read_bytes()
    tag = struct.pack("<Q", len(key)) + key.encode()
    assert data.count(tag) == 1, key
    return data.index(tag) + len(tag) + skip


def _set_u32(key: str, value: int, skip: int = 0) -> Callable[[Path], None]:
    return lambda p: _set(p, _field_after(p, key, skip), struct.pack("<I", value))


def _set_u64(key: str, value: int, skip: int = 0) -> Callable[[Path], None]:
    return lambda p: _set(p, _field_after(p, key, skip), struct.pack("<Q", value))


def _regrouped(kind: str, which: int) -> Callable[[Path], None]:
    """Repeat metadata pair / tensor info ``which`` right after itself."""

    def fn(path: Path) -> None:
        data = path.read_bytes()
        lay = scan(data)
        kv = [data[a:b] for a, b in lay.kv]
        tensors = [data[a:b] for a, b in lay.tensors]
        target = kv if kind == "kv" else tensors
        target.insert(which, target[which])
        path.write_bytes(rebuild(data, lay, kv, tensors))

    return fn


def _misaligned(path: Path) -> None:
    data = path.read_bytes()
    at = scan(data).offsets[3]
    (old,) = struct.unpack_from("<Q", data, at)
    _set(path, at, struct.pack("<Q", old + 4))


FFN_DOWN_0 = "blk.0.ffn_down.weight"
BAD: dict[str, tuple[BadCase, str]] = {
    "not_gguf": (lambda t: _write(t / "x.gguf", b"PK\x03\x04" + bytes(100)), "not a GGUF file"),
    "empty": (lambda t: _write(t / "x.gguf", b""), "not a GGUF file"),
    "version": (_patched(lambda p: _set(p, 4, b"\x07\x00\x00\x00")), "unsupported GGUF version 7"),
    "header_cut": (_cut(20), "truncated file"),
    "kv_cut": (_cut(300), "truncated file"),
    "tensor_data_cut": (_truncated_tensor, "truncated file: tensor 'blk.5.post_ffw_norm.weight'"),
    "unknown_type_id": (
        _patched(lambda p: set_tensor_type(p, "blk.0.ffn_up.weight", 99)),
        "tensor 'blk.0.ffn_up.weight' has unknown GGML type id 99",
    ),
    "unsupported_type": (
        _variant(types={"blk.1.ffn_up.weight": QT.Q8_1}),
        "tensor 'blk.1.ffn_up.weight' has unsupported type Q8_1",
    ),
    "missing_tensor": (
        _variant(drop=["blk.2.attn_k_norm.weight"]),
        "missing tensor 'blk.2.attn_k_norm.weight' required by gemma3",
    ),
    "missing_mtp_tensor": (
        _variant("qwen35", drop=["blk.4.nextn.eh_proj.weight"]),
        "missing tensor 'blk.4.nextn.eh_proj.weight' required by qwen35",
    ),
    "wrong_shape": (
        _variant(ne={"blk.3.ffn_down.weight": (64, 64)}),
        "tensor 'blk.3.ffn_down.weight' has shape (64, 64), expected (64, 96)",
    ),
    "wrong_gdn_shape": (
        _variant("qwen35", ne={"blk.1.ssm_conv1d.weight": (3, 128)}),
        "tensor 'blk.1.ssm_conv1d.weight' has shape (128, 3), expected (128, 4)",
    ),
    "unknown_arch": (
        _variant("llama"),
        "unsupported architecture 'llama' (supported: gemma3, qwen35)",
    ),
    "no_arch": (
        _patched(lambda p: patch(p, b"general.architecture", b"general.architectura")),
        "missing required metadata key 'general.architecture'",
    ),
    "missing_key": (
        _variant(drop_kv=["gemma3.embedding_length"]),
        "missing required metadata key 'gemma3.embedding_length'",
    ),
    "missing_ssm_key": (
        _variant("qwen35", drop_kv=["qwen35.ssm.state_size"]),
        "missing required metadata key 'qwen35.ssm.state_size'",
    ),
    "big_endian": (
        _patched(lambda p: _set(p, 4, b"\x00\x00\x00\x03")),
        "big-endian GGUF files are not supported",
    ),
    "duplicate_key": (_patched(_regrouped("kv", 3)), "duplicate metadata key"),
    "duplicate_tensor": (_patched(_regrouped("tensors", 5)), "duplicate tensor"),
    "alignment_not_power_of_two": (
        _variant(kv={"general.alignment": 48}),
        "general.alignment 48 is not a power of two",
    ),
    "misaligned_offset": (_patched(_misaligned), "is not aligned to 32"),
    "n_dims": (_patched(_set_u32(FFN_DOWN_0, 5)), f"tensor '{FFN_DOWN_0}' has 5 dimensions"),
    "no_dims": (_patched(_set_u32(FFN_DOWN_0, 0)), f"tensor '{FFN_DOWN_0}' has 0 dimensions"),
    "unknown_value_type": (
        _patched(_set_u32("gemma3.block_count", 13)),
        "metadata key 'gemma3.block_count' has unknown value type 13",
    ),
    "unknown_array_type": (
        _patched(_set_u32("tokenizer.ggml.tokens", 13, skip=4)),
        "metadata key 'tokenizer.ggml.tokens' has unknown array type 13",
    ),
    "partial_block": (
        _patched(_set_u64(FFN_DOWN_0, 80, skip=4), _variant(types={FFN_DOWN_0: QT.Q8_0})),
        f"tensor '{FFN_DOWN_0}' row length 80 is not a multiple of the Q8_0 block (32)",
    ),
    "key_length_past_the_end": (
        _patched(lambda p: _set(p, 24, struct.pack("<Q", 2**64 - 1))),
        "truncated file",
    ),
    "string_length_past_the_end": (  # the 2nd token's length: inside a skipped array
        _patched(_set_u64("t0", 2**64 - 1)),
        "truncated file",
    ),
    "dimension_past_the_end": (
        _patched(_set_u64(FFN_DOWN_0, 2**39, skip=4 + 8)),
        f"truncated file: tensor '{FFN_DOWN_0}' data ends at byte",
    ),
    "empty_with_an_absurd_row": (
        _patched(
            lambda p: (_set_u64(FFN_DOWN_0, 2**62, skip=4)(p), _set_u64(FFN_DOWN_0, 0, 12)(p))
        ),
        f"tensor '{FFN_DOWN_0}' has a dimension of {2**62} (at most 2**40)",
    ),
    "per_layer_values": (
        _variant(kv={"gemma3.feed_forward_length": [96, 96, 80, 96, 96, 96]}),
        "per-layer values of 'gemma3.feed_forward_length' are not supported",
    ),
    "non_integer_metadata": (
        _variant(kv={"gemma3.block_count": "six"}),
        "metadata key 'gemma3.block_count' is not an integer: 'six'",
    ),
    "block_count_too_large": (
        _variant(kv={"gemma3.block_count": 600}),
        "metadata block_count 600 is not within 1..512",
    ),
    "non_finite_metadata": (
        _variant(kv={"gemma3.attention.layer_norm_rms_epsilon": float("nan")}),
        "metadata key 'gemma3.attention.layer_norm_rms_epsilon' is not a finite number",
    ),
    "zero_norm_epsilon": (
        _variant(kv={"gemma3.attention.layer_norm_rms_epsilon": 0.0}),
        "metadata key 'gemma3.attention.layer_norm_rms_epsilon' must be positive, got 0.0",
    ),
    "zero_rope_base": (
        _variant(kv={"gemma3.rope.freq_base": 0.0}),
        "metadata key 'gemma3.rope.freq_base' must be positive, got 0.0",
    ),
    "non_string_metadata": (
        _variant(kv={"gemma3.rope.scaling.type": 5}),
        "metadata key 'gemma3.rope.scaling.type' is not a string: 5",
    ),
    "negative_rope_scaling": (
        _variant(kv={"gemma3.rope.scaling.factor": -2.0}),
        "rope scaling factor must be positive, got -2.0",
    ),
    "zero_width": (
        _variant(kv={"gemma3.embedding_length": 0}),
        "metadata embedding_length must be positive, got 0",
    ),
    "per_layer_array_length": (
        _variant(kv={"gemma3.attention.sliding_window_pattern": [1, 1, 1, 1, 0]}),
        "metadata key 'gemma3.attention.sliding_window_pattern' has 5 entries, expected 6",
    ),
    "no_token_embd": (
        _variant(drop=["token_embd.weight"]),
        "missing tensor 'token_embd.weight' required by gemma3",
    ),
    "token_embd_width": (
        _variant(ne={"token_embd.weight": (32, 50)}),
        "tensor 'token_embd.weight' has shape (50, 32), expected (n_vocab, 64)",
    ),
    "mtp_layers_too_many": (
        _variant("qwen35", kv={"qwen35.nextn_predict_layers": 5}),
        "nextn_predict_layers 5 must be below block_count 5",
    ),
    "value_length": (
        _variant("qwen35", kv={"qwen35.attention.value_length": 16}),
        "attention.value_length 16 != key_length 32",
    ),
    "ssm_inner_size": (
        _variant("qwen35", kv={"qwen35.ssm.inner_size": 60}),
        "ssm.inner_size 60 != time_step_rank * state_size 64",
    ),
    "odd_rope_dims": (
        _variant("qwen35", kv={"qwen35.rope.dimension_count": 15}),
        "rope.dimension_count 15 must be even and in 1..32",
    ),
    "non_integer_array": (
        _variant("qwen35", kv={"qwen35.attention.recurrent_layers": "x"}),
        "metadata key 'qwen35.attention.recurrent_layers' is not an integer array: 'x'",
    ),
    "inconsistent_heads": (
        _variant(kv={"gemma3.attention.head_count_kv": 3}),
        "head_count 2 is not a multiple of attention.head_count_kv 3",
    ),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _set(path: Path, at: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[at : at + len(data)] = data
    path.write_bytes(bytes(raw))


def _info(*args: str):
    return runner.invoke(app, ["info", *args])


def test_layer_runs():
    kinds = ["gdn"] * 3 + ["attention"] + ["gdn"] * 3 + ["attention", "mtp"]
    runs = layer_runs(kinds)
    assert runs == [
        (0, 2, "gdn"),
        (3, 3, "attention"),
        (4, 6, "gdn"),
        (7, 7, "attention"),
        (8, 8, "mtp"),
    ]
    assert runs_text(runs) == "0-2 gdn, 3 attention, 4-6 gdn, 7 attention, 8 mtp"
    assert layer_runs([]) == []


@pytest.mark.model
@pytest.mark.slow
def test_info_gemma_json_matches_gguf_reader(gemma_path, gemma_ref):
    result = _info(str(gemma_path), "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)

    def meta(key: str):
        return gemma_ref.fields[f"gemma3.{key}"].contents()

    assert facts["architecture"] == gemma_ref.fields["general.architecture"].contents()
    assert facts["file_size"] == gemma_path.stat().st_size
    hp = facts["hyperparameters"]
    assert hp["n_vocab"] == len(gemma_ref.fields["tokenizer.ggml.tokens"].data)
    assert (hp["n_embd"], hp["n_layer"], hp["sliding_window"]) == (
        meta("embedding_length"),
        meta("block_count"),
        meta("attention.sliding_window"),
    )
    want_types: dict[str, int] = {}
    want_bytes: dict[str, int] = {}
    for t in gemma_ref.tensors:
        want_types[t.tensor_type.name] = want_types.get(t.tensor_type.name, 0) + 1
        want_bytes[t.tensor_type.name] = want_bytes.get(t.tensor_type.name, 0) + int(t.n_bytes)
    got = {t["type"]: (t["count"], t["bytes"]) for t in facts["tensor_types"]}
    assert got == {k: (want_types[k], want_bytes[k]) for k in want_types}
    assert facts["n_tensors"] == len(gemma_ref.tensors) and facts["unused_tensors"] == []
    assert sum(facts["layer_plan"]["counts"].values()) == meta("block_count")


@pytest.mark.model
def test_info_gemma_tables(gemma_path):
    result = _info(str(gemma_path))
    assert result.exit_code == 0, result.output
    for text in ("gemma3", "n_vocab", "sliding", "attention", "Q8_0", "total"):
        assert text in result.stdout, text


def test_info_qwen35_plan(tmp_path):
    path = write_gguf(tmp_path / "q.gguf", "qwen35", *qwen35_tiny())
    result = _info(str(path), "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["layer_plan"]["text"] == "0-2 gdn, 3 attention, 4 mtp"
    hp = facts["hyperparameters"]
    assert (hp["n_trunk"], hp["n_mtp"], hp["ssm_time_step_rank"]) == (4, 1, 4)
    assert hp["rope_sections"] == [3, 3, 2, 0]
    kernels = facts["kernels"]
    assert kernels["instruction_path"] == kernels["available_paths"][0]
    assert kernels["default_activations"] == "q8"
    assert set(kernels["q8_by_type"]) == {t["type"] for t in facts["tensor_types"]}
    gpu = facts["gpu"]
    covered = {"F32", "F16", "Q8_0", "Q5_0", "Q4_K", "Q5_K", "Q6_K"}  # kernels/matvec.cu
    types = {t["type"] for t in facts["tensor_types"]}
    assert gpu["types_without_gpu_matvec"] == sorted(types - covered)
    assert isinstance(gpu["usable"], bool) and (gpu["usable"] or gpu["reason"])
    table = _info(str(path))
    assert table.exit_code == 0 and "3 gdn, 1 attention, 1 mtp" in table.stdout
    assert f"integer dot path {kernels['instruction_path']}" in table.stdout
    assert "\ngpu: " in table.stdout


def test_info_lists_unused_tensors(tmp_path):
    kv, tensors = gemma3_tiny()
    tensors["rope_freqs.weight"] = (64,)
    facts = json.loads(
        _info(str(write_gguf(tmp_path / "g.gguf", "gemma3", kv, tensors)), "--json").stdout
    )
    assert facts["unused_tensors"] == ["rope_freqs.weight"]


@pytest.mark.parametrize("case", list(BAD))
def test_open_gguf_bad_file_raises_one_line(case, tmp_path):
    make, fragment = BAD[case]
    path = make(tmp_path)
    before = path.read_bytes()
    with pytest.raises(MtpdecError) as err:
        open_gguf(path)
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg
    assert path.read_bytes() == before


@pytest.mark.parametrize("case", list(BAD))
def test_info_bad_file_exits_2_with_one_line(case, tmp_path):
    make, fragment = BAD[case]
    path = make(tmp_path)
    before = path.read_bytes()
    result = _info(str(path))
    assert result.exit_code == 2, (result.exception, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtpdec: error: "), result.stderr
    assert fragment in lines[0] and str(path) in lines[0]
    assert result.stdout == ""
    assert path.read_bytes() == before


@pytest.mark.parametrize("name", ["absent.gguf", "."])
def test_info_bad_path(name, tmp_path):
    result = _info(str(tmp_path / name))
    assert result.exit_code == 2
    assert result.stderr.startswith("mtpdec: error: ") and len(result.stderr.splitlines()) == 1


def test_info_subprocess_error_has_no_traceback(tmp_path):
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(8))  # header cut short
    out = subprocess.run(
        [sys.executable, "-c", "from mtpdec.cli import app; app()", "info", str(path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr == f"mtpdec: error: {path}: truncated file: 16 bytes, header needs 24\n"
    assert out.stdout == ""


def test_info_does_not_import_numba(tmp_path):
    """`info` (including its kernel facts) starts without Numba's import cost."""
    import subprocess
    import sys

    path = write_gguf(tmp_path / "q.gguf", "qwen35", *qwen35_tiny())
    code = (
        "import io, contextlib, sys\n"
        "from mtpdec.info import run_info\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    run_info({str(path)!r}, True)\n"
        "print('numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
