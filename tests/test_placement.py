"""The GPU/CPU placement plan (mtpdec.gpu.placement) from tensor sizes: which layers'
FFN stay in CPU RAM, what the GPU holds, and the errors naming the option to change."""

from __future__ import annotations

import pytest
from conftest import synth_file

from mtpdec.errors import MtpdecError
from mtpdec.gpu.placement import SCRATCH_BYTES, plan_placement
from mtpdec.loader import open_gguf
from mtpdec.memory import state_nbytes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return open_gguf(synth_file(tmp_path_factory, "placement"))


def ffn_bytes(f, layer: int) -> int:
    return sum(t.nbytes for name, t in f.tensors.items() if name.startswith(f"blk.{layer}.ffn_"))


def test_the_last_layers_ffn_stay_on_the_cpu(tiny) -> None:
    n = tiny.config.n_trunk
    plan = plan_placement(tiny, 256, 3, cpu_ffn=2)
    assert plan.cpu_ffn_layers == (n - 2, n - 1) and plan.gpu_ffn_layers == tuple(range(n - 2))
    assert plan.cpu_ffn_bytes == ffn_bytes(tiny, n - 2) + ffn_bytes(tiny, n - 1)
    every = sum(t.nbytes for t in tiny.tensors.values())
    embd = 0 if "output.weight" not in tiny.tensors else tiny.tensors["token_embd.weight"].nbytes
    weights = plan.gpu_bytes["weights"] + plan.gpu_bytes["ffn_weights"]
    assert weights + plan.cpu_ffn_bytes + embd == every  # each tensor in one place
    state = state_nbytes(tiny.config, 256, 3)
    assert plan.gpu_bytes["kv_cache"] == state["kv_cache"] > 0
    assert plan.gpu_bytes["recurrent_state"] == state["recurrent_state"] > 0


def test_auto_fills_the_vram_budget_exactly(tiny) -> None:
    n = tiny.config.n_trunk
    fixed = plan_placement(tiny, 256, 3, cpu_ffn=n).gpu_total  # no FFN on the GPU
    for on_gpu in range(n + 1):
        budget = fixed + sum(ffn_bytes(tiny, i) for i in range(on_gpu))
        plan = plan_placement(tiny, 256, 3, cpu_ffn="auto", vram_bytes=budget)
        assert len(plan.gpu_ffn_layers) == on_gpu and plan.gpu_total == budget
        if on_gpu:
            fewer = plan_placement(tiny, 256, 3, cpu_ffn="auto", vram_bytes=budget - 1)
            assert len(fewer.gpu_ffn_layers) == on_gpu - 1
    assert plan.summary()["gpu_bytes"]["scratch"] == SCRATCH_BYTES


def test_impossible_plans_name_the_option(tiny) -> None:
    n = tiny.config.n_trunk
    cases = [
        ({"cpu_ffn": "auto"}, "--cpu-ffn auto needs --vram"),
        ({"cpu_ffn": -1}, f"--cpu-ffn must be 0..{n} "),
        ({"cpu_ffn": n + 1}, f"--cpu-ffn must be 0..{n} "),
        (
            {"cpu_ffn": 0, "vram_bytes": 1 << 20},
            "more than --vram 0.0 GiB; lower --ctx or --draft-n",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(MtpdecError, match=message):
            plan_placement(tiny, 256, 3, **kwargs)


def test_too_little_vram_for_the_chosen_ffn_says_raise_cpu_ffn(tiny) -> None:
    fixed = plan_placement(tiny, 256, 3, cpu_ffn=tiny.config.n_trunk).gpu_total
    with pytest.raises(MtpdecError, match="raise --cpu-ffn"):
        plan_placement(tiny, 256, 3, cpu_ffn=0, vram_bytes=fixed + 1)


def test_only_qwen35_is_placed(gemma_path) -> None:
    with pytest.raises(MtpdecError, match="the GPU plan is for qwen35 models, not 'gemma3'"):
        plan_placement(open_gguf(gemma_path), 256, 0)


def test_host_memory_plan_of_a_gpu_model_counts_only_the_offloaded_ffns(tiny) -> None:
    """generate/sweep's host-RAM check: a GPU model keeps its state on the device and
    repacks (q8) only the FFN matrices the CPU runs."""
    from mtpdec.generate import plan_memory
    from mtpdec.gpu.placement import DeviceOptions

    path = tiny.path
    cpu = plan_memory(path, 64, "q8", 0, 4)
    gpu = plan_memory(path, 64, "q8", 0, 4, DeviceOptions("gpu", 0))
    hybrid = plan_memory(path, 64, "q8", 0, 4, DeviceOptions("gpu", 2))
    from mtpdec.cpu.isa import host_path
    from mtpdec.cpu.matvec import repackable
    from mtpdec.quants.types import GGMLType

    n = tiny.config.n_trunk
    # the offloaded FFN matrices q8 mode repacks on this CPU (Q8_0 needs vpdpbusd)
    offloaded = sum(
        t.nbytes
        for name, t in tiny.tensors.items()
        if name.startswith((f"blk.{n - 2}.ffn_", f"blk.{n - 1}.ffn_"))
        and repackable(GGMLType(t.ggml_type), host_path())
    )
    assert cpu["kv_cache"] > 0 and cpu["repacked_weights"] > offloaded
    assert gpu == {"kv_cache": 0, "recurrent_state": 0, "repacked_weights": 0, "dense_prefill": 0}
    assert hybrid["repacked_weights"] == offloaded and hybrid["kv_cache"] == 0
