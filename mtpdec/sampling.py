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

from mtpdec.cpu.sampling import nucleus, scale
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


def _row(logits: np.ndarray) -> np.ndarray:
    """logits as one non-empty float32 or float64 row in native byte order (other
    float types converted to float32); MtpdecError otherwise."""
    logits = np.asarray(logits)
    if logits.ndim != 1 or logits.size == 0:
        raise MtpdecError(f"logits must be one non-empty row, got shape {logits.shape}")
    native = logits.dtype in (np.float32, np.float64) and logits.dtype.isnative
    return logits if native else logits.astype(np.float32)


def _argmax(logits: np.ndarray) -> int:
    """The lowest id of the largest logit; MtpdecError when that is not finite (a NaN
    wins np.argmax)."""
    i = int(np.argmax(logits))
    if not math.isfinite(logits[i]):
        raise MtpdecError(f"logits are not finite (max {logits[i]})")
    return i


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
        self._scratch = np.empty(0, np.float64)  # see _exp_scaled
        self._bins = np.empty(0, np.uint16)
        self._ids = np.empty(0, np.intp)

    @property
    def greedy(self) -> bool:
        return self.temp == 0.0

    def options(self) -> dict[str, float | int]:
        """The options as plain values (for JSON reports)."""
        return {"temp": self.temp, "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed}

    def pick(self, logits: np.ndarray) -> int:
        """The next token id from float logits of shape (n_vocab,)."""
        return self._pick(_row(logits), with_probs=False)[0]

    def pick_and_probs(self, logits: np.ndarray) -> tuple[int, np.ndarray]:
        """``pick(logits)`` (the same token from the same random state) and
        ``probs(logits)``, sharing one pass over the logits (a sampled draft and its q)."""
        token, q = self._pick(_row(logits), with_probs=True)
        assert q is not None
        return token, q

    def _pick(self, logits: np.ndarray, with_probs: bool) -> tuple[int, np.ndarray | None]:
        """The token ``pick`` draws from a checked row, and ``probs`` when asked."""
        if self.greedy:
            return _argmax(logits), self.probs(logits) if with_probs else None
        if self._whole_vocabulary(logits.size):  # drawn from the cdf not normalized
            e = self._exp_scaled(logits, self._top(logits))
            q = e / e.sum() if with_probs else None
            return self._draw(np.cumsum(e, out=e)), q
        ids, p = self._support(logits)
        assert ids is not None
        q = None
        if with_probs:
            q = np.zeros(logits.size, dtype=np.float64)
            q[ids] = p
        return int(ids[self._draw(np.cumsum(p))]), q

    def _whole_vocabulary(self, n: int) -> bool:
        """Whether every token can be picked (no top-k below n, no top-p)."""
        return not 0 < self.top_k < n and self.top_p == 1.0

    def _draw(self, cdf: np.ndarray) -> int:
        """Index of a uniform draw over a (not normalized) cumulative distribution."""
        i = int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"))
        return min(i, cdf.size - 1)

    def probs(self, logits: np.ndarray) -> np.ndarray:
        """float64 (n_vocab,): the probability ``pick`` gives each token (sums to 1)."""
        logits = _row(logits)
        if not self.greedy:
            ids, p = self._support(logits)
            if ids is None:
                return p
        out = np.zeros(np.shape(logits)[-1], dtype=np.float64)
        if self.greedy:
            out[_argmax(logits)] = 1.0
        else:
            out[ids] = p
        return out

    def _top(self, logits: np.ndarray) -> float:
        """The largest logit; MtpdecError unless it is finite."""
        top = float(logits.max())
        if not math.isfinite(top):
            raise MtpdecError(f"logits are not finite (max {top})")
        return top

    def _exp_scaled(self, logits: np.ndarray, top: float, binned: bool = False) -> np.ndarray:
        """float64 exp((logits - top) / temp) in a scratch buffer reused by the next call
        (no fresh pages per token): the unnormalized probabilities, the largest 1. With
        ``binned``, ``self._bins`` holds each token's log-probability bin (see
        ``mtpdec.cpu.sampling``)."""
        if self._scratch.size != logits.size:
            self._scratch = np.empty(logits.size, np.float64)
            self._bins = np.empty(logits.size, np.uint16)
            self._ids = np.empty(logits.size, np.intp)
        x = self._scratch
        scale(logits, top, self.temp, x, self._bins if binned else self._bins[:0])
        return np.exp(x, out=x)

    def _support(self, logits: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(token ids, normalized float64 probabilities) of the tokens that can be picked:
        most likely first with top-k, in ``nucleus`` order with top-p alone; (None, all
        n_vocab probabilities) when neither is set."""
        top = self._top(logits)
        if 0 < self.top_k < logits.size:
            # k largest, ties to the lower id: a stable sort over the candidates (the
            # order of logits is the order of the probabilities)
            kth = np.partition(logits, logits.size - self.top_k)[logits.size - self.top_k]
            ids = np.flatnonzero(logits >= kth)
            ids = ids[np.argsort(-logits[ids], kind="stable")][: self.top_k]
            p = np.exp(np.subtract(logits[ids], top, dtype=np.float64) / self.temp)
            p /= p.sum()
            if self.top_p < 1.0:
                # keep tokens until the mass before them reaches top_p (at least one)
                keep = int(np.searchsorted(np.cumsum(p), self.top_p, side="left")) + 1
                ids, p = ids[:keep], p[:keep] / p[:keep].sum()
            return ids, p
        e = self._exp_scaled(logits, top, binned=self.top_p < 1.0)
        if self.top_p == 1.0:
            return None, e / e.sum()
        count, _ = nucleus(logits, e, self._bins, self.top_p, self._ids)
        ids = self._ids[:count].copy()
        p = e[ids]
        return ids, p / p.sum()
