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

from mtpdec.gpu.sources import (
    BLOCK_STRUCTS,
    KERNEL_DIR,
    NVCC_OPTIONS,
    SOURCES,
    instantiation_source,
)
from mtpdec.quants.pack import random_blocks
from mtpdec.quants.types import GGMLType

HOST = Path(__file__).parent / "gpu_host" / "kernels_host.cu"
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
    out = tmp_path_factory.mktemp("gpu_host") / "kernels_host"
    cmd = [nvcc, *NVCC_OPTIONS, "-O2", "-Xcompiler", "-ffp-contract=off", f"-I{KERNEL_DIR}"]
    subprocess.run([*cmd, "-o", str(out), str(HOST)], check=True, capture_output=True)
    return out


def test_formats_table_matches_the_sources() -> None:
    assert set(ELEMS_BYTES) == set(BLOCK_STRUCTS)


def test_every_cuda_source_is_listed() -> None:
    assert sorted(p.name for p in KERNEL_DIR.glob("*.cu")) == sorted(SOURCES)


@pytest.mark.parametrize("name", SOURCES)
def test_every_kernel_compiles_for_sm_90(nvcc: str, tmp_path: Path, name: str) -> None:
    """Templated kernels with every instance mtpdec asks CuPy for."""
    src = KERNEL_DIR / name
    if name == "matvec.cu":
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


def host_call(
    binary: Path,
    tmp: Path,
    args: list[str],
    arrays: dict[str, np.ndarray],
    read: tuple[str, ...] = ("out",),
    dtype: type = np.float32,
) -> list[np.ndarray]:
    """Write ``arrays`` to tmp/NAME.bin (each in its own dtype), run the host harness with
    ``args``, and read back tmp/NAME.bin for each name of ``read`` (flat, ``dtype``)."""
    for name, arr in arrays.items():
        (tmp / f"{name}.bin").write_bytes(np.ascontiguousarray(arr).tobytes())
    subprocess.run([str(binary), *args], check=True, capture_output=True)
    return [np.fromfile(tmp / f"{name}.bin", dtype=dtype) for name in read]


def matvec_args(tmp: Path, t: GGMLType, n: int, w: np.ndarray) -> list[str]:
    """The harness's matvec command for n inputs in tmp/x.bin, weights in tmp/w.bin."""
    files = [str(tmp / f"{name}.bin") for name in ("w", "x", "out")]
    return ["matvec", t.name, str(n), str(w.shape[0]), str(w.shape[1]), *files]


@pytest.mark.parametrize("t", list(ELEMS_BYTES), ids=lambda t: t.name)
def test_block_decoders_equal_gguf_dequantize(host_binary, tmp_path, t) -> None:
    rows, cols = 5, 512
    w = weights(t, rows, cols, seed=int(t))
    files = [str(tmp_path / "w.bin"), str(tmp_path / "out.bin")]
    args = ["dequant", t.name, str(rows), str(w.shape[1]), *files]
    got = host_call(host_binary, tmp_path, args, {"w": w})[0].reshape(rows, cols)
    want = gguf.quants.dequantize(w, gguf.GGMLQuantizationType(int(t))).astype(np.float32)
    assert np.array_equal(got.view(np.uint32), want.reshape(rows, cols).view(np.uint32))


@pytest.mark.parametrize("t", list(ELEMS_BYTES), ids=lambda t: t.name)
def test_matvec_is_close_to_float64_and_bitwise_the_same_for_every_n(host_binary, tmp_path, t):
    rows, cols = 7, 10240  # 40 K-blocks per row: lanes with 2 and 1 blocks
    w = weights(t, rows, cols, seed=10 + int(t))
    x = np.random.default_rng(3).standard_normal((8, cols)).astype(np.float32)
    dense = gguf.quants.dequantize(w, gguf.GGMLQuantizationType(int(t))).reshape(rows, cols)
    outs = {}
    for n in (8, 3, 1):  # the last n inputs
        arrays = {"w": w, "x": x[-n:]}
        outs[n] = host_call(host_binary, tmp_path, matvec_args(tmp_path, t, n, w), arrays)[0]
        outs[n] = outs[n].reshape(n, rows)
    want = x.astype(np.float64) @ dense.astype(np.float64).T
    scale = np.abs(x.astype(np.float64)) @ np.abs(dense.astype(np.float64)).T
    assert np.all(np.abs(outs[8] - want) <= 1e-6 * scale)
    for n in (3, 1):  # input i of a call of n is input 8 - n + i of the call of 8
        assert np.array_equal(outs[n].view(np.uint32), outs[8][8 - n :].view(np.uint32))


