"""Figures that show what a trained network learned, and a self-contained HTML report.

Each ``*_figure`` function takes a :class:`~digitnet.model.Model` (and, where it needs them,
images and labels) and returns a :class:`matplotlib.figure.Figure` drawn with the Agg backend,
without touching pyplot's global state, so figures can be made from any thread::

    >>> from digitnet import report
    >>> fig = report.hidden_units_figure(model)
    >>> png = report.figure_png(fig)

:func:`write_report` writes every figure as a PNG and ``index.html``, a page that embeds the
figures as ``data:`` URIs, so it opens in any browser with no server and no network.

Images are uint8 ``(n, 28, 28)`` or ``(n, 784)`` with grey levels 0-255, as the datasets give
them; labels are integers ``(n,)``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from digitnet import metrics, report_lessons
from digitnet._atomic import atomic_write_bytes
from digitnet._version import __version__
from digitnet.model import Model

__all__ = [
    "FIGURES",
    "training_curves_figure",
    "confusion_figure",
    "hidden_units_figure",
    "mistakes_figure",
    "class_activations_figure",
    "figure_png",
    "evaluate",
    "build_figures",
    "render_html",
    "write_report",
]

# File name, title and caption of each figure, in the order the report shows them.
FIGURES: dict[str, tuple[str, str]] = {
    "training_curves.png": (
        "Training curves",
        "Loss and accuracy after each epoch (after every recorded step for a full-batch run, "
        "where one epoch is one step), on the training batches and on the held-out validation "
        "images. An epoch's training figure is the mean over its minibatches, taken while the "
        "weights were still improving (and its loss includes the L2 penalty); validation is "
        "measured once, with the weights at the epoch's end. That is why epoch 1's training "
        "loss sits above its validation loss. Later, a training curve below validation is the "
        "network fitting its training images more closely than new ones. The dashed line "
        "marks the epoch whose weights were kept.",
    ),
    **report_lessons.FIGURES,  # how it was trained: the schedule, the weights over time
    "confusion_matrix.png": (
        "Confusion matrix",
        "Row i, column j counts the images of class i that the network called j. The colour is "
        "the share of the row, so each class's recall sits on the diagonal.",
    ),
    "hidden_units.png": (
        "What each hidden unit looks for",
        "Each image is one hidden unit's incoming weights W1, one per pixel: blue pixels raise "
        "the unit's activation when inked, red ones lower it (white is zero, one shared scale). "
        "The bars below are the unit's outgoing weights W2, its vote for each class: a firing "
        "unit adds activation × W2 to each class's logit.",
    ),
    "class_activations.png": (
        "Average hidden activation per class",
        "The mean activation A1 = max(0, Z1) of each hidden unit over the images of each class: "
        "which units fire for which digits. A1 has no physical unit: it is a weighted sum of "
        "standardised pixels, on the scale the colour bar shows; 0 means silent.",
    ),
    "confident_mistakes.png": (
        "The most confident mistakes",
        "Images the network got wrong with the highest probability on its wrong answer, with "
        "the true label, the prediction and that probability.",
    ),
}


DIVERGING = "RdBu"  # red for negative, blue for positive, white at zero
SEQUENTIAL = "Blues"
POSITIVE_COLOUR = "#2166ac"
NEGATIVE_COLOUR = "#b2182b"


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def _as_images(images: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """Check images (n, 28, 28) or (n, 784) and labels (n,) in 0..n_classes-1."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.shape[1:] not in ((28, 28), (784,)):
        raise ValueError(f"expected images of shape (n, 28, 28) or (n, 784), got {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"expected one label per image ({len(images)}), got shape "
                         f"{labels.shape}")
    if len(images) == 0:
        raise ValueError("no images to report on")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 \
            or labels.max() >= n_classes:
        raise ValueError(f"labels must be integers 0..{n_classes - 1}")
    return images.reshape(len(images), 28, 28), labels.astype(np.int64)


# -- figures ----------------------------------------------------------------------------------


