"""Per-format IR decoders: weight bytes -> float vectors of 16 weights.

The kernel walks each block in ``steps`` iterations of an IR loop (small loop bodies
keep LLVM from hoisting a whole block's decode and spilling it). ``prepare(b, block)``
runs once per block (K formats: scales into stack arrays); ``step(b, block, ctx, s)``
emits IR for step ``s`` (a runtime i64) and yields ``Group``s; over all steps they cover
every element of the block once. Element offsets index the block's dequantized values,
which line up with the input vector x.

Formats whose scale covers 32 weights (Q8_0, Q4_0, Q5_0, Q4_K, Q5_K) yield unscaled
quants plus the scale, so the kernel spends one multiply per 32 weights on the scale
instead of one per weight; Q4_K/Q5_K's ``-dmin*m`` term is applied from per-sub-block
sums of x, computed once per input (``mins``). The others yield finished weights.

Plain types (F32/F16/BF16) use a "block" of 16 elements so that every format runs
through the same kernel loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from llvmlite import ir
from numba.core import cgutils

from mtpdec.cpu.ir import (
    F32,
    I8,
    I16,
    I32,
    I64,
    LANES,
    VF32,
    const_vec,
    i8_to_f32,
    load,
    load_f16_as_f32,
    splat,
    vec,
)
from mtpdec.quants.types import BLOCK_SIZES, GGMLType


@dataclass(frozen=True)
class Group:
    """Consecutive weights starting at element ``at`` (i64, from the block start).

    ``qs``: <16 x float> vectors of 16 elements each. With ``scale`` None they are the
    weights themselves; otherwise the weights are ``scale * qs`` (one float for the whole
    group), and the kernel sums ``qs * x`` first and multiplies by ``scale`` once.
    """

    at: ir.Value
    qs: list[ir.Value]
    scale: ir.Value | None = None


Decoded = Iterator[Group]
Prepare = Callable[[ir.IRBuilder, ir.Value], Any]
Step = Callable[[ir.IRBuilder, ir.Value, Any, ir.Value], Decoded]
Whole = Iterator[tuple[int, list[ir.Value], ir.Value | None]]  # (offset, qs, scale)

V16I8 = vec(I8, 16)
V32I8 = vec(I8, 32)
V16I32 = vec(I32, 16)


def _and(b: ir.IRBuilder, v: ir.Value, mask: int) -> ir.Value:
    return b.and_(v, ir.Constant(v.type, [ir.Constant(v.type.element, mask)] * v.type.count))


def _shr(b: ir.IRBuilder, v: ir.Value, bits: int) -> ir.Value:
    return b.lshr(v, ir.Constant(v.type, [ir.Constant(v.type.element, bits)] * v.type.count))


def _shl(b: ir.IRBuilder, v: ir.Value, bits: int) -> ir.Value:
    return b.shl(v, ir.Constant(v.type, [ir.Constant(v.type.element, bits)] * v.type.count))


def _sub(b: ir.IRBuilder, v: ir.Value, k: int) -> ir.Value:
    return b.sub(v, ir.Constant(v.type, [ir.Constant(v.type.element, k)] * v.type.count))


def _zext_bytes(b: ir.IRBuilder, p: ir.Value, offset: ir.Value) -> ir.Value:
    """16 bytes at a runtime byte offset, zero-extended to <16 x i32>."""
    ptr = b.bitcast(b.gep(p, [offset]), V16I8.as_pointer())
    return b.zext(b.load(ptr, align=1), V16I32)


# ---- plain types: 16 elements per kernel block ---------------------------------


def decode_f32(b: ir.IRBuilder, p: ir.Value) -> Whole:
    yield 0, [load(b, p, 0, VF32)], None


def decode_f16(b: ir.IRBuilder, p: ir.Value) -> Whole:
    h = b.bitcast(load(b, p, 0, vec(I16, LANES)), vec(ir.HalfType(), LANES))
    yield 0, [b.fpext(h, VF32)], None


def decode_bf16(b: ir.IRBuilder, p: ir.Value) -> Whole:
    bits = b.zext(load(b, p, 0, vec(I16, LANES)), vec(I32, LANES))
    yield 0, [b.bitcast(_shl(b, bits, 16), VF32)], None


# ---- 32-element blocks -----------------------------------------------------------


def decode_q8_0(b: ir.IRBuilder, p: ir.Value) -> Whole:
    d = load_f16_as_f32(b, p, 0)
    yield 0, [i8_to_f32(b, load(b, p, 2 + 16 * half, V16I8)) for half in range(2)], d


def decode_q4_0(b: ir.IRBuilder, p: ir.Value) -> Whole:
    d = load_f16_as_f32(b, p, 0)
    qs = _zext_bytes(b, p, ir.Constant(I64, 2))
    halves = (_and(b, qs, 15), _shr(b, qs, 4))
    yield 0, [b.sitofp(_sub(b, q, 8), VF32) for q in halves], d


def _q5_high_bits(b: ir.IRBuilder, qh: ir.Value, first_bit: int) -> ir.Value:
    """Bits first_bit..first_bit+15 of a u32, each as 16 (bit set) or 0, as <16 x i32>."""
    shifts = const_vec(I32, list(range(first_bit, first_bit + 16)))
    return _shl(b, _and(b, b.lshr(splat(b, qh), shifts), 1), 4)


def _q5_values(b: ir.IRBuilder, p: ir.Value, qh_at: int, qs_at: int) -> tuple[ir.Value, ir.Value]:
    """The two halves of a Q5_0/Q5_1 block as unsigned 5-bit values, <16 x i32> each."""
    qh = load(b, p, qh_at, I32)
    qs = _zext_bytes(b, p, ir.Constant(I64, qs_at))
    low = b.or_(_and(b, qs, 15), _q5_high_bits(b, qh, 0))
    high = b.or_(_shr(b, qs, 4), _q5_high_bits(b, qh, 16))
    return low, high


def decode_q5_0(b: ir.IRBuilder, p: ir.Value) -> Whole:
    d = load_f16_as_f32(b, p, 0)
    yield 0, [b.sitofp(_sub(b, q, 16), VF32) for q in _q5_values(b, p, 2, 6)], d


def decode_q5_1(b: ir.IRBuilder, p: ir.Value) -> Whole:
    d, m = load_f16_as_f32(b, p, 0), load_f16_as_f32(b, p, 2)
    qs = _q5_values(b, p, 4, 8)
    yield 0, [b.fadd(b.fmul(b.uitofp(q, VF32), splat(b, d)), splat(b, m)) for q in qs], None


# ---- 256-element K blocks: per-block scales, then an IR loop over steps ------------


def k_scale_mins(b: ir.IRBuilder, p: ir.Value) -> tuple[ir.Value, ir.Value]:
    """Q4_K/Q5_K: the 6-bit scales and mins of the 8 sub-blocks, as <8 x i32> each.

    The 12 packed bytes q at offset 4 give, for sub-block j < 4: sc = q[j] & 63,
    m = q[j+4] & 63; j >= 4: sc = (q[j+4] & 15) | (q[j-4] >> 6) << 4,
    m = (q[j+4] >> 4) | (q[j] >> 6) << 4.
    """
    q = load(b, p, 4, V16I8)  # 12 scale bytes + 4 bytes of quants (unused)
    v8 = vec(I32, 8)

    def pick(indices: list[int]) -> ir.Value:
        return b.zext(b.shuffle_vector(q, q, const_vec(I32, indices)), v8)

    low6 = const_vec(I32, [63] * 4 + [15] * 4)
    top2 = const_vec(I32, [0] * 4 + [0x30] * 4)
    high_bits = [
        b.and_(b.lshr(pick(idx), const_vec(I32, [2] * 8)), top2)  # (q >> 6) << 4
        for idx in ([0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 6, 7])
    ]
    sc = b.or_(b.and_(pick([0, 1, 2, 3, 8, 9, 10, 11]), low6), high_bits[0])
    m_src = b.lshr(pick([4, 5, 6, 7, 8, 9, 10, 11]), const_vec(I32, [0] * 4 + [4] * 4))
    m = b.or_(b.and_(m_src, low6), high_bits[1])
    return sc, m


def _k_scales(b: ir.IRBuilder, p: ir.Value) -> tuple[ir.Value, ir.Value]:
    """Q4_K/Q5_K: stack arrays [8 x float] of d*sc and -dmin*m per sub-block."""
    d, dmin = load_f16_as_f32(b, p, 0), load_f16_as_f32(b, p, 2)
    sc, m = k_scale_mins(b, p)
    vf8 = vec(F32, 8)
    scales = cgutils.alloca_once(b, vf8)
    mins = cgutils.alloca_once(b, vf8)
    b.store(b.fmul(b.uitofp(sc, vf8), splat(b, d, 8)), scales)
    b.store(b.fneg(b.fmul(b.uitofp(m, vf8), splat(b, dmin, 8))), mins)
    f32p = F32.as_pointer()
    return b.bitcast(scales, f32p), b.bitcast(mins, f32p)


def _k_chunk(b, ctx, s: ir.Value, low: list[ir.Value], high: list[ir.Value]) -> Decoded:
    """Chunk s (64 weights): sub-block 2s from ``low``, 2s+1 from ``high`` (<16 x i32> x2).

    The groups carry d*sc; the -dmin*m term is added by the kernel from sub-block sums.
    """
    scales, _ = ctx
    for sub, halves in ((0, low), (1, high)):
        j = b.add(b.mul(s, ir.Constant(I64, 2)), ir.Constant(I64, sub))
        at = b.add(b.mul(s, ir.Constant(I64, 64)), ir.Constant(I64, 32 * sub))
        yield Group(at, [b.uitofp(q, VF32) for q in halves], b.load(b.gep(scales, [j])))


def step_q4_k(b: ir.IRBuilder, p: ir.Value, ctx, s: ir.Value) -> Decoded:
    base = b.add(ir.Constant(I64, 16), b.mul(s, ir.Constant(I64, 32)))
    qs = [_zext_bytes(b, p, b.add(base, ir.Constant(I64, 16 * k))) for k in range(2)]
    low = [_and(b, q, 15) for q in qs]
    high = [_shr(b, q, 4) for q in qs]
    yield from _k_chunk(b, ctx, s, low, high)


def step_q5_k(b: ir.IRBuilder, p: ir.Value, ctx, s: ir.Value) -> Decoded:
    base = b.add(ir.Constant(I64, 48), b.mul(s, ir.Constant(I64, 32)))
    qs = [_zext_bytes(b, p, b.add(base, ir.Constant(I64, 16 * k))) for k in range(2)]
    qh = [_zext_bytes(b, p, ir.Constant(I64, 16 + 16 * k)) for k in range(2)]
    shift = b.trunc(b.mul(s, ir.Constant(I64, 2)), I32)
    lo_bit = [_shl(b, _and(b, b.lshr(h, splat(b, shift)), 1), 4) for h in qh]
    hi_bit = [
        _shl(b, _and(b, b.lshr(h, splat(b, b.add(shift, ir.Constant(I32, 1)))), 1), 4) for h in qh
    ]
    low = [b.or_(_and(b, q, 15), hb) for q, hb in zip(qs, lo_bit)]
    high = [b.or_(_shr(b, q, 4), hb) for q, hb in zip(qs, hi_bit)]
    yield from _k_chunk(b, ctx, s, low, high)


def prepare_q6_k(b: ir.IRBuilder, p: ir.Value):
    return load_f16_as_f32(b, p, 208)


def step_q6_k(b: ir.IRBuilder, p: ir.Value, d: ir.Value, s: ir.Value) -> Decoded:
    """Step s (64 weights): half h = s // 2, lanes l = 16*(s % 2) .. +15 of each quarter."""
    h = b.lshr(s, ir.Constant(I64, 1))
    part = b.and_(s, ir.Constant(I64, 1))
    ql = b.add(b.mul(h, ir.Constant(I64, 64)), b.mul(part, ir.Constant(I64, 16)))
    ql_a = _zext_bytes(b, p, ql)
    ql_b = _zext_bytes(b, p, b.add(ql, ir.Constant(I64, 32)))
    qh = _zext_bytes(
        b,
        p,
        b.add(
            ir.Constant(I64, 128),
            b.add(b.mul(h, ir.Constant(I64, 32)), b.mul(part, ir.Constant(I64, 16))),
        ),
    )
    sc_base = b.add(ir.Constant(I64, 192), b.add(b.mul(h, ir.Constant(I64, 8)), part))
    at = b.add(b.mul(h, ir.Constant(I64, 128)), b.mul(part, ir.Constant(I64, 16)))
    quarters = (
        (_and(b, ql_a, 15), 0),
        (_and(b, ql_b, 15), 2),
        (_shr(b, ql_a, 4), 4),
        (_shr(b, ql_b, 4), 6),
    )
    for quarter, (low4, shift) in enumerate(quarters):
        q = _sub(b, b.or_(low4, _shl(b, _and(b, _shr(b, qh, shift), 3), 4)), 32)
        sc_at = b.add(sc_base, ir.Constant(I64, 2 * quarter))
        sc = b.sitofp(b.load(b.gep(p, [sc_at])), F32)
        weights = b.fmul(b.sitofp(q, VF32), splat(b, b.fmul(d, sc)))
        yield Group(b.add(at, ir.Constant(I64, 32 * quarter)), [weights])


