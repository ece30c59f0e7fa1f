"""What the tests make their data from: IDX bytes, and a tiny MNIST folder that verifies."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from digitnet import datasets

TRAIN, TEST = 300, 100  # digits in the tiny MNIST's two splits


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    """An uncompressed IDX file: magic (0, 0, type, dimensions), big-endian sizes, the data.

    With the default type 0x08 (unsigned bytes) the array is converted to uint8 first.
    """
    array = np.asarray(array, dtype=np.uint8) if type_byte == 0x08 else np.asarray(array)
    header = bytes([0, 0, type_byte, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.tobytes()


def learnable_digits(n: int, rng: np.random.Generator,
                     centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (n, 28, 28) uint8 around ten noisy prototypes, and their labels 0-9."""
    labels = np.arange(n) % 10
    images = np.clip(centres[labels] + rng.normal(0, 60, (n, 784)), 0, 255)
    return images.astype(np.uint8).reshape(n, 28, 28), labels.astype(np.uint8)


def mnist_contents(train: int = TRAIN, test: int = TEST, seed: int = 0) -> dict[str, bytes]:
    """The four MNIST files (decompressed), by file stem: a problem a network learns in a few
    epochs."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 256, (10, 784))
    contents = {}
    for split, n in (("train", train), ("test", test)):
        images, labels = learnable_digits(n, rng, centres)
        images_stem, labels_stem = datasets.FILES[split]
        contents[images_stem], contents[labels_stem] = idx_bytes(images), idx_bytes(labels)
    return contents


def write_mnist(root: Path, contents: dict[str, bytes],
                monkeypatch: pytest.MonkeyPatch) -> Path:
    """``contents`` gzipped into ``root/mnist/`` and registered as the published MNIST, so that
    they verify (no mirror is reachable); returns ``root``."""
    folder = root / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for stem, raw in contents.items():
        (folder / f"{stem}.gz").write_bytes(gzip.compress(raw, mtime=0))
    sha256 = {stem: hashlib.sha256(raw).hexdigest() for stem, raw in contents.items()}
    info = dataclasses.replace(datasets.DATASETS["mnist"], sha256=sha256,
                               mirrors=("http://127.0.0.1:1/",))
    monkeypatch.setitem(datasets.DATASETS, "mnist", info)
    return root


def odd_exif(make_type: int, orientation: int = 6) -> bytes:
    """EXIF with an Orientation tag and Make stored as ``make_type`` (5 RATIONAL, 11 FLOAT):
    a valid TIFF structure, with a type no camera writes for Make."""
    entries = [struct.pack("<HHII", 0x0112, 3, 1, orientation)]
    extra = b""
    if make_type == 5:
        entries.append(struct.pack("<HHII", 0x010F, 5, 1, 8 + 2 + 12 * 2 + 4))
        extra = struct.pack("<II", 1, 3)
    else:
        entries.append(struct.pack("<HHIf", 0x010F, 11, 1, 1.5))
    ifd = struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd + extra


def prototypes(n: int, seed: int, noise: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """Ten random uint8 prototypes with Gaussian noise of ``noise`` grey levels: images
    (n, 784) and labels cycling 0-9, a problem the network learns in a few epochs."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 256, (10, 784))
    labels = np.arange(n) % 10
    images = np.clip(centres[labels] + rng.normal(0, noise, (n, 784)), 0, 255).astype(np.uint8)
    return images, labels


def same_params(a, b) -> bool:  # type: ignore[no-untyped-def]
    """Whether two Params hold bit-identical weights and biases."""
    return all(np.array_equal(x, y) for x, y in zip([*a.W, *a.b], [*b.W, *b.b], strict=True))
