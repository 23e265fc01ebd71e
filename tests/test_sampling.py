"""Sampler: greedy ties, the distribution it samples from, top-k / top-p, seeds, options."""

from __future__ import annotations

import numpy as np
import pytest

from mtpdec.errors import MtpdecError
from mtpdec.sampling import Sampler


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def test_greedy_picks_the_lowest_id_among_equal_maxima() -> None:
    s = Sampler()
    logits = np.array([1.0, 3.0, -2.0, 3.0, 3.0], np.float32)
    assert s.greedy and s.pick(logits) == 1
    p = s.probs(logits)
    assert p.dtype == np.float64 and p.tolist() == [0, 1, 0, 0, 0]


def test_greedy_draws_no_random_numbers() -> None:
    s = Sampler(seed=3)
    before = s.rng.bit_generator.state
    s.pick(np.arange(10, dtype=np.float32))
    assert s.rng.bit_generator.state == before


@pytest.mark.parametrize("temp", [0.5, 1.0, 2.0])
def test_probs_is_the_tempered_softmax(temp: float) -> None:
    logits = np.random.default_rng(0).standard_normal(50).astype(np.float32)
    p = Sampler(temp=temp).probs(logits)
    np.testing.assert_allclose(p, softmax(logits.astype(np.float64) / temp), rtol=1e-12)
    assert p.sum() == pytest.approx(1.0)


def test_higher_temperature_flattens() -> None:
    logits = np.array([2.0, 1.0, 0.0], np.float32)
    cold, hot = Sampler(temp=0.5).probs(logits), Sampler(temp=4.0).probs(logits)
    assert cold[0] > hot[0] and cold[2] < hot[2]


def test_top_k_restricts_support_ties_to_lower_ids() -> None:
    logits = np.array([0.0, 5.0, 1.0, 5.0, 3.0, 5.0], np.float32)
    s = Sampler(temp=1.0, top_k=2, seed=0)
    p = s.probs(logits)
    assert np.flatnonzero(p).tolist() == [1, 3]
    assert p[1] == pytest.approx(0.5) and p.sum() == pytest.approx(1.0)
    assert {s.pick(logits) for _ in range(200)} == {1, 3}


def test_top_k_larger_than_vocab_is_no_limit() -> None:
    logits = np.array([0.0, 1.0, 2.0], np.float32)
    np.testing.assert_allclose(Sampler(temp=1.0, top_k=10).probs(logits), softmax(logits))


@pytest.mark.parametrize(("top_p", "support"), [(0.1, [0]), (0.75, [0, 1]), (0.85, [0, 1, 2])])
def test_top_p_keeps_the_smallest_set_reaching_the_mass(top_p: float, support: list[int]) -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05])).astype(np.float32)
    s = Sampler(temp=1.0, top_p=top_p, seed=1)
    p = s.probs(logits)
    assert np.flatnonzero(p).tolist() == support
    full = softmax(logits.astype(np.float64))[support]
    np.testing.assert_allclose(p[support], full / full.sum(), rtol=1e-6)
    assert {s.pick(logits) for _ in range(300)} == set(support)


def test_top_k_then_top_p() -> None:
    logits = np.log(np.array([0.05, 0.4, 0.3, 0.25])).astype(np.float32)
    # top-k 2 leaves {1: 4/7, 2: 3/7}; top-p 0.5 then keeps only token 1
    p = Sampler(temp=1.0, top_k=2, top_p=0.5).probs(logits)
    assert p.tolist() == [0, 1, 0, 0]


def test_pick_follows_probs() -> None:
    logits = np.array([1.0, 0.0, 2.0, -1.0], np.float32)
    s = Sampler(temp=1.0, seed=7)
    counts = np.bincount([s.pick(logits) for _ in range(20_000)], minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), s.probs(logits), atol=0.015)


def test_same_seed_same_tokens_and_a_drawn_seed_is_recorded() -> None:
    rows = np.random.default_rng(1).standard_normal((64, 100)).astype(np.float32)

    def run(seed: int | None) -> tuple[list[int], int]:
        s = Sampler(temp=0.8, top_k=40, top_p=0.95, seed=seed)
        return [s.pick(r) for r in rows], s.seed

    a, b, c = run(123)[0], run(123)[0], run(124)[0]
    assert a == b and a != c
    drawn, seed = run(None)
    assert run(seed)[0] == drawn


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temp": -0.1}, "--temp must be a number >= 0"),
        ({"temp": float("nan")}, "--temp must be a number >= 0"),
        ({"top_k": -1}, "--top-k must be >= 0"),
        ({"top_p": 0.0}, r"--top-p must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"--top-p must be in \(0, 1\]"),
        ({"seed": -1}, r"--seed must be in \[0, 2\^64\)"),
    ],
)
def test_bad_options_name_the_option(kwargs: dict, message: str) -> None:
    with pytest.raises(MtpdecError, match=message):
        Sampler(**kwargs)


def test_non_finite_logits_are_an_error_when_sampling() -> None:
    with pytest.raises(MtpdecError, match="not finite"):
        Sampler(temp=1.0).pick(np.array([0.0, np.nan, np.inf], np.float32))


@pytest.mark.parametrize("spread", [8.0, 0.01])  # peaked: few candidates; flat: all sorted
def test_top_p_on_a_large_vocabulary_equals_a_full_sort(spread):
    x = (np.random.default_rng(4).standard_normal(262_144) * spread).astype(np.float32)
    x[[5, 9]] = x.max()  # a tie at the top goes to the lower id
    sampler = Sampler(temp=0.7, top_k=0, top_p=0.9, seed=0)
    z = x.astype(np.float64) / 0.7
    order = np.argsort(-z, kind="stable")
    p = np.exp(z[order] - z.max())
    p /= p.sum()
    keep = int(np.searchsorted(np.cumsum(p), 0.9, side="left")) + 1
    want = np.zeros(x.size)
    want[order[:keep]] = p[:keep] / p[:keep].sum()
    got = sampler.probs(x)
    assert np.flatnonzero(got).tolist() == sorted(order[:keep].tolist())
    assert np.allclose(got, want, rtol=1e-9, atol=1e-15)


