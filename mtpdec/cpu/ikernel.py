"""The n-input integer dot MatVec kernel, specialised per (format, inputs, rows per step, path).

``rows_idot(fmt, n, r, path, w, q, d, sums, out, row0)`` is a Numba intrinsic whose IR
loops over the weight blocks of ``r`` consecutive rows from ``row0``; each block is read
and decoded once and multiplied into all ``n`` inputs' 8-bit rows by the format's
``IntFormat.block`` (``mtpdec.cpu.idecoders``). Each (row, input) pair owns its float
accumulators, updated in block order and summed by a fixed tree at the end, so the bits
of ``out[i, row]`` do not depend on n, r, the input's place in the group or the path.

``make_idriver(fmt, g, n, path, parallel)`` returns the driver (prange over units).
"""

from __future__ import annotations

import functools

from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from mtpdec.cpu import idecoders_words, idecoders_x8  # noqa: F401  (register the layouts)
from mtpdec.cpu.idecoders import INT_FORMATS, InputBlock
from mtpdec.cpu.ir import (
    F32,
    I8,
    I16,
    I64,
    array_data,
    array_stride0,
    byte_ptr,
    reduce_tree,
    row_pointers,
)
from mtpdec.cpu.isa import PATHS
from mtpdec.cpu.kernel import CODEGEN_VERSION, prefetch
from mtpdec.quants.types import GGMLType

# Every cache line of each row's block is prefetched this far ahead of the block being
# computed. The hardware prefetchers alone keep a stream at the read bandwidth only while
# the loop is light: at 4-8 inputs a 2304-byte Q4_K group-block takes long enough that
# too few lines were in flight (AMD EPYC / Zen 5, avx512vnni, 2 threads, 64 MiB matrix:
# Q4_K n = 8 4.6 -> 2.4 ms, n = 4 2.2 -> 1.1 ms; the avx2 path alike). 6-18 KiB measured
# alike; lines past the matrix's end are harmless (a prefetch never faults).
PREFETCH_AHEAD = 12 << 10
CACHE_LINE = 64


def _i64(value: int) -> ir.Constant:
    return ir.Constant(I64, value)


def _total(b: ir.IRBuilder, accs: list[ir.Value]) -> ir.Value:
    """Sum of every accumulator's lanes, in a fixed order."""
    total = None
    for acc in accs:
        part = reduce_tree(b, acc) if isinstance(acc.type, ir.VectorType) else acc
        total = part if total is None else b.fadd(total, part)
    return total


