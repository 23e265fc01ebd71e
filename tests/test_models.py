"""Forward passes in both activation modes: k-token batches bitwise equal to one token at
a time (k = 2..9: nothing switches with the width), the dense path for prompts only, state
contracts and bad input. Parity with llama.cpp is test_parity.py."""

from __future__ import annotations

import numpy as np
import pytest

from mtpdec.cpu.linear import DENSE_MIN_ROWS
from mtpdec.errors import MtpdecError
from mtpdec.models import load_model
from mtpdec.state import RecurrentState
from tests.conftest import synth_file
from tests.ggufs import gemma3_tiny, write_gguf

N_TOKENS = 12


MODES = ["q8", "f32"]


@pytest.fixture(scope="module")
def qwen_tiny(model_of):
    return model_of("qwen_tiny")


def _one_at_a_time(model, ids: np.ndarray) -> np.ndarray:
    state = model.new_state(64)
    return np.concatenate([model.forward(ids[i : i + 1], i, state) for i in range(len(ids))])


def _in_chunks(model, ids: np.ndarray, k: int) -> np.ndarray:
    """Prefill 3 tokens, then chunks of k: positions vary within every chunk size."""
    state, rows, pos = model.new_state(64), [], 0
    for n in [3] + [k] * len(ids):
        n = min(n, len(ids) - pos)
        if n <= 0:
            break
        rows.append(model.forward(ids[pos : pos + n], pos, state))
        pos += n
    assert state.length == len(ids)
    return np.concatenate(rows)


def _ids(model, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, model.n_vocab, N_TOKENS).astype(np.int32)


@pytest.mark.parametrize("activations", MODES)
@pytest.mark.parametrize(
    "name",
    ["qwen_tiny", "qwen_hk_lt_hv", pytest.param("gemma", marks=pytest.mark.model)],
)
def test_k_token_forward_is_bitwise_equal_to_one_at_a_time(model_of, name, activations):
    model = model_of(name, activations)
    ids = _ids(model)
    ref = _one_at_a_time(model, ids)
    assert ref.shape == (N_TOKENS, model.n_vocab) and ref.dtype == np.float32
    assert np.isfinite(ref).all()
    for k in range(2, 10):
        out = _in_chunks(model, ids, k)
        diff = np.abs(out - ref).max()
        assert np.array_equal(out, ref), f"{name}: k={k} differs by up to {diff}"


@pytest.mark.parametrize("activations", MODES)
def test_mtp_forward_k_tokens_bitwise_equal_to_one_at_a_time(model_of, activations):
    m = model_of("qwen_tiny", activations)
    ids = _ids(m, 1)[:8]
    hidden = np.random.default_rng(2).standard_normal((8, m.config.n_embd)).astype(np.float32)
    state = m.new_state(32)
    ref = [m.mtp_forward(ids[i : i + 1], hidden[i : i + 1], i, state) for i in range(8)]
    ref_logits = np.concatenate([r[0] for r in ref])
    ref_hm = np.concatenate([r[1] for r in ref])
    for k in (2, 3, 4, 8):
        state = m.new_state(32)
        outs = [m.mtp_forward(ids[p : p + k], hidden[p : p + k], p, state) for p in range(0, 8, k)]
        assert np.array_equal(np.concatenate([o[0] for o in outs]), ref_logits), k
        assert np.array_equal(np.concatenate([o[1] for o in outs]), ref_hm), k


def test_last_only_returns_the_last_row(qwen_tiny):
    ids = _ids(qwen_tiny)[:5]
    full = qwen_tiny.forward(ids, 0, qwen_tiny.new_state(16))
    last = qwen_tiny.forward(ids, 0, qwen_tiny.new_state(16), last_only=True)
    assert last.shape == (1, qwen_tiny.n_vocab)
    assert np.array_equal(last[0], full[-1])


@pytest.mark.parametrize("activations", MODES)
@pytest.mark.parametrize("name", ["qwen_tiny", pytest.param("gemma", marks=pytest.mark.model)])
def test_long_prompt_dense_path_agrees_with_the_kernel_path(model_of, name, activations):
    """Only a prefill forward takes the dense path (exact float32 inputs). In f32 mode it
    agrees with the kernels to float rounding; in q8 mode the kernels round every input
    to 8 bits and the dense path does not, so they part by that rounding noise (about
    the q8 mode's own distance from a float64 forward: Gemma 0.994-0.9996)."""
    model = model_of(name, activations)
    n = DENSE_MIN_ROWS + 7
    ids = np.random.default_rng(3).integers(0, model.n_vocab, n).astype(np.int32)
    kernel = _one_at_a_time(model, ids)
    short = model.forward(ids[: DENSE_MIN_ROWS - 1], 0, model.new_state(64), prefill=True)
    assert np.array_equal(short, kernel[: DENSE_MIN_ROWS - 1])  # too short for dense
    dense = model.forward(ids, 0, model.new_state(64), prefill=True)
    assert any(lin.dense is not None for lin in model.linears()), "dense path not taken"
    bar = 0.99999 if activations == "f32" else 0.99
    for row_k, row_d in zip(kernel, dense):
        assert np.corrcoef(row_k, row_d)[0, 1] > bar
    if activations == "f32":
        assert (kernel.argmax(1) == dense.argmax(1)).all()
    # with the dense copies built, a forward that is not a prefill still uses the kernels
    assert np.array_equal(model.forward(ids, 0, model.new_state(64)), kernel)


