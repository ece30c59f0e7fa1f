"""Augmentation, the robustness set, and the presets built on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from digitnet import augment, datasets, fast, robustness, training
from digitnet.cli import app


def digits(n: int = 8, seed: int = 0) -> np.ndarray:
    """Bars and boxes: simple uint8 shapes whose centre of mass is easy to follow."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for k in range(n):
        top, left = rng.integers(6, 10, 2)
        images[k, top:top + 12, left:left + 4] = 255
        images[k, top:top + 3, left:left + 10] = 200
    return images


def centre_of_mass(image: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0:28, 0:28]
    total = image.sum(dtype=np.float64)
    return np.array([(ys * image).sum() / total, (xs * image).sum() / total])


def test_no_deformation_returns_the_images_unchanged():
    images = digits()
    out = augment.apply(images, augment.Augment(), np.random.default_rng(0))
    assert out.dtype == np.uint8 and np.array_equal(out, images)


def test_shape_and_dtype_are_kept_and_the_input_is_not_touched():
    images = digits(5).reshape(5, 784)
    before = images.copy()
    out = augment.apply(images, augment.recipe(1.0), np.random.default_rng(0))
    assert out.shape == (5, 784) and out.dtype == np.uint8
    assert np.array_equal(images, before)
    assert not np.array_equal(out, images)


def test_same_generator_state_same_deformations():
    images = digits()
    a = augment.apply(images, augment.recipe(1.0), np.random.default_rng(7))
    b = augment.apply(images, augment.recipe(1.0), np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_a_shift_moves_the_centre_of_mass_by_at_most_the_shift():
    images = digits(20)
    out = augment.apply(images, augment.Augment(shift=2.0), np.random.default_rng(1))
    moved = np.array([centre_of_mass(o) - centre_of_mass(i) for i, o in zip(images, out,
                                                                             strict=True)])
    assert np.abs(moved).max() <= 2.0 + 0.25
    assert np.abs(moved).max() > 0.5


def test_a_rotation_keeps_the_ink_near_where_it_was():
    images = digits(20)
    out = augment.apply(images, augment.Augment(rotate=15), np.random.default_rng(2))
    ink_in = images.sum(axis=(1, 2), dtype=np.float64)
    ink_out = out.sum(axis=(1, 2), dtype=np.float64)
    assert np.all(np.abs(ink_out / ink_in - 1) < 0.1)  # bilinear resampling keeps the ink


def test_thickness_thickens_or_thins_strokes():
    images = digits(50)
    out = augment.thickness(images, 1.0, np.random.default_rng(3))
    change = out.sum(axis=(1, 2), dtype=np.int64) - images.sum(axis=(1, 2), dtype=np.int64)
    assert (change > 0).any() and (change < 0).any()
    assert np.array_equal(augment.thickness(images, 0.0, np.random.default_rng(3)), images)


@pytest.mark.skipif(not fast.numba_available(), reason="numba is not installed")
def test_numba_and_numpy_warps_agree_bit_for_bit():
    images = np.random.default_rng(5).integers(0, 256, (2100, 28, 28), dtype=np.uint8)
    images[:, :4] = 0  # some empty rows, as MNIST's borders
    for aug in (augment.recipe(1.0), augment.Augment(rotate=30, shift=3),
                augment.Augment(elastic=2.0, scale=0.3)):
        a = augment.apply(images, aug, np.random.default_rng(9), engine="numba")
        b = augment.apply(images, aug, np.random.default_rng(9), engine="numpy")
        assert np.array_equal(a, b)


@pytest.mark.skipif(not fast.numba_available(), reason="numba is not installed")
def test_numba_warp_skips_only_pixels_that_are_zero():
    # Small strokes anywhere, touching each edge of the frame, under strong maps: the numba
    # warp's rows skipped before their coordinates are computed must be zero in NumPy's too.
    rng = np.random.default_rng(11)
    images = np.zeros((600, 28, 28), dtype=np.uint8)
    for k in range(600):
        top, left = rng.integers(0, 25, 2)
        height, width = rng.integers(1, 10, 2)
        images[k, top:top + height, left:left + width] = rng.integers(1, 256)
    images[:4, 0, :] = 255  # the top row, the bottom row and the side columns
    images[4:8, -1, :] = 255
    images[8:12, :, 0] = 255
    images[12:16, :, -1] = 255
    for aug in (augment.Augment(rotate=45, shear=0.5, shift=4), augment.recipe(3.0),
                augment.Augment(scale=0.6, elastic=3.0), augment.Augment(rotate=90)):
        a = augment.apply(images, aug, np.random.default_rng(2), engine="numba")
        b = augment.apply(images, aug, np.random.default_rng(2), engine="numpy")
        assert np.array_equal(a, b)
        assert a.any()


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="numba, numpy"):
        augment.apply(digits(), augment.recipe(1.0), np.random.default_rng(0), engine="gpu")


