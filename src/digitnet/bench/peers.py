"""The implementations ``digitnet bench`` compares, on the same data with the same network.

digitnet's trainer, scikit-learn's ``MLPClassifier(hidden_layer_sizes=(10,))`` and PyTorch's
idiomatic ``nn.Sequential(Linear, ReLU, Linear)``: how each is built, and how long one training
epoch takes it. The peers are imported only when used (``pip install 'digitnet[bench]'``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitnet import datasets, fast, training
from digitnet.bench import onnx_peer
from digitnet.errors import DigitnetError
from digitnet.model import Preprocessing

__all__ = ["MissingPeerError", "RACE_SETTINGS", "FAST", "INSTALL_HINT", "BenchData",
           "check_peers", "load", "threads", "median_time", "digitnet_trainer",
           "digitnet_epoch_seconds", "sklearn_model", "sklearn_epoch_seconds", "TorchNet",
           "torch_epoch_seconds"]

INSTALL_HINT = "pip install 'digitnet[bench]'"

# The settings each peer races to 93 % and 94 % test accuracy with: the fastest to 94 % of a grid
# measured on this project's machine (Adam; learning rate 0.0005 to 0.05; batch 16 to 256; a
# constant rate, and for digitnet and PyTorch also a one-cycle schedule over 2 to 5 epochs;
# scikit-learn's MLP has no schedule for Adam); see benchmarks/RESULTS.md. With a constant rate
# every one of them levels off near 93.5 %, so digitnet's best is its own one-cycle schedule.
RACE_SETTINGS: dict[str, dict[str, Any]] = {
    "digitnet": {"optimizer": "adam", "lr": 0.01, "batch_size": 128, "l2": 1e-4,
                 "schedule": "onecycle", "epochs": 5},
    "sklearn": {"solver": "adam", "learning_rate_init": 0.001, "batch_size": 16, "alpha": 1e-4},
    "torch": {"optimizer": "Adam", "lr": 0.002, "batch_size": 32},
}

# digitnet's fast backend, named in the rows it fills.
FAST = "numba" if fast.numba_available() else "numpy"


class MissingPeerError(DigitnetError):
    """scikit-learn, PyTorch or onnxruntime, which the benchmark compares with, is not
    installed."""


def check_peers() -> dict[str, str]:
    """The versions of the peers; raises :class:`MissingPeerError` naming the missing ones."""
    missing = [name for name, module in (("scikit-learn", "sklearn"), ("torch", "torch"),
                                         *onnx_peer.MODULES.items())
               if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingPeerError(f"the benchmark compares with {' and '.join(missing)}, which "
                               f"{'is' if len(missing) == 1 else 'are'} not installed: "
                               f"{INSTALL_HINT}")
    import sklearn
    import torch

    return {"sklearn": sklearn.__version__, "torch": torch.__version__}


# -- timing ------------------------------------------------------------------------------------


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """BLAS, PyTorch and OpenMP limited to ``n`` threads inside the block."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


# -- the data every peer sees ------------------------------------------------------------------


@dataclass(frozen=True)
class BenchData:
    """MNIST as digitnet reads it (uint8 rows) and as the peers do (standardised float32)."""

    images: np.ndarray        # uint8 (60000, 784): digitnet's input
    labels: np.ndarray
    test_images: np.ndarray   # uint8 (10000, 784)
    test_labels: np.ndarray
    X: np.ndarray             # float32 (60000, 784), standardised: the peers' input
    X_test: np.ndarray
    preprocessing: Preprocessing


def load(data_dir: str | Path | None) -> BenchData:
    """MNIST's training and test splits, in both layouts."""
    images, labels = datasets.load("mnist", "train", data_dir)
    test_images, test_labels = datasets.load("mnist", "test", data_dir)
    images = np.ascontiguousarray(images.reshape(len(images), -1))
    test_images = np.ascontiguousarray(test_images.reshape(len(test_images), -1))
    mean, std = training.pixel_stats(images, np.zeros(0, np.int64))
    pre = Preprocessing(1 / 255, mean, std)
    return BenchData(images, labels.astype(np.int64), test_images,
                     test_labels.astype(np.int64), pre.apply(images, np.float32),
                     pre.apply(test_images, np.float32), pre)


# -- digitnet ----------------------------------------------------------------------------------


def digitnet_trainer(data: BenchData, batch_size: int, epochs: int, backend: str = FAST,
                     **overrides: Any) -> training.Trainer:
    """Adam, L2 1e-4, on all 60,000 training images (no validation split): as the peers."""
    settings = {"optimizer": "adam", "lr": 0.01, "l2": 1e-4, "schedule": "constant",
                "batch_size": batch_size, "epochs": epochs, **overrides}
    config = training.make_config("default", val_size=0, select_best=False, **settings)
    return training.Trainer(config, data.images, data.labels, backend=backend)


def digitnet_epoch_seconds(data: BenchData, batch_size: int, repeats: int,
                           backend: str = FAST) -> float:
    trainer = digitnet_trainer(data, batch_size, repeats + 1, backend)
    seconds = [record.seconds for record in trainer.events()]
    return statistics.median(seconds[1:])  # the first epoch also builds the engine


# -- scikit-learn ------------------------------------------------------------------------------


def sklearn_model(batch_size: int, **overrides: Any) -> Any:
    from sklearn.neural_network import MLPClassifier

    settings = {**RACE_SETTINGS["sklearn"], "batch_size": batch_size, **overrides}
    return MLPClassifier(hidden_layer_sizes=(10,), shuffle=True, random_state=0, **settings)


def sklearn_epoch_seconds(data: BenchData, batch_size: int, repeats: int) -> float:
    import warnings

    model = sklearn_model(batch_size)
    classes = np.arange(10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return median_time(lambda: model.partial_fit(data.X, data.labels, classes=classes),
                           repeats)


# -- PyTorch -----------------------------------------------------------------------------------


class TorchNet:
    """PyTorch's idiomatic version: nn.Sequential(Linear, ReLU, Linear), CrossEntropyLoss."""

    def __init__(self, data: BenchData, batch_size: int, **overrides: Any) -> None:
        import torch

        settings = {**RACE_SETTINGS["torch"], "batch_size": batch_size, **overrides}
        torch.manual_seed(0)
        self.torch = torch
        self.model = torch.nn.Sequential(torch.nn.Linear(784, 10), torch.nn.ReLU(),
                                         torch.nn.Linear(10, 10))
        self.loss = torch.nn.CrossEntropyLoss()
        self.optimizer = getattr(torch.optim, settings["optimizer"])(self.model.parameters(),
                                                                    lr=settings["lr"])
        self.batch_size = settings["batch_size"]
        self.X = torch.from_numpy(data.X)
        self.y = torch.from_numpy(data.labels)
        self.X_test = torch.from_numpy(data.X_test)
        self.generator = torch.Generator().manual_seed(0)

    def epoch(self) -> None:
        torch, model, B = self.torch, self.model, self.batch_size
        model.train()
        order = torch.randperm(len(self.X), generator=self.generator)
        for start in range(0, len(order), B):
            idx = order[start:start + B]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss(model(self.X[idx]), self.y[idx])
            loss.backward()
            self.optimizer.step()

    def predict(self, X: Any) -> np.ndarray:
        with self.torch.inference_mode():
            self.model.eval()
            return self.model(X).argmax(1).numpy()


def torch_epoch_seconds(data: BenchData, batch_size: int, repeats: int) -> float:
    net = TorchNet(data, batch_size)
    return median_time(net.epoch, repeats)
