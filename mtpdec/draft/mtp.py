"""MTP drafting: chained drafts from the model's own multi-token-prediction head.

The head predicts the token after next from the trunk's final-normed hidden ``hn`` at
position p - 1 and the embedding of the token at p; its one-layer KV cache holds one
entry per such pair (speculative.md, "MTP drafting details"). Draft 1 pairs t0 with the
trunk's hidden; draft i + 1 chains on the head's own output hidden. Entries written while
chaining are provisional: the next call rewrites them from the trunk's hidden rows of
the positions the verify accepted (one batched head call that also yields the next
first draft), and drops the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mtpdec.draft.base import Draft
from mtpdec.errors import MtpdecError
from mtpdec.sampling import Sampler

if TYPE_CHECKING:
    from mtpdec.draft.lookup import LookupDrafter
    from mtpdec.models.base import MtpModel, StateLike


def require_mtp_head(model: MtpModel) -> None:
    """MtpdecError, naming the file, when the model has no MTP head."""
    if getattr(model, "mtp", None) is None:
        raise MtpdecError(
            f"{model.file.path}: the model has no MTP head; use --draft lookup or none"
        )


class MtpDrafter:
    """Drafts from ``model.mtp_forward`` on ``state`` (the decoder's state: its MTP cache).

    sampler: None or greedy: each draft is the head's argmax (q = None); else drafts are
    sampled from ``sampler.probs`` of the head's logits, which the Draft carries as q.
    vocab: score only token ids 0..vocab-1 (``--draft-vocab``; None: all). Drafts are
    then never other ids; the verify stays exact either way.
    """

    name = "mtp"
    needs_hidden = True

    def __init__(
        self,
        model: MtpModel,
        state: StateLike,
        sampler: Sampler | None = None,
        vocab: int | None = None,
    ) -> None:
        require_mtp_head(model)
        self.model, self.state, self.vocab = model, state, vocab
        if vocab is not None:
            model.mtp_head(vocab)  # build (and check) the reduced head now
        self.sampler = None if sampler is None or sampler.greedy else sampler
        self.valid = 0  # head cache entries 0..valid-1 pair tokens with the trunk's hn
        self.pending: list[np.ndarray] = []  # trunk hn rows from position valid - 1 on

    def observe(self, hidden: np.ndarray | None) -> None:
        """Take trunk hidden rows (see ``Drafter.propose``) without drafting."""
        if hidden is not None and len(hidden):
            self.pending.append(np.asarray(hidden, dtype=np.float32))

    def start(self, prompt: np.ndarray, hidden: np.ndarray | None) -> None:
        """Fill the head's cache over the prompt's pairs from the trunk's prompt rows
        (``MtpModel.mtp_fill``: no head, no logits); the first ``propose`` then feeds t0
        alone, paired with the prompt's last row."""
        if hidden is None or len(hidden) != len(prompt) or self.valid or self.pending:
            raise MtpdecError("MTP drafter: start takes the whole prompt's rows, once")
        zero = np.zeros((1, hidden.shape[1]), dtype=np.float32)
        previous = np.concatenate([zero, np.asarray(hidden[:-1], dtype=np.float32)])
        self.model.mtp_fill(prompt, previous, 0, self.state)
        self.valid, self.pending = len(prompt), [np.asarray(hidden[-1:], dtype=np.float32)]

    def _pick(self, logits: np.ndarray) -> tuple[int, np.ndarray | None]:
        if self.sampler is None:
            return int(np.argmax(logits)), None
        return self.sampler.pick_and_probs(logits)

    def propose(self, context: np.ndarray, n: int, hidden: np.ndarray | None) -> Draft:
        self.observe(hidden)
        start, end = self.valid, len(context)
        rows = np.concatenate(self.pending) if self.pending else None
        if start == 0:  # position 0 has no previous hidden
            zero = np.zeros((1, self.model.config.n_embd), dtype=np.float32)
            rows = zero if rows is None else np.concatenate([zero, rows])
        if rows is None or len(rows) != end - start:
            got = 0 if rows is None else len(rows)
            raise MtpdecError(f"MTP drafter: {end - start} hidden rows expected, got {got}")
        logits, hm = self.model.mtp_forward(
            context[start:end], rows, start, self.state, last_only=True, vocab=self.vocab
        )
        self.valid, self.pending = end, []
        tokens, qs = [], []
        for i in range(n):
            if i:
                tok = np.array([tokens[-1]], dtype=np.int32)
                logits, hm = self.model.mtp_forward(
                    tok, hm, end + i - 1, self.state, vocab=self.vocab
                )
            token, q = self._pick(logits[-1])
            tokens.append(token)
            qs.append(q)
        q_rows = None if self.sampler is None else np.stack(qs)
        return Draft(np.asarray(tokens, dtype=np.int32), q_rows)


class MtpLookupDrafter:
    """Prompt lookup when its longest match has at least ``min_match`` tokens, else MTP
    (which keeps taking the trunk's hidden rows either way)."""

    name = "mtp+lookup"
    needs_hidden = True

    def __init__(self, mtp: MtpDrafter, lookup: LookupDrafter, min_match: int = 2) -> None:
        self.mtp, self.lookup, self.min_match = mtp, lookup, min_match

    def start(self, prompt: np.ndarray, hidden: np.ndarray | None) -> None:
        self.lookup.start(prompt)
        self.mtp.start(prompt, hidden)

    def propose(self, context: np.ndarray, n: int, hidden: np.ndarray | None) -> Draft:
        size, _ = self.lookup.match(context)
        if size >= self.min_match:
            draft = self.lookup.propose(context, n)
            if len(draft):
                self.mtp.observe(hidden)
                return draft
        return self.mtp.propose(context, n, hidden)
