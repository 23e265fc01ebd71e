"""GGUF mutants for fuzzing mtpdec's loader, and a process-isolated runner for them.

``scan(data)`` maps a well-formed GGUF's header into fields (byte offset, size, role)
and entries (the byte spans of each metadata pair and tensor info); ``mutant(data,
layout, rng)`` returns one mutated copy and the name of its mutation:

- ``truncate``: cut at an entry or field boundary (+-1), or inside the tensor data;
- ``flip``: 1-8 random bytes of the header changed;
- ``extreme``: a count, length, type, dimension, offset or metadata value set to 0, 1,
  its value +-1, 2**31, 2**32 - 1, 2**63 or 2**64 - 1 (the values that fit its size; a
  float value gets 0, -1, +-1e30, inf or nan);
- ``splat``: one of those values written at a random header offset (4 or 8 bytes);
- ``duplicate`` / ``drop``: a metadata pair or tensor info repeated or removed (counts
  adjusted, tensor data kept aligned);
- ``misalign``: one tensor's data offset moved by 1..alignment-1 bytes.

``run_mutants`` runs mutants in worker processes: each must end in a loaded model (one
forward token, tokenizer round trip) or an ``MtpdecError`` within ``timeout`` seconds;
anything else (another exception, a dead worker, a timeout) is a failure. Used by
``tests/test_fuzz.py`` (a fast slice) and ``scripts/fuzz_gguf.py`` (long runs).
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import struct
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

U32_VALUES = (0, 1, 2**31, 2**32 - 1)
U64_VALUES = U32_VALUES + (2**32, 2**63, 2**64 - 1)
SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY = 8, 9
FLOATS = {6: "<f", 12: "<d"}  # GGUF float32, float64
FLOAT_VALUES = (0.0, -1.0, 1e30, -1e30, float("inf"), float("nan"))
KINDS = ("truncate", "flip", "extreme", "splat", "duplicate", "drop", "misalign")


@dataclass
class Layout:
    """Where things are in a GGUF header.

    fields: (offset, size in bytes, role) of every integer field a mutation may target.
    kv, tensors: byte spans [start, end) of each metadata pair / tensor info.
    offsets: byte offset of each tensor info's data-offset field.
    data: start of the tensor data; alignment: ``general.alignment`` (default 32).
    """

    fields: list[tuple[int, int, str]] = field(default_factory=list)
    kv: list[tuple[int, int]] = field(default_factory=list)
    tensors: list[tuple[int, int]] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    data: int = 0
    alignment: int = 32


def scan(data: bytes) -> Layout:
    """The Layout of a well-formed little-endian GGUF v3 file."""
    lay = Layout()
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    lay.fields += [(4, 4, "version"), (8, 8, "tensor count"), (16, 8, "kv count")]
    off = 24

    def u32(role: str) -> int:
        nonlocal off
        lay.fields.append((off, 4, role))
        off += 4
        return struct.unpack_from("<I", data, off - 4)[0]

    def u64(role: str) -> int:
        nonlocal off
        lay.fields.append((off, 8, role))
        off += 8
        return struct.unpack_from("<Q", data, off - 8)[0]

    def string(role: str) -> bytes:
        nonlocal off
        n = u64(role)
        off += n
        return data[off - n : off]

    def value(vtype: int) -> object:
        nonlocal off
        if vtype == STRING:
            return string("string length")
        if vtype == ARRAY:
            atype, count = u32("array type"), u64("array count")
            return [value(atype) for _ in range(count)]
        size = SCALAR_SIZES[vtype]
        raw = data[off : off + size]
        lay.fields.append((off, size, "float value" if vtype in FLOATS else "value"))
        off += size
        return int.from_bytes(raw, "little") if vtype not in FLOATS else None

    for _ in range(n_kv):
        start = off
        key = string("key length")
        v = value(u32("value type"))
        if key == b"general.alignment" and isinstance(v, int):
            lay.alignment = v
        lay.kv.append((start, off))
    for _ in range(n_tensors):
        start = off
        string("tensor name length")
        for _ in range(u32("n_dims")):
            u64("dimension")
        u32("tensor type")
        lay.offsets.append(off)
        u64("data offset")
        lay.tensors.append((start, off))
    lay.data = -(-off // lay.alignment) * lay.alignment
    return lay


def rebuild(data: bytes, lay: Layout, kv: list[bytes], tensors: list[bytes]) -> bytes:
    """A file with these metadata pairs and tensor infos, the original tensor data
    re-aligned after them."""
    head = data[:8] + struct.pack("<QQ", len(tensors), len(kv)) + b"".join(kv + tensors)
    pad = -len(head) % lay.alignment
    return head + bytes(pad) + data[lay.data :]


def mutant(data: bytes, lay: Layout, rng: np.random.Generator) -> tuple[bytes, str]:
    """One mutated copy of ``data`` (see the module docstring) and its kind."""
    kind = KINDS[rng.integers(len(KINDS))]
    if kind == "truncate":
        if rng.random() < 0.8:
            points = [o for o, _, _ in lay.fields] + [a for a, _ in lay.kv + lay.tensors]
            cut = int(points[rng.integers(len(points))]) + int(rng.integers(-1, 2))
        else:
            cut = int(rng.integers(lay.data, len(data)))
        return data[: max(cut, 0)], kind
    if kind == "flip":
        out = bytearray(data)
        for _ in range(rng.integers(1, 9)):
            out[rng.integers(0, lay.data)] = rng.integers(256)
        return bytes(out), kind
    if kind == "extreme":  # a role first (the vocabulary's lengths would crowd out the rest)
        roles = sorted({r for _, _, r in lay.fields})
        role = roles[rng.integers(len(roles))]
        fields = [f for f in lay.fields if f[2] == role]
        at, size, _ = fields[rng.integers(len(fields))]
        if role == "float value":
            v = FLOAT_VALUES[rng.integers(len(FLOAT_VALUES))]
            new = struct.pack("<f" if size == 4 else "<d", v)
        else:
            old = int.from_bytes(data[at : at + size], "little")
            values = [v for v in U64_VALUES if v < 1 << (8 * size)] + [old + 1, max(old - 1, 0)]
            new = (values[rng.integers(len(values))] % (1 << (8 * size))).to_bytes(size, "little")
        return data[:at] + new + data[at + size :], kind
    if kind == "splat":  # an extreme 4- or 8-byte value anywhere in the header
        size = 8 if rng.random() < 0.5 else 4
        at = int(rng.integers(0, lay.data - size))
        v = [v for v in U64_VALUES if v < 1 << (8 * size)][rng.integers(4)]
        return data[:at] + v.to_bytes(size, "little") + data[at + size :], kind
    if kind == "misalign":
        at = lay.offsets[rng.integers(len(lay.offsets))]
        old = struct.unpack_from("<Q", data, at)[0]
        shift = int(rng.integers(1, max(lay.alignment, 2)))
        return data[:at] + struct.pack("<Q", old + shift) + data[at + 8 :], kind
    kv = [data[a:b] for a, b in lay.kv]
    tensors = [data[a:b] for a, b in lay.tensors]
    target = kv if rng.random() < 0.5 else tensors
    i = int(rng.integers(len(target)))
    if kind == "duplicate":
        target.insert(int(rng.integers(len(target) + 1)), target[i])
    else:
        del target[i]
    return rebuild(data, lay, kv, tensors), kind


def fuzz_sources(workdir: Path) -> list[Path]:
    """The files to mutate, written into workdir: a small quantized qwen35 synth file
    (with MTP; Q4_K, Q5_0, Q6_K, Q8_0 and F32 tensors) and a tiny gemma3 file."""
    from ggufs import QT, gemma3_tiny, write_gguf

    from mtpdec.synth import SynthOverrides, write_synth

    qwen = workdir / "qwen35.gguf"
    overrides = SynthOverrides(layers=4, n_embd=256, vocab=512, mtp=True)
    write_synth(qwen, "qwen35-tiny", seed=0, overrides=overrides, force=True, progress=False)
    kv, tensors = gemma3_tiny()
    kv["tokenizer.ggml.model"] = "llama"  # so that mutants get as far as a forward
    types = {"blk.0.ffn_down.weight": QT.Q8_0, "blk.1.attn_q.weight": QT.Q8_0}
    return [qwen, write_gguf(workdir / "gemma3.gguf", "gemma3", kv, tensors, types)]


def exercise(path: Path) -> str:
    """What a user's ``mtpdec info`` and ``generate`` do with a file: ``"ok"`` or the
    MtpdecError's message; any other exception propagates."""
    from mtpdec.errors import MtpdecError
    from mtpdec.info import gather
    from mtpdec.loader import open_gguf
    from mtpdec.models import load_model

    try:
        with open_gguf(path) as f:
            gather(f)
        model = load_model(path)
        tok = model.tokenizer
        ids = np.asarray(tok.encode("Hi there"), dtype=np.int32)[:4]
        if len(ids) == 0:
            ids = np.zeros(1, dtype=np.int32)
        model.forward(ids, 0, model.new_state(8))
        tok.decode(ids.tolist())
        return "ok"
    except MtpdecError as exc:
        return "error: " + str(exc)


