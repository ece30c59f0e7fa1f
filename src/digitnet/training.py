"""Training: one typed config, presets, the minibatch loop, history.

Full-batch gradient descent (the seed's notebook) is this same loop with ``batch_size = 0``,
meaning all training examples in one batch. Randomness comes from one seed: the parameters, the
validation split and each epoch's shuffle are drawn from generators derived from it, so the same
seed gives bit-identical weights and an epoch's order never depends on what ran before it.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from digitnet import augment, fast, network
from digitnet.errors import ConfigError, DigitnetError, DivergenceError
from digitnet.model import Model, Preprocessing
from digitnet.network import Params
from digitnet.optim import OPTIMIZERS, SCHEDULES, Schedule, make_optimizer

__all__ = ["TrainConfig", "PRESETS", "make_config", "Trainer", "train", "train_on_dataset"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a network is trained. Saved inside the model file."""

    preset: str = "default"       # the preset these values started from
    dataset: str = "mnist"        # the named dataset to train on
    hidden: int = 10              # units in each hidden layer
    layers: int = 1               # number of hidden layers (the seed has one)
    init: str = "he"              # "uniform" (the seed's [-0.5, 0.5)), "he" or "glorot"
    optimizer: str = "adam"       # "gd", "momentum" or "adam"
    lr: float = 0.01              # learning rate α (the peak one under a schedule)
    momentum: float = 0.9         # μ, for the momentum optimizer
    schedule: str = "cosine"      # "constant", "cosine" or "onecycle"
    l2: float = 0.0               # λ of the L2 penalty λ/2·ΣW²
    label_smoothing: float = 0.0  # ε: targets (1-ε)·one-hot + ε/10
    epochs: int = 10              # passes over the training images
    iterations: int | None = None  # total gradient steps; when set, it replaces epochs
    batch_size: int = 128         # examples per step; 0 = all of them (full-batch)
    val_size: int = 5000          # training images held out to validate (the seed's dev set)
    select_best: bool = True      # keep the epoch with the best validation accuracy
    standardize: bool = True      # inputs (x/255 - mean)/std of the training set; else x/255
    augment: float = 0.0          # strength of random deformations of the training images
                                  # (1.0: ±10° rotation, ±10 % scale, ±0.2 slant, ±1 px shift,
                                  # 1 px elastic warp, 20 % of strokes thinned or thickened)
    seed: int = 0                 # one seed for every random draw
    dtype: str = "float32"        # "float32" or "float64"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # The original notebook: inputs /255, W and b uniform in [-0.5, 0.5), full-batch gradient
    # descent, α = 0.10, 500 iterations, 1,000 training images held out as the dev set.
    "seed": dict(init="uniform", optimizer="gd", lr=0.10, schedule="constant", iterations=500,
                 epochs=500, batch_size=0, val_size=1000, standardize=False, select_best=False,
                 l2=0.0),
    # The same 784-10-10 network trained well in a few seconds.
    "default": dict(init="he", optimizer="adam", lr=0.01, schedule="onecycle", epochs=15,
                    batch_size=64, val_size=5000, standardize=True, select_best=True,
                    l2=1e-4),
    # The most the same 784-10-10 network reaches: longer, and training digits randomly
    # slanted, rotated, scaled, shifted, warped and re-stroked (chosen on validation accuracy
    # over seeds 0-4 and the robustness set; it also reads people's handwriting better). A
    # peak rate of 0.01 beat 0.02 and 0.005 on the mean validation accuracy of those seeds.
    "best": dict(init="he", optimizer="adam", lr=0.01, schedule="onecycle", epochs=40,
                 batch_size=128, val_size=5000, standardize=True, select_best=True, l2=1e-4,
                 augment=0.5),
}

# Bounds a value must lie within: (low, high, whether low itself is allowed).
_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "hidden": (1, 4096, True),
    "layers": (1, 8, True),
    "lr": (0, 1e6, False),
    "momentum": (0, 1, True),
    "l2": (0, 1e3, True),
    "label_smoothing": (0, 1, True),
    "epochs": (1, 100_000, True),
    "iterations": (1, 10_000_000, True),
    "batch_size": (0, 1_000_000, True),
    "val_size": (0, 1_000_000, True),
    "seed": (0, 2**63 - 1, True),
    "augment": (0, 3, True),
}
_REALS = ("lr", "momentum", "l2", "label_smoothing", "augment")  # the others count things
_CHOICES = {"init": network.INITS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES,
            "dtype": ("float32", "float64")}


