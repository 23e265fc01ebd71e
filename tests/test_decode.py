"""decode_plain on a scripted fake model: stopping rules, what is fed, and the timings."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from fakes import EOS, FakeClock, FakeModel

from mtpdec import decode
from mtpdec.decode import STOP_CTX, STOP_EOG, STOP_N_PREDICT, decode_plain
from mtpdec.errors import MtpdecError
from mtpdec.metrics import Timings
from mtpdec.sampling import Sampler

PROMPT = [1, 2, 3]


def run(model: FakeModel, n_predict: int, n_ctx: int = 32, **kw) -> list[decode.Step]:
    state = model.new_state(n_ctx)
    return list(decode_plain(model, PROMPT, n_predict, Sampler(), state, **kw))


def emitted(steps: list[decode.Step]) -> list[int]:
    return [t for s in steps for t in s.tokens]


def test_stops_after_n_predict_tokens() -> None:
    model = FakeModel(script=[10, 11, 12, 13, 14, 15])
    steps = run(model, 4)
    assert emitted(steps) == [10, 11, 12, 13]
    assert [s.prefill for s in steps] == [True, False, False, False]
    assert [s.stop for s in steps] == [None, None, None, STOP_N_PREDICT]
    # the last token is never fed: n_predict tokens cost 1 prefill + n_predict - 1 forwards
    assert model.calls == [3, 1, 1, 1]
    assert model.prefills == [True, False, False, False]  # batched numerics: the prompt only
    assert model.fed == PROMPT + [10, 11, 12]
    assert all(s.from_draft == (False,) for s in steps)


def test_stops_at_end_of_generation_without_emitting_it() -> None:
    model = FakeModel(script=[10, 11, EOS, 12])
    steps = run(model, 10)
    assert emitted(steps) == [10, 11]
    assert steps[-1].tokens == () and steps[-1].stop == STOP_EOG and not steps[-1].prefill


def test_eog_as_the_first_token() -> None:
    steps = run(FakeModel(script=[EOS]), 10)
    assert len(steps) == 1 and steps[0].prefill and steps[0].tokens == ()
    assert steps[0].stop == STOP_EOG


def test_stop_at_eog_false_emits_it_and_goes_on() -> None:
    steps = run(FakeModel(script=[10, EOS, 12]), 3, stop_at_eog=False)
    assert emitted(steps) == [10, EOS, 12] and steps[-1].stop == STOP_N_PREDICT


def test_stops_when_the_context_is_full() -> None:
    model = FakeModel(script=list(range(10, 40)))
    state = model.new_state(6)
    steps = list(decode_plain(model, PROMPT, 100, Sampler(), state))
    # 3 prompt tokens + 3 fed back fill 6 positions; the token picked after them is emitted
    assert emitted(steps) == [10, 11, 12, 13]
    assert steps[-1].stop == STOP_CTX and state.length == 6


def test_prompt_filling_the_context_still_emits_one_token() -> None:
    model = FakeModel(script=[10, 11])
    steps = list(decode_plain(model, PROMPT, 5, Sampler(), model.new_state(3)))
    assert emitted(steps) == [10] and steps[-1].stop == STOP_CTX


def test_n_predict_zero_runs_only_the_prefill() -> None:
    model = FakeModel(script=[10])
    steps = run(model, 0)
    assert len(steps) == 1 and steps[0].tokens == () and steps[0].stop == STOP_N_PREDICT
    assert model.calls == [3]


def test_n_predict_one_needs_no_decode_forward() -> None:
    model = FakeModel(script=[10, 11])
    steps = run(model, 1)
    assert emitted(steps) == [10] and model.calls == [3] and steps[0].stop == STOP_N_PREDICT


@pytest.mark.parametrize(
    ("prompt", "n_predict", "n_ctx", "message"),
    [
        ([], 4, 8, "the prompt has no tokens"),
        (PROMPT, -1, 8, "must be >= 0, got -1"),
        ([1] * 9, 4, 8, "the prompt is 9 tokens, longer than the context 8"),
    ],
)
def test_bad_inputs(prompt: list[int], n_predict: int, n_ctx: int, message: str) -> None:
    model = FakeModel(script=[10])
    with pytest.raises(MtpdecError, match=message):
        list(decode_plain(model, prompt, n_predict, Sampler(), model.new_state(n_ctx)))


def test_needs_a_fresh_state() -> None:
    model = FakeModel(script=[10])
    state = model.new_state(8)
    state.length = 2
    with pytest.raises(MtpdecError, match="fresh state"):
        list(decode_plain(model, PROMPT, 4, Sampler(), state))


def test_sampled_decoding_feeds_back_what_it_emitted() -> None:
    class Noisy(FakeModel):
        def forward(self, tokens, start_pos, state, last_only=False, prefill=False):  # type: ignore[override]
            super().forward(tokens, start_pos, state, last_only, prefill)
            rng = np.random.default_rng(state.length)
            return rng.standard_normal((1, self.n_vocab)).astype(np.float32)

    model = Noisy(script=[])
    steps = run(model, 12, n_ctx=64)
    out = emitted(steps)
    assert len(out) == 12 and model.fed == PROMPT + out[:-1]


def test_step_seconds_time_the_forward_and_pick_only(monkeypatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(decode, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    model = FakeModel(script=[10, 11, 12, 13, 14], clock=clock)
    timings = Timings()
    for step in decode_plain(model, PROMPT, 5, Sampler(), model.new_state(16)):
        timings.record(step)
        clock.advance(5.0)  # the consumer printing: never counted
    assert timings.prompt_tokens == 3
    assert timings.prompt_s == pytest.approx(model.cost(3))
    assert timings.decode_tokens == 4 and timings.decode_steps == 4
    assert timings.decode_s == pytest.approx(4 * model.cost(1))
    assert timings.prompt_tok_s == pytest.approx(3 / model.cost(3))
    assert timings.decode_tok_s == pytest.approx(1 / model.cost(1))
    d = timings.as_dict()
    assert d["decode_tokens"] == 4 and d["decode_tok_s"] == pytest.approx(1 / model.cost(1))
    assert "decode 4 tokens, 90.9 tok/s" in timings.line()


def test_empty_timings_have_no_rates() -> None:
    t = Timings()
    assert t.prompt_tok_s is None and t.decode_tok_s is None
    assert t.as_dict()["decode_tok_s"] is None
    assert "decode 0 tokens, - tok/s" in t.line()
