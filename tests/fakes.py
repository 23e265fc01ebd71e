"""A scripted stand-in for a loaded model (the ``mtpdec.models.base.Model`` interface), for
testing the decode loop and the generate command without running a network.

The model emits ``script`` in order: the logits after the prompt are one-hot at
``script[0]``, after the next fed token at ``script[1]``, and so on (then token 0
forever). Its byte-level tokenizer maps ids 0..255 to single bytes; BOS and EOS come
after them. ``clock`` (a ``FakeClock``) advances by ``cost(k)`` seconds per forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from mtpdec.errors import MtpdecError

BOS, EOS = 256, 257
N_VOCAB = 260


class FakeClock:
    """A perf_counter that moves only when told (``advance``)."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeTokenizer:
    bos_id, eos_id = BOS, EOS

    def encode(self, text: str, add_bos: bool | None = None, special: bool = True) -> list[int]:
        return [BOS] * (add_bos is not False) + list(text.encode("utf-8"))

    def token_bytes(self, tok: int) -> bytes:
        return bytes([tok]) if tok < 256 else b""

    def decode(self, ids: Sequence[int], continuation: bool = False) -> str:
        return b"".join(self.token_bytes(t) for t in ids).decode("utf-8", errors="replace")

    def is_eog(self, tok: int) -> bool:
        return tok == EOS


@dataclass
class FakeState:
    n_ctx: int
    length: int = 0


@dataclass
class FakeModel:
    script: list[int]
    n_ctx_train: int = 64
    clock: FakeClock | None = None
    n_vocab: int = N_VOCAB
    fed: list[int] = field(default_factory=list)  # every token fed, in order
    calls: list[int] = field(default_factory=list)  # tokens per forward
    prefills: list[bool] = field(default_factory=list)  # the prefill flag of each forward
    compiled: bool = False
    activations: str = "q8"
    placement: None = None  # all on the CPU

    def __post_init__(self) -> None:
        from mtpdec.models.hybrid import Backends

        self.backends = Backends()
        self.tokenizer = FakeTokenizer()
        self.config = SimpleNamespace(architecture="fake")
        self._prompt_len = 0

    def cost(self, k: int) -> float:
        return 0.010 + 0.001 * k

    def compile(self, dense: bool = True) -> float:
        self.compiled = True
        return 0.25

    def new_state(self, n_ctx: int) -> FakeState:
        return FakeState(n_ctx)

    def forward(
        self,
        tokens: np.ndarray,
        start_pos: int,
        state: FakeState,
        last_only: bool = False,
        prefill: bool = False,
    ) -> np.ndarray:
        assert tokens.dtype == np.int32 and tokens.ndim == 1
        if start_pos != state.length:
            raise MtpdecError(f"start_pos {start_pos} != length {state.length}")
        if start_pos + tokens.size > state.n_ctx:
            raise MtpdecError("context exceeded")
        if start_pos == 0:
            self._prompt_len = tokens.size
        self.fed.extend(int(t) for t in tokens)
        self.calls.append(int(tokens.size))
        self.prefills.append(prefill)
        state.length += tokens.size
        if self.clock is not None:
            self.clock.advance(self.cost(tokens.size))
        rows = np.zeros((1 if last_only else tokens.size, self.n_vocab), np.float32)
        i = state.length - self._prompt_len
        rows[-1, self.script[i] if i < len(self.script) else 0] = 1.0
        return rows