@dataclass
class Report:
    """Outcomes of a run: counts by mutation kind and outcome, failures, peak memory."""

    tried: int = 0
    outcomes: Counter = field(default_factory=Counter)  # (kind, "ok" | "error" | failure)
    failures: list[tuple[int, str, str]] = field(default_factory=list)  # (index, kind, what)
    peak_rss_mb: float = 0.0
    slowest_s: float = 0.0
    seconds: float = 0.0


def _worker(conn, sources: list[str], seed: int, workdir: str, check) -> None:
    import resource

    datas = [Path(s).read_bytes() for s in sources]
    layouts = [scan(d) for d in datas]
    path = Path(workdir) / f"mutant-{mp.current_process().pid}.gguf"
    while True:
        index = conn.recv()
        if index is None:
            break
        rng = np.random.default_rng([seed, index])
        src = int(rng.integers(len(datas)))
        data, kind = mutant(datas[src], layouts[src], rng)
        path.write_bytes(data)
        conn.send(("start", index, kind))
        t0 = time.perf_counter()
        try:
            outcome = "ok" if check(path) == "ok" else "error"
        except BaseException as exc:  # noqa: BLE001 - a fuzz failure, reported
            outcome = f"{type(exc).__name__}: {exc}"[:300] + "\n" + traceback.format_exc()[-1500:]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        conn.send(("done", index, outcome, time.perf_counter() - t0, rss))


