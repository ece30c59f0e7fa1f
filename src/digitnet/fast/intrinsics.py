"""LLVM intrinsics for the numba kernels: a prefetch, a vector compress, a compare mask and a
list of a mask's set bits.

numba has no words for either, so they are written as LLVM IR with ``numba.extending.intrinsic``.
"""

from __future__ import annotations

from typing import Any

import numba
import numba.extending

__all__ = ["prefetch", "compress64", "nonzero_mask64", "set_bits64"]


def _prefetch_intrinsic(numba: Any) -> Any:
    """``_nb_prefetch(array, index)``: LLVM's prefetch of the element's cache line (for reading,
    kept in every cache level)."""
    from llvmlite import ir
    from numba.core import cgutils

    @numba.extending.intrinsic
    def prefetch(typingctx: Any, array: Any, index: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            arrayty = signature.args[0]
            ary = context.make_array(arrayty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, arrayty, ary, [args[1]],
                                           wraparound=False)
            i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                "llvm.prefetch.p0")
            builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return numba.types.void(array, index), codegen

    return prefetch


def _compress_intrinsic(numba: Any) -> Any:
    """``_nb_compress64`` as LLVM vector code: a masked 64-byte load, a compare with zero, and
    ``llvm.experimental.vector.compress`` of the bytes and of their indices (vpcompressb and
    vpcompressw on AVX-512 VBMI2; LLVM expands it into plainer code on other CPUs)."""
    from llvmlite import ir
    from numba.core import cgutils

    i1, i8, i16, i32, i64 = (ir.IntType(n) for n in (1, 8, 16, 32, 64))

    def splat(builder: Any, value: Any, vector: Any) -> Any:
        one = builder.insert_element(ir.Constant(vector, None), value, i32(0))
        return builder.shuffle_vector(one, ir.Constant(vector, None),
                                      ir.Constant(ir.VectorType(i32, vector.count),
                                                  [0] * vector.count))

    def function(builder: Any, name: str, result: Any, params: list[Any]) -> Any:
        return cgutils.get_or_insert_function(builder.module, ir.FunctionType(result, params),
                                              name)

    @numba.extending.intrinsic
    def compress64(typingctx: Any, images: Any, row: Any, start: Any, length: Any, values: Any,
                   indices: Any, pos: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            pixty, _, _, _, valty, idxty, _ = signature.args
            pix = context.make_array(pixty)(context, builder, args[0])
            val = context.make_array(valty)(context, builder, args[4])
            idx = context.make_array(idxty)(context, builder, args[5])
            row, start, length, pos = args[1], args[2], args[3], args[6]
            b64, m64 = ir.VectorType(i8, 64), ir.VectorType(i1, 64)
            w32, m32 = ir.VectorType(i16, 32), ir.VectorType(i1, 32)
            lanes = ir.Constant(b64, [i8(k) for k in range(64)])
            inside = builder.icmp_unsigned("<", lanes, splat(builder, builder.trunc(length, i8),
                                                             b64))
            source = cgutils.get_item_pointer(context, builder, pixty, pix, [row, start],
                                              wraparound=False)
            load = function(builder, "llvm.masked.load.v64i8.p0", b64,
                            [ir.PointerType(), i32, m64, b64])
            zero = ir.Constant(b64, [i8(0)] * 64)
            v = builder.call(load, [source, i32(1), inside, zero])
            lit = builder.icmp_unsigned("!=", v, zero)
            squeeze = function(builder, "llvm.experimental.vector.compress.v64i8", b64,
                               [b64, m64, b64])
            target = cgutils.get_item_pointer(context, builder, valty, val, [pos],
                                              wraparound=False)
            builder.store(builder.call(squeeze, [v, lit, ir.Constant(b64, None)]),
                          builder.bitcast(target, b64.as_pointer()), align=1)
            squeeze16 = function(builder, "llvm.experimental.vector.compress.v32i16", w32,
                                 [w32, m32, w32])
            # Counts from the mask as a scalar: popcnt on general registers (a vector popcount
            # would reload the mask through memory and stall).
            popcount = function(builder, "llvm.ctpop.i64", i64, [i64])
            bits = builder.bitcast(lit, i64)
            low = builder.call(popcount, [builder.and_(bits, i64(0xFFFFFFFF))])
            first = splat(builder, builder.trunc(start, i16), w32)
            for half, offset in ((0, i64(0)), (1, low)):  # indices need 16 bits: 2 x 32 lanes
                mask = builder.shuffle_vector(
                    lit, ir.Constant(m64, None),
                    ir.Constant(ir.VectorType(i32, 32), list(range(32 * half, 32 * half + 32))))
                iota = builder.add(first, ir.Constant(w32, [i16(32 * half + k)
                                                            for k in range(32)]))
                target = cgutils.get_item_pointer(context, builder, idxty, idx,
                                                  [builder.add(pos, offset)], wraparound=False)
                builder.store(builder.call(squeeze16, [iota, mask, ir.Constant(w32, None)]),
                              builder.bitcast(target, w32.as_pointer()), align=1)
            return builder.call(popcount, [bits])

        return numba.types.int64(images, row, start, length, values, indices, pos), codegen

    return compress64


def _mask_intrinsic(numba: Any) -> Any:
    """``_nb_nonzero_mask64(buffer, start)``: bit k set where byte start + k of the 1-D buffer
    is not zero, for k < 64 (a vector compare and its mask: vpcmpeqb and vpmovmskb on AVX2).
    The buffer needs 64 bytes from start."""
    from llvmlite import ir
    from numba.core import cgutils

    @numba.extending.intrinsic
    def nonzero_mask64(typingctx: Any, buffer: Any, start: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            bufty = signature.args[0]
            ary = context.make_array(bufty)(context, builder, args[0])
            source = cgutils.get_item_pointer(context, builder, bufty, ary, [args[1]],
                                              wraparound=False)
            i8, i64 = ir.IntType(8), ir.IntType(64)
            b64 = ir.VectorType(i8, 64)
            v = builder.load(builder.bitcast(source, b64.as_pointer()), align=1)
            lit = builder.icmp_unsigned("!=", v, ir.Constant(b64, [i8(0)] * 64))
            return builder.bitcast(lit, i64)

        return numba.types.uint64(buffer, start), codegen

    return nonzero_mask64


def _set_bits_intrinsic(numba: Any) -> Any:
    """``_nb_set_bits64(table, m, base, indices, pos)``: the positions base + k of m's set bits
    k, in order, into the uint16 list ``indices`` from pos; returns pos plus their count.

    Eight bits at a time, without a branch: ``table`` (uint16, 256 x 8, see
    ``pixels._nb_bit_table``) lists the set bits of each byte value; its row is loaded as one
    vector, shifted by the byte's position and stored whole, and pos moves on by the byte's
    popcount (on AVX2: vpaddw from memory, vmovdqu, popcnt). The list needs 8 slots past its
    end; ``base + 63`` must fit in 16 bits.
    """
    from llvmlite import ir
    from numba.core import cgutils

    i16, i32, i64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
    v8 = ir.VectorType(i16, 8)

    @numba.extending.intrinsic
    def set_bits64(typingctx: Any, table: Any, m: Any, base: Any, indices: Any, pos: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            tabty, _, _, idxty, _ = signature.args
            tab = context.make_array(tabty)(context, builder, args[0])
            idx = context.make_array(idxty)(context, builder, args[3])
            m, base, pos = args[1], args[2], args[4]
            rows = builder.bitcast(tab.data, ir.PointerType(i16))
            out = builder.bitcast(idx.data, ir.PointerType(i16))
            popcount = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(i64, [i64]), "llvm.ctpop.i64")
            one = builder.insert_element(ir.Constant(v8, None), builder.trunc(base, i16), i32(0))
            start = builder.shuffle_vector(one, ir.Constant(v8, None),
                                           ir.Constant(ir.VectorType(i32, 8), [0] * 8))
            for g in range(8):
                byte = builder.and_(builder.lshr(m, i64(8 * g)), i64(255))
                row = builder.gep(rows, [builder.mul(byte, i64(8))])
                bits = builder.load(builder.bitcast(row, v8.as_pointer()), align=2)
                shift = builder.add(start, ir.Constant(v8, [8 * g] * 8)) if g else start
                target = builder.bitcast(builder.gep(out, [pos]), v8.as_pointer())
                builder.store(builder.add(bits, shift), target, align=2)
                pos = builder.add(pos, builder.call(popcount, [byte]))
            return pos

        return numba.types.uint64(table, numba.types.uint64, numba.types.uint64, indices,
                                  numba.types.uint64), codegen

    return set_bits64


prefetch = _prefetch_intrinsic(numba)
compress64 = _compress_intrinsic(numba)
nonzero_mask64 = _mask_intrinsic(numba)
set_bits64 = _set_bits_intrinsic(numba)
