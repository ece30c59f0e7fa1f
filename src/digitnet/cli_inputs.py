"""The 28x28 inputs of ``predict`` and ``explain``: read, drawn in the terminal, saved as PNG."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

__all__ = ["input_png", "save_input_names", "save_inputs"]


def input_png(pixels: np.ndarray) -> bytes:
    """A 28x28 input (grey 0-255, light ink on black as MNIST) as PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    grey = np.clip(np.rint(np.asarray(pixels, dtype=np.float64)), 0, 255).astype(np.uint8)
    Image.fromarray(grey.reshape(28, 28)).save(buffer, format="PNG")
    return buffer.getvalue()


def _stem(name: str) -> str:
    """A file name from an input's name: 'photos/seven.jpg' -> 'seven', 'mnist[test][0]' ->
    'mnist-test-0'."""
    stem = Path(name).stem if not name.endswith("]") else name
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.")
    return stem or "input"


def save_input_names(folder: Path, names: list[str]) -> list[Path]:
    """Where each input's 28x28 PNG goes in ``folder``: ``<stem>.28x28.png``, numbered when two
    stems are the same."""
    paths: list[Path] = []
    taken: set[str] = set()
    for name in names:
        stem = _stem(name)
        candidate, n = f"{stem}.28x28.png", 1
        while candidate in taken:
            n += 1
            candidate = f"{stem}-{n}.28x28.png"
        taken.add(candidate)
        paths.append(folder / candidate)
    return paths


def save_inputs(paths: list[Path], inputs: list[np.ndarray]) -> None:
    """Write each input as a PNG to its path, atomically (folders are created)."""
    from digitnet._atomic import atomic_write_bytes

    for path, pixels in zip(paths, inputs, strict=True):
        atomic_write_bytes(path, input_png(pixels))
