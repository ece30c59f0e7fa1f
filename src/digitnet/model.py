"""A trained network with what it needs to read images: parameters, preprocessing, metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from digitnet import network
from digitnet.fast.predictor import Predictor
from digitnet.network import Params
from digitnet.preprocessing import Preprocessing

__all__ = ["Preprocessing", "Model"]


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

    def predictor(self, backend: str | None = None) -> Predictor:
        """The one inference path for these parameters, as they are now (see
        :class:`digitnet.fast.Predictor`)."""
        return Predictor(self.params, self.preprocessing, backend)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), for images (n, 28, 28) or (n, 784)."""
        return self.predictor().predict_proba(images)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The most probable class of each image, shape (n,)."""
        return self.predictor().predict(images)

    def hidden(self, images: np.ndarray) -> np.ndarray:
        """The first hidden layer's activations A1, shape (n, hidden units)."""
        return self.forward(images).A[1]
