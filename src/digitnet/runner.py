"""Training on a named dataset: find and load its files, train, measure on the test split.

This is the layer between the trainer, which knows only arrays, and the applications (the CLI,
the page, a sweep), which know dataset names and folders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitnet import checkpoint, datasets
from digitnet.model import Model
from digitnet.training import Progress, TrainConfig, Trainer

__all__ = ["Data", "load_data", "make_trainer", "finish", "train_on_dataset"]

_BLOCK = 1024  # test images predicted at a time


@dataclass(frozen=True)
class Data:
    """A dataset's training and test splits, with where they came from."""

    name: str
    images: np.ndarray       # (n, 28, 28) uint8
    labels: np.ndarray       # (n,)
    test_images: np.ndarray
    test_labels: np.ndarray
    train_files: Any         # datasets' record of the files: source and SHA-256
    test_files: Any
    class_names: tuple[str, ...]


def load_data(name: str = "mnist", data_dir: str | Path | None = None, download: bool = True,
              progressbar: Any = None) -> Data:
    """Both splits of the dataset ``name``, found as :func:`digitnet.datasets.locate` does.

    Raises
    ------
    DataError
        If the files cannot be found, fetched or read.
    """
    images, labels, train_files = datasets.load_split(name, "train", data_dir, download,
                                                      progressbar)
    test_images, test_labels, test_files = datasets.load_split(name, "test", data_dir,
                                                               download, progressbar)
    return Data(name, images, labels, test_images, test_labels, train_files, test_files,
                tuple(datasets.DATASETS[name].class_names))


def make_trainer(config: TrainConfig, data: Data,
                 resume: str | Path | None = None) -> Trainer:
    """A trainer for ``config`` on ``data``'s training split, or one that goes on from the
    checkpoint ``resume`` (whose own config then applies)."""
    if resume is None:
        return Trainer(config, data.images, data.labels)
    info, arrays = checkpoint.read(resume)
    trainer = Trainer(checkpoint.config_of(info), data.images, data.labels)
    checkpoint.restore(trainer, info, arrays)
    return trainer


def finish(model: Model, data: Data) -> Model:
    """``model`` with its test accuracy (never used to choose anything), the class names and
    the dataset's content hashes in its metadata."""
    predicted = np.concatenate([model.predict(data.test_images[start:start + _BLOCK])
                                for start in range(0, len(data.test_images), _BLOCK)])
    model.meta["metrics"]["test_accuracy"] = float(np.mean(predicted == data.test_labels))
    model.meta["class_names"] = list(data.class_names)
    model.meta["datasets"] = {
        "name": data.name,
        "train": {"source": data.train_files.source, "sha256": data.train_files.sha256},
        "test": {"source": data.test_files.source, "sha256": data.test_files.sha256},
    }
    return model


def train_on_dataset(config: TrainConfig, data_dir: str | Path | None = None,
                     callback: Callable[[Progress], None] | None = None,
                     download: bool = True, progressbar: Any = None) -> Model:
    """Train on the config's named dataset and report test accuracy; see :func:`finish`."""
    data = load_data(config.dataset, data_dir, download, progressbar)
    return finish(Trainer(config, data.images, data.labels).run(callback), data)
