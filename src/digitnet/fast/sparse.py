"""The first layer's sums over pixel lists for training, a tile of samples a call.

Forward, ``Z1[:, s] = P @ W1`` over each sample's non-zero pixels; backward, ``G += P.T dZ1``
(see :mod:`digitnet.fast.numba_engine` for the lists and the folded standardising). One call
runs the loops over all samples of a tile, so that no image costs a call: a compiled call takes
its arrays' fields one by one, dozens of words on the stack, for a list of some 150 pixels.
The weights are W1p, blocks of 16 units, flattened: pixel k of block blk is the 16 floats from
``(blk rows + k) 16``. Index arithmetic is unsigned, which spares numba's negative-index test.

With 12 hidden units or fewer (MNIST's 784-10-10) the 16-unit block is a quarter padding:
``_nb_forward12`` and ``_nb_backward12`` leave the padding lanes out, with the same sums in the
others, so the trained weights are the same bits either way (one AVX2 register and a half a
pixel instead of two).

Imported only where numba is installed and chosen, like :mod:`digitnet.fast.kernels`.
"""

from __future__ import annotations

import numpy as np

from digitnet.fast.intrinsics import prefetch as _nb_prefetch
from digitnet.fast.pixels import jit as _jit

__all__ = ["AHEAD"]

AHEAD = 2  # samples ahead of the current one whose pixel lists are prefetched


