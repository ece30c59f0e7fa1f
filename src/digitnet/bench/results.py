"""What ``digitnet bench`` measured, as frozen dataclasses.

:meth:`BenchResult.to_dict` gives the one JSON object ``digitnet bench --json`` prints; its keys
are the ones ``benchmarks/RESULTS.md`` quotes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["Machine", "MemoryRun", "Floors", "PeerFigures", "EpochRow", "Reached",
           "PeerRace", "Races", "SeedRun", "SeedPreset", "Inference", "Ratios", "BenchResult"]

PEERS = ("digitnet", "sklearn", "torch")  # the peers of every race
RATIO_BATCH = 128  # the batch size whose epoch times the ratios divide


def _without_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


@dataclass(frozen=True)
class Machine:
    """What the figures were measured on; versions of what is installed (None: absent)."""

    cpu: str
    cores: int | None
    threads: int
    python: str
    numpy: str
    backend: str  # what the digitnet rows use (training picks by run length)
    blas: str | None = None
    numba: str | None = None
    sklearn: str | None = None
    torch: str | None = None
    onnxruntime: str | None = None
    cpu_id: dict[str, str] | None = None           # vendor, family and model numbers
    vector_features: tuple[str, ...] | None = None  # those the kernels' paths depend on
    paths: dict[str, str] | None = None             # the path each kernel takes here

    def to_dict(self) -> dict[str, Any]:
        data = _without_none(asdict(self))
        if "vector_features" in data:
            data["vector_features"] = list(data["vector_features"])
        return data


@dataclass(frozen=True)
class MemoryRun:
    """Peak resident memory of one ``digitnet train --preset default`` in a child process."""

    peak_rss_mib: float
    backend: str
    command: str
    test_accuracy: float | None
    train_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Floors:
    """The machine's limits, and what they make of one epoch of the 784-10-10 network."""

    matmul_gflops: float         # a large float32 matmul
    copy_gb_per_s: float         # a large copy, read plus write
    epoch_gflop: float           # the FLOPs of one epoch over 60,000 images
    epoch_flop_floor_s: float    # ... at the matmul's rate
    epoch_stream_floor_s: float  # reading the float32 inputs once at the copy's rate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PeerFigures:
    """One figure per implementation; digitnet's second backends where measured."""

    digitnet: float
    sklearn: float
    torch: float
    digitnet_numpy: float | None = None      # the NumPy engine, beside the fast one
    digitnet_reference: float | None = None  # network.py as written
    onnxruntime: float | None = None         # the exported model (inference only)

    def items(self) -> list[tuple[str, float]]:
        """(name, figure) pairs, digitnet's first."""
        order = ("digitnet", "digitnet_numpy", "digitnet_reference", "sklearn", "torch",
                 "onnxruntime")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return [(name, values[name]) for name in order if values[name] is not None]

    def to_dict(self) -> dict[str, float]:
        return dict(self.items())


@dataclass(frozen=True)
class EpochRow:
    """Seconds per training epoch over the 60,000 training images at one batch size."""

    batch: int
    seconds: PeerFigures


@dataclass(frozen=True)
class Reached:
    """When a race first reached ``target`` test accuracy (or where it stood at the cap)."""

    target: float
    seconds: float   # training time, evaluation not counted; the cap when not reached
    epochs: int
    accuracy: float  # the test accuracy then
    reached: bool

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "epochs": self.epochs, "accuracy": self.accuracy,
                "reached": self.reached}


@dataclass(frozen=True)
class PeerRace:
    """One peer's race: a :class:`Reached` per target, lowest target first."""

    targets: tuple[Reached, ...]

    def at(self, target: float) -> Reached:
        for reached in self.targets:
            if abs(reached.target - target) < 1e-9:
                return reached
        raise KeyError(f"no race to {target:.2f}")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {f"{r.target:.2f}": r.to_dict() for r in self.targets}


@dataclass(frozen=True)
class Races:
    """Every peer from scratch to each target test accuracy, with its best settings."""

    settings: dict[str, dict[str, Any]]
    cap_seconds: float
    digitnet: PeerRace
    sklearn: PeerRace
    torch: PeerRace

    def peer(self, name: str) -> PeerRace:
        if name not in PEERS:
            raise KeyError(name)
        race: PeerRace = getattr(self, name)
        return race

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "cap_seconds": self.cap_seconds,
                **{name: self.peer(name).to_dict() for name in PEERS}}