@pytest.mark.parametrize("t", list(ELEMS_BYTES), ids=lambda t: t.name)
def test_gpu_matvec_equals_the_host_run_bit_for_bit(cupy, host_binary, tmp_path, t) -> None:
    from mtpdec.gpu.runtime import matvec

    rows, cols = 300, 2304
    w = weights(t, rows, cols, seed=20 + int(t))
    x = np.random.default_rng(4).standard_normal((8, cols)).astype(np.float32)
    args = matvec_args(tmp_path, t, 8, w)
    want = host_call(host_binary, tmp_path, args, {"w": w, "x": x})[0].reshape(8, rows)
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


def gdn_inputs(n: int, h_k: int, h_v: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = 128
    q = rng.standard_normal((n, h_k, d)).astype(np.float32)
    k = rng.standard_normal((n, h_k, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    g = (-0.2 * np.abs(rng.standard_normal((n, h_v)))).astype(np.float32)
    return {
        "m": (0.1 * rng.standard_normal((h_v, d, d))).astype(np.float32),
        "q": q,
        "k": k,
        "v": rng.standard_normal((n, h_v, d)).astype(np.float32),
        "g": g,
        "decay": np.exp(g),
        "beta": rng.random((n, h_v)).astype(np.float32),
    }


def host_delta_rule(binary: Path, tmp: Path, a: dict, count: int) -> tuple[np.ndarray, ...]:
    n, h_k, _ = a["q"].shape
    h_v = a["v"].shape[1]
    arrays = {name: a[name] for name in ("m", "q", "k", "v", "decay", "beta")}
    arrays["slots"] = np.arange(count, dtype=np.int64)
    pool = max(count, 1)
    args = ["delta_rule", str(tmp), str(n), str(h_k), str(h_v), str(count), str(pool)]
    out, m, ring = host_call(binary, tmp, args, arrays, read=("out", "m_out", "ring"))
    return out.reshape(n, h_v, 128), m.reshape(h_v, 128, 128), ring.reshape(pool, h_v, 128, 128)


def test_gdn_delta_rule_matches_the_cpu_kernel_and_any_batching(host_binary, tmp_path) -> None:
    from mtpdec.cpu.gdn import delta_rule

    n, h_k, h_v = 4, 2, 4
    a = gdn_inputs(n, h_k, h_v, seed=5)
    out, m, ring = host_delta_rule(host_binary, tmp_path, a, count=n - 1)
    m_cpu = a["m"].copy()
    out_cpu = delta_rule(m_cpu, a["q"], a["k"], a["v"], a["g"], a["beta"])
    np.testing.assert_allclose(out, out_cpu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m, m_cpu, rtol=1e-5, atol=1e-6)
    state = a["m"]
    for t in range(n):  # token by token: the same outputs, states and snapshots, bitwise
        one = {name: (x if name == "m" else x[t : t + 1]) for name, x in a.items()}
        one["m"] = state
        out1, state, _ = host_delta_rule(host_binary, tmp_path, one, count=0)
        assert np.array_equal(out1[0].view(np.uint32), out[t].view(np.uint32)), t
        if t < n - 1:
            assert np.array_equal(ring[t].view(np.uint32), state.view(np.uint32)), t
    assert np.array_equal(state.view(np.uint32), m.view(np.uint32))


def test_gdn_conv_silu_matches_the_cpu_ops(host_binary, tmp_path) -> None:
    from mtpdec.cpu.gdn import causal_conv_silu

    n, channels, taps = 5, 300, 4
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, channels)).astype(np.float32)
    state = rng.standard_normal((taps - 1, channels)).astype(np.float32)
    w = rng.standard_normal((taps, channels)).astype(np.float32)
    args = ["conv_silu", str(tmp_path), str(n), str(channels), str(taps), str(n - 1)]
    read = ("out", "state_out", "ring")
    out, got_state, ring = host_call(
        host_binary, tmp_path, args, {"x": x, "state": state, "w": w}, read
    )
    out, got_state = out.reshape(n, channels), got_state.reshape(state.shape)
    ring = ring.reshape(n - 1, taps - 1, channels)
    cpu_state, cpu_ring = state.copy(), np.zeros_like(ring)
    cpu_out = causal_conv_silu(x, cpu_state, w, cpu_ring)
    np.testing.assert_allclose(out, cpu_out, rtol=2e-6, atol=1e-7)  # expf: host vs numpy
    assert np.array_equal(got_state, cpu_state) and np.array_equal(ring, cpu_ring)


def test_gpu_delta_rule_and_conv_equal_the_host_runs(cupy, host_binary, tmp_path) -> None:
    from mtpdec.gpu.runtime import conv_silu, delta_rule

    n, h_k, h_v = 4, 2, 4
    a = gdn_inputs(n, h_k, h_v, seed=7)
    out, m, ring = host_delta_rule(host_binary, tmp_path, a, count=n - 1)
    dev = {name: cupy.asarray(x) for name, x in a.items()}
    ring_dev = cupy.zeros((n - 1, h_v, 128, 128), dtype=np.float32)
    slots = cupy.arange(n - 1, dtype=np.int64)
    got = delta_rule(
        dev["m"], dev["q"], dev["k"], dev["v"], dev["decay"], dev["beta"], ring_dev, slots
    )
    for want, have in ((out, got), (m, dev["m"]), (ring, ring_dev)):
        assert np.array_equal(cupy.asnumpy(have).view(np.uint32), want.view(np.uint32))
    x = np.random.default_rng(8).standard_normal((n, 300)).astype(np.float32)
    state = np.random.default_rng(9).standard_normal((3, 300)).astype(np.float32)
    w = np.random.default_rng(10).standard_normal((4, 300)).astype(np.float32)
    from mtpdec.cpu.gdn import causal_conv_silu

    cpu_state, cpu_ring = state.copy(), np.zeros((n - 1, 3, 300), np.float32)
    want = causal_conv_silu(x, cpu_state, w, cpu_ring)
    state_dev, ring_dev = cupy.asarray(state), cupy.zeros((n - 1, 3, 300), dtype=np.float32)
    got = conv_silu(cupy.asarray(x), state_dev, cupy.asarray(w), ring_dev)
    np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=2e-6, atol=1e-7)
    assert np.array_equal(cupy.asnumpy(state_dev), cpu_state)
    assert np.array_equal(cupy.asnumpy(ring_dev), cpu_ring)


