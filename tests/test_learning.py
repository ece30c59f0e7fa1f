"""What teaches: W1 snapshots kept during training, the report's schedule and weights figures,
`info`'s whole config, the per-epoch table `train` leaves, the page's explain endpoint."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import html
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from typer.testing import CliRunner  # noqa: E402

from digitnet import datasets, modelfile, network, report, report_lessons, snapshots  # noqa: E402
from digitnet.cli import app  # noqa: E402
from digitnet.model import Model, Preprocessing  # noqa: E402


def invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def tiny_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small learnable ``mnist/`` (a blob per class), registered so that it verifies."""
    rng = np.random.default_rng(7)
    centres = rng.integers(0, 256, (10, 784))
    contents = {}
    for split, n in (("train", 400), ("test", 100)):
        labels = np.arange(n) % 10
        images = np.clip(centres[labels] + rng.normal(0, 60, (n, 784)), 0, 255)
        images_stem, labels_stem = datasets.FILES[split]
        contents[images_stem] = (bytes([0, 0, 8, 3]) + np.array([n, 28, 28], ">u4").tobytes()
                                 + images.astype(np.uint8).tobytes())
        contents[labels_stem] = (bytes([0, 0, 8, 1]) + np.array([n], ">u4").tobytes()
                                 + labels.astype(np.uint8).tobytes())
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for stem, raw in contents.items():
        (folder / f"{stem}.gz").write_bytes(gzip.compress(raw, mtime=0))
    sha256 = {stem: hashlib.sha256(raw).hexdigest() for stem, raw in contents.items()}
    info = dataclasses.replace(datasets.DATASETS["mnist"], sha256=sha256,
                               mirrors=("http://127.0.0.1:1/",))
    monkeypatch.setitem(datasets.DATASETS, "mnist", info)
    monkeypatch.setenv("DIGITNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DIGITNET_DATA", raising=False)
    return folder.parent


# -- snapshots --------------------------------------------------------------------------------


def params_at(value: float) -> network.Params:
    return network.Params([np.full((784, 30), value, np.float32), np.zeros((30, 10))],
                          [np.zeros(30), np.zeros(10)])


def test_recorder_keeps_the_start_a_few_points_and_the_end():
    recorder = snapshots.Recorder(max_units=20)
    kept = [step for step in range(0, 101) if recorder.observe(step, 100, params_at(step))]
    assert kept == [0, 2, 10, 33, 100]
    assert [float(s.W1[0, 0]) for s in recorder.kept] == [0, 2, 10, 33, 100]
    assert recorder.kept[0].W1.shape == (784, 20)  # only the first max_units units


def test_a_report_past_several_points_is_kept_once():
    recorder = snapshots.Recorder()
    for step in (0, 40, 80, 100):  # one report per epoch of 40 steps, 100 in all
        recorder.observe(step, 100, params_at(step))
    # 40 is past 2 %, 10 % and 33 % at once; 80 is past nothing new
    assert [s.step for s in recorder.kept] == [0, 40, 100]
    recorder = snapshots.Recorder()
    assert [recorder.observe(s, 100, params_at(s)) for s in (50, 100, 100)] == \
        [True, True, False]


def test_snapshots_survive_the_model_file(tmp_path):
    recorder = snapshots.Recorder()
    rng = np.random.default_rng(0)
    values = [rng.normal(0, 0.1, (784, 10)).astype(np.float32) for _ in range(3)]
    for step, W1 in zip((0, 5, 10), values, strict=True):
        recorder.observe(step, 10, network.Params([W1, np.zeros((10, 10))],
                                                  [np.zeros(10), np.zeros(10)]), epoch=step)
    params = network.init_params((784, 10, 10), rng)
    model = Model(params, Preprocessing(), {"snapshots": recorder.to_meta()})
    loaded = modelfile.load(modelfile.save(model, tmp_path / "m.safetensors"))
    kept = snapshots.from_meta(loaded.meta)
    assert [s.step for s in kept] == [s.step for s in recorder.kept]
    for snap, W1 in zip(kept, values, strict=True):
        np.testing.assert_allclose(snap.W1, W1, atol=1e-3)  # float16: 3 significant digits


def test_unreadable_snapshots_are_none():
    assert snapshots.from_meta({}) == []
    assert snapshots.from_meta({"snapshots": {"steps": [0], "W1": ["%%"]}}) == []


# -- train, info, report on a tiny dataset ----------------------------------------------------


@pytest.fixture
def trained(tiny_mnist, tmp_path) -> tuple[Path, str]:
    out = tmp_path / "tiny.safetensors"
    result = invoke("train", "--data-dir", tiny_mnist, "--epochs", "8", "--val-size", "50",
                    "--batch-size", "50", "--out", out)
    assert result.exit_code == 0, result.output
    return out, result.stdout


def test_train_leaves_its_per_epoch_figures_on_screen(trained):
    _, stdout = trained
    assert "training, 8 records, by epochs" in stdout
    rows = [line.split() for line in stdout.splitlines()
            if re.match(r"\s+\d+\s+[\d.e-]+\s+\d+\.\d{4}\s", line)]
    assert [int(r[0]) for r in rows] == list(range(1, 9))


def test_train_records_w1_during_the_run(trained):
    out, _ = trained
    model = modelfile.load(out)
    kept = snapshots.from_meta(model.meta)
    steps_per_epoch = 7  # 350 training images in batches of 50
    # the first report at or after 0, 2 %, 10 %, 33 % and 100 % of the 56 steps
    assert [s.step for s in kept] == [0, 7, 21, 56]
    assert [s.epoch for s in kept] == [0, 1, 3, 8]
    assert model.meta["snapshots"]["total_steps"] == 8 * steps_per_epoch
    assert not np.allclose(kept[0].W1, kept[-1].W1, atol=1e-3)  # the weights moved


