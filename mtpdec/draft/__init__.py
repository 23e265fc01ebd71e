"""Drafters for speculative decoding, behind one interface (``base.Drafter``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mtpdec.draft.base import Draft, Drafter
from mtpdec.draft.lookup import LookupDrafter
from mtpdec.draft.mtp import MtpDrafter, MtpLookupDrafter, require_mtp_head
from mtpdec.draft.oracle import OracleDrafter
from mtpdec.errors import MtpdecError
from mtpdec.sampling import Sampler

DRAFTERS = ("mtp", "lookup", "mtp+lookup", "oracle", "none")

__all__ = ["DRAFTERS", "Draft", "Drafter", "check_draft_name", "make_drafter", "require_mtp_head"]


def check_draft_name(name: str) -> None:
    """MtpdecError when ``name`` is not one of DRAFTERS."""
    if name not in DRAFTERS:
        raise MtpdecError(f"--draft must be one of {', '.join(DRAFTERS)}, got {name!r}")


def make_drafter(
    name: str,
    model: Any,
    state: Any,
    sampler: Sampler | None = None,
    reference: np.ndarray | None = None,
    accept: float = 1.0,
    seed: int = 0,
    draft_vocab: int | None = None,
) -> Drafter:
    """The drafter ``name`` (one of DRAFTERS but "none") for decoding ``model`` on
    ``state``. sampler: the target's, when sampling (MTP then samples its drafts with
    its own seeded generator); reference / accept / seed: the oracle's; draft_vocab: the
    MTP head scores token ids below it only."""
    check_draft_name(name)
    draft_sampler = None
    if sampler is not None and not sampler.greedy:
        draft_sampler = Sampler(sampler.temp, sampler.top_k, sampler.top_p, seed)
    if name == "lookup":
        return LookupDrafter()
    if name == "mtp":
        return MtpDrafter(model, state, draft_sampler, draft_vocab)
    if name == "mtp+lookup":
        return MtpLookupDrafter(
            MtpDrafter(model, state, draft_sampler, draft_vocab), LookupDrafter()
        )
    if name == "oracle":
        if reference is None:
            raise MtpdecError("the oracle drafter needs a reference continuation")
        return OracleDrafter(reference, model.n_vocab, accept, seed)
    raise MtpdecError("--draft none has no drafter")
