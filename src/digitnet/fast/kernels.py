"""The numba kernels: one compiled call trains a run of steps, another predicts images.

Imported only where numba is installed and chosen (see :mod:`digitnet.fast.backend`); the
functions compile on first use, then load from numba's on-disk cache. They are the one compiled
copy of the network's math (network.py) and of the optimizers' rules (optim.py), held to those
readable originals by the parity tests in tests/test_fast.py. They are written for LLVM:

- the first layer's weights are kept as blocks of 16 units, W1p[block, pixel, 0:16], zero
  beyond the last unit, so that one pixel's row is one AVX-512 register of float32;
- the 16 named accumulators of the first layer's sums (_nb_dot16 here, :mod:`.sparse` for
  training, :mod:`.pixels` for inference) become that register (a loop over a small array
  would go through memory at every pixel), several sets of them so that consecutive
  multiply-adds do not wait for each other;
- loop counters that index arrays are unsigned, which spares numba's negative-index check;
- the first layer runs over an image's non-zero pixels only, and the next images' pixels are
  prefetched while this one is computed (the epoch's order jumps around memory).
"""

from __future__ import annotations

import math

import numpy as np

from digitnet.fast.listed import _nb_first_layer_listed, _nb_first_layer_listed12
from digitnet.fast.pixels import SLACK, _nb_bit_table, _nb_nonzero
from digitnet.fast.pixels import jit as _jit
from digitnet.fast.sparse import _nb_backward, _nb_backward12, _nb_forward, _nb_forward12

__all__ = ["GD", "MOMENTUM", "ADAM"]

GD, MOMENTUM, ADAM = 0, 1, 2  # the update rules _nb_step knows, as optim.py defines them

_SAMPLES = 64  # images whose layers above the first are computed side by side


@_jit
def _nb_finite(x):
    """Whether x is finite. (numba's math.isfinite tests x - x, which fast-math folds to 0.)"""
    return not (math.isnan(x) or math.isinf(x))


