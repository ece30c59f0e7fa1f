"""Fast kernels: the network of ``network.py`` trained and run near the machine's limit.

``network.py`` is the readable reference; this module computes the same forward pass, gradients
and optimizer steps (equal to the reference to about 1e-5 in float32 on the same batches), but
arranged for speed. The :class:`digitnet.training.Trainer` uses it for its inner loop.

Two backends, chosen automatically (``DIGITNET_BACKEND`` or ``backend=`` overrides):

``numba`` (when numba is installed; one hidden layer, float32)
    One compiled call per epoch runs every step: no Python between batches. The first layer
    works on the non-zero pixels only, because ``X @ W1`` over an image is the sum of
    ``p * W1[k]`` over its non-zero pixels ``p`` at ``k`` (an MNIST digit has about 150 of 784),
    and standardising is folded in: with ``x = a p + c``, ``X @ W1 = a (P @ W1) + c sum(W1)``
    and ``X.T @ dZ1 = a (P.T @ dZ1) + c sum(dZ1)``. The training images stay uint8; a compact
    list of their non-zero pixels is built once.
``numpy``
    The reference's math with every array preallocated and updated in place (``out=``): uint8
    batches gathered with ``np.take`` into a reusable buffer and converted into a float32 buffer,
    parameters, gradients and optimizer state kept in flat arrays so that Adam is a dozen
    whole-array operations per step, BLAS on contiguous arrays. Any depth, float32 or float64.

Parameter and optimizer arrays become views into the engine's flat buffers, so the trainer's
``Params`` and the optimizer's state always show the current values.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from digitnet import network
from digitnet.errors import ConfigError
from digitnet.model import Preprocessing
from digitnet.network import Gradients, Params
from digitnet.optim import Adam, GradientDescent, Momentum, Optimizer

__all__ = ["BACKENDS", "numba_available", "resolve_backend", "blas_threads", "Steps",
           "Engine", "NumpyEngine", "NumbaEngine", "make_engine", "Predictor"]

BACKENDS = ("auto", "numba", "numpy", "reference")

# ``auto`` trains with numba from this many examples (steps times batch size) on. Below it the
# numba kernels' fixed cost, about half a second to load them and 130 MiB of memory for LLVM,
# outweighs what they save over the NumPy engine (measured: benchmarks/RESULTS.md). The choice
# depends on the config and the data alone, so a seed still gives the same weights every time.
AUTO_NUMBA_EXAMPLES = 2_000_000

LANES = 16  # float32 values in one AVX-512 register: the numba kernels work 16 units at a time


def numba_available() -> bool:
    """Whether numba can be imported (checked without importing it)."""
    return importlib.util.find_spec("numba") is not None


def numba_supports(layers: int, dtype: str | np.dtype | type, n_inputs: int,
                   pixels: str | np.dtype | type = np.uint8) -> bool:
    """Whether the numba kernels cover this case: one hidden layer, float32 parameters, uint8
    pixels, fewer than 65,536 inputs."""
    return (layers == 1 and np.dtype(dtype) == np.float32 and n_inputs < 2**16
            and np.dtype(pixels) == np.uint8)


def resolve_backend(name: str | None, layers: int = 1, dtype: str = "float32",
                    n_inputs: int = 784, pixels: str | np.dtype | type = np.uint8,
                    examples: int | None = None) -> str:
    """The backend to train with: ``numba``, ``numpy`` or ``reference``.

    ``name`` None means the ``DIGITNET_BACKEND`` environment variable, else ``auto``: numba
    when it is installed, covers the case (see :func:`numba_supports`) and the run trains on
    at least :data:`AUTO_NUMBA_EXAMPLES` ``examples`` (None: any run); otherwise numpy.

    Raises
    ------
    ConfigError
        For an unknown name, or ``numba`` asked for where it is missing or does not apply.
    """
    name = name or os.environ.get("DIGITNET_BACKEND") or "auto"
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    fits = numba_supports(layers, dtype, n_inputs, pixels)
    if name == "auto":
        long_enough = examples is None or examples >= AUTO_NUMBA_EXAMPLES
        return "numba" if fits and long_enough and numba_available() else "numpy"
    if name == "numba" and not numba_available():
        raise ConfigError("backend 'numba' needs numba: pip install numba (or use numpy)")
    if name == "numba" and not fits:
        raise ConfigError(f"backend 'numba' covers one hidden layer in float32 on uint8 pixels; "
                          f"this is {layers} hidden layer(s) in {np.dtype(dtype).name} on "
                          f"{np.dtype(pixels).name} inputs (use numpy)")
    return name


@contextlib.contextmanager
def blas_threads(n: int = 1) -> Iterator[None]:
    """Limit BLAS to ``n`` threads inside the block (with threadpoolctl when it is installed).

    The network's matrices are tiny ((128, 784) @ (784, 10) per step): on a 2-core machine a
    second BLAS thread costs more in hand-offs than it brings, so training runs on one. Without
    threadpoolctl this does nothing; set ``OPENBLAS_NUM_THREADS`` before starting Python.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


# -- parameters and optimizer state in flat buffers --------------------------------------------