def test_info_shows_the_whole_training_config(trained):
    out, _ = trained
    result = invoke("info", out)
    assert result.exit_code == 0, result.output
    config = modelfile.load(out).meta["config"]
    for key in config:
        assert f"config {key}" in result.stdout, key
    for words in ("config optimizer", "adam", "config schedule", "onecycle", "config l2",
                  "config batch_size", "50"):
        assert words in result.stdout


def test_report_has_the_schedule_and_the_weights_over_training(trained, tiny_mnist, tmp_path):
    out, _ = trained
    result = invoke("report", out, "--data-dir", tiny_mnist, "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report" / "index.html").read_text()
    for name in ("learning_rate.png", "weights_over_training.png"):
        assert (tmp_path / "report" / name).read_bytes().startswith(b"\x89PNG")
        assert html.escape(report.FIGURES[name][0]) in page


def test_learning_rate_follows_the_schedule_and_counts_steps():
    params = network.init_params((784, 10, 10), np.random.default_rng(0))
    model = Model(params, Preprocessing(), {
        "config": {"schedule": "onecycle", "lr": 0.02, "optimizer": "adam", "batch_size": 64,
                   "select_best": True},
        "metrics": {"iterations": 1000, "epochs": 10, "chosen_epoch": 9}})
    fig = report_lessons.learning_rate_figure(model)
    ax = fig.axes[0]
    steps, rates = ax.lines[0].get_data()
    assert rates.max() == pytest.approx(0.02, rel=1e-3)
    assert rates[0] == pytest.approx(0.02 / 25, rel=0.05)  # the warm-up starts at α/25
    assert steps[np.argmax(rates)] == pytest.approx(300, abs=2)  # peak after 30 % of steps
    assert ax.get_xlabel() == "gradient step" and "learning rate" in ax.get_ylabel()
    assert [child.get_xlabel() for child in ax.child_axes] == ["epoch"]  # epochs on top
    kept = [line for line in ax.lines[1:] if "kept" in line.get_label()]
    assert len(kept) == 1 and kept[0].get_xdata()[0] == pytest.approx(900)  # epoch 9 of 10


def test_full_batch_curves_count_steps():
    params = network.init_params((784, 10, 10), np.random.default_rng(0))
    history = {"epoch": [1, 2, 3], "step": [1, 2, 3], "loss": [2.0, 1.5, 1.2],
               "val_loss": [2.1, 1.6, 1.3], "train_accuracy": [0.2, 0.4, 0.5],
               "val_accuracy": [0.2, 0.4, 0.5]}
    model = Model(params, Preprocessing(), {"config": {"batch_size": 0}, "history": history})
    fig = report.training_curves_figure(model)
    assert all("gradient step" in ax.get_xlabel() for ax in fig.axes)
    model.meta["config"]["batch_size"] = 64
    fig = report.training_curves_figure(model)
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)


def test_figures_without_the_record_say_so():
    params = network.init_params((784, 10, 10), np.random.default_rng(0))
    model = Model(params, Preprocessing(), {})
    for fig in (report_lessons.learning_rate_figure(model),
                report_lessons.weights_over_training_figure(model)):
        assert any("does not record" in t.get_text() or "records no" in t.get_text()
                   for t in fig.texts)


# -- the page's explain endpoint --------------------------------------------------------------


def test_explain_endpoint_matches_predict():
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from digitnet.web.app import create_app

    params = network.init_params((784, 10, 10), np.random.default_rng(2))
    model = Model(params, Preprocessing(1 / 255, 0.13, 0.31))
    client = TestClient(create_app(model))
    pixels = np.zeros((28, 28))
    pixels[5:23, 12:16] = 255
    body = {"pixels": pixels.reshape(-1).tolist()}
    predicted = client.post("/api/predict", json=body).json()
    explained = client.post("/api/explain", json=body).json()
    assert explained["input28"] == predicted["input28"]
    assert explained["label"] == predicted["label"]
    np.testing.assert_allclose(explained["probabilities"], predicted["probabilities"],
                               atol=2e-6)
    z2 = np.sum(explained["contributions"], axis=0) + explained["b2"]
    np.testing.assert_allclose(z2, explained["z2"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.maximum(explained["z1"], 0), explained["a1"], atol=1e-9)
    assert explained["silent"] == [j for j, a in enumerate(explained["a1"]) if a == 0]
    refused = client.post("/api/explain", json={"pixels": [0] * 784})
    assert refused.status_code == 422 and "draw a digit" in refused.json()["error"]
    page = client.get("/").text
    assert "/static/explain.js" in page
    assert client.get("/static/explain.js").status_code == 200


@pytest.mark.mnist
def test_robustness_names_its_overall_row_apart_from_all_at_once(mnist_dir, tmp_path):
    params = network.init_params((784, 10, 10), np.random.default_rng(0))
    path = modelfile.save(Model(params, Preprocessing()), tmp_path / "m.safetensors")
    result = invoke("robustness", path, "--per-transform", "2", "--data-dir", mnist_dir)
    assert result.exit_code == 0, result.output
    assert "everything at once (each digit)" in result.stdout
    assert "overall (every digit above)" in result.stdout
    assert not re.search(r"^\W*all\W", result.stdout, re.MULTILINE)