@_jit
def _nb_dot16(indices, values, lo, hi, W, blk, out, col):
    """``out[16 blk:16 blk + 16, col] = sum of values[q] * W[blk, indices[q], 0:16]`` over q in
    [lo, hi): one image's sums for one block of 16 units.

    Four pixels a step: the a accumulators take the sum of the first two products, b of the
    other two, so that each add waits for one of its kind every four pixels rather than every
    one. (Whole arrays and indices are passed rather than slices: a slice costs numba an atomic
    reference count per call.)
    """
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0)
    a8 = a9 = a10 = a11 = a12 = a13 = a14 = a15 = np.float32(0)
    b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = np.float32(0)
    b8 = b9 = b10 = b11 = b12 = b13 = b14 = b15 = np.float32(0)
    q, end = np.uint64(lo), np.uint64(hi)
    one, two, three, four = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)
    while q + three < end:
        p0, k0 = np.float32(values[q]), indices[q]
        p1, k1 = np.float32(values[q + one]), indices[q + one]
        p2, k2 = np.float32(values[q + two]), indices[q + two]
        p3, k3 = np.float32(values[q + three]), indices[q + three]
        if p0 == 0:  # never true (only non-zero pixels are listed); it keeps LLVM from
            break    # vectorizing over q with gathers, so it vectorizes over the 16 units
        a0 += p0 * W[blk, k0, 0] + p1 * W[blk, k1, 0]
        a1 += p0 * W[blk, k0, 1] + p1 * W[blk, k1, 1]
        a2 += p0 * W[blk, k0, 2] + p1 * W[blk, k1, 2]
        a3 += p0 * W[blk, k0, 3] + p1 * W[blk, k1, 3]
        a4 += p0 * W[blk, k0, 4] + p1 * W[blk, k1, 4]
        a5 += p0 * W[blk, k0, 5] + p1 * W[blk, k1, 5]
        a6 += p0 * W[blk, k0, 6] + p1 * W[blk, k1, 6]
        a7 += p0 * W[blk, k0, 7] + p1 * W[blk, k1, 7]
        a8 += p0 * W[blk, k0, 8] + p1 * W[blk, k1, 8]
        a9 += p0 * W[blk, k0, 9] + p1 * W[blk, k1, 9]
        a10 += p0 * W[blk, k0, 10] + p1 * W[blk, k1, 10]
        a11 += p0 * W[blk, k0, 11] + p1 * W[blk, k1, 11]
        a12 += p0 * W[blk, k0, 12] + p1 * W[blk, k1, 12]
        a13 += p0 * W[blk, k0, 13] + p1 * W[blk, k1, 13]
        a14 += p0 * W[blk, k0, 14] + p1 * W[blk, k1, 14]
        a15 += p0 * W[blk, k0, 15] + p1 * W[blk, k1, 15]
        b0 += p2 * W[blk, k2, 0] + p3 * W[blk, k3, 0]
        b1 += p2 * W[blk, k2, 1] + p3 * W[blk, k3, 1]
        b2 += p2 * W[blk, k2, 2] + p3 * W[blk, k3, 2]
        b3 += p2 * W[blk, k2, 3] + p3 * W[blk, k3, 3]
        b4 += p2 * W[blk, k2, 4] + p3 * W[blk, k3, 4]
        b5 += p2 * W[blk, k2, 5] + p3 * W[blk, k3, 5]
        b6 += p2 * W[blk, k2, 6] + p3 * W[blk, k3, 6]
        b7 += p2 * W[blk, k2, 7] + p3 * W[blk, k3, 7]
        b8 += p2 * W[blk, k2, 8] + p3 * W[blk, k3, 8]
        b9 += p2 * W[blk, k2, 9] + p3 * W[blk, k3, 9]
        b10 += p2 * W[blk, k2, 10] + p3 * W[blk, k3, 10]
        b11 += p2 * W[blk, k2, 11] + p3 * W[blk, k3, 11]
        b12 += p2 * W[blk, k2, 12] + p3 * W[blk, k3, 12]
        b13 += p2 * W[blk, k2, 13] + p3 * W[blk, k3, 13]
        b14 += p2 * W[blk, k2, 14] + p3 * W[blk, k3, 14]
        b15 += p2 * W[blk, k2, 15] + p3 * W[blk, k3, 15]
        q += four
    while q < end:
        p0, k0 = np.float32(values[q]), indices[q]
        a0 += p0 * W[blk, k0, 0]
        a1 += p0 * W[blk, k0, 1]
        a2 += p0 * W[blk, k0, 2]
        a3 += p0 * W[blk, k0, 3]
        a4 += p0 * W[blk, k0, 4]
        a5 += p0 * W[blk, k0, 5]
        a6 += p0 * W[blk, k0, 6]
        a7 += p0 * W[blk, k0, 7]
        a8 += p0 * W[blk, k0, 8]
        a9 += p0 * W[blk, k0, 9]
        a10 += p0 * W[blk, k0, 10]
        a11 += p0 * W[blk, k0, 11]
        a12 += p0 * W[blk, k0, 12]
        a13 += p0 * W[blk, k0, 13]
        a14 += p0 * W[blk, k0, 14]
        a15 += p0 * W[blk, k0, 15]
        q += one
    j = 16 * blk
    out[j, col], out[j + 1, col], out[j + 2, col], out[j + 3, col] = (a0 + b0, a1 + b1,
                                                                      a2 + b2, a3 + b3)
    out[j + 4, col], out[j + 5, col], out[j + 6, col], out[j + 7, col] = (a4 + b4, a5 + b5,
                                                                          a6 + b6, a7 + b7)
    out[j + 8, col], out[j + 9, col], out[j + 10, col], out[j + 11, col] = (a8 + b8, a9 + b9,
                                                                            a10 + b10,
                                                                            a11 + b11)
    out[j + 12, col], out[j + 13, col], out[j + 14, col], out[j + 15, col] = (a12 + b12,
                                                                              a13 + b13,
                                                                              a14 + b14,
                                                                              a15 + b15)


@_jit
def _nb_prepare(W1, b1, c, W1p, cb1):
    """Copy W1 into the 16-unit blocks W1p; ``cb1 = b1 + c * (column sums of W1)``."""
    n_in, H = W1.shape
    cb1[:] = 0
    for k in range(n_in):
        for j in range(H):
            w = W1[k, j]
            W1p[j >> 4, k, j & 15] = w
            cb1[j] += w
    for j in range(H):
        cb1[j] = b1[j] + c * cb1[j]




