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

from dataclasses import asdict, dataclass
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