class _Flat:
    """All parameters in one array ``theta`` (W1, W2, ..., b1, b2, ...: the optimizer's order).

    ``params``' arrays and the optimizer's state lists are replaced by views into flat buffers,
    so the weights are updated in place by whole-buffer operations and everyone sees them.
    """

    def __init__(self, params: Params, optimizer: Optimizer) -> None:
        arrays = [*params.W, *params.b]
        self.shapes = [a.shape for a in arrays]
        self.n_layers = len(params.W)
        self.dtype = params.dtype
        self.theta = np.concatenate([a.ravel() for a in arrays]).astype(self.dtype)
        self.grad = np.zeros_like(self.theta)
        self.n_weights = sum(w.size for w in params.W)
        views = self.views(self.theta)
        params.W[:] = views[:self.n_layers]
        params.b[:] = views[self.n_layers:]
        self.gradients = Gradients(*self._split(self.views(self.grad)))
        self.optimizer = optimizer
        kind = type(optimizer)  # exactly these: a subclass may step differently
        if kind is Adam and isinstance(optimizer, Adam):
            self.kind = 2
            self.s1 = self._state(optimizer.m)
            self.s2 = self._state(optimizer.v)
            optimizer.m, optimizer.v = self.views(self.s1), self.views(self.s2)
        elif kind is Momentum and isinstance(optimizer, Momentum):
            self.kind = 1
            self.s1 = self._state(optimizer.velocity)
            self.s2 = np.zeros_like(self.theta)  # unused, but the kernels index every state
            optimizer.velocity = self.views(self.s1)
        elif kind is GradientDescent:
            self.kind = 0
            self.s1, self.s2 = np.zeros_like(self.theta), np.zeros_like(self.theta)
        else:
            raise NotImplementedError(f"no fast update for {kind.__name__}")

    def views(self, flat: np.ndarray) -> list[np.ndarray]:
        out, start = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            out.append(flat[start:start + size].reshape(shape))
            start += size
        return out

    def _split(self, views: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return views[:self.n_layers], views[self.n_layers:]

    def _state(self, arrays: list[np.ndarray] | None) -> np.ndarray:
        if arrays is None:
            return np.zeros_like(self.theta)
        return np.concatenate([np.asarray(a, self.dtype).ravel() for a in arrays])

    @property
    def hyper(self) -> np.ndarray:
        """The optimizer's constants: beta1, beta2, eps, momentum."""
        opt: Any = self.optimizer
        return np.array([getattr(opt, "beta1", 0.0), getattr(opt, "beta2", 0.0),
                         getattr(opt, "eps", 0.0), getattr(opt, "momentum", 0.0)])

    @property
    def t(self) -> int:
        return int(getattr(self.optimizer, "t", 0))

    def advance(self, steps: int) -> None:
        if self.kind == 2:
            self.optimizer.t += steps  # type: ignore[attr-defined]

    def penalty(self, l2: float) -> float:
        if not l2:
            return 0.0
        w = self.theta[:self.n_weights].astype(np.float64)
        return float(0.5 * l2 * np.dot(w, w))


@dataclass
class Steps:
    """What a run of steps produced: summed over its batches, loss weighted by batch size."""

    loss_sum: float
    correct: int
    seen: int
    steps: int
    diverged: bool = False
    last_loss: float = float("nan")


class Engine:
    """Runs training steps over uint8 images; see :func:`make_engine`."""

    name = ""

    def __init__(self, params: Params, optimizer: Optimizer, images: np.ndarray,
                 labels: np.ndarray, preprocessing: Preprocessing, batch_size: int,
                 l2: float = 0.0, label_smoothing: float = 0.0) -> None:
        self.params = params
        self.flat = _Flat(params, optimizer)
        self.images = np.ascontiguousarray(images).reshape(len(images), -1)
        self.labels = np.ascontiguousarray(labels, dtype=np.int64)
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self.l2 = float(l2)
        self.label_smoothing = float(label_smoothing)
        self.n_classes = params.sizes[-1]

    def run(self, order: np.ndarray, lrs: np.ndarray, watch: Any = None) -> Steps:
        """One step per entry of ``lrs`` (its learning rate), batches taken in turn from
        ``order`` (rows of the images).

        Stops after the first step that diverges: a non-finite loss or parameter, or ``watch``
        (the trainer's loss watch: ``rose(data_loss, batch)``) seeing the loss run away.
        """
        raise NotImplementedError

    def gradients(self, rows: np.ndarray) -> tuple[float, Gradients]:
        """The loss and gradients on the batch ``rows`` (at most ``batch_size`` of them),
        without updating anything."""
        raise NotImplementedError


# -- the NumPy backend -------------------------------------------------------------------------


class NumpyEngine(Engine):
    """The reference math with preallocated buffers, in place; any depth and dtype.

    A batch larger than :attr:`CHUNK` rows (the full batch of the seed preset) is computed a
    chunk at a time from the uint8 images, its gradient summed over the chunks: a chunk's
    float input stays in the cache between the forward and the backward matmul, and no float
    copy of the whole training set is made.
    """

    name = "numpy"
    CHUNK = 512  # rows of float input at a time: 1.6 MB for MNIST

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        C, dtype = min(self.batch_size, self.CHUNK), self.flat.dtype
        sizes = self.params.sizes
        self._raw = np.empty((C, sizes[0]), self.images.dtype)
        self._x = np.empty((C, sizes[0]), dtype)
        self._z = [np.empty((C, w), dtype) for w in sizes[1:]]
        self._a = [np.empty((C, w), dtype) for w in sizes[1:]]
        self._dz = [np.empty((C, w), dtype) for w in sizes[1:]]
        self._y = np.empty((C, self.n_classes), dtype)
        self._tmp = np.empty((C, self.n_classes), dtype)
        self._row = np.empty((C, 1), dtype)
        self._pred = np.empty(C, np.intp)
        self._hit = np.empty(C, bool)
        self._work = np.empty_like(self.flat.theta)
        self._part = np.empty_like(self.flat.theta)  # one chunk's gradients, to be summed
        dW, db = self.flat.gradients.dW, self.flat.gradients.db
        part = self.flat.views(self._part)
        self._into = ((dW, db), (part[:len(dW)], part[len(dW):]))
        self._scale = dtype.type(self.preprocessing.scale / self.preprocessing.std)
        self._shift = dtype.type(self.preprocessing.mean / self.preprocessing.std)

    def _load(self, rows: np.ndarray) -> np.ndarray:
        """The rows' network input in the float buffer: (pixels * scale - mean) / std, as
        :meth:`Preprocessing.apply` computes it."""
        m = len(rows)
        X, raw = self._x[:m], self._raw[:m]
        np.take(self.images, rows, axis=0, out=raw)
        np.multiply(raw, self._scale, out=X, dtype=X.dtype)
        if self._shift:
            X -= self._shift
        return X

    def _targets(self, rows: np.ndarray) -> np.ndarray:
        m = len(rows)
        Y = self._y[:m]
        Y.fill(0)
        Y[np.arange(m), self.labels[rows]] = 1
        eps = self.label_smoothing
        if eps:
            Y *= 1 - eps
            Y += eps / self.n_classes
        return Y

    def _forward(self, X: np.ndarray) -> np.ndarray:
        m, A = len(X), X
        last = len(self._z) - 1
        for layer, (W, b) in enumerate(zip(self.params.W, self.params.b, strict=True)):
            Z = self._z[layer][:m]
            np.matmul(A, W, out=Z)
            Z += b
            if layer < last:
                A = self._a[layer][:m]
                np.maximum(Z, 0, out=A)
        P = self._a[last][:m]  # softmax of the last Z, its row maximum subtracted first
        row = self._row[:m]
        np.max(Z, axis=1, keepdims=True, out=row)
        np.subtract(Z, row, out=P)
        np.exp(P, out=P)
        np.sum(P, axis=1, keepdims=True, out=row)
        P /= row
        return P

    def _cross_entropy_sum(self, P: np.ndarray, Y: np.ndarray) -> float:
        """Summed cross-entropy of the rows, clipped as :func:`network.cross_entropy`."""
        T = self._tmp[:len(P)]
        np.clip(P, 1e-12, 1.0, out=T)
        np.log(T, out=T)
        T *= Y
        return -float(T.sum())

    def _backward(self, X: np.ndarray, P: np.ndarray, Y: np.ndarray, m: int,
                  into: int) -> None:
        """The chunk's share of the gradients of the mean loss over a batch of m rows, written
        into the gradients (into=0) or into the chunk buffer (into=1)."""
        n = len(X)
        W, (dW, db) = self.params.W, self._into[into]
        dZ = self._dz[-1][:n]
        np.subtract(P, Y, out=dZ)  # softmax paired with cross-entropy: dZ = A - Y
        dZ *= 1 / m                # the mean over the batch, once for every gradient below
        for layer in range(len(W) - 1, -1, -1):
            A = self._a[layer - 1][:n] if layer else X
            np.matmul(A.T, dZ, out=dW[layer])
            np.sum(dZ, axis=0, out=db[layer])
            if layer:
                below = self._dz[layer - 1][:n]
                np.matmul(dZ, W[layer].T, out=below)
                below *= A > 0      # relu'(Z) is 1 exactly where relu(Z) = A > 0
                dZ = below

    def _batch(self, rows: np.ndarray) -> tuple[float, int]:
        """Gradients of the batch's mean loss (with L2) into the flat gradient, chunk by chunk.
        Returns the mean data loss and the number of correct predictions."""
        m, C = len(rows), len(self._x)
        loss_sum, correct = 0.0, 0
        for start in range(0, m, C):
            part = rows[start:start + C]
            X = self._load(part)
            Y = self._targets(part)
            P = self._forward(X)
            loss_sum += self._cross_entropy_sum(P, Y)
            correct += self._count(P, part)
            self._backward(X, P, Y, m, 0 if start == 0 else 1)
            if start:
                self.flat.grad += self._part
        if self.l2:
            nw = self.flat.n_weights
            work = self._work[:nw]
            np.multiply(self.flat.theta[:nw], self.l2, out=work)
            self.flat.grad[:nw] += work
        return loss_sum / m, correct

    def _update(self, lr: float) -> None:
        f, g, work = self.flat, self.flat.grad, self._work
        theta = f.theta
        if f.kind == 0:                      # W <- W - lr dW
            np.multiply(g, lr, out=work)
        elif f.kind == 1:                    # v <- mu v + dW; W <- W - lr v
            v = f.s1
            v *= f.optimizer.momentum  # type: ignore[attr-defined]
            v += g
            np.multiply(v, lr, out=work)
        else:                                # Adam, with the bias corrections in the step size
            opt: Any = f.optimizer
            opt.t += 1
            t = opt.t
            step = lr * math.sqrt(1 - opt.beta2**t) / (1 - opt.beta1**t)
            eps_hat = opt.eps * math.sqrt(1 - opt.beta2**t)
            m, v = f.s1, f.s2
            np.subtract(g, m, out=work)      # m <- m + (1 - b1)(g - m) = b1 m + (1 - b1) g
            work *= 1 - opt.beta1
            m += work
            np.multiply(g, g, out=work)      # v <- v + (1 - b2)(g^2 - v)
            work -= v
            work *= 1 - opt.beta2
            v += work
            np.sqrt(v, out=work)
            work += eps_hat
            np.divide(m, work, out=work)
            work *= step
        theta -= work

    def _count(self, P: np.ndarray, rows: np.ndarray) -> int:
        m = len(P)
        np.argmax(P, axis=1, out=self._pred[:m])
        np.equal(self._pred[:m], self.labels[rows], out=self._hit[:m])
        return int(np.count_nonzero(self._hit[:m]))

    def run(self, order: np.ndarray, lrs: np.ndarray, watch: Any = None) -> Steps:
        out = Steps(0.0, 0, 0, 0)
        B = self.batch_size
        for s, lr in enumerate(lrs):
            rows = order if B >= len(order) else order[s * B:(s + 1) * B]
            penalty = self.flat.penalty(self.l2)  # of the weights the batch sees
            data_loss, correct = self._batch(rows)
            loss = data_loss + penalty
            self._update(float(lr))
            out.correct += correct
            out.loss_sum += loss * len(rows)
            out.seen += len(rows)
            out.steps += 1
            if (not math.isfinite(loss) or not np.isfinite(self.flat.theta).all()
                    or (watch is not None and watch.rose(data_loss, len(rows)))):
                out.diverged, out.last_loss = True, loss
                break
        return out

    def gradients(self, rows: np.ndarray) -> tuple[float, Gradients]:
        penalty = self.flat.penalty(self.l2)
        data_loss, _ = self._batch(np.asarray(rows))
        return data_loss + penalty, _copy(self.flat.gradients)


def _copy(grads: Gradients) -> Gradients:
    return Gradients([g.copy() for g in grads.dW], [g.copy() for g in grads.db])


# -- the numba backend -------------------------------------------------------------------------
#
# The functions named _nb_* are plain Python until _kernels() compiles them with numba (on first
# use, then from numba's on-disk cache). They are written for LLVM:
#
# - the first layer's weights are kept as blocks of 16 units, W1p[block, pixel, 0:16], zero
#   beyond the last unit, so that one pixel's row is one AVX-512 register of float32;
# - the 16 named accumulators of _nb_dot16 become that register (a loop over a small array would
#   go through memory at every pixel), two sets of them so that consecutive multiply-adds do not
#   wait for each other;
# - loop counters that index arrays are unsigned, which spares numba's negative-index check;
# - the first layer runs over an image's non-zero pixels only, and the next images' pixels are
#   prefetched while this one is computed (the epoch's order jumps around memory).

_FASTMATH = {"reassoc", "contract", "nsz"}  # reorder sums, fuse multiply-adds; keep inf and NaN
_AHEAD = 2     # images ahead of the current one whose pixels are prefetched
_SAMPLES = 64  # images whose layers above the first are computed side by side


def _nb_prefetch(array, index):  # pragma: no cover - replaced by an LLVM prefetch in _kernels()
    pass


def _nb_compress64(images, row, start, length, values, indices, pos):  # pragma: no cover
    """Replaced in _kernels() by an LLVM vector compress (AVX-512 vpcompressb): the non-zero
    bytes of images[row, start:start+length] (length <= 64) go to values[pos:] and their
    indices (start + lane, uint16) to indices[pos:]; returns how many. Both may be written up
    to 64 slots past the last one kept."""
    n = 0
    for k in range(start, start + length):
        if images[row, k] != 0:
            values[pos + n], indices[pos + n] = images[row, k], k
            n += 1
    return n


def _nb_nonzero(images, row, values, indices, pos):  # pragma: no cover - compiled by numba
    """Image ``row``'s non-zero pixels, 64 at a time, into values/indices from pos; returns
    the count. The arrays need 64 slots of slack past the end."""
    n, d = 0, images.shape[1]
    for start in range(0, d, 64):
        n += _nb_compress64(images, row, start, min(64, d - start), values, indices, pos + n)
    return n


def _nb_csr(images):  # pragma: no cover - compiled by numba
    """The non-zero pixels of each image: row i's are ``indices/values[indptr[i]:indptr[i+1]]``
    (both arrays have 64 slots of slack at the end)."""
    n, d = images.shape
    indptr = np.zeros(n + 1, np.int64)
    for i in range(n):
        count = 0
        for k in range(d):
            count += images[i, k] != 0
        indptr[i + 1] = indptr[i] + count
    indices = np.zeros(indptr[n] + 64, np.uint16)
    values = np.zeros(indptr[n] + 64, np.uint8)
    for i in range(n):
        _nb_nonzero(images, i, values, indices, indptr[i])
    return indptr, indices, values


def _nb_finite(x):  # pragma: no cover - compiled by numba
    """Whether x is finite. (numba's math.isfinite tests x - x, which fast-math folds to 0.)"""
    return not (math.isnan(x) or math.isinf(x))


def _nb_prefetch_row(indptr, indices, values, r):  # pragma: no cover - compiled by numba
    """Ask for the cache lines of image r's non-zero pixels ahead of their use."""
    lo, hi = indptr[r], indptr[r + 1]
    for q in range(lo, hi, 64):
        _nb_prefetch(values, q)
    for q in range(lo, hi, 32):
        _nb_prefetch(indices, q)


def _nb_dot16(indices, values, lo, hi, W, blk, out, col):  # pragma: no cover - numba
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


def _nb_axpy16(indices, values, lo, hi, G, blk, D, col):  # pragma: no cover - numba
    """``G[blk, indices[q], 0:16] += values[q] * D[16 blk:16 blk + 16, col]`` for q in
    [lo, hi): one image's share of a block's gradient (the rows differ)."""
    j = 16 * blk
    d0, d1, d2, d3 = D[j, col], D[j + 1, col], D[j + 2, col], D[j + 3, col]
    d4, d5, d6, d7 = D[j + 4, col], D[j + 5, col], D[j + 6, col], D[j + 7, col]
    d8, d9, d10, d11 = D[j + 8, col], D[j + 9, col], D[j + 10, col], D[j + 11, col]
    d12, d13, d14, d15 = D[j + 12, col], D[j + 13, col], D[j + 14, col], D[j + 15, col]
    q, end, one = np.uint64(lo), np.uint64(hi), np.uint64(1)
    while q < end:
        p, k = np.float32(values[q]), indices[q]
        G[blk, k, 0] += p * d0
        G[blk, k, 1] += p * d1
        G[blk, k, 2] += p * d2
        G[blk, k, 3] += p * d3
        G[blk, k, 4] += p * d4
        G[blk, k, 5] += p * d5
        G[blk, k, 6] += p * d6
        G[blk, k, 7] += p * d7
        G[blk, k, 8] += p * d8
        G[blk, k, 9] += p * d9
        G[blk, k, 10] += p * d10
        G[blk, k, 11] += p * d11
        G[blk, k, 12] += p * d12
        G[blk, k, 13] += p * d13
        G[blk, k, 14] += p * d14
        G[blk, k, 15] += p * d15
        q += one


def _nb_prepare(W1, b1, c, W1p, cb1):  # pragma: no cover - compiled by numba
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


def _nb_head(z1, a, cb1, H, W2, b2, h1, p2):  # pragma: no cover - compiled by numba
    """From the first layer's pixel sums in z1: Z1 (into z1), A1 = relu(Z1) (h1) and
    A2 = softmax(A1 @ W2 + b2) (p2). Returns the predicted class."""
    C = p2.shape[0]
    p2[:] = b2
    for j in range(H):
        z = a * z1[j] + cb1[j]
        z1[j] = z
        h = max(z, np.float32(0))
        h1[j] = h
        if h > 0:
            for o in range(C):
                p2[o] += h * W2[j, o]
    top = p2[0]
    for o in range(C):
        top = max(top, p2[o])
    total = np.float32(0)
    for o in range(C):
        e = np.float32(math.exp(p2[o] - top))
        p2[o] = e
        total += e
    best = 0
    for o in range(C):
        p2[o] = p2[o] / total
        if p2[o] > p2[best]:
            best = o
    return best


def _nb_exp(x, bits):  # pragma: no cover - compiled by numba
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


def _nb_clipped_log(p):  # pragma: no cover - compiled by numba
    """log(clip(p, 1e-12, 1)) as network.cross_entropy takes it; NaN stays NaN."""
    return math.log(p if not p < 1e-12 else 1e-12)


def _nb_layers_above(Z1, n, a, cb1, H, W2, b2, ys, on, off, inv_m, A1, P, D1, best, top,
                     total, bits, gW2, gb2, gb1):  # pragma: no cover - compiled by numba
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


def _nb_rates(kind, hyper, lr, t):  # pragma: no cover - compiled by numba
    """The step's constants for :func:`_nb_step`, as float32: the rate and mu (gd, momentum);
    b1, 1 - b1, b2, 1 - b2 and Adam's bias corrections folded into its step size and epsilon
    (as optim.Adam does)."""
    r = np.zeros(8, np.float32)
    r[0], r[1] = lr, hyper[3]
    if kind == 2:
        beta1, beta2, eps = hyper[0], hyper[1], hyper[2]
        r[2], r[3], r[4], r[5] = beta1, 1 - beta1, beta2, 1 - beta2
        r[6] = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        r[7] = eps * math.sqrt(1 - beta2**t)
    return r


def _nb_step(kind, P, G, M, V, r):  # pragma: no cover - compiled by numba
    """One optimizer step on the 1-D arrays P (parameters), G (gradients), M and V (state):
    0 gradient descent, 1 momentum, 2 Adam, one branch-free loop each. Returns the sum of the
    new parameters in float64, which is finite exactly when they all are."""
    # The constants are read into locals first: LLVM cannot tell that the stores into P, M
    # and V leave r alone, and would reload r inside the loop instead of vectorizing it.
    rate, mu, b1, c1, b2, c2, step, eps = r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]
    total = 0.0
    n = np.uint64(P.shape[0])
    if kind == 0:                            # W <- W - rate dW
        for i in range(n):
            p = P[i] - rate * G[i]
            P[i] = p
            total += p
    elif kind == 1:                          # v <- mu v + dW; W <- W - rate v
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