@intrinsic
def rows_idot(typingctx, fmt, g, n, r, path, w, q, d, sums, dsums, out, row0):
    """out[i, (row0 + j) * U + u] = dot(weight row u of unit row0 + j, the 8-bit input i)
    for i < n, j < r, u < U (the layout's unit_rows; 1 but for interleaved groups).

    fmt, g, n, r, path: integer literals (GGML type id, layout (``INT_FORMATS`` key),
          inputs, units per step, index in PATHS).
    w:    uint8[units, unit_bytes] C-contiguous weight bytes.
    q:    int8[>= n, cols] the inputs' 8-bit values (``QuantizedRows.q``).
    d:    float32[>= n, cols // act block] their scales; sums: int16[>= n, ...] their
          integer sums, dsums: float32 the scaled sums (``QuantizedRows``).
    out:  float32[>= n, units * U] C-contiguous results.
    """
    for lit in (fmt, g, n, r, path):
        if not isinstance(lit, types.IntegerLiteral):
            return None
    n_in, n_rows = n.literal_value, r.literal_value
    path_name = PATHS[path.literal_value]
    fm = INT_FORMATS[GGMLType(fmt.literal_value), g.literal_value]
    per_block_sums = fm.elems // fm.act.sum_span
    per_block_scales = fm.elems // fm.act.block
    unit = fm.unit_rows
    sig = types.void(fmt, g, n, r, path, w, q, d, sums, dsums, out, row0)

    def codegen(context, b, signature, args):
        w_val, q_val, d_val, i_val, s_val, out_val, row0_val = args[5:]
        wty, qty, dty, ity, sty, outty = signature.args[5:11]
        i8p, i16p, f32p = I8.as_pointer(), I16.as_pointer(), F32.as_pointer()
        w_data = b.bitcast(array_data(context, b, wty, w_val), i8p)
        out_data = b.bitcast(array_data(context, b, outty, out_val), f32p)
        row_bytes = array_stride0(context, b, wty, w_val)
        out_cols = b.sdiv(array_stride0(context, b, outty, out_val), _i64(4))
        nblocks = b.sdiv(row_bytes, _i64(fm.nbytes))
        row_ptrs = [
            byte_ptr(b, w_data, b.mul(b.add(row0_val, _i64(j)), row_bytes)) for j in range(n_rows)
        ]

        def rows_of(arrty, arr, ptr_ty):
            return row_pointers(context, b, arrty, arr, n_in, ptr_ty)

        q_rows, d_rows, i_rows, s_rows = (
            rows_of(qty, q_val, i8p),
            rows_of(dty, d_val, f32p),
            rows_of(ity, i_val, i16p),
            rows_of(sty, s_val, f32p),
        )
        zeros = [[[ir.Constant(t, None) for t in fm.acc_types] for _ in range(n_in)]] * n_rows

        entry = b.block
        loop = b.append_basic_block("blocks")
        done = b.append_basic_block("reduce")
        b.cbranch(b.icmp_signed(">", nblocks, _i64(0)), loop, done)

        b.position_at_end(loop)
        blk = b.phi(I64, "blk")
        blk.add_incoming(_i64(0), entry)
        phis = [[[b.phi(t) for t in fm.acc_types] for _ in range(n_in)] for _ in range(n_rows)]
        for prow, zrow in zip(phis, zeros):
            for pin, zin in zip(prow, zrow):
                for phi, z in zip(pin, zin):
                    phi.add_incoming(z, entry)
        inputs = [
            InputBlock(
                b.gep(q_rows[i], [b.mul(blk, _i64(fm.elems))]),
                b.gep(d_rows[i], [b.mul(blk, _i64(per_block_scales))]),
                b.gep(i_rows[i], [b.mul(blk, _i64(per_block_sums))]),
                b.gep(s_rows[i], [b.mul(blk, _i64(per_block_sums))]),
            )
            for i in range(n_in)
        ]
        blk_w = [byte_ptr(b, rp, b.mul(blk, _i64(fm.nbytes))) for rp in row_ptrs]
        lines = range(PREFETCH_AHEAD, PREFETCH_AHEAD + fm.nbytes, CACHE_LINE)
        prefetch(b, [byte_ptr(b, p, _i64(at)) for p in blk_w for at in lines])
        new = [fm.block(b, path_name, p, inputs, phis[j]) for j, p in enumerate(blk_w)]
        tail = b.block
        blk_next = b.add(blk, _i64(1))
        blk.add_incoming(blk_next, tail)
        for prow, nrow in zip(phis, new):
            for pin, nin in zip(prow, nrow):
                for phi, v in zip(pin, nin):
                    phi.add_incoming(v, tail)
        b.cbranch(b.icmp_signed("<", blk_next, nblocks), loop, done)

        b.position_at_end(done)
        finals = []
        for j in range(n_rows):
            for i in range(n_in):
                row_final = []
                for t, z, v in zip(fm.acc_types, zeros[j][i], new[j][i]):
                    phi = b.phi(t)
                    phi.add_incoming(z, entry)
                    phi.add_incoming(v, tail)
                    row_final.append(phi)
                finals.append((j, i, row_final))
        for j, i, final in finals:
            values = fm.outputs(b, final) if fm.outputs else [_total(b, final)]
            first = b.mul(b.add(row0_val, _i64(j)), _i64(unit))
            for u, value in enumerate(values):
                idx = b.add(b.mul(_i64(i), out_cols), b.add(first, _i64(u)))
                b.store(value, b.gep(out_data, [idx]))
        return context.get_dummy_value()

    return sig, codegen


@functools.cache
def make_idriver(fmt: int, g: int, n: int, path: str, parallel: bool = True):
    """The driver of one (format, layout, n inputs, path) variant: parallel (prange over
    the worker threads), or serial in the calling thread (for small matrices, where a
    parallel launch costs more than the work).

    ``driver(w, q, d, sums, dsums, out)``: out[:n] = the n 8-bit inputs times
    dequant(w)^T, one unit per step (two per step for one input lost 4-8% of decode once
    the kernels prefetch; the same bits per row, serial or parallel).
    """
    code_version = (CODEGEN_VERSION, parallel)  # part of Numba's cache key (closure contents)
    path_id = PATHS.index(path)

    @njit(parallel=parallel, cache=True, nogil=True)
    def driver(w, q, d, sums, dsums, out):
        _ = code_version
        for unit in prange(w.shape[0]):
            rows_idot(fmt, g, n, 1, path_id, w, q, d, sums, dsums, out, unit)

    return driver
