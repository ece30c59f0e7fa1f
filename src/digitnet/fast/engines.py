"""The training engines: one loop of steps, and two ways to compute a batch's gradients.

Every engine takes the same steps: for each learning rate, the next batch of rows, its loss and
gradients (plus the L2 term), one step of the optimizer's rule on the flat parameters, and the
divergence check. :class:`ReferenceEngine` computes the gradients with ``network.py`` as written;
:class:`NumpyEngine` with the same math on preallocated buffers, in place. The numba engine
(:mod:`digitnet.fast.numba_engine`) runs the whole loop compiled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from digitnet import network
from digitnet.fast.flat import FlatParams
from digitnet.network import Gradients
from digitnet.optim import LossWatch, Optimizer, add_l2
from digitnet.preprocessing import Preprocessing

__all__ = ["Steps", "Engine", "ReferenceEngine", "NumpyEngine"]


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
    """Runs training steps over raw images (uint8 or float 0-255); see :func:`make_engine`.

    Parameters
    ----------
    flat
        The parameters, updated in place.
    optimizer
        The update rule, applied to ``[flat.theta]``; it keeps its state between runs.
    images, labels
        All images (n, n_in) that rows index, and their labels (n,).
    targets
        Soft targets (n, n_classes) to learn instead of the labels' one-hot rows (each row
        summing to 1, e.g. a teacher's probabilities); the labels still count the accuracy.
    """

    name = ""

    def __init__(self, flat: FlatParams, optimizer: Optimizer, images: np.ndarray,
                 labels: np.ndarray, preprocessing: Preprocessing, batch_size: int,
                 l2: float = 0.0, label_smoothing: float = 0.0,
                 targets: np.ndarray | None = None) -> None:
        self.flat = flat
        self.params = flat.params
        self.optimizer = optimizer
        self.images = np.ascontiguousarray(images).reshape(len(images), -1)
        self.labels = np.ascontiguousarray(labels, dtype=np.int64)
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self.l2 = float(l2)
        self.label_smoothing = float(label_smoothing)
        self.n_classes = flat.params.sizes[-1]
        self.targets = None if targets is None else np.asarray(targets, flat.dtype)
        self._l2_work = np.empty(flat.n_weights, flat.dtype)

    def run(self, order: np.ndarray, lrs: np.ndarray, watch: LossWatch | None = None,
            should_stop: Callable[[], bool] | None = None) -> Steps:
        """One step per entry of ``lrs`` (its learning rate), batches taken in turn from
        ``order`` (rows of the images).

        Stops after the first step that diverges (a non-finite loss or parameter, or ``watch``
        seeing the loss run away), or before a step when ``should_stop()`` is true.
        """
        out = Steps(0.0, 0, 0, 0)
        B, theta, grad = self.batch_size, [self.flat.theta], [self.flat.grad]
        for s, lr in enumerate(lrs):
            if should_stop is not None and should_stop():
                break
            rows = order if B >= len(order) else order[s * B:(s + 1) * B]
            penalty = self.flat.penalty(self.l2)  # of the weights the batch sees
            data_loss, correct = self.batch_gradients(rows)
            loss = data_loss + penalty
            self.optimizer.step(theta, grad, float(lr))
            out.correct += correct
            out.loss_sum += loss * len(rows)
            out.seen += len(rows)
            out.steps += 1
            if (not math.isfinite(loss) or not np.isfinite(self.flat.theta).all()
                    or (watch is not None and watch.rose(data_loss, len(rows)))):
                out.diverged, out.last_loss = True, loss
                break
        return out

    def batch_gradients(self, rows: np.ndarray) -> tuple[float, int]:
        """Gradients of the batch's mean loss, L2 included, into ``flat.grad``; returns the
        mean data loss and the number of correct predictions."""
        raise NotImplementedError

    def gradients(self, rows: np.ndarray) -> tuple[float, Gradients]:
        """The loss and gradients on the batch ``rows`` (at most ``batch_size`` of them),
        without updating anything."""
        penalty = self.flat.penalty(self.l2)
        data_loss, _ = self.batch_gradients(np.asarray(rows))
        return data_loss + penalty, _copy(self.flat.gradients)

    def _targets(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The rows' targets Y into ``out``: one-hot (or the soft targets), label-smoothed to
        (1 - eps) Y + eps / n_classes."""
        if self.targets is not None:
            np.take(self.targets, rows, axis=0, out=out)
        else:
            out.fill(0)
            out[np.arange(len(rows)), self.labels[rows]] = 1
        eps = self.label_smoothing
        if eps:
            out *= 1 - eps
            out += eps / self.n_classes
        return out

    def _add_l2(self) -> None:
        nw = self.flat.n_weights
        add_l2(self.flat.grad[:nw], self.flat.theta[:nw], self.l2, self._l2_work)


class ReferenceEngine(Engine):
    """Gradients by ``network.forward`` and ``network.backward``, exactly as written there."""

    name = "reference"

    def batch_gradients(self, rows: np.ndarray) -> tuple[float, int]:
        params = self.flat.params
        X = self.preprocessing.apply(self.images[rows], self.flat.dtype)
        Y = self._targets(rows, np.empty((len(rows), self.n_classes), self.flat.dtype))
        fwd = network.forward(params, X)
        grads = network.backward(params, fwd, Y)
        for into, g in zip((*self.flat.gradients.dW, *self.flat.gradients.db),
                           (*grads.dW, *grads.db), strict=True):
            into[...] = g
        self._add_l2()
        predicted = np.argmax(fwd.probabilities, axis=1)
        correct = int(np.count_nonzero(predicted == self.labels[rows]))
        return network.cross_entropy(fwd.probabilities, Y), correct


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

    def batch_gradients(self, rows: np.ndarray) -> tuple[float, int]:
        # Chunk by chunk, each chunk's share summed into the flat gradient.
        m, C = len(rows), len(self._x)
        loss_sum, correct = 0.0, 0
        for start in range(0, m, C):
            part = rows[start:start + C]
            X = self._load(part)
            Y = self._targets(part, self._y[:len(part)])
            P = self._forward(X)
            loss_sum += self._cross_entropy_sum(P, Y)
            correct += self._count(P, part)
            self._backward(X, P, Y, m, 0 if start == 0 else 1)
            if start:
                self.flat.grad += self._part
        self._add_l2()
        return loss_sum / m, correct

    def _count(self, P: np.ndarray, rows: np.ndarray) -> int:
        m = len(P)
        np.argmax(P, axis=1, out=self._pred[:m])
        np.equal(self._pred[:m], self.labels[rows], out=self._hit[:m])
        return int(np.count_nonzero(self._hit[:m]))


def _copy(grads: Gradients) -> Gradients:
    return Gradients([g.copy() for g in grads.dW], [g.copy() for g in grads.db])