@pytest.mark.parametrize("name", SOURCES)
def test_every_source_compiles_with_nvrtc_as_the_runtime_builds_it(name: str) -> None:
    """The runtime compiles with NVRTC itself (CuPy's path would add -ftz=true), to a
    CUBIN for the device's architecture: here sm_90, with no GPU needed."""
    from mtpdec.gpu.nvrtc import compile_source, find_library
    from mtpdec.gpu.sources import matvec_names, nvrtc_options

    lib = find_library()
    if lib is None:
        pytest.skip("no NVRTC library (pip install nvidia-cuda-nvrtc): NVRTC build not checked")
    names = matvec_names() if name == "matvec.cu" else []
    built = compile_source(lib, (KERNEL_DIR / name).read_text(), nvrtc_options("sm_90"), names)
    assert built.ok, built.log[-3000:]
    assert set(built.lowered) == set(names) and all(built.lowered.values())
    assert built.binary[:4] == b"\x7fELF"  # a CUBIN


def host_rows(binary: Path, tmp: Path, op: str, x: np.ndarray, w=None, eps=1e-6) -> np.ndarray:
    args = ["rows", op, str(tmp), str(x.shape[0]), str(x.shape[1]), repr(eps)]
    arrays = {"x": x} if w is None else {"x": x, "w": w}
    if op == "argmax":
        return host_call(binary, tmp, args, arrays, dtype=np.int32)[0]
    return host_call(binary, tmp, args, arrays)[0].reshape(x.shape)


