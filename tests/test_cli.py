"""End-to-end tests of train, evaluate, predict and gradcheck: in process and as a program.

The tests marked ``mnist`` train on the real MNIST; each preset is trained once per session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save as st_save
from typer.testing import CliRunner

from digitnet import datasets, modelfile, network
from digitnet.cli import app
from digitnet.model import Model, Preprocessing

DIGITNET = Path(sys.executable).with_name("digitnet")


def digitnet(*args: str | Path, env: dict[str, str] | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``digitnet`` program."""
    return subprocess.run([str(DIGITNET), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(stderr: str, *words: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]
    return lines[0]


@pytest.fixture
def no_data_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which no dataset can be found or fetched by accident."""
    env = {k: v for k, v in os.environ.items() if k != "DIGITNET_DATA"}
    env["DIGITNET_CACHE"] = str(tmp_path / "cache")
    return env


@pytest.fixture
def small_model(tmp_path: Path) -> Path:
    """A random (untrained) 784-10-10 model file: enough to exercise the commands."""
    params = network.init_params((784, 10, 10), np.random.default_rng(0))
    model = Model(params, Preprocessing(1 / 255, 0.13, 0.31), {"preset": "default"})
    return modelfile.save(model, tmp_path / "small.safetensors")


def write_png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)
    return path


# ------------------------------------------------------------------------------------------
# Bad options: one red line, exit 1, no traceback


BAD_OPTIONS = [
    (["--preset", "nope"], "preset"),
    (["--hidden", "0"], "hidden"),
    (["--lr", "nan"], "lr"),
    (["--lr", "-1"], "lr"),
    (["--lr", "inf"], "lr"),
    (["--epochs", "0"], "epochs"),
    (["--batch-size", "-5"], "batch_size"),
    (["--optimizer", "nope"], "optimizer"),
    (["--schedule", "nope"], "schedule"),
    (["--layers", "0"], "layers"),
    (["--iterations", "0"], "iterations"),
    (["--seed", "-1"], "seed"),
]


@pytest.mark.parametrize(("options", "option"), BAD_OPTIONS[:8],
                         ids=[" ".join(o) for o, _ in BAD_OPTIONS[:8]])
def test_program_refuses_bad_training_options(tmp_path, no_data_env, options, option):
    out = tmp_path / "model.safetensors"
    result = digitnet("train", *options, "--out", out, env=no_data_env)
    assert result.returncode == 1
    assert_one_line_error(result.stderr, option)
    assert result.stdout == ""
    assert not out.exists()


@pytest.mark.parametrize(("options", "option"), BAD_OPTIONS, ids=[" ".join(o) for o, _ in
                                                                  BAD_OPTIONS])
def test_runner_refuses_bad_training_options(tmp_path, options, option):
    result = invoke("train", *options, "--out", tmp_path / "m.safetensors", "--json")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, option)
    assert result.stdout == ""


def test_a_value_typer_cannot_parse_is_a_usage_error():
    result = invoke("train", "--hidden", "ten")
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "ten" in result.output


def test_program_refuses_a_model_file_from_something_else(tmp_path, no_data_env):
    other = tmp_path / "other.safetensors"
    other.write_bytes(st_save({"weight": np.ones((2, 2), np.float32)}))
    picture = write_png(tmp_path / "picture.png", np.zeros((28, 28)))
    result = digitnet("predict", other, picture, env=no_data_env)
    assert result.returncode == 1
    assert_one_line_error(result.stderr, str(other), "not a digitnet model")
    result = digitnet("evaluate", picture, env=no_data_env)
    assert result.returncode == 1
    assert_one_line_error(result.stderr, str(picture), "not a safetensors model file")


def test_program_refuses_an_image_that_is_not_an_image(tmp_path, small_model, no_data_env):
    fake = tmp_path / "digit.png"
    fake.write_text("this is text, not a picture\n")
    result = digitnet("predict", small_model, fake, env=no_data_env)
    assert result.returncode == 1
    assert_one_line_error(result.stderr, str(fake), "not an image")


def test_program_refuses_an_all_white_image(tmp_path, small_model, no_data_env):
    white = write_png(tmp_path / "white.png", np.full((200, 200), 255))
    result = digitnet("predict", small_model, white, env=no_data_env)
    assert result.returncode == 1
    assert_one_line_error(result.stderr, str(white), "no digit")


def test_runner_refuses_missing_and_conflicting_predict_inputs(tmp_path, small_model):
    result = invoke("predict", small_model)
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "image")
    result = invoke("predict", small_model, "--top", "11", tmp_path / "x.png")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "--top 11")
    result = invoke("predict", tmp_path / "absent.safetensors", tmp_path / "x.png")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "no such model file")


def test_train_refuses_a_directory_as_output(tmp_path):
    result = invoke("train", "--out", tmp_path, "--epochs", "1")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "is a directory")


# ------------------------------------------------------------------------------------------
# The commands on small made-up data (no MNIST needed)


def test_predict_json_on_an_image(tmp_path, small_model):
    image = np.zeros((28, 28))
    image[6:22, 12:16] = 255  # a one
    path = write_png(tmp_path / "one.png", image)
    result = invoke("predict", small_model, path, path, "--json")
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)
    assert [a["file"] for a in answers] == [str(path), str(path)]
    for answer in answers:
        assert answer["label"] == int(np.argmax(answer["probabilities"]))
        assert sum(answer["probabilities"]) == pytest.approx(1, abs=1e-4)
    result = invoke("predict", small_model, path, "--top", "2")
    assert result.exit_code == 0 and str(path) in result.stdout


def test_evaluate_json_on_a_labelled_csv(tmp_path, small_model):
    rng = np.random.default_rng(0)
    labels = np.arange(30) % 10
    pixels = rng.integers(0, 256, (30, 784))
    csv = tmp_path / "digits.csv"
    np.savetxt(csv, np.column_stack([labels, pixels]), fmt="%d", delimiter=",")
    result = invoke("evaluate", small_model, "--dataset", csv, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"accuracy", "per_class", "confusion_matrix", "n"} <= set(report)
    assert report["n"] == 30
    assert sum(map(sum, report["confusion_matrix"])) == 30
    assert [row["support"] for row in report["per_class"]] == [3] * 10


def test_gradcheck_json_passes():
    result = invoke("gradcheck", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True
    assert report["max_relative_error"] < 1e-6
    assert set(report["per_parameter"]) == {"W1", "b1", "W2", "b2"}


def test_gradcheck_as_a_program(no_data_env):
    result = digitnet("gradcheck", "--json", env=no_data_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["passed"] is True
    result = digitnet("gradcheck", "--threshold", "1e-30", env=no_data_env)
    assert result.returncode == 1
    assert "failed" in result.stdout and "Traceback" not in result.stderr


def test_train_evaluate_predict_on_a_tiny_dataset(tiny_mnist, tmp_path):
    out = tmp_path / "models" / "tiny.safetensors"
    result = invoke("train", "--data-dir", tiny_mnist, "--epochs", "10", "--val-size", "50",
                    "--json", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"train_accuracy", "dev_accuracy", "test_accuracy", "model", "config"} <= set(report)
    assert report["model"] == str(out) and report["config"]["epochs"] == 10
    assert report["test_accuracy"] >= 0.9
    model = modelfile.load(out)
    assert len(model.meta["history"]["loss"]) == 10
    assert model.meta["datasets"]["name"] == "mnist"

    result = invoke("evaluate", out, "--data-dir", tiny_mnist, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"] == pytest.approx(report["test_accuracy"])

    result = invoke("predict", out, "--dataset", "mnist", "--index", "3", "--data-dir",
                    tiny_mnist, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["true_label"] == 3

    result = invoke("predict", out, "--dataset", "mnist", "--index", "100", "--data-dir",
                    tiny_mnist)
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "--index 100 is out of range")


def test_train_without_a_validation_set_prints_valid_json(tiny_mnist, tmp_path):
    out = tmp_path / "m.safetensors"
    result = invoke("train", "--data-dir", tiny_mnist, "--epochs", "1", "--val-size", "0",
                    "--json", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout, parse_constant=pytest.fail)  # no NaN in JSON
    assert report["dev_accuracy"] is None
    assert modelfile.load(out).meta["metrics"]["dev_accuracy"] is None


def test_train_reports_divergence_in_one_line(tiny_mnist, tmp_path):
    result = invoke("train", "--data-dir", tiny_mnist, "--lr", "1e4", "--val-size", "50",
                    "--out", tmp_path / "m.safetensors")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "diverged", "smaller learning rate")
    assert not (tmp_path / "m.safetensors").exists()


# ------------------------------------------------------------------------------------------
# The real MNIST


def train_once(tmp_path_factory, data_dir: Path, preset: str) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp(preset) / f"{preset}.safetensors"
    result = digitnet("train", "--preset", preset, "--json", "--out", out,
                      "--data-dir", data_dir)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout), out


@pytest.fixture(scope="session")
def default_run(tmp_path_factory, mnist_dir) -> tuple[dict, Path]:
    return train_once(tmp_path_factory, mnist_dir, "default")


@pytest.fixture(scope="session")
def seed_run(tmp_path_factory, mnist_dir) -> tuple[dict, Path]:
    return train_once(tmp_path_factory, mnist_dir, "seed")


@pytest.fixture(scope="session")
def mnist_test(mnist_dir) -> tuple[np.ndarray, np.ndarray]:
    return datasets.load("mnist", "test", mnist_dir)


@pytest.mark.mnist
def test_default_preset_reaches_94_percent(default_run):
    report, out = default_run
    assert report["test_accuracy"] >= 0.94
    assert report["preset"] == "default" and report["model"] == str(out)
    model = modelfile.load(out)
    assert model.sizes == (784, 10, 10)
    assert model.meta["metrics"]["test_accuracy"] == report["test_accuracy"]
    assert len(model.meta["history"]["loss"]) == report["epochs"] == 15


@pytest.mark.mnist
def test_seed_preset_lands_where_the_notebook_did(seed_run):
    report, out = seed_run
    # The notebook trained on 41,000 images and gave every hidden unit the same bias step
    # (np.sum over the whole dZ1); with MNIST's 59,000 and per-unit bias gradients the same
    # recipe lands at 84.9-86.6 % over seeds 0-4 (86.1 % for seed 0), a point above its 83-85 %.
    assert 0.83 <= report["test_accuracy"] <= 0.87, report["test_accuracy"]
    assert report["iterations"] == 500
    assert modelfile.load(out).meta["config"]["init"] == "uniform"


@pytest.mark.mnist
def test_same_seed_twice_gives_identical_weights(tmp_path, mnist_dir):
    files = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    for out in files:
        result = invoke("train", "--preset", "default", "--epochs", "1", "--seed", "5",
                        "--data-dir", mnist_dir, "--json", "--out", out)
        assert result.exit_code == 0, result.output
    first, second = (modelfile.load(f).params.arrays() for f in files)
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[k], second[k]) for k in first)


@pytest.mark.mnist
def test_evaluate_json(default_run, mnist_dir):
    report, out = default_run
    result = invoke("evaluate", out, "--data-dir", mnist_dir, "--json")
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    assert {"accuracy", "per_class", "confusion_matrix"} <= set(evaluation)
    assert evaluation["accuracy"] == pytest.approx(report["test_accuracy"])
    assert evaluation["n"] == 10_000
    assert len(evaluation["per_class"]) == 10
    assert np.array(evaluation["confusion_matrix"]).shape == (10, 10)
    assert np.trace(evaluation["confusion_matrix"]) == round(evaluation["accuracy"] * 10_000)


def as_photo(digit: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The digit 10x larger, dark ink on white paper, off centre."""
    big = np.asarray(Image.fromarray(digit).resize((280, 280), Image.Resampling.BILINEAR))
    paper = np.full((360, 360), 255, dtype=np.uint8)
    paper[20 + dy:300 + dy, 20 + dx:300 + dx] = 255 - big
    return paper


@pytest.mark.mnist
@pytest.mark.parametrize("style", ["28x28", "photo"])
def test_predict_on_pngs_of_mnist_test_digits(default_run, mnist_test, tmp_path, style):
    _, out = default_run
    images, labels = mnist_test
    paths = []
    for k in range(20):
        pixels = images[k] if style == "28x28" else as_photo(images[k], 3 * (k % 5), 2 * (k % 7))
        paths.append(write_png(tmp_path / f"digit{k}.png", pixels))
    result = invoke("predict", out, *paths, "--json")
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)
    assert [a["file"] for a in answers] == [str(p) for p in paths]
    right = sum(a["label"] == int(y) for a, y in zip(answers, labels[:20], strict=True))
    assert right >= 17, f"{right}/20 right"


@pytest.mark.mnist
def test_predict_a_stored_digit(default_run, mnist_dir):
    _, out = default_run
    result = digitnet("predict", out, "--dataset", "mnist", "--index", "0", "--data-dir",
                      mnist_dir, "--json")
    assert result.returncode == 0, result.stderr
    (answer,) = json.loads(result.stdout)
    assert answer["label"] == 7 and answer["true_label"] == 7
    result = invoke("predict", out, "--dataset", "mnist", "--index", "0", "--data-dir",
                    mnist_dir)
    assert result.exit_code == 0
    assert "mnist[test][0]: 7 (true: 7)" in result.stdout
