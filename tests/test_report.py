"""Tests of digitnet.report (figures and the HTML report) and of ``digitnet report``.

A small network trained for a moment on synthetic digits stands in for a real one: each class is
a bar at its own place, so the network learns them and still makes a few mistakes on noisy ones.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from typer.testing import CliRunner  # noqa: E402

from digitnet import modelfile, network, report, runner, training  # noqa: E402
from digitnet.cli import app as cli_app  # noqa: E402
from digitnet.model import Model  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def synthetic(n: int, seed: int, noise: float = 60) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 28, 28) whose class k is a bright bar at row 2k + 4, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.normal(0, noise, (n, 28, 28))
    for i, k in enumerate(labels):
        images[i, 2 * k + 4: 2 * k + 6, 4:24] += 200
    return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.uint8)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Labelled images, the first 15 mislabelled so that there are confident mistakes."""
    images, labels = synthetic(300, seed=1)
    labels[:15] = (labels[:15] + 1) % 10
    return images, labels


@pytest.fixture(scope="module")
def model() -> Model:
    images, labels = synthetic(600, seed=0)
    config = training.make_config("default", epochs=3, val_size=100, batch_size=32)
    return training.train(config, images, labels)


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE)
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# -- figures ----------------------------------------------------------------------------------


def test_training_curves_show_the_history(model):
    fig = report.training_curves_figure(model)
    loss_ax, acc_ax = fig.axes
    history = model.meta["history"]
    train_line, val_line = loss_ax.lines[:2]
    np.testing.assert_array_equal(train_line.get_xdata(), history["epoch"])
    np.testing.assert_allclose(train_line.get_ydata(), history["loss"])
    np.testing.assert_allclose(val_line.get_ydata(), history["val_loss"])
    np.testing.assert_allclose(acc_ax.lines[0].get_ydata(), 100 * np.array(
        history["train_accuracy"]))
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata(), 100 * np.array(
        history["val_accuracy"]))
    kept = loss_ax.lines[2]  # the dashed line at the epoch whose weights were kept
    assert kept.get_xdata()[0] == model.meta["metrics"]["chosen_epoch"]
    width, height = png_size(report.figure_png(fig))
    assert width > 600 and height > 200


def test_a_model_without_history_gets_a_figure_saying_so(model):
    bare = Model(model.params, model.preprocessing, {})
    fig = report.training_curves_figure(bare)
    assert not fig.axes
    assert "no training history" in fig.texts[0].get_text()


def test_confusion_matrix_colours_each_row_by_its_share():
    confusion = np.array([[8, 2, 0], [0, 5, 5], [1, 0, 0]])
    fig = report.confusion_figure(confusion, ["a", "b", "c"])
    ax = fig.axes[0]
    shown = ax.images[0].get_array()
    np.testing.assert_allclose(shown, [[0.8, 0.2, 0], [0, 0.5, 0.5], [1, 0, 0]])
    counts = [int(t.get_text()) for t in ax.texts]
    assert counts == confusion.reshape(-1).tolist()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]


def test_hidden_units_show_W1_on_a_symmetric_diverging_scale_and_W2_as_bars(model):
    fig = report.hidden_units_figure(model)
    W1, W2 = model.params.W
    images = [ax for ax in fig.axes if ax.images]
    bars = [ax for ax in fig.axes if ax.patches]
    assert len(images) == len(bars) == W1.shape[1]
    limit = np.abs(W1).max()
    for unit, (image_ax, bar_ax) in enumerate(zip(images, bars, strict=True)):
        picture = image_ax.images[0]
        np.testing.assert_allclose(picture.get_array(), W1[:, unit].reshape(28, 28))
        vmin, vmax = picture.get_clim()
        assert vmin == pytest.approx(-limit) and vmax == pytest.approx(limit)
        assert picture.get_cmap().name == "RdBu"
        heights = [p.get_height() for p in bar_ax.patches]
        np.testing.assert_allclose(heights, W2[unit], rtol=1e-6)


