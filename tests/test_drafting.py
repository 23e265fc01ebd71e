"""Drafters, acceptance rules and the adaptive draft count, on small arrays; the
rejection rule reproduces the target distribution (a chi-square test)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtpdec.accept import accept_greedy, accept_sampled
from mtpdec.draft.adaptive import AdaptiveN, FixedN
from mtpdec.draft.lookup import LookupDrafter
from mtpdec.draft.oracle import OracleDrafter
from mtpdec.errors import MtpdecError


@pytest.mark.parametrize(
    ("drafts", "picks", "expected"),
    [
        ([], [5], 0),
        ([1, 2, 3], [1, 2, 3, 4], 3),
        ([1, 2, 3], [1, 9, 3, 4], 1),
        ([1, 2, 3], [0, 2, 3, 4], 0),
    ],  # fmt: skip
)
def test_accept_greedy(drafts, picks, expected):
    assert accept_greedy(np.array(drafts, dtype=np.int32), np.array(picks)) == expected


def test_lookup_proposes_what_followed_the_longest_match():
    d = LookupDrafter(max_ngram=3, min_ngram=1)
    ctx = np.array([5, 6, 7, 8, 9, 1, 6, 7], dtype=np.int32)
    assert d.propose(ctx, 3).tokens.tolist() == [8, 9, 1]  # "6 7" -> 8 9 1
    ctx = np.append(ctx, [8, 2, 5, 6, 7, 8])  # "6 7 8" twice now: the latest wins
    assert d.propose(ctx, 2).tokens.tolist() == [2, 5]
    assert d.propose(np.append(ctx, 42), 4).tokens.size == 0  # 42 never seen: nothing


def test_lookup_indexes_each_token_once():
    """O(1) work per appended token: a call indexes only the tokens it has not seen."""
    d = LookupDrafter()
    ctx = np.random.default_rng(0).integers(0, 50, 1000).astype(np.int32)
    d.propose(ctx[:500], 4)
    sizes = {m: len(ix) for m, ix in d.index.items()}
    d.propose(ctx[:501], 4)
    assert all(len(d.index[m]) - sizes[m] <= 1 for m in sizes)
    assert len(d.tokens) == 501
    with pytest.raises(MtpdecError, match="shrank"):
        d.propose(ctx[:10], 4)


def test_oracle_corrupts_at_the_set_rate():
    ref = np.arange(100, 4100, dtype=np.int32) % 1000
    prompt = 10
    assert OracleDrafter(ref, 1000, 1.0).propose(ref[:prompt], 8).tokens.tolist() == (
        ref[prompt : prompt + 8].tolist()
    )
    assert not np.any(OracleDrafter(ref, 1000, 0.0).propose(ref[:prompt], 8).tokens
                      == ref[prompt : prompt + 8])  # fmt: skip
    half = OracleDrafter(ref, 1000, 0.5, seed=1)
    kept = [half.propose(ref[:at], 1).tokens[0] == ref[at] for at in range(10, 4000)]
    assert abs(np.mean(kept) - 0.5) < 0.05  # 3990 draws: 6 standard deviations
    off = ref[:prompt].copy()
    off[-1] += 1
    assert half.propose(off, 4).tokens.size == 0  # off the reference: nothing


def test_adaptive_n_drafts_deep_when_drafts_are_right_and_not_when_wrong():
    costs = [1.0 + 0.05 * k for k in range(9)]
    good = AdaptiveN(costs, 8)
    for _ in range(50):
        n = good.choose()
        good.update(n, n, 0.0)
    assert good.choose() == 8
    bad = AdaptiveN(costs, 8)
    chosen = []
    for _ in range(64):
        n = bad.choose()
        chosen.append(n)
        bad.update(n, 0, 0.0)
    assert chosen[-32:].count(0) >= 30  # plain decoding, with a probe now and then
    assert 0 < sum(chosen[-32:]) <= 2
    assert FixedN(3).choose() == 3
    with pytest.raises(MtpdecError):
        FixedN(-1)


def test_rejected_probes_come_ever_more_rarely_and_a_hit_brings_them_back() -> None:
    costs = [1.0 + 0.05 * k for k in range(9)]
    policy = AdaptiveN(costs, 8, probe_every=16, max_probe_gap=256)
    drafted_at = []
    for step in range(3000):
        n = policy.choose()
        if n:
            drafted_at.append(step)
        policy.update(n, 0, 0.0)
    gaps = list(np.diff(drafted_at))  # steps from one drafting step to the next
    first = gaps.index(16)  # the first probe after the policy turned to plain decoding
    assert gaps[first : first + 5] == [16, 32, 64, 128, 256] and set(gaps[first + 4 :]) == {256}
    n, waited = 0, 0
    while not n:  # the next probe comes within 256 steps and is accepted
        n = policy.choose()
        waited += 1
    policy.update(n, n, 0.0)
    assert waited <= 256 and policy.probe_gap == 16  # probes every 16 plain steps again


def _chi2_upper(dof: int, tail: float) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile with upper tail ``tail``."""
    z = _normal_upper(tail)
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def _normal_upper(tail: float) -> float:
    lo, hi = 0.0, 10.0
    for _ in range(100):  # bisection on the normal upper tail
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 0.5 * math.erfc(mid / math.sqrt(2)) > tail else (lo, mid)
    return lo


def test_rejection_sampling_reproduces_the_target_distribution():
    """A toy Markov target p(.|prev) and drafter q(.|prev) over 4 tokens; one speculative
    step from token 0 with 2 drafts drawn from q, repeated until 2 tokens are out. The
    pairs (t1, t2) must follow p(t1|0) p(t2|t1): Pearson's chi-square over the 16 cells
    against its 1e-4 upper quantile (a correct sampler fails about once in 10^4 runs;
    the seed is fixed, so this run's outcome is fixed too)."""
    rng = np.random.default_rng(2024)
    v = 4
    p = rng.dirichlet(np.ones(v), size=v)
    q = rng.dirichlet(np.ones(v) * 0.5, size=v)  # a different, peakier drafter

    def step(prev: int) -> list[int]:
        drafts = []
        for _ in range(2):
            drafts.append(int(rng.choice(v, p=q[drafts[-1] if drafts else prev])))
        q_rows = np.stack([q[prev], q[drafts[0]]])
        contexts = [prev] + drafts
        a, nxt = accept_sampled(np.array(drafts), q_rows, lambda i: p[contexts[i]], rng)
        return drafts[:a] + [nxt]

    trials = 40000
    counts = np.zeros((v, v))
    for _ in range(trials):
        out = step(0)
        if len(out) < 2:
            out += step(out[0])
        counts[out[0], out[1]] += 1
    expected = trials * p[0][:, None] * p
    stat = float(((counts - expected) ** 2 / expected).sum())
    assert stat < _chi2_upper(v * v - 1, 1e-4), stat


def test_one_hot_drafts_follow_the_target_too():
    """A deterministic drafter (q = None): the first token still follows p."""
    rng = np.random.default_rng(5)
    p = np.array([0.1, 0.6, 0.3])
    counts = np.zeros(3)
    trials = 20000
    for _ in range(trials):
        a, nxt = accept_sampled(np.array([2]), None, lambda i: p, rng)
        counts[2 if a else nxt] += 1
    stat = float(((counts - trials * p) ** 2 / (trials * p)).sum())
    assert stat < _chi2_upper(2, 1e-4), stat
