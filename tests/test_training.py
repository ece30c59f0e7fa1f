"""Training: config and presets, reproducibility, the one loop, divergence, learning."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from digitnet import network, training
from digitnet.errors import ConfigError, DivergenceError
from digitnet.training import PRESETS, TrainConfig, Trainer, make_config


def blobs(n: int = 600, classes: int = 10, noise: float = 60.0, seed: int = 0, draw: int = 0):
    """Images scattered around one random 28x28 centre per class: separable, small, fast.

    ``seed`` picks the centres, ``draw`` the images around them.
    """
    centres = np.random.default_rng(seed).integers(0, 256, (classes, 784))
    rng = np.random.default_rng([seed, draw])
    labels = rng.integers(0, classes, n)
    pixels = centres[labels] + rng.normal(0, noise, (n, 784))
    return np.clip(pixels, 0, 255).astype(np.uint8).reshape(n, 28, 28), labels


@pytest.fixture(scope="module")
def data():
    return blobs()


def arrays_of(model) -> list[np.ndarray]:
    return [*model.params.W, *model.params.b]


# ------------------------------------------------------------------------------------------
# Config and presets


def test_default_preset():
    config = make_config()
    assert config == make_config("default")
    assert (config.preset, config.init, config.optimizer, config.schedule) == (
        "default", "he", "adam", "onecycle")
    assert (config.lr, config.epochs, config.batch_size, config.val_size) == (0.01, 15, 64, 5000)
    assert config.iterations is None and config.standardize and config.select_best
    assert (config.hidden, config.layers, config.dtype, config.seed) == (10, 1, "float32", 0)


def test_seed_preset_is_the_original_notebook():
    config = make_config("seed")
    assert (config.init, config.optimizer, config.lr, config.schedule) == (
        "uniform", "gd", 0.10, "constant")
    assert (config.iterations, config.batch_size, config.val_size) == (500, 0, 1000)
    assert not config.standardize and not config.select_best and config.l2 == 0


def test_overrides_apply_and_none_means_the_preset():
    config = make_config("seed", lr=0.5, hidden=32, layers=2, seed=7, optimizer=None)
    assert (config.lr, config.hidden, config.layers, config.seed) == (0.5, 32, 2, 7)
    assert config.optimizer == "gd" and config.preset == "seed"


def test_epochs_replace_a_presets_iteration_count():
    assert make_config("seed", epochs=3).iterations is None
    assert make_config("seed", epochs=3).epochs == 3
    assert make_config("seed", epochs=3, iterations=7).iterations == 7


def test_config_is_frozen_and_serialisable():
    config = make_config()
    with pytest.raises(AttributeError):
        config.lr = 1.0  # type: ignore[misc]
    assert TrainConfig(**config.to_dict()) == config
    assert set(config.to_dict()) >= {"lr", "epochs", "seed", "preset"}
    assert training.with_overrides(config, lr=0.2).lr == 0.2
    with pytest.raises(ConfigError, match="lr"):
        training.with_overrides(config, lr=-0.2)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_is_valid(preset):
    assert make_config(preset).preset == preset


BAD = [
    (dict(optimizer="nope"), "optimizer"),
    (dict(schedule="nope"), "schedule"),
    (dict(init="zeros"), "init"),
    (dict(dtype="float16"), "dtype"),
    (dict(hidden=0), "hidden"),
    (dict(hidden=-3), "hidden"),
    (dict(hidden=100_000), "hidden"),
    (dict(hidden=2.5), "hidden"),
    (dict(hidden="10"), "hidden"),
    (dict(layers=0), "layers"),
    (dict(lr=-1.0), "lr"),
    (dict(lr=0.0), "lr"),
    (dict(lr=float("nan")), "lr"),
    (dict(lr=float("inf")), "lr"),
    (dict(lr=float("-inf")), "lr"),
    (dict(lr=1e7), "lr"),
    (dict(lr=1e300), "lr"),
    (dict(lr="fast"), "lr"),
    (dict(momentum=1.0), "momentum"),
    (dict(momentum=-0.1), "momentum"),
    (dict(l2=-1.0), "l2"),
    (dict(l2=float("nan")), "l2"),
    (dict(label_smoothing=1.0), "label_smoothing"),
    (dict(epochs=0), "epochs"),
    (dict(epochs=-2), "epochs"),
    (dict(epochs=True), "epochs"),
    (dict(iterations=0), "iterations"),
    (dict(batch_size=-1), "batch_size"),
    (dict(val_size=-1), "val_size"),
    (dict(seed=-1), "seed"),
    (dict(learning_rate=0.1), "learning_rate"),
]


@pytest.mark.parametrize(("overrides", "option"), BAD,
                         ids=[f"{k}={v!r}" for k, v in (next(iter(o.items())) for o, _ in BAD)])
@pytest.mark.parametrize("preset", ["seed", "default"])
def test_a_bad_value_is_a_config_error_naming_the_option(preset, overrides, option):
    with pytest.raises(ConfigError) as caught:
        make_config(preset, **overrides)
    message = str(caught.value)
    assert option in message
    assert "\n" not in message


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'nope'; choose one of seed, default"):
        make_config("nope")


def test_a_validation_set_as_large_as_the_data_is_refused(data):
    images, labels = data
    with pytest.raises(ConfigError, match="val_size = 600 leaves no training images"):
        training.train(make_config(val_size=600), images, labels)
    with pytest.raises(ConfigError, match="val_size"):
        training.train(make_config(val_size=10_000), images, labels)


# ------------------------------------------------------------------------------------------
# Randomness comes from the seed alone


def test_same_seed_gives_bit_identical_weights(data):
    images, labels = data
    config = make_config("default", epochs=2, val_size=100, seed=3)
    first = training.train(config, images, labels)
    second = training.train(config, images, labels)
    for a, b in zip(arrays_of(first), arrays_of(second), strict=True):
        assert np.array_equal(a, b)
    history = {k: v for k, v in first.meta["history"].items() if k != "seconds"}
    assert history == {k: v for k, v in second.meta["history"].items() if k != "seconds"}


def test_different_seed_gives_different_weights(data):
    images, labels = data
    first = training.train(make_config("default", epochs=1, val_size=100, seed=1), images, labels)
    second = training.train(make_config("default", epochs=1, val_size=100, seed=2), images,
                            labels)
    assert not np.array_equal(first.params.W[0], second.params.W[0])


def test_training_leaves_the_callers_arrays_alone(data):
    images, labels = data
    images_before, labels_before = images.copy(), labels.copy()
    training.train(make_config("default", epochs=1, val_size=100), images, labels)
    assert np.array_equal(images, images_before) and np.array_equal(labels, labels_before)


def test_seed_decides_the_validation_split(data):
    images, labels = data
    a = Trainer(make_config(val_size=100, seed=1), images, labels)
    b = Trainer(make_config(val_size=100, seed=1), images, labels)
    c = Trainer(make_config(val_size=100, seed=2), images, labels)
    assert np.array_equal(a.val_idx, b.val_idx)
    assert not np.array_equal(a.val_idx, c.val_idx)
    assert len(a.val_idx) == 100 and len(a.train_idx) == 500
    assert not set(a.val_idx) & set(a.train_idx)


# ------------------------------------------------------------------------------------------
# Full-batch gradient descent is the same loop


def test_full_batch_is_gradient_descent_on_all_training_images(data):
    images, labels = data
    config = make_config("seed", iterations=5, val_size=100)
    trainer = Trainer(config, images, labels)
    params = trainer.params.copy()
    model = trainer.run()

    # The seed's loop, written out: every step sees all training images.
    X = trainer.preprocessing.apply(images[trainer.train_idx], np.float32)
    Y = network.one_hot(labels[trainer.train_idx], 10, np.float32)
    for _ in range(5):
        grads = network.backward(params, network.forward(params, X), Y)
        for p, g in zip((*params.W, *params.b), (*grads.dW, *grads.db), strict=True):
            p -= 0.1 * g
    for ours, theirs in zip(arrays_of(model), (*params.W, *params.b), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert model.meta["metrics"]["iterations"] == 5
    assert model.meta["metrics"]["epochs"] == 5  # one step is one epoch


def test_batch_size_zero_means_one_batch_of_everything(data):
    images, labels = data
    whole = training.train(make_config("seed", iterations=4, val_size=100, batch_size=0),
                           images, labels)
    n_train = training.train(make_config("seed", iterations=4, val_size=100, batch_size=500),
                             images, labels)
    larger = training.train(make_config("seed", iterations=4, val_size=100, batch_size=9999),
                            images, labels)
    for a, b, c in zip(arrays_of(whole), arrays_of(n_train), arrays_of(larger), strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_minibatches_take_ceil_n_over_batch_steps_per_epoch(data):
    images, labels = data
    model = training.train(make_config("default", epochs=3, batch_size=64, val_size=100),
                           images, labels)
    steps = math.ceil(500 / 64)
    assert model.meta["history"]["step"] == [steps, 2 * steps, 3 * steps]
    assert model.meta["metrics"]["iterations"] == 3 * steps


def test_iterations_can_end_inside_an_epoch(data):
    images, labels = data
    model = training.train(make_config("default", iterations=10, batch_size=64, val_size=100),
                           images, labels)
    assert model.meta["metrics"]["iterations"] == 10
    assert model.meta["history"]["step"] == [8, 10]


# ------------------------------------------------------------------------------------------
# Divergence


@pytest.mark.parametrize("preset", ["seed", "default"])
@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam"])
def test_a_huge_learning_rate_raises_divergence_within_a_few_steps(data, preset, optimizer):
    images, labels = data
    config = make_config(preset, lr=1e4, optimizer=optimizer, val_size=100, epochs=50)
    with pytest.raises(DivergenceError) as caught:
        training.train(config, images, labels)
    message = str(caught.value)
    # A tenth of the rate that diverged, but never more than the preset's own rate.
    suggested = min(1e3, training.PRESETS[preset]["lr"])
    assert "smaller learning rate" in message and f"--lr {suggested:g}" in message
    step = int(re.search(r"at step (\d+)", message).group(1))
    assert step <= 10


def test_small_noisy_batches_at_a_sound_rate_do_not_count_as_divergence(data):
    images, labels = data
    model = training.train(make_config("default", batch_size=1, lr=1e-3, epochs=2,
                                       val_size=100), images, labels)
    assert model.meta["metrics"]["dev_accuracy"] > 0.9


# ------------------------------------------------------------------------------------------
# Learning, history, choosing the best epoch


@pytest.mark.parametrize("preset", ["seed", "default"])
def test_training_learns_a_separable_problem(preset):
    images, labels = blobs(noise=100)
    model = training.train(make_config(preset, val_size=100), images, labels)
    metrics = model.meta["metrics"]
    assert metrics["train_accuracy"] >= 0.95
    assert metrics["dev_accuracy"] >= 0.95
    held_out, truth = blobs(n=300, noise=100, draw=1)  # new images around the same centres
    assert np.mean(model.predict(held_out) == truth) >= 0.95
    history = model.meta["history"]
    assert history["loss"][-1] < history["loss"][0]


def test_two_hidden_layers_and_float64_train_too(data):
    images, labels = data
    model = training.train(make_config("default", layers=2, hidden=16, dtype="float64",
                                       epochs=3, val_size=100), images, labels)
    assert model.sizes == (784, 16, 16, 10)
    assert model.params.dtype == np.float64
    assert model.meta["metrics"]["dev_accuracy"] >= 0.9


@pytest.mark.parametrize(("overrides", "epochs"), [(dict(epochs=3), 3),
                                                   (dict(epochs=1), 1)])
def test_history_has_one_entry_per_epoch(data, overrides, epochs):
    images, labels = data
    model = training.train(make_config("default", val_size=100, **overrides), images, labels)
    history = model.meta["history"]
    assert set(history) == {"epoch", "step", "lr", "loss", "train_accuracy", "val_loss",
                            "val_accuracy", "seconds"}
    assert all(len(values) == epochs for values in history.values())
    assert history["epoch"] == list(range(1, epochs + 1))
    assert model.meta["metrics"]["epochs"] == epochs


def test_full_batch_history_has_an_entry_every_ten_steps_and_at_the_end(data):
    images, labels = data
    model = training.train(make_config("seed", iterations=23, val_size=100), images, labels)
    history = model.meta["history"]
    assert history["step"] == [10, 20, 23]
    assert history["epoch"] == [10, 20, 23]  # full-batch: an epoch is a step
    assert all(len(values) == 3 for values in history.values())


def test_callback_sees_every_epoch(data):
    images, labels = data
    seen = []
    training.train(make_config("default", epochs=4, val_size=100), images, labels, seen.append)
    assert [record.epoch for record in seen] == [1, 2, 3, 4]


def test_select_best_keeps_the_best_validation_epoch():
    images, labels = blobs(n=400, noise=250)
    config = make_config("default", epochs=12, val_size=100, lr=0.1, schedule="constant")
    trainer = Trainer(config, images, labels)
    snapshots = []
    model = trainer.run(lambda record: snapshots.append(trainer.params.copy()))
    val_accuracy = model.meta["history"]["val_accuracy"]
    best = int(np.argmax(val_accuracy))  # the first of equals
    chosen = model.meta["metrics"]["chosen_epoch"]
    assert chosen == best + 1
    assert chosen < len(val_accuracy)  # the last epoch is not the best here
    assert max(val_accuracy[best + 1:]) < val_accuracy[best]
    for ours, kept in zip(arrays_of(model), (*snapshots[best].W, *snapshots[best].b),
                          strict=True):
        assert np.array_equal(ours, kept)
    assert model.meta["metrics"]["dev_accuracy"] == pytest.approx(val_accuracy[best])


def test_without_select_best_the_last_epoch_is_kept():
    images, labels = blobs(n=400, noise=250)
    config = make_config("default", epochs=12, val_size=100, lr=0.1, schedule="constant",
                         select_best=False)
    trainer = Trainer(config, images, labels)
    model = trainer.run()
    assert model.meta["metrics"]["chosen_epoch"] == 12
    for ours, last in zip(arrays_of(model), (*trainer.params.W, *trainer.params.b),
                          strict=True):
        assert np.array_equal(ours, last)


def test_no_validation_set(data):
    images, labels = data
    model = training.train(make_config("default", epochs=4, val_size=0), images, labels)
    assert math.isnan(model.meta["metrics"]["dev_accuracy"])
    assert all(math.isnan(v) for v in model.meta["history"]["val_accuracy"])
    assert model.meta["metrics"]["train_accuracy"] > 0.9


def test_the_model_records_its_config_and_preprocessing(data):
    images, labels = data
    config = make_config("default", epochs=1, val_size=100)
    model = training.train(config, images, labels)
    assert model.meta["config"] == config.to_dict()
    assert model.meta["preset"] == "default"
    pixels = images.reshape(600, -1)[np.sort(Trainer(config, images, labels).train_idx)] / 255
    assert model.preprocessing.mean == pytest.approx(pixels.mean())
    assert model.preprocessing.std == pytest.approx(pixels.std())
    seed = training.train(make_config("seed", iterations=1, val_size=100), images, labels)
    assert (seed.preprocessing.mean, seed.preprocessing.std) == (0.0, 1.0)
