"""Integer-kernel IR for Q4_K repacked in groups of 8 interleaved rows (``mtpdec.cpu.repack``).

One kernel unit is a group of 8 rows; its per-input accumulator is one ``<16 x float>``
whose lane m belongs to row ``2 (m // 4) + m % 2`` (two lanes per row). Per group-block
and input, for each 64-weight chunk c (sub-blocks 2c, 2c + 1):

- 4 x 2 ``vpdpbusd`` of 8 rows x 8 weight bytes (low / high nibbles) with the input's 8
  activation bytes broadcast to all rows: int32 lanes of 16 products (at most 16*15*127,
  so they fit in int16);
- one pack to int16 and one ``vpmaddwd`` by the 8 rows' sub-block scales into the half
  block's int32 sums (lane m: its row, sub-blocks of parity ``(m % 4) // 2``);
- per half block h: the min term ``m_j * bsum32_j`` of the same lanes by ``vpmaddwd``,
  then ``acc += dx_h * (d * isum_h - dmin * msum_h)`` (float, 8 rows per vector op).

Integer parts are exact; the float operations per (row, input) do not depend on the
number of inputs, so results are bitwise identical across n (not equal in the last bits
to the plain-layout kernel: another summation order).
"""

from __future__ import annotations

from llvmlite import ir

from mtpdec.cpu.idecoders import (
    INT_FORMATS,
    V8I32,
    V16I32,
    X8,
    Accs,
    InputBlock,
    IntFormat,
    _and,
    _repeat,
    _shr,
)
from mtpdec.cpu.ir import F16, F32, I8, I16, I32, I64, fma, splat, stack_slot, vec
from mtpdec.cpu.isa import dot_u8s8_acc, madd_i16_acc, pack_i32_i16
from mtpdec.cpu.repack import D_AT, DMIN_AT, GROUP, GROUP_BLOCK_BYTES, M_AT, QS_AT, SC_AT
from mtpdec.quants.activations import Q8_0, Q8_K
from mtpdec.quants.types import GGMLType

V8F, V16F = vec(F32, 8), vec(F32, 16)
V16I16, V32I16, V64I8 = vec(I16, 16), vec(I16, 32), vec(I8, 64)
LANES = range(16)