def test_recipe_scales_every_deformation():
    assert augment.recipe(0.0) == augment.Augment()
    half, full = augment.recipe(0.5), augment.recipe(1.0)
    assert half.rotate == full.rotate / 2 and half.shift == full.shift / 2


def test_augmented_training_is_deterministic_and_leaves_validation_clean():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    labels = (np.arange(300) % 10).astype(np.uint8)
    config = training.make_config("default", epochs=2, val_size=50, augment=1.0)
    a = training.Trainer(config, images, labels)
    b = training.Trainer(config, images, labels)
    epoch_images = a.epoch_images(0)
    assert np.array_equal(epoch_images[a.val_idx], images.reshape(300, -1)[a.val_idx])
    assert not np.array_equal(epoch_images[a.train_idx], images.reshape(300, -1)[a.train_idx])
    assert np.array_equal(a.run().params.W[0], b.run().params.W[0])


def test_augment_is_checked():
    with pytest.raises(Exception, match="augment"):
        training.make_config("default", augment=-1.0)
    with pytest.raises(Exception, match="augment"):
        training.make_config("default", augment=float("nan"))


def test_every_preset_keeps_the_seed_architecture():
    for preset in training.PRESETS:
        config = training.make_config(preset)
        assert (config.hidden, config.layers) == (10, 1)
    assert training.make_config("best").augment > 0 == training.make_config("default").augment


# --------------------------------------------------------------------------------------------
# The robustness set


def test_robustness_cases_are_deterministic_pngs_of_their_own_size():
    images = np.repeat(digits(10), 3, axis=0)
    labels = np.arange(30) % 10
    a = robustness.make_cases(images, labels, per_transform=3, seed=4)
    b = robustness.make_cases(images, labels, per_transform=3, seed=4)
    assert len(a) == 3 * len(robustness.TRANSFORMS)
    assert [c.png for c in a] == [c.png for c in b]
    assert {c.transform for c in a} == set(robustness.TRANSFORMS)
    assert all(c.png.startswith(b"\x89PNG") for c in a)


def test_accuracy_by_transform_counts_refused_images_as_mistakes():
    images = np.repeat(digits(10), 2, axis=0)
    labels = np.arange(20) % 10
    cases = robustness.make_cases(images, labels, per_transform=2, seed=0)
    truth = np.array([c.label for c in cases])
    result = robustness.accuracy_by_transform(cases, truth)
    assert result["overall"] == 1.0
    predicted = truth.copy()
    predicted[0] = -1  # refused
    assert robustness.accuracy_by_transform(cases, predicted)["overall"] < 1.0


@pytest.mark.mnist
def test_best_preset_on_an_untuned_seed_and_the_robustness_command(mnist_dir, tmp_path):
    # The preset was chosen on the validation accuracy of seeds 0-4; seed 7 was not looked at.
    # Measured: 94.74 % test (seeds 0-4: 94.96 to 95.36 %); 95 % is not reached for every seed.
    runner = CliRunner()
    out = tmp_path / "best.safetensors"
    result = runner.invoke(app, ["train", "--preset", "best", "--seed", "7", "--data-dir",
                                 str(mnist_dir), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["test_accuracy"] >= 0.945, report["test_accuracy"]
    result = runner.invoke(app, ["robustness", str(out), "--per-transform", "20",
                                 "--data-dir", str(mnist_dir), "--json"])
    assert result.exit_code == 0, result.output
    accuracy = json.loads(result.stdout)["accuracy"]
    assert set(accuracy) == {*robustness.TRANSFORMS, "overall"}
    assert accuracy["clean"] >= 0.85 and accuracy["overall"] >= 0.75
    for photo in ("shadow", "lined", "squared", "pencil"):
        assert accuracy[photo] >= 0.7, (photo, accuracy[photo])


@pytest.mark.mnist
def test_augmented_training_on_mnist_learns(mnist_dir):
    images, labels = datasets.load("mnist", "train", mnist_dir)
    model = training.train(training.make_config("default", epochs=3, augment=0.5,
                                                val_size=2000),
                           images[:20000], labels[:20000])
    assert model.meta["metrics"]["dev_accuracy"] >= 0.85