@_jit
def _nb_forward(indptr, indices, values, order, first, last, W1p, Z1, floats, sums):
    """``Z1[16 blk + u, i - first] = sum over q of values[q] W1p[blk, indices[q], u]`` over
    the list of sample order[i] (``indptr``), for i in [first, last); the lists of the samples
    AHEAD of each are prefetched (an epoch's order jumps around memory). ``floats[v]`` is v as
    float32; ``sums`` 16 floats of scratch.

    Four pixels a step: the a accumulators take the sum of the first two products, b of the
    other two. (Four sets, one a pixel, measured no faster on Zen 3, and would round the sums,
    so the trained weights, differently.)
    """
    blocks, rows = W1p.shape[0], np.uint64(W1p.shape[1])
    W, lanes = W1p.reshape(-1), np.uint64(16)
    one, two, three, four = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)
    n = order.shape[0]
    for i in range(first, last):
        if i + AHEAD < n:
            ahead = order[i + AHEAD]
            for q in range(indptr[ahead], indptr[ahead + 1], 64):
                _nb_prefetch(values, q)
            for q in range(indptr[ahead], indptr[ahead + 1], 32):
                _nb_prefetch(indices, q)
        r = order[i]
        for blk in range(blocks):
            base = np.uint64(blk) * rows
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0)
            a8 = a9 = a10 = a11 = a12 = a13 = a14 = a15 = np.float32(0)
            b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = np.float32(0)
            b8 = b9 = b10 = b11 = b12 = b13 = b14 = b15 = np.float32(0)
            q, end = np.uint64(indptr[r]), np.uint64(indptr[r + 1])
            while q + three < end:
                p0, k0 = floats[values[q]], (base + indices[q]) * lanes
                p1, k1 = floats[values[q + one]], (base + indices[q + one]) * lanes
                p2, k2 = floats[values[q + two]], (base + indices[q + two]) * lanes
                p3, k3 = floats[values[q + three]], (base + indices[q + three]) * lanes
                if p0 == 0:  # never true (only non-zero pixels are listed); it keeps LLVM from
                    break    # vectorizing over q with gathers, so it vectorizes over the units
                a0 += p0 * W[k0] + p1 * W[k1]
                a1 += p0 * W[k0 + np.uint64(1)] + p1 * W[k1 + np.uint64(1)]
                a2 += p0 * W[k0 + np.uint64(2)] + p1 * W[k1 + np.uint64(2)]
                a3 += p0 * W[k0 + np.uint64(3)] + p1 * W[k1 + np.uint64(3)]
                a4 += p0 * W[k0 + np.uint64(4)] + p1 * W[k1 + np.uint64(4)]
                a5 += p0 * W[k0 + np.uint64(5)] + p1 * W[k1 + np.uint64(5)]
                a6 += p0 * W[k0 + np.uint64(6)] + p1 * W[k1 + np.uint64(6)]
                a7 += p0 * W[k0 + np.uint64(7)] + p1 * W[k1 + np.uint64(7)]
                a8 += p0 * W[k0 + np.uint64(8)] + p1 * W[k1 + np.uint64(8)]
                a9 += p0 * W[k0 + np.uint64(9)] + p1 * W[k1 + np.uint64(9)]
                a10 += p0 * W[k0 + np.uint64(10)] + p1 * W[k1 + np.uint64(10)]
                a11 += p0 * W[k0 + np.uint64(11)] + p1 * W[k1 + np.uint64(11)]
                a12 += p0 * W[k0 + np.uint64(12)] + p1 * W[k1 + np.uint64(12)]
                a13 += p0 * W[k0 + np.uint64(13)] + p1 * W[k1 + np.uint64(13)]
                a14 += p0 * W[k0 + np.uint64(14)] + p1 * W[k1 + np.uint64(14)]
                a15 += p0 * W[k0 + np.uint64(15)] + p1 * W[k1 + np.uint64(15)]
                b0 += p2 * W[k2] + p3 * W[k3]
                b1 += p2 * W[k2 + np.uint64(1)] + p3 * W[k3 + np.uint64(1)]
                b2 += p2 * W[k2 + np.uint64(2)] + p3 * W[k3 + np.uint64(2)]
                b3 += p2 * W[k2 + np.uint64(3)] + p3 * W[k3 + np.uint64(3)]
                b4 += p2 * W[k2 + np.uint64(4)] + p3 * W[k3 + np.uint64(4)]
                b5 += p2 * W[k2 + np.uint64(5)] + p3 * W[k3 + np.uint64(5)]
                b6 += p2 * W[k2 + np.uint64(6)] + p3 * W[k3 + np.uint64(6)]
                b7 += p2 * W[k2 + np.uint64(7)] + p3 * W[k3 + np.uint64(7)]
                b8 += p2 * W[k2 + np.uint64(8)] + p3 * W[k3 + np.uint64(8)]
                b9 += p2 * W[k2 + np.uint64(9)] + p3 * W[k3 + np.uint64(9)]
                b10 += p2 * W[k2 + np.uint64(10)] + p3 * W[k3 + np.uint64(10)]
                b11 += p2 * W[k2 + np.uint64(11)] + p3 * W[k3 + np.uint64(11)]
                b12 += p2 * W[k2 + np.uint64(12)] + p3 * W[k3 + np.uint64(12)]
                b13 += p2 * W[k2 + np.uint64(13)] + p3 * W[k3 + np.uint64(13)]
                b14 += p2 * W[k2 + np.uint64(14)] + p3 * W[k3 + np.uint64(14)]
                b15 += p2 * W[k2 + np.uint64(15)] + p3 * W[k3 + np.uint64(15)]
                q += four
            while q < end:
                p0, k0 = floats[values[q]], (base + indices[q]) * lanes
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
                q += one
            sums[0] = a0 + b0
            sums[1] = a1 + b1
            sums[2] = a2 + b2
            sums[3] = a3 + b3
            sums[4] = a4 + b4
            sums[5] = a5 + b5
            sums[6] = a6 + b6
            sums[7] = a7 + b7
            sums[8] = a8 + b8
            sums[9] = a9 + b9
            sums[10] = a10 + b10
            sums[11] = a11 + b11
            sums[12] = a12 + b12
            sums[13] = a13 + b13
            sums[14] = a14 + b14
            sums[15] = a15 + b15
            for u in range(16):  # stored side by side first: LLVM vectorizes from there
                Z1[16 * blk + u, i - first] = sums[u]


