"""The report's figures about how the network was trained: the learning-rate schedule and the
hidden units' weights as training went on.

Both read only the model: its saved training config and metrics, and the W1 snapshots that
``digitnet train`` keeps (:mod:`digitnet.snapshots`). Like :mod:`digitnet.report`, each
returns a matplotlib Figure drawn with the Agg backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from digitnet import snapshots
from digitnet.model import Model
from digitnet.optim import SCHEDULES, Schedule

__all__ = ["FIGURES", "learning_rate_figure", "weights_over_training_figure", "full_batch"]

FIGURES: dict[str, tuple[str, str]] = {
    "learning_rate.png": (
        "Learning-rate schedule",
        "The step size α the optimizer used at each gradient step. One-cycle warms up from "
        "α/25 to its peak over the first 30 % of the steps (large early steps are unstable "
        "while the weights are random), then follows a cosine down to α/10,000 so the last "
        "steps settle into a minimum instead of bouncing around it. Cosine starts at the peak; "
        "constant (the seed) never changes. The dashed line marks where the kept weights "
        "were taken.",
    ),
    "weights_over_training.png": (
        "The hidden units' weights as training went on",
        "Each row is W1 at one point of the run, each column one hidden unit's 784 incoming "
        "weights drawn as a 28x28 image (blue raises the unit's activation where there is ink, "
        "red lowers it; each row on its own scale, shown by its colour bar). At step 0 the "
        "weights are the random initialisation, noise with no shape. Look for strokes and "
        "blobs appearing within the first few percent of the steps and then only sharpening: "
        "most of what a unit detects is decided early. The last row is what training added "
        "to the start (end minus start): where the start is large next to that change, as "
        "with the seed's uniform [-0.5, 0.5) weights and 500 small steps, the tiles above "
        "stay noisy and only this row shows the learned strokes. A blank tile in that row is "
        "a unit that never fired on any training image (a dead ReLU): it got no gradient, so "
        "it never learned.",
    ),
}

DIVERGING = "RdBu"


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def full_batch(model: Model) -> bool:
    """Whether the model was trained with all training images in each step (batch size 0)."""
    return (model.meta.get("config") or {}).get("batch_size") == 0


def _no_data(fig: Figure, message: str) -> Figure:
    fig.text(0.5, 0.5, message, ha="center", va="center")
    return fig


def _steps_per_epoch(metrics: dict[str, Any]) -> float | None:
    steps, epochs = metrics.get("iterations"), metrics.get("epochs")
    if isinstance(steps, (int, float)) and isinstance(epochs, (int, float)) and epochs > 0:
        return steps / epochs
    return None


def learning_rate_figure(model: Model) -> Figure:
    """α at every step of the run, from the saved config (schedule, peak rate, step count)."""
    config = model.meta.get("config") or {}
    metrics = model.meta.get("metrics") or {}
    fig = _new_figure(10, 3.4)
    total = metrics.get("iterations")
    kind, peak = config.get("schedule"), config.get("lr")
    if kind not in SCHEDULES or not isinstance(peak, (int, float)) or not isinstance(total, int) \
            or total < 1:
        return _no_data(fig, "this model does not record its schedule, rate and step count")
    schedule = Schedule(kind, float(peak), total)
    steps = np.unique(np.linspace(0, total - 1, min(total, 2000)).astype(int))
    rates = np.array([schedule(int(t)) for t in steps])
    ax = fig.subplots()
    ax.plot(steps + 1, rates, color="#2166ac", lw=1.8)
    optimizer = config.get("optimizer", "?")
    peak_name = "α" if kind == "constant" else "peak α"
    ax.set(title=f"{kind} schedule, {peak_name} = {peak:g}, {optimizer} optimizer, {total:,} steps",
           xlabel="gradient step", ylabel="learning rate α (step size)",
           ylim=(0, float(rates.max()) * 1.08), xlim=(0, total + 1))
    per_epoch = _steps_per_epoch(metrics)
    if per_epoch and not full_batch(model):
        def to_epochs(steps: Any) -> Any:
            return np.asarray(steps) / per_epoch

        def to_steps(epochs: Any) -> Any:
            return np.asarray(epochs) * per_epoch

        top = ax.secondary_xaxis("top", functions=(to_epochs, to_steps))
        top.set_xlabel("epoch")
        chosen = metrics.get("chosen_epoch")
        if isinstance(chosen, int) and config.get("select_best"):
            ax.axvline(chosen * per_epoch, color="grey", ls="--", lw=1,
                       label=f"weights kept (end of epoch {chosen})")
            ax.legend(frameon=False, loc="upper right")
    ax.grid(alpha=0.3)
    return fig


def _row_label(snap: snapshots.Snapshot, total: int, full: bool) -> str:
    where = "start" if snap.step == 0 else "end" if snap.step >= total else \
        f"{100 * snap.step / max(total, 1):.0f} %"
    epoch = "" if full or snap.step == 0 else f", epoch {snap.epoch}"
    return f"step {snap.step:,}{epoch}\n({where})"


def weights_over_training_figure(model: Model, max_units: int = 10) -> Figure:
    """W1 at each snapshot: a row per snapshot, a 28x28 tile per unit, a colour bar per row."""
    kept = snapshots.from_meta(model.meta)
    if not kept or kept[0].W1.shape[0] != 784:
        return _no_data(_new_figure(8, 1.5), "this model records no weights during training "
                        "(models trained with `digitnet train` do)")
    total = int((model.meta.get("snapshots") or {}).get("total_steps") or kept[-1].step)
    units = min(max_units, kept[0].W1.shape[1])
    rows: list[tuple[str, np.ndarray]] = [(_row_label(s, total, full_batch(model)), s.W1)
                                          for s in kept]
    if len(kept) > 1 and kept[0].step == 0:  # what training added to the random start
        rows.append((f"change,\nstep 0 to {kept[-1].step:,}", kept[-1].W1 - kept[0].W1))
    fig = _new_figure(1.45 * units + 2.4, 1.55 * len(rows) + 0.6)
    grid = fig.subplots(len(rows), units, squeeze=False)
    for row, (label, W1) in enumerate(rows):
        limit = float(np.abs(W1[:, :units]).max()) or 1.0
        images = []
        for unit in range(units):
            ax = grid[row, unit]
            images.append(ax.imshow(W1[:, unit].reshape(28, 28), cmap=DIVERGING,
                                    vmin=-limit, vmax=limit))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"unit {unit}", fontsize=9)
            if unit == 0:
                ax.set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
        bar = fig.colorbar(images[-1], ax=list(grid[row]), shrink=0.9, pad=0.01, aspect=8)
        bar.set_label("W1" if row < len(kept) else "ΔW1", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    more = f" (the first {units} units)" if units < kept[0].W1.shape[1] else ""
    fig.suptitle(f"Incoming weights W1 of each hidden unit{more}, 28x28 pixels per tile, "
                 "from the random start to the end of training", fontsize=10)
    return fig
