"""The qwen35 MTP head against the float64 reference of tests/qwen35_reference.py:
concat order (embedding first), enorm/hnorm, eh_proj, the gated attention block with
its own KV cache, the SwiGLU FFN, shared_head_norm and the LM head."""

from __future__ import annotations

import numpy as np
import pytest

from mtpdec.models import load_model
from mtpdec.synth import SynthOverrides, write_synth
from tests.qwen35_reference import Qwen35Reference

N = 7  # MTP positions fed


@pytest.fixture(scope="module")
def synth_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("mtp") / "tiny.gguf"
    # H_k < H_v and GQA, so head mapping mistakes show
    overrides = SynthOverrides(layers=4, ssm_groups=2, ssm_heads=4)
    write_synth(out, "qwen35-tiny", seed=5, overrides=overrides, force=False, report=lambda _: None)
    return out


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def _inputs(model):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, model.n_vocab, N).astype(np.int32)
    hidden = rng.standard_normal((N, model.config.n_embd)).astype(np.float32)
    return ids, hidden


def test_mtp_head_matches_numpy_reference(synth_file):
    model = load_model(synth_file, activations="f32")
    ids, hidden = _inputs(model)
    ref = Qwen35Reference(synth_file)
    want = [ref.mtp_step(int(ids[p]), hidden[p], p) for p in range(N)]
    state = model.new_state(16)
    logits, hm = model.mtp_forward(ids[:3], hidden[:3], 0, state)
    more = model.mtp_forward(ids[3:], hidden[3:], 3, state)
    logits, hm = np.concatenate([logits, more[0]]), np.concatenate([hm, more[1]])
    for p in range(N):
        assert _rel(logits[p], want[p][0]) < 1e-5, p
        assert _rel(hm[p], want[p][1]) < 1e-5, p


def test_mtp_head_in_q8_mode_tracks_the_reference(synth_file):
    """8-bit activations move the head's logits by about llama.cpp's rounding noise."""
    model = load_model(synth_file)
    ids, hidden = _inputs(model)
    ref = Qwen35Reference(synth_file)
    want = [ref.mtp_step(int(ids[p]), hidden[p], p) for p in range(N)]
    logits, hm = model.mtp_forward(ids, hidden, 0, model.new_state(16))
    for p in range(N):
        assert np.corrcoef(logits[p], want[p][0])[0, 1] > 0.999, p
        assert np.corrcoef(hm[p], want[p][1])[0, 1] > 0.999, p


def test_concat_order_matters(synth_file):
    """The reference with hidden first disagrees: the comparison above can fail."""
    model = load_model(synth_file, activations="f32")
    ids, hidden = _inputs(model)
    swapped = Qwen35Reference(synth_file, swap_concat=True).mtp_step(int(ids[0]), hidden[0], 0)[0]
    logits, _ = model.mtp_forward(ids[:1], hidden[:1], 0, model.new_state(4))
    assert _rel(logits[0], swapped) > 1e-2


def test_rebuilding_mtp_cache_entries_replaces_them(synth_file):
    """Rewinding start_pos overwrites the head's KV entries from there on (the decoder
    rebuilds accepted positions from trunk hiddens)."""
    model = load_model(synth_file, activations="f32")
    ids, hidden = _inputs(model)
    ref = Qwen35Reference(synth_file)
    for p in range(4):
        ref.mtp_step(int(ids[p]), hidden[p], p)
    state = model.new_state(16)
    model.mtp_forward(ids[:4], hidden[:4], 0, state)
    other = hidden[::-1].copy()
    logits, _ = model.mtp_forward(ids[2:5], other[2:5], 2, state)
    assert state.mtp_length == 5
    want = [ref.mtp_step(int(ids[p]), other[p], p)[0] for p in (2, 3, 4)]
    for row, w in zip(logits, want):
        assert _rel(row, w) < 1e-5
