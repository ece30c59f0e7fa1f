"""All of ``digitnet bench``, in order: memory, floors, epochs, races, the seed preset against
the original notebook, and inference; see :func:`run`."""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitnet import fast, training
from digitnet.bench import naive_notebook, onnx_peer
from digitnet.bench.machine import floors, machine, peak_rss
from digitnet.bench.peers import (
    FAST,
    BenchData,
    TorchNet,
    check_peers,
    digitnet_epoch_seconds,
    digitnet_trainer,
    load,
    median_time,
    sklearn_epoch_seconds,
    sklearn_model,
    threads,
    torch_epoch_seconds,
)
from digitnet.bench.races import run_races
from digitnet.bench.results import (
    BenchResult,
    EpochRow,
    Inference,
    PeerFigures,
    SeedPreset,
    SeedRun,
)
from digitnet.model import Model

__all__ = ["BenchSettings", "run", "seed_preset", "inference"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchSettings:
    """How much to measure. :meth:`quick_settings` is the short version (well under a minute)."""

    epoch_repeats: int = 5          # timed epochs per peer and batch size (after a warm-up)
    race_targets: tuple[float, ...] = (0.93, 0.94)
    race_cap_seconds: float = 30.0  # give up a race after this much training time
    seed_iterations: int = 500      # the seed preset's full-batch steps
    inference_repeats: int = 9
    latency_calls: int = 2000
    floor_size: int = 2048          # the floor matmul's n (n x n @ n x n)
    floor_copy_mib: int = 256
    rss_epochs: int | None = None   # None: the default preset's own epochs
    rss_backends: tuple[str, ...] = ("auto", "numpy")
    threads: int = 1
    quick: bool = False

    @classmethod
    def quick_settings(cls, threads: int = 1) -> BenchSettings:
        return cls(epoch_repeats=2, race_cap_seconds=4.0, seed_iterations=50,
                   inference_repeats=3, latency_calls=200, floor_size=1024, floor_copy_mib=64,
                   rss_epochs=2, rss_backends=("auto",), threads=threads, quick=True)


# -- the seed preset against the naive notebook ------------------------------------------------


def seed_preset(data: BenchData, iterations: int) -> SeedPreset:
    """The ``seed`` preset, then the notebook's own code on the same split from the same
    weights, in its own layout (one image per column, float64)."""
    config = training.make_config("seed", iterations=iterations)
    start = time.perf_counter()
    trainer = training.Trainer(config, data.images, data.labels)
    initial = trainer.params.copy()
    model = trainer.run()
    seconds = time.perf_counter() - start
    ours = SeedRun(seconds, seconds / iterations, _accuracy(model, data), trainer.backend)
    X, Y = naive_notebook.columns(data.images[trainer.train_idx],
                                  data.labels[trainer.train_idx])
    W1, W2 = (w.T.astype(np.float64) for w in initial.W)
    b1, b2 = (b.reshape(-1, 1).astype(np.float64) for b in initial.b)
    start = time.perf_counter()
    W1, b1, W2, b2 = naive_notebook.gradient_descent(X, Y, config.lr, iterations,
                                                     (W1, b1, W2, b2))
    seconds = time.perf_counter() - start
    X_test, _ = naive_notebook.columns(data.test_images, data.test_labels)
    predicted = naive_notebook.make_predictions(X_test, W1, b1, W2, b2)
    naive = SeedRun(seconds, seconds / iterations,
                    float(np.mean(predicted == data.test_labels)))
    return SeedPreset(iterations, ours, naive)


def _accuracy(model: Model, data: BenchData) -> float:
    predictor = fast.Predictor(model.params, model.preprocessing, FAST)
    return float(np.mean(predictor.predict(data.test_images) == data.test_labels))


# -- inference ---------------------------------------------------------------------------------


def inference(data: BenchData, repeats: int, latency_calls: int,
              n_threads: int = 1) -> Inference:
    """Images per second over the test images, and one image's latency, per peer."""
    import torch

    model = digitnet_trainer(data, 64, 1).run()
    predictor = fast.Predictor(model.params, model.preprocessing, FAST)
    net = TorchNet(data, 64)
    net.epoch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = sklearn_model(64, max_iter=1).fit(data.X, data.labels)
    ort_labels = onnx_peer.labeller(model, n_threads)
    n = len(data.test_images)
    batch = PeerFigures(
        digitnet=n / median_time(lambda: predictor.predict(data.test_images), repeats),
        digitnet_reference=n / median_time(lambda: model.predict(data.test_images), repeats),
        torch=n / median_time(lambda: net.predict(net.X_test), repeats),
        sklearn=n / median_time(lambda: clf.predict(data.X_test), repeats),
        onnxruntime=n / median_time(lambda: ort_labels(data.test_images), repeats),
    )
    one_image, one_x = data.test_images[:1], data.X_test[:1]
    one_t = torch.from_numpy(one_x)
    single = PeerFigures(
        digitnet=_per_call(lambda: predictor.predict(one_image), latency_calls),
        torch=_per_call(lambda: net.predict(one_t), latency_calls),
        sklearn=_per_call(lambda: clf.predict(one_x), max(20, latency_calls // 10)),
        onnxruntime=_per_call(lambda: ort_labels(one_image), latency_calls),
    )
    agree = np.mean(ort_labels(data.test_images) == predictor.predict(data.test_images))
    return Inference(images=n, images_per_second=batch, single_image_seconds=single,
                     digitnet_backend=predictor.backend,
                     torch_input="a float32 tensor, standardised beforehand (not timed)",
                     digitnet_input="the uint8 images as loaded",
                     onnxruntime_input="the uint8 images as loaded, through the exported model",
                     onnxruntime_labels_agree=float(agree))


def _per_call(fn: Callable[[], Any], calls: int) -> float:
    """Median over 5 rounds of the mean time of ``calls`` calls."""
    fn()
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds)


# -- all of it ---------------------------------------------------------------------------------


def _epoch_row(data: BenchData, batch: int, repeats: int) -> EpochRow:
    return EpochRow(batch, PeerFigures(
        digitnet=digitnet_epoch_seconds(data, batch, repeats),
        digitnet_numpy=digitnet_epoch_seconds(data, batch, repeats, "numpy"),
        sklearn=sklearn_epoch_seconds(data, batch, repeats),
        torch=torch_epoch_seconds(data, batch, repeats)))


def run(data_dir: str | Path | None = None, settings: BenchSettings | None = None,
        progress: Progress | None = None) -> BenchResult:
    """Measure everything, one peer after another in this process.

    Raises
    ------
    MissingPeerError
        When scikit-learn, PyTorch or onnxruntime is not installed.
    """
    settings = settings or BenchSettings()
    say = progress or (lambda message: None)
    check_peers()
    about = machine(settings.threads)
    say("peak memory of a default training run (child process)")
    memory = tuple(peak_rss(data_dir, settings.rss_epochs, backend)
                   for backend in settings.rss_backends)
    say("loading MNIST")
    data = load(data_dir)
    with threads(settings.threads):
        say("measuring the machine's floors")
        floor = floors(settings.floor_size, settings.floor_copy_mib)
        rows = []
        for batch in (128, 64):
            say(f"epochs at batch {batch}")
            rows.append(_epoch_row(data, batch, settings.epoch_repeats))
        say("racing to 93 % and 94 % test accuracy")
        races = run_races(data, settings.race_targets, settings.race_cap_seconds)
        say(f"the seed preset: {settings.seed_iterations} full-batch iterations")
        seed = seed_preset(data, settings.seed_iterations)
        say("inference")
        speed = inference(data, settings.inference_repeats, settings.latency_calls,
                          settings.threads)
    return BenchResult(quick=settings.quick, machine=about, memory=memory, floor=floor,
                       epoch_seconds=tuple(rows), time_to_accuracy=races, seed_preset=seed,
                       inference=speed)
