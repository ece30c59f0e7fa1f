"""The original notebook's network, written the way the notebook writes it: the baseline.

This is deliberately the naive version that ``digitnet bench`` compares the ``seed`` preset
against: float64 throughout, column-major data (one image per *column*, ``X`` is (784, m)), the
parameters drawn as ``rand - 0.5``, softmax as ``exp(Z) / sum(exp(Z))`` without the max
subtraction, a fresh one-hot matrix every iteration, and every gradient allocated anew::

    Z1 = W1.dot(X) + b1     A1 = ReLU(Z1)      Z2 = W2.dot(A1) + b2     A2 = softmax(Z2)
    dZ2 = A2 - one_hot(Y)   dW2 = 1/m dZ2.dot(A1.T)   db2 = 1/m sum(dZ2)
    dZ1 = W2.T.dot(dZ2) * ReLU_deriv(Z1)   dW1 = 1/m dZ1.dot(X.T)   db1 = 1/m sum(dZ1)

Only the random draws differ from the notebook: they come from a ``RandomState`` passed in
rather than the global ``np.random`` (same generator, same ``rand - 0.5`` formula), and
:func:`gradient_descent` can start from given parameters so that a comparison can use the same
starting point for both implementations.
"""

from __future__ import annotations

import numpy as np


def init_params(rng: np.random.RandomState):
    W1 = rng.rand(10, 784) - 0.5
    b1 = rng.rand(10, 1) - 0.5
    W2 = rng.rand(10, 10) - 0.5
    b2 = rng.rand(10, 1) - 0.5
    return W1, b1, W2, b2


def ReLU(Z):
    return np.maximum(Z, 0)


def softmax(Z):
    A = np.exp(Z) / sum(np.exp(Z))
    return A


def forward_prop(W1, b1, W2, b2, X):
    Z1 = W1.dot(X) + b1
    A1 = ReLU(Z1)
    Z2 = W2.dot(A1) + b2
    A2 = softmax(Z2)
    return Z1, A1, Z2, A2


def ReLU_deriv(Z):
    return Z > 0


def one_hot(Y):
    one_hot_Y = np.zeros((Y.size, Y.max() + 1))
    one_hot_Y[np.arange(Y.size), Y] = 1
    one_hot_Y = one_hot_Y.T
    return one_hot_Y


def backward_prop(Z1, A1, Z2, A2, W1, W2, X, Y):
    m = Y.size
    one_hot_Y = one_hot(Y)
    dZ2 = A2 - one_hot_Y
    dW2 = 1 / m * dZ2.dot(A1.T)
    db2 = 1 / m * np.sum(dZ2, axis=1, keepdims=True)
    dZ1 = W2.T.dot(dZ2) * ReLU_deriv(Z1)
    dW1 = 1 / m * dZ1.dot(X.T)
    db1 = 1 / m * np.sum(dZ1, axis=1, keepdims=True)
    return dW1, db1, dW2, db2


def update_params(W1, b1, W2, b2, dW1, db1, dW2, db2, alpha):
    W1 = W1 - alpha * dW1
    b1 = b1 - alpha * db1
    W2 = W2 - alpha * dW2
    b2 = b2 - alpha * db2
    return W1, b1, W2, b2


def get_predictions(A2):
    return np.argmax(A2, 0)


def get_accuracy(predictions, Y):
    return np.sum(predictions == Y) / Y.size


def prepare(images: np.ndarray, labels: np.ndarray, dev_size: int = 1000,
            rng: np.random.RandomState | None = None):
    """The notebook's data step: shuffle, split off the dev set, transpose, divide by 255.

    Returns ``(X_train, Y_train, X_dev, Y_dev)`` with ``X`` of shape (784, m), float64.
    """
    data = np.concatenate([labels.reshape(-1, 1), images.reshape(len(images), -1)], axis=1)
    data = data.astype(np.float64)
    (rng or np.random.RandomState(0)).shuffle(data)
    data_dev = data[0:dev_size].T
    Y_dev = data_dev[0].astype(int)
    X_dev = data_dev[1:] / 255.
    data_train = data[dev_size:].T
    Y_train = data_train[0].astype(int)
    X_train = data_train[1:] / 255.
    return X_train, Y_train, X_dev, Y_dev


def columns(images: np.ndarray, labels: np.ndarray):
    """Given images and labels as the notebook's X (784, m) float64 in [0, 1] and Y (m,) int:
    the same layout as :func:`prepare` for a split chosen elsewhere."""
    X = images.reshape(len(images), -1).T / 255.
    return X, np.asarray(labels).astype(int)


def gradient_descent(X, Y, alpha, iterations, params=None, rng=None):
    """Full-batch gradient descent for ``iterations`` steps; returns W1, b1, W2, b2.

    ``params``, when given, is the starting ``(W1, b1, W2, b2)`` in the notebook's shapes
    ((10, 784), (10, 1), (10, 10), (10, 1)); otherwise they are drawn with :func:`init_params`.
    """
    if params is None:
        W1, b1, W2, b2 = init_params(rng or np.random.RandomState(0))
    else:
        W1, b1, W2, b2 = (np.array(p, dtype=np.float64) for p in params)
    for _ in range(iterations):
        Z1, A1, Z2, A2 = forward_prop(W1, b1, W2, b2, X)
        dW1, db1, dW2, db2 = backward_prop(Z1, A1, Z2, A2, W1, W2, X, Y)
        W1, b1, W2, b2 = update_params(W1, b1, W2, b2, dW1, db1, dW2, db2, alpha)
    return W1, b1, W2, b2


def make_predictions(X, W1, b1, W2, b2):
    _, _, _, A2 = forward_prop(W1, b1, W2, b2, X)
    return get_predictions(A2)
