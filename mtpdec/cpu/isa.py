"""Instruction-set paths of the integer dot kernels, and the IR primitives each one emits.

A path names which integer multiply instructions the kernels use:

- ``avx512vnni``: 512-bit ``vpdpbusd`` / ``vpdpwssd`` (AVX-512 VNNI);
- ``avxvnni``: the same on 256-bit vectors (AVX-VNNI, or AVX-512 VL);
- ``avx2``: ``vpmaddubsw`` + ``vpmaddwd`` + ``vpaddd`` on 256-bit vectors;
- ``portable``: plain LLVM vector arithmetic, legalised for whatever the target has.

Every primitive takes and returns generic LLVM vectors (``<64 x i8>`` etc.) and computes
exactly the same integers on every path, lane for lane (the products never saturate: the
callers keep unsigned weights <= 128 times activations in [-127, 127], see
``quant-formats.md``), so a kernel's output bits do not depend on the path. The host's
path is the widest one the compile target has (Numba's target: the host CPU, unless
``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` say otherwise); narrower ones can be forced.
"""

from __future__ import annotations

import functools
import os

from llvmlite import ir

from mtpdec.cpu.ir import I16, I32, const_vec, vec
from mtpdec.errors import MtpdecError

PATHS = ("avx512vnni", "avxvnni", "avx2", "portable")
_NEEDS = {
    "avx512vnni": ("avx512f", "avx512bw", "avx512vl", "avx512vnni"),
    "avxvnni": ("avx2", "avxvnni"),
    "avx2": ("avx2",),
    "portable": (),
}
_NATIVE_BYTES = {"avx512vnni": 64, "avxvnni": 32, "avx2": 32}


def target_features() -> dict[str, bool]:
    """CPU features of the target Numba compiles for: the host's, unless Numba's own
    NUMBA_CPU_FEATURES / NUMBA_CPU_NAME say otherwise (read here without importing Numba)."""
    import llvmlite.binding as llvm

    features = os.environ.get("NUMBA_CPU_FEATURES")
    if features:
        flags = (f for f in features.split(",") if f)
        return {f[1:]: f[0] == "+" for f in flags}
    if os.environ.get("NUMBA_CPU_NAME"):  # a named CPU without a feature list: the least
        return {}
    return dict(llvm.get_host_cpu_features())


def available_paths() -> list[str]:
    """Paths the compile target can run, widest first (``portable`` always)."""
    feats = target_features()
    return [p for p in PATHS if all(feats.get(f, False) for f in _NEEDS[p])]


@functools.cache
def host_path() -> str:
    """The widest path the compile target runs: what the kernels use unless told otherwise."""
    return available_paths()[0]


def check_path(name: str) -> str:
    """``name`` if the target can run it; MtpdecError naming the runnable ones otherwise."""
    if name not in PATHS:
        raise MtpdecError(f"unknown instruction path {name!r} (known: {', '.join(PATHS)})")
    if name not in available_paths():
        raise MtpdecError(
            f"this CPU cannot run the {name} path (it can run: {', '.join(available_paths())})"
        )
    return name


# ---- IR helpers -------------------------------------------------------------------


