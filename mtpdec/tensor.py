"""A typed, zero-copy view of one tensor's raw bytes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tensor:
    """One GGUF tensor.

    name:      GGUF tensor name, e.g. ``blk.0.attn_q.weight``.
    ggml_type: GGML type id (``gguf.GGMLQuantizationType`` value).
    shape:     numpy order, outermost first: ``(rows, cols)`` for a matrix with GGUF
               ``ne = [cols, rows]``; ``(n,)`` for a vector.
    raw:       uint8 array of the tensor's bytes, shape ``(rows, row_bytes)`` for
               matrices (``(1, nbytes)`` for vectors); usually a view of the mmapped file.
    """

    name: str
    ggml_type: int
    shape: tuple[int, ...]
    raw: np.ndarray

    @property
    def rows(self) -> int:
        return int(np.prod(self.shape[:-1], dtype=np.int64)) if len(self.shape) > 1 else 1

    @property
    def cols(self) -> int:
        return int(self.shape[-1])

    @property
    def nbytes(self) -> int:
        return int(self.raw.nbytes)
