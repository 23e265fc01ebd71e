"""Public n-input MatVec: ``Y[n, rows] = X[n, cols] @ dequant(W)^T`` on the CPU.

Two activation modes, chosen explicitly per call:

- ``q8`` (default): each input row is rounded to 8 bits as llama.cpp does (Q8_K for
  K-format weights, Q8_0 for the 32-weight formats; ``mtpdec.quants.activations``) and
  multiplied with integer dot products (``mtpdec.cpu.ikernel``), in groups of 8, 4, 2 or
  1 inputs per weight read. F32/F16/BF16 weights have no integer kernel: their inputs
  stay float32 (llama.cpp rounds them to fp16 there).
- ``f32``: exact float32 inputs through the float kernels (``mtpdec.cpu.kernel``) in
  groups of 4, 2 or 1.

A group narrower than its kernel is padded by repeating its last input (the padded
output is discarded), as speculative.md specifies. In both modes every input's output
row is bitwise identical whatever n and whatever its position in a group.
"""

from __future__ import annotations

import functools

import numpy as np

from mtpdec.cpu.actquant import quantize_rows, words_rows
from mtpdec.cpu.decoders import KERNEL_BLOCKS
from mtpdec.cpu.idecoders import INT_FORMATS, PAIRS, PLAIN, WORDS, X8, plain_layout
from mtpdec.cpu.ikernel import make_idriver
from mtpdec.cpu.isa import check_path, has_dpbusd, host_path
from mtpdec.cpu.kernel import make_driver, subblock_sums
from mtpdec.errors import MtpdecError
from mtpdec.quants.activations import Q8_K, ActivationKind, QuantizedRows
from mtpdec.quants.types import GGMLType, ggml_type, type_name
from mtpdec.settings import apply_threads
from mtpdec.tensor import Tensor

ACTIVATION_MODES = ("q8", "f32")
_NO_SUMS = np.zeros((1, 8), dtype=np.float32)  # xsums for formats without a min term

# Kernel widths (inputs per weight read) of each mode; wider groups are padded.
FLOAT_WIDTHS = (1, 2, 4)
INT_WIDTHS = (1, 2, 4, 8)


