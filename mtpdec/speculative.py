"""Speculative decoding (speculative.md) as a generator of ``Step``s, beside
``decode_plain``.

Each decode step feeds the last emitted token t0 and n drafts ``[t0, d1..dn]`` through
one forward (a verify, snapshots on), keeps the longest accepted prefix (greedy) or
applies the rejection rule (sampling), rolls the state back to the kept length, and
emits the accepted drafts and the token after them; that token is the next step's t0
(no separate commit forward). With no drafts a step is a plain decode step. Greedy
output is token for token plain greedy output: every verify row is bitwise the row a
one-token forward gives, and a rollback restores the exact state.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np

from mtpdec.accept import accept_greedy, accept_sampled
from mtpdec.decode import STOP_CTX, STOP_EOG, STOP_N_PREDICT, Step, check_start
from mtpdec.draft.base import Draft, Drafter
from mtpdec.sampling import Sampler

if TYPE_CHECKING:
    from mtpdec.draft.adaptive import AdaptiveN, FixedN
    from mtpdec.models.base import Model, MtpModel, StateLike


def decode_speculative(
    model: Model,
    prompt_ids: Sequence[int],
    n_predict: int,
    sampler: Sampler,
    state: StateLike,
    drafter: Drafter,
    policy: FixedN | AdaptiveN,
    stop_at_eog: bool = True,
) -> Iterator[Step]:
    """Speculative decoding; the arguments of ``decode_plain``, and:

    state:   a fresh ``model.new_state(n_ctx, snapshot_slots >= policy.max_n)``.
    drafter: proposes drafts (``mtpdec.draft``).
    policy:  ``choose() -> n`` drafts for the next step and ``update(proposed,
             accepted, draft_s)`` after it (``FixedN`` / ``AdaptiveN``).

    A drafter with ``needs_hidden`` needs a model with ``hidden`` and ``logits``
    (``mtpdec.models.base.MtpModel``).

    Yields the prefill step, then one step per verify forward, each with its drafts
    and timings (``Step.drafted`` / ``accepted`` / ``draft_s`` / ``verify_s`` /
    ``rollback_s``). The last step carries the stop reason.
    """
    prompt = check_start(prompt_ids, n_predict, state)
    is_eog = model.tokenizer.is_eog
    context = np.zeros(state.n_ctx + 1, dtype=np.int32)  # committed tokens, then t0
    context[: prompt.size] = prompt
    size = prompt.size
    wants_hidden = drafter.needs_hidden
    trunk = cast("MtpModel", model)  # hidden/logits: only used when wants_hidden
    pending: list[np.ndarray] = []  # trunk hidden rows the drafter has not seen

    t_start = time.perf_counter()
    if wants_hidden:
        hn = trunk.hidden(prompt, 0, state, prefill=True)
        logits = trunk.logits(hn[-1:])
        drafter.start(prompt, hn)
    else:
        logits = model.forward(prompt, 0, state, last_only=True, prefill=True)
        drafter.start(prompt, None)
    if n_predict == 0:
        yield Step(True, prompt.size, (), (), time.perf_counter() - t_start, STOP_N_PREDICT)
        return
    tok = sampler.pick(logits[-1])
    if stop_at_eog and is_eog(tok):
        yield Step(True, prompt.size, (), (), time.perf_counter() - t_start, STOP_EOG)
        return
    emitted = 1
    stop = STOP_N_PREDICT if n_predict == 1 else (STOP_CTX if state.length >= state.n_ctx else None)
    yield Step(True, prompt.size, (tok,), (False,), time.perf_counter() - t_start, stop)
    if stop:
        return

    while True:
        t_start = time.perf_counter()
        context[size] = tok
        room = min(state.n_ctx - state.length - 1, n_predict - emitted - 1)
        n = min(policy.choose(), room)
        draft = Draft()
        if n > 0:
            draft = drafter.propose(
                context[: size + 1], n, np.concatenate(pending) if pending else None
            )
            pending.clear()
        t_drafted = time.perf_counter()
        drafts = draft.tokens[:n]
        fed = np.concatenate([[tok], drafts]).astype(np.int32)
        start = state.length
        snapshots = len(drafts) > 0
        if wants_hidden:
            hn = trunk.hidden(fed, start, state, snapshots=snapshots)
        if sampler.greedy:  # each row's argmax only (found on the device on a GPU)
            if wants_hidden:
                picks = trunk.head_picks(hn)
            else:
                picks = model.forward_picks(fed, start, state, snapshots=snapshots)
            accepted = accept_greedy(drafts, picks)
            nxt = int(picks[accepted])
        else:
            logits = (
                trunk.logits(hn)
                if wants_hidden
                else model.forward(fed, start, state, snapshots=snapshots)
            )
            accepted, nxt = accept_sampled(
                drafts, draft.q, lambda i, rows=logits: sampler.probs(rows[i]), sampler.rng
            )
        t_verified = time.perf_counter()
        state.rollback(start + 1 + accepted)
        if wants_hidden:
            pending.append(hn[: accepted + 1])
        t_end = time.perf_counter()
        # at T > 0 the policy must not see timings: its choices change which random draws
        # are made, and a seed has to reproduce the output
        policy.update(len(drafts), accepted, t_drafted - t_start if sampler.greedy else 0.0)

        out: list[int] = []
        stop = None
        for t in [int(d) for d in drafts[:accepted]] + [nxt]:
            if stop_at_eog and is_eog(t):
                stop = STOP_EOG
                break
            out.append(t)
            emitted += 1
            if emitted == n_predict:
                stop = STOP_N_PREDICT
                break
        if stop is None and state.length >= state.n_ctx:
            stop = STOP_CTX
        flags = tuple(i < accepted for i in range(len(out)))
        context[size + 1 : size + 1 + accepted] = drafts[:accepted]
        size += 1 + accepted
        tok = nxt
        yield Step(
            False,
            len(fed),
            tuple(out),
            flags,
            t_end - t_start,
            stop,
            drafted=len(drafts),
            accepted=accepted,
            draft_s=t_drafted - t_start,
            verify_s=t_verified - t_drafted,
            rollback_s=t_end - t_verified,
        )
        if stop:
            return
