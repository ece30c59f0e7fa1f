"""The trainer: one loop of training steps, its progress as events, its state as a dict.

Full-batch gradient descent (the seed's notebook) is this same loop with ``batch_size = 0``,
meaning all training examples in one batch. Randomness comes from one seed: the parameters, the
validation split and each epoch's shuffle are drawn from generators derived from it, so the same
seed gives bit-identical weights and an epoch's order never depends on what ran before it.

Training is driven from outside: :meth:`Trainer.events` yields a :class:`Progress` record
after every epoch (every :attr:`Trainer.FULL_BATCH_EVERY` steps of a full-batch run),
:meth:`~Trainer.stop` ends the run at the next step boundary from any thread, and
:meth:`~Trainer.state_dict` / :meth:`~Trainer.load_state_dict` carry everything a run needs to
go on where it stopped.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from digitnet import augment, fast, network
from digitnet.errors import ConfigError, DivergenceError
from digitnet.model import Model
from digitnet.network import Params
from digitnet.optim import LossWatch, Schedule, make_optimizer
from digitnet.preprocessing import Preprocessing
from digitnet.training.config import PRESETS, TrainConfig
from digitnet.training.prefetch import Prefetch

__all__ = ["Progress", "HISTORY", "Trainer", "train", "pixel_stats"]


@dataclass(frozen=True)
class Progress:
    """Where a run stands after an epoch (or, full-batch, after a few steps); immutable."""

    epoch: int             # epochs completed (full-batch: one epoch is one step)
    step: int              # gradient steps taken
    total_steps: int       # steps the run takes in all
    lr: float              # the learning rate at the first step since the last record
    loss: float            # mean training loss (with L2) over those steps' batches
    train_accuracy: float  # fraction right over those batches, as they were trained on
    val_loss: float        # on the held-out validation images, after the last step
    val_accuracy: float
    seconds: float         # time those steps and the validation took
    params: Params | None = None  # a copy of the parameters, when asked for

    @property
    def fraction(self) -> float:
        """How much of the run is done, 0 to 1."""
        return self.step / self.total_steps if self.total_steps else 1.0


# What the history keeps of each record, a list per name.
HISTORY = tuple(f.name for f in fields(Progress) if f.name not in ("total_steps", "params"))


def _pixel_sums(images: np.ndarray, rows: int = 4096) -> tuple[int, int, int]:
    """Count, sum and sum of squares of uint8 pixels, as exact integers.

    A block of rows at a time: the squares (255² fits in uint16) never need a copy of the
    whole set.
    """
    total = squares = 0
    for start in range(0, len(images), rows):
        block = images[start:start + rows]
        total += int(block.sum(dtype=np.uint64))
        squares += int(np.square(block, dtype=np.uint16).sum(dtype=np.uint64))
    return images.size, total, squares


def pixel_stats(images: np.ndarray, exclude: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of pixels/255 over the images not in ``exclude``."""
    n, total, squares = _pixel_sums(images)
    if len(exclude):
        n_out, total_out, squares_out = _pixel_sums(images[exclude])
        n, total, squares = n - n_out, total - total_out, squares - squares_out
    mean = total / n / 255
    std = math.sqrt(squares * n - total * total) / n / 255  # exact integers under the root
    return mean, std if std > 0 else 1.0


# Images evaluated at a time: their float copies stay small (4 MiB), which keeps the peak memory
# of a training run near that of its data.
_BLOCK = 1024


