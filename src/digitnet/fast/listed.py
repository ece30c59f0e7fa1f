"""Inference's first layer over pixel lists, where the CPU has no one-instruction byte compress.

For a tile of images, the non-zero pixels' indices are listed 8 images at a time through the
bit table of :mod:`digitnet.fast.pixels`, then summed, each pixel's value read from the image.
The whole tile is one compiled call: a call per image would cost more than its list. With 12
hidden units or fewer (MNIST's 784-10-10) the 16-unit block is a quarter padding, and
``_nb_first_layer_listed12`` leaves the padding lanes out (the same sums in the others).

Imported only where numba is installed and chosen, like :mod:`digitnet.fast.kernels`.
"""

from __future__ import annotations

import numpy as np

from digitnet.fast.intrinsics import nonzero_mask64 as _nb_nonzero_mask64
from digitnet.fast.intrinsics import set_bits64 as _nb_set_bits64
from digitnet.fast.pixels import jit

__all__: list[str] = []


@jit
def _nb_first_layer_listed(images, first, count, W1p, out, lists, ends, scratch, table, floats,
                           sums):
    """``out[:, t] = P @ W1`` (units padded to blocks of 16) for images first + t, t < count
    (at most out's columns), over their non-zero pixels: listed for 8 images at a time (as
    :func:`digitnet.fast.pixels._nb_list` does, written out here: a call per image would cost
    more than the list), then summed, each pixel's value read from the image. ``lists``
    (uint16) holds 8 lists of ``stride = len(lists) // 8`` slots (a multiple of 4, at least
    n_in + 12), ``ends`` 8 positions, ``scratch`` 64 bytes (zero past n_in when n_in < 64),
    ``table`` the bit table and ``floats[v]`` v as float32 (a load instead of a conversion and
    a broadcast); ``sums`` is 16 floats of scratch.

    The sums take four pixels a step, one load of the list (as uint64) for them, into four sets
    of 16 accumulators, so that no multiply-add waits for another (LLVM's SLP vectorizer makes
    each set two AVX2 registers). The last step takes the list's last 0 to 3 pixels; the four
    zeros after each list make its other slots pixel 0, multiplied by 0.
    """
    d = np.uint64(images.shape[1])
    flat, quads = images.reshape(-1), lists.view(np.uint64)
    blocks, rows = W1p.shape[0], np.uint64(W1p.shape[1])
    W, lanes = W1p.reshape(-1), np.uint64(16)
    stride = np.uint64(lists.shape[0] // 8)
    sixty_four, two, mask = np.uint64(64), np.uint64(2), np.uint64(0xFFFF)
    full = d // sixty_four * sixty_four
    for group in range(0, count, 8):
        size = min(8, count - group)
        for t in range(size):  # the lists, all written before any is read
            off = np.uint64(first + group + t) * d
            pos = np.uint64(t) * stride
            for start in range(np.uint64(0), full, sixty_four):
                m = _nb_nonzero_mask64(flat, off + start)
                if m:
                    pos = _nb_set_bits64(table, m, start, lists, pos)
            if full < d:
                if full:
                    m = _nb_nonzero_mask64(flat, off + d - sixty_four) >> (sixty_four - (d - full))
                else:
                    for j in range(d):
                        scratch[j] = flat[off + j]
                    m = _nb_nonzero_mask64(scratch, 0)
                pos = _nb_set_bits64(table, m, full, lists, pos)
            for z in range(4):
                lists[pos + np.uint64(z)] = 0
            ends[t] = pos
        for t in range(size):
            off = np.uint64(first + group + t) * d
            for blk in range(blocks):
                base = np.uint64(blk) * rows * lanes
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0)
                a8 = a9 = a10 = a11 = a12 = a13 = a14 = a15 = np.float32(0)
                b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = np.float32(0)
                b8 = b9 = b10 = b11 = b12 = b13 = b14 = b15 = np.float32(0)
                c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = np.float32(0)
                c8 = c9 = c10 = c11 = c12 = c13 = c14 = c15 = np.float32(0)
                e0 = e1 = e2 = e3 = e4 = e5 = e6 = e7 = np.float32(0)
                e8 = e9 = e10 = e11 = e12 = e13 = e14 = e15 = np.float32(0)
                lo = np.uint64(t) * stride
                steps = (ends[t] - lo) >> two
                left = ends[t] - lo - (steps << two)  # pixels in the last step, 0 to 3
                s, last = lo >> two, (lo >> two) + steps
                while s < last:
                    w = quads[s]
                    if w == 0:  # never true (four distinct pixels); it keeps LLVM from
                        break   # vectorizing over the steps by gathers: it vectorizes the units
                    s += np.uint64(1)
                    i0, i1 = w & mask, (w >> np.uint64(16)) & mask
                    i2, i3 = (w >> np.uint64(32)) & mask, w >> np.uint64(48)
                    p0, p1 = floats[flat[off + i0]], floats[flat[off + i1]]
                    p2, p3 = floats[flat[off + i2]], floats[flat[off + i3]]
                    k0, k1 = base + i0 * lanes, base + i1 * lanes
                    k2, k3 = base + i2 * lanes, base + i3 * lanes
                    a0 += p0 * W[k0]
                    a1 += p0 * W[k0 + np.uint64(1)]
                    a2 += p0 * W[k0 + np.uint64(2)]
                    a3 += p0 * W[k0 + np.uint64(3)]
                    a4 += p0 * W[k0 + np.uint64(4)]
                    a5 += p0 * W[k0 + np.uint64(5)]
                    a6 += p0 * W[k0 + np.uint64(6)]
                    a7 += p0 * W[k0 + np.uint64(7)]
                    a8 += p0 * W[k0 + np.uint64(8)]
                    a9 += p0 * W[k0 + np.uint64(9)]
                    a10 += p0 * W[k0 + np.uint64(10)]
                    a11 += p0 * W[k0 + np.uint64(11)]
                    a12 += p0 * W[k0 + np.uint64(12)]
                    a13 += p0 * W[k0 + np.uint64(13)]
                    a14 += p0 * W[k0 + np.uint64(14)]
                    a15 += p0 * W[k0 + np.uint64(15)]
                    b0 += p1 * W[k1]
                    b1 += p1 * W[k1 + np.uint64(1)]
                    b2 += p1 * W[k1 + np.uint64(2)]
                    b3 += p1 * W[k1 + np.uint64(3)]
                    b4 += p1 * W[k1 + np.uint64(4)]
                    b5 += p1 * W[k1 + np.uint64(5)]
                    b6 += p1 * W[k1 + np.uint64(6)]
                    b7 += p1 * W[k1 + np.uint64(7)]
                    b8 += p1 * W[k1 + np.uint64(8)]
                    b9 += p1 * W[k1 + np.uint64(9)]
                    b10 += p1 * W[k1 + np.uint64(10)]
                    b11 += p1 * W[k1 + np.uint64(11)]
                    b12 += p1 * W[k1 + np.uint64(12)]
                    b13 += p1 * W[k1 + np.uint64(13)]
                    b14 += p1 * W[k1 + np.uint64(14)]
                    b15 += p1 * W[k1 + np.uint64(15)]
                    c0 += p2 * W[k2]
                    c1 += p2 * W[k2 + np.uint64(1)]
                    c2 += p2 * W[k2 + np.uint64(2)]
                    c3 += p2 * W[k2 + np.uint64(3)]
                    c4 += p2 * W[k2 + np.uint64(4)]
                    c5 += p2 * W[k2 + np.uint64(5)]
                    c6 += p2 * W[k2 + np.uint64(6)]
                    c7 += p2 * W[k2 + np.uint64(7)]
                    c8 += p2 * W[k2 + np.uint64(8)]
                    c9 += p2 * W[k2 + np.uint64(9)]
                    c10 += p2 * W[k2 + np.uint64(10)]
                    c11 += p2 * W[k2 + np.uint64(11)]
                    c12 += p2 * W[k2 + np.uint64(12)]
                    c13 += p2 * W[k2 + np.uint64(13)]
                    c14 += p2 * W[k2 + np.uint64(14)]
                    c15 += p2 * W[k2 + np.uint64(15)]
                    e0 += p3 * W[k3]
                    e1 += p3 * W[k3 + np.uint64(1)]
                    e2 += p3 * W[k3 + np.uint64(2)]
                    e3 += p3 * W[k3 + np.uint64(3)]
                    e4 += p3 * W[k3 + np.uint64(4)]
                    e5 += p3 * W[k3 + np.uint64(5)]
                    e6 += p3 * W[k3 + np.uint64(6)]
                    e7 += p3 * W[k3 + np.uint64(7)]
                    e8 += p3 * W[k3 + np.uint64(8)]
                    e9 += p3 * W[k3 + np.uint64(9)]
                    e10 += p3 * W[k3 + np.uint64(10)]
                    e11 += p3 * W[k3 + np.uint64(11)]
                    e12 += p3 * W[k3 + np.uint64(12)]
                    e13 += p3 * W[k3 + np.uint64(13)]
                    e14 += p3 * W[k3 + np.uint64(14)]
                    e15 += p3 * W[k3 + np.uint64(15)]
                w = quads[last]
                i0, i1 = w & mask, (w >> np.uint64(16)) & mask
                i2, i3 = (w >> np.uint64(32)) & mask, w >> np.uint64(48)
                # Times 1 for the pixels of the list, 0 past them, from ``floats``: no branch.
                p0 = floats[flat[off + i0]] * floats[min(left, np.uint64(1))]
                p1 = floats[flat[off + i1]] * floats[min(left, two) >> np.uint64(1)]
                p2 = floats[flat[off + i2]] * floats[left >> np.uint64(1) & left]
                p3 = np.float32(0)
                k0, k1 = base + i0 * lanes, base + i1 * lanes
                k2, k3 = base + i2 * lanes, base + i3 * lanes
                a0 += p0 * W[k0]
                a1 += p0 * W[k0 + np.uint64(1)]
                a2 += p0 * W[k0 + np.uint64(2)]
                a3 += p0 * W[k0 + np.uint64(3)]
                a4 += p0 * W[k0 + np.uint64(4)]
                a5 += p0 * W[k0 + np.uint64(5)]
                a6 += p0 * W[k0 + np.uint64(6)]
                a7 += p0 * W[k0 + np.uint64(7)]
                a8 += p0 * W[k0 + np.uint64(8)]
                a9 += p0 * W[k0 + np.uint64(9)]
                a10 += p0 * W[k0 + np.uint64(10)]
                a11 += p0 * W[k0 + np.uint64(11)]
                a12 += p0 * W[k0 + np.uint64(12)]
                a13 += p0 * W[k0 + np.uint64(13)]
                a14 += p0 * W[k0 + np.uint64(14)]
                a15 += p0 * W[k0 + np.uint64(15)]
                b0 += p1 * W[k1]
                b1 += p1 * W[k1 + np.uint64(1)]
                b2 += p1 * W[k1 + np.uint64(2)]
                b3 += p1 * W[k1 + np.uint64(3)]
                b4 += p1 * W[k1 + np.uint64(4)]
                b5 += p1 * W[k1 + np.uint64(5)]
                b6 += p1 * W[k1 + np.uint64(6)]
                b7 += p1 * W[k1 + np.uint64(7)]
                b8 += p1 * W[k1 + np.uint64(8)]
                b9 += p1 * W[k1 + np.uint64(9)]
                b10 += p1 * W[k1 + np.uint64(10)]
                b11 += p1 * W[k1 + np.uint64(11)]
                b12 += p1 * W[k1 + np.uint64(12)]
                b13 += p1 * W[k1 + np.uint64(13)]
                b14 += p1 * W[k1 + np.uint64(14)]
                b15 += p1 * W[k1 + np.uint64(15)]
                c0 += p2 * W[k2]
                c1 += p2 * W[k2 + np.uint64(1)]
                c2 += p2 * W[k2 + np.uint64(2)]
                c3 += p2 * W[k2 + np.uint64(3)]
                c4 += p2 * W[k2 + np.uint64(4)]
                c5 += p2 * W[k2 + np.uint64(5)]
                c6 += p2 * W[k2 + np.uint64(6)]
                c7 += p2 * W[k2 + np.uint64(7)]
                c8 += p2 * W[k2 + np.uint64(8)]
                c9 += p2 * W[k2 + np.uint64(9)]
                c10 += p2 * W[k2 + np.uint64(10)]
                c11 += p2 * W[k2 + np.uint64(11)]
                c12 += p2 * W[k2 + np.uint64(12)]
                c13 += p2 * W[k2 + np.uint64(13)]
                c14 += p2 * W[k2 + np.uint64(14)]
                c15 += p2 * W[k2 + np.uint64(15)]
                e0 += p3 * W[k3]
                e1 += p3 * W[k3 + np.uint64(1)]
                e2 += p3 * W[k3 + np.uint64(2)]
                e3 += p3 * W[k3 + np.uint64(3)]
                e4 += p3 * W[k3 + np.uint64(4)]
                e5 += p3 * W[k3 + np.uint64(5)]
                e6 += p3 * W[k3 + np.uint64(6)]
                e7 += p3 * W[k3 + np.uint64(7)]
                e8 += p3 * W[k3 + np.uint64(8)]
                e9 += p3 * W[k3 + np.uint64(9)]
                e10 += p3 * W[k3 + np.uint64(10)]
                e11 += p3 * W[k3 + np.uint64(11)]
                e12 += p3 * W[k3 + np.uint64(12)]
                e13 += p3 * W[k3 + np.uint64(13)]
                e14 += p3 * W[k3 + np.uint64(14)]
                e15 += p3 * W[k3 + np.uint64(15)]
                sums[0] = (a0 + b0) + (c0 + e0)
                sums[1] = (a1 + b1) + (c1 + e1)
                sums[2] = (a2 + b2) + (c2 + e2)
                sums[3] = (a3 + b3) + (c3 + e3)
                sums[4] = (a4 + b4) + (c4 + e4)
                sums[5] = (a5 + b5) + (c5 + e5)
                sums[6] = (a6 + b6) + (c6 + e6)
                sums[7] = (a7 + b7) + (c7 + e7)
                sums[8] = (a8 + b8) + (c8 + e8)
                sums[9] = (a9 + b9) + (c9 + e9)
                sums[10] = (a10 + b10) + (c10 + e10)
                sums[11] = (a11 + b11) + (c11 + e11)
                sums[12] = (a12 + b12) + (c12 + e12)
                sums[13] = (a13 + b13) + (c13 + e13)
                sums[14] = (a14 + b14) + (c14 + e14)
                sums[15] = (a15 + b15) + (c15 + e15)
                for u in range(16):  # stored side by side first: LLVM vectorizes from there
                    out[16 * blk + u, group + t] = sums[u]


