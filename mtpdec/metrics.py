"""Decoding metrics as plain dataclasses; rendering (stats line, JSON) reads from them.

Timing definitions (the same as llama.cpp's ``prompt eval`` / ``eval`` counters):

- prompt: the prefill forward over the prompt and the pick of the first new token;
  ``prompt_tokens`` is the prompt length.
- decode: every later step (forward over the tokens fed, then the pick).
  ``decode_tokens`` counts the tokens those steps emitted; an end-of-generation token
  is not emitted (nor printed), so it is not counted, though its step's time is.
- compile: Numba compilation or cache loading, before any of the above.
Printing and detokenizing happen between steps and are never timed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtpdec.decode import Step


def _rate(tokens: int, seconds: float) -> float | None:
    return tokens / seconds if tokens and seconds > 0 else None


@dataclass
class Timings:
    """Token counts and seconds of one generation (see the module docstring)."""

    prompt_tokens: int = 0
    prompt_s: float = 0.0
    decode_tokens: int = 0
    decode_s: float = 0.0
    decode_steps: int = 0
    load_s: float = 0.0
    compile_s: float = 0.0

    def record(self, step: Step) -> None:
        """Add one decoder step."""
        if step.prefill:
            self.prompt_tokens += step.fed
            self.prompt_s += step.seconds
        else:
            self.decode_tokens += len(step.tokens)
            self.decode_s += step.seconds
            self.decode_steps += 1

    @property
    def prompt_tok_s(self) -> float | None:
        """Prefill tokens per second (None before any prefill)."""
        return _rate(self.prompt_tokens, self.prompt_s)

    @property
    def decode_tok_s(self) -> float | None:
        """Emitted decode tokens per second (None when nothing was decoded)."""
        return _rate(self.decode_tokens, self.decode_s)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values, rates included (null when undefined)."""
        return asdict(self) | {"prompt_tok_s": self.prompt_tok_s, "decode_tok_s": self.decode_tok_s}

    def line(self) -> str:
        """One human-readable line: prompt and decode tokens with tok/s, load and compile s."""

        def rate(r: float | None) -> str:
            return "-" if r is None else f"{r:.1f}"

        return (
            f"prompt {self.prompt_tokens} tokens, {rate(self.prompt_tok_s)} tok/s"
            f" | decode {self.decode_tokens} tokens, {rate(self.decode_tok_s)} tok/s"
            f" | load {self.load_s:.2f} s, compile {self.compile_s:.2f} s"
        )


@dataclass
class SpecStats:
    """Acceptance and step costs of speculative decoding (speculative.md, "Metrics").

    steps: decode steps (verify forwards, with or without drafts); drafting_steps:
    those that verified at least one draft. per_position[i]: steps that accepted draft
    i + 1; proposed_at[i]: steps that proposed one; histogram[j]: steps that accepted
    exactly j drafts. Seconds are summed over decode steps.
    """

    max_n: int
    steps: int = 0
    drafting_steps: int = 0
    proposed: int = 0
    accepted: int = 0
    per_position: list[int] = field(default_factory=list)
    proposed_at: list[int] = field(default_factory=list)
    histogram: list[int] = field(default_factory=list)
    draft_s: float = 0.0
    verify_s: float = 0.0
    rollback_s: float = 0.0

    def __post_init__(self) -> None:
        for name, size in (("per_position", self.max_n), ("proposed_at", self.max_n)):
            getattr(self, name).extend([0] * (size - len(getattr(self, name))))
        self.histogram.extend([0] * (self.max_n + 1 - len(self.histogram)))

    def record(self, step: Step) -> None:
        """Add one decoder step (the prefill is not a verify and is skipped)."""
        if step.prefill:
            return
        self.steps += 1
        self.drafting_steps += step.drafted > 0
        self.proposed += step.drafted
        self.accepted += step.accepted
        for i in range(step.drafted):
            self.proposed_at[i] += 1
        for i in range(step.accepted):
            self.per_position[i] += 1
        self.histogram[step.accepted] += 1
        self.draft_s += step.draft_s
        self.verify_s += step.verify_s
        self.rollback_s += step.rollback_s

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted drafts / proposed drafts."""
        return self.accepted / self.proposed if self.proposed else None

    @property
    def mean_acceptance_length(self) -> float | None:
        """1 + accepted drafts / verify steps: tokens per forward, 1..k."""
        return 1 + self.accepted / self.steps if self.steps else None

    def position_rates(self) -> list[float | None]:
        """Per draft position i: steps that accepted draft i / steps."""
        return [a / self.steps if self.steps else None for a in self.per_position]

    def ms_per_step(self) -> dict[str, float | None]:
        def ms(s: float) -> float | None:
            return 1000 * s / self.steps if self.steps else None

        return {
            "draft": ms(self.draft_s),
            "verify": ms(self.verify_s),
            "rollback": ms(self.rollback_s),
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "acceptance_rate": self.acceptance_rate,
            "mean_acceptance_length": self.mean_acceptance_length,
            "per_position_acceptance": self.position_rates(),
            "ms_per_step": self.ms_per_step(),
        }

    def line(self) -> str:
        """One line: acceptance, AL, per-position acceptance and ms per step."""
        if not self.steps:
            return "speculative: no decode steps"
        rate = self.acceptance_rate
        pos = " ".join(f"{r:.2f}" for r in self.position_rates() if r is not None)
        ms = self.ms_per_step()
        return (
            f"drafts {self.accepted}/{self.proposed} accepted"
            f" ({'-' if rate is None else f'{100 * rate:.1f}%'})"
            f" | AL {self.mean_acceptance_length:.2f} | per position [{pos}]"
            f" | ms/step draft {ms['draft']:.1f} verify {ms['verify']:.1f}"
            f" rollback {ms['rollback']:.2f}"
        )


@dataclass
class PartTimes:
    """Seconds spent, since ``reset``, by offloaded FFNs: ``wait`` for the trunk's queued
    work to finish before a transfer, ``transfer`` (both ways), ``host_ffn`` (the host's
    kernels); ``calls`` offloaded FFN calls. The trunk's own time is a step's wall time
    minus ``transfer`` and ``host_ffn``."""

    wait: float = 0.0
    transfer: float = 0.0
    host_ffn: float = 0.0
    calls: int = 0

    def reset(self) -> None:
        self.wait = self.transfer = self.host_ffn = 0.0
        self.calls = 0

    def add(self, other: PartTimes) -> None:
        self.wait += other.wait
        self.transfer += other.transfer
        self.host_ffn += other.host_ffn
        self.calls += other.calls

    def ms_per_step(self, steps: int, step_ms: float | None) -> dict[str, float | None]:
        """Milliseconds per step over ``steps`` steps of ``step_ms`` each (the verify
        forward): {"trunk", "host_ffn", "transfer"}; the trunk's share is the rest of
        the step (it includes Python and the wait for queued trunk work)."""
        if steps < 1:
            return {"trunk": None, "host_ffn": None, "transfer": None}
        host, moved = 1e3 * self.host_ffn / steps, 1e3 * self.transfer / steps
        trunk = None if step_ms is None else step_ms - host - moved
        return {"trunk": trunk, "host_ffn": host, "transfer": moved}
