"""The integer dot kernels (``activations="q8"``) of every quantized format on every
instruction path this machine can run.

References: gguf's dequantizer for the weights (float64) times the numpy reference of
the 8-bit activations (``mtpdec.quants.activations``), summed in float64. Bit identity:
each output row, compared as integer bit views, is the same whatever n and whatever the
row's position in the batch. A subprocess compiles the kernels for an AVX2-only CPU
(Numba's target set to Haswell) and must reproduce the in-process avx2 path's bits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import llvmlite.binding as llvm
import numpy as np
import pytest

from mtpdec.cpu.idecoders import INT_FORMATS, LAYOUT_NAMES, X8
from mtpdec.cpu.isa import available_paths
from mtpdec.cpu.matvec import REPACKED_LAYOUT, MatVec
from mtpdec.quants.activations import quantize_rows_ref
from mtpdec.quants.pack import random_blocks
from mtpdec.quants.types import GGMLType, block_size
from mtpdec.tensor import Tensor

ROWS = 37
INT_TYPES = sorted({t for t, _ in INT_FORMATS}, key=int)
PATHS = available_paths()
# K formats: 2 blocks per row; 32-weight formats: an even count (two blocks per step)
# and an odd one (one block per step)
SHAPES = [(t, 512) for t in INT_TYPES] + [(t, 544) for t in INT_TYPES if block_size(t)[0] == 32]


def random_weight(t: GGMLType, cols: int, seed: int, rows: int = ROWS) -> Tensor:
    rng = np.random.default_rng(seed)
    elems, nbytes = block_size(t)
    raw = random_blocks(t, rows * cols // elems, rng, scale=0.05)
    return Tensor(f"w.{t.name}", int(t), (rows, cols), raw.reshape(rows, -1))


REPACKED = set(REPACKED_LAYOUT)
# (weight shape, repack): the repacked types run both layouts (37 rows: 4 interleaved
# groups of 8 and 5 rows left in the plain layout; Q6_K's word order has no leftover)
LAYOUT_CASES = [(case, False) for case in SHAPES] + [
    (case, True) for case in SHAPES if case[0] in REPACKED
]


def layout_id(case) -> str:
    (t, cols), repack = case
    return f"{t.name}-{cols}" + (f"-{LAYOUT_NAMES[REPACKED_LAYOUT[t]]}" if repack else "")


def inputs(cols: int, n: int, seed: int) -> np.ndarray:
    """Random rows with an outlier and an all-zero stretch (zero activation blocks)."""
    x = np.random.default_rng(seed).standard_normal((n, cols)).astype(np.float32)
    x[0, 3] = 40.0
    x[1 % n, :256] = 0.0
    return x


def reference(w: Tensor, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 (quantized x) @ W^T and the sum of the terms' magnitudes per output."""
    kind = INT_FORMATS[GGMLType(w.ggml_type), 1].act
    xq = quantize_rows_ref(x, kind).dequantize().astype(np.float64)
    dense = gguf.quants.dequantize(w.raw, gguf.GGMLQuantizationType(w.ggml_type))
    dense = dense.astype(np.float64)
    return xq @ dense.T, np.abs(xq) @ np.abs(dense).T


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", LAYOUT_CASES, ids=layout_id)
def test_equals_float64_of_the_quantized_operands(case, path: str) -> None:
    (t, cols), repack = case
    w = random_weight(t, cols, seed=int(t))
    x = inputs(cols, 5, seed=cols)
    ref, scale = reference(w, x)
    got = MatVec(w, "q8", path, repack=repack)(x)
    assert got.shape == (5, ROWS) and got.dtype == np.float32
    err = np.abs(got - ref) / np.maximum(scale, 1e-30)
    assert err.max() <= 1e-6, f"{t.name} {path}: error {err.max():.2e} of the terms' sum"
    big = np.abs(ref) > 1e-2 * scale  # no cancellation: plain relative error as well
    assert (np.abs(got - ref)[big] / np.abs(ref[big])).max() <= 1e-5


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", LAYOUT_CASES, ids=layout_id)
def test_rows_bitwise_identical_across_n_and_position(case, path: str) -> None:
    (t, cols), repack = case
    mv = MatVec(random_weight(t, cols, seed=100 + int(t)), "q8", path, repack=repack)
    x = inputs(cols, 9, seed=7)
    alone = np.stack([mv(x[i : i + 1])[0] for i in range(9)]).view(np.uint32)
    for n in range(1, 10):
        for start in range(0, 10 - n):
            got = mv(x[start : start + n]).view(np.uint32)
            assert np.array_equal(got, alone[start : start + n]), f"n={n} start={start}"
    assert np.array_equal(mv(x[::-1]).view(np.uint32), alone[::-1])


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=layout_id)
def test_padded_widths_fill_a_given_out_buffer(case) -> None:
    """n not a kernel width (3: one padded 4-input call; 11: 8 + a padded 4): the rows
    are rounded and padded once per InputRows for every matrix that reads them, and a
    given out buffer receives exactly the n rows."""
    from mtpdec.cpu.matvec import InputRows

    (t, cols), repack = case
    mv = MatVec(random_weight(t, cols, seed=11), "q8", repack=repack)
    x = inputs(cols, 11, seed=12)
    for n in (3, 11):
        rows = InputRows(x[:n])
        want = np.stack([mv(x[i : i + 1])[0] for i in range(n)]).view(np.uint32)
        assert np.array_equal(mv(rows).view(np.uint32), want), f"n={n}"
        out = np.full((n, mv.rows), np.nan, dtype=np.float32)
        assert mv(rows, out) is out and np.array_equal(out.view(np.uint32), want), f"n={n}"


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=layout_id)
def test_serial_and_parallel_drivers_give_the_same_bits(case) -> None:
    """Small matrices run serially (SERIAL_MAX_BYTES), big ones on the worker threads:
    the same rows either way, at every kernel width (host path)."""
    (t, cols), repack = case
    w = random_weight(t, cols, seed=5)
    x = inputs(cols, 8, seed=6)
    serial = MatVec(w, "q8", repack=repack, parallel=False)
    parallel = MatVec(w, "q8", repack=repack, parallel=True)
    assert MatVec(w, "q8", repack=repack).parallel is False  # 37 rows: small
    for n in (1, 2, 4, 8):
        got = parallel(x[:n]).view(np.uint32)
        assert np.array_equal(got, serial(x[:n]).view(np.uint32)), f"n={n}"


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=layout_id)
def test_paths_of_one_family_give_the_same_bits(case) -> None:
    """The VNNI paths share one integer lane layout, avx2 and portable another; the
    32-weight formats and the interleaved groups have one on every path (the rows left
    in the plain layout after the groups follow their family)."""
    (t, cols), repack = case
    w = random_weight(t, cols, seed=3)
    x = inputs(cols, 3, seed=4)
    mvs = {p: MatVec(w, "q8", p, repack=repack) for p in PATHS}
    bits = {p: mv(x).view(np.uint32) for p, mv in mvs.items()}
    families = [["avx512vnni", "avxvnni"], ["avx2", "portable"]]
    if block_size(t)[0] == 32 and not repack:
        families = [PATHS]
    # (Q8_0 groups need vpdpbusd; word order has no rows left in the plain layout)
    grouped = [p for p in PATHS if mvs[p].layout == REPACKED_LAYOUT.get(t)]
    for p in grouped[1:]:
        rows = ROWS // 8 * 8 if mvs[p].layout == X8 else ROWS
        assert np.array_equal(bits[p][:, :rows], bits[grouped[0]][:, :rows]), p
    for family in families:
        present = [p for p in family if p in bits]
        for p in present[1:]:
            assert np.array_equal(bits[p], bits[present[0]]), f"{p} vs {present[0]}"


_CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_int_kernels import SHAPES, inputs, random_weight
from mtpdec.cpu.isa import host_path
from mtpdec.cpu.matvec import REPACKED_LAYOUT, MatVec
out = {{"path": host_path()}}
for t, cols in SHAPES:
    y = MatVec(random_weight(t, cols, seed=11), "q8")(inputs(cols, 3, seed=12))
    out[f"{{t.name}}-{{cols}}"] = y.view(np.uint32).tolist()
json.dump(out, sys.stdout)
"""


@pytest.mark.slow
def test_an_avx2_only_target_reproduces_the_avx2_path(tmp_path: Path) -> None:
    """Numba compiles for Haswell (no AVX-512, no VNNI) in a child process: it must pick
    the avx2 path and give the same bits as the avx2 path compiled for this CPU."""
    if "avx2" not in PATHS:
        pytest.skip("this CPU has no AVX2")
    feats = llvm.get_host_cpu_features()
    for name in list(feats):
        if name.startswith(("avx512", "avxvnni", "amx", "avx10")) or name == "evex512":
            feats[name] = False
    env = dict(
        os.environ,
        NUMBA_CPU_NAME="haswell",
        NUMBA_CPU_FEATURES=feats.flatten(),
        NUMBA_CACHE_DIR=str(tmp_path),
    )
    code = _CHILD.format(tests=str(Path(__file__).parent))
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    child = json.loads(proc.stdout)
    assert child.pop("path") == "avx2"
    for t, cols in SHAPES:
        want = MatVec(random_weight(t, cols, seed=11), "q8", "avx2")(inputs(cols, 3, seed=12))
        got = np.array(child[f"{t.name}-{cols}"], dtype=np.uint32)
        assert np.array_equal(got, want.view(np.uint32)), f"{t.name}-{cols}"
