"""The one n-input dequant MatVec kernel, specialised per (format, n inputs, rows per step).

``rows_dot(fmt, n, r, w, x, xsums, out, row0)`` is a Numba intrinsic whose IR loops over
the weight blocks of ``r`` consecutive rows starting at ``row0``; every block is read and
decoded once and multiplied into all ``n`` inputs. Each (row, input) pair owns its
accumulators (fixed lane layout: ``<16 x float>`` for finished weights, ``<8 x float>``
for scaled groups, ``<8 x float>`` for the min term), updated in block order and summed
by a fixed pairwise tree at the end. So the float operations behind ``out[i, row]`` are
the same whatever ``n``, ``r`` and the input's position in the group: results are
bitwise identical across input counts (speculative.md).

``make_driver(fmt, n, r, parallel)`` returns the driver (prange over row groups) of one
variant; all variants come from this one source (closure constants become literals).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from mtpdec.cpu.decoders import KERNEL_BLOCKS, Group, KernelBlock
from mtpdec.cpu.ir import (
    F32,
    I64,
    VF32,
    array_data,
    array_stride0,
    byte_ptr,
    fma,
    half_of,
    reduce_tree,
    row_pointers,
    splat,
    vec,
)
from mtpdec.quants.types import GGMLType

VF8 = vec(F32, 8)


CODEGEN_MODULES = (
    "decoders.py",
    "ir.py",
    "kernel.py",
    "idecoders.py",
    "idecoders_x8.py",
    "idecoders_words.py",
    "repack_words.py",
    "actquant_ir.py",
    "repack.py",
    "isa.py",
    "ikernel.py",
)


def _codegen_version() -> str:
    """Hash of the sources that generate the kernel IR.

    Numba's on-disk cache is invalidated only by changes to the file that defines the
    jitted function; the IR comes from all of CODEGEN_MODULES, so their hash is captured
    by every driver closure and thereby becomes part of the cache key.
    """
    digest = hashlib.sha256()
    for module in CODEGEN_MODULES:
        digest.update((Path(__file__).parent / module).read_bytes())
    return digest.hexdigest()[:16]


CODEGEN_VERSION = _codegen_version()
SUBBLOCK = 32  # elements per entry of the x sub-block sums (Q4_K/Q5_K min term)


def _i64(value: int) -> ir.Constant:
    return ir.Constant(I64, value)


def prefetch(b: ir.IRBuilder, ptrs: list[ir.Value]) -> None:
    """Software prefetch (read, keep in all cache levels) of each i8* address."""
    i32 = ir.IntType(32)
    fn = b.module.globals.get("llvm.prefetch.p0i8") or ir.Function(
        b.module,
        ir.FunctionType(ir.VoidType(), [ptrs[0].type, i32, i32, i32]),
        "llvm.prefetch.p0i8",
    )
    for p in ptrs:
        b.call(fn, [p, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])


def _slot_types(kb: KernelBlock) -> list[ir.Type]:
    """Accumulator vectors of one (row, input): main (+ min term)."""
    return [VF8 if kb.scaled else VF32] + ([VF8] if kb.mins else [])


def _add_group(b: ir.IRBuilder, g: Group, xs: list[ir.Value], acc: ir.Value) -> ir.Value:
    """Accumulate one group's weights times the matching x vectors into acc."""
    if g.scale is None:
        for q, xv in zip(g.qs, xs):
            acc = fma(b, q, xv, acc)
        return acc
    halves = [
        (half_of(b, q, h, 8), half_of(b, xv, h, 8)) for q, xv in zip(g.qs, xs) for h in (0, 1)
    ]
    partial = b.fmul(*halves[0])
    for q, xv in halves[1:]:
        partial = fma(b, q, xv, partial)
    return fma(b, splat(b, g.scale, 8), partial, acc)