def _check(config: TrainConfig) -> TrainConfig:
    for name, (low, high, low_ok) in _BOUNDS.items():
        value = getattr(config, name)
        if value is None:
            continue
        whole = name not in _REALS
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if whole
                                                     else numbers.Real):
            raise ConfigError(f"{name} = {value!r} is not {'a whole' if whole else 'a'} number")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name} = {value} is not a finite number")
        if value < low or (value == low and not low_ok) or value > high:  # type: ignore[operator]
            lower = f">= {low:g}" if low_ok else f"> {low:g}"
            raise ConfigError(f"{name} = {value:g} is out of range; it must be {lower} and "
                              f"<= {high:g}")
    if config.momentum >= 1:
        raise ConfigError(f"momentum = {config.momentum:g} must be below 1")
    if config.label_smoothing >= 1:
        raise ConfigError(f"label_smoothing = {config.label_smoothing:g} must be below 1")
    for name, choices in _CHOICES.items():
        if getattr(config, name) not in choices:
            raise ConfigError(f"unknown {name} {getattr(config, name)!r}; choose one of "
                              f"{', '.join(choices)}")
    return config


def make_config(preset: str = "default", **overrides: Any) -> TrainConfig:
    """The preset's config with ``overrides`` (those not None) applied, checked.

    Raises
    ------
    ConfigError
        For an unknown preset or option, or a value out of range.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    if overrides.get("epochs") is not None and overrides.get("iterations") is None:
        values["iterations"] = None  # asking for epochs replaces a preset's iteration count
    return _check(TrainConfig(preset=preset, **values))


# ------------------------------------------------------------------------------------------


@dataclass
class EpochRecord:
    """What one epoch produced; the history is a list of these, by field."""

    epoch: int
    step: int
    lr: float
    loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclass
class TrainResult:
    model: Model
    history: dict[str, list[float]] = field(default_factory=dict)


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


def _pixel_stats(images: np.ndarray, exclude: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of pixels/255 over the images not in ``exclude``."""
    n, total, squares = _pixel_sums(images)
    if len(exclude):
        n_out, total_out, squares_out = _pixel_sums(images[exclude])
        n, total, squares = n - n_out, total - total_out, squares - squares_out
    mean = total / n / 255
    std = math.sqrt(squares * n - total * total) / n / 255  # exact integers under the root
    return mean, std if std > 0 else 1.0


class _LossWatch:
    """Tells when the loss has run away although it stays finite.

    ``cross_entropy`` clips probabilities, so a run whose steps overshoot keeps a finite loss: it
    climbs toward -log(1e-12) ≈ 27.6 while the hidden units die. The watch averages the data loss
    over about the last ``EXAMPLES`` examples (one hard minibatch must not count) and reports a
    rise above ``RISE`` times its start, or times log(n_classes), the loss of a uniform guess, if
    that is larger.
    """

    RISE = 2.0
    EXAMPLES = 1000

    def __init__(self, n_classes: int) -> None:
        self.floor = math.log(n_classes)
        self.smoothed: float | None = None
        self.limit = math.inf

    def rose(self, data_loss: float, batch: int) -> bool:
        if self.smoothed is None:
            self.smoothed = data_loss
            self.limit = self.RISE * max(data_loss, self.floor)
        self.smoothed += min(1.0, batch / self.EXAMPLES) * (data_loss - self.smoothed)
        return self.smoothed > self.limit


# Images evaluated at a time: their float copies stay small (4 MiB), which keeps the peak memory
# of a training run near that of its data.
_BLOCK = 1024


class TrainingInterrupted(DigitnetError):
    """Training was asked to stop between two epochs; ``trainer`` holds where it got to."""

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(f"training stopped after epoch {trainer.epoch} of {trainer.epochs} "
                         f"(step {trainer.step} of {trainer.total_steps})")
        self.trainer = trainer


