"""Finding an image's non-zero pixels, and the first layer over them, in two ways by the CPU.

The first layer's sums run over an image's non-zero pixels only (see
:mod:`digitnet.fast.numba_engine`). Where the CPU compresses bytes in one instruction (AVX-512
VBMI2, :func:`digitnet.fast.cpu.vector_compress`), 64 pixels at a time are compressed into
lists of values and indices. Elsewhere (AVX2 and older) LLVM would expand that compress into
dozens of scalar instructions, so the indices are listed from a 64-bit compare mask (vpcmpeqb,
vpmovmskb) eight bits at a time through a table of each byte's set bits, without a branch per
pixel (:func:`digitnet.fast.intrinsics.set_bits64`). Both give the same pixels in the same
order. Inference over such lists is in :mod:`digitnet.fast.listed`.

Imported only where numba is installed and chosen, like :mod:`digitnet.fast.kernels`.
"""

from __future__ import annotations

import numba
import numpy as np

from digitnet.fast.intrinsics import compress64 as _nb_compress64
from digitnet.fast.intrinsics import nonzero_mask64 as _nb_nonzero_mask64
from digitnet.fast.intrinsics import set_bits64 as _nb_set_bits64

__all__ = ["jit", "SLACK"]

# The kernels' compilation settings: reorder sums and fuse multiply-adds, keep inf and NaN.
# error_model="numpy": x / 0 is inf as in NumPy, not a ZeroDivisionError, which would put a test
# and a branch into every division and stop LLVM from vectorizing the loop.
jit = numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz"},
                 error_model="numpy")

# The same, inlined into its callers in numba's own IR: LLVM left small helpers calls, with
# the callers' accumulators spilled around them.
_inline = numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz"},
                     error_model="numpy", inline="always")

SLACK = 64  # slots past the end that the value and index lists need


@jit
def _nb_bit_table():
    """Row b (8 uint16) lists the set bits of byte b, lowest first, zeros after."""
    table = np.zeros(256 * 8, np.uint16)
    for b in range(256):
        n = 0
        for k in range(8):
            if b >> k & 1:
                table[8 * b + n] = k
                n += 1
    return table


@jit
def _nb_list(flat, off, d, table, indices, pos, scratch):
    """The indices of the non-zero pixels among flat[off:off + d] (one image) into indices from
    pos, in pixel order; returns the position after the last. Reads the image alone: the mask
    of the last d % 64 pixels comes from its last 64 bytes, or from ``scratch`` (64 bytes,
    zero past d) when the image is shorter. The list needs 8 slots past its end."""
    sixty_four = np.uint64(64)
    full = d // sixty_four * sixty_four
    for start in range(np.uint64(0), full, sixty_four):
        m = _nb_nonzero_mask64(flat, off + start)
        if m:  # a digit's border is blank: its chunks' eight bytes are skipped
            pos = _nb_set_bits64(table, m, start, indices, pos)
    if full < d:
        if full:
            m = _nb_nonzero_mask64(flat, off + d - sixty_four) >> (sixty_four - (d - full))
        else:
            for j in range(d):
                scratch[j] = flat[off + j]
            m = _nb_nonzero_mask64(scratch, 0)
        pos = _nb_set_bits64(table, m, full, indices, pos)
    return pos


@jit
def _nb_nonzero(images, row, values, indices, pos, compress, scratch, table):
    """Image ``row``'s non-zero pixels into values/indices from pos, in pixel order; returns
    the count. The lists need :data:`SLACK` slots past the end; ``scratch`` is 64 bytes, zero
    from the image's width on. ``compress``: by vector compress, else by the bit table."""
    n, d = 0, images.shape[1]
    if compress:
        for start in range(0, d, 64):
            n += _nb_compress64(images, row, start, min(64, d - start), values, indices,
                                pos + n)
        return n
    flat, first = images.reshape(-1), np.uint64(pos)
    off = np.uint64(row) * np.uint64(d)
    end = _nb_list(flat, off, np.uint64(d), table, indices, first, scratch)
    for q in range(first, end):
        values[q] = flat[off + indices[q]]
    return np.int64(end - first)


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
    scratch = np.zeros(64, np.uint8)
    table = _nb_bit_table()
    for i in range(n):
        _nb_nonzero(images, i, values, indices, indptr[i], compress, scratch, table)
    return indptr, indices, values
