"""Integer-kernel IR for Q6_K repacked in word order (``mtpdec.cpu.repack``, ``WORDS``).

Weights and activations (``Q8_K_WORDS``) share one order in which int32 lane j of every
64-byte piece covers 4 values of sub-block j (16 values, one scale). So four ``vpdpbusd``
chained into one int32 vector give every lane its sub-block's whole integer dot, and no
packing or ``vpmaddwd`` is needed to apply the scales.

The activations come as unsigned bytes x + 128 and the weights as signed w = u - 32
(u: the stored 6-bit value). The dot of a lane is then sum (x + 128) w = sum x w +
128 sum w; the chain starts from ``init = -128 sum w = 65536 - 128 sum u`` per lane,
computed once per block for all inputs, and ends as the exact sum x w of sub-block j.
The float epilogue is ``acc += (z * (d * sc_j)) * dx_j`` on 16 lanes (dx_j: the input's
scale of lane j's 128-value half).

Per input and block: 4 integer dot products, one int-to-float conversion, one multiply,
one FMA, and 264 bytes of activations and scales read (the plain-layout kernel needs
14 vector operations and 328 bytes). Integer parts are exact and the float operations
per (row, input) do not depend on the number of inputs or the path, so results are
bitwise identical across n and paths.
"""

from __future__ import annotations

from llvmlite import ir

from mtpdec.cpu.idecoders import (
    INT_FORMATS,
    V16I8,
    V16I32,
    V64I8,
    VF16,
    WORDS,
    Accs,
    InputBlock,
    IntFormat,
    _and,
    _bytes_const,
    _load_i8,
    _shl,
    _shr,
)
from mtpdec.cpu.ir import F32, I32, const_vec, fma, load_f16_as_f32, splat, stack_slot, vec
from mtpdec.cpu.isa import dot_u8s8_acc
from mtpdec.cpu.repack_words import Q6_K_BYTES
from mtpdec.quants.activations import Q8_K_WORDS
from mtpdec.quants.types import GGMLType

QL_AT, QH_AT, SC_AT, D_AT = 0, 128, 192, 208


def _pieces(b: ir.IRBuilder, p: ir.Value) -> list[ir.Value]:
    """The 4 pieces of unsigned 6-bit values u (<64 x i8>) of the block at p."""
    low, high = _load_i8(b, p, QL_AT, V64I8), _load_i8(b, p, QL_AT + 64, V64I8)
    qh = _load_i8(b, p, QH_AT, V64I8)
    tops = [
        _and(b, _shl(b, qh, 4), 48),
        _and(b, _shl(b, qh, 2), 48),
        _and(b, qh, 48),
        _and(b, _shr(b, qh, 2), 48),
    ]
    nibbles = [_and(b, low, 15), _shr(b, low, 4), _and(b, high, 15), _shr(b, high, 4)]
    return [b.or_(nib, top) for nib, top in zip(nibbles, tops)]


def _block(b: ir.IRBuilder, path: str, p: ir.Value, inputs: list[InputBlock], accs: Accs):
    pieces = _pieces(b, p)
    total = ir.Constant(V16I32, None)  # sum of u per lane
    for piece in pieces:
        total = dot_u8s8_acc(b, path, total, piece, _bytes_const(V64I8, 1))
    init = b.sub(_bytes_const(V16I32, 65536), b.shl(total, _bytes_const(V16I32, 7)))
    weights = [b.sub(piece, _bytes_const(V64I8, 32)) for piece in pieces]
    sc = b.sitofp(_load_i8(b, p, SC_AT, V16I8), VF16)
    scd = b.fmul(sc, splat(b, load_f16_as_f32(b, p, D_AT), 16))
    halves = const_vec(I32, [lane // 8 for lane in range(16)])
    slots = [stack_slot(b, VF16) for _ in inputs]  # (see ``stack_slot``)
    for slot, acc in zip(slots, accs):
        b.store(acc[0], slot)
    for inp, slot in zip(inputs, slots):
        z = init
        for s, w in enumerate(weights):
            z = dot_u8s8_acc(b, path, z, _load_i8(b, inp.q, 64 * s, V64I8), w)
        two = b.load(b.bitcast(inp.d, vec(F32, 2).as_pointer()), align=4)
        dx = b.shuffle_vector(two, ir.Constant(two.type, ir.Undefined), halves)
        b.store(fma(b, b.fmul(b.sitofp(z, VF16), scd), dx, b.load(slot)), slot)
    return [[b.load(slot)] for slot in slots]


INT_FORMATS[GGMLType.Q6_K, WORDS] = IntFormat(
    elems=256, nbytes=Q6_K_BYTES, act=Q8_K_WORDS, acc_types=(VF16,), block=_block
)
