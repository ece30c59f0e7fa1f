"""Checkpoints: all a :class:`~digitnet.training.Trainer` needs to go on exactly where it stopped.

A checkpoint is a safetensors file like a model file, with more in it: the current parameters,
the optimizer's state (moments, velocities, step count), the best parameters so far, and in the
metadata the config, the epoch and step reached, the history, the preprocessing and the loss
watch. Each epoch's shuffle is drawn from (seed, epoch) alone, so a run resumed from a
checkpoint takes the same steps as one that was never stopped and ends with the same weights,
bit for bit. Written atomically, like everything digitnet writes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from digitnet._atomic import atomic_write_bytes
from digitnet._version import __version__
from digitnet.errors import ConfigError, ModelFileError
from digitnet.guard import read_file
from digitnet.network import Params
from digitnet.preprocessing import Preprocessing
from digitnet.training import HISTORY, TrainConfig, Trainer

__all__ = ["FORMAT", "save", "read", "to_bytes", "config_of", "restore"]

FORMAT = "digitnet-checkpoint"
FORMAT_VERSION = 2  # 2: the optimizer's state over the flat parameters
MAX_BYTES = 1 << 30  # a checkpoint holds at most three copies of a model's arrays, and metadata


def _arrays(prefix: str, params: Params) -> dict[str, np.ndarray]:
    return {f"{prefix}.{name}": np.ascontiguousarray(a) for name, a in params.arrays().items()}


def _params(prefix: str, arrays: dict[str, np.ndarray], layers: int) -> Params:
    return Params([arrays[f"{prefix}.W{k}"] for k in range(1, layers + 1)],
                  [arrays[f"{prefix}.b{k}"] for k in range(1, layers + 1)])


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def to_bytes(trainer: Trainer) -> bytes:
    """The trainer's :meth:`~digitnet.training.Trainer.state_dict` as safetensors bytes."""
    from safetensors.numpy import save as st_save

    state = trainer.state_dict()
    tensors = _arrays("params", state["params"])
    tensors.update({f"optimizer.{k}": np.ascontiguousarray(np.asarray(v))
                    for k, v in state["optimizer"].items()})
    best = state["best"]
    if best is not None:
        tensors.update(_arrays("best", best["params"]))
        best = {"accuracy": best["accuracy"], "epoch": best["epoch"]}
    watch = state["loss_watch"]
    meta = {
        "config": state["config"].to_dict(),
        "epoch": state["epoch"],
        "step": state["step"],
        "seconds": state["seconds"],
        "history": {k: [_finite_or_none(v) for v in values]
                    for k, values in state["history"].items()},
        "best": best,
        "preprocessing": state["preprocessing"].to_dict(),
        "loss_watch": {"smoothed": watch["smoothed"], "limit": _finite_or_none(watch["limit"])},
        "n_classes": trainer.n_classes,
        "digitnet_version": __version__,
    }
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
              "digitnet": json.dumps(meta, allow_nan=False)}
    return st_save(tensors, metadata=header)


def save(trainer: Trainer, path: str | Path) -> Path:
    """Write the trainer's state to ``path`` atomically; returns the path."""
    path = Path(path)
    try:
        atomic_write_bytes(path, to_bytes(trainer))
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot write checkpoint ({exc.strerror or exc})") \
            from None
    return path


