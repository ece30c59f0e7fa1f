"""Racing from scratch to a test accuracy: each peer trains an epoch at a time, its test
accuracy is measured after each (not counted as training time), until every target is reached
or the time cap runs out."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from digitnet import fast
from digitnet.bench.peers import (
    RACE_SETTINGS,
    BenchData,
    TorchNet,
    digitnet_trainer,
    sklearn_model,
)
from digitnet.bench.results import PeerRace, Races, Reached

__all__ = ["Race", "race_digitnet", "race_sklearn", "race_torch", "run_races"]


class Race:
    """Training time (evaluation excluded) until each target test accuracy is first reached."""

    def __init__(self, targets: tuple[float, ...], cap: float) -> None:
        self.targets = sorted(targets)
        self.cap = cap
        self.start = time.perf_counter()
        self.paused = 0.0
        self.epochs = 0
        self.reached: dict[float, Reached] = {}
        self.last_accuracy = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def after_epoch(self, accuracy_fn: Callable[[], float]) -> bool:
        """Record an epoch; True when the race is over (every target reached, or the cap)."""
        trained = self.elapsed()
        pause = time.perf_counter()
        accuracy = accuracy_fn()
        self.paused += time.perf_counter() - pause
        self.epochs += 1
        self.last_accuracy = accuracy
        for target in self.targets:
            if target not in self.reached and accuracy >= target:
                self.reached[target] = Reached(target, trained, self.epochs, accuracy, True)
        return len(self.reached) == len(self.targets) or trained >= self.cap

    def result(self) -> PeerRace:
        return PeerRace(tuple(
            self.reached.get(target)
            or Reached(target, self.cap, self.epochs, self.last_accuracy, False)
            for target in self.targets))


def race_digitnet(data: BenchData, targets: tuple[float, ...], cap: float) -> PeerRace:
    race = Race(targets, cap)
    trainer = digitnet_trainer(data, **RACE_SETTINGS["digitnet"])

    def accuracy() -> float:
        predictor = fast.Predictor(trainer.params, trainer.preprocessing, trainer.backend)
        return float(np.mean(predictor.predict(data.test_images) == data.test_labels))

    for _ in trainer.events():
        if race.after_epoch(accuracy):
            trainer.stop()
    return race.result()  # (a one-cycle run that ends short of a target counts as the cap)


def race_sklearn(data: BenchData, targets: tuple[float, ...], cap: float) -> PeerRace:
    import warnings

    race = Race(targets, cap)
    model = sklearn_model(RACE_SETTINGS["sklearn"]["batch_size"])
    classes = np.arange(10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while True:
            model.partial_fit(data.X, data.labels, classes=classes)
            if race.after_epoch(lambda: model.score(data.X_test, data.test_labels)):
                break
    return race.result()


def race_torch(data: BenchData, targets: tuple[float, ...], cap: float) -> PeerRace:
    race = Race(targets, cap)
    net = TorchNet(data, RACE_SETTINGS["torch"]["batch_size"])
    while True:
        net.epoch()
        if race.after_epoch(lambda: float(np.mean(net.predict(net.X_test) == data.test_labels))):
            break
    return race.result()


def run_races(data: BenchData, targets: tuple[float, ...], cap: float) -> Races:
    """Every peer's race, one after another."""
    return Races(settings=RACE_SETTINGS, cap_seconds=cap,
                 digitnet=race_digitnet(data, targets, cap),
                 sklearn=race_sklearn(data, targets, cap),
                 torch=race_torch(data, targets, cap))