def training_curves_figure(model: Model) -> Figure:
    """Loss and accuracy per epoch, training and validation, from ``model.meta["history"]``.

    A model without a history (one not made by :mod:`digitnet.training`) gets a figure saying so.
    """
    history = model.meta.get("history") or {}
    epochs = np.asarray(history.get("epoch") or [], dtype=float)
    fig = _new_figure(10, 3.8)
    if not len(epochs):
        fig.text(0.5, 0.5, "this model records no training history", ha="center", va="center")
        return fig
    loss_ax, acc_ax = fig.subplots(1, 2)
    series = {name: np.asarray(history.get(name) or [np.nan] * len(epochs), dtype=float)
              for name in ("loss", "val_loss", "train_accuracy", "val_accuracy")}
    # A full-batch run's epoch is one gradient step: count steps, as the seed's notebook does.
    by_step = report_lessons.full_batch(model) and len(history.get("step") or []) == len(epochs)
    x = np.asarray(history["step"], dtype=float) if by_step else epochs
    xlabel = "gradient step (full batch: all training images each)" if by_step else "epoch"
    marker = {"ms": 0 if len(x) > 60 else 3}
    loss_ax.plot(x, series["loss"], "o-", **marker, label="training")
    loss_ax.plot(x, series["val_loss"], "s-", **marker, label="validation")
    loss_ax.set(title="Cross-entropy loss", xlabel=xlabel,
                ylabel="mean cross-entropy (nats per image)")
    acc_ax.plot(x, 100 * series["train_accuracy"], "o-", **marker, label="training")
    acc_ax.plot(x, 100 * series["val_accuracy"], "s-", **marker, label="validation")
    acc_ax.set(title="Accuracy", xlabel=xlabel, ylabel="accuracy (% of images)")
    chosen = (model.meta.get("metrics") or {}).get("chosen_epoch")
    select = (model.meta.get("config") or {}).get("select_best", True)
    for ax in (loss_ax, acc_ax):
        if chosen is not None and select and len(epochs) > 1 and not by_step:
            ax.axvline(chosen, color="grey", ls="--", lw=1, label=f"kept (epoch {chosen})")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
    return fig


