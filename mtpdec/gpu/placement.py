"""Where each part of a qwen35 model runs: the trunk on the GPU, the FFN of some layers in
CPU RAM (issue 9's hybrid plan), from tensor sizes alone (nothing is loaded).

``plan_placement(f, n_ctx, snapshot_slots, cpu_ffn, vram_bytes)``:
- GPU first: the KV caches, the GDN states with their snapshot ring, scratch, and every
  trunk tensor but the FFN matrices (attention and GDN projections, norms, the LM head,
  the MTP block); the embedding table stays in CPU RAM (a lookup reads k rows) unless
  it is also the LM head;
- then the FFN (``ffn_gate``, ``ffn_up``, ``ffn_down``) of each trunk layer: on the GPU
  for the first layers, in CPU RAM for the last ``cpu_ffn`` of them; ``cpu_ffn="auto"``
  puts as many on the GPU as ``vram_bytes`` holds after the rest.
A plan that does not fit ``vram_bytes`` is a one-line MtpdecError naming the option to
change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mtpdec.errors import MtpdecError
from mtpdec.loader import GGUFFile, Qwen35Config
from mtpdec.memory import GIB, state_nbytes

if TYPE_CHECKING:
    from mtpdec.models.hybrid import Backends

DEVICES = ("cpu", "gpu")

FFN_MATRICES = ("ffn_gate.weight", "ffn_up.weight", "ffn_down.weight")
SCRATCH_BYTES = 256 << 20  # activations, logits rows, attention probabilities


@dataclass(frozen=True)
class Placement:
    """gpu_ffn_layers / cpu_ffn_layers: trunk layer indices whose FFN runs there;
    gpu_bytes: {"weights", "ffn_weights", "kv_cache", "recurrent_state", "scratch"};
    cpu_ffn_bytes: the FFN weights read from the mmap by the CPU kernels."""

    gpu_ffn_layers: tuple[int, ...]
    cpu_ffn_layers: tuple[int, ...]
    gpu_bytes: dict[str, int] = field(default_factory=dict)
    cpu_ffn_bytes: int = 0
    vram_bytes: int | None = None

    @property
    def gpu_total(self) -> int:
        return sum(self.gpu_bytes.values())

    def summary(self) -> dict[str, object]:
        """Plain values for --json reports."""
        return {
            "gpu_ffn_layers": len(self.gpu_ffn_layers),
            "cpu_ffn_layers": list(self.cpu_ffn_layers),
            "gpu_bytes": dict(self.gpu_bytes, total=self.gpu_total),
            "cpu_ffn_bytes": self.cpu_ffn_bytes,
            "vram_bytes": self.vram_bytes,
        }


def ffn_layer_bytes(f: GGUFFile, layer: int) -> int:
    """Bytes of one trunk layer's FFN matrices in the file."""
    return sum(f.tensors[f"blk.{layer}.{name}"].nbytes for name in FFN_MATRICES)


def plan_placement(
    f: GGUFFile,
    n_ctx: int,
    snapshot_slots: int,
    cpu_ffn: int | str = 0,
    vram_bytes: int | None = None,
) -> Placement:
    c = f.config
    if not isinstance(c, Qwen35Config):
        raise MtpdecError(f"the GPU plan is for qwen35 models, not {c.architecture!r}")
    n = c.n_trunk
    if cpu_ffn == "auto" and vram_bytes is None:
        raise MtpdecError("--cpu-ffn auto needs --vram (the GPU memory to fill)")
    if cpu_ffn != "auto" and not (isinstance(cpu_ffn, int) and 0 <= cpu_ffn <= n):
        raise MtpdecError(f"--cpu-ffn must be 0..{n} (the model's trunk layers) or auto")
    ffn = [ffn_layer_bytes(f, i) for i in range(n)]
    ffn_names = {f"blk.{i}.{name}" for i in range(n) for name in FFN_MATRICES}
    tied = "output.weight" not in f.tensors
    weights = sum(
        t.nbytes
        for name, t in f.tensors.items()
        if name not in ffn_names and (tied or name != "token_embd.weight")
    )
    state = state_nbytes(c, n_ctx, snapshot_slots)
    fixed = {"weights": weights, **state, "scratch": SCRATCH_BYTES}
    if cpu_ffn == "auto":
        room = vram_bytes - sum(fixed.values())
        on_gpu = 0
        while on_gpu < n and ffn[on_gpu] <= room:
            room -= ffn[on_gpu]
            on_gpu += 1
    else:
        on_gpu = n - cpu_ffn
    gpu_bytes = {**fixed, "ffn_weights": sum(ffn[:on_gpu])}
    plan = Placement(
        gpu_ffn_layers=tuple(range(on_gpu)),
        cpu_ffn_layers=tuple(range(on_gpu, n)),
        gpu_bytes=gpu_bytes,
        cpu_ffn_bytes=sum(ffn[on_gpu:]),
        vram_bytes=vram_bytes,
    )
    if vram_bytes is not None and plan.gpu_total > vram_bytes:
        least = sum(fixed.values())
        hint = "raise --cpu-ffn" if least <= vram_bytes else "lower --ctx or --draft-n"
        raise MtpdecError(
            f"the GPU part needs {plan.gpu_total / GIB:.1f} GiB ({least / GIB:.1f} GiB "
            f"without any FFN), more than --vram {vram_bytes / GIB:.1f} GiB; {hint}"
        )
    return plan


