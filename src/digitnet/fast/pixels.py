"""Finding an image's non-zero pixels, and the first layer over them, in two ways by the CPU.

The first layer's sums run over an image's non-zero pixels only (see
:mod:`digitnet.fast.numba_engine`). Where the CPU compresses bytes in one instruction (AVX-512
VBMI2, :func:`digitnet.fast.cpu.vector_compress`), 64 pixels at a time are compressed into
lists of values and indices, which the sums then read. Elsewhere (AVX2 and older) LLVM would
expand that compress into dozens of scalar instructions, so the pixels are found by scanning
the bits of a 64-bit compare mask (vpcmpeqb, vpmovmskb, tzcnt), and for inference the sums are
taken during the scan, without lists. Both give the same pixels in the same order.

Imported only where numba is installed and chosen, like :mod:`digitnet.fast.kernels`.
"""

from __future__ import annotations

import numba
import numpy as np

from digitnet.fast.intrinsics import compress64 as _nb_compress64
from digitnet.fast.intrinsics import lowest_bit as _nb_lowest_bit
from digitnet.fast.intrinsics import nonzero_mask64 as _nb_nonzero_mask64

__all__ = ["jit", "SLACK"]

# The kernels' compilation settings: reorder sums and fuse multiply-adds, keep inf and NaN.
# error_model="numpy": x / 0 is inf as in NumPy, not a ZeroDivisionError, which would put a test
# and a branch into every division and stop LLVM from vectorizing the loop.
jit = numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz"},
                 error_model="numpy")

# The same, inlined into its callers in numba's own IR: LLVM left this small helper a call,
# with the callers' accumulators spilled around it.
_inline = numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz"},
                     error_model="numpy", inline="always")

SLACK = 64  # slots past the end that the value and index lists need


@_inline
def _nb_chunk(images, row, start, chunk):
    """Pixels [start, start + 64) of image ``row`` into chunk[:64], zeros past the row's end;
    returns the mask of the non-zero ones (bit k: pixel start + k). chunk[64:] stays zero."""
    d, r, first = np.uint64(images.shape[1]), np.uint64(row), np.uint64(start)
    width = min(np.uint64(64), d - first)
    for j in range(width):
        chunk[j] = images[r, first + j]
    for j in range(width, np.uint64(64)):
        chunk[j] = 0
    return _nb_nonzero_mask64(chunk, 0)


@_inline
def _nb_chunk128(images, row, start, chunk):
    """Pixels [start, start + 128) of image ``row`` into chunk[:128], zeros past the row's
    end; returns the masks of the non-zero ones, bit k of the first for pixel start + k and of
    the second for pixel start + 64 + k. chunk[128:] stays zero."""
    d, r, first = np.uint64(images.shape[1]), np.uint64(row), np.uint64(start)
    width = min(np.uint64(128), d - first)
    for j in range(width):
        chunk[j] = images[r, first + j]
    for j in range(width, np.uint64(128)):
        chunk[j] = 0
    return _nb_nonzero_mask64(chunk, 0), _nb_nonzero_mask64(chunk, 64)


@jit
def _nb_nonzero(images, row, values, indices, pos, compress, chunk):
    """Image ``row``'s non-zero pixels into values/indices from pos, in pixel order; returns
    the count. The lists need :data:`SLACK` slots past the end; ``chunk`` is 128 bytes of
    scratch, zero from 64 on. ``compress``: by vector compress, else by bit scan."""
    n, d = 0, images.shape[1]
    if compress:
        for start in range(0, d, 64):
            n += _nb_compress64(images, row, start, min(64, d - start), values, indices,
                                pos + n)
        return n
    one = np.uint64(1)
    for start in range(np.uint64(0), np.uint64(d), np.uint64(64)):
        m = _nb_chunk(images, row, start, chunk)
        while m:
            k = _nb_lowest_bit(m)
            m &= m - one
            values[pos + n] = chunk[k]
            indices[pos + n] = start + k
            n += 1
    return n