def _one_step(decode: Callable[[ir.IRBuilder, ir.Value], Whole]) -> Step:
    """A step function for formats decoded whole (one step per block)."""

    def step(b: ir.IRBuilder, p: ir.Value, ctx: Any, s: ir.Value) -> Decoded:
        for at, qs, scale in decode(b, p):
            yield Group(ir.Constant(I64, at), qs, scale)

    return step


def _no_prepare(b: ir.IRBuilder, p: ir.Value) -> None:
    return None


@dataclass(frozen=True)
class KernelBlock:
    """How the kernel walks one format: ``steps`` IR-loop iterations per block of
    ``elems`` elements / ``nbytes`` bytes; ``prepare`` runs once per block (scales)."""

    elems: int
    nbytes: int
    steps: int
    prepare: Prepare
    step: Step
    scaled: bool  # groups carry a scale (True) or finished weights (False)
    mins: Callable[[Any], ir.Value] | None = None  # ctx -> float* to 8 per-sub-block -dmin*m
    prefetch_bytes: int = 0  # software prefetch this far ahead of each block (0: none)


def _block(
    t: GGMLType,
    per_kernel_block: int,
    steps: int,
    prepare: Prepare,
    step: Step,
    scaled: bool = False,
    mins: Callable[[Any], ir.Value] | None = None,
    prefetch_bytes: int = 0,
) -> KernelBlock:
    elems, nbytes = BLOCK_SIZES[t]
    k = per_kernel_block
    return KernelBlock(elems * k, nbytes * k, steps, prepare, step, scaled, mins, prefetch_bytes)


