"""The GPU backend's glue and the hybrid placement on a machine without a GPU
(issue 9): the GPU backend over numpy with fake CUDA (tests/fake_cuda.py: the real
launchers of mtpdec.gpu.runtime, each launch checked against its kernel's signature and
computed by the CPU functions), and a copying CPU backend standing in for a device
(tests/gpu_standin.py), run the same model code the GPU runs. The CUDA kernels
themselves are tested in test_gpu_kernels.py."""

from __future__ import annotations

import numpy as np
import pytest

from mtpdec.cpu.linear import Numerics
from mtpdec.decode import decode_plain
from mtpdec.draft import make_drafter
from mtpdec.draft.adaptive import FixedN
from mtpdec.errors import MtpdecError
from mtpdec.gpu.backend import GpuLinear, GpuOps
from mtpdec.gpu.placement import DeviceOptions
from mtpdec.loader import open_gguf
from mtpdec.models import load_model
from mtpdec.models.gemma3 import Gemma3Model
from mtpdec.models.hybrid import Backends, OffloadedFeedForward
from mtpdec.models.qwen35 import Qwen35Model
from mtpdec.sampling import Sampler
from mtpdec.speculative import decode_speculative
from tests.conftest import synth_file
from tests.gpu_standin import CopyingCpuOps

N_PREDICT = 24


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    # H_k < H_v and GQA, so head-mapping mistakes in the glue show
    return synth_file(tmp_path_factory, "gpu_glue", ssm_groups=2, ssm_heads=4, layers=4)


@pytest.fixture
def fake_gpu(monkeypatch):
    """(GpuOps over numpy and the real launchers, their fakes); after the test, no launch
    may have broken its kernel's contract, and no fake is left in the runtime's caches."""
    from mtpdec.gpu import runtime
    from tests import fake_cuda

    fakes = fake_cuda.install(monkeypatch)
    yield GpuOps(xp=np, kernels=runtime), fakes
    runtime._matvec_kernel.cache_clear()
    assert fakes.problems == []


def _model(path, activations="q8", **backends) -> Qwen35Model:
    return Qwen35Model(open_gguf(path), activations=activations, backends=Backends(**backends))


def _prompt(model, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, model.n_vocab, 10).astype(np.int32)


def _verify_session(model) -> list[np.ndarray]:
    """Logits of: a prompt, a 4-token verify (snapshots), rollback to 2 of them, then two
    single steps; every row as computed."""
    prompt = _prompt(model)
    state = model.new_state(64, snapshot_slots=4)
    rows = [model.forward(prompt, 0, state, prefill=False)]
    start = state.length
    drafts = np.array([5, 9, 2, 7], dtype=np.int32)
    rows.append(model.forward(drafts, start, state, snapshots=True))
    state.rollback(start + 2)
    for tok in (11, 3):
        rows.append(model.forward(np.array([tok], dtype=np.int32), state.length, state))
    return rows


@pytest.mark.parametrize("activations", ["q8", "f32"])
def test_hybrid_with_the_cpu_standing_in_is_bitwise_the_cpu_model(tiny_path, activations):
    """FFN of the last two layers offloaded from a copying stand-in trunk: every logit
    bitwise the plain CPU model's (prompt, verify, rollback, steps)."""
    plain = _model(tiny_path, activations)
    trunk = CopyingCpuOps()
    hybrid = _model(tiny_path, activations, trunk=trunk, host_ffn=frozenset({2, 3}))
    assert [isinstance(b.ffn, OffloadedFeedForward) for b in hybrid.blocks] == [0, 0, 1, 1]
    assert hybrid.backends.name == "stand-in+cpu-ffn"
    got, want = _verify_session(hybrid), _verify_session(plain)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.view(np.uint32), w.view(np.uint32))
    times = hybrid.backends.times
    assert times.calls == 2 * 4  # two offloaded layers, four forwards
    assert times.transfer > 0 and times.host_ffn > 0
    assert trunk.crossings > 0


def test_offloaded_ffn_runs_the_requested_activations_on_the_host(tiny_path, fake_gpu):
    """A GPU trunk is float32 (its only matvec); host FFNs keep the model's mode."""
    model = _model(tiny_path, "q8", trunk=fake_gpu[0], host_ffn=frozenset({3}))
    offloaded = model.blocks[3].ffn
    assert isinstance(offloaded, OffloadedFeedForward)
    assert offloaded.ffn.down.kernel.activations == "q8"
    assert isinstance(model.blocks[0].ffn.down, GpuLinear)
    assert isinstance(model.head, GpuLinear)


