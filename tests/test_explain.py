"""`digitnet explain` and `digitnet.explain`: one forward pass with its numbers.

The JSON arrays are recomputed here from the model file alone (safetensors and NumPy, no
digitnet), so a script can trust them; the real-MNIST test does the same for a trained model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import load_file
from typer.testing import CliRunner

from digitnet import explain, modelfile, network, training
from digitnet.cli import app
from digitnet.model import Model, Preprocessing


def invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


def program(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "digitnet.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def one_error_line(stderr: str, *words: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for word in words:
        assert word in lines[0], lines[0]


def random_model(sizes: tuple[int, ...], seed: int = 3) -> Model:
    rng = np.random.default_rng(seed)
    params = network.init_params(sizes, rng, "he")
    for b in params.b:  # non-zero biases, so that a dropped bias would show
        b[:] = rng.normal(0, 0.3, b.shape)
    return Model(params, Preprocessing(1 / 255, 0.13, 0.31))


def a_digit(seed: int = 0) -> np.ndarray:
    """A 28x28 'seven' with some noise: light ink on black, as MNIST stores it."""
    image = np.zeros((28, 28), dtype=np.uint8)
    image[6:9, 7:21] = 255
    for r in range(9, 23):
        image[r, 20 - (r - 9) // 2:23 - (r - 9) // 2] = 230
    noise = np.random.default_rng(seed).integers(0, 40, image.shape)
    return np.clip(image.astype(int) + noise * (image > 0), 0, 255).astype(np.uint8)


def recompute(path: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The forward pass from the model file's bytes alone, in float64 NumPy."""
    arrays = load_file(str(path))
    with safe_open(str(path), "np") as f:
        pre = json.loads(f.metadata()["digitnet"])["preprocessing"]
    x = (pixels.reshape(-1).astype(np.float64) * pre["scale"] - pre["mean"]) / pre["std"]
    out = {"x": x}
    a = x
    layers = len([k for k in arrays if k.startswith("W")])
    for n in range(1, layers + 1):
        W, b = arrays[f"W{n}"].astype(np.float64), arrays[f"b{n}"].astype(np.float64)
        if n > 1:  # the first layer's 784 x h products are left to W1 and x
            out[f"contributions{n}"] = a[:, None] * W
        out[f"z{n}"] = a @ W + b
        out[f"b{n}"] = b
        a = np.maximum(out[f"z{n}"], 0) if n < layers else None
        if a is not None:
            out[f"a{n}"] = a
    z = out[f"z{layers}"]
    out["probabilities"] = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    out["contributions"] = out[f"contributions{layers}"]
    return out


# -- the library ------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [(784, 10, 10), (784, 16, 10), (784, 12, 8, 10)])
def test_every_step_adds_up(sizes):
    model = random_model(sizes)
    pixels = a_digit()
    e = explain.explain(model, pixels)
    assert len(e.layers) == len(sizes) - 1
    for layer in e.layers:
        # z = sum over inputs of the contributions, plus the bias
        np.testing.assert_allclose(layer.contributions.sum(axis=0) + layer.b, layer.z,
                                   atol=1e-9)
        if not layer.output:
            np.testing.assert_array_equal(layer.a, np.maximum(layer.z, 0))
            assert set(layer.silent) == set(np.flatnonzero(layer.z <= 0))
    np.testing.assert_allclose(e.exponentials / e.exponentials.sum(), e.probabilities,
                               rtol=1e-12)
    assert e.exponentials.max() == 1.0
    # what the model itself predicts, in its own float32
    np.testing.assert_allclose(e.probabilities, model.predict_proba(pixels[None])[0], atol=1e-6)
    assert e.label == int(model.predict(pixels[None])[0])


def test_array_names_for_the_classic_network():
    e = explain.explain(random_model((784, 10, 10)), a_digit())
    arrays = e.arrays()
    assert {"x", "z1", "b1", "a1", "contributions", "b2", "z2", "probabilities"} <= set(arrays)
    assert arrays["x"].shape == (784,)
    assert arrays["z1"].shape == arrays["a1"].shape == (10,)
    assert arrays["contributions"].shape == (10, 10)
    np.testing.assert_array_equal(arrays["contributions"], arrays["contributions2"])


def test_an_image_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="100 pixels"):
        explain.explain(random_model((784, 10, 10)), np.zeros((10, 10)))


