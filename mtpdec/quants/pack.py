"""Packers (float32 -> blocks) and fast random valid blocks, for synthetic models and tests.

Packers take float32 ``(nblocks, block_elems)`` and return uint8 ``(nblocks, block_bytes)``
in the layouts of docs/quant-formats.md. Scaling is plain absmax (symmetric formats) or
min/max (Q5_1, K formats); fp16 scales are rounded up (mins down) so that the block's
range stays covered and the round-trip error is at most about half a quant step.
"""

from __future__ import annotations

import numpy as np

from mtpdec.errors import MtpdecError
from mtpdec.quants.types import BLOCK_SIZES, GGMLType
from mtpdec.quants.types import ggml_type as ggml_type_of

_F16_MAX = float(np.finfo(np.float16).max)


def _f16_up(x: np.ndarray) -> np.ndarray:
    """Smallest fp16 >= x (x >= 0, float32) as float16 (saturates at the fp16 max)."""
    x = np.minimum(np.asarray(x, dtype=np.float32), np.float32(_F16_MAX))
    h = x.astype(np.float16)
    return np.where(h.astype(np.float32) < x, np.nextafter(h, np.float16(np.inf)), h)


def _f16_down(x: np.ndarray) -> np.ndarray:
    """Largest fp16 <= x (float32, within fp16 range) as float16."""
    h = np.asarray(x, dtype=np.float32).astype(np.float16)
    return np.where(h.astype(np.float32) > x, np.nextafter(h, np.float16(-np.inf)), h)


def _f16_bytes(h: np.ndarray) -> np.ndarray:
    """float16 ``(n,)`` or ``(n, 1)`` -> uint8 ``(n, 2)``."""
    return np.ascontiguousarray(h, dtype=np.float16).reshape(-1, 1).view(np.uint8)


def _inverse(step: np.ndarray) -> np.ndarray:
    """1/step in float32, 0 where step is 0."""
    step = step.astype(np.float32)
    with np.errstate(divide="ignore"):
        return np.where(step == 0, np.float32(0), np.float32(1) / step)


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """uint8 ``(..., 2k)`` of values < 16 -> ``(..., k)``: first half low, second half high."""
    k = q.shape[-1] // 2
    return q[..., :k] | (q[..., k:] << np.uint8(4))


def _qh_bytes32(q: np.ndarray) -> np.ndarray:
    """Bit 4 of each of 32 quants ``(n, 32)`` -> little-endian u32 bit field ``(n, 4)``."""
    return np.packbits(q >> np.uint8(4), axis=1, bitorder="little")


def pack_f32(x: np.ndarray) -> np.ndarray:
    """``(n, 1)`` -> ``(n, 4)``."""
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint8).reshape(-1, 4)


def pack_f16(x: np.ndarray) -> np.ndarray:
    """``(n, 1)`` -> ``(n, 2)`` (IEEE round to nearest even; overflow gives inf)."""
    return np.ascontiguousarray(x, dtype=np.float32).astype(np.float16).view(np.uint8)