class Trainer:
    """Trains a network on raw images (n, 28, 28) or (n, 784), 0-255, with labels (n,).

    Parameters
    ----------
    config
        The checked training config.
    images, labels
        The training images; ``config.val_size`` of them are held out for validation.
    n_classes
        Width of the output layer.
    preprocessing
        A fixed input transform to use instead of the one ``config.standardize`` computes from
        the training pixels; it lets float inputs of any scale be trained on (the estimator).
    backend
        How the steps run: ``numba`` or ``numpy`` (the engines of :mod:`digitnet.fast`),
        ``reference`` (:mod:`digitnet.network` as written) or ``auto`` (the default, also
        read from ``DIGITNET_BACKEND``): numba where it is installed and applies, else numpy.
        A backend gives bit-identical results for the same seed; backends differ from each
        other in the last bits, as their sums run in different orders.
    targets
        Soft targets (n, n_classes), each row summing to 1, to learn instead of the labels'
        one-hot rows (distillation: a teacher's probabilities); labels still count accuracy.
    """

    FULL_BATCH_EVERY = 10  # full-batch steps between two records

    def __init__(self, config: TrainConfig, images: np.ndarray, labels: np.ndarray,
                 n_classes: int = 10, preprocessing: Preprocessing | None = None,
                 backend: str | None = None, targets: np.ndarray | None = None) -> None:
        self.config = config
        self.images = np.ascontiguousarray(images).reshape(len(images), -1)
        self.labels = np.asarray(labels)
        self.n_classes = n_classes
        self.dtype = np.dtype(config.dtype).type
        n = len(self.images)
        if config.val_size >= n:
            raise ConfigError(f"val_size = {config.val_size} leaves no training images "
                              f"(there are {n})", "val_size")
        seeds = np.random.SeedSequence(config.seed).spawn(2)
        order = np.random.default_rng(seeds[0]).permutation(n)
        self.val_idx = np.sort(order[:config.val_size])
        self.train_idx = np.sort(order[config.val_size:])
        self.n_train = len(self.train_idx)
        self.batch_size = self.n_train if config.batch_size in (0, None) else min(
            config.batch_size, self.n_train)
        self.full_batch = self.batch_size >= self.n_train
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        self.total_steps = config.iterations or config.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        if preprocessing is not None:
            self.preprocessing = preprocessing
        elif config.standardize:
            mean, std = pixel_stats(self.images, self.val_idx)
            self.preprocessing = Preprocessing(1 / 255, mean, std)
        else:
            self.preprocessing = Preprocessing(1 / 255, 0.0, 1.0)
        sizes = (self.images.shape[1], *[config.hidden] * config.layers, n_classes)
        self._flat = fast.FlatParams(network.init_params(
            sizes, np.random.default_rng(seeds[1]), config.init, self.dtype))
        self.optimizer = make_optimizer(config.optimizer, config.momentum)
        self.schedule = Schedule(config.schedule, config.lr, self.total_steps)
        self.targets = targets
        self.backend = fast.resolve_backend(backend, config.layers, config.dtype,
                                            self.images.shape[1], self.images.dtype,
                                            self.total_steps * self.batch_size)
        if targets is not None and self.backend == "numba" and not backend:
            self.backend = "numpy"  # the compiled kernel learns from labels only
        self.step = 0
        self.epoch = 0
        self.seconds = 0.0  # training time so far, across resumed runs
        self.history: dict[str, list[float]] = {name: [] for name in HISTORY}
        self._best: tuple[float, int, Params] | None = None
        self._watch = LossWatch(n_classes)
        self._engine: fast.Engine | None = None
        self._engine_epoch = -1  # the epoch an augmented engine's images belong to, else -1
        self._prefetch: Prefetch[fast.Engine] = Prefetch(self._augmented_engine)
        self._keep: dict[int, fast.Engine] | None = None  # epochs' engines kept for restarts
        self._stop = threading.Event()
        self.stopped = False

    @property
    def params(self) -> Params:
        """The current parameters (live views: they change as training goes on)."""
        return self._flat.params

    # -- driving the run ----------------------------------------------------------------------

    def events(self, snapshots: bool = False) -> Iterator[Progress]:
        """Train, yielding a :class:`Progress` after every epoch (full-batch: every
        :attr:`FULL_BATCH_EVERY` steps) until the run is done or :meth:`stop` is called.

        With ``snapshots``, each record carries a copy of the parameters. BLAS runs on one
        thread meanwhile: these matrices are too small for a second to pay.

        Raises
        ------
        DivergenceError
            When a step produces non-finite numbers or the loss runs away.
        """
        try:
            with fast.blas_threads(1):
                if self.step == 0 and self.config.restarts:
                    chosen = self._restart(snapshots)
                    if chosen is None:
                        self.stopped = True
                        return
                    yield from chosen
                while self.step < self.total_steps:
                    record = self._advance(snapshots)
                    if record is None:
                        self.stopped = True
                        return
                    yield record
        finally:
            self._prefetch.close()  # also when the caller stops iterating early

    def stop(self) -> None:
        """End the run at the next step boundary (safe from another thread or a signal
        handler): :meth:`events` then returns, and :attr:`stopped` is True."""
        self._stop.set()

    def run(self, callback: Callable[[Progress], None] | None = None) -> Model:
        """Train to the end (or to :meth:`stop`), ``callback`` receiving each record; returns
        :meth:`result`."""
        for record in self.events():
            if callback is not None:
                callback(record)
        return self.result()

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps

    def result(self) -> Model:
        """The trained model: the best epoch's parameters when ``config.select_best``, else
        the current ones (copies), with the metrics and history in its metadata."""
        params, chosen = self.params.copy(), self.epoch
        if self._best is not None:
            _, chosen, best = self._best
            params = best.copy()
        metrics = {
            "train_accuracy": self.accuracy(self.train_idx, params),
            "dev_accuracy": self.accuracy(self.val_idx, params),
            "train_seconds": self.seconds,
            "epochs": self.epoch,
            "iterations": self.step,
            "chosen_epoch": chosen,
        }
        meta = {"config": self.config.to_dict(), "preset": self.config.preset,
                "metrics": metrics, "history": {k: list(v) for k, v in self.history.items()}}
        return Model(params, self.preprocessing, meta)

    # -- state --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything the run needs to go on exactly where it is: copies, safe to keep."""
        best = None
        if self._best is not None:
            accuracy, epoch, params = self._best
            best = {"accuracy": accuracy, "epoch": epoch, "params": params.copy()}
        return {
            "config": self.config,
            "params": self.params.copy(),
            "optimizer": self.optimizer.state(),
            "epoch": self.epoch,
            "step": self.step,
            "seconds": self.seconds,
            "history": {k: list(v) for k, v in self.history.items()},
            "best": best,
            "loss_watch": self._watch.state_dict(),
            "preprocessing": self.preprocessing,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (what :meth:`state_dict` returned, or some of its entries:
        those present are loaded, the others keep their values).

        Raises
        ------
        ValueError
            If the parameters or the optimizer's state do not fit this network.
        """
        if "params" in state:
            self._flat.load(state["params"])
        if "optimizer" in state:
            self.optimizer.load_state(state["optimizer"])
            self.optimizer.init_state([self._flat.theta])  # checks the shapes
        for name in ("epoch", "step"):
            if name in state:
                setattr(self, name, int(state[name]))
        if "seconds" in state:
            self.seconds = float(state["seconds"])
        if "history" in state:
            self.history = {k: list(state["history"].get(k, [])) for k in HISTORY}
        if "best" in state:
            best = state["best"]
            self._best = None if best is None else (
                float(best["accuracy"]), int(best["epoch"]), best["params"].copy())
        if "loss_watch" in state:
            self._watch.load_state_dict(state["loss_watch"])
        if "preprocessing" in state:
            self.preprocessing = state["preprocessing"]
            self._engine = None  # its input scaling is built in
        self._prefetch.discard()  # built for the state before
        if self.config.augment:
            self._engine = None  # over another epoch's images, perhaps

    # -- restarts -----------------------------------------------------------------------------

    def _restart(self, snapshots: bool) -> list[Progress] | None:
        """Train ``config.restarts + 1`` starts for ``config.restart_epochs`` epochs each, the
        same data in the same order, and keep the one with the best validation accuracy (the
        first of equals); returns its records, or None when stopped (the run is then back at
        step 0, as before it began, so a resumed run starts over and ends the same)."""
        first = self.params.copy()
        sizes = self.params.sizes
        # Start i >= 1 draws its weights from the seed's child 1 + i (0: the split, 1: start 0).
        seeds = np.random.SeedSequence(self.config.seed).spawn(2 + self.config.restarts)
        best: tuple[float, dict[str, Any], list[Progress]] | None = None
        self._keep = {}
        try:
            for i in range(self.config.restarts + 1):
                start = first if i == 0 else network.init_params(
                    sizes, np.random.default_rng(seeds[1 + i]), self.config.init, self.dtype)
                self._begin(start)
                records = []
                while self.epoch < min(self.config.restart_epochs, self.epochs):
                    record = self._advance(snapshots)
                    if record is None:
                        self._begin(first)
                        return None
                    records.append(record)
                if best is None or records[-1].val_accuracy > best[0]:
                    best = (records[-1].val_accuracy, self.state_dict(), records)
        finally:
            self._keep = None
        assert best is not None
        seconds = self.seconds
        self.load_state_dict(best[1])
        self.seconds = seconds  # every start's time counts
        return best[2]

    def _begin(self, params: Params) -> None:
        """Back to step 0 with these initial parameters and a fresh optimizer."""
        fresh = make_optimizer(self.config.optimizer, self.config.momentum)
        fresh.init_state([self._flat.theta])
        self.load_state_dict({"params": params, "optimizer": fresh.state(), "epoch": 0,
                              "step": 0, "history": {}, "best": None,
                              "loss_watch": LossWatch(self.n_classes).state_dict()})

    # -- one record's worth of steps ----------------------------------------------------------

    def _advance(self, snapshots: bool) -> Progress | None:
        """Train to the next record; None when stopped before getting there."""
        t0 = time.perf_counter()
        lr = self.schedule(self.step)
        span = self.FULL_BATCH_EVERY if self.full_batch else 1
        loss_sum, correct, seen = 0.0, 0, 0
        for _ in range(span):
            if self.step >= self.total_steps:
                break
            done, wanted = self._run_epoch(self.epoch)
            loss_sum += done.loss_sum
            correct += done.correct
            seen += done.seen
            if done.steps < wanted:
                self.seconds += time.perf_counter() - t0
                return None
            self.epoch += 1
        val_loss, val_accuracy = self._validate()
        seconds = time.perf_counter() - t0
        self.seconds += seconds
        record = Progress(self.epoch, self.step, self.total_steps, lr, loss_sum / seen,
                          correct / seen, val_loss, val_accuracy, seconds,
                          self.params.copy() if snapshots else None)
        for name in HISTORY:
            self.history[name].append(getattr(record, name))
        if self.config.select_best and len(self.val_idx):
            if self._best is None or val_accuracy > self._best[0]:
                self._best = (val_accuracy, self.epoch, self.params.copy())
        return record

    def _run_epoch(self, epoch: int) -> tuple[fast.Steps, int]:
        """The rest of ``epoch`` (all of it, unless a stopped run left it half done): the
        steps taken and the steps wanted."""
        offset = self.step - epoch * self.steps_per_epoch
        positions = self._epoch_positions(epoch)[offset * self.batch_size:]
        wanted = min(self.steps_per_epoch - offset, self.total_steps - self.step)
        lrs = np.array([self.schedule(self.step + s) for s in range(wanted)])
        engine = self._engine_for(epoch)
        # An augmented epoch's engine holds the training images alone, in train_idx order.
        order = positions if self.augmented(epoch) else self.train_idx[positions]
        done = engine.run(order, lrs, self._watch, self._stop.is_set)
        self.step += done.steps
        if done.diverged:
            raise self._diverged(done.last_loss, float(lrs[done.steps - 1]))
        return done, wanted

    def _epoch_positions(self, epoch: int) -> np.ndarray:
        """The order of ``epoch``'s training examples, as positions in ``train_idx``."""
        if self.full_batch:
            return np.arange(self.n_train)
        # Drawn from (seed, epoch) alone, so a resumed run shuffles exactly as an unbroken one.
        rng = np.random.default_rng([self.config.seed, epoch])
        return rng.permutation(self.n_train)

    def augmented(self, epoch: int) -> bool:
        """Whether ``epoch`` trains on deformed images: when augmenting, all but the last
        ``config.clean_epochs``."""
        return bool(self.config.augment) and epoch < self.epochs - self.config.clean_epochs

    def epoch_images(self, epoch: int) -> np.ndarray:
        """The images ``epoch`` trains on: the originals, or, when augmenting, a copy whose
        training images are randomly deformed, drawn from (seed, epoch) alone."""
        if not self.augmented(epoch):
            return self.images
        images = self.images.copy()
        images[self.train_idx] = self._deformed(epoch)
        return images

    def _deformed(self, epoch: int) -> np.ndarray:
        """``epoch``'s deformed copies of the training images (n_train, n_in), in train_idx
        order."""
        rng = np.random.default_rng([self.config.seed, epoch, 1])
        images = self.images[self.train_idx]
        recipe = augment.recipe(self.config.augment)
        if self.config.augment_share >= 1:
            return augment.apply(images, recipe, rng)
        chosen = rng.random(len(images)) < self.config.augment_share
        images[chosen] = augment.apply(images[chosen], recipe, rng)
        return images

    def _engine_for(self, epoch: int) -> fast.Engine:
        """The engine over ``epoch``'s images: the same one throughout, unless augmenting;
        then one over that epoch's deformed training images, the next epoch's started on a
        background thread meanwhile."""
        if not self.augmented(epoch):
            if self._engine is None or self._engine_epoch != -1:
                self._engine = self._make_engine(self.images, self.labels, self.targets)
                self._engine_epoch = -1
            return self._engine
        if self._engine is None or self._engine_epoch != epoch:
            kept = self._keep.get(epoch) if self._keep is not None else None
            self._engine = kept if kept is not None else self._prefetch.get(epoch)
            self._engine_epoch = epoch
            if self._keep is not None and epoch < self.config.restart_epochs:
                self._keep[epoch] = self._engine  # the next start trains on it too
        if self.augmented(epoch + 1) and not (self._keep and epoch + 1 in self._keep):
            self._prefetch.ahead(epoch + 1)
        return self._engine

    def _augmented_engine(self, epoch: int) -> fast.Engine:
        targets = None if self.targets is None else self.targets[self.train_idx]
        return self._make_engine(self._deformed(epoch), self.labels[self.train_idx], targets)

    def _make_engine(self, images: np.ndarray, labels: np.ndarray,
                     targets: np.ndarray | None) -> fast.Engine:
        return fast.make_engine(
            self.backend, self._flat, self.optimizer, images, labels, self.preprocessing,
            self.batch_size, self.config.l2, self.config.label_smoothing, targets)

    def _diverged(self, loss: float, lr: float) -> DivergenceError:
        return DivergenceError(
            f"training diverged at step {self.step} (loss {loss:.4g}, learning rate "
            f"{lr:.4g}); try a smaller learning rate, e.g. --lr {self._safer_lr():g}")

    def _safer_lr(self) -> float:
        """A tenth of the rate that diverged, and no more than the preset's own rate."""
        preset_lr = PRESETS.get(self.config.preset, {}).get("lr", self.config.lr)
        return min(self.config.lr / 10, preset_lr)

    # -- measuring ----------------------------------------------------------------------------

    def _predictor(self, params: Params) -> fast.Predictor:
        return fast.Predictor(params, self.preprocessing, self.backend)

    def _validate(self) -> tuple[float, float]:
        if not len(self.val_idx):
            return float("nan"), float("nan")
        P = self._predictor(self.params).predict_proba(self.images[self.val_idx])
        labels = self.labels[self.val_idx]
        Y = network.one_hot(labels, self.n_classes, P.dtype)
        accuracy = float(np.mean(np.argmax(P, axis=1) == labels))
        return network.cross_entropy(P, Y), accuracy

    def accuracy(self, idx: np.ndarray, params: Params | None = None) -> float:
        """Accuracy of ``params`` (default: the current ones) on the images at ``idx``."""
        if not len(idx):
            return float("nan")
        predictor, correct = self._predictor(params or self.params), 0
        for start in range(0, len(idx), _BLOCK):  # no copy of the whole set at once
            part = idx[start:start + _BLOCK]
            correct += int(np.count_nonzero(predictor.predict(self.images[part])
                                            == self.labels[part]))
        return correct / len(idx)


def train(config: TrainConfig, images: np.ndarray, labels: np.ndarray,
          callback: Callable[[Progress], None] | None = None) -> Model:
    """Train a network on images (n, 28, 28) uint8 and labels (n,); see :class:`Trainer`."""
    return Trainer(config, images, labels).run(callback)
