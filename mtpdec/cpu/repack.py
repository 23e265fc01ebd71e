"""Weights repacked at load into groups of 8 interleaved rows (Q4_K, Q8_0, Q5_0, Q4_0).

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

from mtpdec.quants.reference import k_scales_mins
from mtpdec.quants.types import GGMLType

GROUP = 8
BLOCK_BYTES = 144  # a plain Q4_K block
GROUP_BLOCK_BYTES = 1184
D_AT, DMIN_AT, SC_AT, M_AT, QS_AT = 0, 16, 32, 96, 160


def repack_q4_k(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (rows, n_blocks * 144) plain Q4_K -> (interleaved groups uint8
    (rows // 8, n_blocks * 1184), the leftover rows uint8 (rows % 8, n_blocks * 144))."""
    rows, row_bytes = raw.shape
    nblk = row_bytes // BLOCK_BYTES
    groups = rows // GROUP
    b = raw[: groups * GROUP].reshape(groups, GROUP, nblk, BLOCK_BYTES)
    out = np.empty((groups, nblk, GROUP_BLOCK_BYTES), dtype=np.uint8)

    def by_row(a: np.ndarray, width: int) -> np.ndarray:  # (g, row, blk, w) -> (g, blk, row*w)
        return a.transpose(0, 2, 1, 3).reshape(groups, nblk, GROUP * width)

    out[..., D_AT:DMIN_AT] = by_row(b[..., 0:2], 2)
    out[..., DMIN_AT:SC_AT] = by_row(b[..., 2:4], 2)
    sc, m = k_scales_mins(b[..., 4:16].reshape(-1, 12))
    out[..., SC_AT:M_AT] = by_row(sc.reshape(groups, GROUP, nblk, 8), 8)
    out[..., M_AT:QS_AT] = by_row(m.reshape(groups, GROUP, nblk, 8), 8)
    qs = b[..., 16:].reshape(groups, GROUP, nblk, 4, 4, 8)  # row, blk, c, chunk, byte
    out[..., QS_AT:] = qs.transpose(0, 2, 3, 4, 1, 5).reshape(groups, nblk, 1024)
    tail = np.ascontiguousarray(raw[groups * GROUP :])
    return out.reshape(groups, nblk * GROUP_BLOCK_BYTES), tail


def _small_groups(raw: np.ndarray, t: GGMLType) -> tuple[np.ndarray, np.ndarray, int, int]:
    block = {GGMLType.Q8_0: 34, GGMLType.Q4_0: 18, GGMLType.Q5_0: 22}[t]
    rows, row_bytes = raw.shape
    nblk, groups = row_bytes // block, rows // GROUP
    b = raw[: groups * GROUP].reshape(groups, GROUP, nblk, block).transpose(0, 2, 1, 3)
    return b, np.ascontiguousarray(raw[groups * GROUP :]), groups, nblk  # b: (g, blk, row, w)


def _chunks(qs: np.ndarray) -> np.ndarray:
    """(g, blk, row, 8 * c) -> (g, blk, c * 64): [chunk][row][8 bytes]."""
    g, nblk, rows, width = qs.shape
    return qs.reshape(g, nblk, rows, width // 8, 8).transpose(0, 1, 3, 2, 4).reshape(g, nblk, -1)


def repack_small(raw: np.ndarray, t: GGMLType) -> tuple[np.ndarray, np.ndarray]:
    """Q8_0 / Q4_0 / Q5_0 uint8 (rows, row_bytes) -> (interleaved groups uint8
    (rows // 8, n_blocks * 8 * block bytes), the leftover rows in the plain layout)."""
    b, tail, groups, nblk = _small_groups(raw, t)
    d = b[..., 0:2].reshape(groups, nblk, 16)
    if t == GGMLType.Q8_0:
        parts = [d, _chunks(b[..., 2:34])]
    elif t == GGMLType.Q4_0:
        parts = [d, _chunks(b[..., 2:18])]
    else:  # Q5_0: qh as [byte][row]
        qh = b[..., 2:6].transpose(0, 1, 3, 2).reshape(groups, nblk, 32)
        parts = [d, qh, _chunks(b[..., 6:22])]
    return np.concatenate(parts, axis=2).reshape(groups, -1), tail


# types repacked in q8 mode (Q6_K was tried: its 6-bit sums allow one pack per two
# vpdpbusd instead of eight, and the interleaved kernel only matched the plain one)
REPACKERS = {
    GGMLType.Q4_K: repack_q4_k,
    **{
        t: functools.partial(repack_small, t=t)
        for t in (GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q5_0)
    },
}
