"""Activation quantizers (Q8_K, Q8_0): the Numba fast path against the numpy reference bit
for bit, and the reference against independent statements of llama.cpp's rounding."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from mtpdec import MtpdecError
from mtpdec.cpu.actquant import quantize_rows
from mtpdec.quants.activations import (
    Q8_0,
    Q8_K,
    Q8_K256,
    Q8_K_WORDS,
    ActivationKind,
    quantize_rows_ref,
)

KINDS = [Q8_K, Q8_K256, Q8_0, Q8_K_WORDS]
F32 = np.float32


def special_rows(kind: ActivationKind) -> np.ndarray:
    """Blocks that exercise every branch: random, all zero, one huge outlier, exact .5
    ties after scaling, a negative maximum, equal magnitudes of both signs, tiny values."""
    rng = np.random.default_rng(3)
    blk = kind.block
    rows = rng.standard_normal((8, 4 * 256)).astype(F32)
    rows[1, :blk] = 0  # an all-zero block
    rows[1, 3 * blk] = 0
    rows[2, 7] = 1e4  # one huge outlier in a block of N(0, 1)
    # scale 1: the block's top is +-127, so x * (127 / top) is x or -x: exact .5 ties
    ties = (np.arange(blk) % 9 - 4).astype(F32) + F32(0.5)
    rows[3, :blk] = ties
    rows[3, 0] = -127  # a negative maximum (Q8_K: iscale = 1, q = rint(x))
    rows[3, blk : 2 * blk] = -ties
    rows[3, blk] = 127
    rows[4, :blk] = rng.uniform(-1, 1, blk).astype(F32)
    rows[4, 5], rows[4, 9] = -3, 3  # equal magnitudes: the first one decides the sign
    rows[5] *= F32(1e-30)  # tiny (Q8_0's fp16 scale is subnormal or zero)
    rows[6] *= F32(1e3)
    return rows


def kind_id(kind: ActivationKind) -> str:
    return f"{kind.ggml_type.name}-{kind.block}" + ("-words" if kind.words else "")


@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_fast_quantizer_equals_reference_bit_for_bit(kind: ActivationKind) -> None:
    x = special_rows(kind)
    ref, fast = quantize_rows_ref(x, kind), quantize_rows(x, kind)
    for field in ("q", "d", "sums", "dsums"):
        a, b = getattr(ref, field), getattr(fast, field)
        assert a.dtype == b.dtype and a.shape == b.shape, field
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), field


@pytest.mark.parametrize("kind", [Q8_K, Q8_K256], ids=lambda k: f"per-{k.block}")
def test_q8_k_reference_follows_llama_cpp(kind: ActivationKind) -> None:
    """ggml's quantize_row_q8_K_ref, applied per 128 values (mtpdec's kernels) or per 256
    (llama.cpp's own block)."""
    x = special_rows(kind)
    r = quantize_rows_ref(x, kind)
    size = kind.block
    blocks, q = x.reshape(-1, size), r.q.reshape(-1, size).astype(np.int64)
    d = r.d.reshape(-1)
    for i, blk in enumerate(blocks):
        if not blk.any():
            assert d[i] == 0 and not q[i].any()
            continue
        first = int(np.argmax(np.abs(blk)))  # first value of the largest magnitude
        assert q[i, first] == -127 and d[i] == F32(1) / (F32(-127) / blk[first])
        iscale = F32(-127) / blk[first]
        want = [min(127, round(float(F32(iscale * v)))) for v in blk]  # round(): half even
        assert q[i].tolist() == want
    assert np.array_equal(r.sums.reshape(-1), q.reshape(-1, 16).sum(axis=1))
    ties = r.q[3, :32].tolist()
    assert ties == [round(float(v)) for v in x[3, :32]]  # top -127: iscale 1, rint(x), half even


def test_q8_0_reference_agrees_with_gguf_except_at_half_ties() -> None:
    """gguf-py's Q8_0 quantizer is ggml's C reference (half away from zero, x * (1/d));
    ours is ggml's x86 path (half to even, x * (127/amax)). Scales are the same fp16
    values; quants differ only where x * 127/amax sits at a .5 tie (to within 1e-5)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 4096)).astype(F32)
    r = quantize_rows_ref(x, Q8_0)
    g = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0).reshape(-1, 34)
    g_d = g[:, :2].copy().view(np.float16).astype(F32).reshape(r.d.shape)
    g_q = g[:, 2:].copy().view(np.int8).reshape(r.q.shape)
    assert np.array_equal(g_d, r.d)
    amax = np.abs(x.reshape(-1, 32)).max(axis=1, keepdims=True)
    scaled = (x.reshape(-1, 32) * (127 / amax)).reshape(x.shape)
    differ = g_q != r.q
    assert differ.mean() < 1e-4
    assert np.all(np.abs(np.abs(scaled[differ] % 1) - 0.5) < 1e-5)
    assert np.all(np.abs(g_q[differ].astype(int) - r.q[differ]) == 1)
    x2 = np.zeros((1, 32), F32)
    x2[0, :8] = [127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5]
    ties = quantize_rows_ref(x2, Q8_0).q[0, :8].tolist()
    assert ties == [127, 0, 2, 2, 0, -2, -2, 4]


@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_dequantized_rows_are_within_half_a_step(kind: ActivationKind) -> None:
    x = special_rows(kind)[[0, 2, 4, 6]]
    r = quantize_rows(x, kind)
    step = np.abs(np.repeat(r.d, kind.block, axis=1))
    # Q8_0 multiplies by 127/amax but stores d rounded to fp16: allow that rounding
    slack = step * (2.0**-10 if kind is Q8_0 else 1e-6) * 127
    assert np.all(np.abs(r.dequantize() - x) <= step / 2 + slack + 1e-30)
    assert np.array_equal(r.dsums, r.sums * np.repeat(r.d, kind.block // kind.sum_span, axis=1))


@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_rows_not_a_multiple_of_the_block_are_refused(kind: ActivationKind) -> None:
    with pytest.raises(MtpdecError, match=f"multiple of {kind.block}"):
        quantize_rows(np.zeros((1, kind.block + 16), F32), kind)


def test_word_order_rows_need_whole_256_value_blocks() -> None:
    with pytest.raises(MtpdecError, match="multiple of 256"):
        quantize_rows(np.ones((1, 384), F32), Q8_K_WORDS)


def test_word_order_holds_each_value_plus_128_where_the_layout_says() -> None:
    x = special_rows(Q8_K)
    plain, words = quantize_rows_ref(x, Q8_K), quantize_rows_ref(x, Q8_K_WORDS)
    n, cols = plain.q.shape
    u = words.q.view(np.uint8).reshape(n, cols // 256, 4, 16, 4)  # [block][s][j][t]
    q = plain.q.reshape(n, cols // 256, 16, 4, 4).astype(np.int64)  # [block][j][s][t]
    for s in range(4):
        for j in range(16):
            assert np.array_equal(u[:, :, s, j, :].astype(np.int64), q[:, :, j, s, :] + 128)
    assert np.array_equal(words.dequantize(), plain.dequantize())
    for field in ("d", "sums", "dsums"):
        assert np.array_equal(getattr(words, field), getattr(plain, field)), field
