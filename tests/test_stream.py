"""Streaming snapshot copies (``mtpdec.cpu.stream``) and the delta rule's ring written
through them: the same bits as a plain copy, aligned or not."""

from __future__ import annotations

import numpy as np
import pytest

from mtpdec.cpu.gdn import delta_rule
from mtpdec.cpu.stream import aligned_zeros, is_aligned, stream_copy


@pytest.mark.parametrize("shape", [(1,), (15,), (16,), (17,), (3, 40), (2, 16, 16)])
def test_stream_copy_equals_the_source(shape):
    src = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    src.flat[0] = np.float32(np.nan)  # bits, not values
    dst = aligned_zeros(shape)
    assert is_aligned(dst)
    stream_copy(dst, src)
    assert np.array_equal(dst.view(np.uint32), src.view(np.uint32))


def _inputs(n, h_k, h_v, d, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, h_k, d)).astype(np.float32)
    k = rng.standard_normal((n, h_k, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v = rng.standard_normal((n, h_v, d)).astype(np.float32)
    g = (-0.1 * np.abs(rng.standard_normal((n, h_v)))).astype(np.float32)
    beta = rng.random((n, h_v)).astype(np.float32)
    return q, k, v, g, beta


@pytest.mark.parametrize("d", [16, 12])  # 12: a head's slot is not 64-byte aligned
def test_ring_holds_the_state_after_each_token(d):
    """ring[t] equals the state after running tokens 0..t alone, streamed or copied."""
    n, h_k, h_v = 4, 2, 4
    inputs = _inputs(n, h_k, h_v, d)
    m0 = np.random.default_rng(2).standard_normal((h_v, d, d)).astype(np.float32)
    for ring in (aligned_zeros((n - 1, h_v, d, d)), np.zeros((n - 1, h_v, d, d), np.float32)):
        m = m0.copy()
        delta_rule(m, *inputs, ring)
        for t in range(n - 1):
            ref = m0.copy()
            delta_rule(ref, *(a[: t + 1] for a in inputs))
            assert np.array_equal(ring[t].view(np.uint32), ref.view(np.uint32)), t


def test_serial_and_parallel_delta_rule_builds_give_the_same_bits():
    """Small calls run the serial build, big ones the parallel one: same state, output
    and snapshots either way."""
    from mtpdec.cpu import gdn

    n, h_k, h_v, d = 5, 2, 6, 32
    q, k, v, g, beta = _inputs(n, h_k, h_v, d)
    m0 = np.random.default_rng(3).standard_normal((h_v, d, d)).astype(np.float32)
    scale = np.float32(1 / np.sqrt(np.float32(d)))
    results = []
    for run in (gdn._delta_rule_serial, gdn._delta_rule_parallel):
        m, out = m0.copy(), np.empty((n, h_v, d), np.float32)
        ring = np.zeros((n - 1, h_v, d, d), np.float32)
        run(m, q, k, v, g, beta, scale, out, ring, np.arange(n - 1), False)
        results.append([a.view(np.uint32) for a in (m, out, ring)])
    for a, b in zip(*results):
        assert np.array_equal(a, b)
