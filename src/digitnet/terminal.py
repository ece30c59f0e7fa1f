"""What the CLI draws in a terminal: a 28x28 digit, a training run's history.

A digit, for ``digitnet predict --show`` and ``digitnet explain``:

In a colour terminal each character cell shows two pixels, one above the other, with the
upper half block "▀": its foreground is the upper pixel's grey, its background the lower one's,
so the digit keeps its proportions in 28 columns by 14 rows. Elsewhere (a pipe, a log, a
terminal without colour) each pixel becomes two characters of a ten-step ramp " .:-=+*#%@",
28 lines of 56 characters that read the same in any file.
"""

from __future__ import annotations

import numpy as np
from rich import box
from rich.style import Style
from rich.table import Table
from rich.text import Text

__all__ = ["RAMP", "digit_ascii", "digit_blocks", "digit_text", "history_table"]

RAMP = " .:-=+*#%@"  # grey 0 (no ink) to 255 (full ink)


def _grey(pixels: np.ndarray) -> np.ndarray:
    grey = np.asarray(pixels, dtype=np.float64).reshape(28, 28)
    return np.clip(np.rint(grey), 0, 255).astype(np.int64)


def digit_ascii(pixels: np.ndarray) -> str:
    """The image as 28 lines of 56 ramp characters (each pixel twice, for its proportions)."""
    levels = _grey(pixels) * (len(RAMP) - 1) // 255
    return "\n".join("".join(RAMP[v] * 2 for v in row) for row in levels)


def digit_blocks(pixels: np.ndarray) -> Text:
    """The image as 14 lines of 28 half blocks, coloured grey levels (needs a colour terminal)."""
    grey = _grey(pixels)
    text = Text()
    for top, bottom in zip(grey[0::2], grey[1::2], strict=True):
        for upper, lower in zip(top, bottom, strict=True):
            text.append("▀", Style(color=f"rgb({upper},{upper},{upper})",
                                   bgcolor=f"rgb({lower},{lower},{lower})"))
        text.append("\n")
    text.rstrip()
    return text


def digit_text(pixels: np.ndarray, colour: bool) -> Text:
    """:func:`digit_blocks` when ``colour``, else :func:`digit_ascii` as plain text."""
    return digit_blocks(pixels) if colour else Text(digit_ascii(pixels))


def history_table(history: dict[str, list[float]], full_batch: bool, rows: int = 16) -> Table:
    """The per-epoch figures of a training run as a compact table.

    A run with more than ``rows`` records (a full-batch run records each step) shows ``rows``
    of them, evenly spaced, the last included. A full-batch run is counted in gradient steps,
    since one epoch there is one step.
    """
    n = len(history.get("epoch") or [])
    keep = sorted({round(i) for i in np.linspace(0, n - 1, min(rows, n))}) if n else []
    what = "full-batch steps" if full_batch else "epochs"
    table = Table(title=f"training, {n:,} records" + (f" (showing {len(keep)})"
                                                      if len(keep) < n else "") + f", by {what}",
                  box=box.SIMPLE_HEAD, padding=(0, 1))
    columns = (("step" if full_batch else "epoch", "step" if full_batch else "epoch", "{:,.0f}"),
               ("rate α", "lr", "{:.3g}"), ("train loss", "loss", "{:.4f}"),
               ("train acc", "train_accuracy", "{:.2%}"), ("val loss", "val_loss", "{:.4f}"),
               ("val acc", "val_accuracy", "{:.2%}"), ("seconds", "seconds", "{:.2f}"))
    for title, _, _ in columns:
        table.add_column(title, justify="right")
    for i in keep:
        cells = []
        for _, key, style in columns:
            values = history.get(key) or []
            value = values[i] if i < len(values) else None
            cells.append("–" if value is None or value != value else style.format(value))
        table.add_row(*cells)
    return table
