"""The torch qwen35 forward of mtpdec.train (issue 10's trainer) against the float64
numpy reference of tests/qwen35_reference.py, on a synth file's weights: trunk logits
and hiddens, and the MTP block at every position."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import synth_file
from tests.qwen35_reference import Qwen35Reference

torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[train]')")


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    # H_k < H_v and GQA, so head-mapping mistakes show
    return synth_file(tmp_path_factory, "train", ssm_groups=2, ssm_heads=4, layers=4)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_torch_forward_equals_the_reference(path):
    from mtpdec.train.model import from_gguf

    model = from_gguf(path)
    ids = np.random.default_rng(3).integers(0, model.cfg.n_vocab, 9)
    ref = Qwen35Reference(path)
    want_logits, want_hn = ref.trunk(ids.tolist())
    with torch.no_grad():
        logits, hn = model.trunk(torch.from_numpy(ids)[None])
        mtp = model.mtp(torch.from_numpy(ids)[None], hn)[0].numpy()
    assert _rel(logits[0].numpy(), want_logits) < 1e-10
    assert _rel(hn[0].numpy(), want_hn) < 1e-10
    for p in range(len(ids)):
        hidden = np.zeros_like(want_hn[0]) if p == 0 else want_hn[p - 1]
        want, _ = ref.mtp_step(int(ids[p]), hidden, p)
        assert _rel(mtp[p], want) < 1e-10, p


@pytest.mark.parametrize(("t", "chunk"), [(1, 4), (7, 4), (16, 4), (37, 16)])
def test_chunked_delta_rule_equals_the_token_loop(t, chunk):
    """Blocks of tokens (WY form) give the token-by-token delta rule's outputs, for
    lengths shorter than, equal to and not a multiple of the block."""
    from mtpdec.train.model import chunked_delta_rule, delta_rule

    gen = torch.Generator().manual_seed(t)
    b, h, d = 2, 3, 8
    q, k, v = (torch.randn(b, t, h, d, generator=gen, dtype=torch.float64) for _ in range(3))
    k = k / k.norm(dim=-1, keepdim=True)
    g = -torch.rand(b, t, h, generator=gen, dtype=torch.float64) * 2
    beta = torch.rand(b, t, h, generator=gen, dtype=torch.float64)
    want = delta_rule(q, k, v, g, beta)
    got = chunked_delta_rule(q, k, v, g, beta, chunk)
    assert float((got - want).abs().max() / want.abs().max()) < 1e-12


def test_chunked_model_equals_the_token_loop_and_trains(path):
    """The model with blocked GDN layers gives the token loop's logits, and the joint
    loss (trunk + MTP) has gradients for every tensor."""
    from mtpdec.train.model import from_gguf

    ids = torch.from_numpy(np.random.default_rng(4).integers(0, 4096, (2, 11)))
    loop, blocked = from_gguf(path, chunk=0), from_gguf(path, chunk=4)
    with torch.no_grad():
        want, hn = loop.trunk(ids)
        want_mtp = loop.mtp(ids, hn)
    got, hn = blocked.trunk(ids)
    got_mtp = blocked.mtp(ids, hn)
    for a, b in ((got, want), (got_mtp, want_mtp)):
        assert float((a.detach() - b).abs().max() / b.abs().max()) < 1e-10
    ce = torch.nn.functional.cross_entropy
    v = got.shape[-1]
    loss = ce(got[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1))
    loss = loss + 0.3 * ce(got_mtp[:, 1:-1].reshape(-1, v), ids[:, 2:].reshape(-1))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in blocked.parameters())
