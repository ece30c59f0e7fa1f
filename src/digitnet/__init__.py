"""digitnet: the classic 784-10-10 MNIST network, from scratch in NumPy.

    >>> from digitnet import datasets
    >>> images, labels = datasets.load("mnist", "train")   # uint8 (60000, 28, 28), (60000,)

Modules: ``datasets`` (find, fetch, verify, parse), ``errors`` (what digitnet raises).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("digitnet")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
