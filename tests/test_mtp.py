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


def test_mtp_fill_writes_the_cache_entries_of_a_prompt(synth_file):
    """mtp_fill writes what mtp_forward writes (f32: the dense prompt products of 12 rows
    against the kernels), and the next draft reads them the same way."""
    model = load_model(synth_file, activations="f32")
    rng = np.random.default_rng(3)
    ids = rng.integers(0, model.n_vocab, 13).astype(np.int32)
    hidden = rng.standard_normal((13, model.config.n_embd)).astype(np.float32)
    filled, forwarded = model.new_state(32), model.new_state(32)
    model.mtp_fill(ids[:12], hidden[:12], 0, filled)
    model.mtp_forward(ids[:12], hidden[:12], 0, forwarded)
    assert filled.mtp_length == forwarded.mtp_length == 12
    for a, b in ((filled.mtp.k, forwarded.mtp.k), (filled.mtp.v, forwarded.mtp.v)):
        assert _rel(a[:, :12], b[:, :12]) < 1e-5
    got = model.mtp_forward(ids[12:], hidden[12:], 12, filled)[0]
    want = model.mtp_forward(ids[12:], hidden[12:], 12, forwarded)[0]
    assert _rel(got, want) < 1e-5


def test_decode_steps_feed_the_head_only_their_own_rows(synth_file):
    """The drafter fills the head's cache over the prompt in ``start``; every decode
    step's head calls then take at most the verify's accepted rows and t0 (n + 1)."""
    from mtpdec.draft import make_drafter
    from mtpdec.draft.adaptive import FixedN
    from mtpdec.sampling import Sampler
    from mtpdec.speculative import decode_speculative

    model = load_model(synth_file)
    prompt = np.random.default_rng(4).integers(0, model.n_vocab, 40).astype(np.int32)
    calls: list[tuple[str, int]] = []
    fill, forward = model.mtp_fill, model.mtp_forward
    model.mtp_fill = lambda t, *a, **k: (calls.append(("fill", len(t))), fill(t, *a, **k))[1]
    model.mtp_forward = lambda t, *a, **k: (calls.append(("fwd", len(t))), forward(t, *a, **k))[1]
    state = model.new_state(80, snapshot_slots=2)
    drafter = make_drafter("mtp", model, state, None, None, 1.0, 0)
    steps = list(decode_speculative(model, prompt, 16, Sampler(), state, drafter, FixedN(2),
                                    stop_at_eog=False))  # fmt: skip
    assert calls[0] == ("fill", 40)
    assert calls[1:] and all(kind == "fwd" and size <= 3 for kind, size in calls[1:])
    assert sum(len(s.tokens) for s in steps) == 16
