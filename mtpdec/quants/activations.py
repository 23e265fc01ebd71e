"""Activation rows rounded to 8 bits, as llama.cpp's CPU backend does before a quantized
matmul (``quant-formats.md``, "Activation quantization"): the numpy reference.

Two kinds, picked by the weight format (``ACTIVATION_KIND``):

- ``Q8_K`` (Q4_K / Q5_K / Q6_K weights), llama.cpp's rule applied per 128 values where
  llama.cpp applies it per 256 (a finer scheme, two scales per 256-weight block): ``max``
  = the first value of largest magnitude; all zero -> d = 0, q = 0; else
  ``iscale = -127 / max`` (float32), ``q = min(127, rint(iscale * x))`` (half to even),
  ``d = 1 / iscale``; ``sums`` = sum of q over each 16 values. (ggml's
  ``quantize_row_q8_K_ref``, which x86 runs, with QK_K = 128.) Why: with one scale per
  256, mtpdec's logits sit exactly as far from a float64 forward as llama.cpp's (median
  correlation 0.99913 vs 0.99913 on Gemma-3-270M, 0.999835 vs 0.999838 on a synth qwen35);
  per 128 they sit closer (0.99941, 0.999865), for one more int-to-float conversion per
  block and input in the kernels. ``Q8_K256`` keeps llama.cpp's own block for comparison.
- ``Q8_0`` (Q8_0 / Q4_0 / Q5_0 / Q5_1 weights), per 32 values: ``amax = max |x|``,
  ``d = fp16(amax / 127)``, ``q = rint(x * (127 / amax))`` (half to even; 0 when amax is
  0), ``sums`` = sum of q over the 32. This is ggml's x86 ``quantize_row_q8_0`` (AVX2),
  which llama.cpp runs on these machines; ggml's portable C reference differs only in
  rounding exact .5 ties away from zero and multiplying by ``1 / d`` instead of
  ``127 / amax``. Q5_1 weights also read these rows (llama.cpp uses Q8_1, the same
  values with the sum stored scaled); the kernel uses the integer sum.

A ``QuantizedRows`` holds n rows: ``q`` int8 (n, cols), ``d`` float32 (n, cols // block),
``sums`` int16 (n, cols // sum_span), and ``dsums`` float32, each sum times its block's d
(the kernels take the weights' min and offset terms from it). ``mtpdec.cpu.actquant`` is the fast version;
tests hold the two bitwise equal.

``Q8_K_WORDS`` holds the same Q8_K rows in the form the word-order Q6_K kernel reads
(``mtpdec.cpu.idecoders_words``): ``q`` holds x + 128 as unsigned bytes (the bits of
x ^ 0x80), and in each 256-value block byte ``64 s + 4 j + t`` holds value
``16 j + 4 s + t`` (s, t < 4, j < 16: 4-byte words transposed, so that int32 lane j of
every 64-byte piece belongs to the 16 values of sum j); ``d``, ``sums`` and ``dsums`` are
those of Q8_K. Rows need cols % 256 == 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtpdec.errors import MtpdecError
from mtpdec.quants.types import GGMLType

F32 = np.float32


@dataclass(frozen=True)
class ActivationKind:
    """Block length of the scale and span of the integer sums of one activation kind;
    ``words``: the word-order form (module docstring)."""

    ggml_type: GGMLType
    block: int
    sum_span: int
    words: bool = False


Q8_K = ActivationKind(GGMLType.Q8_K, 128, 16)
Q8_K_WORDS = ActivationKind(GGMLType.Q8_K, 128, 16, words=True)  # Q6_K's word-order kernel
Q8_K256 = ActivationKind(GGMLType.Q8_K, 256, 16)  # llama.cpp's block; not used by kernels
Q8_0 = ActivationKind(GGMLType.Q8_0, 32, 32)

# weight format -> the activation kind its integer kernel reads
ACTIVATION_KIND: dict[GGMLType, ActivationKind] = {
    GGMLType.Q4_K: Q8_K,
    GGMLType.Q5_K: Q8_K,
    GGMLType.Q6_K: Q8_K,
    GGMLType.Q8_0: Q8_0,
    GGMLType.Q4_0: Q8_0,
    GGMLType.Q5_0: Q8_0,
    GGMLType.Q5_1: Q8_0,
}


@dataclass(frozen=True)
class QuantizedRows:
    """n activation rows rounded to 8 bits (see the module docstring for the fields)."""

    kind: ActivationKind
    q: np.ndarray
    d: np.ndarray
    sums: np.ndarray
    dsums: np.ndarray

    @property
    def n(self) -> int:
        return self.q.shape[0]

    def select(self, rows: slice | np.ndarray) -> tuple[np.ndarray, ...]:
        """(q, d, sums, dsums) of the selected rows, as the kernels take them."""
        return self.q[rows], self.d[rows], self.sums[rows], self.dsums[rows]

    def dequantize(self) -> np.ndarray:
        """float32 (n, cols), in element order: d * q, the values the integer kernels
        multiply by."""
        n, cols = self.q.shape
        q = element_order(self.q ^ np.int8(-128)) if self.kind.words else self.q
        blocks = q.reshape(n, -1, self.kind.block).astype(F32)
        return (blocks * self.d[:, :, None]).reshape(n, cols)


def word_order(q: np.ndarray) -> np.ndarray:
    """int8 (n, cols) in element order -> word order (module docstring), cols % 256 == 0."""
    n, cols = q.shape
    words = q.reshape(n, cols // 256, 16, 4, 4).transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(words).reshape(n, cols)


def element_order(q: np.ndarray) -> np.ndarray:
    """The inverse of ``word_order``."""
    n, cols = q.shape
    values = q.reshape(n, cols // 256, 4, 16, 4).transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(values).reshape(n, cols)


def check_words(cols: int) -> None:
    if cols % 256:
        raise MtpdecError(f"word-order Q8_K rows need a multiple of 256 values, got {cols}")


def words_rows_ref(rows: QuantizedRows) -> QuantizedRows:
    """Q8_K rows -> the same values as Q8_K_WORDS rows (numpy reference)."""
    check_words(rows.q.shape[1])
    q = word_order(rows.q) ^ np.int8(-128)
    return QuantizedRows(Q8_K_WORDS, q, rows.d, rows.sums, rows.dsums)


def check_rows(x: np.ndarray, kind: ActivationKind) -> np.ndarray:
    """x as float32 (n, cols) with cols a multiple of the kind's block; MtpdecError else."""
    x = np.asarray(x, dtype=F32)
    if x.ndim != 2 or x.shape[1] % kind.block:
        raise MtpdecError(
            f"{kind.ggml_type.name} activations need rows of a multiple of {kind.block} "
            f"values, got shape {x.shape}"
        )
    return x


