"""The one predictor: every inference path (evaluation, the CLI, the page, ``Model``) uses it.

It always takes raw images, (n, 28, 28) or (n, 784), uint8 or float 0-255, and applies the
model's preprocessing itself.
"""

from __future__ import annotations

import numpy as np

from digitnet import network
from digitnet.fast.backend import resolve_backend
from digitnet.fast.cpu import vector_compress
from digitnet.fast.numba_engine import blocks, compiled, readonly
from digitnet.network import Params
from digitnet.preprocessing import Preprocessing

__all__ = ["Predictor"]


class Predictor:
    """Fast predictions from uint8 images for fixed parameters.

    With numba (one hidden layer, float32, uint8 images), the first layer runs over each
    image's non-zero pixels alone, found by vector compress where the CPU has it in one
    instruction and through a table of each byte's set bits elsewhere
    (:mod:`digitnet.fast.pixels`); otherwise the reference forward pass runs in blocks.
    ``predict`` is the argmax of the logits, which is the argmax of the probabilities (softmax
    keeps the order).

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
        # ``auto`` predicts with NumPy: loading the compiled kernels costs more than they save
        # on the few images most calls bring. Ask for numba to predict in bulk.
        name = resolve_backend(backend, len(sizes) - 2, params.dtype.name, sizes[0],
                               examples=0)
        self.backend = "numpy" if name == "reference" else name
        if self.backend == "numba":
            self._kernels = compiled()
            p = self.preprocessing
            a, c = np.float32(p.scale / p.std), np.float32(-p.mean / p.std)
            self._a = a
            self._W1p = blocks(sizes[0], sizes[1])
            self._compress = vector_compress()  # how the non-zero pixels are found
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
        return readonly(pixels)

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
                             self._W2, self._b2, Z, labels, self._compress)
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
            Z = fwd.Z[-1]
            assert Z is not None  # Z[0] alone is None: the input has no pre-activation
            out[start:start + len(X)] = fwd.probabilities if probabilities else Z
        return out
