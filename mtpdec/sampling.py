"""Token sampling: greedy, or temperature with top-k / top-p, seeded and reproducible.

The distribution a ``Sampler`` draws from (``probs``) is, in this order:

1. ``softmax(logits / temp)`` over the whole vocabulary;
2. restricted to the ``top_k`` most likely tokens (0 = no limit);
3. restricted to the smallest set of the most likely remaining tokens whose
   probability adds up to at least ``top_p`` (1 = no limit);
4. renormalized.

Ties in rank go to the lower token id. ``temp == 0`` is greedy decoding: the
distribution is one-hot at the argmax (the lowest id among equal maxima) and no
random number is drawn. This is the distribution speculative decoding's rejection
rule (``min(1, p/q)``, then ``normalize(max(0, p - q))``) compares against.
"""

from __future__ import annotations

import math

import numpy as np

from mtpdec.errors import MtpdecError


def check_sampling(temp: float, top_k: int, top_p: float, seed: int | None) -> None:
    """MtpdecError naming the option when a sampling option is impossible."""
    if not (math.isfinite(temp) and temp >= 0):
        raise MtpdecError(f"--temp must be a number >= 0, got {temp}")
    if top_k < 0:
        raise MtpdecError(f"--top-k must be >= 0 (0 = no limit), got {top_k}")
    if not 0 < top_p <= 1:
        raise MtpdecError(f"--top-p must be in (0, 1] (1 = no limit), got {top_p}")
    if seed is not None and not 0 <= seed < 2**64:
        raise MtpdecError(f"--seed must be in [0, 2^64), got {seed}")


NUCLEUS_FLOOR = 1e-4  # peaked rows: the nucleus is among tokens this close to the largest
NUCLEUS_BINS_PER_UNIT = 8  # log-probability bins of width 1/8 for the nucleus search
NUCLEUS_BINS = 8 * 64  # the last bin holds everything below exp(-64) of the largest


class Sampler:
    """Picks the next token from one row of logits.

    temp:  0 = greedy; otherwise logits are divided by it before the softmax.
    top_k: keep only the k most likely tokens (0 = all).
    top_p: keep the smallest most-likely set with probability >= top_p (1 = all).
    seed:  seed of the numpy Generator (None: a fresh one, recorded in ``seed``, so
           that every run can be repeated). Two samplers with the same options and
           seed pick the same tokens from the same logits.
    """

    def __init__(
        self, temp: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int | None = None
    ) -> None:
        check_sampling(temp, top_k, top_p, seed)
        self.temp = float(temp)
        self.top_k = int(top_k)
        self.top_p = float(top_p)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    @property
    def greedy(self) -> bool:
        return self.temp == 0.0

    def options(self) -> dict[str, float | int]:
        """The options as plain values (for JSON reports)."""
        return {"temp": self.temp, "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed}

    def pick(self, logits: np.ndarray) -> int:
        """The next token id from float logits of shape (n_vocab,)."""
        if self.greedy:
            return int(np.argmax(logits))
        if self.top_k == 0 and self.top_p == 1.0:  # the whole vocabulary, not normalized
            x = self._scaled(logits)
            cdf = np.cumsum(np.exp(x, out=x), out=x)
            return self._draw(cdf)
        ids, p = self._support(logits)
        assert ids is not None
        return int(ids[self._draw(np.cumsum(p))])

    def _draw(self, cdf: np.ndarray) -> int:
        """Index of a uniform draw over a (not normalized) cumulative distribution."""
        i = int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"))
        return min(i, cdf.size - 1)

    def probs(self, logits: np.ndarray) -> np.ndarray:
        """float64 (n_vocab,): the probability ``pick`` gives each token (sums to 1)."""
        if not self.greedy:
            ids, p = self._support(logits)
            if ids is None:
                return p
        out = np.zeros(np.shape(logits)[-1], dtype=np.float64)
        if self.greedy:
            out[int(np.argmax(logits))] = 1.0
        else:
            out[ids] = p
        return out

    def _nucleus(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """The top-p candidates of log-probabilities x (float64, max 0): (ids,
        exp(x[ids]), sum of exp(x)). ids are a prefix of the vocabulary by falling
        probability (ties to the lower id) holding at least top_p of the mass; its order
        is that one, except that tokens of different log-probability bins (below) may be
        in id order. No sort of the whole vocabulary:

        - the pool: the tokens at least NUCLEUS_FLOOR of the largest when they hold the
          mass (a peaked distribution; they are such a prefix), else every token;
        - the pool is binned by -x (width 1 / NUCLEUS_BINS_PER_UNIT): every token of the
          bins before the one where the binned mass reaches top_p is in the nucleus, and
          only that bin's tokens are sorted.
        """
        e = np.exp(x)
        total = float(e.sum())
        target = self.top_p * total
        pool = np.flatnonzero(e >= NUCLEUS_FLOOR)
        x_pool, e_pool = x[pool], e[pool]
        if e_pool.sum() < target:
            pool, x_pool, e_pool = None, x, e  # every token (no gathers)
        bins = np.minimum(-x_pool * NUCLEUS_BINS_PER_UNIT, NUCLEUS_BINS - 1).astype(np.intp)
        mass = np.cumsum(np.bincount(bins, weights=e_pool, minlength=NUCLEUS_BINS))
        edge = min(int(np.searchsorted(mass, target, side="left")), NUCLEUS_BINS - 1)
        inside, last = np.flatnonzero(bins < edge), np.flatnonzero(bins == edge)
        if pool is not None:
            inside, last = pool[inside], pool[last]
        ids = np.concatenate([inside, last[np.argsort(-e[last], kind="stable")]])
        return ids, e[ids], total

    def _scaled(self, logits: np.ndarray) -> np.ndarray:
        """float64 (logits - max) / temp: log-probabilities up to a constant, max 0."""
        logits = np.asarray(logits)
        if logits.ndim != 1 or logits.size == 0:
            raise MtpdecError(f"logits must be one non-empty row, got shape {logits.shape}")
        top = logits.max()
        if not math.isfinite(top):
            raise MtpdecError(f"logits are not finite (max {top})")
        x = np.subtract(logits, top, dtype=np.float64)
        return np.divide(x, self.temp, out=x)

    def _support(self, logits: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(token ids, normalized float64 probabilities) of the tokens that can be picked:
        most likely first with top-k, in ``_nucleus`` order with top-p; (None, all
        n_vocab probabilities) when neither is set."""
        x = self._scaled(logits)  # max 0
        if 0 < self.top_k < x.size:
            # k largest, ties to the lower id: a stable sort of -x over the candidates
            kth = np.partition(x, x.size - self.top_k)[x.size - self.top_k]
            ids = np.flatnonzero(x >= kth)
            ids = ids[np.argsort(-x[ids], kind="stable")][: self.top_k]
            p = np.exp(x[ids])
            p /= p.sum()
        elif self.top_p == 1.0:
            e = np.exp(x, out=x)  # unnormalized: the largest is 1
            return None, np.divide(e, e.sum(), out=e)
        else:
            ids, e_ids, total = self._nucleus(x)
            p = e_ids / total
        if self.top_p < 1.0:
            # keep tokens until the mass before them reaches top_p (at least one)
            keep = int(np.searchsorted(np.cumsum(p), self.top_p, side="left")) + 1
            ids, p = ids[:keep], p[:keep] / p[:keep].sum()
        return ids, p