def pack_bf16(x: np.ndarray) -> np.ndarray:
    """``(n, 1)`` -> ``(n, 2)``: float32 rounded to nearest even on the high 16 bits."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32)
    hi = (u >> np.uint32(16)) & np.uint32(1)
    hi += np.uint32(0x7FFF)
    hi += u  # only NaN inputs can wrap around; they are replaced below
    hi >>= np.uint32(16)
    nan = np.isnan(x)
    if nan.any():
        hi[nan] = (u[nan] >> np.uint32(16)) | np.uint32(0x40)  # quiet NaN, sign kept
    return hi.astype(np.uint16).view(np.uint8)


def _pack_symmetric(x: np.ndarray, qmax: int) -> tuple[np.ndarray, np.ndarray]:
    """absmax scaling: (fp16 d bytes ``(n, 2)``, int quants in [-qmax, qmax] ``(n, k)``)."""
    x = np.asarray(x, dtype=np.float32)
    d = _f16_up(np.abs(x).max(axis=1, keepdims=True) / np.float32(qmax))
    q = np.clip(np.rint(x * _inverse(d)), -qmax, qmax).astype(np.int16)
    return _f16_bytes(d), q


def pack_q8_0(x: np.ndarray) -> np.ndarray:
    """``(n, 32)`` -> ``(n, 34)``."""
    d, q = _pack_symmetric(x, 127)
    return np.concatenate([d, q.astype(np.int8).view(np.uint8)], axis=1)


def pack_q4_0(x: np.ndarray) -> np.ndarray:
    """``(n, 32)`` -> ``(n, 18)``; quants use -7..7 of the -8..7 range."""
    d, q = _pack_symmetric(x, 7)
    return np.concatenate([d, _pack_nibbles((q + 8).astype(np.uint8))], axis=1)


def pack_q5_0(x: np.ndarray) -> np.ndarray:
    """``(n, 32)`` -> ``(n, 22)``; quants use -15..15 of the -16..15 range."""
    d, q = _pack_symmetric(x, 15)
    u = (q + 16).astype(np.uint8)
    return np.concatenate([d, _qh_bytes32(u), _pack_nibbles(u & np.uint8(15))], axis=1)


def pack_q5_1(x: np.ndarray) -> np.ndarray:
    """``(n, 32)`` -> ``(n, 24)``: ``m`` = block min (rounded down), ``d`` = range / 31."""
    x = np.asarray(x, dtype=np.float32)
    m = _f16_down(x.min(axis=1, keepdims=True))
    shifted = x - m.astype(np.float32)
    d = _f16_up(shifted.max(axis=1, keepdims=True) / np.float32(31))
    u = np.clip(np.rint(shifted * _inverse(d)), 0, 31).astype(np.uint8)
    parts = [_f16_bytes(d), _f16_bytes(m), _qh_bytes32(u), _pack_nibbles(u & np.uint8(15))]
    return np.concatenate(parts, axis=1)


def _k_scale_bytes(sc: np.ndarray, m: np.ndarray) -> np.ndarray:
    """6-bit scales and mins, uint8 ``(n, 8)`` each -> the 12 packed bytes ``(n, 12)``."""
    lo = sc[:, :4] | ((sc[:, 4:] >> 4) << 6)
    mid = m[:, :4] | ((m[:, 4:] >> 4) << 6)
    hi = (sc[:, 4:] & np.uint8(15)) | ((m[:, 4:] & np.uint8(15)) << 4)
    return np.concatenate([lo, mid, hi], axis=1)


def _k_affine(x: np.ndarray, levels: int) -> tuple[np.ndarray, ...]:
    """Q4_K/Q5_K scaling of ``(n, 256)``: (d, dmin fp16 ``(n, 1)``, sc, m ``(n, 8)``,
    quants ``(n, 8, 32)`` in 0..levels). value = d*sc*q - dmin*m, with m >= 0."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, 8, 32)
    neg_min = np.maximum(-x.min(axis=2), np.float32(0))  # (n, 8)
    dmin = _f16_up(neg_min.max(axis=1, keepdims=True) / np.float32(63))
    m = np.clip(np.ceil(neg_min * _inverse(dmin)), 0, 63)
    offset = dmin.astype(np.float32) * m.astype(np.float32)
    span = np.maximum(x.max(axis=2) + offset, np.float32(0)) / np.float32(levels)
    d = _f16_up(span.max(axis=1, keepdims=True) / np.float32(63))
    sc = np.clip(np.ceil(span * _inverse(d)), 0, 63)
    step = d.astype(np.float32) * sc.astype(np.float32)
    q = np.rint((x + offset[:, :, None]) * _inverse(step)[:, :, None])
    q = np.clip(q, 0, levels).astype(np.uint8)
    return d, dmin, sc.astype(np.uint8), m.astype(np.uint8), q


def pack_q4_k(x: np.ndarray) -> np.ndarray:
    """``(n, 256)`` -> ``(n, 144)``."""
    d, dmin, sc, m, q = _k_affine(x, 15)
    qs = _pack_nibbles(q.reshape(-1, 4, 64)).reshape(-1, 128)
    return np.concatenate([_f16_bytes(d), _f16_bytes(dmin), _k_scale_bytes(sc, m), qs], axis=1)


def pack_q5_k(x: np.ndarray) -> np.ndarray:
    """``(n, 256)`` -> ``(n, 176)``: bit j of ``qh[l]`` = bit 4 of sub-block j's quant l."""
    d, dmin, sc, m, q = _k_affine(x, 31)
    bits = (q >> np.uint8(4)) << np.arange(8, dtype=np.uint8)[:, None]  # (n, 8, 32)
    qh = np.bitwise_or.reduce(bits, axis=1)
    qs = _pack_nibbles((q & np.uint8(15)).reshape(-1, 4, 64)).reshape(-1, 128)
    parts = [_f16_bytes(d), _f16_bytes(dmin), _k_scale_bytes(sc, m), qh, qs]
    return np.concatenate(parts, axis=1)