def group_widths(n: int, widths: tuple[int, ...] = FLOAT_WIDTHS) -> list[int]:
    """Kernel widths covering n inputs: the widest first while n allows, then the
    narrowest width that holds the rest (3 -> one padded 4; with 8: 5..7 -> a padded 8)."""
    top = widths[-1]
    out = [top] * (n // top)
    rest = n % top
    if rest:
        out.append(next(w for w in widths if w >= rest))
    return out


def check_activations(mode: str) -> str:
    """``mode`` if it is an activation mode; MtpdecError naming the known ones otherwise."""
    if mode not in ACTIVATION_MODES:
        raise MtpdecError(f"unknown activations {mode!r} (known: {', '.join(ACTIVATION_MODES)})")
    return mode


def check_weight(w: Tensor) -> GGMLType:
    """The weight's type, after checking the kernel can read it (MtpdecError otherwise)."""
    t = ggml_type(w.ggml_type, tensor=w.name)
    elems = KERNEL_BLOCKS[t].elems
    if w.cols % elems:
        raise MtpdecError(
            f"tensor {w.name!r}: {type_name(t)} rows of {w.cols} elements are not a multiple of {elems}"
        )
    raw = w.raw
    if raw.dtype != np.uint8 or raw.ndim != 2 or not raw.flags.c_contiguous:
        raise MtpdecError(
            f"tensor {w.name!r}: raw bytes must be a C-contiguous uint8 (rows, row_bytes)"
        )
    if raw.shape[1] != w.cols // elems * KERNEL_BLOCKS[t].nbytes:
        raise MtpdecError(
            f"tensor {w.name!r}: {raw.shape[1]} bytes per row do not fit {w.cols} {t.name} elements"
        )
    return t


class InputRows:
    """float32 (n, cols) input rows and their 8-bit forms, each made at most once.

    One InputRows is shared by every matrix that reads the same input (q/k/v, gate/up,
    the GDN input projections), so each row is quantized once per call and kind.
    """

    def __init__(self, x: np.ndarray) -> None:
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self._quantized: dict[ActivationKind, QuantizedRows] = {}
        self._padded: dict[ActivationKind, tuple[QuantizedRows, tuple[int, ...]]] = {}

    @property
    def n(self) -> int:
        return self.x.shape[0]

    def quantized(self, kind: ActivationKind) -> QuantizedRows:
        """The rows rounded to ``kind`` (Q8_K, Q8_K_WORDS or Q8_0; word order is made
        from the Q8_K rows)."""
        q = self._quantized.get(kind)
        if q is None:
            words = kind.words
            q = words_rows(self.quantized(Q8_K)) if words else quantize_rows(self.x, kind)
            self._quantized[kind] = q
        return q

    def padded(self, kind: ActivationKind) -> tuple[QuantizedRows, tuple[int, ...]]:
        """The rows rounded to ``kind``, the last one repeated to fill the integer kernel
        widths that cover them (``group_widths``), and those widths; made once for every
        matrix that reads these rows (a repeated row rounds to the same bits)."""
        got = self._padded.get(kind)
        if got is None:
            widths = int_group_widths(self.n)
            if kind.words:
                q = words_rows(self.padded(Q8_K)[0])
            else:
                x = np.empty((sum(widths), self.x.shape[1]), dtype=np.float32)
                x[: self.n] = self.x
                x[self.n :] = self.x[-1]
                q = quantize_rows(x, kind)
            got = self._padded[kind] = (q, widths)
        return got


@functools.cache
def int_group_widths(n: int) -> tuple[int, ...]:
    """``group_widths(n, INT_WIDTHS)``, computed once per n."""
    return tuple(group_widths(n, INT_WIDTHS))


# the layout each repacked type takes in q8 mode (``mtpdec.cpu.repack``)
REPACKED_LAYOUT = {
    GGMLType.Q4_K: X8,
    GGMLType.Q8_0: X8,
    GGMLType.Q4_0: X8,
    GGMLType.Q5_0: X8,
    GGMLType.Q6_K: WORDS,
}


def repackable(t: GGMLType, path: str) -> bool:
    """Whether q8 mode repacks type t on this path. (Q8_0's group kernel multiplies
    q + 128, up to 255: exact only with ``vpdpbusd``.)"""
    if (t, REPACKED_LAYOUT.get(t)) not in INT_FORMATS:
        return False
    return has_dpbusd(path) or t != GGMLType.Q8_0


# Matrices up to this size run their kernels in the calling thread: a parallel launch
# costs ~1 us on an idle 2-core machine and up to milliseconds when the other core is
# busy, more than the ~10 us of work in such a matrix (tiny models' layers). Models
# choose their own limit (``mtpdec.cpu.linear.Numerics.serial_max_bytes``).
SERIAL_MAX_BYTES = 256 << 10


def as_rows(x: np.ndarray | InputRows) -> InputRows:
    return x if isinstance(x, InputRows) else InputRows(x)


class MatVec:
    """A weight checked once, for repeated ``Y = X @ dequant(W)^T`` without per-call checks.

    ``activations``: "q8" or "f32" (module docstring); ``path``: the integer kernels'
    instruction path (``mtpdec.cpu.isa``; default: the host's widest). ``repack``: in q8
    mode, copy a Q4_K, Q8_0, Q5_0 or Q4_0 matrix once into interleaved groups of 8 rows,
    a Q6_K matrix into word order (``mtpdec.cpu.repack``: RAM equal to the matrix, much
    less work per input; the file pages it came from are given back, unless
    ``keep_file_pages``: a tied LM head, whose file rows the embedding lookup still reads);
    the rows % 8 leftover rows of a grouped matrix stay in the plain layout.
    ``parallel``: run the kernels on the worker threads (default: for matrices above
    SERIAL_MAX_BYTES; the same bits either way).
    ``__call__(x)``: x float32 (n, cols) or an InputRows -> new float32 (n, rows).
    """

    def __init__(
        self,
        w: Tensor,
        activations: str = "q8",
        path: str | None = None,
        repack: bool = True,
        keep_file_pages: bool = False,
        parallel: bool | None = None,
    ) -> None:
        self.type = check_weight(w)
        self.keep_file_pages = keep_file_pages
        self.raw = w.raw
        self.rows, self.cols = w.raw.shape[0], w.cols
        self.parallel = w.raw.nbytes > SERIAL_MAX_BYTES if parallel is None else parallel
        check_activations(activations)
        self.integer = activations == "q8" and any(t == self.type for t, _ in INT_FORMATS)
        self.activations = activations
        if self.integer:
            self.path = check_path(path) if path is not None else host_path()
            self.layout = plain_layout(self.type, self.cols)
            if repack and self.rows >= 8 and repackable(self.type, self.path):
                from mtpdec.cpu.repack import REPACKERS
                from mtpdec.loader.pages import release_pages

                self.layout = REPACKED_LAYOUT[self.type]
                self.packed, self.tail = REPACKERS[self.type](self.raw)
                if not keep_file_pages:
                    release_pages(self.raw)  # never read from the file again
                self.split = self.rows - self.tail.shape[0]
            self.kind = INT_FORMATS[self.type, self.layout].act
            self._drivers: dict[int, tuple] = {}  # width -> (driver, tail driver or None)
        else:
            self.path = "float"
            self._mins = KERNEL_BLOCKS[self.type].mins

    def __call__(self, x: np.ndarray | InputRows, out: np.ndarray | None = None) -> np.ndarray:
        rows = as_rows(x)
        apply_threads()
        if not self.integer:
            if out is None:
                out = np.empty((rows.n, self.rows), dtype=np.float32)
            self._run_float(rows.x, out)
            return out
        if rows.n in INT_WIDTHS:  # decode and most verifies: one call, no grouping
            q = rows.quantized(self.kind)
            if out is None:
                out = np.empty((rows.n, self.rows), dtype=np.float32)
            self._int_call(rows.n, (q.q, q.d, q.sums, q.dsums), out)
            return out
        q, widths = rows.padded(self.kind)
        full = np.empty((q.n, self.rows), dtype=np.float32)
        start = 0
        for width in widths:
            self._int_call(
                width, q.select(slice(start, start + width)), full[start : start + width]
            )
            start += width
        if out is None:
            return full[: rows.n]
        out[:] = full[: rows.n]
        return out

    def _int_call(self, width: int, rows: tuple[np.ndarray, ...], dest: np.ndarray) -> None:
        """One integer-kernel call for ``width`` inputs (q, d, sums, dsums) into dest."""
        drivers = self._drivers.get(width)
        if drivers is None:
            t = int(self.type)
            par = self.parallel
            main = make_idriver(t, self.layout, width, self.path, par)
            grouped = self.layout == X8  # (word order has no leftover rows)
            tail = make_idriver(t, PLAIN, width, self.path, par) if grouped else None
            drivers = self._drivers[width] = (main, tail)
        main, tail = drivers
        main(self.raw if self.layout in (PLAIN, PAIRS) else self.packed, *rows, dest)
        if tail and self.tail.shape[0]:
            scratch = np.empty((width, self.tail.shape[0]), dtype=np.float32)
            tail(self.tail, *rows, scratch)
            dest[:, self.split :] = scratch

    def _run_float(self, xs: np.ndarray, out: np.ndarray) -> None:
        xsums = subblock_sums(xs) if self._mins else _NO_SUMS

        def call(width: int, sel: slice | np.ndarray, dest: np.ndarray) -> None:
            sums = xsums[sel] if xsums is not _NO_SUMS else xsums
            make_driver(int(self.type), width, 1, self.parallel)(self.raw, xs[sel], sums, dest)

        _grouped(out, FLOAT_WIDTHS, call)


def _grouped(out: np.ndarray, widths: tuple[int, ...], call) -> None:
    """Cover out's n rows with kernel calls ``call(width, selection, dest)`` of the given
    widths; a group narrower than its kernel repeats its last input into scratch rows."""
    n, rows = out.shape
    if n in widths:  # one call (decode, most verifies): no grouping work
        call(n, slice(0, n), out)
        return
    start = 0
    for width in group_widths(n, widths):
        real = min(width, n - start)
        if real == width:
            call(width, slice(start, start + width), out[start : start + width])
        else:
            pad = np.repeat(np.arange(start, n), [1] * (real - 1) + [width - real + 1])
            scratch = np.empty((width, rows), dtype=np.float32)
            call(width, pad, scratch)
            out[start:n] = scratch[:real]
        start += real


def matvec(
    w: Tensor, x: np.ndarray, out: np.ndarray | None = None, activations: str = "q8"
) -> np.ndarray:
    """``Y = X @ dequant(W)^T``.

    w:   a matrix Tensor (rows, cols) of a supported type.
    x:   float32 (n, cols) or (cols,); F32/F16/BF16 weights need cols % 16 == 0.
    out: optional float32 (n, rows) C-contiguous result buffer.
    activations: "q8" (inputs rounded to 8 bits, integer dot products) or "f32".
    Returns float32 (n, rows) (or (rows,) for 1-D x).
    """
    mv = MatVec(w, activations)
    x = np.asarray(x)
    if x.ndim not in (1, 2):
        raise MtpdecError(f"input must be (cols,) or (n, cols), got shape {x.shape}")
    squeeze = x.ndim == 1
    xs = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float32)
    n, cols = xs.shape
    if cols != w.cols:
        raise MtpdecError(f"tensor {w.name!r} has {w.cols} columns but the input has {cols}")
    if out is not None and (
        out.shape != (n, mv.rows) or out.dtype != np.float32 or not out.flags.c_contiguous
    ):
        raise MtpdecError(f"out must be a C-contiguous float32 array of shape {(n, mv.rows)}")
    out = mv(xs, out)
    return out[0] if squeeze else out
