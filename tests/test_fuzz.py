"""A fast slice of the GGUF fuzz run (``scripts/fuzz_gguf.py`` runs the long one):
every mutant ends in a loaded model or a one-line MtpdecError, in worker processes that
would report a crash or a hang; and the harness does report those."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from gguf_mutants import KINDS, exercise, fuzz_sources, run_mutants

SLICE = 600


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[Path]:
    paths = fuzz_sources(tmp_path_factory.mktemp("fuzz"))
    for path in paths:  # compiles the kernels into Numba's disk cache for the workers
        assert exercise(path) == "ok"
    return paths


def test_mutants_load_or_fail_with_one_line(sources):
    report = run_mutants(sources, SLICE, seed=12345, workers=2, timeout=120)
    assert report.tried == SLICE
    assert report.failures == []
    kinds = {k for k, _ in report.outcomes}
    assert kinds == set(KINDS)
    outcomes = {o for _, o in report.outcomes}
    assert outcomes == {"ok", "error"}  # some mutants still load; most are refused


def misbehave(path: Path) -> str:
    """A stand-in check: the mutant's bytes pick a crash, a hang, an exception or ok."""
    pick = sum(path.read_bytes()[:64]) % 4
    if pick == 0:
        os.abort()
    if pick == 1:
        time.sleep(30)
    if pick == 2:
        raise ValueError("boom")
    return "ok"


def test_harness_reports_crashes_hangs_and_exceptions(sources):
    report = run_mutants(sources, 12, seed=1, workers=2, timeout=3, check=misbehave)
    assert report.tried == 12
    whats = {what.split(":")[0].split(" (")[0] for _, _, what in report.failures}
    assert whats <= {"worker died", "hang", "ValueError"} and len(whats) == 3, whats
    assert len(report.failures) == 12 - sum(n for (_, o), n in report.outcomes.items() if o == "ok")
