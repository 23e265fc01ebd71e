"""`mtpdec info`: what a GGUF file holds, as rich tables or one JSON object."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtpdec.loader import GGUFFile, open_gguf
from mtpdec.quants.types import type_name


def layer_runs(kinds: Sequence[str]) -> list[tuple[int, int, str]]:
    """Maximal runs of equal kinds as (first, last, kind), both ends inclusive."""
    runs: list[tuple[int, int, str]] = []
    for i, kind in enumerate(kinds):
        if runs and runs[-1][2] == kind:
            runs[-1] = (runs[-1][0], i, kind)
        else:
            runs.append((i, i, kind))
    return runs


def runs_text(runs: Sequence[tuple[int, int, str]]) -> str:
    """'0-2 gdn, 3 attention, ...'."""
    return ", ".join(f"{a}-{b} {k}" if b > a else f"{a} {k}" for a, b, k in runs)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def gather(f: GGUFFile) -> dict[str, Any]:
    """The facts `info` shows, as JSON-ready values (sizes in bytes)."""
    cfg = f.config
    hyper = {
        fld.name: _plain(getattr(cfg, fld.name))
        for fld in dataclasses.fields(cfg)
        if fld.name != "layer_kinds"
    }
    kinds = cfg.layer_kinds
    runs = layer_runs(kinds)
    by_type: dict[int, list[int]] = {}
    for t in f.tensors.values():
        entry = by_type.setdefault(t.ggml_type, [0, 0])
        entry[0] += 1
        entry[1] += t.nbytes
    types = [
        {"type": type_name(tid), "count": n, "bytes": nbytes}
        for tid, (n, nbytes) in sorted(by_type.items(), key=lambda kv: -kv[1][1])
    ]
    used = {s.name for s in cfg.tensor_specs()}
    return {
        "path": str(f.path),
        "file_size": f.file_size,
        "gguf_version": f.version,
        "name": f.get("general.name"),
        "architecture": cfg.architecture,
        "hyperparameters": hyper,
        "layer_plan": {
            "counts": {k: kinds.count(k) for k in dict.fromkeys(kinds)},
            "runs": [{"first": a, "last": b, "kind": k} for a, b, k in runs],
            "text": runs_text(runs),
        },
        "n_tensors": len(f.tensors),
        "tensor_bytes": sum(t["bytes"] for t in types),
        "tensor_types": types,
        "unused_tensors": [name for name in f.tensors if name not in used],
        "kernels": kernel_facts([t["type"] for t in types]),
        "gpu": gpu_facts([t["type"] for t in types]),
    }


def kernel_facts(type_names: list[str]) -> dict[str, Any]:
    """Which CPU kernels this machine runs, and how each tensor type multiplies in the
    default q8 mode (integer dot with 8-bit activations of a kind, or float32)."""
    from mtpdec.cpu.isa import available_paths, host_path
    from mtpdec.quants.activations import ACTIVATION_KIND
    from mtpdec.quants.types import GGMLType

    by_type = {}
    for name in type_names:
        kind = ACTIVATION_KIND.get(GGMLType[name]) if name in GGMLType.__members__ else None
        by_type[name] = (
            f"int8 dot, {kind.ggml_type.name} activations (scale per {kind.block})"
            if kind
            else "float32"
        )
    return {
        "instruction_path": host_path(),
        "available_paths": available_paths(),
        "default_activations": "q8",
        "q8_by_type": by_type,
    }


def gpu_facts(type_names: list[str]) -> dict[str, Any]:
    """Whether ``--device gpu`` can run here (``mtpdec.gpu.runtime.describe``) and which of
    the file's tensor types have no GPU matvec (1-D tensors of any type are fine)."""
    from mtpdec.gpu.runtime import describe
    from mtpdec.gpu.sources import BLOCK_STRUCTS

    gpu_types = {t.name for t in BLOCK_STRUCTS}
    return describe() | {"types_without_gpu_matvec": sorted(set(type_names) - gpu_types)}


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _render(facts: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)  # long lines: the terminal wraps
    name = f" {escape(str(facts['name']))}" if facts["name"] else ""
    console.print(f"[bold]{facts['architecture']}[/bold]", name, sep="", markup=True)
    console.print(facts["path"], markup=False)
    console.print(
        f"GGUF v{facts['gguf_version']}, {facts['n_tensors']} tensors, "
        f"file {_size(facts['file_size'])} ({facts['file_size']:,} bytes)",
        markup=False,
    )
    hyper = Table(title="hyperparameters", show_header=False, title_justify="left")
    hyper.add_column("key")
    hyper.add_column("value", justify="right")
    for key, value in facts["hyperparameters"].items():
        hyper.add_row(key, str(value))
    console.print(hyper)

    plan = facts["layer_plan"]
    counts = ", ".join(f"{n} {k}" for k, n in plan["counts"].items())
    console.print(f"[bold]layer plan[/bold] ({counts})", markup=True)
    console.print(plan["text"], markup=False)

    types = Table(title="tensor types", title_justify="left")
    types.add_column("type")
    types.add_column("tensors", justify="right")
    types.add_column("bytes", justify="right")
    types.add_column("size", justify="right")
    for t in facts["tensor_types"]:
        types.add_row(t["type"], str(t["count"]), f"{t['bytes']:,}", _size(t["bytes"]))
    types.add_row(
        "total", str(facts["n_tensors"]), f"{facts['tensor_bytes']:,}", _size(facts["tensor_bytes"])
    )
    console.print(types)
    if facts["unused_tensors"]:
        console.print(f"not used by mtpdec: {', '.join(facts['unused_tensors'])}", markup=False)
    k = facts["kernels"]
    console.print(
        f"kernels: integer dot path {k['instruction_path']} (this CPU runs: "
        f"{', '.join(k['available_paths'])}); activations {k['default_activations']} by default",
        markup=False,
    )
    g = facts["gpu"]
    where = f"{g['device']} ({g['compute_capability']}), CuPy {g['cupy']}"
    console.print(
        f"gpu: {where}" if g["usable"] else f"gpu: not usable: {g['reason']}", markup=False
    )


def run_info(path: Path, as_json: bool) -> None:
    """Print architecture, hyperparameters, layer plan, tensor types and file size;
    ``as_json``: one JSON object with the same facts on stdout."""
    with open_gguf(path) as f:
        facts = gather(f)
    if as_json:
        print(json.dumps(facts))
    else:
        _render(facts)
