"""From command-line options to a drafter, a draft-count policy and a state to decode on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mtpdec.decode import Step, decode_plain
from mtpdec.draft import check_draft_name, make_drafter, require_mtp_head
from mtpdec.draft.adaptive import AdaptiveN, FixedN
from mtpdec.draft.costs import measure_costs
from mtpdec.errors import MtpdecError
from mtpdec.sampling import Sampler

AUTO_MAX_N = 8  # the most drafts ``--draft-n auto`` considers


def parse_draft_n(spec: str) -> int | None:
    """``--draft-n``: an integer 0..16, or "auto" (None)."""
    if spec.strip().lower() == "auto":
        return None
    try:
        n = int(spec)
    except ValueError:
        raise MtpdecError(f"--draft-n must be an integer >= 0 or auto, got {spec!r}") from None
    if not 0 <= n <= 16:
        raise MtpdecError(f"--draft-n must be in 0..16 or auto, got {n}")
    return n


def default_drafter(model: Any) -> str:
    """mtp for a model with an MTP head, else none."""
    return "mtp" if getattr(model, "mtp", None) is not None else "none"


def check_drafter(name: str, model: Any) -> None:
    """A known drafter name, and an MTP head for the drafters that need one."""
    check_draft_name(name)
    if "mtp" in name:
        require_mtp_head(model)


def make_policy(model: Any, draft_n: int | None) -> FixedN | AdaptiveN:
    """A fixed n, or ``auto`` over 0..AUTO_MAX_N with the model's measured cost curve."""
    if draft_n is not None:
        return FixedN(draft_n)
    return AdaptiveN(measure_costs(model, AUTO_MAX_N + 1), AUTO_MAX_N)


def greedy_reference(
    model: Any, prompt_ids: Sequence[int], n_predict: int, n_ctx: int
) -> np.ndarray:
    """Prompt and plain greedy continuation (end-of-generation tokens included): what the
    oracle drafter replays."""
    steps = decode_plain(model, prompt_ids, n_predict, Sampler(), model.new_state(n_ctx), False)
    out = [t for step in steps for t in step.tokens]
    return np.asarray(list(prompt_ids) + out, dtype=np.int32)


def decode_steps(
    model: Any,
    prompt_ids: Sequence[int],
    n_predict: int,
    sampler: Sampler,
    n_ctx: int,
    draft: str,
    policy: FixedN | AdaptiveN | None,
    reference: np.ndarray | None = None,
    accept: float = 1.0,
    seed: int = 0,
    stop_at_eog: bool = True,
    draft_vocab: int | None = None,
) -> Iterator[Step]:
    """Plain decoding for draft "none" (or at most 0 drafts), else speculative decoding
    with the named drafter on a fresh state with enough snapshot slots."""
    from mtpdec.speculative import decode_speculative

    if draft == "none" or policy is None or policy.max_n == 0:
        return decode_plain(
            model, prompt_ids, n_predict, sampler, model.new_state(n_ctx), stop_at_eog
        )
    state = model.new_state(n_ctx, snapshot_slots=policy.max_n)
    drafter = make_drafter(draft, model, state, sampler, reference, accept, seed, draft_vocab)
    return decode_speculative(
        model, prompt_ids, n_predict, sampler, state, drafter, policy, stop_at_eog
    )
