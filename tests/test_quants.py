"""Block formats: reference dequantizers vs gguf-py (bit for bit), packers, random blocks."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from mtpdec.errors import MtpdecError
from mtpdec.quants import (
    FORMATS,
    dequantize,
    dequantize_raw,
    get_format,
    make_tensor,
    quantize,
)
from mtpdec.quants.pack import random_blocks
from mtpdec.quants.types import BLOCK_SIZES, SUPPORTED, GGMLType

PLAIN = (GGMLType.F32, GGMLType.F16, GGMLType.BF16)
QUANT = tuple(t for t in SUPPORTED if t not in PLAIN)

# Byte offsets of the fp16 fields (d, dmin, m) of each block format.
F16_FIELDS: dict[GGMLType, tuple[int, ...]] = {
    GGMLType.Q8_0: (0,),
    GGMLType.Q4_0: (0,),
    GGMLType.Q5_0: (0,),
    GGMLType.Q5_1: (0, 2),
    GGMLType.Q4_K: (0, 2),
    GGMLType.Q5_K: (0, 2),
    GGMLType.Q6_K: (208,),
}

# Quant step of a block, as a function of its values x (nblocks, elems): the packers'
# round-trip error must stay within half of it (plus a few % for 6-bit/fp16 scale rounding).
_AMAX = lambda x: np.abs(x).max(axis=1)  # noqa: E731
_RANGE0 = lambda x: np.maximum(x.max(axis=1), 0) - np.minimum(x.min(axis=1), 0)  # noqa: E731
STEP = {
    GGMLType.Q8_0: lambda x: _AMAX(x) / 127,
    GGMLType.Q4_0: lambda x: _AMAX(x) / 7,
    GGMLType.Q5_0: lambda x: _AMAX(x) / 15,
    GGMLType.Q5_1: lambda x: (x.max(axis=1) - x.min(axis=1)) / 31,
    GGMLType.Q4_K: lambda x: _RANGE0(x) / 15,
    GGMLType.Q5_K: lambda x: _RANGE0(x) / 31,
    GGMLType.Q6_K: lambda x: _AMAX(x) / 31,
}


def oracle(blocks: np.ndarray, t: GGMLType) -> np.ndarray:
    """gguf-py's dequantization of uint8 (nblocks, block_bytes), as (nblocks, elems)."""
    out = gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType(int(t)))
    return np.asarray(out, dtype=np.float32).reshape(blocks.shape[0], -1)