def _nb_blocks(A, B, to_blocks):  # pragma: no cover - compiled by numba
    """Copy (n_in, H) A into the 16-unit blocks B (n_blocks, n_in, 16), or back."""
    n_in, H = A.shape
    for k in range(n_in):
        for j in range(H):
            if to_blocks:
                B[j >> 4, k, j & 15] = A[k, j]
            else:
                A[k, j] = B[j >> 4, k, j & 15]


def _nb_first_gradient(G, W, a, c, db, l2):  # pragma: no cover - compiled by numba
    """Turn the pixel sums G = P.T dZ1 into W1's gradient a G + c sum(dZ1) + l2 W1, in place,
    all in blocks (db is sum(dZ1) padded with zeros). Returns sum(W1 ** 2) in float64."""
    rate = np.float32(l2)
    for blk in range(G.shape[0]):
        shift = db[16 * blk:16 * blk + 16] * c
        for k in range(G.shape[1]):
            g, w = G[blk, k], W[blk, k]
            for lane in range(16):
                g[lane] = a * g[lane] + shift[lane] + rate * w[lane]
    squares = 0.0
    flat = W.reshape(-1)
    for i in range(np.uint64(flat.shape[0])):
        squares += np.float64(flat[i]) * flat[i]
    return squares


def _nb_column_sums(W, sums):  # pragma: no cover - compiled by numba
    """``sums[j] = sum over pixels of W1[:, j]``, from the blocks."""
    for blk in range(W.shape[0]):
        s = np.zeros(16, np.float32)
        for k in range(W.shape[1]):
            w = W[blk, k]
            for lane in range(16):
                s[lane] += w[lane]
        sums[16 * blk:16 * blk + 16] = s


