"""The repacked layouts (``mtpdec.cpu.repack``): undone by an independent numpy reading
of the documented layout, the interleaved groups give back every plain block and Q6_K's
word order gives back gguf's dequantized weights; repacked matrices multiply like plain
ones (to float rounding) in every model."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from mtpdec.cpu.repack import GROUP_BLOCK_BYTES, repack, repack_q6_k_words
from mtpdec.quants.pack import random_blocks
from mtpdec.quants.types import GGMLType


def unpack_groups(packed: np.ndarray, nblk: int) -> np.ndarray:
    """Plain Q4_K bytes (groups * 8, nblk * 144) from the documented group-block layout."""
    groups = packed.shape[0]
    g = packed.reshape(groups, nblk, GROUP_BLOCK_BYTES)
    out = np.zeros((groups, 8, nblk, 144), dtype=np.uint8)
    for r in range(8):
        out[:, r, :, 0:2] = g[:, :, 2 * r : 2 * r + 2]  # d
        out[:, r, :, 2:4] = g[:, :, 16 + 2 * r : 18 + 2 * r]  # dmin
        sc = g[:, :, 32 + 8 * r : 40 + 8 * r].astype(np.uint8)
        m = g[:, :, 96 + 8 * r : 104 + 8 * r].astype(np.uint8)
        # re-pack the 6-bit values into the 12 bytes of the plain block
        s = out[:, r, :, 4:16]
        s[..., 0:4] = (sc[..., 0:4] & 63) | ((sc[..., 4:8] >> 4) << 6)
        s[..., 4:8] = (m[..., 0:4] & 63) | ((m[..., 4:8] >> 4) << 6)
        s[..., 8:12] = (sc[..., 4:8] & 15) | ((m[..., 4:8] & 15) << 4)
        for c in range(4):
            for chunk in range(4):
                at = 160 + 64 * (4 * c + chunk) + 8 * r
                out[:, r, :, 16 + 32 * c + 8 * chunk : 24 + 32 * c + 8 * chunk] = g[
                    :, :, at : at + 8
                ]
    return out.reshape(groups * 8, nblk * 144)


@pytest.mark.parametrize("rows", [8, 19, 64])
def test_repacked_groups_give_back_the_plain_blocks(rows: int) -> None:
    nblk = 3
    raw = random_blocks(GGMLType.Q4_K, rows * nblk, np.random.default_rng(rows), 0.05)
    raw = raw.reshape(rows, nblk * 144)
    packed, tail = repack(raw, GGMLType.Q4_K)
    assert packed.shape == (rows // 8, nblk * GROUP_BLOCK_BYTES) and tail.shape == (
        rows % 8,
        nblk * 144,
    )
    assert np.array_equal(unpack_groups(packed, nblk), raw[: rows // 8 * 8])
    assert np.array_equal(tail, raw[rows // 8 * 8 :])


SMALL = {GGMLType.Q8_0: 34, GGMLType.Q4_0: 18, GGMLType.Q5_0: 22}


def unpack_small_groups(packed: np.ndarray, t: GGMLType, nblk: int) -> np.ndarray:
    """Plain Q8_0 / Q4_0 / Q5_0 bytes from the documented 32-weight group-block layouts."""
    block = SMALL[t]
    groups = packed.shape[0]
    g = packed.reshape(groups, nblk, 8 * block)
    out = np.zeros((groups, 8, nblk, block), dtype=np.uint8)
    qs_at = 48 if t == GGMLType.Q5_0 else 16
    n_chunks = 4 if t == GGMLType.Q8_0 else 2
    first = block - 8 * n_chunks  # where the quants start in a plain block
    for r in range(8):
        out[:, r, :, 0:2] = g[:, :, 2 * r : 2 * r + 2]
        if t == GGMLType.Q5_0:
            for byte in range(4):
                out[:, r, :, 2 + byte] = g[:, :, 16 + 8 * byte + r]
        for chunk in range(n_chunks):
            at = qs_at + 64 * chunk + 8 * r
            out[:, r, :, first + 8 * chunk : first + 8 * chunk + 8] = g[:, :, at : at + 8]
    return out.reshape(groups * 8, nblk * block)


@pytest.mark.parametrize("t", list(SMALL), ids=lambda t: t.name)
def test_repacked_small_groups_give_back_the_plain_blocks(t: GGMLType) -> None:
    rows, nblk = 19, 3
    raw = random_blocks(t, rows * nblk, np.random.default_rng(int(t)), 0.05)
    raw = raw.reshape(rows, nblk * SMALL[t])
    packed, tail = repack(raw, t)
    assert packed.shape == (2, nblk * 8 * SMALL[t])
    assert np.array_equal(unpack_small_groups(packed, t, nblk), raw[:16])
    assert np.array_equal(tail, raw[16:])


def words_weights(packed: np.ndarray) -> np.ndarray:
    """float64 (rows, cols) weights in element order from the documented Q6_K word-order
    layout: piece s byte 4j + t is element 16j + 4s + t."""
    rows = packed.shape[0]
    blk = packed.reshape(rows, -1, 210)
    ql, qh = blk[..., :128].astype(np.int64), blk[..., 128:192].astype(np.int64)
    pieces = [
        (ql[..., 64 * (s // 2) : 64 * (s // 2) + 64] >> (4 * (s % 2))) % 16
        + ((qh >> (2 * s)) % 4) * 16
        for s in range(4)
    ]
    u = np.zeros(blk.shape[:2] + (256,), dtype=np.int64)
    for s, piece in enumerate(pieces):
        for byte in range(64):
            u[..., 16 * (byte // 4) + 4 * s + byte % 4] = piece[..., byte]
    sc = blk[..., 192:208].view(np.int8).astype(np.float64)
    d = blk[..., 208:210].copy().view(np.float16)[..., 0].astype(np.float64)
    w = d[..., None] * np.repeat(sc, 16, axis=-1) * (u - 32)
    return w.reshape(rows, -1)


def test_q6_k_word_order_gives_back_the_weights() -> None:
    rows, nblk = 11, 3
    raw = random_blocks(GGMLType.Q6_K, rows * nblk, np.random.default_rng(6), 0.05)
    raw = raw.reshape(rows, nblk * 210)
    packed, tail = repack_q6_k_words(raw)
    assert packed.shape == raw.shape and tail.shape == (0, raw.shape[1])
    dense = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q6_K).astype(np.float64)
    assert np.allclose(words_weights(packed), dense, rtol=1e-6, atol=0)


def test_released_file_pages_read_back_the_same_and_copies_are_left_alone(tmp_path) -> None:
    import mmap

    from mtpdec.loader.pages import mapped_file, release_pages

    data = np.random.default_rng(0).integers(0, 256, 1 << 20, dtype=np.uint8)
    path = tmp_path / "blob"
    path.write_bytes(data.tobytes())
    with open(path, "rb") as fh:
        view = np.frombuffer(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ), np.uint8)
        part = view[123:]
        assert mapped_file(part) and release_pages(part)
        assert np.array_equal(part, data[123:])  # faulted in again from the file
    own = data.copy()
    assert not mapped_file(own) and not release_pages(own)
    assert np.array_equal(own, data)


def test_a_tied_head_keeps_the_file_pages_the_embedding_lookup_reads(gemma_path, monkeypatch):
    """Repacked matrices give their file pages back, except the LM head tied to
    token_embd: every new token id reads its row from the file."""
    import mtpdec.loader.pages as pages
    from mtpdec.models import load_model

    released: list[tuple[int, int]] = []

    def record(arr: np.ndarray) -> bool:
        released.append((arr.ctypes.data, arr.ctypes.data + arr.nbytes))
        return True

    monkeypatch.setattr(pages, "release_pages", record)
    model = load_model(gemma_path)
    embd = model.embd.raw
    start, end = embd.ctypes.data, embd.ctypes.data + embd.nbytes
    assert model.head.w is model.embd and model.head.kernel.keep_file_pages
    assert released, "the trunk's repacked matrices give their pages back"
    assert all(hi <= start or lo >= end for lo, hi in released)