def row_of(m: int) -> int:
    """The row (0..7) of accumulator lane m."""
    return 2 * (m // 4) + m % 2


def parity_of(m: int) -> int:
    """Which sub-block of a chunk (0: low nibbles, 1: high) lane m sums."""
    return (m % 4) // 2


def _at(b: ir.IRBuilder, p: ir.Value, offset: int, ty: ir.Type) -> ir.Value:
    return b.load(b.bitcast(b.gep(p, [ir.Constant(I32, offset)]), ty.as_pointer()), align=1)


def _rows_f16(b: ir.IRBuilder, p: ir.Value, offset: int) -> ir.Value:
    """<16 x float>: the fp16 per-row value at ``offset`` spread over each row's lanes."""
    v = b.fpext(b.bitcast(_at(b, p, offset, vec(I16, 8)), vec(F16, 8)), V8F)
    return _repeat(b, v, [row_of(m) for m in LANES])


def _broadcast8(b: ir.IRBuilder, p: ir.Value) -> ir.Value:
    """<64 x i8>: the 8 bytes at p repeated for the 8 rows (``vpbroadcastq``)."""
    word = b.load(b.bitcast(p, I64.as_pointer()), align=1)
    return b.bitcast(splat(b, word, 8), V64I8)


def _block(b: ir.IRBuilder, path: str, p: ir.Value, inputs: list[InputBlock], accs: Accs):
    dl = _rows_f16(b, p, D_AT)
    dminl = b.fneg(_rows_f16(b, p, DMIN_AT))
    sc, mins = _at(b, p, SC_AT, V64I8), _at(b, p, M_AT, V64I8)
    pair_lanes = [m for m in LANES for _ in range(2)]  # int16 lane -> its int32 lane m
    scales = [
        b.zext(_repeat(b, sc, [8 * row_of(m) + 2 * c + parity_of(m) for m in pair_lanes]), V32I16)
        for c in range(4)
    ]
    min_lanes = [
        [8 * row_of(m) + 2 * (2 * h + e) + parity_of(m) for m in LANES for e in (0, 1)]
        for h in range(2)
    ]
    mins16 = [b.zext(_repeat(b, mins, idx), V32I16) for idx in min_lanes]
    bsum_lanes = [[4 * h + 2 * e + parity_of(m) for m in LANES for e in (0, 1)] for h in range(2)]
    zero8, zero16 = ir.Constant(V8I32, None), ir.Constant(V16I32, None)
    ones = ir.Constant(V16I16, [ir.Constant(I16, 1)] * 16)

    bsums = []  # per input: the 8 sums of 32 activations, int16
    for inp in inputs:
        sums16 = b.load(b.bitcast(inp.sums, V16I16.as_pointer()), align=2)
        bsums.append(b.trunc(madd_i16_acc(b, path, zero8, sums16, ones), vec(I16, 8)))
    # loop-carried accumulators go through stack slots (``stack_slot``)
    slots = [stack_slot(b, V16F) for _ in inputs]
    for slot, acc in zip(slots, accs):
        b.store(acc[0], slot)
    for h in range(2):  # a half block (sub-blocks 4h..4h+3) then its float epilogue
        isums = [zero16 for _ in inputs]
        for c in (2 * h, 2 * h + 1):
            qs = [_at(b, p, QS_AT + 64 * (4 * c + chunk), V64I8) for chunk in range(4)]
            nibbles = [(_and(b, z, 15), _shr(b, z, 4)) for z in qs]
            for i, inp in enumerate(inputs):
                lo_sum = hi_sum = zero16
                for chunk, (lo, hi) in enumerate(nibbles):
                    at = 64 * c + 8 * chunk
                    xa = _broadcast8(b, b.gep(inp.q, [ir.Constant(I32, at)]))
                    xb = _broadcast8(b, b.gep(inp.q, [ir.Constant(I32, at + 32)]))
                    lo_sum = dot_u8s8_acc(b, path, lo_sum, lo, xa)
                    hi_sum = dot_u8s8_acc(b, path, hi_sum, hi, xb)
                packed = pack_i32_i16(b, path, lo_sum, hi_sum)
                isums[i] = madd_i16_acc(b, path, isums[i], packed, scales[c])
        for i, inp in enumerate(inputs):
            msum = madd_i16_acc(b, path, zero16, mins16[h], _repeat(b, bsums[i], bsum_lanes[h]))
            t = fma(b, b.sitofp(isums[i], V16F), dl, b.fmul(b.sitofp(msum, V16F), dminl))
            dx = b.load(b.gep(inp.d, [ir.Constant(I32, h)]))
            acc = fma(b, t, splat(b, dx, 16), b.load(slots[i]))
            b.store(acc, slots[i])
    return [[b.load(slot)] for slot in slots]


# ---- 32-weight formats: one scale per row and block ----------------------------------

SMALL_OFFSET = {GGMLType.Q8_0: 128, GGMLType.Q4_0: 8, GGMLType.Q5_0: 16}  # q - offset


def _small_pieces(b: ir.IRBuilder, t: GGMLType, p: ir.Value) -> list[tuple[int, ir.Value]]:
    """(element offset, <64 x i8> unsigned weights: lane L is row L // 8, element
    offset + L % 8) covering the group-block's 8 rows x 32 weights."""
    if t == GGMLType.Q8_0:  # q + 128 as unsigned bytes
        flip = ir.Constant(V64I8, [ir.Constant(I8, 0x80)] * 64)
        return [(8 * k, b.xor(_at(b, p, 16 + 64 * k, V64I8), flip)) for k in range(4)]
    qs_at = 16 if t == GGMLType.Q4_0 else 48
    qh = _at(b, p, 16, vec(I8, 32)) if t == GGMLType.Q5_0 else None

    def fifth(byte: int) -> ir.Value:  # 16 where bit L % 8 of row L // 8's qh byte is set
        spread = _repeat(b, qh, [8 * byte + lane // 8 for lane in range(64)])
        bits = ir.Constant(V64I8, [ir.Constant(I8, 1 << (lane % 8)) for lane in range(64)])
        hit = b.icmp_unsigned("!=", b.and_(spread, bits), ir.Constant(V64I8, None))
        return b.select(
            hit, ir.Constant(V64I8, [ir.Constant(I8, 16)] * 64), ir.Constant(V64I8, None)
        )

    pieces = []
    for k in range(2):
        z = _at(b, p, qs_at + 64 * k, V64I8)
        lo, hi = _and(b, z, 15), _shr(b, z, 4)
        if qh is not None:
            lo, hi = b.or_(lo, fifth(k)), b.or_(hi, fifth(2 + k))
        pieces += [(8 * k, lo), (16 + 8 * k, hi)]
    return pieces


def _small_block(t: GGMLType):
    """Per input: 4 ``vpdpbusd`` of 8 rows x 8 unsigned weights into one int32 vector
    (lane L: row L // 2; at most 16 products each), then
    ``acc += d * dx * isum - offset * d * dsum`` (half of the offset term in each of the
    row's two lanes)."""

    def block(b: ir.IRBuilder, path: str, p: ir.Value, inputs: list[InputBlock], accs: Accs):
        v = b.fpext(b.bitcast(_at(b, p, 0, vec(I16, 8)), vec(F16, 8)), V8F)
        dl = _repeat(b, v, [lane // 2 for lane in LANES])
        offl = b.fmul(dl, splat(b, ir.Constant(F32, -SMALL_OFFSET[t] / 2), 16))
        pieces = _small_pieces(b, t, p)
        zero16 = ir.Constant(V16I32, None)
        slots = [stack_slot(b, V16F) for _ in inputs]
        for slot, acc in zip(slots, accs):
            b.store(acc[0], slot)
        for inp, slot in zip(inputs, slots):
            isum = zero16
            for at, u in pieces:
                x = _broadcast8(b, b.gep(inp.q, [ir.Constant(I32, at)]))
                isum = dot_u8s8_acc(b, path, isum, u, x)
            scale = b.fmul(dl, splat(b, b.load(inp.d), 16))
            acc = fma(b, b.sitofp(isum, V16F), scale, b.load(slot))
            b.store(fma(b, offl, splat(b, b.load(inp.dsums), 16), acc), slot)
        return [[b.load(slot)] for slot in slots]

    return block


def _small_outputs(b: ir.IRBuilder, accs: list[ir.Value]) -> list[ir.Value]:
    """The 8 rows' results: lanes 2r and 2r + 1."""
    acc = accs[0]
    both = b.fadd(acc, _repeat(b, acc, [lane ^ 1 for lane in LANES]))
    return [b.extract_element(both, ir.Constant(I32, 2 * r)) for r in range(8)]


def _outputs(b: ir.IRBuilder, accs: list[ir.Value]) -> list[ir.Value]:
    """The 8 rows' results: each row's two lanes added."""
    acc = accs[0]
    both = b.fadd(acc, _repeat(b, acc, [m ^ 2 for m in LANES]))
    return [b.extract_element(both, ir.Constant(I32, 4 * (r // 2) + r % 2)) for r in range(8)]


INT_FORMATS[GGMLType.Q4_K, X8] = IntFormat(
    elems=256,
    nbytes=GROUP_BLOCK_BYTES,
    act=Q8_K,
    acc_types=(V16F,),
    block=_block,
    unit_rows=GROUP,
    outputs=_outputs,
)

for _t, _nbytes in ((GGMLType.Q8_0, 272), (GGMLType.Q4_0, 144), (GGMLType.Q5_0, 176)):
    INT_FORMATS[_t, X8] = IntFormat(
        elems=32,
        nbytes=_nbytes,
        act=Q8_0,
        acc_types=(V16F,),
        block=_small_block(_t),
        unit_rows=GROUP,
        outputs=_small_outputs,
    )