def full_sort_top_p(x: np.ndarray, temp: float, top_p: float) -> np.ndarray:
    """The top-p distribution by a stable sort of the whole vocabulary (the reference)."""
    z = x.astype(np.float64) / temp
    order = np.argsort(-z, kind="stable")
    p = np.exp(z[order] - z.max())
    p /= p.sum()
    keep = int(np.searchsorted(np.cumsum(p), top_p, side="left")) + 1
    want = np.zeros(x.size)
    want[order[:keep]] = p[:keep] / p[:keep].sum()
    return want


@pytest.mark.parametrize("temp", [0.3, 1.5])
@pytest.mark.parametrize("spread", [30.0, 2.0, 0.05])
@pytest.mark.parametrize("top_p", [0.5, 0.99])
def test_top_p_with_masked_tokens_equals_a_full_sort(temp, spread, top_p):
    # masked (-inf) tokens, ties, and logits far below the top (the last bin)
    rng = np.random.default_rng(int(spread * 10) + int(temp * 10))
    x = (rng.standard_normal(50_000) * spread).astype(np.float32)
    x[rng.integers(0, x.size, 2_000)] = -np.inf
    x[rng.integers(0, x.size, 500)] = x[7]
    x[rng.integers(0, x.size, 50)] = x.max() - 200.0
    got = Sampler(temp=temp, top_p=top_p).probs(x)
    want = full_sort_top_p(x, temp, top_p)
    assert np.flatnonzero(got).tolist() == np.flatnonzero(want).tolist()
    assert np.allclose(got, want, rtol=1e-9, atol=1e-15)


def test_top_p_pick_follows_probs() -> None:
    logits = np.log(np.array([0.3, 0.05, 0.25, 0.2, 0.2])).astype(np.float32)
    s = Sampler(temp=1.0, top_p=0.7, seed=11)
    p = s.probs(logits)
    assert np.flatnonzero(p).tolist() == [0, 2, 3]  # of the tie 3, 4 the lower id
    counts = np.bincount([s.pick(logits) for _ in range(20_000)], minlength=5)
    np.testing.assert_allclose(counts / counts.sum(), p, atol=0.015)


def test_one_sampler_serves_rows_of_different_sizes() -> None:
    s = Sampler(temp=1.0, top_p=0.9, seed=0)  # its scratch buffers follow the row size
    for n in (10, 1000, 10):
        x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
        np.testing.assert_allclose(s.probs(x), full_sort_top_p(x, 1.0, 0.9), rtol=1e-9)


@pytest.mark.parametrize(
    "options",
    [{"temp": 0.0}, {"temp": 0.9}, {"temp": 0.9, "top_p": 0.8}, {"temp": 1.2, "top_k": 5}],
)
def test_pick_and_probs_is_pick_and_probs(options) -> None:
    rows = np.random.default_rng(3).standard_normal((20, 300)).astype(np.float32)
    a, b = Sampler(**options, seed=9), Sampler(**options, seed=9)
    for row in rows:
        token, q = a.pick_and_probs(row)
        assert token == b.pick(row)
        assert np.array_equal(q, b.probs(row))


@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_a_vanishing_temperature_is_greedy_not_nan(top_p: float) -> None:
    logits = np.array([1.0, 2.0, 3.0, 2.5], np.float32)
    s = Sampler(temp=1e-320, top_p=top_p, seed=0)  # 1 / temp overflows to inf
    assert s.probs(logits).tolist() == [0.0, 0.0, 1.0, 0.0]
    assert s.pick(logits) == 2


def test_pick_with_top_k_beyond_the_vocabulary() -> None:
    logits = np.array([0.0, 1.0, 2.0], np.float32)
    s = Sampler(temp=1.0, top_k=3, seed=0)
    assert {s.pick(logits) for _ in range(100)} == {0, 1, 2}


@pytest.mark.parametrize("dtype", [np.float16, ">f4", np.float64])
def test_other_float_types_sample_like_float32(dtype) -> None:
    logits = np.random.default_rng(19).standard_normal(300).astype(np.float32)
    other = logits.astype(dtype)
    for options in ({"temp": 0.8}, {"temp": 0.8, "top_p": 0.7}, {"temp": 0.8, "top_k": 9}):
        want = Sampler(**options).probs(other.astype(np.float32))
        np.testing.assert_allclose(Sampler(**options).probs(other), want, rtol=1e-12)
        assert Sampler(**options, seed=3).pick(other) == Sampler(**options, seed=3).pick(
            other.astype(np.float32)
        )


def test_greedy_checks_its_input_too() -> None:
    s = Sampler()
    with pytest.raises(MtpdecError, match="one non-empty row"):
        s.pick(np.zeros((2, 5), np.float32))
    with pytest.raises(MtpdecError, match="one non-empty row"):
        s.probs(np.zeros(0, np.float32))
    with pytest.raises(MtpdecError, match="not finite"):
        s.pick(np.array([0.0, np.nan, 1.0], np.float32))


def test_top_p_ranks_by_logit_where_probabilities_are_equal() -> None:
    # at a huge temperature both probabilities round to the same value: the larger
    # logit still ranks first, as in top-k and the full-sort definition
    logits = np.array([0.0, 1.0], np.float32)
    assert np.flatnonzero(Sampler(temp=1e17, top_p=0.5).probs(logits)).tolist() == [1]