@intrinsic
def rows_dot(typingctx, fmt, n, r, w, x, xsums, out, row0):
    """out[i, row0 + j] = dot(dequant(w[row0 + j]), x[i]) for i < n, j < r.

    fmt, n, r: integer literals (GGML type id, inputs, rows per step).
    w:     uint8[rows, row_bytes] C-contiguous weight bytes.
    x:     float32[>= n, cols] C-contiguous inputs.
    xsums: float32[>= n, cols // 32] sums of x per 32-element sub-block (read only by
           formats with a min term; any float32 2-D array otherwise).
    out:   float32[>= n, rows] C-contiguous results.
    """
    for lit in (fmt, n, r):
        if not isinstance(lit, types.IntegerLiteral):
            return None
    n_in, n_rows = n.literal_value, r.literal_value
    kb = KERNEL_BLOCKS[GGMLType(fmt.literal_value)]
    slot_types = _slot_types(kb)
    sig = types.void(fmt, n, r, w, x, xsums, out, row0)

    def codegen(context, b, signature, args):
        _, _, _, w_val, x_val, s_val, out_val, row0_val = args
        wty, xty, sty, outty = signature.args[3:7]
        i8p = ir.IntType(8).as_pointer()
        f32p = F32.as_pointer()
        w_data = b.bitcast(array_data(context, b, wty, w_val), i8p)
        out_data = b.bitcast(array_data(context, b, outty, out_val), f32p)
        row_bytes = array_stride0(context, b, wty, w_val)
        out_cols = b.sdiv(array_stride0(context, b, outty, out_val), _i64(4))
        nblocks = b.sdiv(row_bytes, _i64(kb.nbytes))
        row_ptrs = [
            byte_ptr(b, w_data, b.mul(b.add(row0_val, _i64(j)), row_bytes)) for j in range(n_rows)
        ]

        x_rows = row_pointers(context, b, xty, x_val, n_in, f32p)
        s_rows = row_pointers(context, b, sty, s_val, n_in, f32p)
        zeros = [
            [[ir.Constant(t, None) for t in slot_types] for _ in range(n_in)] for _ in range(n_rows)
        ]

        def phis(incoming, block):
            out = [[[b.phi(a.type) for a in slots] for slots in row] for row in incoming]
            add_incoming(out, incoming, block)
            return out

        def add_incoming(phi_nest, value_nest, block):
            for prow, vrow in zip(phi_nest, value_nest):
                for pslots, vslots in zip(prow, vrow):
                    for phi, value in zip(pslots, vslots):
                        phi.add_incoming(value, block)

        def accumulate(accs, blk_w, blk_x, ctxs, s):
            """One step of every row into every input's accumulators."""
            new = [[list(slots) for slots in row] for row in accs]
            for j in range(n_rows):
                for g in kb.step(b, blk_w[j], ctxs[j], s):
                    for i in range(n_in):
                        base = b.gep(blk_x[i], [g.at])
                        xs = [
                            b.load(
                                b.bitcast(b.gep(base, [_i64(16 * k)]), VF32.as_pointer()), align=4
                            )
                            for k in range(len(g.qs))
                        ]
                        new[j][i][0] = _add_group(b, g, xs, new[j][i][0])
            return new

        entry = b.block
        outer = b.append_basic_block("blocks")
        done = b.append_basic_block("reduce")
        b.cbranch(b.icmp_signed(">", nblocks, _i64(0)), outer, done)

        b.position_at_end(outer)
        blk = b.phi(I64, "blk")
        blk.add_incoming(_i64(0), entry)
        outer_phis = phis(zeros, entry)
        accs = [[list(slots) for slots in row] for row in outer_phis]
        blk_w = [byte_ptr(b, rp, b.mul(blk, _i64(kb.nbytes))) for rp in row_ptrs]
        blk_x = [b.gep(xr, [b.mul(blk, _i64(kb.elems))]) for xr in x_rows]
        ctxs = [kb.prepare(b, p) for p in blk_w]
        if kb.prefetch_bytes:
            prefetch(b, [byte_ptr(b, p, _i64(kb.prefetch_bytes)) for p in blk_w])
        if kb.mins is not None:  # -dmin*m per sub-block times the input's sub-block sums
            per_block = kb.elems // SUBBLOCK
            for j in range(n_rows):
                mins = b.load(b.bitcast(kb.mins(ctxs[j]), VF8.as_pointer()), align=4)
                for i in range(n_in):
                    sums_ptr = b.gep(s_rows[i], [b.mul(blk, _i64(per_block))])
                    sums = b.load(b.bitcast(sums_ptr, VF8.as_pointer()), align=4)
                    accs[j][i][1] = fma(b, mins, sums, accs[j][i][1])
        if kb.steps == 1:
            new = accumulate(accs, blk_w, blk_x, ctxs, _i64(0))
        else:
            before = b.block
            inner = b.append_basic_block("steps")
            b.branch(inner)
            b.position_at_end(inner)
            s = b.phi(I64, "step")
            s.add_incoming(_i64(0), before)
            step_accs = phis(accs, before)
            new = accumulate(step_accs, blk_w, blk_x, ctxs, s)
            s_next = b.add(s, _i64(1))
            add_incoming(step_accs, new, b.block)
            s.add_incoming(s_next, b.block)
            latch = b.append_basic_block("next_block")
            b.cbranch(b.icmp_signed("<", s_next, _i64(kb.steps)), inner, latch)
            b.position_at_end(latch)
        blk_next = b.add(blk, _i64(1))
        tail = b.block
        blk.add_incoming(blk_next, tail)
        add_incoming(outer_phis, new, tail)
        b.cbranch(b.icmp_signed("<", blk_next, nblocks), outer, done)

        b.position_at_end(done)
        final = phis(zeros, entry)
        add_incoming(final, new, tail)
        for j in range(n_rows):
            for i in range(n_in):
                total = reduce_tree(b, final[j][i][0])
                for extra in final[j][i][1:]:
                    total = b.fadd(total, reduce_tree(b, extra))
                idx = b.add(b.mul(_i64(i), out_cols), b.add(row0_val, _i64(j)))
                b.store(total, b.gep(out_data, [idx]))
        return context.get_dummy_value()

    return sig, codegen


