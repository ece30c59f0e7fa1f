"""digitnet bench: the figures it reports (never how fast they are)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from digitnet import bench, fast
from digitnet.cli import app

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
    assert result["inference"]["onnxruntime"]["labels_agree"] > 0.999  # the same model
    assert result["machine"]["cpu"] and "paths" in result["machine"]
    assert set(result["machine"]["vector_features"]) <= set(fast.cpu.VECTOR_FEATURES)
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
    race = bench._Race((0.93, 0.94), cap=100.0)
    accuracies = iter([0.90, 0.935, 0.95])
    assert not race.after_epoch(lambda: next(accuracies))
    assert not race.after_epoch(lambda: next(accuracies))
    assert race.after_epoch(lambda: next(accuracies))
    result = race.result()
    assert result["0.93"]["epochs"] == 2 and result["0.94"]["epochs"] == 3
    assert result["0.93"]["reached"] and result["0.94"]["reached"]
    assert result["0.93"]["seconds"] <= result["0.94"]["seconds"]


def test_a_race_that_hits_the_cap_says_so():
    race = bench._Race((0.99,), cap=0.0)
    assert race.after_epoch(lambda: 0.5)
    assert race.result()["0.99"] == {"seconds": 0.0, "epochs": 1, "accuracy": 0.5,
                                     "reached": False}


def test_ratios_divide_digitnet_by_the_peer():
    result = {
        "epoch_seconds": {"128": {"digitnet": 1.0, "sklearn": 4.0, "torch": 5.0}},
        "time_to_accuracy": {"digitnet": {"0.94": {"seconds": 2.0}},
                             "sklearn": {"0.94": {"seconds": 8.0}}},
        "seed_preset": {"digitnet": {"seconds": 3.0}, "naive": {"seconds": 12.0}},
        "inference": {"images_per_second": {"digitnet": 6e6, "torch": 2e6,
                                            "onnxruntime": 1.5e6}},
        "floor": {"epoch_flop_floor_s": 0.5},
    }
    assert bench.ratios(result) == {"epoch_vs_sklearn": 0.25, "epoch_vs_torch": 0.2,
                                    "time_to_94_vs_sklearn": 0.25, "seed_preset_vs_naive": 0.25,
                                    "inference_vs_torch": 3.0, "inference_vs_onnxruntime": 4.0,
                                    "epoch_vs_floor": 2.0}


def test_the_naive_notebook_is_found_in_the_source_tree():
    notebook = bench.naive_notebook()
    assert notebook is not None
    assert hasattr(notebook, "gradient_descent") and hasattr(notebook, "columns")