@_jit
def _nb_exp(x, bits):
    """exp of each x <= 0 in place (float32, within 2 ulp; below -87.3 it is 2**-126).

    Written so that LLVM vectorizes it (numba's math.exp is a scalar call per value): Cody and
    Waite's range reduction x = n ln 2 + r, Cephes' polynomial for exp(r), and 2**n from its
    bits, built as integers in ``bits`` (int32, as long as x) and read back as float32.
    """
    two_n = bits.view(np.float32)
    for s in range(x.shape[0]):
        v = x[s]
        v = v if not v < np.float32(-87.3) else np.float32(-87.3)  # NaN stays NaN
        n = np.float32(math.floor(v * np.float32(1.44269504) + np.float32(0.5)))
        r = v - n * np.float32(0.693359375) + n * np.float32(2.12194440e-4)
        p = np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        x[s] = p * r * r + r + np.float32(1)
        bits[s] = (np.int32(n) + np.int32(127)) << np.int32(23)
    for s in range(x.shape[0]):
        x[s] *= two_n[s]


@_jit
def _nb_clipped_log(p):
    """log(clip(p, 1e-12, 1)) as network.cross_entropy takes it; NaN stays NaN."""
    return math.log(p if not p < 1e-12 else 1e-12)


@_jit
def _nb_layers_above(Z1, n, a, cb1, H, W2, b2, ys, on, off, inv_m, A1, P, D1, best, top,
                     total, bits, gW2, gb2, gb1):
    """Everything above the first layer's pixel sums, for n samples side by side.

    Arrays are (units, samples): every loop runs over the samples innermost, which LLVM
    vectorizes 16 at a time. Z1 holds a P @ W1 on entry and Z1 on return, D1 receives dZ1;
    gW2, gb2 and gb1 are accumulated. Returns (correct predictions, summed data loss).
    """
    C = W2.shape[1]
    for j in range(H):                       # Z1 = X @ W1 + b1; A1 = relu(Z1)
        for s in range(n):
            z = a * Z1[j, s] + cb1[j]
            Z1[j, s] = z
            A1[j, s] = max(z, np.float32(0))
    for o in range(C):                       # Z2 = A1 @ W2 + b2
        for s in range(n):
            P[o, s] = b2[o]
    for j in range(H):
        for o in range(C):
            w = W2[j, o]
            for s in range(n):
                P[o, s] += A1[j, s] * w
    top[:n] = P[0, :n]                       # A2 = softmax(Z2), each sample's maximum first
    best[:n] = 0
    for o in range(1, C):
        for s in range(n):
            if P[o, s] > top[s]:
                top[s] = P[o, s]
                best[s] = o
    total[:n] = 0
    for o in range(C):
        for s in range(n):
            P[o, s] -= top[s]
        _nb_exp(P[o, :n], bits[:n])
        for s in range(n):
            total[s] += P[o, s]
    for s in range(n):
        total[s] = np.float32(1) / total[s]
    for o in range(C):
        for s in range(n):
            P[o, s] *= total[s]
    correct, loss = 0, 0.0
    for s in range(n):                       # cross-entropy against Y = (1-eps) one-hot + eps/C
        y = ys[s]
        correct += best[s] == y
        if off == 0:
            loss -= _nb_clipped_log(P[y, s])
        else:
            for o in range(C):
                loss -= (on if o == y else off) * _nb_clipped_log(P[o, s])
    for o in range(C):                       # dZ2 = (A2 - Y) / m: softmax with cross-entropy
        for s in range(n):
            P[o, s] = (P[o, s] - off) * inv_m
    for s in range(n):
        P[ys[s], s] -= (on - off) * inv_m
    for o in range(C):                       # db2, dW2 = A1.T dZ2
        acc = np.float32(0)
        for s in range(n):
            acc += P[o, s]
        gb2[o] += acc
    for j in range(H):
        for o in range(C):
            acc = np.float32(0)
            for s in range(n):
                acc += A1[j, s] * P[o, s]
            gW2[j, o] += acc
    for j in range(H):                       # dZ1 = dZ2 W2.T * relu'(Z1); db1
        for s in range(n):
            D1[j, s] = 0
        for o in range(C):
            w = W2[j, o]
            for s in range(n):
                D1[j, s] += P[o, s] * w
        acc = np.float32(0)
        for s in range(n):
            d = D1[j, s] if Z1[j, s] > 0 else np.float32(0)
            D1[j, s] = d
            acc += d
        gb1[j] += acc
    return correct, loss