def pack_q6_k(x: np.ndarray) -> np.ndarray:
    """``(n, 256)`` -> ``(n, 210)``: int8 scale per 16 (0..127 used), quants -31..31."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, 16, 16)
    span = np.abs(x).max(axis=2) / np.float32(31)  # (n, 16)
    d = _f16_up(span.max(axis=1, keepdims=True) / np.float32(127))
    sc = np.clip(np.ceil(span * _inverse(d)), 0, 127)
    step = d.astype(np.float32) * sc.astype(np.float32)
    q = np.clip(np.rint(x * _inverse(step)[:, :, None]), -31, 31) + 32
    q = q.astype(np.uint8).reshape(-1, 2, 4, 32)  # half, group of 32 (0..3), l
    ql = _pack_nibbles((q & np.uint8(15)).reshape(-1, 2, 128)).reshape(-1, 128)
    crumbs = (q >> np.uint8(4)) << (np.arange(4, dtype=np.uint8) * 2)[:, None]
    qh = np.bitwise_or.reduce(crumbs, axis=2).reshape(-1, 64)
    scales = sc.astype(np.int8).view(np.uint8)
    return np.concatenate([ql, qh, scales, _f16_bytes(d)], axis=1)


_PLAIN_PACKERS = {GGMLType.F32: pack_f32, GGMLType.F16: pack_f16, GGMLType.BF16: pack_bf16}

# Random valid blocks: random bytes, then the fp16 fields overwritten. Per quantized type:
# (byte offset of d, rms of the value for d = 1 given uniformly random quant/scale bits,
#  extra fp16 field as (byte offset, multiple of d) or None). dmin = mean(sc*q)/mean(m) * d
# centres K blocks; Q5_1's m = -15.5 d centres its 0..31 quants.
_RANDOM_FIELDS: dict[GGMLType, tuple[int, float, tuple[int, float] | None]] = {
    GGMLType.Q8_0: (0, 73.90, None),  # sqrt(E q^2), q uniform in -128..127
    GGMLType.Q4_0: (0, 4.637, None),  # q - 8 uniform in -8..7
    GGMLType.Q5_0: (0, 9.247, None),  # q - 16 uniform in -16..15
    GGMLType.Q5_1: (0, 9.233, (2, -15.5)),  # q uniform in 0..31, centred
    GGMLType.Q4_K: (0, 258.3, (2, 7.5)),  # sc, m in 0..63, q in 0..15
    GGMLType.Q5_K: (0, 526.9, (2, 15.5)),  # sc, m in 0..63, q in 0..31
    GGMLType.Q6_K: (208, 1365.7, None),  # int8 scale times q - 32 in -32..31
}


def random_blocks(
    ggml_type: int, nblocks: int, rng: np.random.Generator, scale: float
) -> np.ndarray:
    """uint8 ``(nblocks, block_bytes)`` of valid blocks whose values have std ~ ``scale``.

    Quant and scale bytes are random; fp16 d (and dmin / m) are set per block to
    ``scale / rms * U(0.75, 1.25)`` (random sign where the format has no min): finite. F32/F16/BF16 values are uniform with
    std ``scale``. Runs at hundreds of MB/s for the block formats.
    """
    t = ggml_type_of(ggml_type)
    nbytes = BLOCK_SIZES[t][1]
    if t in _PLAIN_PACKERS:
        values = rng.random((nblocks, 1), dtype=np.float32)  # uniform: faster than normal
        values -= np.float32(0.5)
        values *= np.float32(2 * np.sqrt(3) * scale)
        return _PLAIN_PACKERS[t](values)
    d_at, rms, extra = _RANDOM_FIELDS[t]
    biggest = scale / rms * 1.25 * max(1.0, abs(extra[1]) if extra else 1.0)
    if not np.isfinite(biggest) or biggest > _F16_MAX:
        raise MtpdecError(f"scale {scale} is too large for {t.name} fp16 block scales")
    total = nblocks * nbytes
    words = rng.bit_generator.random_raw(-(-total // 8))
    blocks = words.view(np.uint8)[:total].reshape(nblocks, nbytes)
    jitter = rng.random(nblocks, dtype=np.float32) * np.float32(0.5) + np.float32(0.75)
    if extra is None:  # symmetric formats: random sign of d, as in real files
        jitter[rng.integers(0, 2, nblocks, dtype=np.uint8).view(bool)] *= np.float32(-1)
    d = (np.float32(scale / rms) * jitter).astype(np.float16)
    blocks[:, d_at : d_at + 2] = _f16_bytes(d)
    if extra is not None:
        at, mult = extra
        blocks[:, at : at + 2] = _f16_bytes(d.astype(np.float32) * np.float32(mult))
    return blocks
