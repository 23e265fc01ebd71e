"""Per-sequence model state: attention KV caches and Gated-DeltaNet recurrent state.

A ``ModelState`` covers positions ``0..length-1``. Attention caches are fixed-size,
position-indexed buffers, so truncating them is moving ``length``. Recurrent layers
cannot be truncated: they roll back by restoring a snapshot (speculative.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mtpdec.cpu.stream import aligned_zeros
from mtpdec.errors import MtpdecError

F32 = np.float32


class KVCache:
    """Keys and values of one attention layer.

    k: float32 (n_kv, n_ctx, hd_k); v: float32 (n_kv, n_ctx, hd_v). Entry p holds the
    (normed, rotated) key and the value of the token at position p.
    """

    def __init__(self, n_kv: int, n_ctx: int, hd_k: int, hd_v: int) -> None:
        self.k = np.zeros((n_kv, n_ctx, hd_k), dtype=F32)
        self.v = np.zeros((n_kv, n_ctx, hd_v), dtype=F32)

    def write(self, start: int, k: np.ndarray, v: np.ndarray) -> None:
        """Store k (n, n_kv, hd_k) and v (n, n_kv, hd_v) at positions start..start+n-1."""
        n = k.shape[0]
        self.k[:, start : start + n] = k.transpose(1, 0, 2)
        self.v[:, start : start + n] = v.transpose(1, 0, 2)


class RecurrentState:
    """State of one Gated-DeltaNet layer, with a ring of snapshot slots.

    s:    float32 (H_v, d, d), transposed delta-rule states (``mtpdec.cpu.gdn``).
    conv: float32 (K-1, C), the last K-1 conv inputs, oldest first.
    ring_s, ring_conv: (slots, ...) copies of both after each token t < slots of the
    latest forward, written by the forward itself (speculative.md: rollback is a copy).
    """

    def __init__(self, h_v: int, d: int, taps: int, channels: int, slots: int = 0) -> None:
        self.s = np.zeros((h_v, d, d), dtype=F32)
        self.conv = np.zeros((taps - 1, channels), dtype=F32)
        self.ring_s = aligned_zeros((slots, h_v, d, d))  # streamed into (cpu/stream.py)
        self.ring_conv = np.zeros((slots, taps - 1, channels), dtype=F32)

    def restore(self, slot: int) -> None:
        """Make ring slot ``slot`` the current state."""
        self.s[...] = self.ring_s[slot]
        self.conv[...] = self.ring_conv[slot]


@dataclass
class ModelState:
    """Everything a model remembers about one sequence.

    layers: per trunk layer, a KVCache (attention) or RecurrentState (GDN).
    mtp:    the MTP head's own KV cache (None without an MTP head); ``mtp_length``
            positions of it are filled.
    broken: a forward that was writing into the state raised; some layers moved on and
            others did not, so the state is refused from then on.
    """

    n_ctx: int
    layers: list[KVCache | RecurrentState]
    mtp: KVCache | None = None
    length: int = 0
    mtp_length: int = 0
    broken: bool = False
    batch_start: int = 0  # length before the latest forward's batch

    @contextlib.contextmanager
    def advancing(self, n: int) -> Iterator[None]:
        """Wrap a forward that writes positions length..length+n-1 into every layer:
        ``length`` moves on when it returns; if it raises, the state is marked broken."""
        self.broken = True
        yield
        self.batch_start = self.length
        self.length += n
        self.broken = False

    def rollback(self, length: int) -> None:
        """Keep the first ``length`` positions, where batch_start < length <= length now:
        attention caches move a position, GDN layers restore the snapshot taken after
        batch token ``length - batch_start - 1`` (the ring must have that slot)."""
        if length == self.length:
            return
        slot = length - self.batch_start - 1
        if not self.batch_start < length < self.length:
            raise MtpdecError(
                f"can roll back only within the latest batch: {length} is not in "
                f"{self.batch_start + 1}..{self.length}"
            )
        for layer in self.layers:
            if isinstance(layer, RecurrentState):
                if slot >= len(layer.ring_s):
                    raise MtpdecError(f"no snapshot slot {slot} (the ring has {len(layer.ring_s)})")
                layer.restore(slot)
        self.length = length
        self.mtp_length = min(self.mtp_length, length)

    @property
    def recurrent(self) -> bool:
        return any(isinstance(layer, RecurrentState) for layer in self.layers)

    def truncate(self, length: int) -> None:
        """Forget positions from ``length`` on (attention-only states; states with GDN
        layers roll back within the latest batch through ``rollback``)."""
        if not 0 <= length <= self.length:
            raise MtpdecError(f"cannot truncate a state of length {self.length} to {length}")
        if length != self.length and self.recurrent:
            raise MtpdecError("recurrent (GDN) state cannot be truncated; use rollback")
        self.length = length
        self.mtp_length = min(self.mtp_length, length)