@_jit
def _nb_rates(kind, hyper, lr, t):
    """The step's constants for :func:`_nb_step`, as float32: the rate and mu (gd, momentum);
    b1, 1 - b1, b2, 1 - b2 and Adam's bias corrections folded into its step size and epsilon
    (as optim.Adam does)."""
    r = np.zeros(8, np.float32)
    r[0], r[1] = lr, hyper[3]
    if kind == ADAM:
        beta1, beta2, eps = hyper[0], hyper[1], hyper[2]
        r[2], r[3], r[4], r[5] = beta1, 1 - beta1, beta2, 1 - beta2
        r[6] = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        r[7] = eps * math.sqrt(1 - beta2**t)
    return r


@_jit
def _nb_step(kind, P, G, M, V, r):
    """One optimizer step on the 1-D arrays P (parameters), G (gradients), M and V (state):
    0 gradient descent, 1 momentum, 2 Adam, one branch-free loop each. Returns the sum of the
    new parameters in float64, which is finite exactly when they all are."""
    # The constants are read into locals first: LLVM cannot tell that the stores into P, M
    # and V leave r alone, and would reload r inside the loop instead of vectorizing it.
    rate, mu, b1, c1, b2, c2, step, eps = r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]
    total = 0.0
    n = np.uint64(P.shape[0])
    if kind == GD:                           # W <- W - rate dW
        for i in range(n):
            p = P[i] - rate * G[i]
            P[i] = p
            total += p
    elif kind == MOMENTUM:                   # v <- mu v + dW; W <- W - rate v
        for i in range(n):
            m = mu * M[i] + G[i]
            M[i] = m
            p = P[i] - rate * m
            P[i] = p
            total += p
    else:                                    # Adam
        for i in range(n):
            g = G[i]
            m = b1 * M[i] + c1 * g
            v = b2 * V[i] + c2 * g * g
            M[i] = m
            V[i] = v
            p = P[i] - step * m / (np.float32(math.sqrt(v)) + eps)
            P[i] = p
            total += p
    return total


@_jit
def _nb_blocks(A, B, to_blocks):
    """Copy (n_in, H) A into the 16-unit blocks B (n_blocks, n_in, 16), or back."""
    n_in, H = A.shape
    for k in range(n_in):
        for j in range(H):
            if to_blocks:
                B[j >> 4, k, j & 15] = A[k, j]
            else:
                A[k, j] = B[j >> 4, k, j & 15]


@_jit
def _nb_first_gradient(G, W, a, c, db, l2):
    """Turn the pixel sums G = P.T dZ1 into W1's gradient a G + c sum(dZ1) + l2 W1, in place,
    all in blocks (db is sum(dZ1) padded with zeros). Returns sum(W1 ** 2) in float64.
    (Flat indices throughout: a view per pixel row would cost numba a reference count.)"""
    rate = np.float32(l2)
    rows, lanes = np.uint64(G.shape[1]), np.uint64(16)
    g, w = G.reshape(-1), W.reshape(-1)
    shift = np.zeros(16, np.float32)
    for blk in range(G.shape[0]):
        for lane in range(16):
            shift[lane] = db[16 * blk + lane] * c
        start = np.uint64(blk) * rows * lanes
        for k in range(rows):
            o = start + k * lanes
            for lane in range(16):
                at = o + np.uint64(lane)
                g[at] = a * g[at] + shift[lane] + rate * w[at]
    squares = 0.0
    for i in range(np.uint64(w.shape[0])):
        squares += np.float64(w[i]) * w[i]
    return squares


@_jit
def _nb_column_sums(W, sums):
    """``sums[j] = sum over pixels of W1[:, j]``, from the blocks."""
    rows, lanes = np.uint64(W.shape[1]), np.uint64(16)
    w = W.reshape(-1)
    s = np.zeros(16, np.float32)
    for blk in range(W.shape[0]):
        s[:] = 0
        start = np.uint64(blk) * rows * lanes
        for k in range(rows):
            o = start + k * lanes
            for lane in range(16):
                s[lane] += w[o + np.uint64(lane)]
        sums[16 * blk:16 * blk + 16] = s


