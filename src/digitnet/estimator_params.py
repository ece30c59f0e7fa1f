"""The checks behind :class:`~digitnet.estimator.DigitNetClassifier`'s hyper-parameters, and
its stopping rule: plain functions, free of scikit-learn."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from digitnet.errors import ConfigError
from digitnet.training import Trainer

__all__ = ["ParameterError", "require", "seed_of", "train_until_converged",
           "as_parameter_error"]

_SEED_LIMIT = 2**63 - 1  # TrainConfig's seed bound


class ParameterError(ConfigError, ValueError):
    """A hyper-parameter is out of range or of the wrong type.

    Both a :class:`~digitnet.errors.ConfigError` (so the command line shows one line) and a
    ``ValueError`` (what scikit-learn's tools expect from ``fit``).
    """


def require(name: str, value: Any, kind: type) -> None:
    if not isinstance(value, kind) or isinstance(value, bool):
        expected = ("an integer" if kind is numbers.Integral else
                    "a number" if kind is numbers.Real else "a string")
        raise ParameterError(f"{name} = {value!r} must be {expected}", name)


def seed_of(random_state: Any) -> int:
    """One integer seed for the trainer, from scikit-learn's kinds of random_state."""
    if random_state is None:
        return int(np.random.default_rng().integers(_SEED_LIMIT))  # fresh OS entropy
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        seed = int(random_state)
        if not 0 <= seed <= _SEED_LIMIT:
            raise ParameterError(f"random_state = {seed} must be between 0 and 2**63-1",
                                 "random_state")
        return seed
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(_SEED_LIMIT))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    raise ParameterError(f"random_state = {random_state!r} must be None, an integer, a "
                         "numpy Generator or a RandomState", "random_state")


def train_until_converged(trainer: Trainer, tol: float, patience: int) -> bool:
    """Run ``trainer`` to its end, or stop it once the training loss has not fallen below its
    best by ``tol`` for more than ``patience`` records in a row; True when it stopped so."""
    best, stale, converged = math.inf, 0, False
    for record in trainer.events():
        stale = stale + 1 if record.loss > best - tol else 0
        best = min(best, record.loss)
        if stale > patience:  # scikit-learn counts the same way
            converged = True
            trainer.stop()  # events() ends at the next step boundary, before another step
    return converged


# TrainConfig's fields that this estimator calls by other names.
_PARAMETER_NAMES = {"hidden": "hidden_units", "layers": "n_layers", "lr": "learning_rate",
                    "val_size": "validation_size"}


def as_parameter_error(exc: ConfigError) -> ParameterError:
    """The trainer's complaint about a TrainConfig field, told in this estimator's names."""
    field, message = exc.field, str(exc)
    if field is None:
        return ParameterError(message)
    param = _PARAMETER_NAMES.get(field, field)
    if param != field:
        # The trainer's messages open with the field's name ("hidden = 0 is out of ...").
        message = (param + message[len(field):] if message.startswith(field)
                   else f"{param}: {message}")
    return ParameterError(message, param)
