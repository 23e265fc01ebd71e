"""Sampling passes over one logits row: scaling, and the top-p (nucleus) candidates in
linear passes with no sort of the whole vocabulary.

``scale(logits, top, temp, x, bins)``: x = (logits - top) / temp in float64 (the log
probabilities up to a constant, max 0), and, when ``bins`` is not empty, each token's
log-probability bin ``min(int(-x * BINS_PER_UNIT), BINS - 1)`` (width 1/8; the last bin
holds everything farther, -inf included). Bins are monotone in x: an earlier bin is
more likely.

``nucleus(logits, e, bins, top_p, ids)``: e = exp(x) (unnormalized, the largest 1); ``ids``
intp scratch of e's size; returns (count, total) with ``ids[:count]`` the nucleus and
total = sum of e. The nucleus is the shortest prefix of the tokens by falling
probability (ties to the lower id) whose mass reaches ``top_p * total``: every token of
the bins before the one where the binned mass reaches the target (those first, in id
order), then that bin's tokens, the only ones sorted, by falling logit until the mass
is reached. Where the cumulative mass meets top_p exactly (equal tokens), rounding
decides whether the boundary token is in.
"""

from __future__ import annotations

import numpy as np
from numba import njit

BINS_PER_UNIT = 8.0
BINS = 8 * 64  # the last bin holds everything below exp(-64) of the largest
LANES = 4  # partial histograms, so that runs of one bin do not chain their additions


@njit(cache=True, nogil=True)
def _scaled(d, temp, inv):  # pragma: no cover - compiled
    """-(d / temp) as a multiply by inv = 1 / temp, or a division when inv overflowed
    (temp below ~1e-308, where 0 * inf would make the top token NaN)."""
    return -(d * inv) if inv < np.inf else -(d / temp)


@njit(cache=True, nogil=True)
def scale(logits, top, temp, x, bins):  # pragma: no cover - compiled
    inv = 1.0 / temp
    if bins.size:
        for i in range(logits.size):
            x[i] = _scaled(top - np.float64(logits[i]), temp, inv)
            bins[i] = np.uint16(min(-x[i] * BINS_PER_UNIT, BINS - 1.0))
    else:
        for i in range(logits.size):
            x[i] = _scaled(top - np.float64(logits[i]), temp, inv)


@njit(cache=True, nogil=True)
def nucleus(logits, e, bins, top_p, ids):  # pragma: no cover - compiled
    n = e.size
    lanes = np.zeros((LANES, BINS), np.float64)
    whole = n - n % LANES
    for i in range(0, whole, LANES):
        for j in range(LANES):
            lanes[j, bins[i + j]] += e[i + j]
    for i in range(whole, n):
        lanes[0, bins[i]] += e[i]
    mass = lanes.sum(axis=0)
    total = mass.sum()
    target = top_p * total
    edge, before = BINS - 1, 0.0
    for b in range(BINS):
        if before + mass[b] >= target:
            edge = b
            break
        before += mass[b]
    inside, last = 0, n  # earlier bins fill ids from the front, the edge bin from the back
    for i in range(n):
        b = bins[i]
        if b < edge:
            ids[inside] = i
            inside += 1
        elif b == edge:
            last -= 1
            ids[last] = i
    # the edge bin in id order, then by falling logit (stable: ties to the lower id; the
    # logits' order is the probabilities' order, also where e underflows to equal values)
    tail = ids[last:][::-1].copy()
    tail = tail[np.argsort(-logits[tail], kind="mergesort")]
    acc = 0.0
    for k in range(inside):
        acc += e[ids[k]]
    need = target - acc  # the edge bin's share, summed from 0 (small terms stay exact)
    count, part = inside, 0.0
    for k in range(tail.size):
        if part >= need and count > 0:
            break
        ids[count] = tail[k]
        part += e[tail[k]]
        count += 1
    return count, total
