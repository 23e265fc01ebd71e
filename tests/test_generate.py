"""`mtpdec generate`: streaming and --json output, option errors, and the real models
(a synthetic qwen35-tiny file and Gemma-3-270M) end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fakes import BOS, EOS, FakeModel
from ggufs import write_gguf
from typer.testing import CliRunner

import mtpdec.generate
import mtpdec.models
from mtpdec.cli import app

runner = CliRunner()

TEXT = "Hé!"  # é is two bytes: two tokens of the fake byte-level tokenizer


def one_line_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtpdec: error: "), result.stderr
    assert message in lines[0]
    assert result.stdout == ""


# ---------------------------------------------------------------- a scripted fake model


@pytest.fixture
def fake(monkeypatch) -> FakeModel:
    model = FakeModel(script=[*TEXT.encode(), EOS, 65, 66])
    monkeypatch.setattr(mtpdec.models, "load_model", lambda path, **_: model, raising=False)
    # no file to plan from (the plan is tested in test_memory.py)
    monkeypatch.setattr(mtpdec.generate, "plan_memory", lambda *args: {"kv_cache": 0})
    return model


def test_streams_the_text_then_a_stats_line(fake: FakeModel) -> None:
    result = runner.invoke(app, ["generate", "m.gguf", "hi"])
    assert result.exit_code == 0, result.output
    assert result.stdout == TEXT + "\n"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("prompt 3 tokens, ") and "decode 3 tokens, " in lines[0]
    assert "compile 0.25 s" in lines[0] and lines[0].endswith("stop: eog")
    assert fake.compiled and fake.fed[:3] == [BOS, *b"hi"]


def test_json_has_ids_text_and_stats(fake: FakeModel, tmp_path: Path) -> None:
    prompt_file = tmp_path / "p.txt"
    prompt_file.write_text("hi", encoding="utf-8")
    result = runner.invoke(
        app, ["generate", "m.gguf", "--prompt-file", str(prompt_file), "--json", "--seed", "5"]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    out = json.loads(result.stdout)
    assert out["prompt"] == "hi" and out["prompt_ids"] == [BOS, *b"hi"]
    assert out["output_ids"] == list(TEXT.encode()) and out["output"] == TEXT
    assert out["stop"] == "eog" and out["ctx"] == fake.n_ctx_train
    assert out["sampling"] == {"temp": 0.0, "top_k": 0, "top_p": 1.0, "seed": 5}
    stats = out["stats"]
    assert (stats["prompt_tokens"], stats["decode_tokens"], stats["compile_s"]) == (3, 3, 0.25)
    assert stats["decode_tok_s"] > 0 and stats["load_s"] >= 0


def test_n_predict_cuts_a_character_in_half(fake: FakeModel) -> None:
    result = runner.invoke(app, ["generate", "m.gguf", "hi", "-n", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "H\ufffd\n" and result.stderr.strip().endswith("stop: n_predict")


def test_ctx_option(fake: FakeModel) -> None:
    result = runner.invoke(app, ["generate", "m.gguf", "hi", "--ctx", "4", "--json"])
    out = json.loads(result.stdout)
    assert out["ctx"] == 4 and out["stop"] == "ctx" and len(out["output_ids"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hello", "--ctx", "3"], "the prompt is 6 tokens, longer than --ctx 3"),
        (["hi", "--ctx", "65"], "--ctx 65 exceeds the model's training context of 64"),
    ],
)
def test_model_dependent_errors(fake: FakeModel, args: list[str], message: str) -> None:
    one_line_error(runner.invoke(app, ["generate", "m.gguf", *args]), message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([""], "the prompt is empty"),
        ([], "missing the prompt: give PROMPT or --prompt-file"),
        (["hi", "--prompt-file", "p.txt"], "give either PROMPT or --prompt-file, not both"),
        (["--prompt-file", "/nonexistent/p.txt"], "--prompt-file /nonexistent/p.txt: No such file"),
        (["hi", "-n", "-1"], "-n/--n-predict must be >= 0, got -1"),
        (["hi", "--temp", "-1"], "--temp must be a number >= 0, got -1.0"),
        (["hi", "--top-k", "-2"], "--top-k must be >= 0"),
        (["hi", "--top-p", "0"], "--top-p must be in (0, 1]"),
        (["hi", "--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["hi", "--seed", "-3"], "--seed must be in [0, 2^64)"),
        (["hi", "--ctx", "0"], "--ctx must be >= 1, got 0"),
        (["hi", "--activations", "fp8"], "--activations must be q8 or f32, got 'fp8'"),
    ],
)
def test_option_errors_come_before_loading(tmp_path: Path, args: list[str], message: str) -> None:
    one_line_error(runner.invoke(app, ["generate", str(tmp_path / "absent.gguf"), *args]), message)


# ---------------------------------------------------------------- real models


def load(path: Path):
    from mtpdec.models import load_model

    return load_model(path)


def generate_json(path: Path, prompt: str, *args: str) -> dict:
    result = runner.invoke(app, ["generate", str(path), prompt, "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from mtpdec.synth import SynthOverrides, write_synth

    out = tmp_path_factory.mktemp("generate") / "tiny.gguf"
    write_synth(
        out, "qwen35-tiny", seed=0, overrides=SynthOverrides(), force=False, report=lambda _: None
    )
    return out


def argmax_loop(model, prompt_ids: list[int], n: int) -> list[int]:
    """Greedy continuation written out here: prefill, then argmax and one-token
    forwards, stopping after an end-of-generation token."""
    state = model.new_state(64)
    logits = model.forward(np.asarray(prompt_ids, np.int32), 0, state, prefill=True)[-1]
    out: list[int] = []
    while len(out) < n:
        tok = int(np.argmax(logits))
        if model.tokenizer.is_eog(tok):
            break
        out.append(tok)
        logits = model.forward(np.array([tok], np.int32), state.length, state)[-1]
    return out


def test_tiny_greedy_equals_an_argmax_loop_and_json_is_consistent(tiny: Path) -> None:
    a = generate_json(tiny, "Hello world", "-n", "12")  # speculative: mtp, auto
    model = load(tiny)
    tok = model.tokenizer
    assert a["prompt_ids"] == tok.encode("Hello world")
    assert a["output_ids"] == argmax_loop(model, a["prompt_ids"], 12)
    assert tok.decode(a["output_ids"]) == a["output"]
    n = len(a["output_ids"])
    assert n == 12 if a["stop"] == "n_predict" else n < 12 and a["stop"] == "eog"
    assert a["stats"]["prompt_tokens"] == len(a["prompt_ids"])
    assert a["stats"]["decode_tokens"] == max(n - 1, 0)


def test_tiny_activation_modes(tiny: Path) -> None:
    """Both modes run end to end and say which numerics and kernel path they used."""
    q8 = generate_json(tiny, "Hello world", "-n", "6")
    f32 = generate_json(tiny, "Hello world", "-n", "6", "--activations", "f32")
    assert q8["activations"] == "q8" and q8["kernel_path"] != "float"
    assert f32["activations"] == "f32" and f32["kernel_path"] == "float"
    assert len(q8["output_ids"]) == len(f32["output_ids"]) == 6


def test_tiny_seeded_sampling_is_reproducible(tiny: Path) -> None:
    """Same seed, same tokens; another seed, other tokens (the seed is used)."""
    opts = ["-n", "12", "--temp", "0.9", "--top-k", "50", "--top-p", "0.95"]
    runs = [generate_json(tiny, "Hello", *opts, "--seed", seed)["output_ids"]
            for seed in ("11", "11", "12")]  # fmt: skip
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_tiny_streams_text_and_stats(tiny: Path) -> None:
    result = runner.invoke(app, ["generate", str(tiny), "Hello world", "-n", "6"])
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("\n")
    line, draft = result.stderr.strip().splitlines()
    assert line.startswith("prompt ") and "decode " in line and "compile " in line
    assert draft.startswith("draft mtp, n auto: drafts ")  # the default for an MTP model


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Hello world", "--ctx", "2"], "tokens, longer than --ctx 2"),
        (["Hello", "--ctx", "1000000000"], "exceeds the model's training context of 32768"),
    ],
)
def test_tiny_context_errors(tiny: Path, args: list[str], message: str) -> None:
    one_line_error(runner.invoke(app, ["generate", str(tiny), *args]), message)


def _cupy_missing() -> bool:
    try:
        import cupy  # noqa: F401
    except ImportError:
        return True
    return False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cpu-ffn", "2"], "add --device gpu"),
        (["--device", "tpu"], "unknown --device 'tpu'"),
        (["--device", "gpu", "--cpu-ffn", "many"], "--cpu-ffn must be a layer count or auto"),
        (["--device", "gpu", "--cpu-ffn", "auto"], "--cpu-ffn auto needs --vram"),
        (["--device", "gpu", "--cpu-ffn", "99"], "--cpu-ffn must be 0..8"),
        (["--device", "gpu", "--vram", "0.001", "--cpu-ffn", "8"], "more than --vram"),
        (["--device", "gpu", "--vram", "-1"], "--vram must be positive"),
    ],
)
def test_device_option_errors(tiny: Path, args: list[str], message: str) -> None:
    """Impossible placements fail in one line before anything is loaded or uploaded."""
    one_line_error(runner.invoke(app, ["generate", str(tiny), "Hello", *args]), message)


@pytest.mark.skipif(not _cupy_missing(), reason="CuPy is installed: the error needs its absence")
def test_gpu_without_cupy_is_a_one_line_error(tiny: Path) -> None:
    one_line_error(runner.invoke(app, ["generate", str(tiny), "Hi", "--device", "gpu"]), "CuPy")


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("just text, not a model\n")
    result = runner.invoke(app, ["generate", str(path), "Hello"])
    one_line_error(result, str(path))


def test_unknown_architecture(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "llama.gguf", "llama", {}, {})
    one_line_error(runner.invoke(app, ["generate", str(path), "Hello"]), "llama")


@pytest.mark.model
def test_gemma_greedy(gemma_path: Path) -> None:
    prompt = "The capital of France is"
    a = generate_json(gemma_path, prompt, "-n", "16")
    assert a["architecture"] == "gemma3"
    tok = load(gemma_path).tokenizer
    assert a["prompt_ids"] == tok.encode(prompt) and a["prompt_ids"][0] == tok.bos_id
    assert tok.decode(a["output_ids"]) == a["output"]
    # a second run, streamed: the same text (greedy is deterministic)
    streamed = runner.invoke(app, ["generate", str(gemma_path), prompt, "-n", "16"])
    assert streamed.exit_code == 0, streamed.output
    assert streamed.stdout == a["output"] + "\n"


def test_prompt_file_keeps_crlf(tiny: Path, tmp_path: Path) -> None:
    """The file's bytes are the prompt: no newline translation (as llama.cpp's -f)."""
    text = "line one\r\nline two\r\n"
    path = tmp_path / "crlf.txt"
    path.write_bytes(text.encode())
    result = runner.invoke(app, ["generate", str(tiny), "-f", str(path), "-n", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["prompt_ids"] == load(tiny).tokenizer.encode(text)
