"""A sweep's results: the grid's table (mean and sd over seeds), the figure, the best search
trial as a ``digitnet train`` command line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from digitnet.sweep import Grid, Search, SweepSettings, grid_id, parameter_count

__all__ = ["summarize", "best_of_search", "train_command", "sweep_figure", "write_figure"]


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), sd


def summarize(study: Any, grid: Grid) -> dict[str, Any]:
    """The grid's results: one row per (hidden, layers), mean and sd over the seeds done."""
    from optuna.trial import TrialState

    done: dict[tuple[int, int], list[Any]] = {}
    failed: list[dict[str, Any]] = []
    for trial in study.get_trials(deepcopy=False):
        gid = grid_id(trial)
        if gid is None or not 0 <= gid < grid.size:
            continue
        if trial.state == TrialState.COMPLETE:
            key = (trial.params["hidden"], trial.params["layers"])
            done.setdefault(key, []).append(trial)
        elif trial.state == TrialState.FAIL and "error" in trial.user_attrs:
            failed.append({**trial.params, "error": trial.user_attrs["error"]})
    rows = []
    for layers in grid.layers:
        for hidden in grid.hidden:
            trials = done.get((hidden, layers), [])
            row: dict[str, Any] = {"hidden": hidden, "layers": layers,
                                   "parameters": parameter_count(hidden, layers),
                                   "seeds": len(trials)}
            for name, attr in (("train", "train_accuracy"), ("val", None),
                               ("test", "test_accuracy")):
                values = [t.value if attr is None else t.user_attrs[attr] for t in trials]
                row[f"{name}_mean"], row[f"{name}_sd"] = _mean_sd(values)
            row["seconds"] = _mean_sd([t.user_attrs["seconds"] for t in trials])[0]
            rows.append(row)
    complete = sum(len(v) for v in done.values())
    return {"points": grid.size, "complete": complete, "failed": failed, "rows": rows}


def best_of_search(study: Any, settings: SweepSettings) -> dict[str, Any]:
    """The search's best trial, its settings and the ``digitnet train`` line that repeats it."""
    from optuna.trial import TrialState

    search = settings.plan
    assert isinstance(search, Search)
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials)
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    result: dict[str, Any] = {"trials": counts, "best": None}
    if complete:
        best = max(complete, key=lambda t: (t.value, -t.number))
        options = {"hidden": search.hidden, "layers": search.layers, **settings.fixed,
                   **best.params}
        result["best"] = {"trial": best.number, "val_accuracy": best.value,
                          "options": options,
                          "command": train_command(settings.preset, options)}
    return result


def train_command(preset: str, options: dict[str, Any]) -> str:
    """``digitnet train --preset P --hidden 10 ...`` for a set of training options."""
    words = ["digitnet", "train", "--preset", preset]
    for name, value in options.items():
        shown = repr(value) if isinstance(value, float) else str(value)  # exact: same run
        words += [f"--{name.replace('_', '-')}", shown]
    return " ".join(words)


def sweep_figure(rows: Sequence[dict[str, Any]]) -> Any:
    """Test accuracy against hidden units (log axis), a line per depth with ± sd error bars;
    train accuracy dashed in the same colour, so under- and overfitting show. The right panel
    repeats the left from 90 % up, where the wide networks differ."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    widths = sorted({r["hidden"] for r in rows if r["seeds"]})
    for ax, low in zip(axes, (None, 90.0), strict=True):
        for k, layers in enumerate(sorted({r["layers"] for r in rows})):
            _depth_lines(ax, [r for r in rows if r["layers"] == layers and r["seeds"]],
                         layers, f"C{k}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.minorticks_off()
        ax.set_xlabel("hidden units per layer")
        ax.set_ylabel("accuracy (%)")
        ax.grid(True, alpha=0.3)
        if low is not None:
            ax.set_ylim(low, 100)
            ax.set_title("the same, from 90 %")
        else:
            ax.set_title("MNIST accuracy (mean ± sd over seeds)")
            ax.legend(loc="lower right")
    return fig


def _depth_lines(ax: Any, rows: Sequence[dict[str, Any]], layers: int, colour: str) -> None:
    if not rows:
        return
    name = f"{layers} hidden layer{'s' if layers > 1 else ''}"
    hidden = [r["hidden"] for r in rows]
    ax.errorbar(hidden, [100 * r["test_mean"] for r in rows],
                yerr=[100 * r["test_sd"] for r in rows], color=colour, marker="o", capsize=3,
                label=f"{name}: test")
    ax.plot(hidden, [100 * r["train_mean"] for r in rows], color=colour, linestyle="--",
            marker=".", label=f"{name}: train")


def write_figure(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write :func:`sweep_figure` as a PNG, atomically."""
    from digitnet._atomic import atomic_write_bytes
    from digitnet.report import figure_png

    atomic_write_bytes(path, figure_png(sweep_figure(rows)))
    return path
