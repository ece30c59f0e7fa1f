"""A test set that looks like people's handwriting on paper, built from MNIST test digits.

People write with pens of different thickness, slant and size, rarely in the middle of the
page, and photograph or scan the result: dark ink on light paper, blurred, low in contrast,
noisy, any size. Each case here takes an MNIST test digit, renders it that way as an image of
its own size, encodes it as PNG and sends it through the same path as ``digitnet predict``
(:func:`digitnet.imaging.preprocess`). The set is deterministic for a given seed.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["TRANSFORMS", "Case", "make_cases", "preprocess_cases", "predict_cases",
           "accuracy_by_transform"]

UPSCALE = 6  # the digit is drawn at 168x168 before it is deformed


@dataclass
class Case:
    """One rendered digit: the PNG a person might give, its label and what was done to it."""

    transform: str
    label: int
    png: bytes


def _thickness(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    size = int(rng.choice([3, 5, 7, 9]))
    if rng.random() < 0.3:
        return img.filter(ImageFilter.MinFilter(3))  # a fine pen
    return img.filter(ImageFilter.MaxFilter(size))  # a felt-tip


def _slant(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    shear = rng.uniform(0.2, 0.45) * rng.choice([-1, 1])
    w, h = img.size
    return img.transform((w, h), Image.Transform.AFFINE,
                         (1, shear, -shear * h / 2, 0, 1, 0), Image.Resampling.BILINEAR)


def _scale(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    factor = rng.choice([rng.uniform(0.35, 0.6), rng.uniform(1.4, 2.2)])
    w, h = img.size
    return img.resize((max(8, int(w * factor)), max(8, int(h * factor))),
                      Image.Resampling.BICUBIC)


def _rotate(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return img.rotate(rng.uniform(12, 22) * rng.choice([-1, 1]), Image.Resampling.BILINEAR,
                      expand=True)


def _identity(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return img


# Deformations of the digit itself, before it is put on paper.
_SHAPE: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "clean": _identity,
    "thickness": _thickness,
    "slant": _slant,
    "scale": _scale,
    "rotation": _rotate,
}
# How it lands on paper: position, blur, contrast, noise.
_PAPER = ("position", "blur", "contrast", "noise")
TRANSFORMS = (*_SHAPE, *_PAPER, "everything")


def _on_paper(ink: np.ndarray, transform: str, rng: np.random.Generator) -> np.ndarray:
    """Ink coverage 0-1 (h, w) as a grey photo of paper (dark ink on light), uint8."""
    h, w = ink.shape
    every = transform == "everything"
    side = int(rng.integers(max(h, w) + 20, max(h, w) * 3 + 40))
    canvas = np.zeros((side, side), dtype=np.float32)
    if transform == "position" or every:
        y, x = int(rng.integers(0, side - h + 1)), int(rng.integers(0, side - w + 1))
    else:
        y, x = (side - h) // 2, (side - w) // 2
    canvas[y:y + h, x:x + w] = ink
    paper, pen = 235.0, 20.0
    if transform == "contrast":
        paper, pen = rng.uniform(160, 210), rng.uniform(70, 120)
    elif every:  # all at once, each milder than alone
        paper, pen = rng.uniform(180, 220), rng.uniform(40, 90)
    grey = paper - (paper - pen) * canvas
    # A gentle gradient of light across the page, as in a photo.
    grey += np.linspace(-12, 12, side, dtype=np.float32)[None, :] * rng.uniform(0, 1)
    image = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8))
    if transform == "blur" or every:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(2.0, 4.0) / (1 + every)))
    grey = np.asarray(image, dtype=np.float32)
    if transform == "noise" or every:
        grey = grey + rng.normal(0, rng.uniform(12, 25) / (1 + 2 * every), grey.shape)
    return np.clip(grey, 0, 255).astype(np.uint8)


def _render(digit: np.ndarray, transform: str, rng: np.random.Generator) -> bytes:
    img = Image.fromarray(digit).resize((28 * UPSCALE, 28 * UPSCALE), Image.Resampling.BICUBIC)
    if transform == "everything":
        for name in ("thickness", "slant", "scale"):
            img = _SHAPE[name](img, rng)
    elif transform in _SHAPE:
        img = _SHAPE[transform](img, rng)
    ink = np.asarray(img, dtype=np.float32) / 255.0
    buffer = io.BytesIO()
    Image.fromarray(_on_paper(ink, transform, rng)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_cases(images: np.ndarray, labels: np.ndarray, per_transform: int = 200,
               seed: int = 0) -> list[Case]:
    """Render ``per_transform`` MNIST test digits under each transform in :data:`TRANSFORMS`.

    Parameters
    ----------
    images : ndarray of uint8, shape (n, 28, 28)
        MNIST test images (light ink on dark, as stored).
    labels : ndarray, shape (n,)
    """
    rng = np.random.default_rng(seed)
    cases = []
    for transform in TRANSFORMS:
        for i in rng.choice(len(images), per_transform, replace=False):
            cases.append(Case(transform, int(labels[i]), _render(images[i], transform, rng)))
    return cases


def preprocess_cases(cases: list[Case]) -> tuple[np.ndarray, np.ndarray]:
    """Every case through the ``predict`` path.

    Returns
    -------
    inputs : ndarray of uint8, shape (n, 28, 28)
        Zero where the image was refused.
    refused : ndarray of bool, shape (n,)
        True where preprocessing found no digit; such a case counts as a mistake.
    """
    from digitnet import imaging
    from digitnet.errors import ImageError

    inputs = np.zeros((len(cases), 28, 28), dtype=np.uint8)
    refused = np.zeros(len(cases), dtype=bool)
    for k, case in enumerate(cases):
        try:
            inputs[k] = imaging.preprocess(case.png)
        except ImageError:
            refused[k] = True
    return inputs, refused


def predict_cases(model: Any, cases: list[Case]) -> np.ndarray:
    """The model's label for each case, -1 where the image was refused."""
    inputs, refused = preprocess_cases(cases)
    predicted = model.predict(inputs)
    predicted[refused] = -1
    return predicted


def accuracy_by_transform(cases: list[Case], predicted: np.ndarray) -> dict[str, float]:
    """Accuracy for each transform and over every case of every transform ("overall")."""
    labels = np.array([c.label for c in cases])
    names = np.array([c.transform for c in cases])
    result = {t: float(np.mean(predicted[names == t] == labels[names == t])) for t in TRANSFORMS}
    result["overall"] = float(np.mean(predicted == labels))
    return result
