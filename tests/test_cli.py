"""CLI basics: version, help, global options and bench option errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mtpdec import __version__
from mtpdec.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"mtpdec {__version__}"


@pytest.mark.parametrize("args", [[], ["info"], ["synth"], ["bench"], ["bench", "kernels"]])
def test_every_command_has_help(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threads", "-1", "info", "x.gguf"], "--threads must be >= 0"),
        (["--threads", "100000", "info", "x.gguf"], "exceeds"),
        (["bench", "kernels", "--matrix-mb", "8"], "--matrix-mb must be >= 64"),
        (["bench", "kernels", "--n", "1,x"], "--n must be comma-separated integers"),
        (["bench", "kernels", "--n", "0"], "--n values must be >= 1"),
        (["bench", "kernels", "--formats", "Q9_9"], "unknown format 'Q9_9'"),
        (["bench", "kernels", "--formats", "Q4_1"], "format Q4_1 has no kernel"),
        (["bench", "kernels", "--repeats", "0"], "--repeats must be >= 1"),
    ],
)
def test_impossible_options_are_one_line_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtpdec: error: ")
    assert message in lines[0]
