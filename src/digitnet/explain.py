"""One forward pass with its numbers: how 784 grey levels become ten probabilities.

For the classic 784-10-10 network the path is::

    x  = (pixels * scale - mean) / std          the model's own preprocessing, (784,)
    z1 = x @ W1 + b1                             one number per hidden unit, (h,)
    a1 = max(0, z1)                              units with z1 <= 0 are silent
    contributions[j, k] = a1[j] * W2[j, k]       what unit j adds to class k's logit, (h, 10)
    z2 = contributions.sum(axis=0) + b2          the logits, (10,)
    probabilities = exp(z2 - max) / sum(exp(z2 - max))

A deeper network repeats the middle two lines for each hidden layer. Everything is computed in
float64 from the model's weights, so that the shown sums add up to the shown results; the
probabilities agree with :meth:`digitnet.model.Model.predict_proba` to float32 precision.

    >>> from digitnet import explain, modelfile
    >>> e = explain.explain(modelfile.load("model.safetensors"), pixels)   # pixels: (28, 28)
    >>> e.arrays()["contributions"].shape
    (10, 10)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitnet.model import Model

__all__ = ["Layer", "Explanation", "explain"]


@dataclass(frozen=True)
class Layer:
    """One layer of the forward pass, numbered from 1 as in the seed (layer 1 makes z1).

    Attributes
    ----------
    number : int
        ``l`` in ``z{l} = a{l-1} @ W{l} + b{l}``.
    inputs : ndarray, shape (fan_in,)
        What the layer reads: x for layer 1, else the previous layer's activations.
    b : ndarray, shape (fan_out,)
        The layer's biases.
    z : ndarray, shape (fan_out,)
        ``inputs @ W + b``, before the activation.
    a : ndarray, shape (fan_out,)
        After the activation: ``max(0, z)`` for a hidden layer, softmax for the output layer.
    contributions : ndarray, shape (fan_in, fan_out)
        ``inputs[j] * W[j, k]``: ``z = contributions.sum(axis=0) + b``.
    output : bool
        Whether this is the softmax output layer.
    """

    number: int
    inputs: np.ndarray
    b: np.ndarray
    z: np.ndarray
    a: np.ndarray
    contributions: np.ndarray
    output: bool

    @property
    def silent(self) -> np.ndarray:
        """Indices of the units whose ReLU output is 0 (empty for the output layer)."""
        if self.output:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.a == 0)


@dataclass(frozen=True)
class Explanation:
    """The forward pass of one image, layer by layer; see :func:`explain`."""

    pixels: np.ndarray          # (28, 28) uint8, the network's input before preprocessing
    x: np.ndarray               # (784,) float64, after the model's preprocessing
    layers: tuple[Layer, ...]
    class_names: tuple[str, ...]

    @property
    def output(self) -> Layer:
        return self.layers[-1]

    @property
    def logits(self) -> np.ndarray:
        return self.output.z

    @property
    def exponentials(self) -> np.ndarray:
        """``exp(z - max(z))`` of the logits: softmax's numerators (the largest is 1)."""
        return np.exp(self.logits - self.logits.max())

    @property
    def probabilities(self) -> np.ndarray:
        return self.output.a

    @property
    def label(self) -> int:
        return int(np.argmax(self.probabilities))

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by name.

        ``x``; for each layer l: ``z{l}`` and ``b{l}``, ``a{l}`` for hidden layers and
        ``contributions{l}`` for layers after the first; then, for the last layer under short
        names, ``contributions``, ``exponentials`` and ``probabilities``. For the classic
        network that is ``x, z1, b1, a1, z2, b2, contributions2`` and ``contributions``
        (the same (h, 10) table), ``exponentials``, ``probabilities``.
        """
        named: dict[str, np.ndarray] = {"x": self.x}
        for layer in self.layers:
            n = layer.number
            named[f"z{n}"] = layer.z
            named[f"b{n}"] = layer.b
            if not layer.output:
                named[f"a{n}"] = layer.a
            if n > 1:
                named[f"contributions{n}"] = layer.contributions
        named["contributions"] = self.output.contributions
        named["exponentials"] = self.exponentials
        named["probabilities"] = self.probabilities
        return named


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())  # minus the maximum: exp never overflows, the ratios are the same
    return e / e.sum()


def explain(model: Model, pixels: np.ndarray) -> Explanation:
    """The forward pass of one image with every intermediate array.

    Parameters
    ----------
    model
        A network that takes 784 inputs.
    pixels : ndarray, shape (28, 28) or (784,)
        Grey levels 0-255 as MNIST stores them (light ink on black), e.g. from
        :func:`digitnet.imaging.preprocess` or a dataset.

    Returns
    -------
    Explanation
        ``layers[0]`` makes z1 from x; the last layer's ``a`` is the probabilities.

    Raises
    ------
    ValueError
        If the image does not have 784 pixels or the model does not take 784 inputs.
    """
    pixels = np.asarray(pixels)
    if pixels.size != model.sizes[0]:
        raise ValueError(f"the image has {pixels.size} pixels, the model takes "
                         f"{model.sizes[0]} inputs")
    if pixels.size != 28 * 28:
        raise ValueError(f"the model takes {model.sizes[0]} inputs, not a 28x28 image")
    x = model.preprocessing.apply(pixels.reshape(1, -1), np.float64)[0]
    layers = []
    inputs = x
    last = len(model.params.W)
    for number, (W, b) in enumerate(zip(model.params.W, model.params.b, strict=True), start=1):
        W64, b64 = W.astype(np.float64), b.astype(np.float64)
        contributions = inputs[:, None] * W64
        z = inputs @ W64 + b64
        output = number == last
        a = _softmax(z) if output else np.maximum(z, 0.0)
        layers.append(Layer(number, inputs, b64, z, a, contributions, output))
        inputs = a
    return Explanation(pixels.reshape(28, 28).astype(np.uint8), x, tuple(layers),
                       tuple(model.class_names))
