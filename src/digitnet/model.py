"""A trained network with what it needs to read images: parameters, preprocessing, metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from digitnet import network
from digitnet.network import Params

__all__ = ["Preprocessing", "Model"]


@dataclass(frozen=True)
class Preprocessing:
    """How pixels 0-255 become the network's input: ``x = (pixels * scale - mean) / std``."""

    scale: float = 1 / 255
    mean: float = 0.0
    std: float = 1.0

    def apply(self, images: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """Images (n, 28, 28) or (n, 784), uint8 or float 0-255, as network input (n, 784)."""
        X = np.asarray(images).reshape(len(images), -1).astype(dtype)
        X *= self.scale / self.std  # a Python float keeps X's dtype
        if self.mean:
            X -= self.mean / self.std
        return X

    def to_dict(self) -> dict[str, float]:
        return {"scale": self.scale, "mean": self.mean, "std": self.std}


@dataclass
class Model:
    """A network ready to use: ``predict_proba`` takes images as they come from the datasets.

    ``meta`` holds what the model file stores beside the weights: the training config, metrics,
    history, the hashes of the data it was trained on.
    """

    params: Params
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sizes(self) -> tuple[int, ...]:
        return self.params.sizes

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names") or [str(k) for k in range(self.sizes[-1])])

    def prepare(self, images: np.ndarray) -> np.ndarray:
        return self.preprocessing.apply(images, self.params.dtype.type)

    def forward(self, images: np.ndarray) -> network.Forward:
        """The full forward pass (every layer's Z and A) for images 0-255."""
        return network.forward(self.params, self.prepare(images))

    def predict_proba(self, images: np.ndarray, batch_size: int = 10_000) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), for images (n, 28, 28) or (n, 784)."""
        n = len(images)
        out = np.empty((n, self.sizes[-1]), dtype=self.params.dtype)
        for start in range(0, n, batch_size):
            batch = images[start:start + batch_size]
            out[start:start + len(batch)] = self.forward(batch).probabilities
        return out

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The most probable class of each image, shape (n,)."""
        return np.argmax(self.predict_proba(images), axis=1)

    def hidden(self, images: np.ndarray) -> np.ndarray:
        """The first hidden layer's activations A1, shape (n, hidden units)."""
        return self.forward(images).A[1]
