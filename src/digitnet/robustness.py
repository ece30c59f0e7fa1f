"""A test set that looks like people's handwriting on paper, built from MNIST test digits.

People write with pens of different thickness, slant and size, rarely in the middle of the
page, and photograph or scan the result: dark ink on light paper, blurred, low in contrast,
noisy, any size. Each case here takes an MNIST test digit, renders it that way as an image of
its own size, encodes it as PNG and sends it through the same path as ``digitnet predict``
(:func:`digitnet.imaging.preprocess`). The set is deterministic for a given seed.

Beside the deformations of the digit and of the page (:data:`TRANSFORMS`), :data:`PHOTO` holds
what photos of paper add: a shadow, ruled and squared paper, pencil, a table's edge in the
frame, a second small mark, a low-quality JPEG, and a phone camera's blur, noise and
vignetting.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["TRANSFORMS", "PHOTO", "Case", "make_cases", "preprocess_cases", "predict_cases",
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


# Photos of paper: the light, printed lines, pencil, what else is in the frame, the camera. Each
# takes the ink coverage 0-1 (h, w) of the deformed digit and returns the grey photo, uint8.
def _shadow(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft shadow across the page (a hand or a lamp's), darkening part of the digit too."""
    grey = _on_paper(ink, "clean", rng).astype(np.float32)
    side = grey.shape[0]
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    across = np.cos(angle) * xx + np.sin(angle) * yy - rng.uniform(-0.15, 0.15)
    soft = rng.uniform(0.05, 0.2)
    depth = rng.uniform(0.4, 0.65)
    light = 1 - depth / (1 + np.exp(-across / soft))
    light *= 1 - rng.uniform(0.0, 0.25) * (xx ** 2 + yy ** 2) * 2  # the lamp's fall-off
    return np.clip(grey * light, 0, 255).astype(np.uint8)


def _ruled(grey: np.ndarray, spacing: float, width: int, darkness: float, offset: float,
           axis: int) -> np.ndarray:
    """Printed lines (multiplied in, as ink under ink) every ``spacing`` pixels along axis."""
    position = np.arange(grey.shape[axis], dtype=np.float32)
    on = ((position - offset) % spacing) < width
    shape = (-1, 1) if axis == 0 else (1, -1)
    return grey * (1 - darkness * on.reshape(shape))


def _lined(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ruled paper: horizontal lines about a third of the digit's height apart."""
    grey = _on_paper(ink, "clean", rng).astype(np.float32)
    spacing = rng.uniform(0.2, 0.35) * ink.shape[0]
    grey = _ruled(grey, spacing, int(rng.integers(1, 4)), rng.uniform(0.25, 0.55),
                  rng.uniform(0, spacing), axis=0)
    return np.clip(grey, 0, 255).astype(np.uint8)


def _squared(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Squared (graph) paper: a grid of lines both ways, a fifth to a quarter of the digit."""
    grey = _on_paper(ink, "clean", rng).astype(np.float32)
    spacing = rng.uniform(0.15, 0.25) * ink.shape[0]
    width, darkness = int(rng.integers(1, 3)), rng.uniform(0.2, 0.45)
    for axis in (0, 1):
        grey = _ruled(grey, spacing, width, darkness, rng.uniform(0, spacing), axis)
    return np.clip(grey, 0, 255).astype(np.uint8)


def _pencil(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pencil: a thin grey stroke, broken where the graphite skipped, on grainy paper."""
    thin = Image.fromarray((ink * 255).astype(np.uint8)).filter(
        ImageFilter.MinFilter(int(rng.choice([3, 5, 7]))))
    coverage = np.asarray(thin, dtype=np.float32) / 255
    skips = np.asarray(Image.fromarray(rng.uniform(0, 255, coverage.shape).astype(np.uint8))
                       .filter(ImageFilter.GaussianBlur(3)), dtype=np.float32)
    skips = np.clip((skips - skips.mean()) / (skips.std() + 1e-6) + 1.2, 0, 1)  # gaps ~10 %
    coverage *= skips * rng.uniform(0.3, 0.55)  # graphite is grey, not black
    grey = _on_paper(coverage, "clean", rng).astype(np.float32)
    grey += rng.normal(0, 4, grey.shape)  # paper grain
    return np.clip(grey, 0, 255).astype(np.uint8)


def _edge(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The table beyond the page's edge, dark, along one side of the photo."""
    grey = _on_paper(ink, "clean", rng).astype(np.float32)
    side = grey.shape[0]
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    tilt = np.tan(np.deg2rad(rng.uniform(-4, 4)))
    reach = rng.uniform(0.04, 0.12) * side
    distance = [yy + tilt * xx, side - 1 - yy + tilt * xx, xx + tilt * yy,
                side - 1 - xx + tilt * yy][int(rng.integers(0, 4))]
    table = rng.uniform(30, 90) + rng.normal(0, 6, grey.shape)
    return np.clip(np.where(distance < reach, table, grey), 0, 255).astype(np.uint8)


def _mark(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A second small mark away from the digit: a dot or a short dash of the same pen."""
    h, w = ink.shape
    canvas = np.zeros((h * 2, w * 2), dtype=np.float32)
    canvas[h // 2:h // 2 + h, w // 2:w // 2 + w] = ink  # the digit in the middle
    image = Image.fromarray((canvas * 255).astype(np.uint8))
    corner_y, corner_x = rng.integers(0, 2, 2)
    y = int(rng.uniform(0.04, 0.18) * 2 * h) + corner_y * int(1.6 * h)
    x = int(rng.uniform(0.04, 0.18) * 2 * w) + corner_x * int(1.6 * w)
    length, width = int(rng.uniform(0.05, 0.2) * h), int(rng.integers(8, 16))
    ImageDraw.Draw(image).line([(x, y), (x + length, y + int(rng.uniform(-0.5, 0.5) * length))],
                               fill=255, width=width)
    return _on_paper(np.asarray(image, dtype=np.float32) / 255, "clean", rng)


def _jpeg(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Saved as a JPEG at low quality: blocks and ringing around the strokes."""
    return _jpeg_round_trip(_on_paper(ink, "clean", rng), int(rng.integers(5, 16)))


def _jpeg_round_trip(grey: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))


def _photo(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A phone photo: out of focus, sensor noise, uneven light, saved as a JPEG."""
    grey = _on_paper(ink, "clean", rng)
    grey = np.asarray(Image.fromarray(grey).filter(ImageFilter.GaussianBlur(
        rng.uniform(1.5, 3.0))), dtype=np.float32)
    side = grey.shape[0]
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side - 0.5
    grey *= 1 - rng.uniform(0.2, 0.4) * (xx ** 2 + yy ** 2) * 2  # vignetting
    grey += rng.normal(0, rng.uniform(6, 12), grey.shape)
    return _jpeg_round_trip(np.clip(grey, 0, 255).astype(np.uint8), int(rng.integers(60, 86)))


PHOTO: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "shadow": _shadow,
    "lined": _lined,
    "squared": _squared,
    "pencil": _pencil,
    "edge": _edge,
    "mark": _mark,
    "jpeg": _jpeg,
    "photo": _photo,
}
TRANSFORMS = (*TRANSFORMS, *PHOTO)


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
    photo = PHOTO.get(transform)
    grey = photo(ink, rng) if photo is not None else _on_paper(ink, transform, rng)
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG")
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
