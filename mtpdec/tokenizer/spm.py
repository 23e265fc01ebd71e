"""SentencePiece-style merging by token score, as llama.cpp's SPM tokenizer does it.

A fragment starts as one symbol per character. While some adjacent pair of symbols
spells a vocabulary token, the pair whose token has the highest score is merged (ties:
the leftmost pair). Symbols left that are not tokens (characters outside the vocabulary)
become their UTF-8 bytes as byte tokens (``<0xXX>``).

Why not ``tokenizers.models.BPE`` with merges derived from the scores: Gemma's 262K
vocabulary gives ~515K derived merges, and handing those to the Rust model costs over a
second per load; and BPE ranks cannot express equal-score ties, which llama.cpp breaks
by position (the same token reachable by two overlapping splits). This loop is exact and
needs nothing beyond the vocabulary dict.
"""

from __future__ import annotations

import heapq

import numpy as np


class SpmMerger:
    """Score-greedy merging over a vocabulary (text -> id) with per-id scores.

    ``byte_ids[b]`` is the token for byte ``b`` (``<0xXX>``, else the one-character
    token, else ``unk_id``); bytes with no token at all are dropped.
    """

    def __init__(self, ids: dict[str, int], scores: np.ndarray, unk_id: int | None = None) -> None:
        self._ids = ids
        self._neg_scores: list[float] = (-np.asarray(scores, np.float64)).tolist()
        self.byte_ids: list[int | None] = [
            ids.get(f"<0x{b:02X}>", ids.get(chr(b), unk_id)) for b in range(256)
        ]

    def encode(self, text: str) -> list[int]:
        """Token ids of one fragment (spaces already written as ``▁``)."""
        out: list[int] = []
        ids = self._ids
        for sym in self.merge(text):
            tok = ids.get(sym)
            if tok is not None:
                out.append(tok)
                continue
            for b in sym.encode("utf-8", "surrogatepass"):
                byte_tok = self.byte_ids[b]
                if byte_tok is not None:
                    out.append(byte_tok)
        return out

    def merge(self, text: str) -> list[str]:
        """The final symbols of ``text`` after all merges, left to right."""
        syms = list(text)
        n = len(syms)
        if n < 2:
            return syms
        ids, neg = self._ids, self._neg_scores
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        prv = list(range(-1, n - 1))
        # (-score, left, right, merged length): popped best score first, then leftmost.
        heap: list[tuple[float, int, int, int]] = []
        for i in range(n - 1):
            tok = ids.get(syms[i] + syms[i + 1])
            if tok is not None:
                heap.append((neg[tok], i, i + 1, 2))
        heapq.heapify(heap)

        def push(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            a, b = syms[left], syms[right]
            tok = ids.get(a + b)
            if tok is not None:
                heapq.heappush(heap, (neg[tok], left, right, len(a) + len(b)))

        while heap:
            _, left, right, size = heapq.heappop(heap)
            a, b = syms[left], syms[right]
            if not a or not b or len(a) + len(b) != size:
                continue  # one side changed since this pair was queued
            syms[left], syms[right] = a + b, ""
            after = nxt[right]
            nxt[left] = after
            if after >= 0:
                prv[after] = left
            push(prv[left], left)
            push(left, after)
        return [s for s in syms if s]
