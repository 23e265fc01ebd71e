"""Attention over a KV cache: numpy float64 reference, and the serial and parallel builds
(picked by problem size) give the same bits."""

from __future__ import annotations

import numpy as np
import pytest

from mtpdec.cpu import attention

SHAPES = [  # n_tok, n_head, n_kv, head_dim, ctx, window
    (1, 4, 1, 256, 300, 0),
    (8, 24, 4, 256, 600, 0),
    (3, 8, 2, 64, 100, 16),
    (5, 6, 3, 72, 50, 0),
    (2, 2, 1, 33, 40, 7),
]


def _inputs(n_tok, n_head, n_kv, hd, ctx, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_tok, n_head, hd)).astype(np.float32)
    k = rng.standard_normal((n_kv, ctx, hd)).astype(np.float32)
    v = rng.standard_normal((n_kv, ctx, hd)).astype(np.float32)
    return q, k, v, np.arange(ctx - n_tok, ctx)


@pytest.mark.parametrize("shape", SHAPES)
def test_attend_matches_float64_reference(shape):
    n_tok, n_head, n_kv, hd, ctx, window = shape
    q, k, v, pos = _inputs(n_tok, n_head, n_kv, hd, ctx)
    got = attention.attend(q, k, v, pos, 0.125, window)
    for t, p in enumerate(pos):
        lo = max(0, p - window + 1) if window else 0
        for h in range(n_head):
            g = h // (n_head // n_kv)
            s = k[g, lo : p + 1].astype(np.float64) @ q[t, h] * 0.125
            w = np.exp(s - s.max())
            want = (w / w.sum()) @ v[g, lo : p + 1]
            assert np.allclose(got[t, h], want, rtol=1e-5, atol=1e-6), (t, h)


@pytest.mark.parametrize("shape", SHAPES)
def test_serial_and_parallel_builds_agree_bitwise(shape):
    n_tok, n_head, n_kv, hd, ctx, window = shape
    q, k, v, pos = _inputs(n_tok, n_head, n_kv, hd, ctx, seed=1)
    span = ctx if window <= 0 else min(ctx, window)
    outs = []
    for kernel in (attention._attend_serial, attention._attend_parallel):
        out = np.empty((n_tok, n_head, hd), np.float32)
        probs = np.empty((n_tok * n_head, span), np.float32)
        kernel(q, k, v, pos, np.float32(0.1), window, probs, out)
        outs.append(out)
    assert np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize("shape", SHAPES)
def test_each_token_gets_the_same_bits_in_any_batch(shape):
    """Every (token, head) output of a verify batch is bitwise the one it gets alone (the
    serial build alone, the parallel build in the batch, as a long verify picks it)."""
    n_tok, n_head, n_kv, hd, ctx, window = shape
    q, k, v, pos = _inputs(n_tok, n_head, n_kv, hd, ctx, seed=2)
    batch = attention.attend(q, k, v, pos, 0.1, window)
    span = ctx if window <= 0 else min(ctx, window)
    out = np.empty((n_tok, n_head, hd), np.float32)
    probs = np.empty((n_tok * n_head, span), np.float32)
    attention._attend_parallel(q, k, v, pos, np.float32(0.1), window, probs, out)
    assert np.array_equal(out.view(np.uint32), batch.view(np.uint32))
    for t in range(n_tok):
        alone = attention.attend(q[t : t + 1], k, v, pos[t : t + 1], 0.1, window)
        assert np.array_equal(alone[0].view(np.uint32), batch[t].view(np.uint32)), t
