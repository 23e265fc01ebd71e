"""``CopyingCpuOps``: the CPU ops whose ``upload`` / ``to_host`` copy, standing in for a
device, so that a hybrid model with it as the trunk moves real arrays across its FFN
boundary. (The GPU backend itself runs without a GPU through tests/fake_cuda.py.)"""

from __future__ import annotations

import numpy as np

from mtpdec.cpu.backend import CpuOps


class CopyingCpuOps(CpuOps):
    """CPU ops standing in for a device: arrays cross ``upload`` / ``to_host`` as copies,
    counted in ``crossings``."""

    name = "stand-in"

    def __init__(self) -> None:
        self.crossings = 0

    def upload(self, a: np.ndarray) -> np.ndarray:
        self.crossings += 1
        return np.array(a, copy=True)

    def to_host(self, a: np.ndarray) -> np.ndarray:
        self.crossings += 1
        return np.array(a, copy=True)