@pytest.mark.parametrize("activations", MODES)
def test_dense_linear_agrees_with_its_kernel(model_of, activations):
    """Per matrix, the dense prefill product (exact float32 inputs, in both modes) equals
    the f32 kernel's to float rounding; with fewer than DENSE_MIN_ROWS rows, or without
    ``prefill``, it is the model's own kernel, bit for bit."""
    from mtpdec.cpu.matvec import MatVec

    rng = np.random.default_rng(5)
    for lin in model_of("qwen_tiny", activations).linears():
        x = rng.standard_normal((DENSE_MIN_ROWS + 3, lin.w.cols)).astype(np.float32)
        x[:, 3] *= 30  # an outlier column, as real activations have
        kernel = lin(x)
        assert np.array_equal(lin(x[:4], prefill=True), kernel[:4])
        assert lin.prepare_dense()
        assert np.array_equal(lin(x), kernel)
        exact = MatVec(lin.w, "f32")(x)
        dense = lin(x, prefill=True)
        rel = np.abs(dense - exact).max() / np.abs(exact).max()
        assert rel < 1e-5, f"{lin.w.name}: {rel:.2e}"


def test_state_length_and_context_checks(qwen_tiny):
    m = qwen_tiny
    state = m.new_state(4)
    m.forward(np.array([1, 2]), 0, state)
    assert state.length == 2
    with pytest.raises(MtpdecError, match="does not continue"):
        m.forward(np.array([1]), 1, state)
    with pytest.raises(MtpdecError, match="exceed the context of 4"):
        m.forward(np.array([1, 2, 3]), 2, state)
    with pytest.raises(MtpdecError, match="cannot be truncated"):
        state.truncate(1)
    with pytest.raises(MtpdecError, match=r"token ids must lie in \[0, "):
        m.forward(np.array([m.n_vocab]), 2, state)
    with pytest.raises(MtpdecError, match="non-empty"):
        m.forward(np.array([], dtype=np.int32), 2, state)
    assert state.length == 2


@pytest.fixture(scope="module")
def gemma_tiny(tmp_path_factory):
    kv, tensors = gemma3_tiny()
    path = tmp_path_factory.mktemp("models") / "gemma_tiny.gguf"
    return load_model(write_gguf(path, "gemma3", kv, tensors))


def test_gemma3_tiny_bitwise_and_truncate(gemma_tiny):
    """A random F32 gemma3 with sliding and global layers: chunks equal single tokens,
    and a truncated attention-only state recomputes the same rows."""
    ids = _ids(gemma_tiny)
    ref = _one_at_a_time(gemma_tiny, ids)
    for k in (2, 3, 4):
        assert np.array_equal(_in_chunks(gemma_tiny, ids, k), ref), k
    state = gemma_tiny.new_state(16)
    gemma_tiny.forward(ids[:6], 0, state)
    state.truncate(3)
    assert np.array_equal(gemma_tiny.forward(ids[3:6], 3, state), ref[3:6])


def test_unknown_architecture_is_one_line_error(tmp_path):
    kv, tensors = gemma3_tiny()
    kv = {k.replace("gemma3.", "llama."): v for k, v in kv.items()}
    path = write_gguf(tmp_path / "llama.gguf", "llama", kv, tensors)
    with pytest.raises(MtpdecError, match="unsupported architecture 'llama'"):
        load_model(path)


def test_model_without_mtp_head(tmp_path_factory):
    model = load_model(synth_file(tmp_path_factory, "no_mtp", mtp=False))
    state = model.new_state(8)
    assert model.mtp is None and state.mtp is None
    with pytest.raises(MtpdecError, match="no MTP head"):
        model.mtp_forward(np.array([1]), np.zeros((1, model.config.n_embd), np.float32), 0, state)