def test_gpu_linear_refuses_8_bit_activations(tiny_path, fake_gpu):
    w = open_gguf(tiny_path).tensors["blk.0.ffn_down.weight"]
    with pytest.raises(MtpdecError, match="float32 activations"):
        GpuLinear(w, Numerics("q8"), fake_gpu[0])


@pytest.mark.parametrize("host_ffn", [frozenset(), frozenset({1, 3})])
def test_gpu_glue_tracks_the_cpu_f32_model(tiny_path, fake_gpu, host_ffn):
    """The GPU backend's model code with fake CUDA: logits within float32 noise of the
    CPU f32 model (correlation, argmax) through prompt, verify, rollback."""
    ops, fakes = fake_gpu
    gpu = _model(tiny_path, "f32", trunk=ops, host_ffn=host_ffn)
    got, want = _verify_session(gpu), _verify_session(_model(tiny_path, "f32"))
    for g, w in zip(got, want):
        assert g.shape == w.shape
        for a, b in zip(g, w):
            assert np.corrcoef(a, b)[0, 1] > 0.99999
            assert int(np.argmax(a)) == int(np.argmax(b))
    launched = fakes.launches
    for name in ("matvec", "rmsnorm", "l2norm", "silu_mul", "sigmoid_mul", "rope_neox",
                 "attend", "conv_silu", "delta_rule"):  # fmt: skip
        assert launched.get(name, 0) > 0, name
    assert ops.uploaded_bytes > 0


def _check_verify_rows_are_single_steps(model) -> None:
    """Each row of a 9-token verify (two matvec groups) bitwise equals the same token
    fed alone."""
    prompt, toks = _prompt(model), np.array([5, 9, 2, 7, 1, 8, 6, 4, 3], dtype=np.int32)
    a, b = model.new_state(64, snapshot_slots=9), model.new_state(64)
    model.forward(prompt, 0, a)
    model.forward(prompt, 0, b)
    batch = model.forward(toks, a.length, a, snapshots=True)
    for i, t in enumerate(toks):
        one = model.forward(np.array([t], dtype=np.int32), b.length, b)
        np.testing.assert_array_equal(batch[i].view(np.uint32), one[0].view(np.uint32))


def test_gpu_glue_verify_rows_are_bitwise_single_steps(tiny_path, fake_gpu):
    """Verify rows are bitwise single steps, and every kernel of kernels/*.cu but Gemma's
    GELU gate is launched within its contract (the fixture checks each launch)."""
    ops, fakes = fake_gpu
    gpu = _model(tiny_path, "f32", trunk=ops, host_ffn=frozenset({1}))
    _check_verify_rows_are_single_steps(gpu)
    assert gpu.head_picks(np.zeros((2, gpu.config.n_embd), dtype=np.float32)).shape == (2,)
    assert set(fakes.launches) == set(fakes.signatures) - {"gelu_mul"}  # gelu: Gemma's


@pytest.mark.parametrize("drafter", ["mtp", "oracle"])
def test_greedy_speculative_on_the_gpu_glue_equals_plain(tiny_path, fake_gpu, drafter):
    ops, fakes = fake_gpu
    model = _model(tiny_path, "f32", trunk=ops, host_ffn=frozenset({2}))
    prompt = _prompt(model).tolist()
    plain_steps = decode_plain(model, prompt, N_PREDICT, Sampler(), model.new_state(128), False)
    plain = [t for s in plain_steps for t in s.tokens]
    state = model.new_state(128, snapshot_slots=4)
    reference = np.array(prompt + plain, dtype=np.int32)
    draft = make_drafter(drafter, model, state, None, reference, 0.5, seed=3)
    steps = decode_speculative(model, prompt, N_PREDICT, Sampler(), state, draft, FixedN(4),
                               stop_at_eog=False)  # fmt: skip
    assert [t for s in steps for t in s.tokens] == plain
    assert fakes.launches["argmax"] > 0  # verify picks found on the device


def test_gpu_device_without_cupy_is_a_one_line_error(tiny_path):
    pytest.importorskip("numpy")
    try:
        import cupy  # noqa: F401

        pytest.skip("CuPy is installed: the error path needs a machine without it")
    except ImportError:
        pass
    with pytest.raises(MtpdecError, match="CuPy"):
        load_model(tiny_path, device=DeviceOptions("gpu"))


# ---- on a real GPU (scripts/gpu_check.sh); visible skips elsewhere ----------------------


