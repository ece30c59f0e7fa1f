"""digitnet bench: the figures it reports (never how fast they are)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from digitnet import bench, training
from digitnet.bench import naive_notebook, results
from digitnet.bench.races import Race
from digitnet.cli import app
from digitnet.cli.apps import bench_tables as _bench_tables
from digitnet.fast.cpu import VECTOR_FEATURES

RATIOS = {"epoch_vs_sklearn", "epoch_vs_torch", "time_to_94_vs_sklearn", "seed_preset_vs_naive",
          "inference_vs_torch", "inference_vs_onnxruntime", "epoch_vs_floor"}


def numbers(tree, path=""):
    """Every number in a JSON tree with where it is (booleans are not numbers here)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from numbers(value, f"{path}.{key}")
    elif isinstance(tree, list):
        for k, value in enumerate(tree):
            yield from numbers(value, f"{path}[{k}]")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield path, tree


@pytest.mark.mnist
def test_quick_json_reports_every_figure(mnist_dir):
    done = subprocess.run([sys.executable, "-m", "digitnet.cli", "bench", "--quick", "--json",
                           "--data-dir", str(mnist_dir)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["ratios"]) == RATIOS
    assert {"matmul_gflops", "copy_gb_per_s"} <= set(result["floor"])
    assert result["peak_rss_mib"] > 0
    assert set(result["epoch_seconds"]) == {"128", "64"}
    for row in result["epoch_seconds"].values():
        assert {"digitnet", "sklearn", "torch"} <= set(row)
    for target in ("0.93", "0.94"):
        for peer in ("digitnet", "sklearn", "torch"):
            assert target in result["time_to_accuracy"][peer]
    assert {"digitnet", "naive"} <= set(result["seed_preset"])
    peers = {"digitnet", "torch", "sklearn", "onnxruntime"}
    assert peers <= set(result["inference"]["images_per_second"])
    assert peers <= set(result["inference"]["single_image_seconds"])
    assert result["inference"]["onnxruntime_labels_agree"] > 0.999  # the same model
    machine = result["machine"]
    assert machine["cpu"] and set(machine["cpu_id"]) <= {"vendor", "family", "model"}
    assert set(machine["vector_features"]) <= set(VECTOR_FEATURES)
    assert set(machine["paths"]) == {"non_zero_pixels", "inference_first_layer",
                                     "training_first_layer", "full_batch"}
    found = dict(numbers(result))
    assert len(found) > 40
    for where, value in found.items():
        assert math.isfinite(value) and value > 0, where
    # The seed preset and the notebook start from the same weights on the same split.
    seed = result["seed_preset"]
    assert abs(seed["digitnet"]["test_accuracy"] - seed["naive"]["test_accuracy"]) < 0.005


def test_missing_peers_are_named_with_the_extra_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(bench.MissingPeerError) as caught:
        bench.check_peers()
    message = str(caught.value)
    assert "torch" in message and "scikit-learn" not in message
    assert "pip install 'digitnet[bench]'" in message
    result = CliRunner().invoke(app, ["bench", "--quick"])
    assert result.exit_code == 1
    assert "digitnet[bench]" in result.output and "Traceback" not in result.output


def test_threads_must_be_positive():
    result = CliRunner().invoke(app, ["bench", "--threads", "0"])
    assert result.exit_code == 1
    assert "--threads 0" in result.output


def test_a_race_records_the_first_epoch_past_each_target():
    race = Race((0.93, 0.94), cap=100.0)
    accuracies = iter([0.90, 0.935, 0.95])
    assert not race.after_epoch(lambda: next(accuracies))
    assert not race.after_epoch(lambda: next(accuracies))
    assert race.after_epoch(lambda: next(accuracies))
    result = race.result()
    assert result.at(0.93).epochs == 2 and result.at(0.94).epochs == 3
    assert result.at(0.93).reached and result.at(0.94).reached
    assert result.at(0.93).seconds <= result.at(0.94).seconds
    assert list(result.to_dict()) == ["0.93", "0.94"]


def test_a_race_that_hits_the_cap_says_so():
    race = Race((0.99,), cap=0.0)
    assert race.after_epoch(lambda: 0.5)
    assert race.result().to_dict()["0.99"] == {"seconds": 0.0, "epochs": 1, "accuracy": 0.5,
                                               "reached": False}


def sample_result() -> results.BenchResult:
    """A result with made-up figures, built as the bench builds it."""
    def race(seconds: float) -> results.PeerRace:
        return results.PeerRace((results.Reached(0.93, seconds / 2, 1, 0.935, True),
                                 results.Reached(0.94, seconds, 2, 0.941, True)))

    return results.BenchResult(
        quick=True,
        machine=results.Machine("AMD EPYC", 2, 1, "3.11.7", "2.4.6", "numba",
                                blas="openblas 0.3.31", numba="0.68.1", sklearn="1.9.1",
                                torch="2.13.0", vector_features=("avx2", "fma")),
        memory=(results.MemoryRun(122.0, "auto", "digitnet train", 0.948, 3.1),),
        floor=results.Floors(98.7, 25.4, 1.9, 0.02, 0.007),
        epoch_seconds=(
            results.EpochRow(128, results.PeerFigures(1.0, 4.0, 5.0, digitnet_numpy=2.0)),
            results.EpochRow(64, results.PeerFigures(1.5, 6.0, 9.0, digitnet_numpy=3.0))),
        time_to_accuracy=results.Races(bench.RACE_SETTINGS, 4.0, race(2.0), race(8.0),
                                       race(10.0)),
        seed_preset=results.SeedPreset(50, results.SeedRun(3.0, 0.06, 0.86, "numpy"),
                                       results.SeedRun(12.0, 0.24, 0.86)),
        inference=results.Inference(
            10_000, results.PeerFigures(6e6, 1e6, 2e6, digitnet_reference=3e6,
                                        onnxruntime=1.5e6),
            results.PeerFigures(2e-6, 9e-5, 3e-5, onnxruntime=1e-5), "numba",
            "a float32 tensor", "uint8", "uint8 through the exported model", 1.0))


def test_ratios_divide_digitnet_by_the_peer():
    assert sample_result().ratios == results.Ratios(
        epoch_vs_sklearn=0.25, epoch_vs_torch=0.2, time_to_94_vs_sklearn=0.25,
        seed_preset_vs_naive=0.25, inference_vs_torch=3.0, inference_vs_onnxruntime=4.0,
        epoch_vs_floor=50.0)


def test_the_json_keeps_the_published_keys():
    result = sample_result()
    data = json.loads(json.dumps(result.to_dict()))
    assert list(data) == ["quick", "machine", "memory", "peak_rss_mib", "floor",
                          "epoch_seconds", "time_to_accuracy", "seed_preset", "inference",
                          "ratios"]
    assert set(data["ratios"]) == RATIOS
    assert data["peak_rss_mib"] == 122.0
    assert data["epoch_seconds"]["128"] == {"digitnet": 1.0, "digitnet_numpy": 2.0,
                                            "sklearn": 4.0, "torch": 5.0}
    assert data["time_to_accuracy"]["sklearn"]["0.94"] == {
        "seconds": 8.0, "epochs": 2, "accuracy": 0.941, "reached": True}
    assert data["time_to_accuracy"]["cap_seconds"] == 4.0
    assert data["seed_preset"]["naive"] == {"seconds": 12.0, "seconds_per_iteration": 0.24,
                                            "test_accuracy": 0.86}
    assert data["seed_preset"]["digitnet"]["backend"] == "numpy"
    assert set(data["inference"]["images_per_second"]) == {"digitnet", "digitnet_reference",
                                                           "sklearn", "torch", "onnxruntime"}
    assert set(data["inference"]["single_image_seconds"]) == {"digitnet", "sklearn", "torch",
                                                              "onnxruntime"}
    assert data["inference"]["onnxruntime_labels_agree"] == 1.0
    assert data["machine"]["torch"] == "2.13.0" and data["memory"][0]["backend"] == "auto"
    assert data["machine"]["vector_features"] == ["avx2", "fma"]


def test_the_tables_show_every_figure(capsys):
    _bench_tables(sample_result())
    out = capsys.readouterr().out
    for text in ("AMD EPYC", "(--quick)", "digitnet (numpy)", "scikit-learn", "PyTorch",
                 "naive notebook", "93%", "94%", "8.00 (2 ep)", "6,000,000", "122 MiB",
                 "time_to_94_vs_sklearn", "0.250", "digitnet (reference)", "onnxruntime",
                 "1,500,000", "inference_vs_onnxruntime", "4.000", "vector features: avx2 fma"):
        assert text in out, text


def test_the_naive_notebook_ships_inside_the_package():
    package = Path(bench.__file__).parent
    assert Path(naive_notebook.__file__).parent == package
    assert hasattr(naive_notebook, "gradient_descent") and hasattr(naive_notebook, "columns")


def test_the_notebook_takes_the_same_step_as_the_seed_preset():
    """One full-batch step of the notebook's code from digitnet's starting weights lands on
    digitnet's own weights after one step of the seed preset."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(60, 784), dtype=np.uint8)
    labels = np.arange(60) % 10
    config = training.make_config("seed", iterations=1, val_size=0, dtype="float64")
    trainer = training.Trainer(config, images, labels, backend="reference")
    W1, W2 = (w.T.copy() for w in trainer.params.W)
    b1, b2 = (b.reshape(-1, 1).copy() for b in trainer.params.b)
    trainer.run()
    X, Y = naive_notebook.columns(images, labels)
    after = naive_notebook.gradient_descent(X, Y, config.lr, 1, (W1, b1, W2, b2))
    ours = trainer.params
    np.testing.assert_allclose(after[0], ours.W[0].T, atol=1e-10)
    np.testing.assert_allclose(after[1].ravel(), ours.b[0], atol=1e-10)
    np.testing.assert_allclose(after[2], ours.W[1].T, atol=1e-10)
    np.testing.assert_allclose(after[3].ravel(), ours.b[1], atol=1e-10)
