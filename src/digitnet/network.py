"""The seed network: pure NumPy math, nothing else.

Input a[0] is a batch of images, one row each; every hidden layer is ReLU, f(x) = max(0, x);
the output layer is softmax, a probability for each class. With the defaults (784 inputs, one
hidden layer of 10 units, 10 outputs) it is exactly the classic MNIST network::

    Z1 = X @ W1 + b1        A1 = relu(Z1)
    Z2 = A1 @ W2 + b2       A2 = softmax(Z2)

and back, for the cross-entropy loss::

    dZ2 = A2 - Y
    dW2 = A1.T @ dZ2 / m    db2 = sum(dZ2) / m
    dZ1 = dZ2 @ W2.T * (Z1 > 0)
    dW1 = X.T @ dZ1 / m     db1 = sum(dZ1) / m

Shapes are batch-first throughout: ``X`` is ``(m, n_inputs)``, ``Y`` is one-hot ``(m, n_classes)``,
``Wl`` is ``(fan_in, fan_out)`` and ``bl`` is ``(fan_out,)``. Layers are numbered from 1 as in the
seed: ``params.W[0]`` is W1. This module imports nothing of the project.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Params",
    "Forward",
    "Gradients",
    "init_params",
    "relu",
    "softmax",
    "one_hot",
    "forward",
    "backward",
    "cross_entropy",
    "l2_penalty",
    "predict",
]

INITS = ("uniform", "he", "glorot")


@dataclass
class Params:
    """Weights ``W[l]`` of shape (fan_in, fan_out) and biases ``b[l]`` of shape (fan_out,)."""

    W: list[np.ndarray]
    b: list[np.ndarray]

    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer widths from input to output, e.g. (784, 10, 10)."""
        return (self.W[0].shape[0], *(w.shape[1] for w in self.W))

    @property
    def dtype(self) -> np.dtype:
        return self.W[0].dtype

    def arrays(self) -> dict[str, np.ndarray]:
        """The parameters under the seed's names: W1, b1, W2, b2, ..."""
        named = {}
        for layer, (w, b) in enumerate(zip(self.W, self.b, strict=True), start=1):
            named[f"W{layer}"] = w
            named[f"b{layer}"] = b
        return named

    def copy(self) -> Params:
        return Params([w.copy() for w in self.W], [b.copy() for b in self.b])

    def all_finite(self) -> bool:
        return all(np.isfinite(a).all() for a in (*self.W, *self.b))


@dataclass
class Forward:
    """What the forward pass computed: ``Z[l]`` before and ``A[l]`` after each activation.

    ``A[0]`` is the input X and ``Z[0]`` is None, so ``Z[1]``, ``A[1]`` are the seed's Z1, A1.
    """

    Z: list[np.ndarray | None]
    A: list[np.ndarray]

    @property
    def probabilities(self) -> np.ndarray:
        return self.A[-1]


@dataclass
class Gradients:
    """``dW[l]``, ``db[l]``: the loss's gradient for each parameter, same shapes as Params."""

    dW: list[np.ndarray]
    db: list[np.ndarray]


def init_params(
    sizes: Sequence[int],
    rng: np.random.Generator,
    init: str = "he",
    dtype: np.dtype | type = np.float32,
) -> Params:
    """Random parameters for a network of the given layer widths.

    Parameters
    ----------
    sizes
        Widths from input to output, e.g. ``(784, 10, 10)``.
    init
        ``"uniform"``: the seed's W and b uniform in [-0.5, 0.5).
        ``"he"``: W normal with variance 2 / fan_in (suits ReLU), b = 0.
        ``"glorot"``: W uniform with variance 2 / (fan_in + fan_out), b = 0.
    """
    if init not in INITS:
        raise ValueError(f"unknown initialisation {init!r}; choose one of {', '.join(INITS)}")
    W, b = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        if init == "uniform":
            W.append(rng.random((fan_in, fan_out)) - 0.5)
            b.append(rng.random(fan_out) - 0.5)
        elif init == "he":
            W.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out)))
            b.append(np.zeros(fan_out))
        else:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            W.append(rng.uniform(-limit, limit, (fan_in, fan_out)))
            b.append(np.zeros(fan_out))
    params = Params([w.astype(dtype) for w in W], [v.astype(dtype) for v in b])
    if init == "uniform":
        # Rounding to float32 carries draws just below 0.5 up to 0.5; keep [-0.5, 0.5) half-open.
        below_half = np.nextafter(np.array(0.5, dtype=dtype), 0)
        for array in (*params.W, *params.b):
            np.minimum(array, below_half, out=array)
    return params