@_jit
def _nb_train(indptr, indices, values, labels, order, batch_size, lrs, pre, dims, theta, grad,
              kind, s1, s2, hyper, t0, l2, smoothing, W1p, G1p, watch, out):
    """Run ``len(lrs)`` steps of the n_in-H-C network (see ``NumbaEngine.run``).

    ``watch`` is the loss watch's state (smoothed data loss or NaN before the first step,
    limit, floor, rise, examples), updated as ``optim.LossWatch.rose`` does. ``out``
    receives: loss sum (weighted by batch size), correct predictions, examples seen, steps
    taken, 1 if the last step diverged, and that step's loss.
    """
    n_in, H, C = dims[0], dims[1], dims[2]
    blocks = W1p.shape[0]
    a, c = np.float32(pre[0]), np.float32(pre[1])
    nw1 = n_in * H
    nw = nw1 + H * C
    W1 = theta[:nw1].reshape((n_in, H))
    W2 = theta[nw1:nw].reshape((H, C))
    b1, b2 = theta[nw:nw + H], theta[nw + H:nw + H + C]
    gW2 = grad[nw1:nw].reshape((H, C))
    gb1, gb2 = grad[nw:nw + H], grad[nw + H:nw + H + C]
    cb1 = np.zeros(H, np.float32)
    # A block of samples at a time, units by samples (see _nb_layers_above). Rows of Z1 and D1
    # beyond H stay 0, so the padding adds nothing to G1p.
    Z1 = np.zeros((16 * blocks, _SAMPLES), np.float32)
    D1 = np.zeros((16 * blocks, _SAMPLES), np.float32)
    A1 = np.zeros((H, _SAMPLES), np.float32)
    P = np.zeros((C, _SAMPLES), np.float32)
    ys = np.zeros(_SAMPLES, np.int64)
    best = np.zeros(_SAMPLES, np.int64)
    top = np.zeros(_SAMPLES, np.float32)
    norm = np.zeros(_SAMPLES, np.float32)
    bits = np.zeros(_SAMPLES, np.int32)
    floats = np.arange(256).astype(np.float32)  # v as float32, for the pixel values v
    unit_sums = np.zeros(16, np.float32)
    narrow = H <= 12  # one block, a quarter of it or more padding: see sparse.py
    off = np.float32(smoothing / C)          # the target Y: (1 - eps) one-hot + eps / C
    on = np.float32(1 - smoothing) + off
    # For the run, W1 and its optimizer state live in blocks of 16 units (padding zero, which
    # every optimizer keeps at zero); they are copied back at the end.
    M1p, V1p = np.zeros_like(W1p), np.zeros_like(W1p)
    _nb_blocks(W1, W1p, True)
    _nb_blocks(s1[:nw1].reshape((n_in, H)), M1p, True)
    _nb_blocks(s2[:nw1].reshape((n_in, H)), V1p, True)
    sums = np.zeros(16 * blocks, np.float32)
    db1 = np.zeros(16 * blocks, np.float32)
    _nb_column_sums(W1p, sums)
    for j in range(H):
        cb1[j] = b1[j] + c * sums[j]
    G1p[:] = 0
    n = order.shape[0]
    loss_sum, correct, seen, steps = 0.0, 0, 0, 0
    diverged, last_loss = 0.0, np.nan
    for s in range(lrs.shape[0]):
        start = s * batch_size
        stop = min(start + batch_size, n)
        m = stop - start
        inv_m = np.float32(1.0 / m)
        grad[nw1:] = 0
        batch_loss = 0.0
        for first in range(start, stop, _SAMPLES):
            last = min(first + _SAMPLES, stop)
            for i in range(first, last):
                ys[i - first] = labels[order[i]]
            if narrow:                        # the first layer: P @ W1
                _nb_forward12(indptr, indices, values, order, first, last, W1p, Z1, floats,
                              unit_sums)
            else:
                _nb_forward(indptr, indices, values, order, first, last, W1p, Z1, floats,
                            unit_sums)
            hits, data_loss = _nb_layers_above(Z1, last - first, a, cb1, H, W2, b2, ys, on,
                                               off, inv_m, A1, P, D1, best, top, norm, bits,
                                               gW2, gb2, gb1)
            correct += hits
            batch_loss += data_loss
            if narrow:                        # and back: G += P.T dZ1
                _nb_backward12(indptr, indices, values, order, first, last, G1p, D1, floats)
            else:
                _nb_backward(indptr, indices, values, order, first, last, G1p, D1, floats)
        # The step. W1's gradient: X.T dZ1 = a P.T dZ1 + c sum(dZ1), with x = a p + c.
        db1[:H] = gb1
        squares = _nb_first_gradient(G1p, W1p, a, c, db1, l2)
        for i in range(nw1, nw):  # L2 on W2 (biases are not penalised)
            w = theta[i]
            grad[i] += np.float32(l2) * w
            squares += np.float64(w) * w
        loss = batch_loss / m + 0.5 * l2 * squares
        loss_sum += loss * m
        seen += m
        steps += 1
        rates = _nb_rates(kind, hyper, lrs[s], t0 + steps)
        total = _nb_step(kind, W1p.reshape(-1), G1p.reshape(-1), M1p.reshape(-1),
                         V1p.reshape(-1), rates)
        total += _nb_step(kind, theta[nw1:], grad[nw1:], s1[nw1:], s2[nw1:], rates)
        G1p[:] = 0
        _nb_column_sums(W1p, sums)
        for j in range(H):
            cb1[j] = b1[j] + c * sums[j]
        if not (_nb_finite(loss) and _nb_finite(total)):
            diverged, last_loss = 1.0, loss
            break
        data_loss = batch_loss / m
        if math.isnan(watch[0]):
            watch[0] = data_loss
            watch[1] = watch[3] * max(data_loss, watch[2])
        watch[0] += min(1.0, m / watch[4]) * (data_loss - watch[0])
        if watch[0] > watch[1]:
            diverged, last_loss = 1.0, loss
            break
    _nb_blocks(W1, W1p, False)
    _nb_blocks(s1[:nw1].reshape((n_in, H)), M1p, False)
    _nb_blocks(s2[:nw1].reshape((n_in, H)), V1p, False)
    out[0], out[1], out[2], out[3] = loss_sum, correct, seen, steps
    out[4], out[5] = diverged, last_loss


