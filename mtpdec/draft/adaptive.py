"""How many drafts to ask for each step: a fixed n, or ``auto``.

``auto`` picks the n that maximises expected emitted tokens per second,

    E(n) = 1 + sum_{i<=n} prod_{j<=i} a_j,   T(n) = cost(n + 1) + n * draft_s,

from the running conditional acceptance a_i of draft i (given draft i - 1 was
accepted; each position's prior is the previous one's estimate, old observations fading
by ``decay`` per drafting step), the cost curve of a
k-token forward measured at start-up (``mtpdec.draft.costs``) and the measured drafting
time per token. n = 0 (plain decoding) is a candidate; while it wins, a probe step still
drafts one token so that the estimates can recover: after ``probe_every`` plain steps,
and after twice as many each time a probe is rejected (up to ``max_probe_gap``; an
accepted probe or a drafting step resets the gap). On a drafter that never hits (an MTP
head with random weights) probes then cost well under 1% of the steps instead of 1 in
16 (~3% of decode time measured on qwen35-0.8b).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mtpdec.errors import MtpdecError

PRIOR = 2.0  # pseudo-counts of a position's prior (see ``AdaptiveN.rates``)


class FixedN:
    """The same n every step."""

    def __init__(self, n: int) -> None:
        if n < 0:
            raise MtpdecError(f"--draft-n must be >= 0 or auto, got {n}")
        self.max_n = n

    def choose(self) -> int:
        return self.max_n

    def update(self, proposed: int, accepted: int, draft_s: float) -> None:
        pass


class AdaptiveN:
    """cost: seconds of a forward of k tokens, cost[k - 1] for k = 1..max_n + 1."""

    def __init__(
        self,
        cost: Sequence[float],
        max_n: int,
        decay: float = 0.98,
        probe_every: int = 16,
        max_probe_gap: int = 512,
    ) -> None:
        if max_n < 1 or len(cost) < max_n + 1:
            raise MtpdecError(f"auto needs forward costs for k = 1..{max_n + 1}")
        self.cost = np.asarray(cost[: max_n + 1], dtype=np.float64)
        self.max_n, self.decay, self.probe_every = max_n, decay, probe_every
        self.max_probe_gap = max(max_probe_gap, probe_every)
        self.probe_gap = probe_every  # plain steps before the next probe
        self._probing = False
        self.hits = np.zeros(max_n)  # draft i accepted (index i - 1)
        self.tries = np.zeros(max_n)  # draft i proposed after draft i - 1 was accepted
        self.draft_s = 0.0  # seconds per drafted token (running mean)
        self._drafts = 0
        self._plain_run = 0

    def rates(self) -> np.ndarray:
        """Conditional acceptance a_i of each position: a posterior mean whose prior is
        the previous position's estimate (weight ``PRIOR``; Beta(1, 1) for the first), so
        that positions not tried yet start where the last tried one stands."""
        out = np.empty(self.max_n)
        prior = 0.5
        for i in range(self.max_n):
            prior = (self.hits[i] + PRIOR * prior) / (self.tries[i] + PRIOR)
            out[i] = prior
        return out

    def expected_rate(self) -> np.ndarray:
        """Expected tokens per second for n = 0..max_n."""
        reach = np.concatenate([[1.0], np.cumprod(self.rates())])
        tokens = np.cumsum(reach)
        seconds = self.cost + np.arange(self.max_n + 1) * self.draft_s
        return tokens / seconds

    def choose(self) -> int:
        n = int(np.argmax(self.expected_rate()))
        if n == 0:
            self._plain_run += 1
            if self._plain_run >= self.probe_gap:
                self._plain_run = 0
                self._probing = True
                return 1
        else:
            self._plain_run = 0
            self.probe_gap = self.probe_every
        return n

    def update(self, proposed: int, accepted: int, draft_s: float) -> None:
        """One verify: ``proposed`` drafts, the first ``accepted`` kept, drafting took
        draft_s seconds."""
        if not proposed:  # nothing learnt: the evidence does not age
            return
        if self._probing:
            self._probing = False
            hit = accepted > 0
            self.probe_gap = (
                self.probe_every if hit else min(2 * self.probe_gap, self.max_probe_gap)
            )
        self.hits *= self.decay
        self.tries *= self.decay
        reached = min(proposed, accepted + 1)
        self.tries[:reached] += 1.0
        self.hits[:accepted] += 1.0
        self._drafts += proposed
        per = draft_s / proposed
        self.draft_s += (per - self.draft_s) * min(1.0, proposed / self._drafts)
