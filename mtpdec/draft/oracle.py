"""The oracle drafter (benchmarks only): a known continuation, corrupted at a set rate.

It replays a reference continuation (the model's own greedy output, from a plain run)
and replaces each proposed token with a different random one with probability
1 - accept, independently per position: throughput against n at a controlled
acceptance on any model, random weights included.
"""

from __future__ import annotations

import numpy as np

from mtpdec.draft.base import Draft
from mtpdec.errors import MtpdecError


class OracleDrafter:
    """reference: int32 (R,), the full token sequence a greedy run produces (prompt and
    continuation); accept: the probability each proposed token is left intact; seed:
    the corruption's random stream. Proposes nothing once the context leaves the
    reference (or reaches its end)."""

    name = "oracle"
    needs_hidden = False

    def __init__(self, reference: np.ndarray, n_vocab: int, accept: float, seed: int = 0) -> None:
        if not 0.0 <= accept <= 1.0:
            raise MtpdecError(f"--accept must be in [0, 1], got {accept}")
        if n_vocab < 2:
            raise MtpdecError("the oracle needs a vocabulary of at least 2 tokens")
        self.reference = np.asarray(reference, dtype=np.int32)
        self.n_vocab, self.accept = n_vocab, accept
        self.rng = np.random.default_rng(seed)

    def start(self, prompt: np.ndarray, hidden: np.ndarray | None = None) -> None:
        """Nothing to do: the reference is known."""

    def propose(self, context: np.ndarray, n: int, hidden: np.ndarray | None = None) -> Draft:
        at = len(context)
        ref = self.reference
        if at > len(ref) or context[-1] != ref[at - 1]:  # (greedy: a prefix of ref)
            return Draft()
        tokens = ref[at : at + n].copy()
        bad = self.rng.random(len(tokens)) >= self.accept
        shift = self.rng.integers(1, self.n_vocab, len(tokens))
        tokens[bad] = (tokens[bad] + shift[bad]) % self.n_vocab
        return Draft(tokens.astype(np.int32))
