"""The drafter interface: what a speculative decoder asks of a draft source.

A drafter proposes up to n tokens that continue a context. The decoder verifies them
with one forward of the target model, so a drafter may be wrong at no cost beyond the
verify; it only has to be cheap and often right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

EMPTY = np.zeros(0, dtype=np.int32)


@dataclass(frozen=True)
class Draft:
    """Proposed tokens and, for sampling, the distributions they were drawn from.

    tokens: int32 (m,), m <= n asked for (0: nothing to propose).
    q:      float64 (m, n_vocab) rows the tokens were sampled from, or None for a
            deterministic drafter (each row one-hot at its token).
    """

    tokens: np.ndarray = field(default_factory=lambda: EMPTY)
    q: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.tokens)


class Drafter(Protocol):
    """A source of draft tokens.

    name:         as given to ``--draft``.
    needs_hidden: the decoder passes the trunk's final-normed hidden rows (MTP).

    start(prompt, hidden) -> None
      called once, after the prompt's forward and before the first propose: prompt
      int32 (P,); hidden, with ``needs_hidden``, the trunk's rows of the prompt
      (P, n_embd), else None. The drafter does its prompt work here (the MTP head fills
      its cache, lookup indexes the prompt), so that a decode step carries only its own.

    propose(context, n, hidden) -> Draft
      context: int32 (L,), every committed token then the token the next verify feeds
               first (t0, at position L - 1); it only grows between calls, except that a
               rejected draft never enters it.
      n:       the most tokens wanted (>= 1).
      hidden:  with ``needs_hidden``, float32 (r, n_embd): the trunk's hidden rows of the
               positions committed since the previous call (the accepted rows of each
               verify; all prompt positions at the first call if ``start`` was not
               called), or None when there are none; else None.
    """

    name: str
    needs_hidden: bool

    def start(self, prompt: np.ndarray, hidden: np.ndarray | None) -> None: ...

    def propose(self, context: np.ndarray, n: int, hidden: np.ndarray | None) -> Draft: ...
