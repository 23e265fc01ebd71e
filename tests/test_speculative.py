"""Speculative decoding against plain decoding: greedy output token for token, for every
drafter, n = 1..8 and auto, both activation modes, qwen35 synth files (H_k = H_v and
H_k < H_v) and Gemma-3-270M (lookup, oracle); rollback after junk drafts bitwise; the
MTP drafter's cache rebuild."""

from __future__ import annotations

import numpy as np
import pytest

from mtpdec.decode import decode_plain
from mtpdec.draft import make_drafter
from mtpdec.draft.adaptive import AdaptiveN, FixedN
from mtpdec.draft.setup import AUTO_MAX_N
from mtpdec.sampling import Sampler
from mtpdec.speculative import decode_speculative
from mtpdec.state import KVCache, RecurrentState

N_PREDICT = 64
NS = [*range(1, 9), None]  # None: auto
# f32 runs fewer n to keep CI under its time limit: every batch width's bit-identity is
# tested in both modes by test_models.py; here f32 covers the loop at a few widths
F32_NS = [1, 4, 8, None]


def _prompt(model, seed: int = 0) -> list[int]:
    """Random ids with a repeated stretch (so that lookup finds matches)."""
    ids = np.random.default_rng(seed).integers(0, model.n_vocab, 12).tolist()
    return ids + ids[:8] + ids


def _plain(model, prompt: list[int], n_predict: int = N_PREDICT) -> list[int]:
    steps = decode_plain(model, prompt, n_predict, Sampler(), model.new_state(256), False)
    return [t for s in steps for t in s.tokens]


def _policy(n: int | None):
    if n is None:  # a made-up cost curve: the policy's choices, not its speed, matter here
        return AdaptiveN([1.0 + 0.1 * k for k in range(AUTO_MAX_N + 1)], AUTO_MAX_N)
    return FixedN(n)


def _speculative(model, prompt, drafter_name, n, reference=None, accept=1.0, n_predict=N_PREDICT):
    policy = _policy(n)
    state = model.new_state(256, snapshot_slots=policy.max_n)
    drafter = make_drafter(drafter_name, model, state, None, reference, accept, seed=5)
    steps = list(decode_speculative(model, prompt, n_predict, Sampler(), state, drafter, policy,
                                    stop_at_eog=False))  # fmt: skip
    return [t for s in steps for t in s.tokens], steps


CASES = [("lookup", 1.0), ("mtp", 1.0), ("mtp+lookup", 1.0), ("oracle", 0.0),
         ("oracle", 0.5), ("oracle", 1.0)]  # fmt: skip


@pytest.mark.parametrize("activations", ["q8", "f32"])
@pytest.mark.parametrize("name", ["qwen_tiny", "qwen_hk_lt_hv"])
def test_greedy_speculative_equals_plain_qwen35(model_of, name, activations):
    model = model_of(name, activations)
    prompt = _prompt(model)
    plain = _plain(model, prompt)
    reference = np.array(prompt + plain, dtype=np.int32)
    # the H_k < H_v file (its GDN state differs in shape, not in how it rolls back) runs
    # the drafters that exercise rollback most: MTP (cache rebuild) and the half-right oracle
    cases = CASES if name == "qwen_tiny" else [("mtp", 1.0), ("oracle", 0.5)]
    for drafter, accept in cases:
        for n in NS if activations == "q8" else F32_NS:
            out, steps = _speculative(model, prompt, drafter, n, reference, accept)
            assert out == plain, (drafter, accept, n)
            if drafter == "oracle" and accept == 1.0 and n is not None:
                assert all(s.accepted == s.drafted for s in steps)  # every draft right
            if drafter == "oracle" and accept == 0.0:
                assert sum(s.accepted for s in steps) == 0


@pytest.mark.model
@pytest.mark.parametrize("activations", ["q8", "f32"])
def test_greedy_speculative_equals_plain_gemma(model_of, activations):
    model = model_of("gemma", activations)
    prompt = model.tokenizer.encode(
        "Copy this list exactly: apples, pears, plums, figs, apples, pears, plums, figs."
    )
    plain = _plain(model, prompt)
    reference = np.array(prompt + plain, dtype=np.int32)
    # q8 (the default): lookup at every n, the oracle at a few; f32 (4x slower per token
    # here) at fewer, for CI's time limit
    cases = [("lookup", 1.0, NS), ("oracle", 0.5, [2, 5, None]), ("oracle", 0.0, [8])]
    if activations == "f32":
        cases = [("lookup", 1.0, [1, 8]), ("oracle", 0.5, [3])]
    for drafter, accept, ns in cases:
        for n in ns:
            out, _ = _speculative(model, prompt, drafter, n, reference, accept)
            assert out == plain, (drafter, accept, n)


def _mtp_entries(state) -> tuple[np.ndarray, np.ndarray]:
    return state.mtp.k[:, : state.mtp_length].copy(), state.mtp.v[:, : state.mtp_length].copy()