@_jit
def _nb_forward12(indptr, indices, values, order, first, last, W1p, Z1, floats, sums):
    """:func:`_nb_forward` for blocks of 12 units or fewer (lanes 12 to 15 padding, their
    weights zero): an AVX2 register and a half a pixel instead of two, the same sums in the
    lanes that count. Z1's rows 12 to 15 are left as they are (zero)."""
    blocks, rows = W1p.shape[0], np.uint64(W1p.shape[1])
    W, lanes = W1p.reshape(-1), np.uint64(16)
    one, two, three, four = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)
    n = order.shape[0]
    for i in range(first, last):
        if i + AHEAD < n:
            ahead = order[i + AHEAD]
            for q in range(indptr[ahead], indptr[ahead + 1], 64):
                _nb_prefetch(values, q)
            for q in range(indptr[ahead], indptr[ahead + 1], 32):
                _nb_prefetch(indices, q)
        r = order[i]
        for blk in range(blocks):
            base = np.uint64(blk) * rows
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0)
            a8 = a9 = a10 = a11 = np.float32(0)
            b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = np.float32(0)
            b8 = b9 = b10 = b11 = np.float32(0)
            q, end = np.uint64(indptr[r]), np.uint64(indptr[r + 1])
            while q + three < end:
                p0, k0 = floats[values[q]], (base + indices[q]) * lanes
                p1, k1 = floats[values[q + one]], (base + indices[q + one]) * lanes
                p2, k2 = floats[values[q + two]], (base + indices[q + two]) * lanes
                p3, k3 = floats[values[q + three]], (base + indices[q + three]) * lanes
                if p0 == 0:  # never true (only non-zero pixels are listed); it keeps LLVM from
                    break    # vectorizing over q with gathers, so it vectorizes over the units
                a0 += p0 * W[k0] + p1 * W[k1]
                a1 += p0 * W[k0 + np.uint64(1)] + p1 * W[k1 + np.uint64(1)]
                a2 += p0 * W[k0 + np.uint64(2)] + p1 * W[k1 + np.uint64(2)]
                a3 += p0 * W[k0 + np.uint64(3)] + p1 * W[k1 + np.uint64(3)]
                a4 += p0 * W[k0 + np.uint64(4)] + p1 * W[k1 + np.uint64(4)]
                a5 += p0 * W[k0 + np.uint64(5)] + p1 * W[k1 + np.uint64(5)]
                a6 += p0 * W[k0 + np.uint64(6)] + p1 * W[k1 + np.uint64(6)]
                a7 += p0 * W[k0 + np.uint64(7)] + p1 * W[k1 + np.uint64(7)]
                a8 += p0 * W[k0 + np.uint64(8)] + p1 * W[k1 + np.uint64(8)]
                a9 += p0 * W[k0 + np.uint64(9)] + p1 * W[k1 + np.uint64(9)]
                a10 += p0 * W[k0 + np.uint64(10)] + p1 * W[k1 + np.uint64(10)]
                a11 += p0 * W[k0 + np.uint64(11)] + p1 * W[k1 + np.uint64(11)]
                b0 += p2 * W[k2] + p3 * W[k3]
                b1 += p2 * W[k2 + np.uint64(1)] + p3 * W[k3 + np.uint64(1)]
                b2 += p2 * W[k2 + np.uint64(2)] + p3 * W[k3 + np.uint64(2)]
                b3 += p2 * W[k2 + np.uint64(3)] + p3 * W[k3 + np.uint64(3)]
                b4 += p2 * W[k2 + np.uint64(4)] + p3 * W[k3 + np.uint64(4)]
                b5 += p2 * W[k2 + np.uint64(5)] + p3 * W[k3 + np.uint64(5)]
                b6 += p2 * W[k2 + np.uint64(6)] + p3 * W[k3 + np.uint64(6)]
                b7 += p2 * W[k2 + np.uint64(7)] + p3 * W[k3 + np.uint64(7)]
                b8 += p2 * W[k2 + np.uint64(8)] + p3 * W[k3 + np.uint64(8)]
                b9 += p2 * W[k2 + np.uint64(9)] + p3 * W[k3 + np.uint64(9)]
                b10 += p2 * W[k2 + np.uint64(10)] + p3 * W[k3 + np.uint64(10)]
                b11 += p2 * W[k2 + np.uint64(11)] + p3 * W[k3 + np.uint64(11)]
                q += four
            while q < end:
                p0, k0 = floats[values[q]], (base + indices[q]) * lanes
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
                q += one
            sums[0] = a0 + b0
            sums[1] = a1 + b1
            sums[2] = a2 + b2
            sums[3] = a3 + b3
            sums[4] = a4 + b4
            sums[5] = a5 + b5
            sums[6] = a6 + b6
            sums[7] = a7 + b7
            sums[8] = a8 + b8
            sums[9] = a9 + b9
            sums[10] = a10 + b10
            sums[11] = a11 + b11
            for u in range(12):  # stored side by side first: LLVM vectorizes from there
                Z1[16 * blk + u, i - first] = sums[u]


