"""The float (``activations="f32"``) n-input MatVec kernels against float64 numpy on gguf's
dequantized weights; the integer kernels are tested in test_int_kernels.py."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from mtpdec import MtpdecError, matvec
from mtpdec.cpu.matvec import INT_WIDTHS, group_widths
from mtpdec.quants.pack import random_blocks
from mtpdec.quants.types import SUPPORTED, GGMLType, block_size
from mtpdec.tensor import Tensor

ROWS = 37  # odd: exercises the leftover rows when a step walks several rows
COLS = 512


def random_weight(
    t: GGMLType, rng: np.random.Generator, rows: int = ROWS, cols: int = COLS
) -> Tensor:
    elems, nbytes = block_size(t)
    raw = random_blocks(t, rows * cols // elems, rng, scale=0.05).reshape(
        rows, cols // elems * nbytes
    )
    return Tensor(f"w.{t.name}", int(t), (rows, cols), raw)


def oracle(w: Tensor, x: np.ndarray) -> np.ndarray:
    """float64 x @ W^T with W dequantized by the gguf package (independent reference)."""
    dense = gguf.quants.dequantize(w.raw, gguf.GGMLQuantizationType(w.ggml_type))
    return x.astype(np.float64) @ dense.astype(np.float64).T


@pytest.mark.parametrize("t", SUPPORTED, ids=lambda t: t.name)
def test_matches_float64_reference(t: GGMLType) -> None:
    rng = np.random.default_rng(int(t))
    w = random_weight(t, rng)
    x = rng.standard_normal((8, COLS)).astype(np.float32)
    ref = oracle(w, x)
    got = matvec(w, x, activations="f32")
    assert got.shape == (8, ROWS) and got.dtype == np.float32
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert rel <= 1e-5, f"{t.name}: relative error {rel:.2e}"
    # per element, against the scale of the terms summed (|W| @ |x|)
    dense = np.abs(gguf.quants.dequantize(w.raw, gguf.GGMLQuantizationType(w.ggml_type)))
    scale = np.abs(x.astype(np.float64)) @ dense.astype(np.float64).T
    assert np.max(np.abs(got - ref) / scale) <= 1e-5


@pytest.mark.parametrize("t", SUPPORTED, ids=lambda t: t.name)
def test_rows_bitwise_identical_across_n_and_position(t: GGMLType) -> None:
    rng = np.random.default_rng(100 + int(t))
    w = random_weight(t, rng)
    x = rng.standard_normal((8, COLS)).astype(np.float32)
    alone = np.stack([matvec(w, x[i], activations="f32") for i in range(8)]).view(np.uint32)
    for n in range(1, 9):
        for start in range(0, 9 - n):
            got = matvec(w, x[start : start + n], activations="f32").view(np.uint32)
            assert np.array_equal(got, alone[start : start + n]), f"{t.name} n={n} start={start}"
    reversed_order = matvec(w, x[::-1], activations="f32").view(np.uint32)
    assert np.array_equal(reversed_order, alone[::-1])


def test_group_widths_cover_n_with_padding_only_for_three() -> None:
    assert group_widths(1) == [1]
    assert group_widths(3) == [4]
    assert group_widths(6) == [4, 2]
    assert group_widths(8) == [4, 4]
    assert group_widths(11) == [4, 4, 4]


def test_integer_group_widths_pad_to_the_next_kernel() -> None:
    assert group_widths(3, INT_WIDTHS) == [4]
    assert group_widths(5, INT_WIDTHS) == [8]
    assert group_widths(8, INT_WIDTHS) == [8]
    assert group_widths(9, INT_WIDTHS) == [8, 1]
    assert group_widths(15, INT_WIDTHS) == [8, 8]


def test_one_dimensional_input_and_out_buffer() -> None:
    rng = np.random.default_rng(7)
    w = random_weight(GGMLType.Q4_K, rng)
    x = rng.standard_normal(COLS).astype(np.float32)
    for mode in ("q8", "f32"):
        y = matvec(w, x, activations=mode)
        assert y.shape == (ROWS,)
        out = np.empty((1, ROWS), dtype=np.float32)
        assert matvec(w, x[None], out=out, activations=mode) is out
        assert np.array_equal(out[0], y)


def test_bad_inputs_raise_user_errors() -> None:
    rng = np.random.default_rng(8)
    w = random_weight(GGMLType.Q8_0, rng)
    with pytest.raises(MtpdecError, match="columns"):
        matvec(w, np.zeros((2, COLS + 32), dtype=np.float32))
    bad = Tensor("w.q4_1", int(GGMLType.Q4_1), (ROWS, COLS), w.raw)
    with pytest.raises(MtpdecError, match="unsupported type Q4_1"):
        matvec(bad, np.zeros(COLS, dtype=np.float32))
    with pytest.raises(MtpdecError, match="out must be"):
        matvec(w, np.zeros((2, COLS), dtype=np.float32), out=np.empty((3, ROWS), np.float32))
    with pytest.raises(MtpdecError, match="unknown activations 'int4'"):
        matvec(w, np.zeros(COLS, dtype=np.float32), activations="int4")


@pytest.mark.parametrize("rows_per_step", [2, 4])
def test_multi_row_steps_give_the_same_bits(rows_per_step: int) -> None:
    """The kernel can walk several rows per step (leftover rows one at a time)."""
    from mtpdec.cpu.kernel import make_driver, subblock_sums

    rng = np.random.default_rng(9)
    w = random_weight(GGMLType.Q4_K, rng)
    x = rng.standard_normal((1, COLS)).astype(np.float32)
    sums = subblock_sums(x)
    one, many = (np.empty((1, ROWS), np.float32) for _ in range(2))
    make_driver(int(GGMLType.Q4_K), 1, 1)(w.raw, x, sums, one)
    make_driver(int(GGMLType.Q4_K), 1, rows_per_step)(w.raw, x, sums, many)
    assert np.array_equal(one.view(np.uint32), many.view(np.uint32))


@pytest.mark.parametrize("t", SUPPORTED, ids=lambda t: t.name)
def test_serial_and_parallel_float_drivers_give_the_same_bits(t: GGMLType) -> None:
    """f32 mode: small matrices run the serial build, big ones the parallel one (the
    same rows either way, at every kernel width)."""
    from mtpdec.cpu.matvec import MatVec

    rng = np.random.default_rng(200 + int(t))
    w = random_weight(t, rng)
    x = rng.standard_normal((4, COLS)).astype(np.float32)
    serial = MatVec(w, "f32", parallel=False)
    parallel = MatVec(w, "f32", parallel=True)
    assert MatVec(w, "f32").parallel is False  # 37 rows: small
    for n in (1, 2, 3, 4):
        got = parallel(x[:n]).view(np.uint32)
        assert np.array_equal(got, serial(x[:n]).view(np.uint32)), f"{t.name} n={n}"