def test_row_kernels_match_the_cpu_ops(host_binary, tmp_path) -> None:
    from mtpdec.cpu.ops import l2norm, rmsnorm

    rng = np.random.default_rng(11)
    x = (rng.standard_normal((6, 1000)) * rng.uniform(0.01, 100, (6, 1))).astype(np.float32)
    w = rng.standard_normal(1000).astype(np.float32)
    got = host_rows(host_binary, tmp_path, "rmsnorm", x, w, eps=1e-6)
    np.testing.assert_allclose(got, rmsnorm(x, w, 1e-6), rtol=1e-6, atol=0)
    got = host_rows(host_binary, tmp_path, "l2norm", x, eps=1e-6)
    np.testing.assert_allclose(got, l2norm(x, 1e-6), rtol=1e-6, atol=0)


def test_argmax_kernel_picks_the_lowest_index_of_the_maximum(host_binary, tmp_path) -> None:
    rng = np.random.default_rng(12)
    x = rng.standard_normal((7, 5000)).astype(np.float32)
    x[1, [40, 7, 4999]] = 9.0  # ties go to the lowest index
    x[2] = -np.inf
    x[3, :] = 0.0
    x[4, 4999] = 50.0
    got = host_rows(host_binary, tmp_path, "argmax", x)
    assert got.tolist() == np.argmax(x, axis=1).tolist()


def test_gpu_row_kernels_equal_the_host_runs(cupy, host_binary, tmp_path) -> None:
    from mtpdec.gpu.runtime import argmax_rows, l2norm, rmsnorm

    rng = np.random.default_rng(13)
    x = rng.standard_normal((9, 3000)).astype(np.float32)
    x[2, [5, 2999]] = 10.0
    w = rng.standard_normal(3000).astype(np.float32)
    xd = cupy.asarray(x)
    pairs = [
        (rmsnorm(xd, cupy.asarray(w), 1e-6), host_rows(host_binary, tmp_path, "rmsnorm", x, w)),
        (l2norm(xd, 1e-6), host_rows(host_binary, tmp_path, "l2norm", x)),
        (argmax_rows(xd), host_rows(host_binary, tmp_path, "argmax", x)),
    ]
    for got, want in pairs:
        assert np.array_equal(cupy.asnumpy(got).view(np.uint32), want.view(np.uint32))


def host_attend(binary: Path, tmp: Path, q, kc, vc, positions, scale, window) -> np.ndarray:
    n, n_head, hd_k = q.shape
    n_kv, ctx, hd_v = vc.shape
    sizes = (n, n_head, n_kv, ctx, hd_k, hd_v, window)
    args = ["attend", str(tmp), *map(str, sizes), repr(float(scale))]
    arrays = {"q": q, "k_cache": kc, "v_cache": vc, "positions": np.asarray(positions, np.int32)}
    return host_call(binary, tmp, args, arrays)[0].reshape(n, n_head, hd_v)


@pytest.mark.parametrize("window", [0, 5])
def test_attention_kernel_matches_the_cpu_and_any_batching(host_binary, tmp_path, window) -> None:
    from mtpdec.cpu.attention import attend

    rng = np.random.default_rng(14)
    n_head, n_kv, ctx, hd = 8, 2, 70, 64
    kc = rng.standard_normal((n_kv, ctx, hd)).astype(np.float32)
    vc = rng.standard_normal((n_kv, ctx, hd)).astype(np.float32)
    q = rng.standard_normal((4, n_head, hd)).astype(np.float32)
    positions = np.arange(60, 64, dtype=np.int32)  # a verify of 4 tokens after 60 cached
    scale = 1 / np.sqrt(hd)
    got = host_attend(host_binary, tmp_path, q, kc, vc, positions, scale, window)
    want = attend(q, kc, vc, positions, scale, window)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for t in range(4):
        alone = host_attend(
            host_binary, tmp_path, q[t : t + 1], kc, vc, positions[t : t + 1], scale, window
        )
        assert np.array_equal(alone[0].view(np.uint32), got[t].view(np.uint32))