def _rows_agree(got: list[np.ndarray], want: list[np.ndarray]) -> tuple[float, float]:
    """(share of rows with the same argmax, lowest per-row correlation)."""
    same, corr = [], []
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            same.append(int(np.argmax(a)) == int(np.argmax(b)))
            corr.append(float(np.corrcoef(a, b)[0, 1]))
    return float(np.mean(same)), min(corr)


@pytest.mark.parametrize("cpu_ffn", [0, 2])
def test_gpu_model_tracks_the_cpu_f32_model(cupy, tiny_path, cpu_ffn):
    """Issue 9's parity bar on the GPU: argmax agreement >= 99%, correlation >= 0.999
    against the CPU f32 mode, through prompt, verify, rollback and steps; all-GPU and
    hybrid (FFN of the last two layers on the CPU, f32 there too)."""
    gpu = load_model(tiny_path, activations="f32", device=DeviceOptions("gpu", cpu_ffn))
    cpu = load_model(tiny_path, activations="f32")
    agree, corr = _rows_agree(_verify_session(gpu), _verify_session(cpu))
    print(f"GPU parity (cpu_ffn={cpu_ffn}): argmax agreement {agree:.3f}, min corr {corr:.6f}")
    assert agree >= 0.99 and corr >= 0.999


def test_gpu_model_verify_rows_are_bitwise_single_steps(cupy, tiny_path):
    """Bit-identity across n on the GPU, whole model: a 9-token verify (two matvec
    groups) row by row against the same tokens fed one at a time."""
    _check_verify_rows_are_single_steps(
        load_model(tiny_path, activations="f32", device=DeviceOptions("gpu"))
    )


def _gemma_rows(model) -> list[np.ndarray]:
    """Logits of a 6-token prompt and of two single steps after it."""
    ids = np.array(model.tokenizer.encode("The capital of France is"), dtype=np.int32)
    state = model.new_state(32)
    rows = [model.forward(ids, 0, state)]
    for tok in (3681, 236761):
        rows.append(model.forward(np.array([tok], dtype=np.int32), state.length, state))
    return rows


@pytest.mark.model
def test_gemma_on_the_gpu_glue_tracks_the_cpu_f32_model(gemma_path, fake_gpu):
    """Gemma-3-270M through GpuOps (GELU gate, soft-capping, sliding windows, the head
    on the device) with fake CUDA: as close to the CPU f32 model as float32 allows, and
    its greedy verify picks found by the backend's argmax."""
    ops, fakes = fake_gpu
    gpu = Gemma3Model(open_gguf(gemma_path), activations="f32", backends=Backends(trunk=ops))
    agree, corr = _rows_agree(
        _gemma_rows(gpu), _gemma_rows(load_model(gemma_path, activations="f32"))
    )
    assert agree == 1.0 and corr > 0.99999
    assert fakes.launches["gelu_mul"] > 0
    state = gpu.new_state(16)
    picks = gpu.forward_picks(np.array([2, 651, 6207], dtype=np.int32), 0, state)
    assert picks.dtype == np.int32 and fakes.launches["argmax"] == 1


@pytest.mark.model
def test_gemma_gpu_model_tracks_the_cpu_f32_model(cupy, gemma_path):
    gpu = load_model(gemma_path, activations="f32", device=DeviceOptions("gpu"))
    agree, corr = _rows_agree(
        _gemma_rows(gpu), _gemma_rows(load_model(gemma_path, activations="f32"))
    )
    print(f"GPU parity (Gemma-3-270M): argmax agreement {agree:.3f}, min corr {corr:.6f}")
    assert agree >= 0.99 and corr >= 0.999


def test_loading_reports_each_trunk_layer(tiny_path, fake_gpu):
    """load's on_layer hook (the upload progress bar of generate and sweep) sees every
    trunk layer in order."""
    from mtpdec.generate import upload_progress

    seen: list[tuple[int, int]] = []
    Qwen35Model(open_gguf(tiny_path), activations="f32",
                backends=Backends(trunk=fake_gpu[0]),
                on_layer=lambda i, n: seen.append((i, n)))  # fmt: skip
    assert seen == [(i, 4) for i in range(4)]
    updates = []
    status = type("Status", (), {"update": lambda self, line: updates.append(line)})()
    on_layer = upload_progress(status, "loading", "gpu")
    on_layer(1, 4)
    assert len(updates) == 1 and upload_progress(status, "loading", "cpu") is None