def quantized_rows(
    kind: ActivationKind, q: np.ndarray, d: np.ndarray, sums: np.ndarray
) -> QuantizedRows:
    """The QuantizedRows of q, d and sums, with dsums computed (float32 d * sum)."""
    per_block = kind.block // kind.sum_span
    dsums = (np.repeat(d, per_block, axis=1) * sums.astype(F32)).astype(F32)
    return QuantizedRows(kind, q, d, sums, dsums)


def quantize_q8_k_ref(x: np.ndarray, kind: ActivationKind = Q8_K) -> QuantizedRows:
    """float32 (n, cols) -> Q8_K rows (``Q8_K``: a scale per 128 values; ``Q8_K256``:
    llama.cpp's 256), cols a multiple of the block (numpy reference)."""
    x = check_rows(x, kind)
    n, cols = x.shape
    blocks = x.reshape(-1, kind.block)
    first = np.argmax(np.abs(blocks), axis=1)  # first value of the largest magnitude
    top = blocks[np.arange(len(blocks)), first]
    zero = top == 0
    with np.errstate(divide="ignore"):
        iscale = np.where(zero, F32(0), F32(-127) / np.where(zero, F32(1), top)).astype(F32)
        d = np.where(zero, F32(0), F32(1) / np.where(zero, F32(1), iscale)).astype(F32)
    q = np.minimum(np.rint(blocks * iscale[:, None]), F32(127)).astype(np.int8)
    sums = q.reshape(-1, 16).sum(axis=1, dtype=np.int32).astype(np.int16)
    return quantized_rows(kind, q.reshape(n, cols), d.reshape(n, -1), sums.reshape(n, -1))


def quantize_q8_0_ref(x: np.ndarray) -> QuantizedRows:
    """float32 (n, cols) -> Q8_0 rows, cols % 32 == 0 (numpy reference)."""
    x = check_rows(x, Q8_0)
    n, cols = x.shape
    blocks = x.reshape(-1, 32)
    amax = np.abs(blocks).max(axis=1)
    d = (amax / F32(127)).astype(np.float16).astype(F32)
    with np.errstate(divide="ignore"):
        inv = np.where(amax == 0, F32(0), F32(127) / np.where(amax == 0, F32(1), amax))
    q = np.rint(blocks * inv.astype(F32)[:, None]).astype(np.int8)
    sums = q.sum(axis=1, dtype=np.int32).astype(np.int16)
    return quantized_rows(Q8_0, q.reshape(n, cols), d.reshape(n, -1), sums.reshape(n, -1))


def quantize_rows_ref(x: np.ndarray, kind: ActivationKind) -> QuantizedRows:
    """float32 (n, cols) -> 8-bit rows of ``kind`` (numpy reference of every kind)."""
    if kind.words:
        return words_rows_ref(quantize_q8_k_ref(x, Q8_K))
    if kind.ggml_type == GGMLType.Q8_K:
        return quantize_q8_k_ref(x, kind)
    return quantize_q8_0_ref(x)