def _k_mins(ctx: Any) -> ir.Value:
    return ctx[1]


KERNEL_BLOCKS: dict[GGMLType, KernelBlock] = {
    GGMLType.F32: _block(GGMLType.F32, 16, 1, _no_prepare, _one_step(decode_f32)),
    GGMLType.F16: _block(GGMLType.F16, 16, 1, _no_prepare, _one_step(decode_f16)),
    GGMLType.BF16: _block(GGMLType.BF16, 16, 1, _no_prepare, _one_step(decode_bf16)),
    # Q8_0 decodes cheaply enough to wait on memory: prefetching 8 KiB ahead measured
    # 1.4-1.7x faster at n = 1; the 4-6 bit formats are compute-bound and lost ~10% to it.
    GGMLType.Q8_0: _block(
        GGMLType.Q8_0, 1, 1, _no_prepare, _one_step(decode_q8_0), True, prefetch_bytes=8192
    ),
    GGMLType.Q4_0: _block(GGMLType.Q4_0, 1, 1, _no_prepare, _one_step(decode_q4_0), True),
    GGMLType.Q5_0: _block(GGMLType.Q5_0, 1, 1, _no_prepare, _one_step(decode_q5_0), True),
    GGMLType.Q5_1: _block(GGMLType.Q5_1, 1, 1, _no_prepare, _one_step(decode_q5_1)),
    GGMLType.Q4_K: _block(GGMLType.Q4_K, 1, 4, _k_scales, step_q4_k, True, _k_mins),
    GGMLType.Q5_K: _block(GGMLType.Q5_K, 1, 4, _k_scales, step_q5_k, True, _k_mins),
    GGMLType.Q6_K: _block(GGMLType.Q6_K, 1, 4, prepare_q6_k, step_q6_k),
}
