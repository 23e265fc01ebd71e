"""A minimal GGUF v2/v3 reader: one read-only memory map, zero-copy tensor views.

Layout (little-endian): magic ``GGUF``, u32 version, u64 tensor count, u64 kv count;
kv entries (string key, u32 value type, value); tensor infos (string name, u32 n_dims,
u64 ne[n_dims], u32 type, u64 offset); padding to ``general.alignment`` (default 32);
tensor data. Strings are u64 length + UTF-8 bytes.

Arrays of strings (a 262K-entry vocab) are only skipped at open time and decoded on
the first ``get`` of their key. Numeric arrays become numpy arrays. The ``gguf``
package is not imported here: it is slow to import.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtpdec.errors import MtpdecError
from mtpdec.quants.types import BLOCK_SIZES, GGMLType, type_name
from mtpdec.tensor import Tensor

if TYPE_CHECKING:
    from mtpdec.loader.config import ModelConfig

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_DIM = 1 << 40  # elements along one dimension (an empty tensor can be 0 x anything)
_HEADER = struct.Struct("<4sIQQ")

# GGUF value types.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY = range(10)
UINT64, INT64, FLOAT64 = 10, 11, 12

_SCALARS: dict[int, struct.Struct] = {
    UINT8: struct.Struct("<B"),
    INT8: struct.Struct("<b"),
    UINT16: struct.Struct("<H"),
    INT16: struct.Struct("<h"),
    UINT32: struct.Struct("<I"),
    INT32: struct.Struct("<i"),
    FLOAT32: struct.Struct("<f"),
    BOOL: struct.Struct("<?"),
    UINT64: struct.Struct("<Q"),
    INT64: struct.Struct("<q"),
    FLOAT64: struct.Struct("<d"),
}
_DTYPES: dict[int, str] = {
    UINT8: "u1",
    INT8: "i1",
    UINT16: "<u2",
    INT16: "<i2",
    UINT32: "<u4",
    INT32: "<i4",
    FLOAT32: "<f4",
    BOOL: "u1",
    UINT64: "<u8",
    INT64: "<i8",
    FLOAT64: "<f8",
}
_U32 = _SCALARS[UINT32].unpack_from
_U64 = _SCALARS[UINT64].unpack_from


class _Truncated(Exception):
    """Internal: a read ran past the end of the file."""


class LazyStrings:
    """An array of strings not decoded yet: ``count`` items starting at byte ``offset``."""

    __slots__ = ("offset", "count")

    def __init__(self, offset: int, count: int) -> None:
        self.offset = offset
        self.count = count


def _decode_strings(buf: mmap.mmap, offset: int, count: int) -> list[str]:
    """Decode ``count`` length-prefixed strings; undecodable bytes survive as surrogates."""
    out = []
    for _ in range(count):
        (n,) = _U64(buf, offset)
        offset += 8
        out.append(str(buf[offset : offset + n], "utf-8", "surrogateescape"))
        offset += n
    return out


class _Cursor:
    """Bounds-checked sequential reads from the map."""

    def __init__(self, buf: mmap.mmap, size: int, path: Path) -> None:
        self.buf = buf
        self.size = size
        self.path = path
        self.off = 0

    def need(self, nbytes: int) -> None:
        if self.off + nbytes > self.size:
            raise _Truncated

    def u32(self) -> int:
        self.need(4)
        (v,) = _U32(self.buf, self.off)
        self.off += 4
        return v

    def u64(self) -> int:
        self.need(8)
        (v,) = _U64(self.buf, self.off)
        self.off += 8
        return v

    def string(self) -> str:
        n = self.u64()
        self.need(n)
        s = str(self.buf[self.off : self.off + n], "utf-8", "surrogateescape")
        self.off += n
        return s

    def skip_strings(self, count: int) -> None:
        """Step over ``count`` strings: one length read per item, no decoding."""
        self.need(8 * count)  # each item has at least its length
        buf, off, last = self.buf, self.off, self.size - 8
        for _ in range(count):
            if off > last:  # (a length can be up to 2**64 - 1: check before reading)
                raise _Truncated
            off += 8 + _U64(buf, off)[0]
        self.off = off
        self.need(0)

    def value(self, vtype: int, key: str) -> Any:
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            return self.array(key)
        try:
            st = _SCALARS[vtype]
        except KeyError:
            raise MtpdecError(
                f"{self.path}: metadata key {key!r} has unknown value type {vtype}"
            ) from None
        self.need(st.size)
        (v,) = st.unpack_from(self.buf, self.off)
        self.off += st.size
        return v

    def array(self, key: str, lazy: bool = True) -> Any:
        """A numeric array as numpy; strings as LazyStrings (top level) or list of str."""
        vtype = self.u32()
        count = self.u64()
        if vtype == STRING:
            start = self.off
            self.skip_strings(count)
            return LazyStrings(start, count) if lazy else _decode_strings(self.buf, start, count)
        if vtype == ARRAY:
            self.need(count * 12)  # each nested array has at least type + count
            return [self.array(key, lazy=False) for _ in range(count)]
        try:
            dtype = np.dtype(_DTYPES[vtype])
        except KeyError:
            raise MtpdecError(
                f"{self.path}: metadata key {key!r} has unknown array type {vtype}"
            ) from None
        nbytes = count * dtype.itemsize
        self.need(nbytes)
        arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.off).copy()
        self.off += nbytes
        return arr.astype(bool) if vtype == BOOL else arr


class GGUFFile:
    """An open GGUF file: metadata, tensor views of one read-only map, and its config.

    ``tensors`` maps names to ``Tensor`` in file order; each ``raw`` is a read-only
    uint8 view ``(rows, row_bytes)`` of ``buffer`` (the whole file, no copy).
    ``config`` is the architecture config (set by ``open_gguf``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.version = 0
        self.alignment = DEFAULT_ALIGNMENT
        self.data_offset = 0
        self.file_size = 0
        self.tensors: dict[str, Tensor] = {}
        self.buffer: np.ndarray = np.empty(0, np.uint8)
        self._meta: dict[str, Any] = {}
        self._map: mmap.mmap | None = None
        self._config: ModelConfig | None = None

    # ---------------------------------------------------------------- metadata
    def get(self, key: str, default: Any = None) -> Any:
        """Metadata value: int/float/bool/str, numpy array for numeric arrays, list of
        str for string arrays (decoded on first access), list for nested arrays."""
        if key not in self._meta:
            return default
        value = self._meta[key]
        if isinstance(value, LazyStrings):
            value = self._meta[key] = _decode_strings(self._live_map(), value.offset, value.count)
        return value

    def keys(self) -> list[str]:
        return list(self._meta)

    def __contains__(self, key: str) -> bool:
        return key in self._meta

    def __iter__(self) -> Iterator[str]:
        return iter(self._meta)

    def array_len(self, key: str) -> int:
        """Item count of an array key without decoding it; KeyError if absent."""
        value = self._meta[key]
        return value.count if isinstance(value, LazyStrings) else len(value)

    @property
    def architecture(self) -> str:
        return str(self.get("general.architecture", ""))

    @property
    def config(self) -> ModelConfig:
        if self._config is None:
            raise MtpdecError(f"{self.path}: no model config (open the file with open_gguf)")
        return self._config

    # ---------------------------------------------------------------- tensors
    def tensor(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise MtpdecError(f"{self.path}: no tensor {name!r} in the file") from None

    # ---------------------------------------------------------------- lifetime
    def _live_map(self) -> mmap.mmap:
        if self._map is None:
            raise MtpdecError(f"{self.path}: file is closed")
        return self._map

    def close(self) -> None:
        """Drop the file's views; the map is unmapped once no tensor view outlives it."""
        self.tensors = {}
        self.buffer = np.empty(0, np.uint8)
        m, self._map = self._map, None
        if m is not None:
            # Views handed out earlier keep the mapping alive; it is freed with them.
            with contextlib.suppress(BufferError):
                m.close()

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, v{self.version}, {len(self.tensors)} tensors)"


def read_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Map and parse a GGUF file (no architecture checks); MtpdecError on a bad file."""
    path = Path(path)
    if not path.exists():
        raise MtpdecError(f"{path}: no such file")
    if path.is_dir():
        raise MtpdecError(f"{path}: is a directory, not a GGUF file")
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < _HEADER.size:
                _check_magic(path, fh.read(4))
                raise MtpdecError(f"{path}: truncated file: {size} bytes, header needs 24")
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise MtpdecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    f = GGUFFile(path)
    f._map, f.file_size = buf, size
    try:
        _parse(f, buf, size)
    except _Truncated:
        f.close()
        raise MtpdecError(f"{path}: truncated file: header ends past byte {size}") from None
    except BaseException:
        f.close()
        raise
    return f


def _check_magic(path: Path, magic: bytes) -> None:
    if magic != MAGIC:
        raise MtpdecError(f"{path}: not a GGUF file (magic {magic!r}, expected {MAGIC!r})")


def _parse(f: GGUFFile, buf: mmap.mmap, size: int) -> None:
    magic, version, n_tensors, n_kv = _HEADER.unpack_from(buf, 0)
    _check_magic(f.path, magic)
    if version not in VERSIONS:
        if version & 0xFFFF == 0 and struct.unpack("<I", struct.pack(">I", version))[0] in (2, 3):
            raise MtpdecError(f"{f.path}: big-endian GGUF files are not supported")
        raise MtpdecError(f"{f.path}: unsupported GGUF version {version} (supported: 2, 3)")
    f.version = version
    cur = _Cursor(buf, size, f.path)
    cur.off = _HEADER.size
    cur.need(n_kv * 12 + n_tensors * 24)  # smallest possible kv entry / tensor info

    for _ in range(n_kv):
        key = cur.string()
        vtype = cur.u32()
        if key in f._meta:
            raise MtpdecError(f"{f.path}: duplicate metadata key {key!r}")
        f._meta[key] = cur.value(vtype, key)

    alignment = f._meta.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise MtpdecError(f"{f.path}: general.alignment {alignment!r} is not a power of two")
    f.alignment = alignment

    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.u32()
        if not 1 <= n_dims <= MAX_DIMS:
            raise MtpdecError(f"{f.path}: tensor {name!r} has {n_dims} dimensions (1..4 allowed)")
        ne = tuple(cur.u64() for _ in range(n_dims))
        type_id = cur.u32()
        offset = cur.u64()
        infos.append((name, ne, type_id, offset))

    f.data_offset = -(-cur.off // alignment) * alignment
    f.buffer = np.frombuffer(buf, dtype=np.uint8)
    seen: set[str] = set()
    for name, ne, type_id, offset in infos:
        if name in seen:
            raise MtpdecError(f"{f.path}: duplicate tensor {name!r}")
        seen.add(name)
        f.tensors[name] = _tensor(f, name, ne, type_id, offset)


def _tensor(f: GGUFFile, name: str, ne: tuple[int, ...], type_id: int, offset: int) -> Tensor:
    """A zero-copy view of one tensor's bytes, checked against the file size."""
    try:
        elems, block_bytes = BLOCK_SIZES[GGMLType(type_id)]
    except ValueError:
        raise MtpdecError(f"{f.path}: tensor {name!r} has unknown GGML type id {type_id}") from None
    if max(ne) > MAX_DIM:
        raise MtpdecError(f"{f.path}: tensor {name!r} has a dimension of {max(ne)} (at most 2**40)")
    cols = ne[0]
    if cols % elems:
        raise MtpdecError(
            f"{f.path}: tensor {name!r} row length {cols} is not a multiple of the "
            f"{type_name(type_id)} block ({elems})"
        )
    rows = 1
    for n in ne[1:]:
        rows *= n
    row_bytes = cols // elems * block_bytes
    if offset % f.alignment:
        raise MtpdecError(
            f"{f.path}: tensor {name!r} data offset {offset} is not aligned to {f.alignment}"
        )
    start = f.data_offset + offset
    end = start + rows * row_bytes
    if end > f.file_size:
        raise MtpdecError(
            f"{f.path}: truncated file: tensor {name!r} data ends at byte {end}, "
            f"file has {f.file_size}"
        )
    raw = f.buffer[start:end].reshape(rows, row_bytes)
    return Tensor(name=name, ggml_type=type_id, shape=tuple(reversed(ne)), raw=raw)