def _nb_train(indptr, indices, values, labels, order, batch_size, lrs, pre, dims, theta, grad,
              kind, s1, s2, hyper, t0, l2, smoothing, W1p, G1p, update, watch,
              out):  # pragma: no cover - compiled by numba
    """Run ``len(lrs)`` steps of the n_in-H-C network; see :meth:`NumbaEngine.run`.

    ``watch`` is the loss watch's state (smoothed data loss or NaN before the first step,
    limit, floor, rise, examples), updated as the trainer's ``_LossWatch.rose`` does. ``out``
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
    gW1 = grad[:nw1].reshape((n_in, H))
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
            for i in range(first, last):     # the first layer, image by image: P @ W1
                if i + _AHEAD < n:
                    _nb_prefetch_row(indptr, indices, values, order[i + _AHEAD])
                r = order[i]
                ys[i - first] = labels[r]
                for blk in range(blocks):
                    _nb_dot16(indices, values, indptr[r], indptr[r + 1], W1p, blk, Z1,
                              i - first)
            hits, data_loss = _nb_layers_above(Z1, last - first, a, cb1, H, W2, b2, ys, on,
                                               off, inv_m, A1, P, D1, best, top, norm, bits,
                                               gW2, gb2, gb1)
            correct += hits
            batch_loss += data_loss
            for i in range(first, last):     # and back: G += P.T dZ1, image by image
                r = order[i]
                for blk in range(blocks):
                    _nb_axpy16(indices, values, indptr[r], indptr[r + 1], G1p, blk, D1,
                               i - first)
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
        if not update:  # the gradients only (for tests)
            _nb_blocks(gW1, G1p, False)
            break
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


def _nb_logits(images, W1p, cb1, a, H, W2, b2, logits, labels):  # pragma: no cover - numba
    """Logits (n, C) and their argmax for uint8 images (n, n_in): each image's non-zero pixels
    found by vector compress, then the first layer over them as in training, and the layer
    above for 64 images side by side (units by images, vectorized over the images)."""
    n, n_in = images.shape
    blocks = W1p.shape[0]
    C = W2.shape[1]
    values = np.zeros(n_in + 64, np.uint8)
    indices = np.zeros(n_in + 64, np.uint16)
    Z1 = np.zeros((16 * blocks, _SAMPLES), np.float32)
    Z2 = np.zeros((C, _SAMPLES), np.float32)
    top = np.zeros(_SAMPLES, np.float32)
    best = np.zeros(_SAMPLES, np.int64)
    for first in range(0, n, _SAMPLES):
        m = min(_SAMPLES, n - first)
        for t in range(m):
            count = _nb_nonzero(images, first + t, values, indices, 0)
            for blk in range(blocks):
                _nb_dot16(indices, values, 0, count, W1p, blk, Z1, t)
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


_HELPERS = ("_nb_nonzero", "_nb_finite", "_nb_prefetch_row", "_nb_dot16", "_nb_axpy16",
            "_nb_prepare", "_nb_head", "_nb_exp", "_nb_clipped_log", "_nb_layers_above",
            "_nb_rates", "_nb_step", "_nb_blocks",
            "_nb_first_gradient", "_nb_column_sums")


@contextlib.contextmanager
def _slp_vectorize(numba: Any) -> Iterator[None]:
    # numba leaves LLVM's SLP vectorizer off by default; it is what turns the 16 accumulators
    # into one vector register. Only these kernels are compiled with it.
    before = numba.config.SLP_VECTORIZE
    numba.config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        numba.config.SLP_VECTORIZE = before


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


@functools.cache
def _kernels() -> SimpleNamespace:
    """The numba kernels, compiled on first use (then loaded from numba's cache)."""
    import numba
    import numba.extending
    from numba import types as T

    # error_model="numpy": x / 0 is inf as in NumPy, not a ZeroDivisionError, which would put
    # a test and a branch into every division and stop LLVM from vectorizing the loop.
    jit = functools.partial(numba.njit, cache=True, nogil=True, fastmath=_FASTMATH,
                            error_model="numpy")
    module = sys.modules[__name__]
    # Images arrive read-only (straight from the data files) or not: typed read-only always,
    # via _readonly, so each kernel is compiled once.
    u8m = T.Array(T.uint8, 2, "C", readonly=True)
    f32v, f32m, f32b = T.float32[::1], T.float32[:, ::1], T.float32[:, :, ::1]
    f64v, i64v = T.float64[::1], T.int64[::1]
    with _slp_vectorize(numba):
        # Callees first: numba resolves them as compiled globals of this module. (This runs
        # once per process: _kernels is cached.)
        setattr(module, "_nb_prefetch", _prefetch_intrinsic(numba))  # noqa: B010
        setattr(module, "_nb_compress64", _compress_intrinsic(numba))  # noqa: B010
        for name in _HELPERS:
            setattr(module, name, jit(getattr(module, name)))
        prepare = module._nb_prepare
        prepare.compile(T.void(f32m, f32v, T.float32, f32b, f32v))
        return SimpleNamespace(
            csr=jit(T.Tuple((i64v, T.uint16[::1], T.uint8[::1]))(u8m))(_nb_csr),
            prepare=prepare,
            train=jit(T.void(i64v, T.uint16[::1], T.uint8[::1], i64v, i64v, T.int64, f64v,
                             f64v, i64v, f32v, f32v, T.int64, f32v, f32v, f64v, T.int64,
                             T.float64, T.float64, f32b, f32b, T.boolean, f64v,
                             f64v))(_nb_train),
            logits=jit(T.void(u8m, f32b, f32v, T.float32, T.int64, f32m, f32v, f32m,
                              i64v))(_nb_logits),
        )


def _blocks(n_in: int, units: int) -> np.ndarray:
    """Zeroed first-layer weights in blocks of 16 units: (ceil(units / 16), n_in, 16)."""
    return np.zeros((-(-units // LANES), n_in, LANES), np.float32)


def _readonly(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


class NumbaEngine(Engine):
    """Training steps as one compiled call per run; the n_in-H-C network in float32."""

    name = "numba"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        sizes = self.params.sizes
        if not numba_supports(len(sizes) - 2, self.flat.dtype, sizes[0], self.images.dtype):
            raise ConfigError("the numba backend covers one hidden layer in float32 on uint8 "
                              "pixels")
        self.kernels = _kernels()
        self.indptr, self.indices, self.values = self.kernels.csr(_readonly(self.images))
        self.dims = np.array(sizes, np.int64)
        self.W1p = _blocks(sizes[0], sizes[1])
        self.G1p = np.zeros_like(self.W1p)
        p = self.preprocessing
        self.pre = np.array([p.scale / p.std, -p.mean / p.std])
        self.out = np.zeros(6)

    def _call(self, order: np.ndarray, batch_size: int, lrs: np.ndarray, update: bool,
              watch: Any = None) -> Steps:
        f = self.flat
        state = np.array([math.nan, math.inf, 0.0, math.inf, 1.0])
        if watch is not None:  # the trainer's _LossWatch, run inside the kernel
            smoothed = math.nan if watch.smoothed is None else watch.smoothed
            state[:] = smoothed, watch.limit, watch.floor, watch.RISE, watch.EXAMPLES
        self.kernels.train(
            self.indptr, self.indices, self.values, self.labels,
            np.ascontiguousarray(order, dtype=np.int64), int(batch_size),
            np.ascontiguousarray(lrs, dtype=np.float64), self.pre, self.dims, f.theta, f.grad,
            f.kind, f.s1, f.s2, f.hyper, f.t, self.l2, self.label_smoothing, self.W1p, self.G1p,
            update, state, self.out)
        if watch is not None and not math.isnan(state[0]):
            watch.smoothed, watch.limit = float(state[0]), float(state[1])
        loss_sum, correct, seen, steps, diverged, last_loss = self.out
        if update:
            f.advance(int(steps))
        return Steps(float(loss_sum), int(correct), int(seen), int(steps), bool(diverged),
                     float(last_loss))

    def run(self, order: np.ndarray, lrs: np.ndarray, watch: Any = None) -> Steps:
        return self._call(order, self.batch_size, lrs, update=True, watch=watch)

    def gradients(self, rows: np.ndarray) -> tuple[float, Gradients]:
        rows = np.asarray(rows)
        steps = self._call(rows, len(rows), np.zeros(1), update=False)
        return steps.loss_sum / steps.seen, _copy(self.flat.gradients)


def make_engine(backend: str, params: Params, optimizer: Optimizer, images: np.ndarray,
                labels: np.ndarray, preprocessing: Preprocessing, batch_size: int,
                l2: float = 0.0, label_smoothing: float = 0.0) -> Engine:
    """The engine for ``backend`` (``numba`` or ``numpy``), taking over ``params``' arrays and
    ``optimizer``'s state (they become views into its flat buffers)."""
    engines: dict[str, type[Engine]] = {"numba": NumbaEngine, "numpy": NumpyEngine}
    if backend not in engines:
        raise ConfigError(f"no engine for backend {backend!r}; choose numba or numpy")
    return engines[backend](params, optimizer, images, labels, preprocessing, batch_size, l2,
                            label_smoothing)


# -- inference ---------------------------------------------------------------------------------


class Predictor:
    """Fast predictions from uint8 images for fixed parameters.

    With numba (one hidden layer, float32, uint8 images), each image's non-zero pixels are
    gathered by vector compress and the first layer runs over them alone; otherwise the
    reference forward pass runs in blocks. ``predict`` is the argmax of the logits, which is the
    argmax of the probabilities (softmax keeps the order).

    Parameters
    ----------
    params, preprocessing
        A network and how its inputs were scaled (a :class:`digitnet.model.Model`'s fields).
    backend
        ``auto`` (default), ``numba`` or ``numpy``.
    """

    def __init__(self, params: Params, preprocessing: Preprocessing | None = None,
                 backend: str | None = None) -> None:
        self.params = params
        self.preprocessing = preprocessing or Preprocessing()
        sizes = params.sizes
        name = resolve_backend(backend, len(sizes) - 2, params.dtype.name, sizes[0])
        self.backend = "numpy" if name == "reference" else name
        if self.backend == "numba":
            self._kernels = _kernels()
            p = self.preprocessing
            a, c = np.float32(p.scale / p.std), np.float32(-p.mean / p.std)
            self._a = a
            self._W1p = _blocks(sizes[0], sizes[1])
            self._cb1 = np.zeros(sizes[1], np.float32)
            self._W1 = np.ascontiguousarray(params.W[0], np.float32)
            self._kernels.prepare(self._W1, np.ascontiguousarray(params.b[0], np.float32), c,
                                  self._W1p, self._cb1)
            self._W2 = np.ascontiguousarray(params.W[1], np.float32)
            self._b2 = np.ascontiguousarray(params.b[1], np.float32)

    def _pixels(self, images: np.ndarray) -> np.ndarray | None:
        """The images as uint8 rows (n, n_in) for the kernel, or None when not uint8."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            return None
        pixels = np.ascontiguousarray(images.reshape(len(images), -1))
        if pixels.shape[1] != self.params.sizes[0]:
            raise ValueError(f"images of {pixels.shape[1]} pixels; the network takes "
                             f"{self.params.sizes[0]}")
        return _readonly(pixels)

    def logits(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Output-layer inputs Z2 (n, n_classes) and their argmax (n,)."""
        pixels = self._pixels(images) if self.backend == "numba" else None
        if pixels is None:
            Z = self._reference(images, probabilities=False)
            return Z, np.argmax(Z, axis=1)
        n = len(pixels)
        Z = np.empty((n, self.params.sizes[-1]), np.float32)
        labels = np.empty(n, np.int64)
        self._kernels.logits(pixels, self._W1p, self._cb1, self._a, self.params.sizes[1],
                             self._W2, self._b2, Z, labels)
        return Z, labels

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The most probable class of each image (n, 28, 28) or (n, 784), shape (n,)."""
        return self.logits(images)[1]

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (n, n_classes)."""
        if self.backend == "numba" and np.asarray(images).dtype == np.uint8:
            return network.softmax(self.logits(images)[0])
        return self._reference(images, probabilities=True)

    def _reference(self, images: np.ndarray, probabilities: bool,
                   block: int = 1024) -> np.ndarray:
        images = np.asarray(images)
        n = len(images)
        out = np.empty((n, self.params.sizes[-1]), self.params.dtype)
        for start in range(0, n, block):
            X = self.preprocessing.apply(images[start:start + block], self.params.dtype)
            fwd = network.forward(self.params, X)
            Z = fwd.probabilities if probabilities else fwd.Z[-1]
            assert Z is not None
            out[start:start + len(X)] = Z
        return out