def test_hidden_units_can_be_limited(model):
    fig = report.hidden_units_figure(model, max_units=4)
    assert len([ax for ax in fig.axes if ax.images]) == 4
    assert "first 4 of 10" in fig.get_suptitle()


def test_hidden_units_of_a_deeper_network_have_no_class_bars():
    params = network.init_params((784, 6, 5, 10), np.random.default_rng(0))
    fig = report.hidden_units_figure(Model(params))
    assert len([ax for ax in fig.axes if ax.images]) == 6
    assert not [ax for ax in fig.axes if ax.patches]


def test_class_activations_are_the_mean_hidden_activation_per_class(model, data):
    images, labels = data
    fig = report.class_activations_figure(model, images, labels)
    shown = np.asarray(fig.axes[0].images[0].get_array())
    hidden = model.hidden(images)
    assert shown.shape == (10, hidden.shape[1])
    for k in range(10):
        np.testing.assert_allclose(shown[k], hidden[labels == k].mean(axis=0), rtol=1e-4,
                                   atol=1e-5)


def test_mistakes_are_the_most_confident_wrong_answers(model, data):
    images, labels = data
    probabilities = model.predict_proba(images)
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    assert len(wrong) >= 15
    confidence = probabilities[wrong, predicted[wrong]]
    expected = wrong[np.argsort(-confidence, kind="stable")][:20]
    fig = report.mistakes_figure(model, images, labels)
    assert len(fig.axes) == len(expected)
    for ax, index in zip(fig.axes, expected, strict=True):
        title = ax.get_title()
        assert f"true {labels[index]} → {predicted[index]}" in title
        assert f"{probabilities[index, predicted[index]]:.1%}" in title
        np.testing.assert_array_equal(ax.images[0].get_array(), images[index])


def test_no_mistakes_gives_a_figure_saying_so(model, data):
    images, _ = data
    fig = report.mistakes_figure(model, images, model.predict(images))
    assert "no mistakes" in fig.texts[0].get_text()


@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((3, 28, 28), np.uint8), np.zeros(2, np.uint8), "one label per image"),
    (np.zeros((3, 27, 27), np.uint8), np.zeros(3, np.uint8), "shape"),
    (np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8), "no images"),
    (np.zeros((2, 784), np.uint8), np.array([0, 10]), "labels must be integers 0..9"),
    (np.zeros((2, 784), np.uint8), np.array([0.0, 1.0]), "labels must be integers"),
])
def test_bad_data_is_refused(model, images, labels, message):
    with pytest.raises(ValueError, match=message):
        report.mistakes_figure(model, images, labels)


# -- the report -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(model, data, tmp_path_factory) -> list[Path]:
    images, labels = data
    return report.write_report(model, images, labels, tmp_path_factory.mktemp("r") / "report",
                               "synthetic test")


def test_write_report_writes_the_pngs_then_the_page(written):
    out = written[0].parent
    assert [p.name for p in written] == [*report.FIGURES, "index.html"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)  # no temps
    for path in written[:-1]:
        width, height = png_size(path.read_bytes())
        assert width >= 400 and height >= 150


def test_the_page_embeds_the_figures_and_needs_no_network(written, model, data):
    out = written[0].parent
    page = (out / "index.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert [base64.b64decode(e) for e in embedded] == [(out / n).read_bytes()
                                                       for n in report.FIGURES]
    # Nothing is fetched: no external scripts, styles, images or fonts.
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "http://" not in page and "https://" not in page
    images, labels = data
    accuracy = np.mean(model.predict(images) == labels)
    assert f"{accuracy:.2%}" in page
    for text in ("784 → 10 → 10", "default", "synthetic test", "precision", "recall"):
        assert text in page


def page_for(model: Model, data) -> str:
    """The report page with stand-in figures (rendering them is not what is tested)."""
    images, labels = data
    pngs = {name: PNG_SIGNATURE for name in report.FIGURES}
    return report.render_html(model, report.evaluate(model, images, labels), pngs, "test")


