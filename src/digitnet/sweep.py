"""Sweeps on Optuna: how accuracy depends on the hidden layer, and a search for one network.

A grid sweep trains every (hidden units, hidden layers, seed) point once through Optuna's
``GridSampler``; each trial is one digitnet training whose per-epoch validation accuracy is
reported to Optuna. The study lives in a storage (:mod:`digitnet.sweepstore`) shared by any
number of worker processes, on one machine or many; running the sweep again resumes it.

A worker killed mid-trial stops writing its heartbeat (a user attribute refreshed every
``heartbeat`` seconds). Any worker that finds a running trial silent for ``GRACE`` heartbeats
marks it failed, and Optuna's ``RetryHeartbeatStaleTrialCallback`` queues the same grid point
again. Heartbeats compare wall clocks, so machines sharing a database need synchronised clocks.

Every point is trained once: trial numbers below the grid's size each get their own point, and
a trial that finds its point already taken by another (two workers racing at the end of the
grid) ends at once as a failed "surplus" trial, without training.
"""

from __future__ import annotations

import functools
import math
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digitnet.errors import ConfigError, DigitnetError
from digitnet.sweepstore import Storage, SweepError, open_study

__all__ = ["Grid", "Search", "SweepSettings", "parse_int_list", "prepare", "work",
           "run_workers", "parameter_count", "grid_id", "DEFAULT_HIDDEN", "DEFAULT_LAYERS",
           "DEFAULT_SEEDS"]

DEFAULT_HIDDEN = (1, 2, 4, 8, 10, 16, 32, 64, 128, 256)
DEFAULT_LAYERS = (1, 2)
DEFAULT_SEEDS = 3
GRACE = 3          # heartbeats a running trial may miss before it is presumed dead
MAX_RETRIES = 3    # times one grid point is retried after its worker died

# What a search tries, unless the option is fixed on the command line.
SEARCHED = ("lr", "batch_size", "l2", "schedule", "epochs")


