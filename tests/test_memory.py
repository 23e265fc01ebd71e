"""Memory planned before it is taken: the state plan equals what ``new_state`` allocates,
and a run whose plan exceeds the available memory stops with one line naming --ctx
before the model is loaded."""

from __future__ import annotations

import time

import numpy as np
import pytest
from ggufs import gemma3_tiny, write_gguf
from typer.testing import CliRunner

from mtpdec.cli import app
from mtpdec.errors import MtpdecError
from mtpdec.memory import available_bytes, check_plan_fits, state_nbytes
from mtpdec.state import KVCache, ModelState, RecurrentState

runner = CliRunner()


def allocated(state: ModelState) -> dict[str, int]:
    """Bytes of every array a state holds, by kind."""
    kv = recurrent = 0
    for layer in state.layers + ([state.mtp] if state.mtp is not None else []):
        if isinstance(layer, KVCache):
            kv += layer.k.nbytes + layer.v.nbytes
        else:
            assert isinstance(layer, RecurrentState)
            recurrent += layer.pool.nbytes + layer.conv.nbytes + layer.ring_conv.nbytes
    return {"kv_cache": kv, "recurrent_state": recurrent}


@pytest.mark.parametrize("name", ["qwen_tiny", "qwen_hk_lt_hv"])
@pytest.mark.parametrize("n_ctx, slots", [(16, 0), (300, 4), (1024, 16)])
def test_state_plan_is_what_new_state_allocates(model_of, name, n_ctx, slots):
    model = model_of(name)
    plan = state_nbytes(model.config, n_ctx, slots)
    assert plan == allocated(model.new_state(n_ctx, slots))
    assert plan["recurrent_state"] > 0 and plan["kv_cache"] > 0


def test_gemma_state_plan(tmp_path):
    from mtpdec.models import load_model

    model = load_model(write_gguf(tmp_path / "g.gguf", "gemma3", *gemma3_tiny()))
    for n_ctx in (1, 77, 512):
        plan = state_nbytes(model.config, n_ctx, 4)
        assert plan == allocated(model.new_state(n_ctx, 4)) and plan["recurrent_state"] == 0


def test_available_bytes_reads_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable:   2048 kB\n")
    assert available_bytes(meminfo) == 2048 * 1024
    meminfo.write_text("MemTotal: 100 kB\n")
    assert available_bytes(meminfo) is None
    assert available_bytes(tmp_path / "absent") is None


def test_plan_check_names_ctx_and_sizes():
    plan = {"kv_cache": 3 << 30, "recurrent_state": 1 << 30, "repacked_weights": 0}
    check_plan_fits(plan, 4096, available=4 << 30)  # fits exactly
    with pytest.raises(MtpdecError) as err:
        check_plan_fits(plan, 4096, available=2 << 30)
    msg = str(err.value)
    assert "4.0 GiB of KV cache and recurrent state for --ctx 4096" in msg
    assert "2.0 GiB of memory available; lower --ctx" in msg and "\n" not in msg
    with pytest.raises(MtpdecError, match="1.0 GiB of weight copies.*or --prefill-mib"):
        check_plan_fits(plan | {"dense_prefill": 1 << 30}, 4096, available=2 << 30)


@pytest.mark.parametrize("command", ["generate", "sweep"])
def test_too_large_ctx_fails_before_loading(model_of, monkeypatch, command, tmp_path):
    import mtpdec.memory
    import mtpdec.models

    path = model_of("qwen_tiny").file.path
    need = sum(state_nbytes(model_of("qwen_tiny").config, 2048, 16).values())
    monkeypatch.setattr(mtpdec.memory, "available_bytes", lambda: need // 2)

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(mtpdec.models, "load_model", no_load)
    args = [command, str(path), "--ctx", "2048"]
    args += ["hello"] if command == "generate" else ["--draft", "oracle", "--draft-n", "0,16"]
    t0 = time.perf_counter()
    result = runner.invoke(app, args)
    assert time.perf_counter() - t0 < 1.0
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "for --ctx 2048" in lines[0] and "lower --ctx" in lines[0]


def test_generate_json_reports_the_plan(model_of):
    import json

    model = model_of("qwen_tiny")
    result = runner.invoke(
        app, ["generate", str(model.file.path), "hi", "-n", "2", "--ctx", "64", "--json",
              "--draft-n", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)["memory_plan_bytes"]
    assert {k: plan[k] for k in ("kv_cache", "recurrent_state")} == state_nbytes(
        model.config, 64, 3
    )
    assert plan["repacked_weights"] > 0 and np.isfinite(plan["dense_prefill"])
