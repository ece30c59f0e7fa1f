"""Find, fetch, verify and parse MNIST-format data.

The named datasets (``mnist`` and ``fashion-mnist``) come as four IDX files, gzip-compressed or
raw. :func:`load` looks for them, in order, in

1. the ``data_dir`` argument, then the ``DIGITNET_DATA`` variable: a folder whose sub-folder
   ``<name>/`` holds the files;
2. the user cache (pooch's OS cache for ``digitnet``, or ``DIGITNET_CACHE``);
3. the system folder ``/usr/share/datasets/<name>/`` (where Debian installs Fashion-MNIST);
4. a download from the dataset's mirrors into the cache, each file's hash checked.

Whatever the source, the *decompressed* content of each file is checked against the published
SHA-256, so recompressed copies pass and damaged ones do not. A verified hash is remembered
(keyed by path, size and modification time), so a second load does not hash 47 MB again.

Other formats people have are read by :func:`load_file`: the Kaggle "digit-recognizer" CSV, the
headerless ``label,784 pixels`` CSV, keras' ``mnist.npz`` and single IDX files.
"""


from __future__ import annotations

import sys
import types
from typing import Any

from digitnet.data import idx as _idx
from digitnet.data import locate as _locate
from digitnet.data.formats import load_file, parse_csv, parse_npz
from digitnet.data.idx import _gunzip, parse_idx, read_idx
from digitnet.data.locate import cache_dir, load, load_split, locate
from digitnet.data.registry import (
    DATASETS,
    FILES,
    IMAGE_SHAPE,
    N_CLASSES,
    N_PIXELS,
    SPLITS,
    DatasetInfo,
    SplitFiles,
    class_balance,
    names,
)

__all__ = [
    "DATASETS",
    "FILES",
    "IMAGE_SHAPE",
    "N_CLASSES",
    "N_PIXELS",
    "SPLITS",
    "DatasetInfo",
    "SplitFiles",
    "cache_dir",
    "class_balance",
    "load",
    "load_file",
    "load_split",
    "locate",
    "names",
    "parse_csv",
    "parse_idx",
    "parse_npz",
    "read_idx",
]
_ = _gunzip  # kept importable: the benchmarks name it

# Settings that live in the modules that use them: reading or setting them here (as a test's
# monkeypatch does) reads or sets them there.
_FORWARDED = {"SYSTEM_DIR": _locate, "MAX_FILE_BYTES": _idx}
_DEFAULTS = {name: getattr(module, name) for name, module in _FORWARDED.items()}


class _Datasets(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name in _FORWARDED:
            return getattr(_FORWARDED[name], name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FORWARDED:
            setattr(_FORWARDED[name], name, value)
        else:
            super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if name in _FORWARDED:  # what undoing a patch does: back to the value at import
            setattr(_FORWARDED[name], name, _DEFAULTS[name])
        else:
            super().__delattr__(name)


sys.modules[__name__].__class__ = _Datasets
