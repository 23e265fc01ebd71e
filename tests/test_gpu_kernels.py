"""The CUDA sources without a GPU: every kernel instance compiles for sm_90 with nvcc, the
block decoders equal gguf-py's dequantizers bit for bit, and the matvec's exact per-lane
arithmetic and warp sum (run on the CPU by tests/gpu_host/matvec_host.cu) are close to a
float64 product and bitwise the same for every number of inputs. On a GPU (CuPy) the
kernels themselves are compared with that host run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import gguf
import numpy as np
import pytest

from mtpdec.gpu.sources import BLOCK_STRUCTS, KERNEL_DIR, NVCC_OPTIONS, instantiation_source
from mtpdec.quants.pack import random_blocks
from mtpdec.quants.types import GGMLType

HOST = Path(__file__).parent / "gpu_host" / "matvec_host.cu"
ELEMS_BYTES = {  # weights and bytes of the kernels' block (F32 / F16: 32 values)
    GGMLType.F32: (32, 128),
    GGMLType.F16: (32, 64),
    GGMLType.Q8_0: (32, 34),
    GGMLType.Q5_0: (32, 22),
    GGMLType.Q4_K: (256, 144),
    GGMLType.Q5_K: (256, 176),
    GGMLType.Q6_K: (256, 210),
}


@pytest.fixture(scope="module")
def nvcc() -> str:
    path = shutil.which("nvcc")
    if path is None:
        pytest.skip("nvcc not found: the CUDA sources are not compiled or checked")
    return path


@pytest.fixture(scope="module")
def host_binary(nvcc: str, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu_host") / "matvec_host"
    cmd = [nvcc, *NVCC_OPTIONS, "-O2", "-Xcompiler", "-ffp-contract=off", f"-I{KERNEL_DIR}"]
    subprocess.run([*cmd, "-o", str(out), str(HOST)], check=True, capture_output=True)
    return out


def test_formats_table_matches_the_sources() -> None:
    assert set(ELEMS_BYTES) == set(BLOCK_STRUCTS)


def test_every_kernel_instance_compiles_for_sm_90(nvcc: str, tmp_path: Path) -> None:
    src = tmp_path / "instances.cu"
    src.write_text(instantiation_source())
    cmd = [nvcc, "-arch=sm_90", *NVCC_OPTIONS, f"-I{KERNEL_DIR}", "-c", str(src)]
    done = subprocess.run([*cmd, "-o", str(tmp_path / "k.o")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def weights(t: GGMLType, rows: int, cols: int, seed: int) -> np.ndarray:
    """uint8 (rows, row_bytes) of random valid blocks (float values for F32 / F16)."""
    rng = np.random.default_rng(seed)
    if t in (GGMLType.F32, GGMLType.F16):
        dtype = np.float32 if t == GGMLType.F32 else np.float16
        return rng.standard_normal((rows, cols)).astype(dtype).view(np.uint8)
    elems, _ = ELEMS_BYTES[t]
    return random_blocks(t, rows * cols // elems, rng, 0.05).reshape(rows, -1)


def run_host(binary: Path, tmp: Path, args: list[str], out_shape: tuple[int, ...]) -> np.ndarray:
    out = tmp / "out.bin"
    subprocess.run([str(binary), *args, str(out)], check=True, capture_output=True)
    return np.fromfile(out, dtype=np.float32).reshape(out_shape)


@pytest.mark.parametrize("t", list(ELEMS_BYTES), ids=lambda t: t.name)
def test_block_decoders_equal_gguf_dequantize(host_binary, tmp_path, t) -> None:
    rows, cols = 5, 512
    w = weights(t, rows, cols, seed=int(t))
    (tmp_path / "w.bin").write_bytes(w.tobytes())
    args = ["dequant", t.name, str(rows), str(w.shape[1]), str(tmp_path / "w.bin")]
    got = run_host(host_binary, tmp_path, args, (rows, cols))
    want = gguf.quants.dequantize(w, gguf.GGMLQuantizationType(int(t))).astype(np.float32)
    assert np.array_equal(got.view(np.uint32), want.reshape(rows, cols).view(np.uint32))


@pytest.mark.parametrize("t", list(ELEMS_BYTES), ids=lambda t: t.name)
def test_matvec_is_close_to_float64_and_bitwise_the_same_for_every_n(host_binary, tmp_path, t):
    rows, cols = 7, 10240  # 40 K-blocks per row: lanes with 2 and 1 blocks
    w = weights(t, rows, cols, seed=10 + int(t))
    x = np.random.default_rng(3).standard_normal((8, cols)).astype(np.float32)
    (tmp_path / "w.bin").write_bytes(w.tobytes())
    dense = gguf.quants.dequantize(w, gguf.GGMLQuantizationType(int(t))).reshape(rows, cols)
    outs = {}
    for n in (8, 3, 1):
        (tmp_path / "x.bin").write_bytes(x[-n:].tobytes())  # the last n inputs
        args = ["matvec", t.name, str(n), str(rows), str(w.shape[1]), str(tmp_path / "w.bin")]
        outs[n] = run_host(host_binary, tmp_path, [*args, str(tmp_path / "x.bin")], (n, rows))
    want = x.astype(np.float64) @ dense.astype(np.float64).T
    scale = np.abs(x.astype(np.float64)) @ np.abs(dense.astype(np.float64)).T
    assert np.all(np.abs(outs[8] - want) <= 1e-6 * scale)
    for n in (3, 1):  # input i of a call of n is input 8 - n + i of the call of 8
        assert np.array_equal(outs[n].view(np.uint32), outs[8][8 - n :].view(np.uint32))


@pytest.fixture(scope="module")
def cupy():
    cp = pytest.importorskip("cupy", reason="CuPy not installed: GPU kernels not run")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no NVIDIA GPU: GPU kernels not run")
    except cp.cuda.runtime.CUDARuntimeError as e:
        pytest.skip(f"no usable NVIDIA GPU ({e}): GPU kernels not run")
    return cp


@pytest.mark.parametrize("t", list(ELEMS_BYTES), ids=lambda t: t.name)
def test_gpu_matvec_equals_the_host_run_bit_for_bit(cupy, host_binary, tmp_path, t) -> None:
    from mtpdec.gpu.runtime import matvec

    rows, cols = 300, 2304
    w = weights(t, rows, cols, seed=20 + int(t))
    x = np.random.default_rng(4).standard_normal((8, cols)).astype(np.float32)
    (tmp_path / "w.bin").write_bytes(w.tobytes())
    (tmp_path / "x.bin").write_bytes(x.tobytes())
    args = ["matvec", t.name, "8", str(rows), str(w.shape[1]), str(tmp_path / "w.bin")]
    want = run_host(host_binary, tmp_path, [*args, str(tmp_path / "x.bin")], (8, rows))
    w_dev = cupy.asarray(w)
    for n in range(1, 9):
        got = cupy.asnumpy(matvec(w_dev, t, cupy.asarray(x[-n:])))
        assert np.array_equal(got.view(np.uint32), want[8 - n :].view(np.uint32)), n


def test_kernel_names_and_their_errors() -> None:
    from mtpdec.errors import MtpdecError
    from mtpdec.gpu.sources import kernel_path, matvec_name, matvec_names

    assert matvec_name(GGMLType.Q4_K, 4) == "mtpdec::matvec<mtpdec::Q4_KBlock, 4>"
    assert len(matvec_names()) == 8 * len(BLOCK_STRUCTS)
    with pytest.raises(MtpdecError, match="no GPU matvec for weight type Q4_0"):
        matvec_name(GGMLType.Q4_0, 1)
    with pytest.raises(MtpdecError, match="1..8 inputs, got 9"):
        matvec_name(GGMLType.Q6_K, 9)
    with pytest.raises(MtpdecError, match="nope.cu not found"):
        kernel_path("nope.cu")
    assert kernel_path("matvec.cu").is_file()


def test_without_cupy_the_gpu_path_is_a_one_line_error() -> None:
    from mtpdec.errors import MtpdecError
    from mtpdec.gpu.runtime import require_cupy

    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(MtpdecError, match=r"needs CuPy \(pip install 'mtpdec\[cuda\]'\)"):
            require_cupy()
    else:
        pytest.skip("CuPy is installed here")
