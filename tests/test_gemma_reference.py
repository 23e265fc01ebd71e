"""Gemma-3-270M against the float64 numpy forward pass of tests/gemma_reference.py.

Weights come from gguf's own reader and dequantizer (the ``gemma_ref`` fixture), so the
reference shares no code with mtpdec. In ``activations="f32"`` mode it pins down the
exact math (embedding scale, per-head q/k norms, NEOX rotary with per-layer bases, sliding
window, query scale, pre/post norms, GeGLU with the tanh GELU, tied head) far more
tightly than llama.cpp can, whose activation rounding moves logits by more than that. The
default q8 mode rounds activations as llama.cpp does: it is held to llama.cpp's distance
from the reference (test_accuracy.py measures both on the same tokens).
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from mtpdec.models import load_model
from tests.gemma_reference import GemmaReference
from tests.ggufs import gemma3_tiny, write_gguf

TOKENS = [2, 818, 3823, 8864, 37423, 506, 1024]  # BOS + arbitrary ids


def _compare(got: np.ndarray, want: np.ndarray) -> None:
    for pos, (g, r) in enumerate(zip(got, want)):
        corr = np.corrcoef(g, r)[0, 1]
        rel = np.abs(g - r).max() / np.abs(r).max()
        assert corr > 0.99999 and rel < 1e-4, f"position {pos}: corr {corr}, rel {rel}"
    assert (got.argmax(1) == want.argmax(1)).all()


def _compare_q8(got: np.ndarray, want: np.ndarray) -> None:
    """8-bit activations on Gemma (outliers in 256-value blocks): llama.cpp's rows sit at
    0.995-0.9995 from the float64 pass (``quant-formats.md``)."""
    corr = [np.corrcoef(g, r)[0, 1] for g, r in zip(got, want)]
    assert min(corr) > 0.995 and np.median(corr) > 0.998, corr


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("activations", ["f32", "q8"])
def test_gemma_forward_matches_float64_reference(gemma_path, gemma_ref, activations):
    model = load_model(gemma_path, activations=activations)
    want = GemmaReference(gemma_ref, model.config).logits(TOKENS)
    state = model.new_state(16)
    got = np.concatenate([model.forward(np.array([t]), i, state) for i, t in enumerate(TOKENS)])
    (_compare if activations == "f32" else _compare_q8)(got, want)


def test_sliding_window_matches_float64_reference(tmp_path):
    """A random 6-layer gemma3 with a 16-position window, run over 28 positions, so the
    sliding layers drop keys (prefill in kernel chunks and dense, then single tokens);
    its global layer has linear rope scaling (factor 8, as Gemma 3 4B and up). Its weights
    are F32, which have no integer kernel: the q8 mode does not apply."""
    kv, tensors = gemma3_tiny()
    kv |= {"gemma3.rope.scaling.type": "linear", "gemma3.rope.scaling.factor": 8.0}
    path = write_gguf(tmp_path / "gemma_tiny.gguf", "gemma3", kv, tensors)
    model = load_model(path)
    assert 0 < model.config.sliding_window < 28 and model.config.rope_freq_scale == 0.125
    ids = np.random.default_rng(7).integers(0, model.n_vocab, 28)
    want = GemmaReference(gguf.GGUFReader(path), model.config).logits(ids.tolist())
    state = model.new_state(32)
    got = [model.forward(ids[:4], 0, state), model.forward(ids[4:16], 4, state, prefill=True)]
    got += [model.forward(ids[i : i + 1], i, state) for i in range(16, 28)]
    _compare(np.concatenate(got), want)