def _declare(b: ir.IRBuilder, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    fn = b.module.globals.get(name)
    return fn or ir.Function(b.module, ir.FunctionType(ret, args), name)


def split(b: ir.IRBuilder, v: ir.Value, lanes: int) -> list[ir.Value]:
    """A vector cut into consecutive pieces of ``lanes`` lanes."""
    n = v.type.count
    if n == lanes:
        return [v]
    undef = ir.Constant(v.type, ir.Undefined)
    return [
        b.shuffle_vector(v, undef, const_vec(I32, list(range(at, at + lanes))))
        for at in range(0, n, lanes)
    ]


def concat(b: ir.IRBuilder, parts: list[ir.Value]) -> ir.Value:
    """Vectors of one type joined in order (a power-of-two count)."""
    while len(parts) > 1:
        n = parts[0].type.count
        idx = const_vec(I32, list(range(2 * n)))
        parts = [b.shuffle_vector(a, c, idx) for a, c in zip(parts[::2], parts[1::2])]
    return parts[0]


def _pairs_add(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    """Lane j of the result = v[2j] + v[2j+1] (half as many lanes)."""
    n = v.type.count
    undef = ir.Constant(v.type, ir.Undefined)
    even = b.shuffle_vector(v, undef, const_vec(I32, list(range(0, n, 2))))
    odd = b.shuffle_vector(v, undef, const_vec(I32, list(range(1, n, 2))))
    return b.add(even, odd)


def _per_native(b: ir.IRBuilder, path: str, fn, *vectors: ir.Value) -> ir.Value:
    """Apply ``fn`` to native-width pieces of each vector (the first vector's lane count
    decides the cut) and join the results."""
    lanes = vectors[0].type.count * vectors[0].type.element.width // 8
    native = _NATIVE_BYTES[path]
    if lanes <= native:
        return fn(*vectors)
    k = lanes // native
    pieces = [split(b, v, v.type.count // k) for v in vectors]
    return concat(b, [fn(*p) for p in zip(*pieces)])


def _x86(b: ir.IRBuilder, name: str, ret: ir.Type, *args: ir.Value) -> ir.Value:
    return b.call(_declare(b, name, ret, [a.type for a in args]), list(args))


# ---- the primitives -----------------------------------------------------------------


def madd_u8s8(b: ir.IRBuilder, path: str, u: ir.Value, s: ir.Value) -> ir.Value:
    """``<2m x i8>`` unsigned u, signed s -> ``<m x i16>``: lane j = u[2j]s[2j] + u[2j+1]s[2j+1]
    (``vpmaddubsw``; the caller guarantees no lane passes the i16 range)."""
    n = u.type.count
    if path == "portable":
        wide = vec(I16, n)
        return _pairs_add(b, b.mul(b.zext(u, wide), b.sext(s, wide)))

    def one(uu: ir.Value, ss: ir.Value) -> ir.Value:
        m = uu.type.count
        name = "llvm.x86.avx512.pmaddubs.w.512" if m == 64 else "llvm.x86.avx2.pmadd.ub.sw"
        return _x86(b, name, vec(I16, m // 2), uu, ss)

    return _per_native(b, path, one, u, s)


def madd_i16_acc(b: ir.IRBuilder, path: str, acc: ir.Value, p: ir.Value, s: ir.Value) -> ir.Value:
    """``acc + pmaddwd(p, s)``: acc ``<m x i32>``, p and s ``<2m x i16>``; lane j adds
    p[2j]s[2j] + p[2j+1]s[2j+1] (``vpdpwssd``)."""
    m = acc.type.count
    if path == "portable":
        wide = vec(I32, 2 * m)
        return b.add(acc, _pairs_add(b, b.mul(b.sext(p, wide), b.sext(s, wide))))
    if path == "avx2":

        def madd(pp: ir.Value, ss: ir.Value) -> ir.Value:
            return _x86(b, "llvm.x86.avx2.pmadd.wd", vec(I32, pp.type.count // 2), pp, ss)

        return b.add(acc, _per_native(b, path, madd, p, s))

    def dp(aa: ir.Value, pp: ir.Value, ss: ir.Value) -> ir.Value:
        bits = aa.type.count * 32
        return _x86(b, f"llvm.x86.avx512.vpdpwssd.{bits}", aa.type, aa, pp, ss)

    return _per_native(b, path, dp, acc, p, s)


def dot_u8s8_acc(b: ir.IRBuilder, path: str, acc: ir.Value, u: ir.Value, s: ir.Value) -> ir.Value:
    """``acc + dpbusd(u, s)``: acc ``<m x i32>``, u unsigned and s signed ``<4m x i8>``;
    lane j adds the four products of bytes 4j..4j+3 (``vpdpbusd``; on the avx2 and portable
    paths through ``madd_u8s8``, so each pair of products must stay in the i16 range)."""
    m = acc.type.count
    if path in ("portable", "avx2"):
        ones = ir.Constant(vec(I16, 2 * m), [ir.Constant(I16, 1)] * (2 * m))
        return madd_i16_acc(b, path, acc, madd_u8s8(b, path, u, s), ones)

    def dp(aa: ir.Value, uu: ir.Value, ss: ir.Value) -> ir.Value:
        bits = aa.type.count * 32
        return _x86(b, f"llvm.x86.avx512.vpdpbusd.{bits}", aa.type, aa, uu, ss)

    return _per_native(b, path, dp, acc, u, s)


def pack_i32_i16(b: ir.IRBuilder, path: str, a: ir.Value, c: ir.Value) -> ir.Value:
    """Two ``<m x i32>`` -> ``<2m x i16>`` in ``vpackssdw`` order: per 128-bit lane k, a's
    lanes 4k..4k+3 then c's (the caller guarantees every value fits in 16 bits)."""
    m = a.type.count
    order = [src + 4 * k + r for k in range(m // 4) for src in (0, m) for r in range(4)]
    if path == "portable":
        return b.trunc(b.shuffle_vector(a, c, const_vec(I32, order)), vec(I16, 2 * m))

    def pack(aa: ir.Value, cc: ir.Value) -> ir.Value:
        bits = aa.type.count * 32
        name = "llvm.x86.avx512.packssdw.512" if bits == 512 else "llvm.x86.avx2.packssdw"
        return _x86(b, name, vec(I16, 2 * aa.type.count), aa, cc)

    return _per_native(b, path, pack, a, c)


def has_dpbusd(path: str) -> bool:
    """Whether the path has a one-instruction u8 x s8 -> i32 dot (VNNI)."""
    return path in ("avx512vnni", "avxvnni")


def abs_i8(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    """|v| lane by lane as unsigned bytes (-128 -> 128)."""
    neg = b.sub(ir.Constant(v.type, None), v)
    return b.select(b.icmp_signed("<", v, ir.Constant(v.type, None)), neg, v)


def sign_i8(b: ir.IRBuilder, path: str, x: ir.Value, w: ir.Value) -> ir.Value:
    """x negated where w < 0 (x in [-127, 127]); where w == 0 the result is x (plain IR)
    or 0 (``vpsignb``), either way multiplied by |w| = 0. AVX-512 negates under a mask
    from w, computed once per weight block."""
    if path in ("portable", "avx512vnni"):
        zero = ir.Constant(x.type, None)
        return b.select(b.icmp_signed("<", w, zero), b.sub(zero, x), x)

    def psign(xx: ir.Value, ww: ir.Value) -> ir.Value:
        return _x86(b, "llvm.x86.avx2.psign.b", xx.type, xx, ww)

    pieces = zip(split(b, x, 32), split(b, w, 32))
    return concat(b, [psign(xx, ww) for xx, ww in pieces])


def dot_s8s8_acc(
    b: ir.IRBuilder, path: str, acc: ir.Value, w_abs: ir.Value, w: ir.Value, x: ir.Value
) -> ir.Value:
    """``acc + dpbusd`` of signed w and x, as |w| times x signed by w; ``w_abs`` is
    ``abs_i8(w)``, computed once per weight block for all inputs."""
    return dot_u8s8_acc(b, path, acc, w_abs, sign_i8(b, path, x, w))