@_jit
def _nb_logits(images, W1p, cb1, a, H, W2, b2, logits, labels, compress):
    """Logits (n, C) and their argmax for uint8 images (n, n_in): each image's non-zero pixels
    found by vector compress (``compress``) and the first layer over their lists as in
    training, or, without the compress, listed by the bit table for 8 images, then summed over
    reading each pixel's value from the image; then the layer above for 64 images side by side
    (units by images, vectorized over the images)."""
    n, n_in = images.shape
    blocks = W1p.shape[0]
    C = W2.shape[1]
    values = np.zeros(n_in + SLACK, np.uint8)
    indices = np.zeros(n_in + SLACK, np.uint16)
    # Each image's list: up to n_in indices, 8 slots the bit table writes past them and four
    # zeros, in a multiple of 4 slots (read as uint64).
    stride = np.uint64((n_in + 15) // 4 * 4)
    lists = np.zeros(8 * stride, np.uint16)
    ends = np.zeros(8, np.uint64)
    scratch = np.zeros(64, np.uint8)
    table = _nb_bit_table()
    floats = np.arange(256).astype(np.float32)
    sums = np.zeros(16, np.float32)
    Z1 = np.zeros((16 * blocks, _SAMPLES), np.float32)
    Z2 = np.zeros((C, _SAMPLES), np.float32)
    top = np.zeros(_SAMPLES, np.float32)
    best = np.zeros(_SAMPLES, np.int64)
    for first in range(0, n, _SAMPLES):
        m = min(_SAMPLES, n - first)
        if compress:
            for t in range(m):
                count = _nb_nonzero(images, first + t, values, indices, 0, True, scratch, table)
                for blk in range(blocks):
                    _nb_dot16(indices, values, 0, count, W1p, blk, Z1, t)
        elif H <= 12:  # one block, a quarter of it or more padding: see listed.py
            _nb_first_layer_listed12(images, first, m, W1p, Z1, lists, ends, scratch, table,
                                     floats, sums)
        else:
            _nb_first_layer_listed(images, first, m, W1p, Z1, lists, ends, scratch, table,
                                   floats, sums)
        for o in range(C):
            for t in range(m):
                Z2[o, t] = b2[o]
        for j in range(H):
            for t in range(m):
                Z1[j, t] = max(a * Z1[j, t] + cb1[j], np.float32(0))
            for o in range(C):
                w = W2[j, o]
                for t in range(m):
                    Z2[o, t] += Z1[j, t] * w
        top[:m] = Z2[0, :m]
        best[:m] = 0
        for o in range(1, C):
            for t in range(m):
                if Z2[o, t] > top[t]:
                    top[t] = Z2[o, t]
                    best[t] = o
        for t in range(m):
            labels[first + t] = best[t]
            for o in range(C):
                logits[first + t, o] = Z2[o, t]
