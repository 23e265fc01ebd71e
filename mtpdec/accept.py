"""Acceptance rules of speculative decoding (speculative.md), as pure functions.

Greedy: the longest prefix of drafts that equals the target's picks. Sampling: each
draft d_i, drawn from the drafter's q_i, is kept with probability min(1, p_i(d) / q_i(d))
against the target's p_i; the first rejection draws its replacement from
normalize(max(0, p_i - q_i)); when all are kept a bonus token is drawn from p_n. The
emitted tokens are then distributed exactly as target sampling (Leviathan et al. 2023).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def accept_greedy(drafts: np.ndarray, picks: np.ndarray) -> int:
    """drafts int (n,), picks int (>= n,): picks[i] is the target's pick after verify
    token i. Returns a, the largest count with drafts[:a] == picks[:a]."""
    n = len(drafts)
    same = np.asarray(drafts) == np.asarray(picks[:n])
    return n if same.all() else int(np.argmin(same))


def _draw(p: np.ndarray, u: float) -> int:
    """The token whose cumulative-probability interval holds u * total (p >= 0)."""
    cdf = np.cumsum(p)
    return int(min(np.searchsorted(cdf, u * cdf[-1], side="right"), p.size - 1))


def accept_sampled(
    drafts: np.ndarray,
    q: np.ndarray | None,
    target: Callable[[int], np.ndarray],
    rng: np.random.Generator,
) -> tuple[int, int]:
    """The rejection rule over n drafts.

    drafts: int (n,); q: float64 (n, V) the drafter's distributions (None: one-hot at
    each draft, a deterministic drafter); target(i): float64 (V,), the target's
    distribution after verify token i (i = 0..n, asked lazily, in order).
    Returns (a, token): a drafts accepted, then the token that follows them (the
    residual draw at the first rejection, or a draw from target(n)).
    """
    for i, d in enumerate(np.asarray(drafts)):
        p = target(i)
        q_d = 1.0 if q is None else float(q[i, d])
        if rng.random() * q_d < p[d]:  # accept with probability min(1, p/q)
            continue
        if q is None:
            residual = p.copy()
            residual[d] = 0.0
        else:
            residual = np.maximum(p - q[i], 0.0)
        if residual.sum() <= 0.0:  # p == q up to rounding: p itself
            residual = p
        return i, _draw(residual, rng.random())
    return len(drafts), _draw(target(len(drafts)), rng.random())
