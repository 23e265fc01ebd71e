"""Weights repacked at load: groups of 8 interleaved rows (Q4_K, Q8_0, Q5_0, Q4_0), or
Q6_K blocks in word order.

The integer kernel for this layout (``mtpdec.cpu.idecoders_x8``) multiplies one 64-byte
vector of 8 rows x 8 weight bytes with an input's 8 activation bytes broadcast to every
row, so the work that does not scale with rows (activation loads, packing, the float
epilogue) is shared by 8 rows. Same bytes per weight except the scales, which are stored
unpacked (16 bytes per block instead of 12: +2.8%).

Group-block (8 rows x one 256-weight block, GROUP_BLOCK_BYTES = 1184):

    offset   0: d    fp16 [8 rows]
    offset  16: dmin fp16 [8 rows]
    offset  32: sc   u8 [8 rows][8 sub-blocks]   (6-bit values)
    offset  96: m    u8 [8 rows][8 sub-blocks]
    offset 160: qs   u8 [c = 4][chunk = 4][8 rows][8 bytes]: qs[32c + 8 chunk + byte] of
                each row (low nibbles: sub-block 2c, high nibbles: sub-block 2c + 1)

A matrix of ``rows`` rows becomes (rows // 8, n_blocks * 1184) bytes; the last rows % 8
rows stay in the plain layout.

Q6_K in word order (``WORDS``; each row by itself, same 210 bytes per block): let u_e be
the block's 6-bit value of element e (0..63, weight = d * sc[e // 16] * (u_e - 32)), and
piece s (s < 4) the 64 values whose byte 4j + t is u of element 16j + 4s + t (the order
of ``Q8_K_WORDS`` activations):

    offset   0: ql [h = 2][64]: low nibble: low 4 bits of piece 2h's byte; high nibble:
                piece 2h + 1's
    offset 128: qh [64]: bits 2s..2s+1 of byte b: the top 2 bits of piece s's byte b
    offset 192: sc int8 [16], offset 208: d fp16 (as in the plain block)

(written by ``mtpdec.cpu.repack_words``)

32-weight formats (one scale per row and block; every group-block has the same bytes as
8 plain blocks):

    Q8_0 (272 bytes): d fp16 [8 rows] | qs [chunk = 4][8 rows][8 bytes] (qs[8 chunk + byte])
    Q4_0 (144 bytes): d fp16 [8 rows] | qs [chunk = 2][8 rows][8 bytes]: low nibbles are
                      elements 8 chunk + byte, high nibbles 16 + 8 chunk + byte
    Q5_0 (176 bytes): d fp16 [8 rows] | qh [byte = 4][8 rows] | qs as Q4_0 (bit j of a
                      row's qh is the fifth bit of element j)
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange

from mtpdec.cpu.repack_words import repack_q6_k_words
from mtpdec.quants.types import GGMLType

GROUP = 8
BLOCK_BYTES = 144  # a plain Q4_K block
GROUP_BLOCK_BYTES = 1184
D_AT, DMIN_AT, SC_AT, M_AT, QS_AT = 0, 16, 32, 96, 160
SMALL_BLOCK_BYTES = {GGMLType.Q8_0: 34, GGMLType.Q4_0: 18, GGMLType.Q5_0: 22}


@functools.cache
def _source_map(t: GGMLType) -> tuple[np.ndarray, np.ndarray]:
    """For each byte of a group-block: the row (0..7) and byte of the plain block it is
    copied from, or row -1 where it is computed (Q4_K's unpacked scales). The layouts of
    the module docstring, written out."""
    gb = GROUP_BLOCK_BYTES if t == GGMLType.Q4_K else GROUP * SMALL_BLOCK_BYTES[t]
    row, byte = np.full(gb, -1, dtype=np.int64), np.zeros(gb, dtype=np.int64)
    o = np.arange(gb)
    row[:16], byte[:16] = o[:16] // 2, o[:16] % 2  # d of every format
    if t == GGMLType.Q4_K:
        row[16:32], byte[16:32] = (o[16:32] - 16) // 2, 2 + (o[16:32] - 16) % 2  # dmin
        q = o[QS_AT:] - QS_AT  # [c][chunk][row][byte]
        row[QS_AT:] = (q // 8) % 8
        byte[QS_AT:] = 16 + 32 * (q // 256) + 8 * ((q // 64) % 4) + q % 8
        return row, byte
    qs_at, first = {GGMLType.Q8_0: (16, 2), GGMLType.Q4_0: (16, 2), GGMLType.Q5_0: (48, 6)}[t]
    if t == GGMLType.Q5_0:  # qh as [byte][row]
        h = o[16:48] - 16
        row[16:48], byte[16:48] = h % 8, 2 + h // 8
    q = o[qs_at:] - qs_at  # [chunk][row][byte]
    row[qs_at:], byte[qs_at:] = (q // 8) % 8, first + 8 * (q // 64) + q % 8
    return row, byte


@functools.cache
def _runs(t: GGMLType) -> np.ndarray:
    """int64 (n, 4) runs of ``_source_map``: (group-block offset, row, byte, length) of
    consecutive bytes copied from consecutive bytes of one row, at most 8 long."""
    row, byte = _source_map(t)
    runs = []
    for o in range(len(row)):
        if row[o] < 0:
            continue
        last = runs[-1] if runs else None
        joins = last and last[0] + last[3] == o and last[1] == row[o]
        if joins and last[2] + last[3] == byte[o] and last[3] < 8:
            last[3] += 1
        else:
            runs.append([o, row[o], byte[o], 1])
    return np.array(runs, dtype=np.int64)


@njit(parallel=True, cache=True, nogil=True, boundscheck=False)
def _gather(raw, block_bytes, gb, runs, out):  # pragma: no cover - compiled
    """For every group g, block j and run (o, r, b, n): out[g, j*gb + o : +n] =
    raw[8g + r, j*block_bytes + b : +n]. Runs are 2 or 8 bytes: fixed-length copies."""
    groups = out.shape[0]
    nblk = out.shape[1] // gb
    for g in prange(groups):
        dst = out[g]
        for j in range(nblk):
            d0, s0 = j * gb, j * block_bytes
            for k in range(runs.shape[0]):
                src = raw[GROUP * g + runs[k, 1]]
                o, b = d0 + runs[k, 0], s0 + runs[k, 2]
                if runs[k, 3] == 8:
                    for i in range(8):
                        dst[o + i] = src[b + i]
                else:
                    for i in range(runs[k, 3]):
                        dst[o + i] = src[b + i]


@njit(parallel=True, cache=True, nogil=True)
def _q4_k_scales(raw, out):  # pragma: no cover - compiled
    """The 6-bit scales and mins of each row and block (quant-formats.md, Q4_K) into the
    group-blocks' sc and m fields."""
    groups = out.shape[0]
    nblk = out.shape[1] // GROUP_BLOCK_BYTES
    for g in prange(groups):
        for j in range(nblk):
            at = j * GROUP_BLOCK_BYTES
            for r in range(GROUP):
                q = raw[GROUP * g + r, j * BLOCK_BYTES + 4 : j * BLOCK_BYTES + 16]
                for k in range(8):
                    if k < 4:
                        sc, m = q[k] & 63, q[k + 4] & 63
                    else:
                        sc = (q[k + 4] & 15) | ((q[k - 4] >> 6) << 4)
                        m = (q[k + 4] >> 4) | ((q[k] >> 6) << 4)
                    out[g, at + SC_AT + 8 * r + k] = sc
                    out[g, at + M_AT + 8 * r + k] = m


def repack(raw: np.ndarray, t: GGMLType) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (rows, n_blocks * block bytes) plain blocks of type t -> (interleaved groups
    uint8 (rows // 8, n_blocks * group-block bytes), the leftover rows % 8 rows in the plain
    layout). Parallel over groups."""
    block = BLOCK_BYTES if t == GGMLType.Q4_K else SMALL_BLOCK_BYTES[t]
    rows, row_bytes = raw.shape
    groups, nblk = rows // GROUP, row_bytes // block
    gb = len(_source_map(t)[0])
    out = np.empty((groups, nblk * gb), dtype=np.uint8)
    if groups:
        _gather(raw, block, gb, _runs(t), out)
        if t == GGMLType.Q4_K:
            _q4_k_scales(raw, out)
    return out, np.ascontiguousarray(raw[groups * GROUP :])


# types repacked in q8 mode, and how
REPACKERS = {
    **{
        t: functools.partial(repack, t=t)
        for t in (GGMLType.Q4_K, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q5_0)
    },
    GGMLType.Q6_K: repack_q6_k_words,
}
