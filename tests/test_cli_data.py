"""End-to-end tests of ``digitnet data``: in process with Typer's runner, and as a program."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from digitnet import datasets
from digitnet.cli import app
from digitnet.data import locate as data_locate

DIGITNET = Path(sys.executable).with_name("digitnet")

# A tiny dataset in MNIST's layout: labels 0..9 cycling, so the class balance is known.
COUNTS = {"train": 20, "test": 10}


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _contents() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    contents = {}
    for split, n in COUNTS.items():
        images_stem, labels_stem = datasets.FILES[split]
        contents[images_stem] = _idx(rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        contents[labels_stem] = _idx(np.arange(n) % 10)
    return contents


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads or writes the user's cache, DIGITNET_DATA or the system folder."""
    monkeypatch.setenv("DIGITNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DIGITNET_DATA", raising=False)
    monkeypatch.setattr(data_locate, "SYSTEM_DIR", tmp_path / "system")


@pytest.fixture
def tiny_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding ``mnist/`` with the tiny dataset, registered so that it verifies."""
    contents = _contents()
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for stem, raw in contents.items():
        (folder / f"{stem}.gz").write_bytes(gzip.compress(raw, mtime=0))
    sha256 = {stem: hashlib.sha256(raw).hexdigest() for stem, raw in contents.items()}
    info = dataclasses.replace(datasets.DATASETS["mnist"], sha256=sha256,
                               mirrors=("http://127.0.0.1:1/",))
    monkeypatch.setitem(datasets.DATASETS, "mnist", info)
    return folder.parent


def test_data_json(tiny_mnist: Path) -> None:
    result = CliRunner().invoke(app, ["data", "--data-dir", str(tiny_mnist), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["name"] == "mnist"
    assert report["train"] == 20 and report["test"] == 10
    assert report["source"] == "data_dir" and report["verified"] is True
    assert report["folder"] == str(tiny_mnist / "mnist")
    assert report["splits"]["test"]["files"] == [
        str(tiny_mnist / "mnist" / "t10k-images-idx3-ubyte.gz"),
        str(tiny_mnist / "mnist" / "t10k-labels-idx1-ubyte.gz"),
    ]
    assert report["class_balance"] == {"train": [2] * 10, "test": [1] * 10}


def test_data_table(tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITNET_DATA", str(tiny_mnist))
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["data", "--no-download"])
    assert result.exit_code == 0, result.output
    assert "verified against the published content" in result.stdout
    assert "DIGITNET_DATA" in result.stdout
    assert "class balance" in result.stdout


def test_data_not_found_without_download() -> None:
    result = CliRunner().invoke(app, ["data", "--no-download", "--json"])
    assert result.exit_code == 1
    assert "--data-dir" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_data_unknown_dataset() -> None:
    result = CliRunner().invoke(app, ["data", "--dataset", "emnist", "--json"])
    assert result.exit_code == 1
    assert "unknown dataset 'emnist'" in result.stderr


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DIGITNET), *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


@pytest.fixture
def program_env(tmp_path: Path) -> dict[str, str]:
    """The environment for running the installed program, away from the user's cache."""
    if not DIGITNET.exists():
        pytest.skip(f"the digitnet program is not installed beside {sys.executable}")
    env = {k: v for k, v in os.environ.items() if k != "DIGITNET_DATA"}
    env["DIGITNET_CACHE"] = str(tmp_path / "cache")
    env["COLUMNS"] = "200"
    return env


BAD_FOLDERS = {
    "not gzip": ({"train-images-idx3-ubyte.gz": b"plain bytes", "train-labels-idx1-ubyte.gz":
                  b"plain bytes"}, "not a gzip file"),
    "only some files": ({"train-images-idx3-ubyte.gz": gzip.compress(b"\0\0\x08\x01\0\0\0\0")},
                        "holds only some"),
}


@pytest.mark.parametrize("case", BAD_FOLDERS, ids=list(BAD_FOLDERS))
def test_program_reports_bad_data_without_a_traceback(
    tmp_path: Path, program_env: dict[str, str], case: str
) -> None:
    files, problem = BAD_FOLDERS[case]
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    result = _run("data", "--json", "--no-download", "--data-dir", str(folder.parent),
                  env=program_env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""
    assert result.stderr.startswith("error:")
    assert problem in result.stderr
    assert str(folder) in result.stderr


@pytest.mark.mnist
def test_program_on_real_mnist(mnist_dir: Path, program_env: dict[str, str]) -> None:
    result = _run("data", "--json", "--no-download", "--data-dir", str(mnist_dir),
                  env=program_env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["train"], report["test"]) == (60000, 10000)
    assert report["verified"] is True
    assert sum(report["class_balance"]["train"]) == 60000
    assert report["class_balance"]["test"][1] == 1135