@jit
def _nb_csr(images, compress):
    """The non-zero pixels of each image: row i's are ``indices/values[indptr[i]:indptr[i+1]]``
    (both arrays have :data:`SLACK` slots at the end)."""
    n, d = images.shape
    indptr = np.zeros(n + 1, np.int64)
    for i in range(n):
        count = 0
        for k in range(d):
            count += images[i, k] != 0
        indptr[i + 1] = indptr[i] + count
    indices = np.zeros(indptr[n] + SLACK, np.uint16)
    values = np.zeros(indptr[n] + SLACK, np.uint8)
    chunk = np.zeros(128, np.uint8)
    for i in range(n):
        _nb_nonzero(images, i, values, indices, indptr[i], compress, chunk)
    return indptr, indices, values


@jit
def _nb_dot16_scan(images, row, W, rows, blk, out, col, chunk, floats):
    """``out[16 blk:16 blk + 16, col] = sum over image row's non-zero pixels p at k of
    p * W1p[blk, k, 0:16]``, the pixels found by bit scan (as :func:`kernels._nb_dot16` over
    lists). W is W1p flattened, ``rows`` (``numba_engine.scan_rows``) rows a block, zero past
    the pixels: a scan takes four pixels a step from two 64-bit masks of 128 pixels, and a step
    past the masks' last bit reads pixel 128 of ``chunk`` (256 bytes of scratch, zero from 128
    on), a zero, at the row 128 past the chunk's start. ``floats[v]`` is v as float32: a load
    instead of a conversion and a broadcast.

    Four sets of 16 accumulators, one per pixel of a step, so that no multiply-add waits for
    another of the same step (the scan has no lists to run ahead on, as _nb_dot16 has). Two
    masks a loop, the second taken by selects, halve the loops whose ends the branch predictor
    misses (measured on Zen 3: 355 to 519 ns an MNIST image against 466 to 648 with one).
    """
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0)
    a8 = a9 = a10 = a11 = a12 = a13 = a14 = a15 = np.float32(0)
    b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = np.float32(0)
    b8 = b9 = b10 = b11 = b12 = b13 = b14 = b15 = np.float32(0)
    c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = np.float32(0)
    c8 = c9 = c10 = c11 = c12 = c13 = c14 = c15 = np.float32(0)
    e0 = e1 = e2 = e3 = e4 = e5 = e6 = e7 = np.float32(0)
    e8 = e9 = e10 = e11 = e12 = e13 = e14 = e15 = np.float32(0)
    d, one, lanes = np.uint64(images.shape[1]), np.uint64(1), np.uint64(16)
    base = np.uint64(blk) * np.uint64(rows) * lanes
    sixty_four = np.uint64(64)
    for start in range(np.uint64(0), d, np.uint64(128)):
        low, high = _nb_chunk128(images, row, start, chunk)
        while low | high:  # bits past the last are 128: a zero pixel at a row that exists
            in_low = low != 0  # a select, not a branch: the low word's bits first
            t0 = _nb_lowest_bit(low) if in_low else sixty_four + _nb_lowest_bit(high)
            high = high if in_low else high & (high - one)
            low &= low - one
            in_low = low != 0
            t1 = _nb_lowest_bit(low) if in_low else sixty_four + _nb_lowest_bit(high)
            high = high if in_low else high & (high - one)
            low &= low - one
            in_low = low != 0
            t2 = _nb_lowest_bit(low) if in_low else sixty_four + _nb_lowest_bit(high)
            high = high if in_low else high & (high - one)
            low &= low - one
            in_low = low != 0
            t3 = _nb_lowest_bit(low) if in_low else sixty_four + _nb_lowest_bit(high)
            high = high if in_low else high & (high - one)
            low &= low - one
            p0, k0 = floats[chunk[t0]], base + (start + t0) * lanes
            p1, k1 = floats[chunk[t1]], base + (start + t1) * lanes
            p2, k2 = floats[chunk[t2]], base + (start + t2) * lanes
            p3, k3 = floats[chunk[t3]], base + (start + t3) * lanes
            a0 += p0 * W[k0]
            a1 += p0 * W[k0 + 1]
            a2 += p0 * W[k0 + 2]
            a3 += p0 * W[k0 + 3]
            a4 += p0 * W[k0 + 4]
            a5 += p0 * W[k0 + 5]
            a6 += p0 * W[k0 + 6]
            a7 += p0 * W[k0 + 7]
            a8 += p0 * W[k0 + 8]
            a9 += p0 * W[k0 + 9]
            a10 += p0 * W[k0 + 10]
            a11 += p0 * W[k0 + 11]
            a12 += p0 * W[k0 + 12]
            a13 += p0 * W[k0 + 13]
            a14 += p0 * W[k0 + 14]
            a15 += p0 * W[k0 + 15]
            b0 += p1 * W[k1]
            b1 += p1 * W[k1 + 1]
            b2 += p1 * W[k1 + 2]
            b3 += p1 * W[k1 + 3]
            b4 += p1 * W[k1 + 4]
            b5 += p1 * W[k1 + 5]
            b6 += p1 * W[k1 + 6]
            b7 += p1 * W[k1 + 7]
            b8 += p1 * W[k1 + 8]
            b9 += p1 * W[k1 + 9]
            b10 += p1 * W[k1 + 10]
            b11 += p1 * W[k1 + 11]
            b12 += p1 * W[k1 + 12]
            b13 += p1 * W[k1 + 13]
            b14 += p1 * W[k1 + 14]
            b15 += p1 * W[k1 + 15]
            c0 += p2 * W[k2]
            c1 += p2 * W[k2 + 1]
            c2 += p2 * W[k2 + 2]
            c3 += p2 * W[k2 + 3]
            c4 += p2 * W[k2 + 4]
            c5 += p2 * W[k2 + 5]
            c6 += p2 * W[k2 + 6]
            c7 += p2 * W[k2 + 7]
            c8 += p2 * W[k2 + 8]
            c9 += p2 * W[k2 + 9]
            c10 += p2 * W[k2 + 10]
            c11 += p2 * W[k2 + 11]
            c12 += p2 * W[k2 + 12]
            c13 += p2 * W[k2 + 13]
            c14 += p2 * W[k2 + 14]
            c15 += p2 * W[k2 + 15]
            e0 += p3 * W[k3]
            e1 += p3 * W[k3 + 1]
            e2 += p3 * W[k3 + 2]
            e3 += p3 * W[k3 + 3]
            e4 += p3 * W[k3 + 4]
            e5 += p3 * W[k3 + 5]
            e6 += p3 * W[k3 + 6]
            e7 += p3 * W[k3 + 7]
            e8 += p3 * W[k3 + 8]
            e9 += p3 * W[k3 + 9]
            e10 += p3 * W[k3 + 10]
            e11 += p3 * W[k3 + 11]
            e12 += p3 * W[k3 + 12]
            e13 += p3 * W[k3 + 13]
            e14 += p3 * W[k3 + 14]
            e15 += p3 * W[k3 + 15]
    j = 16 * blk
    out[j + 0, col] = (a0 + b0) + (c0 + e0)
    out[j + 1, col] = (a1 + b1) + (c1 + e1)
    out[j + 2, col] = (a2 + b2) + (c2 + e2)
    out[j + 3, col] = (a3 + b3) + (c3 + e3)
    out[j + 4, col] = (a4 + b4) + (c4 + e4)
    out[j + 5, col] = (a5 + b5) + (c5 + e5)
    out[j + 6, col] = (a6 + b6) + (c6 + e6)
    out[j + 7, col] = (a7 + b7) + (c7 + e7)
    out[j + 8, col] = (a8 + b8) + (c8 + e8)
    out[j + 9, col] = (a9 + b9) + (c9 + e9)
    out[j + 10, col] = (a10 + b10) + (c10 + e10)
    out[j + 11, col] = (a11 + b11) + (c11 + e11)
    out[j + 12, col] = (a12 + b12) + (c12 + e12)
    out[j + 13, col] = (a13 + b13) + (c13 + e13)
    out[j + 14, col] = (a14 + b14) + (c14 + e14)
    out[j + 15, col] = (a15 + b15) + (c15 + e15)
