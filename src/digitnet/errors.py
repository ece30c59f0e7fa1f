"""The exceptions digitnet raises for bad input.

Each carries a one-line message that names the input and what is wrong with it, so the
command line can show it as it is, without a traceback.
"""

from __future__ import annotations


class DigitnetError(Exception):
    """Base class of every error digitnet raises on purpose."""


class DataError(DigitnetError):
    """A dataset file is missing, malformed, or differs from the published data."""


class ImageError(DigitnetError):
    """An image cannot be read or holds no digit."""


class ModelFileError(DigitnetError):
    """A model file cannot be read, or is not a digitnet model."""


class ConfigError(DigitnetError):
    """A training option is out of range or unknown.

    ``field`` names the :class:`~digitnet.training.TrainConfig` field at fault (None when the
    error is not about one field), so callers can map it to their own names.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DivergenceError(DigitnetError):
    """Training produced non-finite numbers."""
