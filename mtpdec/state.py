"""Per-sequence model state: attention KV caches and Gated-DeltaNet recurrent state.

A ``ModelState`` covers positions ``0..length-1``. Attention caches are fixed-size,
position-indexed buffers, so truncating them is moving ``length``. Recurrent layers
cannot be truncated: they roll back by restoring a snapshot (speculative.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtpdec.cpu.backend import CPU, Ops
from mtpdec.errors import MtpdecError


class KVCache:
    """Keys and values of one attention layer.

    k: float32 (n_kv, n_ctx, hd_k); v: float32 (n_kv, n_ctx, hd_v), arrays of ``ops``
    (the backend the layer runs on). Entry p holds the (normed, rotated) key and the
    value of the token at position p.
    """

    def __init__(self, n_kv: int, n_ctx: int, hd_k: int, hd_v: int, ops: Ops = CPU) -> None:
        self.k = ops.zeros((n_kv, n_ctx, hd_k))
        self.v = ops.zeros((n_kv, n_ctx, hd_v))

    @staticmethod
    def nbytes(n_kv: int, n_ctx: int, hd_k: int, hd_v: int) -> int:
        """Bytes the constructor allocates."""
        return 4 * n_kv * n_ctx * (hd_k + hd_v)

    def write(self, start: int, k: Any, v: Any) -> None:
        """Store k (n, n_kv, hd_k) and v (n, n_kv, hd_v) at positions start..start+n-1."""
        n = k.shape[0]
        self.k[:, start : start + n] = k.transpose(1, 0, 2)
        self.v[:, start : start + n] = v.transpose(1, 0, 2)


class RecurrentState:
    """State of one Gated-DeltaNet layer, with snapshot slots for rollback.

    s:    float32 (H_v, d, d), transposed delta-rule states (``mtpdec.cpu.gdn``): one of
          the ``pool`` buffers (slots + 1 of them, 64-byte aligned on the CPU), the
          ``live`` one. Buffers are arrays of ``ops``; ``slot_of`` stays on the host.
    conv: float32 (K-1, C), the last K-1 conv inputs, oldest first.
    Snapshots (speculative.md: rollback is a copy or a slot swap): a forward asked for
    them writes the state after each of its tokens but the last, token t's delta-rule
    state into ``pool[slot_of[t]]`` and its conv state into ``ring_conv[t]``; ``taken``
    is how many the latest forward wrote. ``restore`` swaps the live buffer with a
    slot's (no copy of S).
    """

    def __init__(
        self, h_v: int, d: int, taps: int, channels: int, slots: int = 0, ops: Ops = CPU
    ) -> None:
        self.pool = ops.pool_zeros((slots + 1, h_v, d, d))
        self.live = 0
        self.slot_of = np.arange(1, slots + 1, dtype=np.int64)
        self.conv = ops.zeros((taps - 1, channels))
        self.ring_conv = ops.zeros((slots, taps - 1, channels))
        self.taken = 0

    @staticmethod
    def nbytes(h_v: int, d: int, taps: int, channels: int, slots: int = 0) -> int:
        """Bytes the constructor allocates (the alignment pad aside)."""
        return 4 * ((slots + 1) * h_v * d * d + (slots + 1) * (taps - 1) * channels)

    @property
    def slots(self) -> int:
        return len(self.slot_of)

    @property
    def s(self) -> Any:
        return self.pool[self.live]

    def snapshot_plan(self, n: int, snapshots: bool) -> tuple[np.ndarray, Any]:
        """For a forward of n tokens: (pool indices, conv ring rows) its snapshots go to,
        n - 1 of each when ``snapshots``, none otherwise; records ``taken``."""
        count = n - 1 if snapshots else 0
        if count > self.slots:
            raise MtpdecError(
                f"a verify of {n} tokens needs {count} snapshot slots; the state has "
                f"{self.slots} (new_state(..., snapshot_slots=))"
            )
        self.taken = count
        return self.slot_of[:count], self.ring_conv[:count]

    def restore(self, slot: int) -> None:
        """Make snapshot ``slot`` (< ``taken``) the current state."""
        live, self.live = self.live, int(self.slot_of[slot])
        self.slot_of[slot] = live
        self.conv[...] = self.ring_conv[slot]
        self.taken = 0


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
        batch token ``length - batch_start - 1`` (the forward must have written snapshots)."""
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
                if slot >= layer.taken:
                    raise MtpdecError(
                        f"no snapshot slot {slot}: the latest forward wrote {layer.taken}"
                    )
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
