"""Memory a decode plans to take, known before it is taken.

``state_nbytes(config, n_ctx, snapshot_slots)`` is what ``model.new_state`` will
allocate for that config (attention KV caches, GDN states with their snapshot slots);
``weights_nbytes(f, activations, dense_budget)`` estimates the weight copies a load takes
beyond the file's pages (q8 mode's repacked matrices, dense prefill copies).
``check_plan_fits`` refuses a plan larger than the memory the machine has available
(``MemAvailable``) with a one-line error naming the option to change, before any of it
is allocated.
"""

from __future__ import annotations

from pathlib import Path

from mtpdec.errors import MtpdecError
from mtpdec.loader import GDN, Gemma3Config, GGUFFile, ModelConfig, Qwen35Config
from mtpdec.state import KVCache, RecurrentState

GIB = 1 << 30


def state_nbytes(config: ModelConfig, n_ctx: int, snapshot_slots: int = 0) -> dict[str, int]:
    """{"kv_cache": bytes, "recurrent_state": bytes} of ``new_state(n_ctx, snapshot_slots)``."""
    kv = recurrent = 0
    if isinstance(config, Qwen35Config):
        c = config
        per_kv = KVCache.nbytes(c.n_head_kv, n_ctx, c.head_dim, c.head_dim)
        for kind in c.layer_kinds[: c.n_trunk]:
            if kind == GDN:
                recurrent += RecurrentState.nbytes(
                    c.ssm_time_step_rank,
                    c.ssm_state_size,
                    c.ssm_conv_kernel,
                    c.conv_dim,
                    snapshot_slots,
                )
            else:
                kv += per_kv
        kv += per_kv if c.n_mtp else 0
    elif isinstance(config, Gemma3Config):
        c = config
        per_kv = KVCache.nbytes(c.n_head_kv, n_ctx, c.head_dim_k, c.head_dim_v)
        kv = per_kv * len(c.layer_kinds)  # one cache per layer, sliding ones included
    else:  # pragma: no cover - every registered architecture is listed above
        raise MtpdecError(f"no memory plan for architecture {config.architecture!r}")
    return {"kv_cache": kv, "recurrent_state": recurrent}


def available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The kernel's estimate of memory available without swapping; None if unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def weights_nbytes(
    f: GGUFFile, activations: str, dense_budget: int, only: set[str] | None = None
) -> dict[str, int]:
    """Estimated {"repacked_weights": bytes, "dense_prefill": bytes}: q8 mode copies every
    matrix of a repackable type (rows >= 8) into its kernel layout; dense prefill copies
    are fp32, taken only when all of them fit ``dense_budget`` (``Linear``). ``only``: the
    matrices the CPU runs (a GPU model's offloaded FFNs); None: all of them."""
    from mtpdec.cpu.isa import host_path
    from mtpdec.cpu.matvec import repackable
    from mtpdec.quants.types import GGMLType

    names = {s.name for s in f.config.tensor_specs()}
    tied = "output.weight" not in f.tensors
    matrices = [
        t
        for name, t in f.tensors.items()
        if name in names
        and len(t.shape) == 2
        and (tied or name != "token_embd.weight")
        and (only is None or name in only)
    ]
    path = host_path()
    repacked = sum(
        t.nbytes
        for t in matrices
        if activations == "q8" and t.rows >= 8 and repackable(GGMLType(t.ggml_type), path)
    )
    head = {"output.weight", "token_embd.weight"}
    dense = sum(4 * t.rows * t.cols for t in matrices if t.name not in head)
    return {"repacked_weights": repacked, "dense_prefill": dense if dense <= dense_budget else 0}


def check_plan_fits(plan: dict[str, int], n_ctx: int, available: int | None = None) -> None:
    """MtpdecError naming --ctx (and --prefill-mib when dense copies are planned) when the
    plan's bytes exceed the available memory (``available_bytes()`` unless given)."""
    need = sum(plan.values())
    have = available_bytes() if available is None else available
    if have is None or need <= have:
        return
    state = plan.get("kv_cache", 0) + plan.get("recurrent_state", 0)
    options = "lower --ctx" + (" or --prefill-mib" if plan.get("dense_prefill") else "")
    parts = f"{state / GIB:.1f} GiB of KV cache and recurrent state for --ctx {n_ctx}"
    if need > state:
        parts += f", {(need - state) / GIB:.1f} GiB of weight copies"
    raise MtpdecError(
        f"this run needs {need / GIB:.1f} GiB ({parts}), more than the "
        f"{have / GIB:.1f} GiB of memory available; {options}"
    )
