"""Small llvmlite IR helpers for the vector MatVec kernels.

Every helper emits IR into an ``ir.IRBuilder``; vectors are fixed-width LLVM vectors
(``<16 x float>`` etc.) that LLVM legalises to the host's SIMD registers. Nothing here
depends on the weight format.
"""

from __future__ import annotations

from llvmlite import ir

I8 = ir.IntType(8)
I16 = ir.IntType(16)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F16 = ir.HalfType()
F32 = ir.FloatType()
LANES = 16  # floats per accumulator vector: the fixed lane layout of every kernel
VF32 = ir.VectorType(F32, LANES)


def vec(elem: ir.Type, count: int) -> ir.VectorType:
    return ir.VectorType(elem, count)


def const_vec(elem: ir.Type, values: list[int] | list[float]) -> ir.Constant:
    """A constant vector of the given element values."""
    return ir.Constant(vec(elem, len(values)), [ir.Constant(elem, v) for v in values])


def splat(b: ir.IRBuilder, value: ir.Value, count: int = LANES) -> ir.Value:
    """Broadcast a scalar into every lane of a ``count``-wide vector."""
    vty = vec(value.type, count)
    one = b.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(I32, 0))
    return b.shuffle_vector(one, ir.Constant(vty, ir.Undefined), ir.Constant(vec(I32, count), None))


def byte_ptr(b: ir.IRBuilder, base: ir.Value, offset: int | ir.Value) -> ir.Value:
    """``base + offset`` for an i8* base (offset in bytes)."""
    off = offset if isinstance(offset, ir.Value) else ir.Constant(I64, offset)
    return b.gep(base, [off])


def load(b: ir.IRBuilder, base: ir.Value, offset: int, ty: ir.Type) -> ir.Value:
    """Unaligned load of a value of type ``ty`` at byte ``offset`` from an i8* base."""
    ptr = b.bitcast(byte_ptr(b, base, offset), ty.as_pointer())
    return b.load(ptr, align=1)


def load_f16_as_f32(b: ir.IRBuilder, base: ir.Value, offset: int) -> ir.Value:
    """IEEE half at a byte offset, widened to float."""
    return b.fpext(b.bitcast(load(b, base, offset, I16), F16), F32)


def half_of(b: ir.IRBuilder, v: ir.Value, part: int, width: int = LANES) -> ir.Value:
    """Elements ``[part*width, (part+1)*width)`` of a wider vector."""
    idx = const_vec(I32, list(range(part * width, (part + 1) * width)))
    return b.shuffle_vector(v, ir.Constant(v.type, ir.Undefined), idx)


def fma(b: ir.IRBuilder, x: ir.Value, y: ir.Value, acc: ir.Value) -> ir.Value:
    """``x * y + acc`` with one rounding (llvm.fma), lane by lane."""
    ty = x.type
    name = f"llvm.fma.v{ty.count}f32"
    fn = b.module.globals.get(name) or ir.Function(
        b.module, ir.FunctionType(ty, [ty, ty, ty]), name
    )
    return b.call(fn, [x, y, acc])


def reduce_tree(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    """Sum the lanes of a float vector in a fixed pairwise order (halves added first)."""
    width = v.type.count
    while width > 1:
        width //= 2
        v = b.fadd(half_of(b, v, 0, width), half_of(b, v, 1, width))
    return b.extract_element(v, ir.Constant(I32, 0))


def i8_to_f32(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    """Signed bytes (``<16 x i8>``) to floats."""
    return b.sitofp(v, VF32)


def stack_slot(b: ir.IRBuilder, ty: ir.Type) -> ir.Value:
    """A stack slot of type ``ty`` that LLVM keeps in memory: its address goes to an empty
    inline-asm statement once, in the entry block, so it is never promoted to a register.

    The kernels keep each input's loop-carried float accumulator in one: held in
    registers across a block, 8 inputs' worth crowd out the decoded weights and integer
    sums and LLVM spills far more (e.g. ~250 times per interleaved Q4_K group-block at
    n = 8); a load and a store per input and block cost less.
    """
    from numba.core import cgutils  # (this module is imported by ``info``, without Numba)

    slot = cgutils.alloca_once(b, ty)
    escape = ir.InlineAsm(ir.FunctionType(ir.VoidType(), [slot.type]), "", "r", side_effect=True)
    with b.goto_entry_block():
        b.call(escape, [slot])
    return slot


def array_data(context, b: ir.IRBuilder, arrty, arr) -> ir.Value:
    """The data pointer of a Numba array argument."""
    from numba.core import cgutils

    return cgutils.create_struct_proxy(arrty)(context, b, value=arr).data


def array_stride0(context, b: ir.IRBuilder, arrty, arr) -> ir.Value:
    """The byte stride of a Numba array argument's first axis (i64)."""
    from numba.core import cgutils

    return b.extract_value(cgutils.create_struct_proxy(arrty)(context, b, value=arr).strides, 0)


def row_pointers(context, b: ir.IRBuilder, arrty, arr, count: int, ptr_ty: ir.Type) -> list:
    """Pointers (cast to ``ptr_ty``) to rows 0..count-1 of a 2-D Numba array argument."""
    data = b.bitcast(array_data(context, b, arrty, arr), I8.as_pointer())
    stride = array_stride0(context, b, arrty, arr)
    return [
        b.bitcast(byte_ptr(b, data, b.mul(ir.Constant(I64, i), stride)), ptr_ty)
        for i in range(count)
    ]