def assert_bitwise(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    diff = np.flatnonzero(a.view(np.uint32) != b.view(np.uint32))
    assert diff.size == 0, (
        f"{diff.size} differ, first at {diff[0]}: {a.flat[diff[0]]} vs {b.flat[diff[0]]}"
    )


def fp16_pool(rng: np.random.Generator, n: int) -> np.ndarray:
    """n finite fp16 values: random bit patterns (both signs, subnormals) and specials."""
    bits = rng.integers(0, 1 << 16, n, dtype=np.uint16)
    bits = bits[(bits & 0x7C00) != 0x7C00]  # drop inf / NaN
    special = np.array([0.0, -0.0, 6e-8, -6e-8, 6.1e-5, 1.0, -1.0, 65504, -65504], np.float16)
    return np.concatenate([special.view(np.uint16), bits])


def edge_blocks(t: GGMLType, rng: np.random.Generator, n: int = 3000) -> np.ndarray:
    """Random blocks with finite fp16 scale fields, plus all-0 and all-0xFF quant blocks."""
    nbytes = BLOCK_SIZES[t][1]
    blocks = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    blocks[:40] = 0
    blocks[40:80] = 0xFF
    pool = fp16_pool(rng, 4 * n)
    for at in F16_FIELDS[t]:
        d = rng.choice(pool, n)
        d[:9], d[40:49] = pool[:9], pool[:9]  # specials on the all-0 / all-max blocks
        blocks[:, at : at + 2] = d.view(np.uint8).reshape(n, 2)
    return blocks


@pytest.mark.parametrize("t", QUANT, ids=lambda t: t.name)
def test_reference_matches_gguf_bitwise(t: GGMLType) -> None:
    blocks = edge_blocks(t, np.random.default_rng(int(t)))
    ours = FORMATS[t].dequantize(blocks)
    assert np.isfinite(ours).all()
    assert_bitwise(ours, oracle(blocks, t))


@pytest.mark.parametrize("t", PLAIN, ids=lambda t: t.name)
def test_plain_matches_gguf_bitwise(t: GGMLType) -> None:
    nbytes = BLOCK_SIZES[t][1]
    raw = np.random.default_rng(5).integers(0, 256, (20000, nbytes), dtype=np.uint8)
    ours = FORMATS[t].dequantize(raw)
    ok = ~np.isnan(ours)  # NaN payloads are not part of the contract
    assert_bitwise(ours[ok], oracle(raw, t)[ok])
    assert np.array_equal(np.isnan(oracle(raw, t)), ~ok)


def sample_values(rng: np.random.Generator, elems: int) -> np.ndarray:
    """float32 (nblocks, elems): gaussian at several scales, one-signed, constant, zero,
    outlier blocks."""
    g = rng.standard_normal((600, elems)).astype(np.float32)
    parts = [
        g[:150] * 0.01,
        g[150:300],
        g[300:450] * 300,
        np.abs(g[450:500]) + 0.5,  # all positive
        -np.abs(g[500:550]) - 2.0,  # all negative
        np.full((10, elems), 0.25, np.float32),
        np.full((10, elems), -3.0, np.float32),
        np.zeros((10, elems), np.float32),
    ]
    outlier = g[550:600] * 0.1
    outlier[:, elems // 3] = 20.0
    parts.append(outlier)
    return np.concatenate(parts).astype(np.float32)


@pytest.mark.parametrize("t", QUANT, ids=lambda t: t.name)
def test_pack_round_trip(t: GGMLType) -> None:
    fmt = FORMATS[t]
    x = sample_values(np.random.default_rng(10 + int(t)), fmt.block_elems)
    blocks = fmt.pack(x)
    assert blocks.shape == (x.shape[0], fmt.block_bytes) and blocks.dtype == np.uint8
    y = fmt.dequantize(blocks)
    assert_bitwise(y, oracle(blocks, t))  # packed blocks are valid for gguf too
    err = np.abs(y - x).max(axis=1)
    tol = 0.5 * STEP[t](x) * 1.04 + 1e-6 * _AMAX(x)
    worst = int(np.argmax(err / np.maximum(tol, 1e-30)))
    assert (err <= tol).all(), f"block {worst}: error {err[worst]} > {tol[worst]}"
    assert (y[-60:-50] == 0).all()  # zero blocks stay exactly zero


@pytest.mark.parametrize("t", PLAIN, ids=lambda t: t.name)
def test_pack_plain(t: GGMLType) -> None:
    x = sample_values(np.random.default_rng(3), 1)
    y = FORMATS[t].dequantize(FORMATS[t].pack(x))
    rel = {GGMLType.F32: 0.0, GGMLType.F16: 2.0**-11, GGMLType.BF16: 2.0**-8}[t]
    subnormal = 2.0**-25 if t == GGMLType.F16 else 0.0  # half the fp16 subnormal spacing
    assert (np.abs(y - x) <= rel * np.abs(x) + subnormal).all()


def test_pack_bf16_matches_gguf() -> None:
    u = np.random.default_rng(4).integers(0, 1 << 32, 50000, dtype=np.uint32)
    x = u.view(np.float32).reshape(-1, 1)
    ours = FORMATS[GGMLType.BF16].pack(x)
    theirs = gguf.quants.quantize(x, gguf.GGMLQuantizationType.BF16)
    assert np.array_equal(ours.reshape(-1), np.asarray(theirs).view(np.uint8).reshape(-1))


@pytest.mark.parametrize("t", SUPPORTED, ids=lambda t: t.name)
def test_random_blocks(t: GGMLType) -> None:
    fmt = FORMATS[t]
    nblocks = 65536 // fmt.block_elems
    blocks = random_blocks(t, nblocks, np.random.default_rng(7), 0.02)
    assert blocks.shape == (nblocks, fmt.block_bytes) and blocks.dtype == np.uint8
    values = fmt.dequantize(blocks)
    assert np.isfinite(values).all()
    assert 0.015 < values.std() < 0.027
    again = random_blocks(t, nblocks, np.random.default_rng(7), 0.02)
    assert np.array_equal(blocks, again)
    if t in F16_FIELDS:
        assert_bitwise(values, oracle(blocks, t))


def test_random_blocks_rejects_huge_scale_and_unsupported_type() -> None:
    with pytest.raises(MtpdecError, match="Q4_K"):
        random_blocks(GGMLType.Q4_K, 4, np.random.default_rng(0), 1e9)
    with pytest.raises(MtpdecError, match="Q2_K"):
        random_blocks(GGMLType.Q2_K, 4, np.random.default_rng(0), 1.0)


@pytest.mark.parametrize("t", SUPPORTED, ids=lambda t: t.name)
@pytest.mark.parametrize("shape", [(512,), (3, 512), (2, 3, 256)])
def test_quantize_dequantize_shapes(t: GGMLType, shape: tuple[int, ...]) -> None:
    values = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    raw = quantize(values, t)
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    fmt = get_format(t)
    assert raw.shape == (rows, shape[-1] // fmt.block_elems * fmt.block_bytes)
    assert raw.dtype == np.uint8
    tensor = make_tensor("w", values, t)
    assert tensor.shape == shape and tensor.ggml_type == int(t) and tensor.raw.shape == raw.shape
    out = dequantize(tensor)
    assert out.shape == shape and out.dtype == np.float32
    assert np.array_equal(out, dequantize_raw(raw, t, shape))
    assert np.abs(out - values).max() <= 0.1 * np.abs(values).max()  # 4-bit: half a step is 1/14


@pytest.mark.parametrize("t", QUANT, ids=lambda t: t.name)
def test_quantize_bad_cols(t: GGMLType) -> None:
    cols = FORMATS[t].block_elems + 16
    with pytest.raises(MtpdecError, match=str(cols)):
        quantize(np.zeros((2, cols), np.float32), t)


def test_dequantize_raw_wrong_size() -> None:
    raw = np.zeros((2, 144), np.uint8)
    with pytest.raises(MtpdecError, match="blk.0.ffn_up.weight"):
        dequantize_raw(raw, GGMLType.Q4_K, (2, 512), name="blk.0.ffn_up.weight")


@pytest.mark.parametrize(("type_id", "words"), [(99, ["99"]), (10, ["Q2_K"]), (15, ["Q8_K"])])
def test_get_format_errors_name_tensor_and_type(type_id: int, words: list[str]) -> None:
    with pytest.raises(MtpdecError) as info:
        get_format(type_id, "blk.3.attn_q.weight")
    for word in [*words, "blk.3.attn_q.weight"]:
        assert word in str(info.value)


def test_registry_covers_supported() -> None:
    assert set(FORMATS) == set(SUPPORTED)
    for t, fmt in FORMATS.items():
        assert (fmt.ggml_type, fmt.name) == (t, t.name)
        assert (fmt.block_elems, fmt.block_bytes) == BLOCK_SIZES[t]
        assert get_format(int(t)) is fmt


def test_type_table_matches_gguf() -> None:
    assert set(BLOCK_SIZES) == set(GGMLType)
    for t in GGMLType:
        theirs = gguf.GGMLQuantizationType[t.name]
        assert int(theirs) == int(t), t.name
        assert tuple(gguf.GGML_QUANT_SIZES[theirs]) == BLOCK_SIZES[t], t.name
