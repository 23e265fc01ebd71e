"""`mtpdec generate --draft ...` and `mtpdec sweep` end to end on a tiny synth file:
exit codes, well-formed JSON with every metric, one-line errors for bad options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtpdec.cli import app
from mtpdec.synth import SynthOverrides, write_synth

runner = CliRunner()
METRICS = ("decode_tok_s", "speedup", "acceptance_rate", "mean_acceptance_length",
           "per_position_acceptance", "histogram", "ms_per_step", "achieved_over_ideal")  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "tiny.gguf"
    write_synth(out, "qwen35-tiny", seed=0, overrides=SynthOverrides(), force=False,
                report=lambda _: None)  # fmt: skip
    return out


def _one_line_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize("draft", ["mtp", "lookup", "mtp+lookup", "oracle", "none"])
def test_generate_with_each_drafter(tiny: Path, draft: str) -> None:
    args = ["generate", str(tiny), "one two three one two three one", "-n", "12", "--json"]
    result = runner.invoke(app, [*args, "--draft", draft, "--draft-n", "3"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    plain = json.loads(runner.invoke(app, [*args, "--draft", "none"]).stdout)
    assert out["output_ids"] == plain["output_ids"]
    assert out["draft"]["drafter"] == draft
    assert out["draft"]["steps"] >= 1 and sum(out["draft"]["histogram"]) == out["draft"]["steps"]


def test_sweep_json_has_one_record_per_n(tiny: Path, tmp_path: Path) -> None:
    js, png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    args = ["sweep", str(tiny), "--draft", "oracle", "--draft-n", "0,2,auto", "-n", "16",
            "--repeats", "1", "--json", str(js)]  # fmt: skip
    try:
        import matplotlib  # noqa: F401

        args += ["--plot", str(png)]
    except ImportError:
        pass
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    records = json.loads(js.read_text())["records"]
    assert [r["draft_n"] for r in records] == ["0", "2", "auto"]
    for r in records:
        assert all(key in r for key in METRICS)
    assert records[0]["speedup"] == 1.0 and records[1]["mean_acceptance_length"] > 1.0
    if "--plot" in args:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "{m}", "hi", "--draft-n", "many"], "--draft-n must be an integer"),
        (["generate", "{m}", "hi", "--draft", "psychic"], "--draft must be one of"),
        (["generate", "{m}", "hi", "--draft", "oracle", "--accept", "2"], "--accept must be"),
        (["sweep", "{m}", "--draft-n", "1,1"], "lists 1 twice"),
        (["sweep", "{m}", "--draft-n", "0,99"], "--draft-n must be in 0..16"),
        (["sweep", "{m}", "--prompts", "/nonexistent/prompts.txt"], "--prompts"),
    ],
)
def test_bad_options_are_one_line_errors(tiny: Path, args: list[str], message: str) -> None:
    _one_line_error(runner.invoke(app, [a.replace("{m}", str(tiny)) for a in args]), message)


def test_mtp_on_a_model_without_a_head(tmp_path: Path) -> None:
    path = tmp_path / "no_mtp.gguf"
    write_synth(path, "qwen35-tiny", seed=0, overrides=SynthOverrides(mtp=False), force=False,
                report=lambda _: None)  # fmt: skip
    for draft in ("mtp", "mtp+lookup"):
        result = runner.invoke(app, ["generate", str(path), "hi", "--draft", draft])
        _one_line_error(result, "has no MTP head")
    result = runner.invoke(app, ["generate", str(path), "hi", "-n", "4"])  # default: none
    assert result.exit_code == 0 and len(result.stderr.strip().splitlines()) == 1
