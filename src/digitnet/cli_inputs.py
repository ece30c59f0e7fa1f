"""What ``predict`` does with its inputs besides predicting: saves them as PNG, draws them in the
terminal, prints one line per prediction."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.text import Text

from digitnet.errors import DigitnetError

__all__ = ["input_png", "save_input_names", "save_inputs", "save", "show", "print_predictions"]


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


def save(folder: Path, names: list[str], inputs: list[np.ndarray],
         given: list[Path]) -> list[Path]:
    """``--save-input``: each input as ``folder/<stem>.28x28.png``; the paths written.

    Raises
    ------
    DigitnetError
        If a file would overwrite one of the ``given`` images, or cannot be written.
    """
    if not inputs:
        return []
    paths = save_input_names(folder, names)
    images = {p.resolve() for p in given}
    clash = next((p for p in paths if p.resolve() in images), None)
    if clash is not None:
        raise DigitnetError(f"--save-input would overwrite the input {clash}; give another "
                            "folder")
    try:
        save_inputs(paths, inputs)
    except OSError as exc:
        raise DigitnetError(f"--save-input {folder}: cannot be written "
                            f"({exc.strerror or exc})") from None
    return paths


def show(screen: Console, names: list[str], inputs: list[np.ndarray]) -> None:
    """``--show``: each input drawn (half blocks in a colour terminal, else characters)."""
    from digitnet.terminal import digit_text

    for name, pixels in zip(names, inputs, strict=True):
        screen.print(Text(f"{name}: the 28x28 input"), highlight=False, soft_wrap=True)
        screen.print(digit_text(pixels, screen.is_terminal and screen.color_system is not None))


def print_predictions(screen: Console, results: list[dict[str, Any]], class_names: list[str],
                      top: int) -> None:
    """One line per prediction: the file, the class, the ``top`` classes' probabilities."""
    from digitnet.streams import shown

    for result in results:
        p = np.asarray(result["probabilities"])
        best = np.argsort(-p)[:top]
        ranked = ", ".join(f"{shown(class_names[k])} {p[k]:.1%}" for k in best)
        truth_label = result.get("true_label")
        known = isinstance(truth_label, int) and 0 <= truth_label < len(class_names)
        truth_name = class_names[truth_label] if known else str(truth_label)  # type: ignore[index]
        truth_text = f" (true: {shown(truth_name)})" if truth_label is not None else ""
        # Text, not markup, control characters escaped: file and class names come from files;
        # one line however long
        screen.print(Text.assemble(f"{shown(result['file'])}: ",
                                   (shown(class_names[result["label"]]), "bold"),
                                   f"{truth_text}  ", (ranked, "dim")), highlight=False,
                     soft_wrap=True)
