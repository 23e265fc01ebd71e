"""Block formats: a registry keyed by GGML type -> reference dequantizer and packer.

Sizes come from ``types.BLOCK_SIZES``. For F32/F16/BF16 a "block" is one element.
A tensor's raw bytes are ``(rows, row_bytes)``; each row is a whole number of blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtpdec.errors import MtpdecError
from mtpdec.quants import pack as _pack
from mtpdec.quants import reference as _ref
from mtpdec.quants.types import BLOCK_SIZES, GGMLType, ggml_type, row_bytes
from mtpdec.tensor import Tensor

BlockFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class BlockFormat:
    """One supported format.

    dequantize: uint8 ``(nblocks, block_bytes)`` -> float32 ``(nblocks, block_elems)``.
    pack:       float32 ``(nblocks, block_elems)`` -> uint8 ``(nblocks, block_bytes)``.
    """

    ggml_type: GGMLType
    name: str
    block_elems: int
    block_bytes: int
    dequantize: BlockFn
    pack: BlockFn


def _format(t: GGMLType, dequantize: BlockFn, pack: BlockFn) -> BlockFormat:
    elems, nbytes = BLOCK_SIZES[t]
    return BlockFormat(t, t.name, elems, nbytes, dequantize, pack)


FORMATS: dict[GGMLType, BlockFormat] = {
    f.ggml_type: f
    for f in (
        _format(GGMLType.F32, _ref.dequant_f32, _pack.pack_f32),
        _format(GGMLType.F16, _ref.dequant_f16, _pack.pack_f16),
        _format(GGMLType.BF16, _ref.dequant_bf16, _pack.pack_bf16),
        _format(GGMLType.Q8_0, _ref.dequant_q8_0, _pack.pack_q8_0),
        _format(GGMLType.Q4_0, _ref.dequant_q4_0, _pack.pack_q4_0),
        _format(GGMLType.Q5_0, _ref.dequant_q5_0, _pack.pack_q5_0),
        _format(GGMLType.Q5_1, _ref.dequant_q5_1, _pack.pack_q5_1),
        _format(GGMLType.Q4_K, _ref.dequant_q4_k, _pack.pack_q4_k),
        _format(GGMLType.Q5_K, _ref.dequant_q5_k, _pack.pack_q5_k),
        _format(GGMLType.Q6_K, _ref.dequant_q6_k, _pack.pack_q6_k),
    )
}


def get_format(type_id: int, tensor_name: str | None = None) -> BlockFormat:
    """The BlockFormat of a type id; MtpdecError naming tensor and type otherwise."""
    return FORMATS[ggml_type(type_id, tensor=tensor_name)]


def dequantize_raw(
    raw: np.ndarray, ggml_type: int, shape: tuple[int, ...], *, name: str | None = None
) -> np.ndarray:
    """uint8 bytes of a tensor (any shape, e.g. ``(rows, row_bytes)``) -> float32 ``shape``."""
    fmt = get_format(ggml_type, name)
    shape = tuple(int(s) for s in shape)
    cols = shape[-1] if shape else 1
    rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    expected = rows * row_bytes(fmt.ggml_type, cols)
    if raw.dtype != np.uint8 or raw.size != expected:
        where = f"tensor {name!r}: " if name else ""
        raise MtpdecError(
            f"{where}{fmt.name} shape {shape} needs {expected} bytes, got {raw.size} ({raw.dtype})"
        )
    blocks = np.ascontiguousarray(raw).reshape(-1, fmt.block_bytes)
    return fmt.dequantize(blocks).reshape(shape)


def dequantize(tensor: Tensor) -> np.ndarray:
    """float32 values of a tensor, shape ``tensor.shape``."""
    return dequantize_raw(tensor.raw, tensor.ggml_type, tensor.shape, name=tensor.name)


def quantize(values: np.ndarray, ggml_type: int) -> np.ndarray:
    """float32 ``(..., cols)`` -> uint8 ``(rows, row_bytes)``; rows = product of the rest.

    MtpdecError when cols is not a multiple of the block length.
    """
    fmt = get_format(ggml_type)
    values = np.asarray(values, dtype=np.float32)
    cols = values.shape[-1] if values.ndim else 1
    nbytes = row_bytes(fmt.ggml_type, cols)
    blocks = np.ascontiguousarray(values).reshape(-1, fmt.block_elems)
    return np.ascontiguousarray(fmt.pack(blocks)).reshape(-1, nbytes)


def make_tensor(name: str, values: np.ndarray, ggml_type: int) -> Tensor:
    """A Tensor holding ``values`` (float32, numpy shape) quantized to ``ggml_type``."""
    values = np.asarray(values, dtype=np.float32)
    return Tensor(name, int(ggml_type), tuple(values.shape), quantize(values, ggml_type))


__all__ = [
    "FORMATS",
    "BlockFormat",
    "dequantize",
    "dequantize_raw",
    "get_format",
    "make_tensor",
    "quantize",
]
