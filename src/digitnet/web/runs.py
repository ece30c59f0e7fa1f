"""Training runs started from the drawing page: one at a time, in a worker thread, as events.

A run trains with :class:`digitnet.training.Trainer` in a daemon thread, with BLAS on one
thread, so the server's event loop keeps answering ``/api/predict`` meanwhile. What the run
does is kept as a list of events, each already encoded as JSON text:

``start``
    The checked config, the planned steps and the learning-rate schedule over them.
``epoch``
    Progress: epoch, step, total_steps, loss, train_accuracy, val_loss, val_accuracy, lr and
    seconds (elapsed in this run). One per epoch; for full-batch runs one every 10 iterations.
``units``
    The first hidden layer's incoming weights (the first :data:`TILES` units), after each
    ``epoch`` event. Only the latest is kept: a client that joins late sees the current ones.
``done`` / ``stopped`` / ``error``
    One closing event: the final metrics (``test_accuracy`` included), or a one-line message.

A client that connects late replays the kept events, then follows the live ones
(:meth:`Run.follow`). A run whose every client has gone away for ``abandon_after`` seconds is
stopped, so a closed tab does not leave the server training; a run no client ever watched (a
script that will fetch the model) goes on to its end, which the :class:`Limits` keep short.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from digitnet import datasets, runner, training
from digitnet.errors import ConfigError, DigitnetError
from digitnet.model import Model

__all__ = ["Limits", "TrainSettings", "RunRefused", "Run", "RunManager", "TILES", "CLOSING"]

log = logging.getLogger("digitnet.web")

TILES = 16
"""Hidden units whose weights the ``units`` events carry (the page's tiles)."""
CLOSING = ("done", "stopped", "error")
SCHEDULE_POINTS = 100


@dataclass(frozen=True)
class Limits:
    """The largest run the page may start, so one run cannot hold the server for hours."""

    hidden: int = 256            # units in each hidden layer
    layers: int = 3              # hidden layers
    epochs: int = 100            # passes over the training images
    iterations: int = 2_000      # gradient steps, when given instead of epochs
    val_size: int = 10_000       # held-out images
    work: float = 1e12           # examples x weights a run may push through the network,
                                 # a few minutes of one core

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class TrainSettings:
    """How (and whether) a server trains."""

    allowed: bool = True
    reason: str = ""                  # why training is off, as the page shows it
    data_dir: Path | None = None      # where to look for the dataset first
    limits: Limits = field(default_factory=Limits)
    keep: int = 5                     # finished runs kept, with their models
    abandon_after: float = 15.0       # seconds without a client before a watched run stops

    @classmethod
    def for_host(cls, host: str, allow_train: bool, data_dir: Path | None = None
                 ) -> TrainSettings:
        """Training on for a loopback ``host``; for any other address only with
        ``allow_train``, since a run costs the server's CPU."""
        if allow_train or is_loopback(host):
            return cls(data_dir=data_dir)
        return cls(allowed=False, data_dir=data_dir,
                   reason=f"this server listens on {host}, open to other machines; start it "
                          f"with --allow-train to train here")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class RunRefused(Exception):
    """A request about runs that is refused with ``status``; ``field`` names a bad option."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def _json(value: Any) -> str:
    return json.dumps(_finite(value), separators=(",", ":"), allow_nan=False)


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats as None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


class Run:
    """One training run: its config, its events, its model once it has ended."""

    def __init__(self, run_id: str, config: training.TrainConfig, abandon_after: float) -> None:
        self.id = run_id
        self.config = config
        self.state = "running"            # then one of CLOSING
        self.model: Model | None = None
        self.abandon_after = abandon_after
        self._events: list[tuple[str, str | None]] = []   # (kind, JSON); None: superseded
        self._last_units: int | None = None
        self._lock = threading.Lock()
        self._wakers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._stop = threading.Event()
        self.stop_reason = "stopped on request"
        self._watched = False
        self._left_at: float | None = None   # when the last client went away
        self.thread: threading.Thread | None = None
        self._trainer: training.Trainer | None = None

    # -- the worker's side ------------------------------------------------------------------

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        text = _json(data)
        with self._lock:
            if kind == "units":
                if self._last_units is not None:
                    self._events[self._last_units] = ("units", None)
                self._last_units = len(self._events)
            self._events.append((kind, text))
            if kind in CLOSING:
                self.state = kind
            wakers = list(self._wakers)
        for loop, event in wakers:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that client's loop has closed: it is gone
                pass

    def attach(self, trainer: training.Trainer) -> None:
        """The trainer this run drives, so that :meth:`stop` reaches it between steps."""
        with self._lock:
            self._trainer = trainer
        if self._stop.is_set():
            trainer.stop()

    def should_stop(self) -> bool:
        """Whether the run was asked to stop, or has been left with no one watching."""
        if not self._stop.is_set() and self._abandoned():
            self.stop_reason = (f"stopped: no page has watched it for "
                                f"{self.abandon_after:g} seconds")
            self._stop.set()
        return self._stop.is_set()

    def _abandoned(self) -> bool:
        with self._lock:
            left = self._left_at if self._watched and not self._wakers else None
        return left is not None and time.monotonic() - left >= self.abandon_after

    # -- the server's side ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.state == "running"

    def stop(self) -> None:
        """Ask the run to stop; it ends at the trainer's next step boundary."""
        self._stop.set()
        with self._lock:
            trainer = self._trainer
        if trainer is not None:
            trainer.stop()

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    async def follow(self, after: int = -1) -> AsyncIterator[tuple[int, str, str]]:
        """``(index, kind, JSON)`` of every event after ``after``, kept ones first, then live
        ones as they happen, until the closing event."""
        loop = asyncio.get_running_loop()
        waker = (loop, asyncio.Event())
        with self._lock:
            self._wakers.add(waker)
            self._watched = True
        try:
            index = after + 1
            while True:
                waker[1].clear()
                with self._lock:
                    pending = list(enumerate(self._events[index:], start=index))
                for i, (kind, text) in pending:
                    index = i + 1
                    if text is None:
                        continue
                    yield i, kind, text
                    if kind in CLOSING:
                        return
                if not pending:
                    await waker[1].wait()
        finally:
            with self._lock:
                self._wakers.discard(waker)
                if not self._wakers:
                    self._left_at = time.monotonic()


class RunManager:
    """Starts runs one at a time and keeps the last few, found by their random ids."""

    def __init__(self, settings: TrainSettings) -> None:
        self.settings = settings
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self._data: dict[str, runner.Data] = {}
        self._data_lock = threading.Lock()
        self._closed = False

    # -- asking about the server ------------------------------------------------------------

    def missing_data(self, dataset: str = "mnist") -> str | None:
        """Why ``dataset`` cannot be trained on here (nothing found where ``digitnet data``
        looks), or None when its files are there. Looks without downloading."""
        if dataset in self._data:
            return None
        try:
            for split in datasets.SPLITS:
                datasets.locate(dataset, split, self.settings.data_dir, download=False)
        except DigitnetError as exc:
            return (f"no training data: {exc}; or run `digitnet data` once to download it, "
                    f"then restart the server")
        return None

    @property
    def busy(self) -> bool:
        """Whether a run is going."""
        with self._lock:
            return any(run.running for run in self._runs.values())

    def get(self, run_id: str) -> Run:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise RunRefused(404, f"no training run {run_id[:40]!r} on this server (runs are "
                                  f"kept until {self.settings.keep} newer ones have started)")
        return run

    # -- starting a run ---------------------------------------------------------------------

    def start(self, options: dict[str, Any]) -> Run:
        """Check ``options`` (TrainConfig fields) and start a run in a worker thread.

        Raises
        ------
        RunRefused
            403 when training is off, 422 for a bad option, 503 without training data, 409
            while another run is going.
        """
        if not self.settings.allowed:
            raise RunRefused(403, self.settings.reason or "training is off on this server")
        config = checked_config(options, self.settings.limits)
        missing = self.missing_data(config.dataset)
        if missing is not None:
            raise RunRefused(503, missing)
        with self._lock:
            if self._closed:
                raise RunRefused(503, "the server is shutting down")
            if any(r.running for r in self._runs.values()):
                raise RunRefused(409, f"a training run is already going; this server trains "
                                      f"one at a time: stop it or wait for it to end (a run "
                                      f"no page watches stops after "
                                      f"{self.settings.abandon_after:g} s)")
            run = Run(secrets.token_urlsafe(16), config, self.settings.abandon_after)
            self._runs[run.id] = run
            self._forget_old()
            run.thread = threading.Thread(target=self._work, args=(run,), daemon=True,
                                          name=f"digitnet-train-{run.id[:6]}")
            run.thread.start()
        return run

    def _forget_old(self) -> None:
        ended = [r for r in self._runs.values() if not r.running]
        for run in ended[:max(0, len(self._runs) - self.settings.keep)]:
            del self._runs[run.id]

    def close(self, timeout: float = 10.0) -> None:
        """Stop every run and wait for its thread: the server is going down."""
        with self._lock:
            self._closed = True
            runs = list(self._runs.values())
        for run in runs:
            run.stop_reason = "stopped: the server is shutting down"
            run.stop()
        for run in runs:
            run.join(timeout)

    # -- the worker -------------------------------------------------------------------------

    def _work(self, run: Run) -> None:
        try:
            data = self._load(run.config.dataset)
            trainer = training.Trainer(run.config, data.images, data.labels,
                                       n_classes=len(data.class_names))
            run.attach(trainer)
            run.emit("start", _start_event(run, trainer))
            for progress in trainer.events(snapshots=True):
                run.emit("epoch", _epoch_event(progress, trainer.seconds))
                run.emit("units", _units_event(progress))
                if run.should_stop():
                    trainer.stop()
            model = run.model = runner.finish(trainer.result(), data)
            closing = {"metrics": model.meta["metrics"], "sizes": list(model.sizes)}
            if trainer.stopped:
                run.emit("stopped", {**closing, "message": run.stop_reason})
            else:
                run.emit("done", closing)
        except DigitnetError as exc:
            run.emit("error", {"message": str(exc).splitlines()[0]})
        except Exception as exc:  # noqa: BLE001 - a worker must always close its run
            log.exception("training run %s failed", run.id[:6])
            run.emit("error", {"message": f"training failed: {type(exc).__name__}: {exc}"
                                          .splitlines()[0][:300]})

    def prefetch(self, dataset: str = "mnist") -> None:
        """Start loading ``dataset`` in the background (a page that shows the Train panel is
        likely to train), so the first run need not wait for it. Errors are left for the run
        to report."""
        if not self.settings.allowed or dataset in self._data or self._data_lock.locked():
            return

        def load() -> None:
            try:
                self._load(dataset)
            except DigitnetError:
                pass

        threading.Thread(target=load, daemon=True, name="digitnet-train-data").start()

    def _load(self, name: str) -> runner.Data:
        with self._data_lock:  # loaded once, then shared by every run (read-only arrays)
            if name not in self._data:
                self._data[name] = runner.load_data(name, self.settings.data_dir,
                                                    download=False)
            return self._data[name]


# -- checking a run's options -----------------------------------------------------------------

_BOOLEANS = ("select_best", "standardize")
_TEXTS = ("preset", "dataset", "init", "optimizer", "schedule", "dtype")
FIELDS = tuple(f.name for f in fields(training.TrainConfig))


def checked_config(options: Any, limits: Limits) -> training.TrainConfig:
    """The config ``options`` ask for, within ``limits``.

    Raises
    ------
    RunRefused
        422, naming the option and what would work.
    """
    if not isinstance(options, dict):
        raise RunRefused(422, 'expected a JSON object of training options, e.g. {"preset": '
                              '"default", "hidden": 16, "epochs": 3}')
    unknown = sorted(set(options) - set(FIELDS))
    if unknown:
        raise RunRefused(422, f"unknown option {unknown[0][:40]!r}; the options are "
                              f"{', '.join(FIELDS)}", unknown[0][:40])
    for name in _TEXTS:
        if name in options and not isinstance(options[name], str):
            raise RunRefused(422, f"{name} must be a string", name)
    for name in _BOOLEANS:
        if name in options and not isinstance(options[name], bool):
            raise RunRefused(422, f"{name} must be true or false", name)
    dataset = options.get("dataset", "mnist")
    if dataset not in datasets.DATASETS:
        raise RunRefused(422, f"unknown dataset {dataset[:40]!r}; choose one of "
                              f"{', '.join(datasets.DATASETS)}", "dataset")
    preset = options.get("preset", "default")
    overrides = {k: v for k, v in options.items() if k != "preset"}
    try:
        config = training.make_config(preset, **overrides)
    except ConfigError as exc:
        raise RunRefused(422, str(exc), exc.field or ("preset" if "preset" in str(exc)[:20]
                                                      else None)) from None
    _check_limits(config, limits)
    return config


def _check_limits(config: training.TrainConfig, limits: Limits) -> None:
    counted = ("hidden", "layers", "val_size") + (("epochs",) if config.iterations is None
                                                  else ())  # iterations replace epochs
    for name in counted:
        low, high = int(name != "val_size"), getattr(limits, name)
        if getattr(config, name) > high:
            raise RunRefused(422, f"{name} = {getattr(config, name)} is over this server's "
                                  f"limit; it must be {low} to {high}", name)
    if config.iterations is not None and config.iterations > limits.iterations:
        raise RunRefused(422, f"iterations = {config.iterations} is over this server's limit; "
                              f"it must be 1 to {limits.iterations}", "iterations")
    n_train = 60_000 - config.val_size  # both MNISTs hold 60,000 training images
    batch = n_train if config.batch_size == 0 else min(config.batch_size, n_train)
    steps = config.iterations or config.epochs * math.ceil(n_train / batch)
    sizes = (784, *[config.hidden] * config.layers, 10)
    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    work = float(steps) * batch * weights
    if work > limits.work:
        raise RunRefused(422, f"this run would push {work:.2g} example-weights through the "
                              f"network ({steps:,} steps of {batch:,} images, {weights:,} "
                              f"weights); this server's limit is {limits.work:.2g}: use fewer "
                              f"epochs, iterations, hidden units or layers", "epochs")


# -- events ---------------------------------------------------------------------------------


def _start_event(run: Run, trainer: training.Trainer) -> dict[str, Any]:
    total = trainer.total_steps
    points = sorted({round(total * k / SCHEDULE_POINTS) for k in range(SCHEDULE_POINTS + 1)})
    return {"run": run.id, "config": run.config.to_dict(), "total_steps": total,
            "epochs": trainer.epochs, "steps_per_epoch": trainer.steps_per_epoch,
            "hidden": run.config.hidden, "tiles": min(TILES, run.config.hidden),
            "schedule": [[t, trainer.schedule(min(t, total - 1))] for t in points]}


def _epoch_event(progress: training.Progress, elapsed: float) -> dict[str, Any]:
    """A progress record as the ``epoch`` event tells it; ``seconds`` is the time since the
    run began (the record's own is the time since the last)."""
    return {"epoch": progress.epoch, "step": progress.step, "total_steps": progress.total_steps,
            "loss": progress.loss, "train_accuracy": progress.train_accuracy,
            "val_loss": progress.val_loss, "val_accuracy": progress.val_accuracy,
            "lr": progress.lr, "seconds": elapsed}


def _units_event(progress: training.Progress) -> dict[str, Any]:
    assert progress.params is not None  # events(snapshots=True) gives each record a copy
    W1 = progress.params.W[0]
    shown = W1[:, :TILES].astype(np.float64)
    return {"epoch": progress.epoch, "step": progress.step, "total": W1.shape[1],
            "limit": float(np.abs(shown).max()),
            "units": [np.round(shown[:, j], 4).tolist() for j in range(shown.shape[1])]}
