"""Check a file's tensors against its config: presence, shapes, computable types."""

from __future__ import annotations

from mtpdec.errors import MtpdecError
from mtpdec.loader.config import ModelConfig
from mtpdec.loader.reader import GGUFFile
from mtpdec.quants.types import ggml_type


def validate(f: GGUFFile, config: ModelConfig) -> None:
    """MtpdecError (one line, naming the tensor) for the first problem found:
    a missing required tensor, a shape other than the config's, or a type mtpdec
    cannot compute with. Tensors the config does not use are not checked."""
    specs = config.tensor_specs()
    missing = [s.name for s in specs if s.required and s.name not in f.tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise MtpdecError(
            f"{f.path}: missing tensor {missing[0]!r} required by {config.architecture}{more}"
        )
    for spec in specs:
        t = f.tensors.get(spec.name)
        if t is None:
            continue
        if t.shape != spec.shape:
            raise MtpdecError(
                f"{f.path}: tensor {spec.name!r} has shape {t.shape}, expected {spec.shape}"
            )
        try:
            ggml_type(t.ggml_type, tensor=spec.name)
        except MtpdecError as exc:
            raise MtpdecError(f"{f.path}: {exc}") from None