def subblock_sums(x: np.ndarray) -> np.ndarray:
    """float32 (n, cols // 32): left-to-right sums of each 32-element slice of each row."""
    return _subblock_sums(x)


@njit(cache=True, nogil=True)
def _subblock_sums(x):
    n, cols = x.shape
    out = np.zeros((n, cols // SUBBLOCK), dtype=np.float32)
    for i in range(n):
        for sb in range(cols // SUBBLOCK):
            acc = np.float32(0.0)
            for k in range(SUBBLOCK):
                acc += x[i, sb * SUBBLOCK + k]
            out[i, sb] = acc
    return out


@functools.cache
def make_driver(fmt: int, n: int, r: int, parallel: bool = True):
    """The driver for one (format, n inputs, r rows per step) variant: parallel (prange
    over the worker threads) or serial in the calling thread (small matrices).

    ``driver(w, x, xsums, out)``: out[:n] = x[:n] @ dequant(w)^T; steps of r rows,
    leftover rows one at a time (same per-row operations, so the same bits either way).
    """

    code_version = (CODEGEN_VERSION, parallel)  # part of Numba's cache key (closure contents)

    @njit(parallel=parallel, cache=True, nogil=True)
    def driver(w, x, xsums, out):
        _ = code_version
        rows = w.shape[0]
        steps = rows // r
        for s in prange(steps):
            rows_dot(fmt, n, r, w, x, xsums, out, s * r)
        for row in range(steps * r, rows):
            rows_dot(fmt, n, 1, w, x, xsums, out, row)

    return driver