def relu(Z: np.ndarray) -> np.ndarray:
    """f(x) = max(0, x), elementwise."""
    return np.maximum(Z, 0)


def softmax(Z: np.ndarray) -> np.ndarray:
    """Each row's exponentials, normalised to sum to 1.

    Subtracting the row's maximum first changes nothing mathematically and keeps ``exp`` from
    overflowing for large logits.
    """
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def one_hot(y: np.ndarray, n_classes: int = 10, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Labels (m,) as rows of a (m, n_classes) identity: Y[i, y[i]] = 1."""
    Y = np.zeros((len(y), n_classes), dtype=dtype)
    Y[np.arange(len(y)), y] = 1
    return Y


def forward(params: Params, X: np.ndarray) -> Forward:
    """Run a batch through the network.

    Parameters
    ----------
    X : ndarray, shape (m, n_inputs)

    Returns
    -------
    Forward
        ``Z[l] = A[l-1] @ W[l] + b[l]``; ``A[l] = relu(Z[l])`` for hidden layers and
        ``softmax(Z[l])`` for the last, whose ``A`` is (m, n_classes) probabilities.
    """
    Z: list[np.ndarray | None] = [None]
    A = [X]
    last = len(params.W)
    for layer, (W, b) in enumerate(zip(params.W, params.b, strict=True), start=1):
        Z_l = A[-1] @ W + b                     # Z1 = X @ W1 + b1, Z2 = A1 @ W2 + b2
        Z.append(Z_l)
        A.append(relu(Z_l) if layer < last else softmax(Z_l))  # A1 = relu(Z1), A2 = softmax(Z2)
    return Forward(Z, A)


def backward(params: Params, fwd: Forward, Y: np.ndarray, l2: float = 0.0) -> Gradients:
    """Gradients of the mean cross-entropy (plus ``l2 / 2 * sum(W**2)``) by backpropagation.

    Parameters
    ----------
    fwd
        The forward pass of the same batch.
    Y : ndarray, shape (m, n_classes)
        One-hot targets (or smoothed ones: each row sums to 1).
    """
    m = Y.shape[0]
    last = len(params.W)
    dW: list[np.ndarray] = [np.empty(0)] * last
    db: list[np.ndarray] = [np.empty(0)] * last
    # Softmax output paired with cross-entropy: the Jacobians cancel to this simple difference.
    dZ = fwd.A[-1] - Y                                   # dZ2 = A2 - Y
    for layer in range(last, 0, -1):
        dW[layer - 1] = fwd.A[layer - 1].T @ dZ / m        # dW2 = A1.T @ dZ2 / m
        db[layer - 1] = dZ.sum(axis=0) / m                # db2 = sum(dZ2) / m
        if l2:
            dW[layer - 1] = dW[layer - 1] + l2 * params.W[layer - 1]
        if layer > 1:
            Z_below = fwd.Z[layer - 1]
            assert Z_below is not None
            dZ = dZ @ params.W[layer - 1].T * (Z_below > 0)  # dZ1 = dZ2 @ W2.T * relu'(Z1)
    return Gradients(dW, db)


def cross_entropy(P: np.ndarray, Y: np.ndarray, eps: float = 1e-12) -> float:
    """Mean cross-entropy ``-sum(Y * log(P)) / m`` of probabilities P against targets Y.

    P is clipped to [eps, 1] before the log so a confident mistake costs a large finite loss.
    """
    m = Y.shape[0]
    return float(-np.sum(Y * np.log(np.clip(P, eps, 1.0))) / m)


def l2_penalty(params: Params, l2: float) -> float:
    """``l2 / 2 * sum(W**2)`` over the weights (biases are not penalised)."""
    if not l2:
        return 0.0
    return float(0.5 * l2 * sum(np.sum(W.astype(np.float64) ** 2) for W in params.W))


def predict(params: Params, X: np.ndarray) -> np.ndarray:
    """The most probable class of each row of X: argmax of the output, shape (m,)."""
    return np.argmax(forward(params, X).probabilities, axis=1)
