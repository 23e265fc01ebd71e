"""Reference dequantizers: pure, vectorized numpy, one per supported block format.

Each takes ``blocks``: uint8 ``(nblocks, block_bytes)`` and returns float32
``(nblocks, block_elems)``. Layouts follow docs/quant-formats.md. Results equal
``gguf.quants.dequantize`` bit for bit; that depends on the float32 operation order,
which is spelled out per format (products of an fp16 scale and small integers are
exact in float32; the one rounding that matters is noted where it happens).
"""

from __future__ import annotations

import numpy as np

_NIBBLE_SHIFTS = np.array([0, 4], dtype=np.uint8)
_CRUMB_SHIFTS = np.array([0, 2, 4, 6], dtype=np.uint8)
_BIT_SHIFTS = np.arange(8, dtype=np.uint8)


def _f16(blocks: np.ndarray, start: int) -> np.ndarray:
    """fp16 field at byte ``start`` of each block -> float32 ``(nblocks, 1)``."""
    return blocks[:, start : start + 2].copy().view(np.float16).astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """uint8 ``(..., k)`` -> ``(..., 2k)``: all low nibbles, then all high nibbles."""
    q = (qs[..., None, :] >> _NIBBLE_SHIFTS[:, None]) & np.uint8(15)
    return q.reshape(*qs.shape[:-1], 2 * qs.shape[-1])


def _qh_bits32(blocks: np.ndarray, start: int) -> np.ndarray:
    """Little-endian u32 bit field at ``start`` -> uint8 ``(nblocks, 32)``, bit j at j."""
    return np.unpackbits(blocks[:, start : start + 4], axis=1, bitorder="little")


def dequant_f32(blocks: np.ndarray) -> np.ndarray:
    """``(n, 4)`` -> ``(n, 1)``."""
    return np.ascontiguousarray(blocks).view(np.float32).copy()


def dequant_f16(blocks: np.ndarray) -> np.ndarray:
    """``(n, 2)`` -> ``(n, 1)``."""
    return np.ascontiguousarray(blocks).view(np.float16).astype(np.float32)


def dequant_bf16(blocks: np.ndarray) -> np.ndarray:
    """``(n, 2)`` -> ``(n, 1)``: the 16 stored bits are the high half of a float32."""
    hi = np.ascontiguousarray(blocks).view(np.uint16).astype(np.uint32)
    return (hi << np.uint32(16)).view(np.float32)


def dequant_q8_0(blocks: np.ndarray) -> np.ndarray:
    """``(n, 34)`` -> ``(n, 32)``: ``d * qs``."""
    d = _f16(blocks, 0)
    qs = blocks[:, 2:34].view(np.int8).astype(np.float32)
    return d * qs


def dequant_q4_0(blocks: np.ndarray) -> np.ndarray:
    """``(n, 18)`` -> ``(n, 32)``: ``d * (q - 8)``."""
    d = _f16(blocks, 0)
    q = _nibbles(blocks[:, 2:18]).astype(np.float32) - np.float32(8)
    return d * q


def dequant_q5_0(blocks: np.ndarray) -> np.ndarray:
    """``(n, 22)`` -> ``(n, 32)``: ``d * (q - 16)``, bit 4 of element j = bit j of qh."""
    d = _f16(blocks, 0)
    q = _nibbles(blocks[:, 6:22]) | (_qh_bits32(blocks, 2) << np.uint8(4))
    return d * (q.astype(np.float32) - np.float32(16))


def dequant_q5_1(blocks: np.ndarray) -> np.ndarray:
    """``(n, 24)`` -> ``(n, 32)``: ``(d * q) + m`` (the sum is the one rounding)."""
    d = _f16(blocks, 0)
    m = _f16(blocks, 2)
    q = _nibbles(blocks[:, 8:24]) | (_qh_bits32(blocks, 4) << np.uint8(4))
    return d * q.astype(np.float32) + m


def k_scales_mins(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K 12 scale bytes ``(n, 12)`` -> 6-bit (sc, m), each uint8 ``(n, 8)``."""
    lo, mid, hi = scales[:, 0:4], scales[:, 4:8], scales[:, 8:12]
    sc = np.concatenate([lo & 63, (hi & 15) | ((lo >> 6) << 4)], axis=1)
    m = np.concatenate([mid & 63, (hi >> 4) | ((mid >> 6) << 4)], axis=1)
    return sc, m


def _k_affine(blocks: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``(d*sc) * q - (dmin*m)`` per sub-block; q is ``(n, 8, 32)`` -> ``(n, 256)``."""
    n = blocks.shape[0]
    d = _f16(blocks, 0)
    dmin = _f16(blocks, 2)
    sc, m = k_scales_mins(blocks[:, 4:16])
    scale = (d * sc.astype(np.float32))[:, :, None]
    offset = (dmin * m.astype(np.float32))[:, :, None]
    return (scale * q.astype(np.float32) - offset).reshape(n, 256)


def _k_nibbles(qs: np.ndarray) -> np.ndarray:
    """Q4_K/Q5_K ``qs`` ``(n, 128)`` -> ``(n, 8, 32)``: chunk c low = sub 2c, high = 2c+1."""
    return _nibbles(qs.reshape(-1, 4, 32)).reshape(-1, 8, 32)


def dequant_q4_k(blocks: np.ndarray) -> np.ndarray:
    """``(n, 144)`` -> ``(n, 256)``: ``d*sc*nibble - dmin*m`` per sub-block of 32."""
    return _k_affine(blocks, _k_nibbles(blocks[:, 16:144]))


def dequant_q5_k(blocks: np.ndarray) -> np.ndarray:
    """``(n, 176)`` -> ``(n, 256)``: Q4_K plus 16 when bit j of ``qh[l]`` is set (sub j)."""
    high = (blocks[:, None, 16:48] >> _BIT_SHIFTS[:, None]) & np.uint8(1)  # (n, 8, 32)
    q = _k_nibbles(blocks[:, 48:176]) | (high << np.uint8(4))
    return _k_affine(blocks, q)


def dequant_q6_k(blocks: np.ndarray) -> np.ndarray:
    """``(n, 210)`` -> ``(n, 256)``: ``(d*scale) * (q - 32)``, one int8 scale per 16."""
    n = blocks.shape[0]
    ql = blocks[:, 0:128].reshape(n, 2, 64)
    qh = blocks[:, 128:192].reshape(n, 2, 32)
    scales = blocks[:, 192:208].view(np.int8).astype(np.float32)
    d = _f16(blocks, 208)
    low = _nibbles(ql)  # (n, 2, 128): ql[0:64] low nibbles, then ql[0:64] high nibbles
    high = (qh[:, :, None, :] >> _CRUMB_SHIFTS[:, None]) & np.uint8(3)  # (n, 2, 4, 32)
    q = (low | (high.reshape(n, 2, 128) << np.uint8(4))).astype(np.float32) - np.float32(32)
    scale = (d * scales)[:, :, None]  # (n, 16, 1)
    return (scale * q.reshape(n, 16, 16)).reshape(n, 256)
