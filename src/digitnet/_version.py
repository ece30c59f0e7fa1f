"""The installed digitnet's version, on its own so that any module can name it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("digitnet")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