def test_gpu_attention_is_close_to_the_host_run(cupy, host_binary, tmp_path) -> None:
    from mtpdec.gpu.runtime import attend

    rng = np.random.default_rng(15)
    kc = rng.standard_normal((2, 300, 128)).astype(np.float32)
    vc = rng.standard_normal((2, 300, 128)).astype(np.float32)
    q = rng.standard_normal((3, 8, 128)).astype(np.float32)
    positions = np.array([200, 201, 202], dtype=np.int32)
    want = host_attend(host_binary, tmp_path, q, kc, vc, positions, 0.088, 0)
    got = attend(*(cupy.asarray(a) for a in (q, kc, vc, positions)), 0.088)
    np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=2e-6, atol=1e-6)  # expf differs


def test_rope_kernel_equals_the_cpu_op_bit_for_bit(host_binary, tmp_path) -> None:
    from mtpdec.cpu.ops import rope_angles, rope_neox

    n, heads, hd, n_rot = 3, 4, 256, 64  # qwen35: 64 of 256 dims rotated
    x = np.random.default_rng(16).standard_normal((n, heads, hd)).astype(np.float32)
    cos, sin = rope_angles(np.arange(500, 503), n_rot, 1e7)
    args = ["rope", str(tmp_path), str(n), str(heads), str(hd), str(n_rot // 2)]
    got = host_call(host_binary, tmp_path, args, {"x": x, "cos": cos, "sin": sin})[0]
    assert np.array_equal(got.view(np.uint32), rope_neox(x, cos, sin).reshape(-1).view(np.uint32))


@pytest.mark.parametrize("name", ["silu_mul", "sigmoid_mul", "gelu_mul"])
def test_gate_kernels_match_the_cpu_ops(host_binary, tmp_path, name) -> None:
    from mtpdec.cpu.ops import gelu, sigmoid, silu

    rng = np.random.default_rng(17)
    x = (rng.standard_normal(5000) * 10).astype(np.float32)
    x[:3] = [-100.0, 100.0, 0.0]  # the capped exponent, and saturation
    m = rng.standard_normal(5000).astype(np.float32)
    got = host_call(host_binary, tmp_path, ["gate", name, str(tmp_path), "5000"], {"x": x, "m": m})[
        0
    ]
    want = {"silu_mul": silu, "sigmoid_mul": sigmoid, "gelu_mul": gelu}[name](x, m)
    np.testing.assert_allclose(got, want, rtol=3e-7, atol=1e-30)  # expf: host vs numpy


def test_gpu_rope_and_gates_equal_the_host_runs(cupy, host_binary, tmp_path) -> None:
    from mtpdec.cpu.ops import rope_angles
    from mtpdec.gpu.runtime import gate, rope_neox

    x = np.random.default_rng(18).standard_normal((2, 3, 128)).astype(np.float32)
    cos, sin = rope_angles(np.arange(7, 9), 64, 1e4)
    args = ["rope", str(tmp_path), "2", "3", "128", "32"]
    want = host_call(host_binary, tmp_path, args, {"x": x, "cos": cos, "sin": sin})[0]
    got = rope_neox(cupy.asarray(x), cupy.asarray(cos), cupy.asarray(sin))
    assert np.array_equal(cupy.asnumpy(got).reshape(-1).view(np.uint32), want.view(np.uint32))
    a, m = x.reshape(-1) * 5, x.reshape(-1)[::-1].copy()
    for name in ("silu_mul", "sigmoid_mul", "gelu_mul"):
        args = ["gate", name, str(tmp_path), str(a.size)]
        want = host_call(host_binary, tmp_path, args, {"x": a, "m": m})[0]
        got = cupy.asnumpy(gate(name, cupy.asarray(a), cupy.asarray(m)))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-30)  # expf: <= 2 ulp on device


def test_nvrtc_of_cupys_cuda_version_comes_first() -> None:
    from mtpdec.gpu.nvrtc import prefer_major

    paths = ["w/cu13/lib/libnvrtc.so.13", "w/cuda_nvrtc/lib/libnvrtc.so.12", "t/libnvrtc.so.12.4.1"]
    assert prefer_major(paths, 12) == [paths[1], paths[2], paths[0]]
    assert prefer_major(paths, 13) == paths and prefer_major(paths, None) == paths
