"""The trainer driven from outside: its events, stop() and its state as a dict."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from digitnet import training
from digitnet.errors import ConfigError
from digitnet.training import Progress, Trainer, make_config
from tiny_data import prototypes, same_params


def blobs(n: int = 500, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    return prototypes(n, seed)


@pytest.mark.parametrize("backend", ["reference", "numpy"])
def test_events_are_immutable_records_of_every_epoch(backend):
    images, labels = blobs()
    config = make_config("default", epochs=3, val_size=100, batch_size=50)
    trainer = Trainer(config, images, labels, backend=backend)
    records = list(trainer.events(snapshots=True))
    assert [r.epoch for r in records] == [1, 2, 3]
    assert [r.step for r in records] == [8, 16, 24]
    assert all(r.total_steps == 24 for r in records)
    assert records[-1].fraction == 1.0
    with pytest.raises(AttributeError):
        records[0].loss = 0.0  # type: ignore[misc]
    # A snapshot is a copy: later steps do not move it, and it equals the params of its time.
    assert not np.array_equal(records[0].params.W[0], records[-1].params.W[0])
    assert same_params(records[-1].params, trainer.params)
    assert not trainer.stopped and trainer.done
    assert trainer.result().meta["history"]["val_accuracy"] == [r.val_accuracy for r in records]


def test_without_snapshots_records_carry_no_parameters():
    images, labels = blobs()
    trainer = Trainer(make_config("default", epochs=1, val_size=100), images, labels)
    assert [r.params for r in trainer.events()] == [None]


def test_stop_ends_the_run_at_the_next_step():
    images, labels = blobs()
    config = make_config("default", epochs=10, val_size=100, batch_size=40)
    trainer = Trainer(config, images, labels, backend="numpy")
    seen: list[Progress] = []
    for record in trainer.events():
        seen.append(record)
        if record.epoch == 2:
            trainer.stop()
    assert [r.epoch for r in seen] == [1, 2]
    assert trainer.stopped and not trainer.done
    assert (trainer.epoch, trainer.step) == (2, 2 * trainer.steps_per_epoch)


def test_stop_from_another_thread_mid_epoch_keeps_a_resumable_state():
    images, labels = blobs(n=2000)
    config = make_config("default", epochs=3, val_size=100, batch_size=10)
    unbroken = Trainer(config, images, labels, backend="numpy").run()

    trainer = Trainer(config, images, labels, backend="numpy")
    steps_seen = threading.Event()
    calls = {"n": 0}
    real = trainer.optimizer.step

    def step_then_maybe_stop(*args, **kwargs):  # stop from a thread after 57 steps
        real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 57:
            thread = threading.Thread(target=trainer.stop)
            thread.start()
            thread.join()
            steps_seen.set()

    trainer.optimizer.step = step_then_maybe_stop  # type: ignore[method-assign]
    assert list(trainer.events()) == []  # stopped inside the first epoch: no record
    assert steps_seen.is_set() and trainer.stopped and trainer.step == 57

    resumed = Trainer(config, images, labels, backend="numpy")
    resumed.load_state_dict(trainer.state_dict())
    model = resumed.run()
    assert same_params(model.params, unbroken.params)


def test_full_batch_runs_report_every_ten_steps():
    images, labels = blobs()
    config = make_config("seed", iterations=25, val_size=100)
    records = list(Trainer(config, images, labels).events())
    assert [r.step for r in records] == [10, 20, 25]


@pytest.mark.parametrize("backend", ["reference", "numpy"])
def test_state_dict_round_trip_continues_bit_for_bit(backend):
    images, labels = blobs()
    config = make_config("default", epochs=4, val_size=100, batch_size=64)
    unbroken = Trainer(config, images, labels, backend=backend).run()
    first = Trainer(config, images, labels, backend=backend)
    events = first.events()
    next(events)
    next(events)
    state = first.state_dict()
    events.close()
    second = Trainer(config, images, labels, backend=backend)
    second.load_state_dict(state)
    assert (second.epoch, second.step) == (2, state["step"])
    model = second.run()
    assert same_params(model.params, unbroken.params)
    assert model.meta["history"]["val_accuracy"] == unbroken.meta["history"]["val_accuracy"]


def test_state_dict_is_a_copy():
    images, labels = blobs()
    trainer = Trainer(make_config("default", epochs=2, val_size=100), images, labels)
    events = trainer.events()
    next(events)
    state = trainer.state_dict()
    kept = state["params"].copy()
    next(events)
    assert same_params(state["params"], kept)


def test_a_state_that_does_not_fit_is_refused():
    images, labels = blobs()
    small = Trainer(make_config("default", epochs=1, val_size=100), images, labels)
    wide = Trainer(make_config("default", epochs=1, val_size=100, hidden=12), images, labels)
    with pytest.raises(ValueError, match="where the network has"):
        wide.load_state_dict(small.state_dict())


def test_soft_targets_replace_the_labels():
    images, labels = blobs()
    config = make_config("default", epochs=2, val_size=100)
    one_hot = np.eye(10, dtype=np.float32)[labels]
    plain = Trainer(config, images, labels, backend="numpy").run()
    same = Trainer(config, images, labels, backend="numpy", targets=one_hot).run()
    assert same_params(plain.params, same.params)
    shifted = Trainer(config, images, labels, backend="numpy",
                      targets=np.roll(one_hot, 1, axis=1)).run()
    # Learning the next class instead: the labels still count, so accuracy collapses.
    assert shifted.meta["metrics"]["train_accuracy"] < 0.2


def test_config_error_names_its_field():
    with pytest.raises(ConfigError) as caught:
        make_config("default", hidden=0)
    assert caught.value.field == "hidden"
    with pytest.raises(ConfigError) as caught:
        training.TrainConfig(lr=-1.0).validate()
    assert caught.value.field == "lr"