def test_state_is_refused_after_a_failed_forward(qwen_tiny, monkeypatch):
    state = qwen_tiny.new_state(8)
    qwen_tiny.forward(np.array([1]), 0, state)

    def fail(*_):
        raise MemoryError("no room")

    monkeypatch.setattr(qwen_tiny.blocks[3], "ffn", fail)
    with pytest.raises(MemoryError):
        qwen_tiny.forward(np.array([2]), 1, state)
    monkeypatch.undo()
    assert state.broken and state.length == 1  # layers 0-2 moved on, the rest did not
    with pytest.raises(MtpdecError, match="half-written"):
        qwen_tiny.forward(np.array([2]), 1, state)


def test_vocabulary_size_must_match_the_embedding(tmp_path):
    kv, tensors = gemma3_tiny()
    kv["tokenizer.ggml.tokens"] = kv["tokenizer.ggml.tokens"][:-1]
    path = write_gguf(tmp_path / "short_vocab.gguf", "gemma3", kv, tensors)
    with pytest.raises(MtpdecError, match="vocabulary has 49 tokens but token_embd.weight has 50"):
        load_model(path)


@pytest.mark.parametrize("name", ["qwen_tiny", "gemma_tiny"])
def test_long_prompts_run_in_chunks(request, name, monkeypatch):
    """A prompt in 4-token chunks (each too short for the dense path) takes the kernel
    path: the rows equal single tokens."""
    import mtpdec.models.base as base

    model = request.getfixturevalue(name)
    ids = _ids(model)
    ref = _one_at_a_time(model, ids)
    monkeypatch.setattr(base, "PREFILL_CHUNK", 4)
    state = model.new_state(64)
    assert np.array_equal(model.forward(ids, 0, state, prefill=True), ref)
    assert state.length == len(ids) and not state.broken


def test_dense_prefill_needs_room_for_every_matrix(tmp_path_factory):
    path = synth_file(tmp_path_factory, "budget")
    need = sum(lin.dense_nbytes for lin in load_model(path).linears())
    for budget, dense in ((need - 1, False), (need, True)):
        model = load_model(path, dense_budget_bytes=budget)
        model.compile(dense=True)
        assert all((lin.dense is not None) == dense for lin in model.linears()), budget


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_rollback_after_a_verify_batch(qwen_tiny, keep):
    """A 4-token batch, then rolling back to its first ``keep`` tokens (GDN snapshot ring,
    conv state included) continues exactly like a state that only saw those tokens."""
    m, ids = qwen_tiny, _ids(qwen_tiny)
    state = m.new_state(32, snapshot_slots=3)
    m.forward(ids[:5], 0, state)
    m.forward(ids[5:9], 5, state, snapshots=True)
    state.rollback(5 + keep)
    got = m.forward(ids[9:12], 5 + keep, state)
    ref = m.new_state(32)
    m.forward(ids[:5], 0, ref)
    m.forward(ids[5 : 5 + keep], 5, ref)
    assert np.array_equal(got, m.forward(ids[9:12], 5 + keep, ref))


def test_rollback_limits(qwen_tiny):
    m, ids = qwen_tiny, _ids(qwen_tiny)
    state = m.new_state(32, snapshot_slots=2)
    with pytest.raises(MtpdecError, match="needs 3 snapshot slots; the state has 2"):
        m.forward(ids[:4], 0, state, snapshots=True)
    state = m.new_state(32, snapshot_slots=2)
    m.forward(ids[:3], 0, state, snapshots=True)
    with pytest.raises(MtpdecError, match="only within the latest batch"):
        state.rollback(0)
    state.rollback(3)  # nothing to undo
    state.rollback(2)
    assert state.length == 2
    with pytest.raises(MtpdecError, match="no snapshot slot 0: the latest forward wrote 0"):
        m.forward(ids[2:4], 2, state)  # no snapshots asked for
        state.rollback(3)


def test_snapshots_only_when_asked(qwen_tiny):
    """A forward without ``snapshots`` writes no slot (a plain step costs nothing more);
    a verify writes k - 1; a rollback swaps buffers rather than copying the state."""
    m, ids = qwen_tiny, _ids(qwen_tiny)
    state = m.new_state(32, snapshot_slots=4)
    gdn = [layer for layer in state.layers if isinstance(layer, RecurrentState)]
    m.forward(ids[:6], 0, state, prefill=True)
    assert all(layer.taken == 0 and not layer.pool[1:].any() for layer in gdn)
    m.forward(ids[6:9], 6, state, snapshots=True)
    assert all(layer.taken == 2 for layer in gdn)
    before = [layer.pool[layer.slot_of[0]] for layer in gdn]
    state.rollback(7)
    assert all(
        layer.s is not None and np.shares_memory(layer.s, b) for layer, b in zip(gdn, before)
    )
