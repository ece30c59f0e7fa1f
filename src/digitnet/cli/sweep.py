"""``digitnet sweep``: the grid of hidden-layer sizes, or a search for one network, on Optuna.

Registered on the ``digitnet`` app by :mod:`digitnet.cli`; the errors it raises on purpose
(DigitnetError) are printed there as one line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from digitnet.errors import ConfigError

console = Console()
err_console = Console(stderr=True)


def _pm(mean: float, sd: float) -> str:
    return "-" if mean != mean else f"{100 * mean:.2f} ± {100 * sd:.2f}"


def _grid_table(summary: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    for column in ("hidden", "layers", "params", "seeds", "train %", "val %",
                   "test %", "seconds"):
        table.add_column(column, justify="right")
    for r in summary["rows"]:
        table.add_row(str(r["hidden"]), str(r["layers"]), f"{r['parameters']:,}",
                      str(r["seeds"]), _pm(r["train_mean"], r["train_sd"]),
                      _pm(r["val_mean"], r["val_sd"]), _pm(r["test_mean"], r["test_sd"]),
                      "-" if r["seconds"] != r["seconds"] else f"{r['seconds']:.1f}")
    return table


def _print_json(obj: Any) -> None:
    from digitnet.modelfile import json_safe

    sys.stdout.write(json.dumps(json_safe(obj), allow_nan=False) + "\n")


def _one(values: tuple[int, ...], option: str) -> int:
    if len(values) != 1:
        raise ConfigError(f"{option}: a search is for one architecture; give one value, "
                          f"e.g. {option} {values[0]}")
    return values[0]


def sweep(
    hidden: Annotated[str | None, typer.Option(
        help="Hidden units per layer, a comma-separated list (default 1,2,4,8,10,16,32,64,128,"
        "256; with --search one value, default 10).")] = None,
    layers: Annotated[str | None, typer.Option(
        help="Hidden layers, a comma-separated list (default 1,2; with --search one value, "
        "default 1).")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per grid point (0 .. N-1).")] = 3,
    preset: Annotated[str, typer.Option(help="Training preset the options start "
                                        "from.")] = "default",
    epochs: Annotated[int | None, typer.Option(help="Fix the passes over the training "
                                               "set.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Fix the batch size.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="Fix the optimizer.")] = None,
    lr: Annotated[float | None, typer.Option(help="Fix the learning rate.")] = None,
    schedule: Annotated[str | None, typer.Option(help="Fix the schedule.")] = None,
    l2: Annotated[float | None, typer.Option(help="Fix the L2 penalty.")] = None,
    val_size: Annotated[int | None, typer.Option(help="Training images held out for "
                                                 "validation.")] = None,
    augment: Annotated[float | None, typer.Option(help="Fix the augmentation "
                                                  "strength.")] = None,
    dataset: Annotated[str | None, typer.Option(help="mnist or fashion-mnist.")] = None,
    search: Annotated[bool, typer.Option("--search", help="TPE search over lr, batch size, "
                                         "L2, schedule and epochs (those not fixed) for one "
                                         "architecture, pruned on validation accuracy.")] = False,
    trials: Annotated[int | None, typer.Option(help="With --search: trials in the study, "
                                               "all workers together.")] = None,
    timeout: Annotated[float | None, typer.Option(help="With --search: seconds after which "
                                                  "a worker starts no new trial.")] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: digitnet-grid or "
                                              "digitnet-search).")] = None,
    storage: Annotated[str | None, typer.Option(
        help="postgresql://USER:PASSWORD@HOST/DB to share the study between machines "
        "(default: a journal file in --out).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes on this machine, each "
                                         "single-threaded.")] = 1,
    out: Annotated[Path, typer.Option(help="Folder for the journal, sweep.json and "
                                      "sweep.png.")] = Path("sweep"),
    heartbeat: Annotated[float, typer.Option(help="Seconds between a trial's heartbeats; "
                                             "one silent for 3 is retried.")] = 10.0,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="Folder whose <name>/ sub-folder holds the IDX files.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on "
                                          "stdout.")] = False,
) -> None:
    """Train a grid of hidden-layer widths and depths (or --search one network) on Optuna.

    Any number of workers, here or on other machines (--storage postgresql://...), share the
    study; running the same command again resumes it, retrying trials whose worker died.
    """
    from digitnet import sweep as sw
    from digitnet import sweepresults
    from digitnet.sweepstore import open_storage

    fixed = {k: v for k, v in dict(epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                                   lr=lr, schedule=schedule, l2=l2, val_size=val_size,
                                   augment=augment, dataset=dataset).items() if v is not None}
    if not 1 <= workers <= 256:
        raise ConfigError(f"--workers {workers} is out of range; it must be between 1 and 256")
    if hidden is None:
        hidden = "10" if search else ",".join(map(str, sw.DEFAULT_HIDDEN))
    if layers is None:
        layers = "1" if search else ",".join(map(str, sw.DEFAULT_LAYERS))
    hidden_values = sw.parse_int_list(hidden, "--hidden")
    layer_values = sw.parse_int_list(layers, "--layers", high=8)
    plan: sw.Grid | sw.Search
    if search:
        if trials is None and timeout is None:
            raise ConfigError("--search needs --trials N or --timeout SECONDS (or both)")
        if (trials is not None and trials < 1) or (timeout is not None and not timeout > 0):
            raise ConfigError("--trials must be at least 1 and --timeout above 0")
        plan = sw.Search(_one(hidden_values, "--hidden"), _one(layer_values, "--layers"),
                         trials, timeout)
    else:
        if trials is not None or timeout is not None:
            raise ConfigError("--trials and --timeout go with --search; a grid runs every "
                              "point")
        if not 1 <= seeds <= 100:
            raise ConfigError(f"--seeds {seeds} is out of range; it must be between 1 and 100")
        plan = sw.Grid(hidden_values, layer_values, seeds)
    settings = sw.SweepSettings(
        study=study or ("digitnet-search" if search else "digitnet-grid"),
        storage=open_storage(storage, out), plan=plan, preset=preset, fixed=fixed,
        data_dir=data_dir, heartbeat=heartbeat)
    handle = sw.prepare(settings)
    if not as_json:
        what = (f"{plan.size} grid points" if isinstance(plan, sw.Grid)
                else f"a search for hidden {plan.hidden} x {plan.layers} layer(s)")
        err_console.print(Text(f"sweep: {what}, {workers} worker(s), study {settings.study!r} "
                               f"in {settings.storage.shown}"), soft_wrap=True)
    started = time.perf_counter()
    sw.run_workers(settings, workers)
    wall = time.perf_counter() - started
    if isinstance(plan, sw.Search):
        _show_search(sweepresults.best_of_search(handle, settings), settings, wall, as_json)
        return
    summary = sweepresults.summarize(handle, plan)
    summary.update(study=settings.study, storage=settings.storage.shown, workers=workers,
                   wall_seconds=wall, preset=preset, fixed=fixed)
    _write_results(summary, out, sweepresults)
    if as_json:
        _print_json(summary)
        return
    title = (f"{preset} preset{', ' if fixed else ''}"
             f"{', '.join(f'{k}={v}' for k, v in fixed.items())}: accuracy mean ± sd over seeds")
    console.print(_grid_table(summary, title))
    for failure in summary["failed"]:
        err_console.print(Text(f"failed: hidden {failure.get('hidden')} layers "
                               f"{failure.get('layers')} seed {failure.get('seed')}: "
                               f"{failure['error']}"), soft_wrap=True)
    console.print(Text(f"{summary['complete']} of {summary['points']} points done in "
                       f"{wall:.0f} s; wrote {out / 'sweep.json'} and {out / 'sweep.png'}"),
                  soft_wrap=True)


def _write_results(summary: dict[str, Any], out: Path, sw: Any) -> None:
    from digitnet._atomic import atomic_write_bytes
    from digitnet.modelfile import json_safe

    try:
        atomic_write_bytes(out / "sweep.json", (json.dumps(json_safe(summary), indent=1,
                                                            allow_nan=False) + "\n").encode())
        sw.write_figure(summary["rows"], out / "sweep.png")
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write the results "
                          f"({exc.strerror or exc})") from None


def _show_search(result: dict[str, Any], settings: Any, wall: float, as_json: bool) -> None:
    result.update(study=settings.study, storage=settings.storage.shown, wall_seconds=wall)
    if as_json:
        _print_json(result)
        return
    counts = result["trials"]
    console.print(Text(f"{counts['complete']} complete, {counts['pruned']} pruned, "
                       f"{counts['fail']} failed trials in {wall:.0f} s"))
    best = result["best"]
    if best is None:
        console.print("no trial completed yet; run the same command again to go on")
        return
    console.print(Text(f"best validation accuracy {best['val_accuracy']:.2%} (trial "
                       f"{best['trial']}); train it with:"))
    console.print(Text(best["command"], style="bold"), soft_wrap=True)
