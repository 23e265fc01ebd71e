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


_TOP_P_FIRST = 1024  # candidates tried before sorting the whole vocabulary


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
        ids, p = self._support(logits)
        cdf = np.cumsum(p)
        i = int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"))
        return int(ids[min(i, ids.size - 1)])

    def probs(self, logits: np.ndarray) -> np.ndarray:
        """float64 (n_vocab,): the probability ``pick`` gives each token (sums to 1)."""
        out = np.zeros(np.shape(logits)[-1], dtype=np.float64)
        if self.greedy:
            out[int(np.argmax(logits))] = 1.0
        else:
            ids, p = self._support(logits)
            out[ids] = p
        return out

    def _top_p_candidates(self, x: np.ndarray, top: float) -> np.ndarray:
        """Token ids by falling probability (ties to the lower id), cut to a prefix that
        holds at least top_p of the mass: the 1024 largest when they do (no full sort of
        a 262K vocabulary), else all."""
        n = min(x.size, _TOP_P_FIRST)
        kth = np.partition(x, x.size - n)[x.size - n]
        ids = np.flatnonzero(x >= kth)  # a prefix of the full order, ties included
        ids = ids[np.argsort(-x[ids], kind="stable")]
        if ids.size < x.size:
            mass = np.exp(x[ids] - top).sum() / np.exp(x - top).sum()
            if mass < self.top_p:
                ids = np.argsort(-x, kind="stable")
        return ids

    def _support(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, normalized float64 probabilities) of the tokens that can be picked,
        most likely first when top-k or top-p is set, else in id order."""
        x = np.asarray(logits, dtype=np.float64)
        if x.ndim != 1 or x.size == 0:
            raise MtpdecError(f"logits must be one non-empty row, got shape {x.shape}")
        x = x / self.temp
        top = float(x.max())
        if not math.isfinite(top):
            raise MtpdecError(f"logits are not finite (max {top})")
        ids = np.arange(x.size)
        if 0 < self.top_k < x.size:
            # k largest, ties to the lower id: a stable sort of -x over the candidates
            kth = np.partition(x, x.size - self.top_k)[x.size - self.top_k]
            ids = np.flatnonzero(x >= kth)
            ids = ids[np.argsort(-x[ids], kind="stable")][: self.top_k]
        elif self.top_p < 1.0:
            ids = self._top_p_candidates(x, top)
        p = np.exp(x[ids] - top)
        p /= p.sum() if ids.size == x.size or self.top_k else np.exp(x - top).sum()
        if self.top_p < 1.0:
            # keep tokens until the mass before them reaches top_p (at least one)
            keep = int(np.searchsorted(np.cumsum(p), self.top_p, side="left")) + 1
            ids, p = ids[:keep], p[:keep] / p[:keep].sum()
        return ids, p
