"""All of a network's parameters in one flat array, with the network's own arrays as views.

The engines update every weight and bias with a handful of whole-buffer operations on ``theta``
(the optimizer's one rule, applied to ``[theta]``), and everyone holding the views sees the
new values at once.
"""

from __future__ import annotations

import math

import numpy as np

from digitnet.network import Gradients, Params

__all__ = ["FlatParams"]


class FlatParams:
    """``theta``: W1, W2, ..., b1, b2, ... end to end; ``grad``: their gradients, same layout.

    ``params`` and ``gradients`` are the network's :class:`Params` and :class:`Gradients` as
    views into the two buffers.
    """

    def __init__(self, params: Params) -> None:
        arrays = [*params.W, *params.b]
        self.shapes = [a.shape for a in arrays]
        self.n_layers = len(params.W)
        self.dtype = params.dtype
        self.theta = np.concatenate([a.ravel() for a in arrays]).astype(self.dtype)
        self.grad = np.zeros_like(self.theta)
        self.n_weights = sum(w.size for w in params.W)
        weights, biases = self._split(self.views(self.theta))
        self.params = Params(weights, biases)
        self.gradients = Gradients(*self._split(self.views(self.grad)))

    def views(self, flat: np.ndarray) -> list[np.ndarray]:
        """``flat`` cut into arrays of the parameters' shapes (views, no copy)."""
        out, start = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            out.append(flat[start:start + size].reshape(shape))
            start += size
        return out

    def _split(self, views: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return views[:self.n_layers], views[self.n_layers:]

    def load(self, params: Params) -> None:
        """Copy ``params``' values into the buffer (same shapes and dtype).

        Raises
        ------
        ValueError
            If a shape or dtype differs.
        """
        for ours, theirs in zip((*self.params.W, *self.params.b), (*params.W, *params.b),
                                strict=True):
            if ours.shape != theirs.shape or ours.dtype != theirs.dtype:
                raise ValueError(f"{theirs.shape} {theirs.dtype} where the network has "
                                 f"{ours.shape} {ours.dtype}")
        for ours, theirs in zip((*self.params.W, *self.params.b), (*params.W, *params.b),
                                strict=True):
            ours[...] = theirs

    def penalty(self, l2: float) -> float:
        """``l2 / 2 * sum(W**2)`` over the weights, in float64 (biases are not penalised)."""
        if not l2:
            return 0.0
        w = self.theta[:self.n_weights].astype(np.float64)
        return float(0.5 * l2 * np.dot(w, w))