@dataclass(frozen=True)
class DeviceOptions:
    """Where a model runs (``--device``, ``--cpu-ffn``, ``--vram``): "cpu" (everything), or
    "gpu" (the trunk, with the FFN of ``cpu_ffn`` layers, or "auto", on the CPU).
    n_ctx and snapshot_slots size the states the GPU must hold (``plan_placement``)."""

    device: str = "cpu"
    cpu_ffn: int | str = 0
    vram_bytes: int | None = None
    n_ctx: int = 4096
    snapshot_slots: int = 8

    def check(self) -> None:
        """MtpdecError for options that cannot go together."""
        if self.device not in DEVICES:
            raise MtpdecError(f"unknown --device {self.device!r} (known: {', '.join(DEVICES)})")
        if self.device == "cpu" and (self.cpu_ffn != 0 or self.vram_bytes is not None):
            raise MtpdecError("--cpu-ffn and --vram place parts of a GPU model; add --device gpu")
        if self.vram_bytes is not None and self.vram_bytes <= 0:
            raise MtpdecError(f"--vram must be positive, got {self.vram_bytes / GIB:g} GiB")


def device_options(
    device: str, cpu_ffn: str, vram_gb: float | None, n_ctx: int | None, snapshot_slots: int
) -> DeviceOptions:
    """DeviceOptions from the command line's strings (``--cpu-ffn N|auto``, ``--vram`` in
    GiB); n_ctx None sizes the plan for 4096 positions (generate's largest default)."""
    if cpu_ffn == "auto":
        ffn: int | str = "auto"
    else:
        try:
            ffn = int(cpu_ffn)
        except ValueError:
            raise MtpdecError(f"--cpu-ffn must be a layer count or auto, got {cpu_ffn!r}") from None
    vram = None if vram_gb is None else int(vram_gb * GIB)
    opts = DeviceOptions(device, ffn, vram, n_ctx or 4096, snapshot_slots)
    opts.check()
    return opts


def placement_for(f: GGUFFile, opts: DeviceOptions) -> Placement | None:
    """The placement plan of a model of ``f`` under ``opts``: None when it runs on one
    backend (the CPU, or a non-qwen35 model all on the GPU, which takes no --cpu-ffn)."""
    opts.check()
    if opts.device == "cpu":
        return None
    if not isinstance(f.config, Qwen35Config):
        if opts.cpu_ffn != 0 or opts.vram_bytes is not None:
            raise MtpdecError("--cpu-ffn and --vram place qwen35 models; give neither here")
        return None
    return plan_placement(f, opts.n_ctx, opts.snapshot_slots, opts.cpu_ffn, opts.vram_bytes)


def host_matrices(f: GGUFFile, opts: DeviceOptions) -> set[str] | None:
    """Names of the matrices the CPU runs under ``opts``: None for all (a CPU model), the
    offloaded FFN matrices of a GPU model."""
    plan = placement_for(f, opts)
    if opts.device == "cpu":
        return None
    layers = plan.cpu_ffn_layers if plan is not None else ()
    return {f"blk.{i}.{name}" for i in layers for name in FFN_MATRICES}


def backends_for(f: GGUFFile, opts: DeviceOptions) -> tuple[Backends, Placement | None]:
    """The Backends a model of ``f`` is built with, and the placement plan behind them
    (``placement_for``). The GPU part needs CuPy and a GPU (one-line MtpdecError if not)."""
    from mtpdec.cpu.backend import CPU
    from mtpdec.gpu.backend import GpuOps
    from mtpdec.models.hybrid import Backends

    plan = placement_for(f, opts)
    if opts.device == "cpu":
        return Backends(), None
    host_ffn = frozenset(plan.cpu_ffn_layers if plan is not None else ())
    return Backends(trunk=GpuOps(), host=CPU, host_ffn=host_ffn), plan
