"""CLI basics: version, help, global options and bench option errors."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

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
        (["bench", "kernels", "--activations", "int4"], "--activations takes a list of q8, f32"),
        (["bench", "kernels", "--path", "neon"], "unknown instruction path 'neon'"),
    ],
)
def test_impossible_options_are_one_line_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtpdec: error: ")
    assert message in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threads", "abc", "info", "x.gguf"], "Invalid value for '--threads'"),
        (["synth", "x.gguf"], "Missing option '--preset'"),
        (["bogus"], "No such command 'bogus'"),
    ],
)
def test_usage_errors_from_the_console_entry_are_one_line(args: list[str], message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "mtpdec", *args], capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtpdec: error: ") and message in lines[0]
    assert out.stdout == ""


def test_synth_force_replaces_only_regular_files(tmp_path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = runner.invoke(app, ["synth", str(fifo), "--preset", "qwen35-tiny", "--force"])
    assert result.exit_code == 2
    assert "not a regular file" in result.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_bench_kernels_refuses_a_path_the_cpu_cannot_run(monkeypatch) -> None:
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+sse2")  # a target with no AVX2 at all
    result = runner.invoke(app, ["bench", "kernels", "--path", "avx2"])
    assert result.exit_code == 2
    assert "this CPU cannot run the avx2 path (it can run: portable)" in result.stderr
