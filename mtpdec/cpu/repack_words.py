"""Q6_K repacked in word order (the ``WORDS`` layout of ``mtpdec.cpu.repack``), block by
block in vector IR: the plain block's 6-bit values are decoded as the plain kernel does
(``decode_q6_k``), moved into word order by one byte shuffle and packed again into
nibbles and 2-bit tops. About 20 times faster than a scalar loop (a 27B-shape file holds
gigabytes of Q6_K, repacked at every load).
"""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from mtpdec.cpu.idecoders import _and, _shl, _shr, decode_q6_k
from mtpdec.cpu.ir import I8, I16, I32, I64, array_data, byte_ptr, const_vec, vec
from mtpdec.cpu.isa import concat
from mtpdec.cpu.kernel import CODEGEN_VERSION

Q6_K_BYTES = 210
# word order: byte 64 s + 4 j + t holds element 16 j + 4 s + t (s, t < 4, j < 16)
WORD_ORDER = [16 * ((k % 64) // 4) + 4 * (k // 64) + k % 4 for k in range(256)]


def _store(b: ir.IRBuilder, base: ir.Value, offset: int, value: ir.Value) -> None:
    ptr = b.bitcast(byte_ptr(b, base, offset), value.type.as_pointer())
    b.store(value, ptr, align=1)


def _copy(b: ir.IRBuilder, src: ir.Value, dst: ir.Value, offset: int, ty: ir.Type) -> None:
    ptr = b.bitcast(byte_ptr(b, src, offset), ty.as_pointer())
    _store(b, dst, offset, b.load(ptr, align=1))


@intrinsic
def _words_block(typingctx, src, dst, at):
    """dst[at : at + 210] = the plain Q6_K block src[at : at + 210] in word order
    (src, dst: 1-D uint8 arrays)."""
    sig = types.void(src, dst, at)

    def codegen(context, b, signature, args):
        src_val, dst_val, at_val = args
        i8p = I8.as_pointer()
        at64 = b.sext(at_val, I64) if at_val.type.width < 64 else at_val
        s = byte_ptr(b, b.bitcast(array_data(context, b, signature.args[0], src_val), i8p), at64)
        d = byte_ptr(b, b.bitcast(array_data(context, b, signature.args[1], dst_val), i8p), at64)
        values = concat(b, decode_q6_k(b, s).pieces)  # <256 x i8>, element order
        words = b.shuffle_vector(
            values, ir.Constant(values.type, ir.Undefined), const_vec(I32, WORD_ORDER)
        )
        p = [
            b.shuffle_vector(
                words,
                ir.Constant(words.type, ir.Undefined),
                const_vec(I32, list(range(64 * k, 64 * k + 64))),
            )
            for k in range(4)
        ]
        _store(b, d, 0, b.or_(_and(b, p[0], 15), _shl(b, p[1], 4)))
        _store(b, d, 64, b.or_(_and(b, p[2], 15), _shl(b, p[3], 4)))
        tops = [_shl(b, _shr(b, piece, 4), 2 * k) for k, piece in enumerate(p)]
        _store(b, d, 128, b.or_(b.or_(tops[0], tops[1]), b.or_(tops[2], tops[3])))
        _copy(b, s, d, 192, vec(I8, 16))  # scales
        _copy(b, s, d, 208, I16)  # d
        return context.get_dummy_value()

    return sig, codegen


@functools.cache
def _driver():
    code_version = CODEGEN_VERSION  # (the IR comes from other modules: see CODEGEN_VERSION)

    @njit(parallel=True, cache=True, nogil=True)
    def q6_k_words(raw, out):
        _ = code_version
        rows, row_bytes = raw.shape
        for r in prange(rows):
            src, dst = raw[r], out[r]
            for at in range(0, row_bytes, Q6_K_BYTES):
                _words_block(src, dst, at)

    return q6_k_words


def repack_q6_k_words(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (rows, n_blocks * 210) plain Q6_K -> (the same shape in word order, no
    leftover rows). Parallel over rows."""
    out = np.empty_like(raw)
    _driver()(raw, out)
    return out, raw[:0]