@jit
def _nb_first_layer_listed12(images, first, count, W1p, out, lists, ends, scratch, table, floats,
                           sums):
    """:func:`_nb_first_layer_listed` for blocks of 12 units or fewer (lanes 12 to 15 padding,
    their weights zero): an AVX2 register and a half a pixel instead of two, the same sums in
    the lanes that count; out's rows 12 to 15 are left as they are (zero)."""
    d = np.uint64(images.shape[1])
    flat, quads = images.reshape(-1), lists.view(np.uint64)
    blocks, rows = W1p.shape[0], np.uint64(W1p.shape[1])
    W, lanes = W1p.reshape(-1), np.uint64(16)
    stride = np.uint64(lists.shape[0] // 8)
    sixty_four, two, mask = np.uint64(64), np.uint64(2), np.uint64(0xFFFF)
    full = d // sixty_four * sixty_four
    for group in range(0, count, 8):
        size = min(8, count - group)
        for t in range(size):  # the lists, all written before any is read
            off = np.uint64(first + group + t) * d
            pos = np.uint64(t) * stride
            for start in range(np.uint64(0), full, sixty_four):
                m = _nb_nonzero_mask64(flat, off + start)
                if m:
                    pos = _nb_set_bits64(table, m, start, lists, pos)
            if full < d:
                if full:
                    m = _nb_nonzero_mask64(flat, off + d - sixty_four) >> (sixty_four - (d - full))
                else:
                    for j in range(d):
                        scratch[j] = flat[off + j]
                    m = _nb_nonzero_mask64(scratch, 0)
                pos = _nb_set_bits64(table, m, full, lists, pos)
            for z in range(4):
                lists[pos + np.uint64(z)] = 0
            ends[t] = pos
        for t in range(size):
            off = np.uint64(first + group + t) * d
            for blk in range(blocks):
                base = np.uint64(blk) * rows * lanes
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0)
                a8 = a9 = a10 = a11 = np.float32(0)
                b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = np.float32(0)
                b8 = b9 = b10 = b11 = np.float32(0)
                c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = np.float32(0)
                c8 = c9 = c10 = c11 = np.float32(0)
                e0 = e1 = e2 = e3 = e4 = e5 = e6 = e7 = np.float32(0)
                e8 = e9 = e10 = e11 = np.float32(0)
                lo = np.uint64(t) * stride
                steps = (ends[t] - lo) >> two
                left = ends[t] - lo - (steps << two)  # pixels in the last step, 0 to 3
                s, last = lo >> two, (lo >> two) + steps
                while s < last:
                    w = quads[s]
                    if w == 0:  # never true (four distinct pixels); it keeps LLVM from
                        break   # vectorizing over the steps by gathers: it vectorizes the units
                    s += np.uint64(1)
                    i0, i1 = w & mask, (w >> np.uint64(16)) & mask
                    i2, i3 = (w >> np.uint64(32)) & mask, w >> np.uint64(48)
                    p0, p1 = floats[flat[off + i0]], floats[flat[off + i1]]
                    p2, p3 = floats[flat[off + i2]], floats[flat[off + i3]]
                    k0, k1 = base + i0 * lanes, base + i1 * lanes
                    k2, k3 = base + i2 * lanes, base + i3 * lanes
                    a0 += p0 * W[k0]
                    a1 += p0 * W[k0 + np.uint64(1)]
                    a2 += p0 * W[k0 + np.uint64(2)]
                    a3 += p0 * W[k0 + np.uint64(3)]
                    a4 += p0 * W[k0 + np.uint64(4)]
                    a5 += p0 * W[k0 + np.uint64(5)]
                    a6 += p0 * W[k0 + np.uint64(6)]
                    a7 += p0 * W[k0 + np.uint64(7)]
                    a8 += p0 * W[k0 + np.uint64(8)]
                    a9 += p0 * W[k0 + np.uint64(9)]
                    a10 += p0 * W[k0 + np.uint64(10)]
                    a11 += p0 * W[k0 + np.uint64(11)]
                    b0 += p1 * W[k1]
                    b1 += p1 * W[k1 + np.uint64(1)]
                    b2 += p1 * W[k1 + np.uint64(2)]
                    b3 += p1 * W[k1 + np.uint64(3)]
                    b4 += p1 * W[k1 + np.uint64(4)]
                    b5 += p1 * W[k1 + np.uint64(5)]
                    b6 += p1 * W[k1 + np.uint64(6)]
                    b7 += p1 * W[k1 + np.uint64(7)]
                    b8 += p1 * W[k1 + np.uint64(8)]
                    b9 += p1 * W[k1 + np.uint64(9)]
                    b10 += p1 * W[k1 + np.uint64(10)]
                    b11 += p1 * W[k1 + np.uint64(11)]
                    c0 += p2 * W[k2]
                    c1 += p2 * W[k2 + np.uint64(1)]
                    c2 += p2 * W[k2 + np.uint64(2)]
                    c3 += p2 * W[k2 + np.uint64(3)]
                    c4 += p2 * W[k2 + np.uint64(4)]
                    c5 += p2 * W[k2 + np.uint64(5)]
                    c6 += p2 * W[k2 + np.uint64(6)]
                    c7 += p2 * W[k2 + np.uint64(7)]
                    c8 += p2 * W[k2 + np.uint64(8)]
                    c9 += p2 * W[k2 + np.uint64(9)]
                    c10 += p2 * W[k2 + np.uint64(10)]
                    c11 += p2 * W[k2 + np.uint64(11)]
                    e0 += p3 * W[k3]
                    e1 += p3 * W[k3 + np.uint64(1)]
                    e2 += p3 * W[k3 + np.uint64(2)]
                    e3 += p3 * W[k3 + np.uint64(3)]
                    e4 += p3 * W[k3 + np.uint64(4)]
                    e5 += p3 * W[k3 + np.uint64(5)]
                    e6 += p3 * W[k3 + np.uint64(6)]
                    e7 += p3 * W[k3 + np.uint64(7)]
                    e8 += p3 * W[k3 + np.uint64(8)]
                    e9 += p3 * W[k3 + np.uint64(9)]
                    e10 += p3 * W[k3 + np.uint64(10)]
                    e11 += p3 * W[k3 + np.uint64(11)]
                w = quads[last]
                i0, i1 = w & mask, (w >> np.uint64(16)) & mask
                i2, i3 = (w >> np.uint64(32)) & mask, w >> np.uint64(48)
                # Times 1 for the pixels of the list, 0 past them, from ``floats``: no branch.
                p0 = floats[flat[off + i0]] * floats[min(left, np.uint64(1))]
                p1 = floats[flat[off + i1]] * floats[min(left, two) >> np.uint64(1)]
                p2 = floats[flat[off + i2]] * floats[left >> np.uint64(1) & left]
                p3 = np.float32(0)
                k0, k1 = base + i0 * lanes, base + i1 * lanes
                k2, k3 = base + i2 * lanes, base + i3 * lanes
                a0 += p0 * W[k0]
                a1 += p0 * W[k0 + np.uint64(1)]
                a2 += p0 * W[k0 + np.uint64(2)]
                a3 += p0 * W[k0 + np.uint64(3)]
                a4 += p0 * W[k0 + np.uint64(4)]
                a5 += p0 * W[k0 + np.uint64(5)]
                a6 += p0 * W[k0 + np.uint64(6)]
                a7 += p0 * W[k0 + np.uint64(7)]
                a8 += p0 * W[k0 + np.uint64(8)]
                a9 += p0 * W[k0 + np.uint64(9)]
                a10 += p0 * W[k0 + np.uint64(10)]
                a11 += p0 * W[k0 + np.uint64(11)]
                b0 += p1 * W[k1]
                b1 += p1 * W[k1 + np.uint64(1)]
                b2 += p1 * W[k1 + np.uint64(2)]
                b3 += p1 * W[k1 + np.uint64(3)]
                b4 += p1 * W[k1 + np.uint64(4)]
                b5 += p1 * W[k1 + np.uint64(5)]
                b6 += p1 * W[k1 + np.uint64(6)]
                b7 += p1 * W[k1 + np.uint64(7)]
                b8 += p1 * W[k1 + np.uint64(8)]
                b9 += p1 * W[k1 + np.uint64(9)]
                b10 += p1 * W[k1 + np.uint64(10)]
                b11 += p1 * W[k1 + np.uint64(11)]
                c0 += p2 * W[k2]
                c1 += p2 * W[k2 + np.uint64(1)]
                c2 += p2 * W[k2 + np.uint64(2)]
                c3 += p2 * W[k2 + np.uint64(3)]
                c4 += p2 * W[k2 + np.uint64(4)]
                c5 += p2 * W[k2 + np.uint64(5)]
                c6 += p2 * W[k2 + np.uint64(6)]
                c7 += p2 * W[k2 + np.uint64(7)]
                c8 += p2 * W[k2 + np.uint64(8)]
                c9 += p2 * W[k2 + np.uint64(9)]
                c10 += p2 * W[k2 + np.uint64(10)]
                c11 += p2 * W[k2 + np.uint64(11)]
                e0 += p3 * W[k3]
                e1 += p3 * W[k3 + np.uint64(1)]
                e2 += p3 * W[k3 + np.uint64(2)]
                e3 += p3 * W[k3 + np.uint64(3)]
                e4 += p3 * W[k3 + np.uint64(4)]
                e5 += p3 * W[k3 + np.uint64(5)]
                e6 += p3 * W[k3 + np.uint64(6)]
                e7 += p3 * W[k3 + np.uint64(7)]
                e8 += p3 * W[k3 + np.uint64(8)]
                e9 += p3 * W[k3 + np.uint64(9)]
                e10 += p3 * W[k3 + np.uint64(10)]
                e11 += p3 * W[k3 + np.uint64(11)]
                sums[0] = (a0 + b0) + (c0 + e0)
                sums[1] = (a1 + b1) + (c1 + e1)
                sums[2] = (a2 + b2) + (c2 + e2)
                sums[3] = (a3 + b3) + (c3 + e3)
                sums[4] = (a4 + b4) + (c4 + e4)
                sums[5] = (a5 + b5) + (c5 + e5)
                sums[6] = (a6 + b6) + (c6 + e6)
                sums[7] = (a7 + b7) + (c7 + e7)
                sums[8] = (a8 + b8) + (c8 + e8)
                sums[9] = (a9 + b9) + (c9 + e9)
                sums[10] = (a10 + b10) + (c10 + e10)
                sums[11] = (a11 + b11) + (c11 + e11)
                for u in range(12):  # stored side by side first: LLVM vectorizes from there
                    out[16 * blk + u, group + t] = sums[u]
