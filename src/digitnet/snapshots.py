"""The hidden units' incoming weights W1 at a few points of a training run.

A :class:`Recorder` listens to a run's progress (step and parameters) and keeps W1 at the
start, at about 2 %, 10 % and 33 % of the steps and at the end: the first progress report at
or after each of those points. The report draws them side by side, so the features can be
seen forming. They are kept in the model file's metadata under ``"snapshots"``::

    {"steps": [0, 860, ...], "epochs": [0, 1, ...], "total_steps": 12900,
     "shape": [784, 10], "dtype": "float16", "W1": ["<base64>", ...]}

float16 keeps three significant digits, plenty for a picture, and a snapshot of a 784-10-10
network costs 21 kB. Only the first ``max_units`` units are kept.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from digitnet.network import Params

__all__ = ["FRACTIONS", "Snapshot", "Recorder", "from_meta"]

FRACTIONS = (0.0, 0.02, 0.10, 0.33, 1.0)
"""Where in a run, as fractions of its steps, W1 is kept."""


@dataclass(frozen=True)
class Snapshot:
    """W1 (784, units) after ``step`` gradient steps (in epoch ``epoch``, 0 before the first)."""

    step: int
    epoch: int
    W1: np.ndarray


@dataclass
class Recorder:
    """Keeps W1 at the first report at or after each of ``fractions`` of the run's steps."""

    max_units: int = 20
    fractions: tuple[float, ...] = FRACTIONS
    kept: list[Snapshot] = field(default_factory=list)
    total_steps: int = 0
    _next: int = 0  # the first of ``fractions`` not yet reached

    def observe(self, step: int, total_steps: int, params: Params | None,
                epoch: int = 0) -> bool:
        """Look at the run after ``step`` of ``total_steps``; True when W1 was kept (never
        when ``params`` is None: a progress report made without a copy of them).

        A report past several points at once (an epoch is long) is kept once, for all of them.
        """
        self.total_steps = total_steps
        if params is None:
            return False
        targets = [f * total_steps for f in self.fractions]
        if self._next >= len(targets) or step < targets[self._next]:
            return False
        while self._next < len(targets) and step >= targets[self._next]:
            self._next += 1
        self.kept.append(Snapshot(step, epoch,
                                  np.array(params.W[0][:, :self.max_units], dtype=np.float16)))
        return True

    def to_meta(self) -> dict[str, Any]:
        """The snapshots as JSON-ready metadata (see the module docstring)."""
        unique = self.kept
        shape = list(unique[0].W1.shape) if unique else [0, 0]
        return {
            "steps": [s.step for s in unique],
            "epochs": [s.epoch for s in unique],
            "total_steps": self.total_steps,
            "shape": shape,
            "dtype": "float16",
            "W1": [base64.b64encode(s.W1.astype("<f2").tobytes()).decode("ascii")
                   for s in unique],
        }


def from_meta(meta: dict[str, Any]) -> list[Snapshot]:
    """The snapshots a model's metadata holds (``meta["snapshots"]``); [] when there are none
    or they cannot be read."""
    raw = meta.get("snapshots")
    if not isinstance(raw, dict):
        return []
    try:
        rows, cols = (int(v) for v in raw["shape"])
        out = []
        for step, epoch, data in zip(raw["steps"], raw["epochs"], raw["W1"], strict=True):
            W1 = np.frombuffer(base64.b64decode(data, validate=True), dtype="<f2")
            out.append(Snapshot(int(step), int(epoch),
                                W1.reshape(rows, cols).astype(np.float32)))
        return out
    except (KeyError, TypeError, ValueError):
        return []