@pytest.mark.parametrize("keep", [0, 1, 2, 3])
def test_rollback_after_junk_drafts_restores_every_part(model_of, keep):
    """Verify t0 and 3 junk drafts, keep ``keep`` of them: the next logits, GDN and conv
    states, attention KV and the MTP cache (rebuilt by the drafter) are bitwise those of
    a state that only ever saw the kept tokens."""
    model = model_of("qwen_tiny", "q8")
    prompt = np.array(_prompt(model, seed=1)[:9], dtype=np.int32)
    junk = np.random.default_rng(7).integers(0, model.n_vocab, 4).astype(np.int32)
    after = np.int32(11)  # the token fed after the rollback

    def run(fed: np.ndarray, rollback: bool):
        state = model.new_state(64, snapshot_slots=3)
        drafter = make_drafter("mtp", model, state)
        hn = model.hidden(prompt, 0, state, prefill=True)
        drafter.propose(np.append(prompt, fed[0]), 3, hn)  # chains junk into the MTP cache
        hn = model.hidden(fed, len(prompt), state, snapshots=True)
        if rollback:
            state.rollback(len(prompt) + 1 + keep)
        hn = hn[: keep + 1]
        context = np.concatenate([prompt, fed[: keep + 1], [after]]).astype(np.int32)
        draft = drafter.propose(context, 2, hn)
        logits = model.forward(np.array([after]), state.length, state)
        return state, draft, logits

    got = run(junk, True)
    ref = run(junk[: keep + 1], False)
    assert np.array_equal(got[2].view(np.uint32), ref[2].view(np.uint32))
    assert np.array_equal(got[1].tokens, ref[1].tokens)
    for a, b in zip(got[0].layers, ref[0].layers):
        if isinstance(a, RecurrentState):
            assert np.array_equal(a.s.view(np.uint32), b.s.view(np.uint32))
            assert np.array_equal(a.conv.view(np.uint32), b.conv.view(np.uint32))
        else:
            assert isinstance(a, KVCache)
            n = got[0].length
            assert np.array_equal(a.k[:, :n], b.k[:, :n]) and np.array_equal(a.v[:, :n], b.v[:, :n])
    assert got[0].mtp_length == ref[0].mtp_length
    for x, y in zip(_mtp_entries(got[0]), _mtp_entries(ref[0])):
        assert np.array_equal(x.view(np.uint32), y.view(np.uint32))


def test_a_step_without_drafts_writes_no_snapshot(model_of):
    """n = 0 through the speculative loop is plain decoding: no snapshot is written."""
    model = model_of("qwen_tiny", "q8")
    prompt = _prompt(model)
    state = model.new_state(256, snapshot_slots=4)
    drafter = make_drafter("lookup", model, state)
    steps = list(decode_speculative(model, prompt, 16, Sampler(), state, drafter, FixedN(0)))
    assert all(s.drafted == 0 and len(s.tokens) == 1 for s in steps)
    assert all(layer.taken == 0 for layer in state.layers if isinstance(layer, RecurrentState))
    assert [t for s in steps for t in s.tokens] == _plain(model, prompt, 16)


def test_speculative_stops_like_plain(model_of):
    """n_predict and the context limit end a speculative run where they end a plain one."""
    model = model_of("qwen_tiny", "q8")
    prompt = _prompt(model)
    plain = _plain(model, prompt, 40)
    reference = np.array(prompt + plain, dtype=np.int32)
    for n_predict in (1, 2, 5, 17):
        out, steps = _speculative(model, prompt, "oracle", 4, reference, 1.0, n_predict)
        assert out == plain[:n_predict] and steps[-1].stop == "n_predict"
    policy = FixedN(8)
    state = model.new_state(len(prompt) + 10, snapshot_slots=8)
    drafter = make_drafter("oracle", model, state, reference=reference)
    steps = list(decode_speculative(model, prompt, 100, Sampler(), state, drafter, policy, False))
    out = [t for s in steps for t in s.tokens]
    assert out == plain[: len(out)] and steps[-1].stop == "ctx" and state.length <= state.n_ctx


def test_reduced_draft_vocabulary(model_of):
    """--draft-vocab: MTP drafts come from the first ids only; the output is unchanged."""
    model = model_of("qwen_tiny", "q8")
    prompt = _prompt(model)
    state = model.new_state(256, snapshot_slots=3)
    drafter = make_drafter("mtp", model, state, draft_vocab=100)
    steps = list(decode_speculative(model, prompt, 32, Sampler(), state, drafter, FixedN(3), False))
    assert [t for s in steps for t in s.tokens] == _plain(model, prompt, 32)
    probe = make_drafter("mtp", model, model.new_state(64), draft_vocab=100)
    hn = model.hidden(np.array(prompt, dtype=np.int32), 0, probe.state, prefill=True)
    assert np.all(probe.propose(np.array(prompt + [1], dtype=np.int32), 4, hn).tokens < 100)


@pytest.mark.parametrize("drafter_name", ["mtp", "lookup"])
def test_seeded_speculative_sampling_is_reproducible(model_of, drafter_name):
    """T > 0: the same seed gives the same tokens (MTP drafts are sampled too)."""
    model = model_of("qwen_tiny", "q8")
    prompt = _prompt(model)

    def run(seed: int) -> list[int]:
        sampler = Sampler(temp=0.9, top_k=40, seed=seed)
        state = model.new_state(256, snapshot_slots=3)
        drafter = make_drafter(drafter_name, model, state, sampler, seed=seed)
        steps = decode_speculative(model, prompt, 32, sampler, state, drafter, FixedN(3), False)
        return [t for s in steps for t in s.tokens]

    first = run(11)
    assert len(first) == 32 and run(11) == first
    assert run(12) != first  # the seed matters