def read(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The metadata and arrays of a checkpoint file.

    Raises
    ------
    ModelFileError
        If the file is missing, damaged or not a digitnet checkpoint.
    """
    from safetensors.numpy import load as st_load

    path = Path(path)
    data = read_file(path, what="checkpoint", limit=MAX_BYTES, error=ModelFileError).data
    try:
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n]) if 8 + n <= len(data) else None
        arrays = st_load(data)
    except Exception:  # noqa: BLE001 - whatever the loader raises, this is no checkpoint
        header = None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a digitnet checkpoint (write one with "
                             "train --checkpoint-every N, or by stopping training with Ctrl-C)")
    version = meta.get("format_version", "0")
    if not (isinstance(version, str) and version.isdigit()):
        raise ModelFileError(f"{path}: damaged checkpoint metadata (format_version "
                             f"{version!r:.40})")
    if int(version) > FORMAT_VERSION:
        raise ModelFileError(f"{path}: written by a newer digitnet; upgrade digitnet")
    if int(version) < FORMAT_VERSION:
        raise ModelFileError(f"{path}: a checkpoint in an older digitnet's format; it cannot be "
                             "resumed, start the run again")
    try:
        info = json.loads(meta["digitnet"])
    except (KeyError, TypeError, ValueError, RecursionError):
        raise ModelFileError(f"{path}: damaged checkpoint metadata") from None
    _check_info(info, path)
    return info, arrays


# What restore and config_of read from a checkpoint's metadata, and the JSON type of each.
_FIELDS = {"config": dict, "epoch": int, "step": int, "history": dict,
           "preprocessing": dict, "loss_watch": dict}


def _check_info(info: Any, path: Path) -> None:
    """Refuse damaged metadata by name, before restoring meets a missing or odd field."""
    if not isinstance(info, dict):
        raise ModelFileError(f"{path}: damaged checkpoint metadata (not an object)")
    for key, kind in _FIELDS.items():
        if not isinstance(info.get(key), kind) or isinstance(info.get(key), bool):
            raise ModelFileError(f"{path}: damaged checkpoint metadata ({key} is missing or "
                                 f"not {'an integer' if kind is int else 'an object'})")
    if not {"smoothed", "limit"} <= info["loss_watch"].keys() or \
            not {"scale", "mean", "std"} <= info["preprocessing"].keys():
        raise ModelFileError(f"{path}: damaged checkpoint metadata (loss watch or "
                             "preprocessing incomplete)")
    if not all(isinstance(v, list) for v in info["history"].values()):
        raise ModelFileError(f"{path}: damaged checkpoint metadata (history)")
    from dataclasses import fields

    from digitnet.training import TrainConfig

    unknown = set(info["config"]) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ModelFileError(f"{path}: damaged checkpoint metadata (unknown config fields "
                             f"{', '.join(sorted(unknown))[:60]})")


def config_of(info: dict[str, Any]) -> TrainConfig:
    """The training config stored in a checkpoint's metadata.

    Raises
    ------
    ModelFileError
        If the stored config is missing or not a valid config.
    """
    stored = info.get("config") if isinstance(info, dict) else None
    if not isinstance(stored, dict):
        raise ModelFileError("damaged checkpoint metadata: it holds no training config")
    try:
        return TrainConfig(**stored).validate()
    except (TypeError, ConfigError) as exc:
        raise ModelFileError(f"damaged checkpoint metadata: its training config is not valid "
                             f"({exc})") from None


def _state(info: dict[str, Any], arrays: dict[str, np.ndarray],
           layers: int) -> dict[str, Any]:
    """The trainer state a checkpoint's metadata and arrays describe."""
    best = info.get("best")
    history = info["history"]
    return {
        "params": _params("params", arrays, layers),
        "optimizer": {k.split(".", 1)[1]: v for k, v in arrays.items()
                      if k.startswith("optimizer.")},
        "epoch": int(info["epoch"]),
        "step": int(info["step"]),
        "seconds": float(info.get("seconds", 0.0)),
        "history": {k: [math.nan if v is None else float(v) for v in history[k]]
                    for k in HISTORY},
        "best": None if best is None else {"accuracy": float(best["accuracy"]),
                                           "epoch": int(best["epoch"]),
                                           "params": _params("best", arrays, layers)},
        "loss_watch": dict(info["loss_watch"]),
        "preprocessing": Preprocessing(**info["preprocessing"]),
    }


def restore(trainer: Trainer, info: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Put a freshly built trainer (same config and data) into the checkpoint's state.

    Raises
    ------
    ModelFileError
        If the checkpoint is damaged or does not fit the trainer's network.
    """
    try:
        state = _state(info, arrays, trainer.config.layers + 1)  # hidden layers and output
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"damaged checkpoint metadata ({type(exc).__name__}: {exc})") \
            from None
    try:
        trainer.load_state_dict(state)
    except ValueError as exc:
        raise ModelFileError(f"checkpoint does not fit this network ({exc})") from None