@_jit
def _nb_backward(indptr, indices, values, order, first, last, G1p, D, floats):
    """``G1p[blk, indices[q], u] += values[q] D[16 blk + u, i - first]`` over the list of
    sample order[i], for i in [first, last): the samples' shares of W1's gradient, one after
    another (their rows overlap)."""
    blocks, rows = G1p.shape[0], np.uint64(G1p.shape[1])
    G, lanes, one = G1p.reshape(-1), np.uint64(16), np.uint64(1)
    for i in range(first, last):
        r, col = order[i], i - first
        for blk in range(blocks):
            base, j = np.uint64(blk) * rows, 16 * blk
            d0 = D[j + 0, col]
            d1 = D[j + 1, col]
            d2 = D[j + 2, col]
            d3 = D[j + 3, col]
            d4 = D[j + 4, col]
            d5 = D[j + 5, col]
            d6 = D[j + 6, col]
            d7 = D[j + 7, col]
            d8 = D[j + 8, col]
            d9 = D[j + 9, col]
            d10 = D[j + 10, col]
            d11 = D[j + 11, col]
            d12 = D[j + 12, col]
            d13 = D[j + 13, col]
            d14 = D[j + 14, col]
            d15 = D[j + 15, col]
            q, end = np.uint64(indptr[r]), np.uint64(indptr[r + 1])
            while q < end:
                p, k = floats[values[q]], (base + indices[q]) * lanes
                G[k] += p * d0
                G[k + np.uint64(1)] += p * d1
                G[k + np.uint64(2)] += p * d2
                G[k + np.uint64(3)] += p * d3
                G[k + np.uint64(4)] += p * d4
                G[k + np.uint64(5)] += p * d5
                G[k + np.uint64(6)] += p * d6
                G[k + np.uint64(7)] += p * d7
                G[k + np.uint64(8)] += p * d8
                G[k + np.uint64(9)] += p * d9
                G[k + np.uint64(10)] += p * d10
                G[k + np.uint64(11)] += p * d11
                G[k + np.uint64(12)] += p * d12
                G[k + np.uint64(13)] += p * d13
                G[k + np.uint64(14)] += p * d14
                G[k + np.uint64(15)] += p * d15
                q += one


@_jit
def _nb_backward12(indptr, indices, values, order, first, last, G1p, D, floats):
    """:func:`_nb_backward` for blocks of 12 units or fewer: D's rows 12 to 15 are zero, so
    the padding lanes of G1p, which it leaves alone, would only gain zeros."""
    blocks, rows = G1p.shape[0], np.uint64(G1p.shape[1])
    G, lanes, one = G1p.reshape(-1), np.uint64(16), np.uint64(1)
    for i in range(first, last):
        r, col = order[i], i - first
        for blk in range(blocks):
            base, j = np.uint64(blk) * rows, 16 * blk
            d0 = D[j + 0, col]
            d1 = D[j + 1, col]
            d2 = D[j + 2, col]
            d3 = D[j + 3, col]
            d4 = D[j + 4, col]
            d5 = D[j + 5, col]
            d6 = D[j + 6, col]
            d7 = D[j + 7, col]
            d8 = D[j + 8, col]
            d9 = D[j + 9, col]
            d10 = D[j + 10, col]
            d11 = D[j + 11, col]
            q, end = np.uint64(indptr[r]), np.uint64(indptr[r + 1])
            while q < end:
                p, k = floats[values[q]], (base + indices[q]) * lanes
                G[k] += p * d0
                G[k + np.uint64(1)] += p * d1
                G[k + np.uint64(2)] += p * d2
                G[k + np.uint64(3)] += p * d3
                G[k + np.uint64(4)] += p * d4
                G[k + np.uint64(5)] += p * d5
                G[k + np.uint64(6)] += p * d6
                G[k + np.uint64(7)] += p * d7
                G[k + np.uint64(8)] += p * d8
                G[k + np.uint64(9)] += p * d9
                G[k + np.uint64(10)] += p * d10
                G[k + np.uint64(11)] += p * d11
                q += one