class Trainer:
    """Trains a network on uint8 images (n, 28, 28) or (n, 784) with labels (n,).

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
        How the steps run: ``numba`` or ``numpy`` (the fast kernels of :mod:`digitnet.fast`),
        ``reference`` (:mod:`digitnet.network` as written) or ``auto`` (the default, also
        read from ``DIGITNET_BACKEND``): numba where it is installed and applies, else numpy.
        A backend gives bit-identical results for the same seed; backends differ from each
        other in the last bits, as their sums run in different orders.
    """

    def __init__(self, config: TrainConfig, images: np.ndarray, labels: np.ndarray,
                 n_classes: int = 10, preprocessing: Preprocessing | None = None,
                 backend: str | None = None) -> None:
        self.config = config
        self.images = np.ascontiguousarray(images).reshape(len(images), -1)
        self.labels = np.asarray(labels)
        self.n_classes = n_classes
        self.dtype = np.dtype(config.dtype).type
        n = len(self.images)
        if config.val_size >= n:
            raise ConfigError(f"val_size = {config.val_size} leaves no training images "
                              f"(there are {n})")
        seeds = np.random.SeedSequence(config.seed).spawn(2)
        order = np.random.default_rng(seeds[0]).permutation(n)
        self.val_idx = np.sort(order[:config.val_size])
        self.train_idx = np.sort(order[config.val_size:])
        self.n_train = len(self.train_idx)
        self.batch_size = self.n_train if config.batch_size in (0, None) else min(
            config.batch_size, self.n_train)
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        self.total_steps = config.iterations or config.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        if preprocessing is not None:
            self.preprocessing = preprocessing
        elif config.standardize:
            mean, std = _pixel_stats(self.images, self.val_idx)
            self.preprocessing = Preprocessing(1 / 255, mean, std)
        else:
            self.preprocessing = Preprocessing(1 / 255, 0.0, 1.0)
        sizes = (self.images.shape[1], *[config.hidden] * config.layers, n_classes)
        self.params = network.init_params(sizes, np.random.default_rng(seeds[1]), config.init,
                                          self.dtype)
        self.optimizer = make_optimizer(config.optimizer, config.momentum)
        self.schedule = Schedule(config.schedule, config.lr, self.total_steps)
        self.step = 0
        self.epoch = 0
        self.history: dict[str, list[float]] = {f.name: [] for f in fields(EpochRecord)}
        self.best: tuple[float, int, Params] | None = None
        self._full_batch: tuple[np.ndarray, np.ndarray] | None = None
        self._val: tuple[np.ndarray, np.ndarray] | None = None
        self._loss_watch = _LossWatch(n_classes)
        self.backend = fast.resolve_backend(backend, config.layers, config.dtype,
                                            self.images.shape[1], self.images.dtype,
                                            self.total_steps * self.batch_size)
        self._engine: fast.Engine | None = None
        self._engine_images: np.ndarray | None = None
        self._images_now = self.images  # this epoch's images: augmented copies when augmenting
        self.seconds = 0.0  # training time so far, across resumed runs

    # -- data ---------------------------------------------------------------------------------

    def _targets(self, labels: np.ndarray) -> np.ndarray:
        Y = network.one_hot(labels, self.n_classes, self.dtype)
        eps = self.config.label_smoothing
        if eps:
            Y = Y * (1 - eps) + eps / self.n_classes
        return Y

    def _batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (self.preprocessing.apply(self._images_now[idx], self.dtype),
                self._targets(self.labels[idx]))

    def _epoch_order(self, epoch: int) -> np.ndarray:
        # Drawn from (seed, epoch) alone, so a resumed run shuffles exactly as an unbroken one.
        rng = np.random.default_rng([self.config.seed, epoch])
        return self.train_idx[rng.permutation(self.n_train)]

    def _batches(self, epoch: int):
        if self.batch_size >= self.n_train:
            if self._full_batch is None or self.config.augment:
                self._full_batch = self._batch(self.train_idx)
            yield self._full_batch, self.labels[self.train_idx]
            return
        order = self._epoch_order(epoch)
        for start in range(0, self.n_train, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield self._batch(idx), self.labels[idx]

    # -- one step, one epoch ------------------------------------------------------------------

    def _step(self, X: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
        fwd = network.forward(self.params, X)
        data_loss = network.cross_entropy(fwd.A[-1], Y)
        loss = data_loss + network.l2_penalty(self.params, self.config.l2)
        grads = network.backward(self.params, fwd, Y, self.config.l2)
        lr = self.schedule(self.step)
        self.optimizer.step(self.params, grads, lr)
        self.step += 1
        if (not math.isfinite(loss) or not self.params.all_finite()
                or self._loss_watch.rose(data_loss, len(X))):
            raise self._diverged(loss, lr)
        return loss, np.argmax(fwd.A[-1], axis=1)

    def _diverged(self, loss: float, lr: float) -> DivergenceError:
        return DivergenceError(
            f"training diverged at step {self.step} (loss {loss:.4g}, learning rate "
            f"{lr:.4g}); try a smaller learning rate, e.g. --lr {self._safer_lr():g}")

    def _safer_lr(self) -> float:
        """A tenth of the rate that diverged, and no more than the preset's own rate."""
        preset_lr = PRESETS.get(self.config.preset, {}).get("lr", self.config.lr)
        return min(self.config.lr / 10, preset_lr)

    def _fast_engine(self) -> fast.Engine:
        """The fast backend's engine over the current params and optimizer (which may have
        been replaced since the last run, as the estimator does to continue training)."""
        engine = self._engine
        if engine is None or engine.params is not self.params or (
                engine.flat.optimizer is not self.optimizer
                or self._engine_images is not self._images_now):
            engine = self._engine = fast.make_engine(
                self.backend, self.params, self.optimizer, self._images_now, self.labels,
                self.preprocessing, self.batch_size, self.config.l2,
                self.config.label_smoothing)
            self._engine_images = self._images_now
        return engine

    def _epoch_images(self, epoch: int) -> np.ndarray:
        """The images an epoch trains on: the originals, or, when augmenting, a copy whose
        training images are randomly deformed, drawn from (seed, epoch) alone."""
        if not self.config.augment:
            return self.images
        rng = np.random.default_rng([self.config.seed, epoch, 1])
        images = self.images.copy()
        images[self.train_idx] = augment.apply(self.images[self.train_idx],
                                               augment.recipe(self.config.augment), rng)
        return images

    def _run_fast_epoch(self, epoch: int) -> tuple[float, float]:
        """One epoch in a single call of the fast engine: the same batches, the same schedule."""
        order = self.train_idx if self.batch_size >= self.n_train else self._epoch_order(epoch)
        steps = min(self.steps_per_epoch, self.total_steps - self.step)
        lrs = np.array([self.schedule(self.step + s) for s in range(steps)])
        done = self._fast_engine().run(order, lrs, self._loss_watch)
        self.step += done.steps
        if done.diverged:
            raise self._diverged(done.last_loss, float(lrs[done.steps - 1]))
        return done.loss_sum / done.seen, done.correct / done.seen

    def _run_epoch(self, epoch: int) -> tuple[float, float]:
        """Train one epoch; returns the mean loss and accuracy over its batches."""
        self._images_now = self._epoch_images(epoch)
        if self.backend != "reference":
            return self._run_fast_epoch(epoch)
        loss_sum, correct, seen = 0.0, 0, 0
        for (X, Y), y in self._batches(epoch):
            if self.step >= self.total_steps:
                break
            loss, predicted = self._step(X, Y)
            loss_sum += loss * len(y)
            correct += int(np.count_nonzero(predicted == y))
            seen += len(y)
        return loss_sum / seen, correct / seen

    def _probabilities(self, images: np.ndarray, params: Params) -> np.ndarray:
        """The network's output for raw images (reference backend: preprocessed input X)."""
        if self.backend == "reference":
            return network.forward(params, images).A[-1]
        return fast.Predictor(params, self.preprocessing, self.backend).predict_proba(images)

    def _validate(self) -> tuple[float, float]:
        if not len(self.val_idx):
            return float("nan"), float("nan")
        if self._val is None:
            if self.backend == "reference":
                self._val = self._batch(self.val_idx)
            else:  # the fast predictor reads the uint8 images as they are
                self._val = (self.images[self.val_idx],
                             self._targets(self.labels[self.val_idx]))
        X, Y = self._val
        P = self._probabilities(X, self.params)
        accuracy = float(np.mean(np.argmax(P, axis=1) == self.labels[self.val_idx]))
        return network.cross_entropy(P, Y), accuracy

    def accuracy(self, idx: np.ndarray, params: Params | None = None) -> float:
        """Accuracy of ``params`` (default: the current ones) on the images at ``idx``."""
        if not len(idx):
            return float("nan")
        params = params or self.params
        correct = 0
        for start in range(0, len(idx), _BLOCK):
            part = idx[start:start + _BLOCK]
            images = self.images[part]
            if self.backend == "reference":
                images = self.preprocessing.apply(images, self.dtype)
            predicted = np.argmax(self._probabilities(images, params), axis=1)
            correct += int(np.count_nonzero(predicted == self.labels[part]))
        return correct / len(idx)

    # -- the loop -----------------------------------------------------------------------------

    def run(self, callback: Callable[[EpochRecord], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> Model:
        """Train until ``total_steps``; ``callback`` receives each epoch's record.

        ``should_stop`` is asked after each epoch; when it answers True, training stops with
        :class:`TrainingInterrupted`, which carries this trainer so it can be checkpointed and
        resumed. BLAS runs on one thread meanwhile: these matrices are too small for a second
        to pay.
        """
        with fast.blas_threads(1):
            return self._run(callback, should_stop)

    def _run(self, callback: Callable[[EpochRecord], None] | None,
             should_stop: Callable[[], bool] | None) -> Model:
        while self.step < self.total_steps:
            if should_stop is not None and should_stop():
                raise TrainingInterrupted(self)
            t0 = time.perf_counter()
            lr = self.schedule(self.step)
            loss, train_accuracy = self._run_epoch(self.epoch)
            val_loss, val_accuracy = self._validate()
            self.epoch += 1
            seconds = time.perf_counter() - t0
            self.seconds += seconds
            record = EpochRecord(self.epoch, self.step, lr, loss, train_accuracy, val_loss,
                                 val_accuracy, seconds)
            for name, value in asdict(record).items():
                self.history[name].append(value)
            if self.config.select_best and len(self.val_idx):
                if self.best is None or val_accuracy > self.best[0]:
                    self.best = (val_accuracy, self.epoch, self.params.copy())
            if callback is not None:
                callback(record)
        return self._model(self.seconds)

    def _model(self, seconds: float) -> Model:
        params, chosen = self.params, self.epoch
        if self.best is not None:
            _, chosen, params = self.best
        metrics = {
            "train_accuracy": self.accuracy(self.train_idx, params),
            "dev_accuracy": self.accuracy(self.val_idx, params),
            "train_seconds": seconds,
            "epochs": self.epoch,
            "iterations": self.step,
            "chosen_epoch": chosen,
        }
        meta = {"config": self.config.to_dict(), "preset": self.config.preset,
                "metrics": metrics, "history": self.history}
        return Model(params, self.preprocessing, meta)


def train(config: TrainConfig, images: np.ndarray, labels: np.ndarray,
          callback: Callable[[EpochRecord], None] | None = None) -> Model:
    """Train a network on images (n, 28, 28) uint8 and labels (n,); see :class:`Trainer`."""
    return Trainer(config, images, labels).run(callback)


def train_on_dataset(
    config: TrainConfig,
    data_dir: str | Path | None = None,
    callback: Callable[[EpochRecord], None] | None = None,
    download: bool = True,
    progressbar: Any = None,
    *,
    resume: str | Path | None = None,
    on_start: Callable[[Trainer], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Model:
    """Train on the config's named dataset and report test accuracy (never used to choose).

    The model's metadata records the dataset's content hashes and the class names.

    Parameters
    ----------
    resume
        A checkpoint to continue from (see :mod:`digitnet.checkpoint`); its config replaces
        ``config``, and the run ends with the weights an unbroken run would have had.
    on_start
        Called with the trainer before the first epoch (to checkpoint it as it goes).
    should_stop
        Asked after each epoch; True stops training with :class:`TrainingInterrupted`.
    """
    from digitnet import checkpoint, datasets

    state = None
    if resume is not None:
        state = checkpoint.read(resume)
        config = checkpoint.config_of(state[0])
    images, labels, train_files = datasets.load_split(config.dataset, "train", data_dir,
                                                      download, progressbar)
    test_images, test_labels, test_files = datasets.load_split(config.dataset, "test",
                                                               data_dir, download, progressbar)
    trainer = Trainer(config, images, labels)
    if state is not None:
        checkpoint.restore(trainer, *state)
    if on_start is not None:
        on_start(trainer)
    model = trainer.run(callback, should_stop)
    predicted = np.concatenate([model.predict(test_images[start:start + _BLOCK])
                                for start in range(0, len(test_images), _BLOCK)])
    model.meta["metrics"]["test_accuracy"] = float(np.mean(predicted == test_labels))
    model.meta["class_names"] = list(datasets.DATASETS[config.dataset].class_names)
    model.meta["datasets"] = {
        "name": config.dataset,
        "train": {"source": train_files.source, "sha256": train_files.sha256},
        "test": {"source": test_files.source, "sha256": test_files.sha256},
    }
    return model


def with_overrides(config: TrainConfig, **overrides: Any) -> TrainConfig:
    """A copy of ``config`` with some fields changed, checked again."""
    return _check(replace(config, **overrides))
