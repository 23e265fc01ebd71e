"""Per-format block arithmetic of the integer dot kernels (``mtpdec.cpu.ikernel``).

Each ``IntFormat.block(b, path, p, inputs, accs)`` emits IR that decodes one weight
block at ``p`` once and adds its dot product with every input's 8-bit block into that
input's float accumulators (``acc_types``, a fixed lane layout per format). Integer parts
are exact; the float operations per (row, input) are the same whatever the number of
inputs or the instruction path, so results are bitwise identical across both.

Two families (``quant-formats.md``):

- K formats (256 weights, Q8_K activations with a scale per 128): the weights become
  unsigned bytes (Q4_K nibbles, Q5_K 5-bit, Q6_K 6-bit values 0..63) in the activations'
  element order, 64 per piece. On VNNI paths ``vpdpbusd`` sums 4 products per int32
  lane, two pieces are packed to int16 and ``vpmaddwd`` weights them with their sub-block
  scales; elsewhere ``vpmaddubsw`` (pairs) then ``vpmaddwd``. Per half block h that gives
  an integer sum isum_h; the block adds ``d * (dx_0 * isum_0 + dx_1 * isum_1)`` into a
  ``<16 x float>``, plus ``corr . dsums``: the min term (Q4_K/Q5_K, ``-dmin * m_j``) or
  Q6_K's offset (``-32 * d * sc_g``) per 16 weights, times the input's ``d * bsum``.
- 32-weight formats (Q8_0 activations): Q8_0 / Q4_0 / Q5_0 as signed bytes (q, q-8, q-16),
  dotted as |w| times x signed by w; Q5_1 as unsigned 5-bit values plus ``m * dx * sum(x)``
  in a float scalar. Per block: ``d * dx * idot`` into a ``<8 x float>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from llvmlite import ir

from mtpdec.cpu.decoders import k_scale_mins
from mtpdec.cpu.ir import (
    F32,
    I8,
    I16,
    I32,
    const_vec,
    fma,
    load_f16_as_f32,
    splat,
    stack_slot,
    vec,
)
from mtpdec.cpu.isa import (
    abs_i8,
    concat,
    dot_s8s8_acc,
    dot_u8s8_acc,
    has_dpbusd,
    madd_i16_acc,
    madd_u8s8,
    pack_i32_i16,
)
from mtpdec.quants.activations import Q8_0, Q8_K, ActivationKind
from mtpdec.quants.types import BLOCK_SIZES, GGMLType

V16I8, V32I8, V64I8 = vec(I8, 16), vec(I8, 32), vec(I8, 64)
V8I16, V16I16, V32I16 = vec(I16, 8), vec(I16, 16), vec(I16, 32)
V8I32, V16I32 = vec(I32, 8), vec(I32, 16)
VF8, VF16 = vec(F32, 8), vec(F32, 16)


@dataclass(frozen=True)
class InputBlock:
    """One input at the current block: ``q`` i8* to its first 8-bit value, ``d`` float* to
    its first scale, ``sums`` i16* (i32* for word-order kinds) / ``dsums`` float* to its
    first integer sum and its first d * sum (``QuantizedRows.sums`` / ``.dsums``)."""

    q: ir.Value
    d: ir.Value
    sums: ir.Value
    dsums: ir.Value


Accs = list[list[ir.Value]]
BlockFn = Callable[[ir.IRBuilder, str, ir.Value, list[InputBlock], Accs], Accs]


@dataclass(frozen=True)
class IntFormat:
    """How the integer kernel walks one weight layout (see the module docstring).

    elems / nbytes: weights per row / bytes per kernel block (all ``unit_rows`` rows).
    unit_rows: rows a kernel unit computes at once (1, or 8 for interleaved groups);
    ``outputs(b, accs)`` turns one input's accumulators into the unit's row results
    (default: the sum of every accumulator's lanes).
    """

    elems: int
    nbytes: int
    act: ActivationKind
    acc_types: tuple[ir.Type, ...]
    block: BlockFn
    unit_rows: int = 1
    outputs: Callable[[ir.IRBuilder, list[ir.Value]], list[ir.Value]] | None = None


def _bytes_const(ty: ir.VectorType, value: int) -> ir.Constant:
    return ir.Constant(ty, [ir.Constant(ty.element, value)] * ty.count)


def _and(b: ir.IRBuilder, v: ir.Value, mask: int) -> ir.Value:
    return b.and_(v, _bytes_const(v.type, mask))


def _shr(b: ir.IRBuilder, v: ir.Value, bits: int) -> ir.Value:
    return b.lshr(v, _bytes_const(v.type, bits)) if bits else v


def _shl(b: ir.IRBuilder, v: ir.Value, bits: int) -> ir.Value:
    return b.shl(v, _bytes_const(v.type, bits)) if bits else v


def _load_i8(b: ir.IRBuilder, base: ir.Value, at: int, ty: ir.VectorType) -> ir.Value:
    return b.load(b.bitcast(b.gep(base, [ir.Constant(I32, at)]), ty.as_pointer()), align=1)


def _load_i16(b: ir.IRBuilder, base: ir.Value, ty: ir.VectorType) -> ir.Value:
    return b.load(b.bitcast(base, ty.as_pointer()), align=2)


def _repeat(b: ir.IRBuilder, v: ir.Value, picks: list[int]) -> ir.Value:
    """The lanes ``picks`` of v (indices into v), as a new vector."""
    return b.shuffle_vector(v, ir.Constant(v.type, ir.Undefined), const_vec(I32, picks))


# ---- K formats ---------------------------------------------------------------------


@dataclass(frozen=True)
class KBlock:
    """A decoded K block.

    pieces: unsigned weight bytes <64 x i8>, piece s holding elements 64s..64s+63.
    scales: integer scales <8 x i16> (Q4_K/Q5_K, one per 32 weights) or <16 x i16> (Q6_K,
      one per 16); ``group`` weights share one.
    d:      float scale of the integer sum.
    corr:   <16 x float>, one per 16 weights: what the block adds per unit of an input's
      ``dsums`` (Q4_K/Q5_K: -dmin * m_j; Q6_K: -32 * d * sc_g).
    """

    pieces: list[ir.Value]
    scales: ir.Value
    group: int
    d: ir.Value
    corr: ir.Value


def _scale_lanes(b: ir.IRBuilder, kb: KBlock, first_elems: list[int]) -> ir.Value:
    """<32 x i16>: lane L holds the scale of element first_elems[L] of the block."""
    return _repeat(b, kb.scales, [e // kb.group for e in first_elems])


def _k_isums_vnni(b, path: str, kb: KBlock, x: list[ir.Value], scales) -> list[ir.Value]:
    """Per half block (elements 0..127, 128..255), the sum of scale * dot: one
    ``vpdpbusd`` per piece gives 4-product sums (they fit in int16: at most 4 * 63 * 127),
    the half's two pieces are packed to int16 and one ``vpmaddwd`` weights every pair of
    them with its scale. Two <16 x i32>."""
    zero = ir.Constant(V16I32, None)
    z = [dot_u8s8_acc(b, path, zero, u, xs) for u, xs in zip(kb.pieces, x)]
    return [
        madd_i16_acc(b, path, zero, pack_i32_i16(b, path, z[2 * half], z[2 * half + 1]), scale)
        for half, scale in enumerate(scales)
    ]


def _k_isums_madd(b, path: str, kb: KBlock, x: list[ir.Value], scales) -> list[ir.Value]:
    """The same sums with ``vpmaddubsw`` (pairs, int16) then ``vpmaddwd`` by the scales."""
    isums = []
    for half in range(2):
        isum = ir.Constant(V16I32, None)
        for s in (2 * half, 2 * half + 1):
            isum = madd_i16_acc(b, path, isum, madd_u8s8(b, path, kb.pieces[s], x[s]), scales[s])
        isums.append(isum)
    return isums


def _k_scale_vectors(b: ir.IRBuilder, path: str, kb: KBlock) -> list[ir.Value]:
    """Scale vectors in the order ``_k_isums_vnni`` or ``_k_isums_madd`` consumes them."""
    if has_dpbusd(path):  # pack lane L: 128-bit lane L // 8, first or second source, i32 lane
        firsts = [
            [
                64 * (2 * t + (lane % 8) // 4) + 4 * (4 * (lane // 8) + lane % 4)
                for lane in range(32)
            ]
            for t in range(2)
        ]
    else:  # lane L of vpmaddubsw over piece s: elements 64s + 2L, +1
        firsts = [[64 * s + 2 * lane for lane in range(32)] for s in range(4)]
    return [_scale_lanes(b, kb, f) for f in firsts]


def _k_family(decode: Callable[[ir.IRBuilder, ir.Value], KBlock]) -> BlockFn:
    def block(b: ir.IRBuilder, path: str, p: ir.Value, inputs: list[InputBlock], accs: Accs):
        kb = decode(b, p)
        scales = _k_scale_vectors(b, path, kb)
        isums_of = _k_isums_vnni if has_dpbusd(path) else _k_isums_madd
        dvec = splat(b, kb.d, 16)
        slots = [stack_slot(b, VF16) for _ in inputs]
        for slot, acc in zip(slots, accs):
            b.store(acc[0], slot)
        for inp, slot in zip(inputs, slots):
            x = [_load_i8(b, inp.q, 64 * s, V64I8) for s in range(4)]
            low, high = isums_of(b, path, kb, x, scales)
            dx = [splat(b, b.load(b.gep(inp.d, [ir.Constant(I32, h)])), 16) for h in range(2)]
            t = fma(b, b.sitofp(high, VF16), dx[1], b.fmul(b.sitofp(low, VF16), dx[0]))
            main = fma(b, t, dvec, b.load(slot))
            dsums = b.load(b.bitcast(inp.dsums, VF16.as_pointer()), align=4)
            b.store(fma(b, kb.corr, dsums, main), slot)
        return [[b.load(slot)] for slot in slots]

    return block


def _q45_block(b: ir.IRBuilder, p: ir.Value, low: list[ir.Value], high: list[ir.Value]) -> KBlock:
    """Piece s: sub-block 2s from low[s] (<32 x i8>), 2s+1 from high[s]."""
    sc, m = k_scale_mins(b, p)
    d, dmin = load_f16_as_f32(b, p, 0), load_f16_as_f32(b, p, 2)
    m16 = _repeat(b, b.sitofp(m, VF8), [g // 2 for g in range(16)])
    corr = b.fmul(m16, splat(b, b.fneg(dmin), 16))
    pieces = [concat(b, [lo, hi]) for lo, hi in zip(low, high)]
    return KBlock(pieces, b.trunc(sc, V8I16), 32, d, corr)


def decode_q4_k(b: ir.IRBuilder, p: ir.Value) -> KBlock:
    qs = [_load_i8(b, p, 16 + 32 * s, V32I8) for s in range(4)]
    return _q45_block(b, p, [_and(b, q, 15) for q in qs], [_shr(b, q, 4) for q in qs])


def decode_q5_k(b: ir.IRBuilder, p: ir.Value) -> KBlock:
    qh = _load_i8(b, p, 16, V32I8)
    qs = [_load_i8(b, p, 48 + 32 * s, V32I8) for s in range(4)]

    def fifth(bit: int) -> ir.Value:
        return _bit_set(b, qh, _bytes_const(V32I8, 1 << bit), 16)

    low = [b.or_(_and(b, q, 15), fifth(2 * s)) for s, q in enumerate(qs)]
    high = [b.or_(_shr(b, q, 4), fifth(2 * s + 1)) for s, q in enumerate(qs)]
    return _q45_block(b, p, low, high)


def decode_q6_k(b: ir.IRBuilder, p: ir.Value) -> KBlock:
    """Half h: ql[64h..] low nibbles are elements 0..63 of the half, high nibbles 64..127;
    qh[32h + l] bits 2i..2i+1 are the top bits of element l + 32i."""
    sc = _load_i8(b, p, 192, V16I8)
    pieces = []
    for h in range(2):
        ql = _load_i8(b, p, 64 * h, V64I8)
        qh = _load_i8(b, p, 128 + 32 * h, V32I8)
        tops = [_shl(b, _and(b, _shr(b, qh, 2 * i), 3), 4) for i in range(4)]
        for part, nibbles in enumerate((_and(b, ql, 15), _shr(b, ql, 4))):
            pieces.append(b.or_(nibbles, concat(b, tops[2 * part : 2 * part + 2])))
    d = load_f16_as_f32(b, p, 208)
    corr = b.fmul(b.sitofp(sc, VF16), splat(b, b.fmul(d, ir.Constant(F32, -32.0)), 16))
    return KBlock(pieces, b.sext(sc, V16I16), 16, d, corr)


# ---- 32-weight formats ---------------------------------------------------------------


@dataclass(frozen=True)
class SmallBlock:
    """A decoded 32-weight block: ``w`` <32 x i8> (signed, or unsigned with ``m``), ``d``,
    and Q5_1's ``m`` (value = d * q + m)."""

    w: ir.Value
    d: ir.Value
    m: ir.Value | None = None


def _small_family(
    decode: Callable[[ir.IRBuilder, ir.Value], SmallBlock], t: GGMLType, g: int
) -> BlockFn:
    """``g`` consecutive blocks of type t per step (1, or 2: one 512-bit vector of weights)."""
    nbytes = BLOCK_SIZES[t][1]

    def block(b: ir.IRBuilder, path: str, p: ir.Value, inputs: list[InputBlock], accs: Accs):
        blocks = [decode(b, b.gep(p, [ir.Constant(I32, k * nbytes)])) for k in range(g)]
        w = concat(b, [sb.w for sb in blocks])
        m = [sb.m for sb in blocks] if blocks[0].m is not None else None
        w_abs = abs_i8(b, w) if m is None else None
        lanes = 8 * g
        zero, vf = ir.Constant(vec(I32, lanes), None), vec(F32, lanes)
        dvec = _per_block(b, [sb.d for sb in blocks])
        new = []
        for inp, acc in zip(inputs, accs):
            x = _load_i8(b, inp.q, 0, vec(I8, 32 * g))
            if m is None:
                idot = dot_s8s8_acc(b, path, zero, w_abs, w, x)
            else:
                idot = dot_u8s8_acc(b, path, zero, w, x)
            dx = b.load(b.bitcast(inp.d, vec(F32, g).as_pointer()), align=4)
            t = b.fmul(b.sitofp(idot, vf), _repeat(b, dx, [k // 8 for k in range(lanes)]))
            out = [fma(b, t, dvec, acc[0])]
            if m is not None:
                msum = acc[1]
                for k in range(g):
                    dsum = b.load(b.gep(inp.dsums, [ir.Constant(I32, k)]))
                    msum = _fma_scalar(b, m[k], dsum, msum)
                out.append(msum)
            new.append(out)
        return new

    return block


def _per_block(b: ir.IRBuilder, values: list[ir.Value]) -> ir.Value:
    """<8g x float>: each of the g scalars repeated over its block's 8 lanes."""
    v = ir.Constant(vec(F32, len(values)), ir.Undefined)
    for k, x in enumerate(values):
        v = b.insert_element(v, x, ir.Constant(I32, k))
    return _repeat(b, v, [k // 8 for k in range(8 * len(values))])


def _fma_scalar(b: ir.IRBuilder, x: ir.Value, y: ir.Value, acc: ir.Value) -> ir.Value:
    fn = b.module.globals.get("llvm.fma.f32") or ir.Function(
        b.module, ir.FunctionType(F32, [F32, F32, F32]), "llvm.fma.f32"
    )
    return b.call(fn, [x, y, acc])


def _nibbles(b: ir.IRBuilder, p: ir.Value, at: int) -> ir.Value:
    """16 bytes at ``at`` as 32 values: low nibbles first, then high nibbles."""
    qs = _load_i8(b, p, at, V16I8)
    return concat(b, [_and(b, qs, 15), _shr(b, qs, 4)])


def _bit_set(b: ir.IRBuilder, v: ir.Value, masks: ir.Constant, value: int) -> ir.Value:
    """``value`` in each byte of v that has a bit of ``masks`` set there, else 0."""
    hit = b.icmp_unsigned("!=", b.and_(v, masks), ir.Constant(v.type, None))
    return b.select(hit, _bytes_const(v.type, value), ir.Constant(v.type, None))


def _fifth_bits(b: ir.IRBuilder, p: ir.Value, at: int) -> ir.Value:
    """<32 x i8>: 16 where bit j of the u32 at ``at`` is set, else 0."""
    qh = _load_i8(b, p, at, vec(I8, 4))
    spread = _repeat(b, qh, [j // 8 for j in range(32)])
    return _bit_set(b, spread, const_vec(I8, [1 << (j % 8) for j in range(32)]), 16)


def decode_q8_0(b: ir.IRBuilder, p: ir.Value) -> SmallBlock:
    return SmallBlock(_load_i8(b, p, 2, V32I8), load_f16_as_f32(b, p, 0))


def decode_q4_0(b: ir.IRBuilder, p: ir.Value) -> SmallBlock:
    return SmallBlock(b.sub(_nibbles(b, p, 2), _bytes_const(V32I8, 8)), load_f16_as_f32(b, p, 0))


def decode_q5_0(b: ir.IRBuilder, p: ir.Value) -> SmallBlock:
    q = b.or_(_nibbles(b, p, 6), _fifth_bits(b, p, 2))
    return SmallBlock(b.sub(q, _bytes_const(V32I8, 16)), load_f16_as_f32(b, p, 0))


def decode_q5_1(b: ir.IRBuilder, p: ir.Value) -> SmallBlock:
    q = b.or_(_nibbles(b, p, 8), _fifth_bits(b, p, 4))
    return SmallBlock(q, load_f16_as_f32(b, p, 0), load_f16_as_f32(b, p, 2))


def _k_format(t: GGMLType, decode: Callable[[ir.IRBuilder, ir.Value], KBlock]) -> IntFormat:
    elems, nbytes = BLOCK_SIZES[t]
    return IntFormat(elems, nbytes, Q8_K, (VF16,), _k_family(decode))


def _small_format(
    t: GGMLType, decode: Callable[[ir.IRBuilder, ir.Value], SmallBlock], g: int
) -> IntFormat:
    elems, nbytes = BLOCK_SIZES[t]
    accs = (vec(F32, 8 * g), F32) if t == GGMLType.Q5_1 else (vec(F32, 8 * g),)
    return IntFormat(g * elems, g * nbytes, Q8_0, accs, _small_family(decode, t, g))


_SMALL = {
    GGMLType.Q8_0: decode_q8_0,
    GGMLType.Q4_0: decode_q4_0,
    GGMLType.Q5_0: decode_q5_0,
    GGMLType.Q5_1: decode_q5_1,
}

# (weight type, layout) -> the kernel's walk. Layout: 1 plain; 2: 32-weight formats two
# blocks per step (one 512-bit vector), when a row has an even number of blocks; 8: rows
# repacked in interleaved groups of 8 (``mtpdec.cpu.idecoders_x8``, registered there);
# 4: Q6_K blocks repacked in word order (``mtpdec.cpu.idecoders_words``).
PLAIN, PAIRS, WORDS, X8 = 1, 2, 4, 8
LAYOUT_NAMES = {PLAIN: "plain", PAIRS: "pairs", WORDS: "words", X8: "x8"}
INT_FORMATS: dict[tuple[GGMLType, int], IntFormat] = {
    (GGMLType.Q4_K, PLAIN): _k_format(GGMLType.Q4_K, decode_q4_k),
    (GGMLType.Q5_K, PLAIN): _k_format(GGMLType.Q5_K, decode_q5_k),
    (GGMLType.Q6_K, PLAIN): _k_format(GGMLType.Q6_K, decode_q6_k),
    **{(t, g): _small_format(t, dec, g) for t, dec in _SMALL.items() for g in (1, 2)},
}


def plain_layout(t: GGMLType, cols: int) -> int:
    """The layout (INT_FORMATS key) for a matrix of type t, rows of ``cols``, not repacked."""
    if (t, PAIRS) in INT_FORMATS and (cols // BLOCK_SIZES[t][0]) % 2 == 0:
        return PAIRS
    return PLAIN
