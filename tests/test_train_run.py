"""The training run (mtpdec.train.run) end to end on a corpus subset: logs, checkpoint and
resume, held-out figures, and a file mtpdec loads and decodes with MTP drafts."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[train]')")


def _opts(out, **kw):
    from mtpdec.train.run import TrainOptions

    base = dict(out=out, steps=4, batch=2, seq=32, n_vocab=512, max_files=12, eval_windows=2,
                log_every=1, save_every=2, warmup=1, chunk=16)  # fmt: skip
    return TrainOptions(**{**base, **kw})


def test_a_run_logs_resumes_bitwise_and_writes_a_model_mtpdec_runs(tmp_path, monkeypatch):
    import mtpdec.train.run as run
    from mtpdec.models import load_model
    from mtpdec.speculative import decode_speculative

    straight = run.train(_opts(tmp_path / "a"), progress=False)
    rows = (tmp_path / "a" / "loss.tsv").read_text().splitlines()
    assert len(rows) == 5 and all(np.isfinite(float(r.split("\t")[1])) for r in rows[1:])
    held = straight["held_out"]
    for figures in held.values():
        assert np.isfinite(figures["trunk_loss"]) and 0 <= figures["first_draft_acceptance"] <= 1
    assert json.loads((tmp_path / "a" / "card.json").read_text())["held_out"] == held

    # stopped in its fourth step, then run again: it continues from the step-2 checkpoint
    calls = {"n": 0}
    real = run.losses

    def failing(model, ids):
        calls["n"] += 1
        if calls["n"] == 4:  # step 3 was logged but not saved
            raise KeyboardInterrupt
        return real(model, ids)

    monkeypatch.setattr(run, "losses", failing)
    with pytest.raises(KeyboardInterrupt):
        run.train(_opts(tmp_path / "b"), progress=False)
    monkeypatch.setattr(run, "losses", real)
    resumed = run.train(_opts(tmp_path / "b"), progress=False)
    assert resumed["held_out"] == held  # bitwise the same training
    lines = (tmp_path / "b" / "loss.tsv").read_text().splitlines()
    assert [r.split("\t")[1] for r in lines] == [r.split("\t")[1] for r in rows]

    model = load_model(tmp_path / "a" / "model.gguf")
    assert model.mtp is not None and model.n_vocab == 512
    from mtpdec.draft import make_drafter
    from mtpdec.draft.adaptive import FixedN
    from mtpdec.sampling import Sampler

    prompt = model.tokenizer.encode("def main(argv):\n    ")
    state = model.new_state(64, snapshot_slots=2)
    steps = list(decode_speculative(model, prompt, 8, Sampler(), state,
                                    make_drafter("mtp", model, state, None, None, 1.0, 0), FixedN(2),
                                    stop_at_eog=False))  # fmt: skip
    assert sum(len(s.tokens) for s in steps) == 8
