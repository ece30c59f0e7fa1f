"""The next epoch built on a background thread: the same results as building each in turn."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from digitnet.errors import ConfigError
from digitnet.training import Trainer, make_config
from digitnet.training.prefetch import Prefetch


def blobs(n: int = 400, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Ten classes of small bright squares at a class's own place on a 28x28 frame."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = np.zeros((n, 28, 28), np.uint8)
    for i, label in enumerate(labels):
        top, left = 4 + 2 * (label // 5) * 5, 3 + 4 * (label % 5)
        images[i, top:top + 8, left:left + 5] = rng.integers(120, 256)
    return images, labels


def weights(model) -> list[np.ndarray]:
    return [*model.params.W, *model.params.b]


def test_get_returns_what_was_built_ahead_once_and_builds_other_epochs_itself():
    calls: list[tuple[int, str]] = []

    def build(epoch: int) -> int:
        calls.append((epoch, threading.current_thread().name))
        return epoch * 10

    prefetch = Prefetch(build)
    assert prefetch.get(0) == 0
    prefetch.ahead(1)
    prefetch.ahead(1)  # asked twice, built once
    assert prefetch.get(1) == 10
    assert prefetch.get(1) == 10  # nothing pending now: built again, here
    prefetch.ahead(5)
    assert prefetch.get(2) == 20  # the wrong epoch was started: it is dropped
    prefetch.close()
    # epoch 5 was built, or cancelled before it started
    assert [epoch for epoch, _ in calls if epoch != 5] == [0, 1, 1, 2]
    assert calls[1][1].startswith("prefetch") and calls[2][1] == threading.current_thread().name


def test_an_error_in_a_background_build_reaches_the_caller():
    def build(epoch: int) -> int:
        if epoch == 3:
            raise ValueError("epoch 3 cannot be built")
        return epoch

    prefetch = Prefetch(build)
    prefetch.ahead(3)
    with pytest.raises(ValueError, match="epoch 3"):
        prefetch.get(3)
    prefetch.ahead(3)
    prefetch.discard()  # a dropped build's error is not raised
    assert prefetch.get(4) == 4
    prefetch.close()


@pytest.mark.parametrize("backend", ["numpy", "reference"])
def test_augmented_run_with_prefetch_equals_one_built_in_turn(monkeypatch, backend):
    images, labels = blobs()
    config = make_config("default", epochs=4, val_size=60, batch_size=32, augment=1.0, seed=3)
    background = Trainer(config, images, labels, backend=backend).run()
    monkeypatch.setattr(Prefetch, "ahead", lambda self, epoch: None)
    in_turn = Trainer(config, images, labels, backend=backend).run()
    assert all(np.array_equal(a, b) for a, b in zip(weights(background), weights(in_turn),
                                                    strict=True))
    assert background.meta["history"] == {**in_turn.meta["history"],
                                          "seconds": background.meta["history"]["seconds"]}


def test_stopping_an_augmented_run_and_resuming_equals_an_unbroken_one():
    images, labels = blobs()
    config = make_config("default", epochs=5, val_size=60, batch_size=32, augment=0.5, seed=2)
    unbroken = Trainer(config, images, labels, backend="numpy").run()
    first = Trainer(config, images, labels, backend="numpy")
    for record in first.events():
        if record.epoch == 2:
            first.stop()  # the third epoch is being built ahead meanwhile
    assert first.stopped and first.epoch == 2
    second = Trainer(config, images, labels, backend="numpy")
    second.load_state_dict(first.state_dict())
    assert all(np.array_equal(a, b) for a, b in zip(weights(second.run()), weights(unbroken),
                                                    strict=True))


def test_abandoning_the_events_leaves_no_background_thread():
    images, labels = blobs()
    config = make_config("default", epochs=6, val_size=60, batch_size=32, augment=1.0)
    trainer = Trainer(config, images, labels, backend="numpy")
    events = trainer.events()
    next(events)
    assert any(t.name.startswith("prefetch") for t in threading.enumerate())
    events.close()
    assert not any(t.name.startswith("prefetch") for t in threading.enumerate())


def test_the_last_clean_epochs_train_on_the_images_as_they_are(monkeypatch):
    images, labels = blobs()
    config = make_config("default", epochs=4, val_size=60, batch_size=32, augment=1.0,
                         clean_epochs=2)
    built: list[int] = []
    real = Trainer._augmented_engine
    monkeypatch.setattr(Trainer, "_augmented_engine",
                        lambda self, epoch: built.append(epoch) or real(self, epoch))
    trainer = Trainer(config, images, labels, backend="numpy")
    assert [trainer.augmented(e) for e in range(4)] == [True, True, False, False]
    flat = images.reshape(len(images), -1)
    assert np.array_equal(trainer.epoch_images(2), flat)
    assert not np.array_equal(trainer.epoch_images(1), flat)
    model = trainer.run()
    assert sorted(built) == [0, 1]  # nothing deformed for the clean epochs
    # the same as two augmented epochs, then two more of the same run on the originals
    first = Trainer(make_config("default", epochs=4, val_size=60, batch_size=32, augment=1.0),
                    images, labels, backend="numpy")
    events = first.events()
    next(events), next(events)
    state = first.state_dict()
    events.close()
    plain = Trainer(make_config("default", epochs=4, val_size=60, batch_size=32), images,
                    labels, backend="numpy")
    plain.load_state_dict(state)
    assert all(np.array_equal(a, b) for a, b in zip(weights(model), weights(plain.run()),
                                                    strict=True))


def test_clean_epochs_is_checked():
    with pytest.raises(ConfigError, match="clean_epochs"):
        make_config("best", clean_epochs=-1)


def test_augment_share_deforms_that_fraction_of_the_training_images():
    images, labels = blobs(n=1000)
    config = make_config("default", epochs=2, val_size=100, augment=1.0, augment_share=0.3)
    trainer = Trainer(config, images, labels, backend="numpy")
    flat = images.reshape(len(images), -1)
    epoch = trainer.epoch_images(0)
    changed = np.any(epoch != flat, axis=1)
    assert not changed[trainer.val_idx].any()
    assert 0.2 < changed[trainer.train_idx].mean() < 0.4
    assert np.array_equal(epoch, trainer.epoch_images(0))  # drawn from (seed, epoch) alone
    assert not np.array_equal(epoch, trainer.epoch_images(1))
    every = Trainer(make_config("default", epochs=2, val_size=100, augment=1.0), images,
                    labels, backend="numpy").epoch_images(0)
    assert np.any(every != flat, axis=1)[trainer.train_idx].mean() > 0.9


@pytest.mark.parametrize("share", [0.0, 1.5, -0.1])
def test_augment_share_is_checked(share):
    with pytest.raises(ConfigError, match="augment_share"):
        make_config("best", augment_share=share)