@dataclass(frozen=True)
class SeedRun:
    """A full-batch run of the ``seed`` preset's gradient descent."""

    seconds: float
    seconds_per_iteration: float
    test_accuracy: float
    backend: str | None = None  # digitnet's; None for the notebook's own NumPy

    def to_dict(self) -> dict[str, Any]:
        return _without_none(asdict(self))


@dataclass(frozen=True)
class SeedPreset:
    """The ``seed`` preset beside the original notebook's code, same weights, same split."""

    iterations: int
    digitnet: SeedRun
    naive: SeedRun

    def to_dict(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "digitnet": self.digitnet.to_dict(),
                "naive": self.naive.to_dict()}


@dataclass(frozen=True)
class Inference:
    """Throughput over the test images and one image's latency."""

    images: int
    images_per_second: PeerFigures
    single_image_seconds: PeerFigures
    digitnet_backend: str
    torch_input: str
    digitnet_input: str
    onnxruntime_input: str | None = None
    onnxruntime_labels_agree: float | None = None  # the share of labels equal to digitnet's

    def to_dict(self) -> dict[str, Any]:
        return _without_none({
            "images": self.images, "images_per_second": self.images_per_second.to_dict(),
            "single_image_seconds": self.single_image_seconds.to_dict(),
            "digitnet_backend": self.digitnet_backend, "torch_input": self.torch_input,
            "digitnet_input": self.digitnet_input, "onnxruntime_input": self.onnxruntime_input,
            "onnxruntime_labels_agree": self.onnxruntime_labels_agree})


@dataclass(frozen=True)
class Ratios:
    """digitnet divided by the peer: times (lower is better) and images/s (higher is)."""

    epoch_vs_sklearn: float
    epoch_vs_torch: float
    time_to_94_vs_sklearn: float
    seed_preset_vs_naive: float
    inference_vs_torch: float
    inference_vs_onnxruntime: float  # NaN where onnxruntime was not run
    epoch_vs_floor: float            # the epoch over the FLOP floor the bench measured

    @classmethod
    def of(cls, epoch: PeerFigures, races: Races, seed: SeedPreset,
           inference: Inference, floor: Floors) -> Ratios:
        """From the epoch times at one batch size and the other figures."""
        speed = inference.images_per_second
        onnxruntime = speed.onnxruntime if speed.onnxruntime is not None else math.nan
        return cls(
            epoch_vs_sklearn=epoch.digitnet / epoch.sklearn,
            epoch_vs_torch=epoch.digitnet / epoch.torch,
            time_to_94_vs_sklearn=(races.digitnet.at(0.94).seconds
                                   / races.sklearn.at(0.94).seconds),
            seed_preset_vs_naive=seed.digitnet.seconds / seed.naive.seconds,
            inference_vs_torch=speed.digitnet / speed.torch,
            inference_vs_onnxruntime=speed.digitnet / onnxruntime,
            epoch_vs_floor=epoch.digitnet / floor.epoch_flop_floor_s,
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class BenchResult:
    """Everything ``digitnet bench`` measured (see :func:`digitnet.bench.run`)."""

    quick: bool
    machine: Machine
    memory: tuple[MemoryRun, ...]
    floor: Floors
    epoch_seconds: tuple[EpochRow, ...]
    time_to_accuracy: Races
    seed_preset: SeedPreset
    inference: Inference

    @property
    def peak_rss_mib(self) -> float:
        """The first memory run's peak (the default backend's)."""
        return self.memory[0].peak_rss_mib

    def epochs_at(self, batch: int) -> PeerFigures:
        for row in self.epoch_seconds:
            if row.batch == batch:
                return row.seconds
        raise KeyError(f"no epoch times at batch {batch}")

    @property
    def ratios(self) -> Ratios:
        return Ratios.of(self.epochs_at(RATIO_BATCH), self.time_to_accuracy,
                         self.seed_preset, self.inference, self.floor)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``digitnet bench --json`` prints."""
        return {
            "quick": self.quick,
            "machine": self.machine.to_dict(),
            "memory": [run.to_dict() for run in self.memory],
            "peak_rss_mib": self.peak_rss_mib,
            "floor": self.floor.to_dict(),
            "epoch_seconds": {str(row.batch): row.seconds.to_dict()
                              for row in self.epoch_seconds},
            "time_to_accuracy": self.time_to_accuracy.to_dict(),
            "seed_preset": self.seed_preset.to_dict(),
            "inference": self.inference.to_dict(),
            "ratios": self.ratios.to_dict(),
        }
