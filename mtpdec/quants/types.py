"""GGML tensor type ids and block sizes: the one table every size comes from.

Ids match ``gguf.GGMLQuantizationType`` (checked by a test); kept here so that reading
a file's header does not import the ``gguf`` package.
"""

from __future__ import annotations

from enum import IntEnum

from mtpdec.errors import MtpdecError


class GGMLType(IntEnum):
    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39


# type -> (elements per block, bytes per block), for every type a file may name.
BLOCK_SIZES: dict[GGMLType, tuple[int, int]] = {
    GGMLType.F32: (1, 4),
    GGMLType.F16: (1, 2),
    GGMLType.BF16: (1, 2),
    GGMLType.F64: (1, 8),
    GGMLType.I8: (1, 1),
    GGMLType.I16: (1, 2),
    GGMLType.I32: (1, 4),
    GGMLType.I64: (1, 8),
    GGMLType.Q4_0: (32, 18),
    GGMLType.Q4_1: (32, 20),
    GGMLType.Q5_0: (32, 22),
    GGMLType.Q5_1: (32, 24),
    GGMLType.Q8_0: (32, 34),
    GGMLType.Q8_1: (32, 40),
    GGMLType.Q2_K: (256, 84),
    GGMLType.Q3_K: (256, 110),
    GGMLType.Q4_K: (256, 144),
    GGMLType.Q5_K: (256, 176),
    GGMLType.Q6_K: (256, 210),
    GGMLType.Q8_K: (256, 292),
    GGMLType.IQ2_XXS: (256, 66),
    GGMLType.IQ2_XS: (256, 74),
    GGMLType.IQ3_XXS: (256, 98),
    GGMLType.IQ1_S: (256, 50),
    GGMLType.IQ4_NL: (32, 18),
    GGMLType.IQ3_S: (256, 110),
    GGMLType.IQ2_S: (256, 82),
    GGMLType.IQ4_XS: (256, 136),
    GGMLType.IQ1_M: (256, 56),
    GGMLType.TQ1_0: (256, 54),
    GGMLType.TQ2_0: (256, 66),
    GGMLType.MXFP4: (32, 17),
}

# The formats mtpdec computes with (reference dequant, packer, Numba matvec kernel).
SUPPORTED: tuple[GGMLType, ...] = (
    GGMLType.F32,
    GGMLType.F16,
    GGMLType.BF16,
    GGMLType.Q8_0,
    GGMLType.Q4_0,
    GGMLType.Q5_0,
    GGMLType.Q5_1,
    GGMLType.Q4_K,
    GGMLType.Q5_K,
    GGMLType.Q6_K,
)


def type_name(type_id: int) -> str:
    """Name of a GGML type id, or ``type<N>`` for an id nobody knows."""
    try:
        return GGMLType(type_id).name
    except ValueError:
        return f"type{type_id}"


def ggml_type(type_id: int, *, tensor: str | None = None) -> GGMLType:
    """The GGMLType of an id that mtpdec can compute with; MtpdecError otherwise."""
    where = f"tensor {tensor!r} has " if tensor else ""
    try:
        t = GGMLType(type_id)
    except ValueError:
        raise MtpdecError(f"{where}unknown GGML type id {type_id}") from None
    if t not in SUPPORTED:
        names = ", ".join(s.name for s in SUPPORTED)
        raise MtpdecError(f"{where}unsupported type {t.name} (supported: {names})")
    return t


def block_size(type_id: int) -> tuple[int, int]:
    """(elements, bytes) per block of a known type id; MtpdecError for an unknown id."""
    try:
        return BLOCK_SIZES[GGMLType(type_id)]
    except (ValueError, KeyError):
        raise MtpdecError(f"unknown GGML type id {type_id}") from None


def row_bytes(type_id: int, cols: int) -> int:
    """Bytes of one row of ``cols`` elements; MtpdecError when cols is not whole blocks."""
    elems, nbytes = block_size(type_id)
    if cols % elems:
        raise MtpdecError(
            f"row length {cols} is not a multiple of the {type_name(type_id)} block ({elems})"
        )
    return cols // elems * nbytes