def confusion_figure(confusion: np.ndarray, class_names: Sequence[str]) -> Figure:
    """Heat map of a confusion matrix (rows true, columns predicted), counts written in."""
    confusion = np.asarray(confusion)
    n = len(confusion)
    totals = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    fig = _new_figure(7.5, 6.5)
    ax = fig.subplots()
    image = ax.imshow(share, cmap=SEQUENTIAL, vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class", shrink=0.8)
    names = [name[:8] for name in class_names]
    ax.set_xticks(range(n), names, rotation=45 if max(map(len, names)) > 2 else 0)
    ax.set_yticks(range(n), names)
    ax.set(xlabel="predicted", ylabel="true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    return fig


def hidden_units_figure(model: Model, max_units: int = 20, columns: int = 5) -> Figure:
    """Each hidden unit's incoming weights as a 28x28 image, its outgoing weights as bars.

    The images share one diverging colour scale centred at 0 (symmetric limits), so units can
    be compared. Outgoing bars are drawn when the next layer is the output (one hidden layer).
    Only the first ``max_units`` units are drawn.
    """
    W1 = model.params.W[0]
    if W1.shape[0] != 784:
        raise ValueError(f"expected 784 inputs, the model has {W1.shape[0]}")
    n_units = W1.shape[1]
    shown = min(n_units, max_units)
    columns = min(columns, shown)
    rows = -(-shown // columns)
    outgoing = model.params.W[1] if len(model.params.W) == 2 else None
    limit = float(np.abs(W1[:, :shown]).max()) or 1.0
    fig = _new_figure(2.1 * columns + 0.8, 3.0 * rows + 0.4)
    heights = [3, 1.3] * rows if outgoing is not None else [3] * rows
    grid = fig.add_gridspec(len(heights), columns, height_ratios=heights)
    step = 2 if outgoing is not None else 1
    bar_limit = float(np.abs(outgoing[:shown]).max()) * 1.1 if outgoing is not None else 1.0
    image = None
    for unit in range(shown):
        row, col = divmod(unit, columns)
        ax = fig.add_subplot(grid[row * step, col])
        image = ax.imshow(W1[:, unit].reshape(28, 28), cmap=DIVERGING, vmin=-limit, vmax=limit)
        ax.set_title(f"unit {unit}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if outgoing is not None:
            bars = fig.add_subplot(grid[row * step + 1, col])
            votes = outgoing[unit]
            bars.bar(range(len(votes)), votes, width=0.8,
                     color=[POSITIVE_COLOUR if v >= 0 else NEGATIVE_COLOUR for v in votes])
            bars.axhline(0, color="black", lw=0.6)
            bars.set_ylim(-bar_limit, bar_limit)
            bars.set_xticks(range(len(votes)), [str(k) for k in range(len(votes))],
                            fontsize=7)
            bars.tick_params(axis="y", labelsize=6)
            if col == 0:
                bars.set_ylabel("W2 (vote)", fontsize=7)
            bars.set_xlabel("class", fontsize=7, labelpad=1)
    if image is not None:
        fig.colorbar(image, ax=fig.axes, shrink=0.5, label="incoming weight W1 (per pixel)",
                     pad=0.01)
    title = "Hidden units: incoming weights (images) and outgoing weights to each class (bars)"
    if shown < n_units:
        title += f"; the first {shown} of {n_units} units"
    fig.suptitle(title, fontsize=10)
    return fig


def class_activations_figure(model: Model, images: np.ndarray, labels: np.ndarray) -> Figure:
    """Mean hidden activation A1 of each unit over each class's images: a classes x h heat map."""
    n_classes = model.sizes[-1]
    images, labels = _as_images(images, labels, n_classes)
    hidden = _hidden(model, images)
    means = np.zeros((n_classes, hidden.shape[1]))
    for k in range(n_classes):
        if np.any(labels == k):
            means[k] = hidden[labels == k].mean(axis=0)
    h = hidden.shape[1]
    fig = _new_figure(min(2.5 + 0.55 * h, 20), 5.2)
    ax = fig.subplots()
    picture = ax.imshow(means, cmap="magma", aspect="auto", vmin=0)
    fig.colorbar(picture, ax=ax, label="mean activation A1 (no unit; 0 = silent)")
    ax.set_yticks(range(n_classes), [name[:10] for name in model.class_names])
    ax.set(xlabel="hidden unit j", ylabel="true class")
    if h <= 40:
        ax.set_xticks(range(h))
    if h <= 20:
        top = means.max() or 1.0
        for k in range(n_classes):
            for j in range(h):
                ax.text(j, k, f"{means[k, j]:.1f}", ha="center", va="center", fontsize=7,
                        color="black" if means[k, j] > 0.6 * top else "white")
    return fig


def mistakes_figure(model: Model, images: np.ndarray, labels: np.ndarray, count: int = 20,
                    columns: int = 5) -> Figure:
    """The ``count`` wrongly classified images with the highest probability on their answer."""
    images, labels = _as_images(images, labels, model.sizes[-1])
    probabilities = model.predict_proba(images)
    predicted = np.argmax(probabilities, axis=1)
    confidence = probabilities[np.arange(len(labels)), predicted]
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
    if not len(worst):
        fig = _new_figure(6, 2)
        fig.text(0.5, 0.5, "no mistakes on these images", ha="center", va="center")
        return fig
    columns = min(columns, len(worst))
    rows = -(-len(worst) // columns)
    fig = _new_figure(1.9 * columns, 2.2 * rows)
    names = model.class_names
    for position, index in enumerate(worst):
        ax = fig.add_subplot(rows, columns, position + 1)
        ax.imshow(images[index], cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(f"true {names[labels[index]][:8]} → {names[predicted[index]][:8]}\n"
                     f"{confidence[index]:.1%}  (#{index})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def _hidden(model: Model, images: np.ndarray, batch_size: int = 10_000) -> np.ndarray:
    parts = [model.hidden(images[start:start + batch_size])
             for start in range(0, len(images), batch_size)]
    return np.concatenate(parts).astype(np.float64)


# -- the report -------------------------------------------------------------------------------


def evaluate(model: Model, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Accuracy, per-class figures and confusion matrix of the model on labelled images."""
    images, labels = _as_images(images, labels, model.sizes[-1])
    return metrics.evaluate(labels, model.predict(images), model.sizes[-1])


def build_figures(model: Model, images: np.ndarray, labels: np.ndarray,
                  evaluation: dict[str, Any] | None = None) -> dict[str, Figure]:
    """Every figure of the report, keyed by its file name (see :data:`FIGURES`)."""
    evaluation = evaluation or evaluate(model, images, labels)
    return {
        "training_curves.png": training_curves_figure(model),
        "learning_rate.png": report_lessons.learning_rate_figure(model),
        "weights_over_training.png": report_lessons.weights_over_training_figure(model),
        "confusion_matrix.png": confusion_figure(np.asarray(evaluation["confusion_matrix"]),
                                                 model.class_names),
        "hidden_units.png": hidden_units_figure(model),
        "class_activations.png": class_activations_figure(model, images, labels),
        "confident_mistakes.png": mistakes_figure(model, images, labels),
    }


def write_report(model: Model, images: np.ndarray, labels: np.ndarray,
                 out_dir: str | Path = "report", source: str = "test images",
                 extra: dict[str, bytes] | None = None) -> list[Path]:
    """Write each figure as a PNG and ``index.html`` into ``out_dir``, atomically.

    Parameters
    ----------
    images : ndarray, shape (n, 28, 28) or (n, 784)
        Labelled images to evaluate the model on (usually the test split).
    labels : ndarray, shape (n,)
    source
        What the images are, for the page (e.g. ``"mnist test"``).
    extra
        More PNGs to copy and show after the report's own, by file name (e.g. a sweep's
        ``sweep.png``).

    Returns
    -------
    list of Path
        The files written, the PNGs first and ``index.html`` last.
    """
    out_dir = Path(out_dir)
    evaluation = evaluate(model, images, labels)
    pngs = {name: figure_png(fig)
            for name, fig in build_figures(model, images, labels, evaluation).items()}
    pngs.update(extra or {})
    written = []
    for name, data in pngs.items():
        atomic_write_bytes(out_dir / name, data)
        written.append(out_dir / name)
    page = render_html(model, evaluation, pngs, source)
    atomic_write_bytes(out_dir / "index.html", page.encode("utf-8"))
    written.append(out_dir / "index.html")
    return written


def render_html(model: Model, evaluation: dict[str, Any], pngs: dict[str, bytes],
                source: str) -> str:
    """The report page: metadata, metrics and the figures embedded as base64 data URIs."""
    sizes = "-".join(map(str, model.sizes))
    meta = model.meta
    figures = "\n".join(_figure_html(name, data) for name, data in pngs.items())
    return _PAGE.format(
        title=_e(f"digitnet report: {sizes} network"),
        sizes=_e(sizes),
        source=_e(source),
        accuracy=f"{evaluation['accuracy']:.2%}",
        n=f"{evaluation['n']:,}",
        summary=_summary_html(model),
        per_class=_per_class_html(model.class_names, evaluation["per_class"]),
        figures=figures,
        config=_table_html(meta.get("config") or {}),
        metadata=_metadata_html(model),
        hashes=_hashes_html(model),
        css=_CSS,
        version=_e(__version__),
    )


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


# Figures other commands make, which the report shows when it is given them.
OTHER_FIGURES: dict[str, tuple[str, str]] = {
    "sweep.png": (
        "Accuracy against the size of the hidden layer",
        "Test accuracy (solid, mean ± sd over seeds) and train accuracy (dashed) of networks "
        "trained by digitnet sweep, against hidden units per layer, one colour per depth.",
    ),
}


def _figure_html(name: str, data: bytes) -> str:
    title, caption = FIGURES.get(name) or OTHER_FIGURES.get(name, (name, ""))
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    anchor = name.removesuffix(".png").replace("_", "-")
    return (f'<section id="{_e(anchor)}"><h2>{_e(title)}</h2>\n'
            f'<figure><img src="{uri}" alt="{_e(title)}">'
            f"<figcaption>{_e(caption)} <code>{_e(name)}</code></figcaption></figure></section>")


def _format(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if 0 < abs(value) <= 1 and value != round(value, 4):
            return f"{value:.4g}"
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _table_html(values: dict[str, Any]) -> str:
    if not values:
        return "<p>not recorded</p>"
    rows = "".join(f"<tr><th>{_e(key)}</th><td>{_e(_format(value))}</td></tr>"
                   for key, value in values.items())
    return f'<table class="kv">{rows}</table>'


def _summary_html(model: Model) -> str:
    recorded = model.meta.get("metrics") or {}
    cells = []
    for key, label in (("train_accuracy", "accuracy on training images"),
                       ("dev_accuracy", "accuracy on validation images"),
                       ("test_accuracy", "accuracy on test images")):
        value = recorded.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            cells.append(f"<tr><th>{label}</th><td>{value:.2%}</td></tr>")
    for key, label, style in (("epochs", "epochs", ","), ("iterations", "gradient steps", ","),
                              ("chosen_epoch", "epoch kept", ","),
                              ("train_seconds", "training seconds", ".2f")):
        value = recorded.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            cells.append(f"<tr><th>{label}</th><td>{value:{style}}</td></tr>")
    return f'<table class="kv">{"".join(cells)}</table>' if cells else "<p>not recorded</p>"


def _per_class_html(names: Sequence[str], rows: Sequence[dict[str, float]]) -> str:
    body = "".join(
        f"<tr><td>{_e(name)}</td><td>{row['precision']:.3f}</td><td>{row['recall']:.3f}</td>"
        f"<td>{row['f1']:.3f}</td><td>{row['support']:,}</td></tr>"
        for name, row in zip(names, rows, strict=True))
    return ('<table class="grid"><thead><tr><th>class</th><th>precision</th><th>recall</th>'
            f"<th>F1</th><th>support</th></tr></thead><tbody>{body}</tbody></table>")


def _metadata_html(model: Model) -> str:
    meta = model.meta
    architecture = meta.get("architecture") or {}
    pre = model.preprocessing
    n_parameters = sum(w.size + b.size for w, b in zip(model.params.W, model.params.b,
                                                       strict=True))
    values: dict[str, Any] = {
        "layer sizes": " → ".join(map(str, model.sizes)),
        "activations": f"{architecture.get('hidden_activation', 'relu')} hidden, "
                       f"{architecture.get('output_activation', 'softmax')} output",
        "parameters": f"{n_parameters:,}",
        "dtype": str(model.params.dtype),
        "preset": meta.get("preset", "not recorded"),
        "preprocessing": f"x = (pixels × {pre.scale:.6g} − {pre.mean:.6g}) / {pre.std:.6g}",
        "class names": ", ".join(model.class_names),
        "made by digitnet": meta.get("digitnet_version", "not recorded"),
    }
    return _table_html(values)


def _hashes_html(model: Model) -> str:
    """The weights' and the training data's SHA-256, so the model can be traced."""
    rows = [("weights", "", model.meta.get("weights_sha256", "not recorded"))]
    data = model.meta.get("datasets") or {}
    for split in ("train", "test"):
        files = data.get(split) or {}
        for stem, digest in (files.get("sha256") or {}).items():
            rows.append((f"{data.get('name', '')} {split}", stem, digest))
    body = "".join(f"<tr><th>{_e(what)}</th><td>{_e(stem)}</td><td><code>{_e(digest)}</code>"
                   "</td></tr>" for what, stem, digest in rows)
    return f'<table class="kv hashes">{body}</table>'


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p class="headline"><span class="big">{accuracy}</span> accuracy on {n} {source} images</p>
</header>
<main>
<section id="metrics"><h2>Metrics</h2>
<div class="columns">
<div><h3>Per class on {source}</h3>{per_class}</div>
<div><h3>Recorded when it was trained</h3>{summary}</div>
</div>
</section>
{figures}
<section id="model"><h2>The model</h2>
<div class="columns">
<div><h3>Architecture</h3>{metadata}</div>
<div><h3>Training config</h3>{config}</div>
</div>
<h3>SHA-256 of the weights and of the data it was trained on</h3>
{hashes}
</section>
</main>
<footer>Written by digitnet {version}. This page is self-contained: the figures are embedded.
</footer>
</body>
</html>
"""

_CSS = """
:root { --ink: #1d2330; --muted: #5b6478; --line: #dde2ea; --accent: #2166ac; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--ink); background: #f5f7fa; }
header { background: var(--ink); color: white; padding: 1.5rem 2rem; }
header h1 { margin: 0 0 .3rem; font-size: 1.5rem; font-weight: 600; }
.headline { margin: 0; color: #c8d0de; }
.big { font-size: 1.8rem; font-weight: 700; color: white; margin-right: .3rem; }
main { max-width: 1150px; margin: 0 auto; padding: 1rem 2rem 2rem; }
section { background: white; border: 1px solid var(--line); border-radius: 8px;
          padding: 1rem 1.5rem; margin: 1.2rem 0; }
h2 { margin: 0 0 .6rem; font-size: 1.2rem; }
h3 { margin: .2rem 0 .5rem; font-size: 1rem; color: var(--muted); font-weight: 600; }
.columns { display: flex; flex-wrap: wrap; gap: 2rem; }
.columns > div { flex: 1 1 320px; min-width: 0; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { padding: .25rem .7rem; border-bottom: 1px solid var(--line); text-align: left; }
table.grid td, table.grid th { text-align: right; font-variant-numeric: tabular-nums; }
table.grid td:first-child, table.grid th:first-child { text-align: left; font-weight: 600; }
table.kv th { color: var(--muted); font-weight: 500; white-space: nowrap; vertical-align: top; }
table.kv td { overflow-wrap: anywhere; font-variant-numeric: tabular-nums; }
table.hashes code { color: var(--ink); font-size: .82rem; }
h3 + table.hashes, .columns + h3 { margin-top: 1rem; }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: var(--muted); font-size: .9rem; margin-top: .5rem; }
code { font-size: .85em; color: var(--muted); }
footer { text-align: center; color: var(--muted); font-size: .85rem; padding: 0 0 2rem; }
"""
