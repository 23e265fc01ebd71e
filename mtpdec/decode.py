"""Decoding loops as generators of steps: the caller streams, times and stops them.

A ``Step`` is one forward pass (plus the picks after it) and the tokens it emitted.
``decode_plain`` is one token per forward; speculative decoding (k tokens per
verify forward, see docs/speculative.md) is a second generator beside it with the
same ``Step`` (several tokens per step, ``from_draft`` flags).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mtpdec.errors import MtpdecError

if TYPE_CHECKING:
    from mtpdec.models.base import Model
    from mtpdec.sampling import Sampler

# Why decoding ended (``Step.stop`` of the last step).
STOP_N_PREDICT = "n_predict"  # the requested number of tokens was emitted
STOP_EOG = "eog"  # the model picked an end-of-generation token
STOP_CTX = "ctx"  # the context is full


@dataclass(frozen=True)
class Step:
    """One forward pass of the model and what it produced.

    prefill:   True for the prompt forward (it emits the first new token).
    fed:       tokens run through the model in this step (prompt length, or 1).
    tokens:    tokens emitted, in order; never an end-of-generation token.
    from_draft: per emitted token, whether a drafter proposed it (plain: all False).
    seconds:   wall time of the step: drafting, the forward, the picks, the rollback
               (nothing else is timed).
    stop:      set on the last step: STOP_N_PREDICT, STOP_EOG or STOP_CTX.
    drafted / accepted: drafts verified in this step / how many were accepted (a
               speculative step; 0 otherwise). draft_s / verify_s / rollback_s: the
               parts of ``seconds`` (verify: the forward and the acceptance picks).
    """

    prefill: bool
    fed: int
    tokens: tuple[int, ...]
    from_draft: tuple[bool, ...]
    seconds: float
    stop: str | None = None
    drafted: int = 0
    accepted: int = 0
    draft_s: float = 0.0
    verify_s: float = 0.0
    rollback_s: float = 0.0


def check_start(prompt_ids: Sequence[int], n_predict: int, state: Any) -> np.ndarray:
    """The prompt as int32 (L,), 1 <= L <= state.n_ctx, on a fresh state; MtpdecError
    naming the problem otherwise."""
    prompt = np.asarray(prompt_ids, dtype=np.int32)
    if prompt.ndim != 1 or prompt.size == 0:
        raise MtpdecError("the prompt has no tokens")
    if n_predict < 0:
        raise MtpdecError(f"-n/--n-predict must be >= 0, got {n_predict}")
    if state.length != 0:
        raise MtpdecError(f"decoding needs a fresh state, this one holds {state.length} tokens")
    if prompt.size > state.n_ctx:
        raise MtpdecError(
            f"the prompt is {prompt.size} tokens, longer than the context {state.n_ctx}"
        )
    return prompt


def decode_plain(
    model: Model,
    prompt_ids: Sequence[int],
    n_predict: int,
    sampler: Sampler,
    state: Any,
    stop_at_eog: bool = True,
) -> Iterator[Step]:
    """Plain decoding: prefill the prompt, then one token per forward.

    model:      runs ``forward`` and owns the tokenizer (``is_eog``).
    prompt_ids: the prompt's token ids (BOS included when wanted), 1..state.n_ctx of them.
    n_predict:  tokens to emit at most (>= 0; 0 still runs the prefill, emits nothing).
    state:      a fresh ``model.new_state(n_ctx)``; decoding stops when it is full.
    stop_at_eog: False keeps going past end-of-generation tokens (benchmarks), which
                 are then emitted like any other token.

    Yields the prefill step, then one step per decode forward. The last step carries
    the stop reason. Every token fed to the model is one that was emitted before.
    """
    prompt = check_start(prompt_ids, n_predict, state)
    is_eog = model.tokenizer.is_eog
    plain = (False,)

    t0 = time.perf_counter()
    logits = model.forward(prompt, 0, state, last_only=True, prefill=True)
    if n_predict == 0:
        yield Step(True, prompt.size, (), (), time.perf_counter() - t0, STOP_N_PREDICT)
        return
    tok = sampler.pick(logits[-1])
    seconds = time.perf_counter() - t0
    prefill, emitted = True, 0
    while True:
        fed = prompt.size if prefill else 1
        if stop_at_eog and is_eog(tok):
            yield Step(
                prefill, fed, (), (), seconds, STOP_EOG, verify_s=0.0 if prefill else seconds
            )
            return
        emitted += 1
        stop = None
        if emitted == n_predict:
            stop = STOP_N_PREDICT
        elif state.length >= state.n_ctx:
            stop = STOP_CTX
        yield Step(prefill, fed, (tok,), plain, seconds, stop, verify_s=0.0 if prefill else seconds)
        if stop is not None:
            return
        t0 = time.perf_counter()
        logits = model.forward(np.array([tok], dtype=np.int32), state.length, state, last_only=True)
        tok = sampler.pick(logits[-1])
        seconds = time.perf_counter() - t0
        prefill = False
