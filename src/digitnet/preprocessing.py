"""How pixels 0-255 become the network's input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Preprocessing"]


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