def parse_int_list(text: str, option: str, low: int = 1, high: int = 4096) -> tuple[int, ...]:
    """'1,2,4' as (1, 2, 4): whole numbers in [low, high], no repeats; ConfigError otherwise."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ConfigError(f"{option} {text!r}: give a comma-separated list of whole numbers, "
                          f"e.g. {option} 8,16,32")
    values = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise ConfigError(f"{option} {text!r}: {part!r} is not a whole number; give e.g. "
                              f"{option} 8,16,32") from None
        if not low <= value <= high:
            raise ConfigError(f"{option} {text!r}: {value} is out of range; each must be "
                              f"between {low} and {high}")
        values.append(value)
    if len(set(values)) != len(values):
        raise ConfigError(f"{option} {text!r}: lists a value twice")
    return tuple(values)


@dataclass(frozen=True)
class Grid:
    """Every combination of hidden units, hidden layers and seed (0 .. seeds-1)."""

    hidden: tuple[int, ...] = DEFAULT_HIDDEN
    layers: tuple[int, ...] = DEFAULT_LAYERS
    seeds: int = DEFAULT_SEEDS

    def space(self) -> dict[str, list[int]]:
        return {"hidden": list(self.hidden), "layers": list(self.layers),
                "seed": list(range(self.seeds))}

    @property
    def size(self) -> int:
        return len(self.hidden) * len(self.layers) * self.seeds


@dataclass(frozen=True)
class Search:
    """A TPE search over the training options for one architecture."""

    hidden: int = 10
    layers: int = 1
    trials: int | None = None      # trials in the study, all workers together
    timeout: float | None = None   # seconds after which a worker starts no new trial


@dataclass(frozen=True)
class SweepSettings:
    """What every worker needs; plain values, so it crosses to worker processes."""

    study: str
    storage: Storage
    plan: Grid | Search
    preset: str = "default"
    fixed: dict[str, Any] = field(default_factory=dict)  # training options given by the user
    data_dir: Path | None = None
    heartbeat: float = 10.0

    def spec(self) -> dict[str, Any]:
        """What the study is for; a study made for another spec is refused."""
        base = {"preset": self.preset, "fixed": dict(sorted(self.fixed.items()))}
        if isinstance(self.plan, Grid):
            return {"kind": "grid", "hidden": list(self.plan.hidden),
                    "layers": list(self.plan.layers), "seeds": self.plan.seeds, **base}
        return {"kind": "search", "hidden": self.plan.hidden, "layers": self.plan.layers,
                "searched": list(self.searched()), **base}

    def searched(self) -> tuple[str, ...]:
        return tuple(name for name in SEARCHED if name not in self.fixed)

    def config(self, **values: Any) -> Any:
        from digitnet.training import make_config

        return make_config(self.preset, **{**self.fixed, **values})


def parameter_count(hidden: int, layers: int, inputs: int = 784, classes: int = 10) -> int:
    """Weights and biases of a network with ``layers`` hidden layers of ``hidden`` units."""
    sizes = [inputs, *[hidden] * layers, classes]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


# -- opening ----------------------------------------------------------------------------------


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are read from the trials
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _sampler(settings: SweepSettings) -> Any:
    import optuna

    if isinstance(settings.plan, Grid):
        return optuna.samplers.GridSampler(settings.plan.space())
    return optuna.samplers.TPESampler(n_startup_trials=5)


def _pruner(settings: SweepSettings) -> Any:
    import optuna

    if isinstance(settings.plan, Grid):
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def prepare(settings: SweepSettings) -> Any:
    """Check the options and open (or join) the study; returns it. Raises DigitnetError."""
    _quiet_optuna()
    plan = settings.plan
    if isinstance(plan, Grid):
        settings.config(hidden=max(plan.hidden), layers=max(plan.layers), seed=plan.seeds - 1)
    else:
        settings.config(hidden=plan.hidden, layers=plan.layers)
    if settings.heartbeat <= 0 or not math.isfinite(settings.heartbeat):
        raise ConfigError(f"--heartbeat {settings.heartbeat:g} must be a positive number of "
                          "seconds")
    return open_study(settings.storage, settings.study, settings.spec(), _sampler(settings),
                      _pruner(settings))


# -- the trials' bookkeeping ------------------------------------------------------------------


def _claims(trial: Any) -> bool:
    """Whether a trial holds its grid point: it ran, runs, waits, or failed for a reason."""
    from optuna.trial import TrialState

    if trial.user_attrs.get("surplus"):
        return False
    if trial.state == TrialState.FAIL:
        return "error" in trial.user_attrs
    return True


def grid_id(trial: Any) -> int | None:
    """The grid point a trial trains (GridSampler's index into the grid), if any."""
    return trial.system_attrs.get("grid_id")


def _last_seen(trial: Any) -> float:
    start = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
    return max(float(trial.user_attrs.get("heartbeat", 0.0)), start)


def _reap(study: Any, heartbeat: float, grid: Grid | None) -> None:
    """Fail running trials whose heartbeat stopped; queue their grid points again."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        from optuna.storages import RetryHeartbeatStaleTrialCallback
    except ImportError:  # Optuna before 4.9 names it so
        from optuna.storages import RetryFailedTrialCallback as RetryHeartbeatStaleTrialCallback

    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if now - _last_seen(trial) > GRACE * heartbeat:
            try:
                study.tell(trial.number, state=TrialState.FAIL)
            except (UpdateFinishedTrialError, ValueError):
                pass  # another worker got there first, or the trial just finished
    if grid is None:
        return
    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
    trials = study.get_trials(deepcopy=False)
    held = {grid_id(t) for t in trials if _claims(t)}
    orphans: dict[int, Any] = {}
    for trial in trials:  # died or interrupted, not failed for a reason of its own
        gid = grid_id(trial)
        if (gid is not None and gid not in held and trial.state == TrialState.FAIL
                and not trial.user_attrs.get("surplus")):
            if gid not in orphans or trial.number > orphans[gid].number:
                orphans[gid] = trial
    for trial in orphans.values():
        retry(study, trial)


def _next_step(study: Any, grid: Grid) -> str:
    """'run' a trial, 'wait' for other workers' running trials, or 'done'."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return "run"
    assigned = {grid_id(t) for t in trials}
    if len(trials) < grid.size or set(range(grid.size)) - assigned:
        return "run"
    if any(t.state == TrialState.RUNNING for t in trials):
        return "wait"
    return "done"


class _Surplus(Exception):
    """This trial's grid point is already another trial's."""


def _check_not_surplus(trial: Any) -> None:
    from optuna.trial import TrialState

    trials = trial.study.get_trials(deepcopy=False)
    gid = next(grid_id(t) for t in trials if t.number == trial.number)
    for other in trials:
        if other.number == trial.number or grid_id(other) != gid or not _claims(other):
            continue
        if other.state in (TrialState.RUNNING, TrialState.WAITING) and other.number > trial.number:
            continue  # the later trial gives way
        trial.set_user_attr("surplus", other.number)
        raise _Surplus(f"grid point {gid} is trial {other.number}'s")


class _Heartbeat:
    """Refreshes the trial's ``heartbeat`` user attribute from a thread while it trains."""

    def __init__(self, trial: Any, interval: float) -> None:
        self.trial, self.interval = trial, interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._done.wait(self.interval):
            try:
                self.trial.set_user_attr("heartbeat", time.time())
            except Exception:  # the trial was ended elsewhere (presumed dead): stop beating
                return


# -- one training ----------------------------------------------------------------------------


def _load(settings: SweepSettings) -> Any:
    from digitnet import runner

    return runner.load_data(settings.config().dataset, settings.data_dir)


def _train(trial: Any, config: Any, data: Any, prune: bool) -> float:
    """Train one network on ``data`` (a :class:`digitnet.runner.Data`), reporting each epoch's
    validation accuracy to the trial; returns the best. A pruned trial stops the trainer."""
    import optuna

    from digitnet import runner
    from digitnet.training import Trainer

    trainer = Trainer(config, data.images, data.labels)
    try:
        for record in trainer.events():
            trial.report(float(record.val_accuracy), record.epoch)
            if prune and trial.should_prune():
                trainer.stop()
    except DigitnetError as exc:  # divergence: a result of these settings, not retried
        trial.set_user_attr("error", str(exc))
        raise
    if trainer.stopped:
        raise optuna.TrialPruned(f"pruned after epoch {trainer.epoch}")
    model = runner.finish(trainer.result(), data)
    metrics = model.meta["metrics"]
    trial.set_user_attr("train_accuracy", float(metrics["train_accuracy"]))
    trial.set_user_attr("test_accuracy", float(metrics["test_accuracy"]))
    trial.set_user_attr("seconds", float(metrics["train_seconds"]))
    trial.set_user_attr("epochs", int(metrics["epochs"]))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    return float(metrics["dev_accuracy"])


def _grid_objective(settings: SweepSettings,
                    data: Callable[[], Any]) -> Callable[[Any], float]:
    grid = settings.plan
    assert isinstance(grid, Grid)

    def objective(trial: Any) -> float:
        _check_not_surplus(trial)
        hidden = trial.suggest_categorical("hidden", list(grid.hidden))
        layers = trial.suggest_categorical("layers", list(grid.layers))
        seed = trial.suggest_categorical("seed", list(range(grid.seeds)))
        with _Heartbeat(trial, settings.heartbeat):
            return _train(trial, settings.config(hidden=hidden, layers=layers, seed=seed),
                          data(), prune=False)

    return objective


def _search_objective(settings: SweepSettings,
                      data: Callable[[], Any]) -> Callable[[Any], float]:
    search = settings.plan
    assert isinstance(search, Search)
    suggest: dict[str, Callable[[Any], Any]] = {
        "lr": lambda t: t.suggest_float("lr", 1e-4, 0.1, log=True),
        "batch_size": lambda t: t.suggest_categorical("batch_size", [32, 64, 128, 256]),
        "l2": lambda t: t.suggest_float("l2", 1e-6, 1e-2, log=True),
        "schedule": lambda t: t.suggest_categorical("schedule",
                                                    ["constant", "cosine", "onecycle"]),
        "epochs": lambda t: t.suggest_int("epochs", 5, 30, step=5),
    }

    def objective(trial: Any) -> float:
        values = {name: suggest[name](trial) for name in settings.searched()}
        config = settings.config(hidden=search.hidden, layers=search.layers, **values)
        with _Heartbeat(trial, settings.heartbeat):
            return _train(trial, config, data(), prune=True)

    return objective


# -- workers ----------------------------------------------------------------------------------


def work(settings: SweepSettings, should_stop: Callable[[], bool] = lambda: False) -> None:
    """Run trials of the sweep in this process until there is nothing left for it to do."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError

    _quiet_optuna()
    handle = settings.storage.open()
    study = optuna.load_study(study_name=settings.study, storage=handle,
                              sampler=_sampler(settings), pruner=_pruner(settings))
    # Reaping tells other workers' trials; a plain sampler does nothing when it is told.
    plain = optuna.load_study(study_name=settings.study, storage=handle,
                              sampler=optuna.samplers.RandomSampler())
    data = functools.cache(lambda: _load(settings))  # loaded when a trial first needs it
    grid = settings.plan if isinstance(settings.plan, Grid) else None
    objective = (_grid_objective if grid else _search_objective)(settings, data)
    started = time.monotonic()
    while not should_stop():
        _reap(plain, settings.heartbeat, grid)
        step = _next_step(plain, grid) if grid else _search_step(plain, settings, started)
        if step == "done":
            return
        if step == "wait":
            time.sleep(min(settings.heartbeat, 5.0))
            continue
        try:
            study.optimize(objective, n_trials=1, catch=(_Surplus, DigitnetError))
        except UpdateFinishedTrialError:
            pass  # presumed dead while it trained; its point was queued again


def _search_step(study: Any, settings: SweepSettings, started: float) -> str:
    from optuna.trial import TrialState

    search = settings.plan
    assert isinstance(search, Search)
    if search.timeout is not None and time.monotonic() - started >= search.timeout:
        return "done"
    if search.trials is None:
        return "run"
    counted = study.get_trials(deepcopy=False, states=(
        TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING))
    return "run" if len(counted) < search.trials else "done"


def _worker_main(settings: SweepSettings, errors: Any) -> None:
    """A worker process: single-threaded, its errors sent back as one line each."""
    import sys

    try:
        work(settings)
    except KeyboardInterrupt:
        sys.exit(130)
    except DigitnetError as exc:
        errors.put(str(exc))
        sys.exit(1)
    except Exception as exc:
        errors.put(settings.storage.scrub(f"a worker stopped: {type(exc).__name__}: {exc}"))
        sys.exit(1)


_ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS")


def run_workers(settings: SweepSettings, workers: int) -> None:
    """Run ``workers`` single-threaded worker processes (one: this process) until done."""
    import multiprocessing

    if workers < 1 or workers > 256:
        raise ConfigError(f"--workers {workers} is out of range; it must be between 1 and 256")
    if workers == 1:
        work(settings)
        return
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    saved = {name: os.environ.get(name) for name in _ONE_THREAD}
    os.environ.update({name: "1" for name in _ONE_THREAD})  # read by each child's imports
    try:
        processes = [context.Process(target=_worker_main, args=(settings, errors),
                                     name=f"digitnet-sweep-{k}") for k in range(workers)]
        for process in processes:
            process.start()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    try:
        for process in processes:
            process.join()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join()
    messages = []
    while not errors.empty():
        messages.append(errors.get())
    if messages:
        raise SweepError(messages[0])
    codes = [p.exitcode for p in processes if p.exitcode]
    if codes:
        raise SweepError(f"{len(codes)} worker(s) stopped with exit code {codes[0]}; run the "
                         "same command again to resume")
