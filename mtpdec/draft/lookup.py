"""Prompt-lookup drafting: continue the context's tail the way it continued before.

An index maps every n-gram of the context (n = min_ngram..max_ngram) to where its latest
occurrence ended. Appending a token adds one entry per n (O(1) per token, no scan of
the history); a proposal is one dict lookup per n, longest first. No match proposes
nothing, so text without repeats decodes at plain speed.
"""

from __future__ import annotations

import numpy as np

from mtpdec.draft.base import Draft
from mtpdec.errors import MtpdecError


class LookupDrafter:
    """Propose what followed the latest earlier occurrence of the context's longest tail
    n-gram (max_ngram down to min_ngram tokens)."""

    name = "lookup"
    needs_hidden = False

    def __init__(self, max_ngram: int = 3, min_ngram: int = 2) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise MtpdecError(
                f"lookup n-gram sizes must satisfy 1 <= min <= max, got {min_ngram}, {max_ngram}"
            )
        self.sizes = range(max_ngram, min_ngram - 1, -1)
        self.index: dict[int, dict[tuple[int, ...], int]] = {m: {} for m in self.sizes}
        self.tokens: list[int] = []  # the context indexed so far

    def _extend(self, context: np.ndarray) -> None:
        """Index the n-grams whose next token became known since the last call."""
        tokens = self.tokens
        if len(context) < len(tokens):
            raise MtpdecError("the lookup drafter's context shrank")
        for p in range(len(tokens), len(context)):
            tokens.append(int(context[p]))
            # n-grams ending at p - 1 are followed by token p
            for m in self.sizes:
                if p >= m:
                    self.index[m][tuple(tokens[p - m : p])] = p

    def start(self, prompt: np.ndarray, hidden: np.ndarray | None = None) -> None:
        """Index the prompt's n-grams (``Drafter.start``)."""
        self._extend(prompt)

    def match(self, context: np.ndarray) -> tuple[int, int]:
        """(n-gram length, position its continuation starts) of the longest match of the
        context's tail, or (0, -1)."""
        self._extend(context)
        tokens, end = self.tokens, len(self.tokens)
        for m in self.sizes:
            if end >= m:
                at = self.index[m].get(tuple(tokens[end - m :]))
                if at is not None:
                    return m, at
        return 0, -1

    def propose(self, context: np.ndarray, n: int, hidden: np.ndarray | None = None) -> Draft:
        size, at = self.match(context)
        if not size:
            return Draft()
        return Draft(np.asarray(self.tokens[at : at + n], dtype=np.int32))
