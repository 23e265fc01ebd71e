"""Where a model's parts run: one backend for the trunk, the FFN of chosen layers on
the host (issue 9's hybrid plan, ``mtpdec.gpu.placement``), and what each part cost.

``Backends`` is fixed when a model is built. A layer whose FFN runs on the host gets an
``OffloadedFeedForward``: its k normed rows cross to the host in one transfer and the k
output rows come back in one, so a verify of k tokens reads the layer's FFN weights once
for all k, as on the trunk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from mtpdec.cpu.backend import CPU, Ops
from mtpdec.metrics import PartTimes
from mtpdec.models.layers import FeedForward


@dataclass
class Backends:
    """trunk: runs everything but the FFN of the ``host_ffn`` layers (trunk layer
    indices), which ``host`` runs; ``times`` accumulates what those cost."""

    trunk: Ops = CPU
    host: Ops = CPU
    host_ffn: frozenset[int] = frozenset()
    times: PartTimes = field(default_factory=PartTimes)

    @property
    def name(self) -> str:
        """ "cpu", "gpu", or "gpu+cpu-ffn" for a hybrid."""
        if not self.host_ffn or self.host is self.trunk:
            return self.trunk.name
        return f"{self.trunk.name}+{self.host.name}-ffn"

    def numerics(self, activations: str) -> dict[str, str]:
        """{"activations", "kernel_path"} as reports name them for a model loaded with
        ``activations``: the trunk's fixed mode on a GPU ("f32"), with the CPU FFNs' mode
        and instruction path after a "+" in a hybrid."""
        from mtpdec.cpu.isa import host_path

        cpu_path = host_path() if activations == "q8" else "float"
        fixed = self.trunk.fixed_activations
        if fixed is None:
            return {"activations": activations, "kernel_path": cpu_path}
        if self.host_ffn:
            return {
                "activations": f"{fixed}+{activations}",
                "kernel_path": f"{self.trunk.name}+{cpu_path}",
            }
        return {"activations": fixed, "kernel_path": self.trunk.name}


class OffloadedFeedForward:
    """A FeedForward on the host inside a trunk on another backend: x (k, n_embd) trunk
    rows -> (k, n_embd) trunk rows, one transfer each way."""

    def __init__(self, ffn: FeedForward, backends: Backends) -> None:
        self.ffn, self.backends = ffn, backends

    def linears(self) -> list[Any]:
        return self.ffn.linears()

    def __call__(self, x: Any, prefill: bool = False) -> Any:
        b, times = self.backends, self.backends.times
        t0 = time.perf_counter()
        b.trunk.synchronize()
        t1 = time.perf_counter()
        rows = b.host.upload(b.trunk.to_host(x))
        t2 = time.perf_counter()
        y = b.host.to_host(self.ffn(rows, prefill))
        t3 = time.perf_counter()
        out = b.trunk.upload(y)
        t4 = time.perf_counter()
        times.wait += t1 - t0
        times.transfer += (t2 - t1) + (t4 - t3)
        times.host_ffn += t3 - t2
        times.calls += 1
        return out
