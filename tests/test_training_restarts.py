"""Restarts: several starts trained a few epochs, the best on validation goes on."""

from __future__ import annotations

import numpy as np
import pytest

from digitnet import network
from digitnet.errors import ConfigError
from digitnet.training import Trainer, make_config
from tiny_data import prototypes, same_params


def blobs(n: int = 500, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Ten noisy classes, hard enough that starts differ after an epoch."""
    return prototypes(n, seed, noise=150)


CONFIG = dict(epochs=4, val_size=150, batch_size=25, lr=0.002, restart_epochs=1)


@pytest.mark.parametrize("augment", [0.0, 1.0])
def test_the_start_with_the_best_validation_accuracy_goes_on(augment):
    images, labels = blobs()
    config = make_config("default", **CONFIG, restarts=3, augment=augment)
    trainer = Trainer(config, images, labels, backend="numpy")
    records = list(trainer.events())
    assert [r.epoch for r in records] == [1, 2, 3, 4]
    assert len(trainer.history["val_accuracy"]) == 4

    # By hand: start 0 is the run's own initial weights, start i >= 1 draws from the seed's
    # child 1 + i; each trains one epoch, and the best then trains the other three.
    plain = make_config("default", **CONFIG, augment=augment)
    seeds = np.random.SeedSequence(config.seed).spawn(5)
    scores, states = [], []
    for i in range(4):
        start = Trainer(plain, images, labels, backend="numpy")
        if i:
            start.load_state_dict({"params": network.init_params(
                (784, 10, 10), np.random.default_rng(seeds[1 + i]), "he", np.float32)})
        scores.append(next(start.events()).val_accuracy)
        states.append(start.state_dict())
    assert len(set(scores)) > 1  # the starts do differ
    best = Trainer(plain, images, labels, backend="numpy")
    best.load_state_dict(states[int(np.argmax(scores))])
    assert same_params(best.run().params, trainer.result().params)
    assert same_params(best.params, trainer.params)
    assert records[0].val_accuracy == max(scores)


def test_restarts_are_deterministic_and_a_stop_during_them_starts_over():
    images, labels = blobs()
    config = make_config("default", **{**CONFIG, "restart_epochs": 2}, restarts=2,
                         augment=0.5)
    unbroken = Trainer(config, images, labels, backend="numpy").run()
    again = Trainer(config, images, labels, backend="numpy").run()
    assert same_params(unbroken.params, again.params)

    stopped = Trainer(config, images, labels, backend="numpy")
    real = stopped._advance
    calls = {"n": 0}

    def advance_then_stop(snapshots):  # stop inside the second start
        calls["n"] += 1
        if calls["n"] == 3:
            stopped.stop()
        return real(snapshots)

    stopped._advance = advance_then_stop  # type: ignore[method-assign]
    assert list(stopped.events()) == []
    assert stopped.stopped and (stopped.step, stopped.epoch) == (0, 0)
    resumed = Trainer(config, images, labels, backend="numpy")
    resumed.load_state_dict(stopped.state_dict())
    assert same_params(resumed.run().params, unbroken.params)


def test_restarts_need_validation_images():
    with pytest.raises(ConfigError, match="restarts") as info:
        make_config("default", restarts=2, val_size=0)
    assert info.value.field == "restarts"
    with pytest.raises(ConfigError, match="restart_epochs"):
        make_config("default", restarts=2, restart_epochs=0)