# -- the command ------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [(784, 10, 10), (784, 12, 8, 10)])
def test_json_arrays_equal_a_numpy_forward_pass_of_the_model_file(tmp_path, sizes):
    path = modelfile.save(random_model(sizes), tmp_path / "m.safetensors")
    image = tmp_path / "seven.png"
    Image.fromarray(255 - a_digit()).save(image)  # dark ink on light paper, as people write
    result = invoke("explain", path, image, "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    pixels = np.asarray(answer["pixels"])
    assert pixels.shape == (28, 28) and pixels.max() > 200  # the input the network read
    expected = recompute(path, pixels)
    for name, value in expected.items():
        np.testing.assert_allclose(np.asarray(answer[name]), value, rtol=0, atol=1e-6,
                                   err_msg=name)
    assert answer["label"] == int(np.argmax(expected["probabilities"]))
    assert answer["sizes"] == list(sizes)
    assert answer["silent"] == [int(j) for j in np.flatnonzero(expected["a1"] == 0)]


def test_the_text_shows_each_step(tmp_path):
    path = modelfile.save(random_model((784, 10, 10)), tmp_path / "m.safetensors")
    image = tmp_path / "seven.png"
    Image.fromarray(255 - a_digit()).save(image)
    result = invoke("explain", path, image)
    assert result.exit_code == 0, result.output
    for words in ("Z1 = X·W1 + b1", "A1 = max(0, Z1)", "contributions A1·W2", "b2", "Z2",
                  "softmax", "prediction:"):
        assert words in result.stdout, words
    assert "%%" in result.stdout or "@@" in result.stdout  # the digit, drawn in ramp characters


def test_bad_inputs_get_one_line(tmp_path):
    path = modelfile.save(random_model((784, 10, 10)), tmp_path / "m.safetensors")
    image = tmp_path / "seven.png"
    Image.fromarray(255 - a_digit()).save(image)
    for args, words in (((), ("give an image file",)),
                        ((image, "--dataset", "mnist", "--index", "0"), ("not both",)),
                        (("--index", "3"), ("go together",)),
                        ((image, image), ("one image",)),
                        ((tmp_path / "missing.png",), ("missing.png",))):
        result = invoke("explain", path, *args)
        assert result.exit_code != 0, args
        one_error_line(result.stderr, *words)
    result = program("explain", tmp_path / "nothing.safetensors", image)
    assert result.returncode == 1
    one_error_line(result.stderr, "nothing.safetensors")


@pytest.mark.mnist
def test_on_a_real_mnist_digit(tmp_path, mnist_dir):
    from digitnet import datasets

    images, labels = datasets.load("mnist", "train", mnist_dir, download=False)
    config = training.make_config("default", epochs=1, seed=11)
    model = training.train(config, images[:20_000], labels[:20_000])
    path = modelfile.save(model, tmp_path / "mnist.safetensors")
    result = program("explain", path, "--dataset", "mnist", "--index", "4", "--data-dir",
                     mnist_dir, "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    test_images, test_labels = datasets.load("mnist", "test", mnist_dir, download=False)
    np.testing.assert_array_equal(answer["pixels"], test_images[4])
    assert answer["true_label"] == int(test_labels[4])
    for name, value in recompute(path, test_images[4]).items():
        np.testing.assert_allclose(np.asarray(answer[name]), value, rtol=0, atol=1e-6,
                                   err_msg=name)
    assert answer["label"] == int(model.predict(test_images[4:5])[0])


def test_the_digit_in_a_colour_terminal_is_14_rows_of_half_blocks():
    from rich.console import Console

    from digitnet.terminal import digit_ascii, digit_blocks

    pixels = a_digit()
    console = Console(force_terminal=True, color_system="truecolor", width=80)
    with console.capture() as captured:
        console.print(digit_blocks(pixels))
    rows = captured.get().splitlines()
    assert len(rows) == 14 and all(row.count("▀") == 28 for row in rows)
    top, bottom = int(pixels[6, 7]), int(pixels[7, 7])  # one cell: two pixels, upper and lower
    assert f"38;2;{top};{top};{top};48;2;{bottom};{bottom};{bottom}m" in rows[3]
    lines = digit_ascii(pixels).splitlines()
    assert len(lines) == 28 and lines[6][14:16] == "@@" and lines[0] == " " * 56