def run_mutants(
    sources: list[Path],
    count: int,
    seed: int = 0,
    workers: int = 2,
    timeout: float = 60.0,
    progress=None,
    check=exercise,
) -> Report:
    """Mutants 0..count-1 of ``sources`` (chosen and mutated by (seed, index)) through
    ``check`` (a module-level function: path -> "ok" | message) in ``workers``
    processes; a worker that dies or passes ``timeout`` on one mutant is recorded as a
    failure for that mutant and replaced."""
    ctx = mp.get_context("spawn")
    report, start = Report(), time.perf_counter()
    todo = list(range(count))[::-1]
    with tempfile.TemporaryDirectory(prefix="mtpdec-fuzz-") as workdir:
        procs: dict = {}

        def spawn():
            parent, child = ctx.Pipe()
            p = ctx.Process(
                target=_worker, args=(child, [str(s) for s in sources], seed, workdir, check)
            )
            p.start()
            child.close()
            return p, parent

        def feed(conn) -> bool:
            if not todo:
                conn.send(None)
                return False
            conn.send(todo.pop())
            return True

        for _ in range(workers):
            p, conn = spawn()
            if feed(conn):
                procs[conn] = [p, None, None, time.perf_counter()]
            else:
                p.join()
        while procs:
            ready = mp.connection.wait(list(procs), timeout=1.0)
            now = time.perf_counter()
            for conn in list(procs):
                p, index, kind, since = procs[conn]
                if conn in ready:
                    try:
                        msg = conn.recv()
                    except EOFError:
                        msg = None
                    if msg is not None and msg[0] == "start":
                        procs[conn][1:] = [msg[1], msg[2], now]
                        continue
                    if msg is not None:
                        _, index, outcome, secs, rss = msg
                        report.tried += 1
                        report.peak_rss_mb = max(report.peak_rss_mb, rss)
                        report.slowest_s = max(report.slowest_s, secs)
                        head = outcome.split("\n")[0]
                        if outcome in ("ok", "error"):
                            report.outcomes[kind, outcome] += 1
                        else:
                            report.outcomes[kind, head.split(":")[0]] += 1
                            report.failures.append((index, kind, outcome))
                        if progress:
                            progress(report)
                        if feed(conn):
                            procs[conn][1:] = [None, None, now]
                        else:
                            p.join(timeout=10)
                            del procs[conn]
                        continue
                    what = f"worker died (exit code {p.exitcode})"
                elif index is not None and now - since > timeout:
                    what = f"hang: no result after {timeout:.0f} s"
                else:
                    continue
                p.kill()
                p.join()
                del procs[conn]
                if index is not None:
                    report.tried += 1
                    report.outcomes[kind, what.split(":")[0].split(" (")[0]] += 1
                    report.failures.append((index, kind, what))
                    if progress:
                        progress(report)
                if todo:
                    p, conn = spawn()
                    feed(conn)
                    procs[conn] = [p, None, None, time.perf_counter()]
    report.seconds = time.perf_counter() - start
    return report
