"""qwen35 trunk forward (GDN and gated attention layers) against the float64 reference
of tests/qwen35_reference.py, on synth files with H_k = H_v and with H_k < H_v: exact in
f32 mode; in q8 mode (activations rounded to 8 bits) within llama.cpp's own distance from
the reference on such files (correlation 0.9974 and up, test_parity.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mtpdec.models import load_model
from mtpdec.synth import SynthOverrides, write_synth
from tests.qwen35_reference import Qwen35Reference

CONFIGS = {
    "tiny": SynthOverrides(),
    "hk_lt_hv_gqa": SynthOverrides(layers=4, ssm_groups=2, ssm_heads=6, n_head=8, n_head_kv=2),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def synth_file(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("q35ref") / f"{request.param}.gguf"
    write_synth(
        out,
        "qwen35-tiny",
        seed=3,
        overrides=CONFIGS[request.param],
        force=False,
        report=lambda _: None,
    )
    return out


def _close(got: np.ndarray, want: np.ndarray, what: str, activations: str) -> None:
    for pos, (g, r) in enumerate(zip(got, want)):
        corr = np.corrcoef(g, r)[0, 1]
        rel = np.abs(g - r).max() / np.abs(r).max()
        if activations == "f32":
            assert corr > 0.99999 and rel < 1e-4, f"{what} position {pos}: corr {corr}, rel {rel}"
        else:
            assert corr > 0.999, f"{what} position {pos}: corr {corr}"


@pytest.mark.parametrize("activations", ["f32", "q8"])
def test_trunk_matches_float64_reference(synth_file, activations):
    model = load_model(synth_file, activations=activations)
    ids = np.random.default_rng(4).integers(0, model.n_vocab, 14).astype(np.int32)
    want_logits, want_hn = Qwen35Reference(synth_file).trunk(ids.tolist())
    state = model.new_state(32)
    first = model.hidden(ids[:5], 0, state)  # kernel path
    rest = model.hidden(ids[5:], 5, state, prefill=True)  # 9 rows: the dense prefill path
    hn = np.concatenate([first, rest])
    _close(hn, want_hn, "hn", activations)
    _close(model.logits(hn), want_logits, "logits", activations)