def test_report_shows_metadata_of_a_saved_model(model, data, tmp_path):
    saved = modelfile.load(modelfile.save(model, tmp_path / "m.safetensors"))
    saved.meta["datasets"] = {"name": "mnist", "train": {"sha256": {"train-images": "ab" * 32}}}
    page = page_for(saved, data)
    assert saved.meta["weights_sha256"] in page
    assert "ab" * 32 in page
    assert f"<th>batch_size</th><td>{saved.meta['config']['batch_size']}</td>" in page
    rows = re.findall(r"<tr><td>(\d)</td>", page)
    assert rows == [str(k) for k in range(10)]


def test_metadata_is_escaped(model, data):
    hostile = Model(model.params, model.preprocessing,
                    {**model.meta, "preset": "<script>alert(1)</script>",
                     "class_names": [f"<b>{k}</b>" for k in range(10)]})
    page = page_for(hostile, data)
    assert "<script>" not in page and "<b>0</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# -- digitnet report --------------------------------------------------------------------------


@pytest.fixture
def model_file(model, tmp_path) -> Path:
    return modelfile.save(model, tmp_path / "model.safetensors")


@pytest.fixture
def npz_file(data, tmp_path) -> Path:
    images, labels = data
    path = tmp_path / "digits.npz"
    np.savez(path, x_train=images, y_train=labels, x_test=images, y_test=labels)
    return path


def test_report_command_writes_the_files(model_file, npz_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli_app, ["report", str(model_file), "--dataset", str(npz_file),
                                          "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["files"] == [str(Path("report") / n) for n in [*report.FIGURES, "index.html"]]
    for name in answer["files"]:
        assert (tmp_path / name).stat().st_size > 0
    assert "digits.npz test" in (tmp_path / "report" / "index.html").read_text()


def test_report_command_prints_the_files(model_file, npz_file, tmp_path, monkeypatch):
    out = tmp_path / "a rather long folder name so that the paths would wrap" / "report"
    calls = []

    def write_report(model, images, labels, out_dir, source):
        calls.append((len(images), out_dir, source))
        return [out_dir / name for name in [*report.FIGURES, "index.html"]]

    monkeypatch.setattr(report, "write_report", write_report)
    result = CliRunner().invoke(cli_app, ["report", str(model_file), "--dataset", str(npz_file),
                                          "--out", str(out), "--split", "train"])
    assert result.exit_code == 0, result.output
    assert calls == [(300, out, "digits.npz train")]
    for name in [*report.FIGURES, "index.html"]:
        assert f"wrote {out / name}" in result.stdout


@pytest.mark.parametrize("case", ["no model", "bad model", "out is a file", "bad split",
                                  "no dataset"])
def test_report_command_errors_are_one_line(case, model_file, npz_file, tmp_path):
    args = ["report", str(model_file), "--dataset", str(npz_file), "--out", str(tmp_path / "r")]
    if case == "no model":
        args[1] = str(tmp_path / "missing.safetensors")
    elif case == "bad model":
        (tmp_path / "bad.safetensors").write_bytes(b"nonsense")
        args[1] = str(tmp_path / "bad.safetensors")
    elif case == "out is a file":
        (tmp_path / "r").write_text("")
    elif case == "bad split":
        args += ["--split", "validation"]
    else:
        args[3] = str(tmp_path / "missing.csv")
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert not (tmp_path / "r" / "index.html").exists()


@pytest.mark.mnist
def test_report_on_the_real_mnist(mnist_dir, tmp_path):
    config = training.make_config("default", epochs=1)
    trained = runner.train_on_dataset(config, mnist_dir, download=False)
    path = modelfile.save(trained, tmp_path / "model.safetensors")
    result = CliRunner().invoke(cli_app, ["report", str(path), "--data-dir", str(mnist_dir),
                                          "--out", str(tmp_path / "report"), "--json"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report" / "index.html").read_text()
    accuracy = float(re.search(r'class="big">([\d.]+)%', page).group(1))
    assert accuracy > 85
    assert "10,000 mnist test images" in page
    for digest in trained.meta["datasets"]["test"]["sha256"].values():
        assert digest in page
    mistakes = (tmp_path / "report" / "confident_mistakes.png").read_bytes()
    assert png_size(mistakes)[0] > 400
