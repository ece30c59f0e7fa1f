"""Tests of the data layer: the IDX, CSV and npz readers, search, verification and download.

Unit tests write tiny files of their own; the real MNIST is used only by the tests marked
``mnist`` (they need DIGITNET_DATA). No test touches the user's cache or the network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import io
import os
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from digitnet import datasets
from digitnet.data import locate as data_locate
from digitnet.errors import DataError

FUZZ_EXAMPLES = int(os.environ.get("DIGITNET_FUZZ_EXAMPLES", "500"))

FILES = datasets.FILES
REAL_MNIST = datasets.DATASETS["mnist"]


def _arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    return images, labels


# A tiny dataset in MNIST's layout: 12 training and 5 test images.
ARRAYS = {"train": _arrays(12, seed=1), "test": _arrays(5, seed=2)}


def idx_bytes(array: np.ndarray) -> bytes:
    """An uncompressed IDX file of unsigned bytes."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + array.tobytes()


def gz(data: bytes, level: int = 9) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)


def dataset_files(split: str) -> dict[str, bytes]:
    """The decompressed content of the split's two files, by file stem."""
    return dict(zip(FILES[split], (idx_bytes(a) for a in ARRAYS[split]), strict=True))


def write_dataset(
    folder: Path,
    splits: tuple[str, ...] = ("train", "test"),
    compressed: bool = True,
    dotted: bool = False,
) -> Path:
    """Write the tiny dataset's files into ``folder`` under MNIST's file names."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in splits:
        for stem, raw in dataset_files(split).items():
            name = stem.replace("-idx", ".idx") if dotted else stem
            if compressed:
                (folder / f"{name}.gz").write_bytes(gz(raw))
            else:
                (folder / name).write_bytes(raw)
    return folder


def fake_info(name: str = "mnist", **changes: object) -> datasets.DatasetInfo:
    """The registry entry under which the tiny dataset verifies."""
    raw = {**dataset_files("train"), **dataset_files("test")}
    return dataclasses.replace(
        REAL_MNIST,
        name=name,
        title=f"tiny {name}",
        sha256={stem: hashlib.sha256(data).hexdigest() for stem, data in raw.items()},
        gz_md5={stem: hashlib.md5(gz(data)).hexdigest() for stem, data in raw.items()},
        **changes,
    )


# Nothing listens on port 1: a connection is refused at once.
DEAD_MIRROR = "http://127.0.0.1:1/"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads or writes the user's cache, DIGITNET_DATA or the system folder, and
    none reaches the real mirrors."""
    monkeypatch.setenv("DIGITNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DIGITNET_DATA", raising=False)
    monkeypatch.setattr(data_locate, "SYSTEM_DIR", tmp_path / "system")
    for name, info in list(datasets.DATASETS.items()):
        monkeypatch.setitem(datasets.DATASETS, name,
                            dataclasses.replace(info, mirrors=(DEAD_MIRROR,)))


@pytest.fixture
def fake_mnist(monkeypatch: pytest.MonkeyPatch) -> datasets.DatasetInfo:
    """Register the tiny dataset as ``mnist``, so that its files verify."""
    info = fake_info()
    monkeypatch.setitem(datasets.DATASETS, "mnist", info)
    return info


def assert_split(images: np.ndarray, labels: np.ndarray | None, split: str) -> None:
    expected_images, expected_labels = ARRAYS[split]
    assert images.dtype == np.uint8
    assert images.shape == expected_images.shape
    np.testing.assert_array_equal(images, expected_images)
    assert labels is not None
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, expected_labels)


@contextlib.contextmanager
def raises_data_error(*words: str) -> Iterator[pytest.ExceptionInfo[DataError]]:
    """Expect a DataError whose message holds each of ``words`` (the file, the problem)."""
    with pytest.raises(DataError) as info:
        yield info
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


# --------------------------------------------------------------------------------------------
# IDX


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "gz"])
def test_parse_idx_reads_images_and_labels(compressed: bool) -> None:
    images, labels = ARRAYS["train"]
    pack = gz if compressed else (lambda b: b)
    parsed_images = datasets.parse_idx(pack(idx_bytes(images)))
    parsed_labels = datasets.parse_idx(pack(idx_bytes(labels)))
    assert parsed_images.dtype == np.uint8 and parsed_images.shape == (12, 28, 28)
    np.testing.assert_array_equal(parsed_images, images)
    np.testing.assert_array_equal(parsed_labels, labels)


def test_parse_idx_reads_big_endian_wider_types() -> None:
    values = np.array([[1, -2], [300, 70000]], dtype=">i4")
    data = bytes([0, 0, 0x0C, 2]) + np.array([2, 2], ">u4").tobytes() + values.tobytes()
    np.testing.assert_array_equal(datasets.parse_idx(data), values)


def test_parse_idx_returns_a_read_only_view() -> None:
    parsed = datasets.parse_idx(idx_bytes(ARRAYS["test"][0]))
    assert not parsed.flags.writeable


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dotted", [False, True], ids=["dashed", "dotted"])
def test_load_file_reads_idx_images_with_labels_beside(
    tmp_path: Path, compressed: bool, dotted: bool
) -> None:
    write_dataset(tmp_path, compressed=compressed, dotted=dotted)
    name = "t10k-images.idx3-ubyte" if dotted else "t10k-images-idx3-ubyte"
    images, labels = datasets.load_file(tmp_path / (f"{name}.gz" if compressed else name))
    assert_split(images, labels, "test")


def test_load_file_finds_raw_labels_beside_gz_images(tmp_path: Path) -> None:
    images, labels = ARRAYS["test"]
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gz(idx_bytes(images)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    assert_split(*datasets.load_file(tmp_path / "t10k-images-idx3-ubyte.gz"), "test")


def test_load_file_gives_images_only_without_a_labels_file(tmp_path: Path) -> None:
    path = tmp_path / "digits.idx"
    path.write_bytes(idx_bytes(ARRAYS["test"][0]))
    images, labels = datasets.load_file(path)
    assert labels is None and images.shape == (5, 28, 28)


def test_read_idx_reads_dotted_names(tmp_path: Path) -> None:
    write_dataset(tmp_path, dotted=True, compressed=False)
    labels = datasets.read_idx(tmp_path / "train-labels.idx1-ubyte")
    np.testing.assert_array_equal(labels, ARRAYS["train"][1])


# Each malformed IDX input, and words its message must hold besides the file's name.
IDX_GOOD = idx_bytes(ARRAYS["test"][0])
BAD_IDX = {
    "wrong magic": (b"\x12\x34" + IDX_GOOD[2:], ["wrong magic number"]),
    "unknown type": (b"\x00\x00\x07" + IDX_GOOD[3:], ["unknown IDX type byte"]),
    "truncated header": (IDX_GOOD[:9], ["truncated IDX header"]),
    "truncated data": (IDX_GOOD[:-100], ["truncated", "5x28x28"]),
    "dims disagree with size": (IDX_GOOD + b"\x00" * 28, ["too long", "5x28x28"]),
    "zero dimensions": (b"\x00\x00\x08\x00", ["0 dimensions"]),
    "empty": (b"", ["empty file"]),
    "damaged gzip": (gz(IDX_GOOD)[:-12], ["damaged gzip"]),
}


@pytest.mark.parametrize("case", BAD_IDX, ids=list(BAD_IDX))
def test_read_idx_refuses_malformed_files(tmp_path: Path, case: str) -> None:
    data, words = BAD_IDX[case]
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(data)
    with raises_data_error(str(path), *words):
        datasets.read_idx(path)
    with raises_data_error(str(path), *words):
        datasets.load_file(path)


def test_parse_idx_dimensions_that_overflow_int64_are_refused() -> None:
    data = bytes([0, 0, 0x08, 4]) + np.full(4, 0xFFFFFFFF, dtype=">u4").tobytes()
    with raises_data_error("<bytes>", "truncated"):
        datasets.parse_idx(data)


def test_gzip_with_flipped_bytes_is_damaged(tmp_path: Path) -> None:
    data = bytearray(gz(IDX_GOOD))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "images.gz"
    path.write_bytes(bytes(data))
    with raises_data_error(str(path), "damaged gzip"):
        datasets.read_idx(path)


def test_file_named_gz_that_is_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(IDX_GOOD)
    with raises_data_error(str(path), "not a gzip file"):
        datasets.read_idx(path)


def test_gzip_of_nothing_is_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "images.gz"
    path.write_bytes(gz(b""))
    with raises_data_error(str(path), "empty"):
        datasets.read_idx(path)


def test_labels_above_9_are_refused(tmp_path: Path) -> None:
    images, labels = ARRAYS["test"]
    bad = labels.copy()
    bad[3] = 12
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(bad))
    with raises_data_error(str(tmp_path / "t10k-labels-idx1-ubyte"), "label 12", "0-9"):
        datasets.load_file(tmp_path / "t10k-images-idx3-ubyte")


def test_float_labels_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a-images").write_bytes(idx_bytes(ARRAYS["test"][0]))
    floats = np.full(5, 3.5, dtype=">f4")
    (tmp_path / "a-labels").write_bytes(
        bytes([0, 0, 0x0D, 1]) + np.array([5], ">u4").tobytes() + floats.tobytes())
    with raises_data_error("a-labels", "integers"):
        datasets.load_file(tmp_path / "a-images")


def test_image_and_label_counts_must_agree(tmp_path: Path) -> None:
    images, labels = ARRAYS["test"]
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels[:4]))
    with raises_data_error("t10k-images-idx3-ubyte", "5 images but 4 labels"):
        datasets.load_file(tmp_path / "t10k-images-idx3-ubyte")


def test_labels_file_alone_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(ARRAYS["test"][1]))
    with raises_data_error(str(path), "labels only"):
        datasets.load_file(path)


def test_images_of_another_size_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "small-images"
    path.write_bytes(idx_bytes(np.zeros((3, 8, 8), np.uint8)))
    with raises_data_error(str(path), "n x 28 x 28", "3 x 8 x 8"):
        datasets.load_file(path)


# --------------------------------------------------------------------------------------------
# Files that cannot be read


def test_directory_given_for_a_file(tmp_path: Path) -> None:
    with raises_data_error(str(tmp_path), "is a directory"):
        datasets.load_file(tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with raises_data_error("nothing.csv", "no such data file"):
        datasets.load_file(tmp_path / "nothing.csv")


def test_symlink_loop(tmp_path: Path) -> None:
    loop = tmp_path / "loop.gz"
    loop.symlink_to(tmp_path / "loop.gz")
    with raises_data_error(str(loop), "cannot be read"):
        datasets.read_idx(loop)


def test_path_whose_parent_is_a_file(tmp_path: Path) -> None:
    parent = tmp_path / "plain-file"
    parent.write_bytes(b"x")
    with raises_data_error(str(parent / "images.gz"), "cannot be read"):
        datasets.load_file(parent / "images.gz")


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: chmod 000 does not stop root from reading a file "
           "(test_path_whose_parent_is_a_file covers an unreadable path instead)",
)
def test_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(IDX_GOOD)
    path.chmod(0)
    try:
        with raises_data_error(str(path), "permission denied"):
            datasets.load_file(path)
    finally:
        path.chmod(0o600)


# --------------------------------------------------------------------------------------------
# CSV


def csv_bytes(
    images: np.ndarray,
    labels: np.ndarray | None,
    header: bool = True,
    quote: bool = False,
    eol: str = "\n",
    bom: bool = False,
) -> bytes:
    """An MNIST CSV: Kaggle's layout with ``header``, else ``label,784 pixels`` per line."""
    q = '"' if quote else ""
    lines = []
    if header:
        names = ([] if labels is None else ["label"]) + [f"pixel{i}" for i in range(784)]
        lines.append(",".join(f"{q}{n}{q}" for n in names))
    for k, image in enumerate(images.reshape(len(images), -1)):
        cells = ([] if labels is None else [labels[k]]) + image.tolist()
        lines.append(",".join(f"{q}{c}{q}" for c in cells))
    text = eol.join(lines) + eol
    return ("\ufeff" if bom else "").encode() + text.encode()


CSV_VARIANTS = {
    "kaggle train": {},
    "headerless": {"header": False},
    "quoted cells": {"quote": True},
    "utf-8 bom": {"bom": True},
    "crlf": {"eol": "\r\n"},
    "all at once": {"quote": True, "bom": True, "eol": "\r\n"},
    "headerless quoted crlf bom": {"header": False, "quote": True, "bom": True, "eol": "\r\n"},
}


@pytest.mark.parametrize("variant", CSV_VARIANTS, ids=list(CSV_VARIANTS))
def test_csv_with_labels(tmp_path: Path, variant: str) -> None:
    data = csv_bytes(*ARRAYS["test"], **CSV_VARIANTS[variant])
    assert_split(*datasets.parse_csv(data), "test")
    path = tmp_path / "train.csv"
    path.write_bytes(data)
    assert_split(*datasets.load_file(path), "test")


@pytest.mark.parametrize("header", [True, False], ids=["kaggle test.csv", "headerless"])
def test_csv_without_labels_gives_images_only(tmp_path: Path, header: bool) -> None:
    images = ARRAYS["test"][0]
    path = tmp_path / "test.csv"
    path.write_bytes(csv_bytes(images, None, header=header, eol="\r\n"))
    parsed, labels = datasets.load_file(path)
    assert labels is None
    assert parsed.dtype == np.uint8
    np.testing.assert_array_equal(parsed, images)


def test_csv_gzip_compressed(tmp_path: Path) -> None:
    path = tmp_path / "train.csv.gz"
    path.write_bytes(gz(csv_bytes(*ARRAYS["test"])))
    assert_split(*datasets.load_file(path), "test")


def test_csv_blank_lines_are_skipped() -> None:
    data = csv_bytes(*ARRAYS["test"]).replace(b"\n", b"\n\n")
    assert_split(*datasets.parse_csv(data), "test")


def _edit_csv(line: int, cell: int, value: str, header: bool = True) -> bytes:
    """The test split as CSV, with one cell (1-based line and column) replaced."""
    lines = csv_bytes(*ARRAYS["test"], header=header).decode().splitlines()
    cells = lines[line - 1].split(",")
    cells[cell - 1] = value
    lines[line - 1] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode()


def _kaggle_header(pixels: int, label: str | None = "label") -> str:
    return ",".join(([label] if label else []) + [f"pixel{i}" for i in range(pixels)])


def _rows(pixels: int, label: bool = True, n: int = 2) -> str:
    return "".join(",".join(["3"] * label + ["0"] * pixels) + "\n" for _ in range(n))


BAD_CSV = {
    "783 pixel columns in header": (
        _kaggle_header(783) + "\n" + _rows(783), ["783 pixel columns", "expected 784"]),
    "785 pixel columns in header": (
        _kaggle_header(785) + "\n" + _rows(785), ["785 pixel columns", "expected 784"]),
    "row with 783 pixels": (
        _kaggle_header(784) + "\n" + _rows(784) + _rows(783, n=1),
        ["line 4 has 784 columns", "expected 785"]),
    "row with 785 pixels": (
        _kaggle_header(784) + "\n" + _rows(785, n=1), ["line 2 has 786 columns"]),
    "headerless 786 columns": (_rows(785), ["786 columns in line 1", "expected 785"]),
    "headerless 783 columns": (_rows(782), ["783 columns in line 1"]),
    "label column missing from header": (
        _kaggle_header(784, label=None) + "\n" + _rows(784),
        ["line 2 has 785 columns", "no 'label' column"]),
    "header that is not Kaggle's": (
        _kaggle_header(784, label="digit") + "\n" + _rows(784),
        ["header starts with 'digit'", "expected 'label'"]),
    "header only": (_kaggle_header(784) + "\n", ["no rows after the header"]),
    "blank": ("\n \r\n", ["empty CSV file"]),
    "non-numeric cell": (_edit_csv(3, 100, "abc").decode(),
                         ["'abc' on line 3, column 100", "not an integer"]),
    "fractional cell": (_edit_csv(2, 5, "0.5").decode(), ["'0.5' on line 2, column 5"]),
    "empty cell": (_edit_csv(4, 7, "").decode(), ["line 4, column 7", "not an integer"]),
    "comment sign": (_edit_csv(2, 9, "1#").decode(), ["'1#' on line 2, column 9"]),
    "huge number": (_edit_csv(2, 9, "9" * 30).decode(), ["line 2, column 9", "out of range"]),
    "int32 overflow": (_edit_csv(2, 9, "3000000000").decode(),
                       ["3000000000 on line 2, column 9", "out of range"]),
    "two signs": (_edit_csv(3, 4, "+-5").decode(), ["'+-5' on line 3, column 4"]),
    "pixel 256": (_edit_csv(3, 12, "256").decode(),
                  ["pixel value 256 on line 3 (column 12)", "outside 0-255"]),
    "pixel -1": (_edit_csv(5, 785, "-1").decode(),
                 ["pixel value -1 on line 5 (column 785)", "outside 0-255"]),
    "label 10": (_edit_csv(6, 1, "10").decode(), ["label 10 on line 6", "0-9"]),
    "label -1 headerless": (_edit_csv(1, 1, "-1", header=False).decode(),
                            ["label -1 on line 1", "0-9"]),
}


@pytest.mark.parametrize("case", BAD_CSV, ids=list(BAD_CSV))
def test_csv_refuses_malformed_files(tmp_path: Path, case: str) -> None:
    text, words = BAD_CSV[case]
    path = tmp_path / "train.csv"
    path.write_text(text)
    with raises_data_error(str(path), *words):
        datasets.load_file(path)


def test_csv_undecodable_bytes() -> None:
    with raises_data_error("digits.csv", "not a text CSV"):
        datasets.parse_csv(b"label,pixel0\n\xff\xfe\x00", "digits.csv")


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(b"")
    with raises_data_error(str(path), "empty file"):
        datasets.load_file(path)


# --------------------------------------------------------------------------------------------
# npz


def npz_bytes(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


KERAS = {
    "x_train": ARRAYS["train"][0], "y_train": ARRAYS["train"][1],
    "x_test": ARRAYS["test"][0], "y_test": ARRAYS["test"][1],
}


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_keras_npz_through_load_file(tmp_path: Path, compressed: bool, split: str) -> None:
    path = tmp_path / "mnist.npz"
    path.write_bytes(npz_bytes(compressed, **KERAS))
    assert_split(*datasets.load_file(path, split=split), split)


def test_npz_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    path.write_bytes(npz_bytes(x_train=KERAS["x_train"], y_train=KERAS["y_train"]))
    with raises_data_error(str(path), "lacks x_test, y_test", "has x_train, y_train"):
        datasets.load_file(path, split="test")


def test_npz_with_pickled_objects_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"

    class Trap:
        # Unpickling this object would create ``marker``.
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    labels = np.empty(5, dtype=object)
    labels[:] = [Trap() for _ in range(5)]
    path = tmp_path / "mnist.npz"
    path.write_bytes(npz_bytes(x_test=KERAS["x_test"], y_test=labels))
    with raises_data_error(str(path), "y_test", "Python objects", "refusing"):
        datasets.load_file(path, split="test")
    assert not marker.exists()


def test_npz_float_labels_are_refused() -> None:
    data = npz_bytes(x_test=KERAS["x_test"], y_test=KERAS["y_test"].astype(np.float32))
    with raises_data_error("mnist.npz", "labels must be integers"):
        datasets.parse_npz(data, "mnist.npz", split="test")


def test_npz_count_mismatch() -> None:
    data = npz_bytes(x_test=KERAS["x_test"], y_test=KERAS["y_test"][:3])
    with raises_data_error("mnist.npz", "5 images but 3 labels"):
        datasets.parse_npz(data, "mnist.npz", split="test")


def test_npz_truncated_archive(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    path.write_bytes(npz_bytes(**KERAS)[:3000])
    with raises_data_error(str(path), "not a readable npz file"):
        datasets.load_file(path)


def test_npz_header_claiming_more_data_than_stored() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        with archive.open("x_test.npy", "w") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 28, 28)})
        archive.writestr("y_test.npy", npz_member(KERAS["y_test"]))
    with raises_data_error("mnist.npz", "x_test is truncated"):
        datasets.parse_npz(buffer.getvalue(), "mnist.npz", split="test")


def npz_member(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_npy_file_is_not_an_npz() -> None:
    with raises_data_error("x.npy", "not an npz file"):
        datasets.parse_npz(npz_member(KERAS["x_test"]), "x.npy")


def test_npz_unknown_split() -> None:
    with raises_data_error("unknown split 'valid'"):
        datasets.parse_npz(npz_bytes(**KERAS), split="valid")


# --------------------------------------------------------------------------------------------
# Named datasets: search order, verification


def test_load_from_data_dir(tmp_path: Path, fake_mnist: datasets.DatasetInfo) -> None:
    write_dataset(tmp_path / "data" / "mnist")
    for split in ("train", "test"):
        images, labels, files = datasets.load_split("mnist", split, tmp_path / "data",
                                                    download=False)
        assert_split(images, labels, split)
        assert files.source == "data_dir" and files.verified
        assert files.sha256 == {stem: fake_mnist.sha256[stem] for stem in FILES[split]}


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dotted", [False, True], ids=["dashed", "dotted"])
def test_load_accepts_raw_and_dotted_names(
    tmp_path: Path, fake_mnist: datasets.DatasetInfo, compressed: bool, dotted: bool
) -> None:
    write_dataset(tmp_path / "mnist", compressed=compressed, dotted=dotted)
    assert_split(*datasets.load("mnist", "test", tmp_path, download=False), "test")


def test_load_accepts_a_recompressed_copy(
    tmp_path: Path, fake_mnist: datasets.DatasetInfo
) -> None:
    folder = write_dataset(tmp_path / "mnist", compressed=False)
    for stem, raw in dataset_files("train").items():
        (folder / stem).unlink()
        (folder / f"{stem}.gz").write_bytes(gz(raw, level=1))
    assert_split(*datasets.load("mnist", "train", tmp_path, download=False), "train")


def test_data_dir_holding_the_files_itself(
    tmp_path: Path, fake_mnist: datasets.DatasetInfo
) -> None:
    write_dataset(tmp_path)
    assert_split(*datasets.load("mnist", "train", tmp_path, download=False), "train")


def test_search_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mnist: datasets.DatasetInfo
) -> None:
    given = write_dataset(tmp_path / "given" / "mnist")
    env = write_dataset(tmp_path / "env" / "mnist")
    cache = write_dataset(datasets.cache_dir() / "mnist")
    system = write_dataset(data_locate.SYSTEM_DIR / "mnist")
    monkeypatch.setenv("DIGITNET_DATA", str(tmp_path / "env"))

    def found(data_dir: Path | None = None) -> tuple[str, Path]:
        files = datasets.locate("mnist", "train", data_dir, download=False)
        return files.source, files.images.parent

    assert found(tmp_path / "given") == ("data_dir", given)
    assert found() == ("DIGITNET_DATA", env)
    monkeypatch.delenv("DIGITNET_DATA")
    assert found() == ("cache", cache)
    for path in cache.iterdir():
        path.unlink()
    assert found() == ("system", system)
    _, _, files = datasets.load_split("mnist", "train", download=False)
    assert files.source == "system" and files.verified


def test_nothing_found_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("DIGITNET_DATA", str(tmp_path / "empty"))
    with raises_data_error("MNIST train files not found", str(tmp_path / "empty" / "mnist"),
                           str(datasets.cache_dir() / "mnist"),
                           str(data_locate.SYSTEM_DIR / "mnist"), "--data-dir", "DIGITNET_DATA"):
        datasets.load("mnist", "train", download=False)


def test_data_dir_that_does_not_exist(tmp_path: Path) -> None:
    with raises_data_error(str(tmp_path / "typo"), "no such folder", "--data-dir"):
        datasets.load("mnist", "train", tmp_path / "typo")


def test_digitnet_data_that_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_bytes(b"")
    monkeypatch.setenv("DIGITNET_DATA", str(tmp_path / "file"))
    with raises_data_error(str(tmp_path / "file"), "is a file", "DIGITNET_DATA"):
        datasets.load("mnist", "train")


def test_folder_with_only_some_files(tmp_path: Path, fake_mnist: datasets.DatasetInfo) -> None:
    folder = write_dataset(tmp_path / "mnist")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    assert_split(*datasets.load("mnist", "train", tmp_path, download=False), "train")
    with raises_data_error(str(folder), "only some", "t10k-labels-idx1-ubyte", "test split"):
        datasets.load("mnist", "test", tmp_path, download=False)


def test_content_that_differs_from_the_published_dataset(tmp_path: Path) -> None:
    # A well-formed dataset under MNIST's names, but not MNIST.
    write_dataset(tmp_path / "mnist")
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    with raises_data_error(str(path), "differs from the published MNIST", "SHA-256"):
        datasets.load("mnist", "test", tmp_path, download=False)


def test_damaged_dataset_file(tmp_path: Path, fake_mnist: datasets.DatasetInfo) -> None:
    folder = write_dataset(tmp_path / "mnist")
    path = folder / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-5])
    with raises_data_error(str(path), "damaged gzip"):
        datasets.load("mnist", "train", tmp_path, download=False)


def test_directory_in_place_of_a_dataset_file(
    tmp_path: Path, fake_mnist: datasets.DatasetInfo
) -> None:
    folder = write_dataset(tmp_path / "mnist")
    path = folder / "train-images-idx3-ubyte.gz"
    path.unlink()
    path.mkdir()
    with raises_data_error(str(path), "is a directory"):
        datasets.load("mnist", "train", tmp_path, download=False)


def test_symlink_loop_in_place_of_a_dataset_file(
    tmp_path: Path, fake_mnist: datasets.DatasetInfo
) -> None:
    folder = write_dataset(tmp_path / "mnist")
    path = folder / "train-labels-idx1-ubyte.gz"
    path.unlink()
    path.symlink_to(path)
    with raises_data_error(str(path), "cannot be read"):
        datasets.load("mnist", "train", tmp_path, download=False)


def test_unknown_dataset_and_split() -> None:
    with raises_data_error("unknown dataset 'emnist'", "mnist, fashion-mnist"):
        datasets.load("emnist")
    with raises_data_error("unknown split 'valid'"):
        datasets.load("mnist", "valid")


def test_class_balance() -> None:
    labels = np.array([0, 3, 3, 9, 9, 9], dtype=np.uint8)
    assert datasets.class_balance(labels) == [1, 0, 0, 2, 0, 0, 0, 0, 0, 3]


# --------------------------------------------------------------------------------------------
# The verification memo


@pytest.fixture
def sha256_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the hashes the data layer computes (the size of each hashed content)."""
    calls: list[int] = []

    def sha256(data: bytes = b""):
        calls.append(len(data))
        return hashlib.sha256(data)

    monkeypatch.setattr(data_locate, "hashlib", SimpleNamespace(sha256=sha256))
    return calls


def test_a_verified_file_is_not_hashed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sha256_calls: list[int]
) -> None:
    monkeypatch.setitem(datasets.DATASETS, "tiny", fake_info("tiny"))
    folder = write_dataset(tmp_path / "tiny")
    images_raw, labels_raw = dataset_files("train").values()

    assert_split(*datasets.load("tiny", "train", tmp_path), "train")
    assert sorted(sha256_calls) == sorted([len(images_raw), len(labels_raw)])
    assert (datasets.cache_dir() / "verified.json").is_file()

    sha256_calls.clear()
    assert_split(*datasets.load("tiny", "train", tmp_path), "train")
    assert sha256_calls == []

    # A new modification time: hashed again.
    labels = folder / "train-labels-idx1-ubyte.gz"
    st = labels.stat()
    os.utime(labels, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert_split(*datasets.load("tiny", "train", tmp_path), "train")
    assert sha256_calls == [len(labels_raw)]

    # A new size (recompressed, same content): hashed again, and still verifies.
    sha256_calls.clear()
    images = folder / "train-images-idx3-ubyte.gz"
    images.write_bytes(gz(images_raw, level=1))
    assert_split(*datasets.load("tiny", "train", tmp_path), "train")
    assert sha256_calls == [len(images_raw)]
    # Only the current version of each file is remembered.
    memo = (datasets.cache_dir() / "verified.json").read_text()
    assert memo.count(str(images.resolve())) == 1


def test_a_changed_file_is_not_trusted_from_the_memo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(datasets.DATASETS, "tiny", fake_info("tiny"))
    folder = write_dataset(tmp_path / "tiny")
    datasets.load("tiny", "test", tmp_path)
    labels = ARRAYS["test"][1].copy()
    labels[0] = (labels[0] + 1) % 10
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gz(idx_bytes(labels)))
    with raises_data_error("t10k-labels-idx1-ubyte.gz", "differs from the published"):
        datasets.load("tiny", "test", tmp_path)


def test_a_damaged_memo_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sha256_calls: list[int]
) -> None:
    monkeypatch.setitem(datasets.DATASETS, "tiny", fake_info("tiny"))
    write_dataset(tmp_path / "tiny")
    datasets.cache_dir().mkdir(parents=True)
    (datasets.cache_dir() / "verified.json").write_text("{not json")
    assert_split(*datasets.load("tiny", "test", tmp_path), "test")
    assert len(sha256_calls) == 2


def test_a_cache_that_cannot_be_written_does_not_fail_a_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(datasets.DATASETS, "tiny", fake_info("tiny"))
    write_dataset(tmp_path / "tiny")
    (tmp_path / "plain-file").write_bytes(b"")
    monkeypatch.setenv("DIGITNET_CACHE", str(tmp_path / "plain-file" / "cache"))
    assert_split(*datasets.load("tiny", "test", tmp_path, download=False), "test")


# --------------------------------------------------------------------------------------------
# Download, from a local HTTP server


class _QuietHandler(SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """A server on 127.0.0.1 for the files of ``folder``; ``requests`` lists what was asked."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    folder = tmp_path / "served"
    folder.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=folder))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}/",
                              folder=folder, requests=requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_download_falls_back_to_the_next_mirror(
    http_server: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dataset(http_server.folder)
    mirrors = (DEAD_MIRROR, f"{http_server.url}missing/", http_server.url)
    monkeypatch.setitem(datasets.DATASETS, "tiny", fake_info("tiny", mirrors=mirrors))

    images, labels, files = datasets.load_split("tiny", "train")
    assert_split(images, labels, "train")
    assert files.source == "download" and files.verified
    assert files.images == datasets.cache_dir() / "tiny" / "train-images-idx3-ubyte.gz"
    assert files.labels.is_file()
    assert sorted(http_server.requests) == [
        "/missing/train-images-idx3-ubyte.gz", "/missing/train-labels-idx1-ubyte.gz",
        "/train-images-idx3-ubyte.gz", "/train-labels-idx1-ubyte.gz",
    ]

    # Now in the cache: found there, nothing fetched.
    http_server.requests.clear()
    assert datasets.locate("tiny", "train").source == "cache"
    assert http_server.requests == []


def test_download_fills_in_a_cache_holding_one_split(
    http_server: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dataset(http_server.folder)
    monkeypatch.setitem(datasets.DATASETS, "tiny", fake_info("tiny", mirrors=(http_server.url,)))
    datasets.load("tiny", "train")
    images, labels, files = datasets.load_split("tiny", "test")
    assert_split(images, labels, "test")
    assert files.source == "download"
    assert datasets.locate("tiny", "train").source == "cache"
    assert datasets.locate("tiny", "test").source == "cache"


def test_download_with_a_wrong_md5(
    http_server: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dataset(http_server.folder)
    info = fake_info("tiny", mirrors=(DEAD_MIRROR, http_server.url))
    wrong = dict(info.gz_md5, **{"train-images-idx3-ubyte": "0" * 32})
    monkeypatch.setitem(datasets.DATASETS, "tiny", dataclasses.replace(info, gz_md5=wrong))
    with raises_data_error("train-images-idx3-ubyte.gz", "every mirror", DEAD_MIRROR,
                           f"{http_server.url}: MD5 hash", "--data-dir"):
        datasets.load("tiny", "train")
    assert not (datasets.cache_dir() / "tiny" / "train-images-idx3-ubyte.gz").exists()


# --------------------------------------------------------------------------------------------
# Properties


def _mutations(base: bytes) -> st.SearchStrategy[bytes]:
    """``base`` with a few bytes changed and perhaps cut short."""

    def mutate(edits: list[tuple[int, int]], cut: int) -> bytes:
        data = bytearray(base)
        for position, value in edits:
            data[position % len(data)] = value
        return bytes(data[:cut])

    edits = st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)), max_size=6)
    return st.builds(mutate, edits, st.integers(0, len(base)))


def _only_data_errors(parse, data: bytes) -> None:
    try:
        parse(data)
    except DataError:
        pass


ANY_BYTES = st.binary(max_size=4096)
IDX_LIKE = st.one_of(
    ANY_BYTES,
    st.builds(lambda body: b"\x00\x00" + body, ANY_BYTES),
    st.builds(gz, ANY_BYTES),
    _mutations(idx_bytes(ARRAYS["test"][0][:2])),
    _mutations(gz(idx_bytes(ARRAYS["test"][0][:2]))),
)
def _csv_cell_edits(base: bytes) -> st.SearchStrategy[bytes]:
    """``base`` (a CSV) with a few cells replaced by short number-like text."""
    lines = base.decode().split("\n")
    tricky = ["", " ", "-1", "256", "+-5", "1.0", "1e3", '"3', '"4"', "#", "nan", "9" * 12]
    cell = st.one_of(st.sampled_from(tricky), st.text(alphabet='0123456789+-"#. e\r', max_size=5))

    def edit(edits: list[tuple[int, int, str]]) -> bytes:
        rows = [line.split(",") for line in lines]
        for line, column, value in edits:
            row = rows[line % len(rows)]
            row[column % len(row)] = value
        return "\n".join(",".join(row) for row in rows).encode()

    return st.builds(edit, st.lists(st.tuples(st.integers(0, 10), st.integers(0, 800), cell),
                                    min_size=1, max_size=4))


CSV_LIKE = st.one_of(
    ANY_BYTES,
    _csv_cell_edits(csv_bytes(ARRAYS["test"][0][:2], ARRAYS["test"][1][:2])),
    _csv_cell_edits(csv_bytes(ARRAYS["test"][0][:2], None, header=False)),
    st.text(alphabet='0123456789,-+ "\r\n#.xe', max_size=4096).map(str.encode),
    _mutations(csv_bytes(ARRAYS["test"][0][:2], ARRAYS["test"][1][:2])),
    _mutations(csv_bytes(ARRAYS["test"][0][:1], None, header=False)),
)
NPZ_LIKE = st.one_of(
    ANY_BYTES,
    st.builds(lambda body: b"PK\x03\x04" + body, ANY_BYTES),
    _mutations(npz_bytes(x_train=KERAS["x_test"][:2], y_train=KERAS["y_test"][:2])),
    _mutations(npz_bytes(True, x_train=KERAS["x_test"][:2], y_train=KERAS["y_test"][:2])),
)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(IDX_LIKE)
def test_parse_idx_raises_only_data_errors(data: bytes) -> None:
    _only_data_errors(datasets.parse_idx, data)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(CSV_LIKE)
def test_parse_csv_raises_only_data_errors(data: bytes) -> None:
    _only_data_errors(datasets.parse_csv, data)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(NPZ_LIKE)
def test_parse_npz_raises_only_data_errors(data: bytes) -> None:
    _only_data_errors(datasets.parse_npz, data)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(
    hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)),
    st.booleans(),
)
def test_idx_round_trip(array: np.ndarray, compressed: bool) -> None:
    data = idx_bytes(array)
    parsed = datasets.parse_idx(gz(data) if compressed else data)
    assert parsed.dtype == np.uint8
    assert parsed.shape == array.shape
    np.testing.assert_array_equal(parsed, array)


# --------------------------------------------------------------------------------------------
# The real MNIST and Fashion-MNIST

# SHA-256 of the decompressed files, as published.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


@pytest.mark.mnist
def test_real_mnist(mnist_dir: Path) -> None:
    expected = {"train": (60000, [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]), "test": (10000, [7, 2, 1, 0, 4])}
    for split, (count, first_labels) in expected.items():
        images, labels, files = datasets.load_split("mnist", split, mnist_dir, download=False)
        assert files.source == "data_dir" and files.verified
        assert images.shape == (count, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (count,) and labels.dtype == np.uint8
        assert labels[: len(first_labels)].tolist() == first_labels
        assert images.max() == 255 and images.min() == 0
        assert sum(datasets.class_balance(labels)) == count
        for path, stem in zip((files.images, files.labels), FILES[split], strict=True):
            content = gzip.decompress(path.read_bytes())
            assert hashlib.sha256(content).hexdigest() == MNIST_SHA256[stem]
            assert files.sha256[stem] == MNIST_SHA256[stem]


@pytest.mark.mnist
def test_real_mnist_load_time(mnist_dir: Path, request: pytest.FixtureRequest) -> None:
    # Measured for the record (the test's user_properties, which reports and plugins read),
    # never asserted: timings depend on the machine.
    for run in ("cold", "warm"):  # the first load hashes; the second uses the memo
        start = time.perf_counter()
        images, _ = datasets.load("mnist", "train", mnist_dir, download=False)
        seconds = round(time.perf_counter() - start, 3)
        request.node.user_properties.append((f"mnist_train_load_{run}_s", seconds))
        assert len(images) == 60000


FASHION_DIR = Path("/usr/share/datasets")


@pytest.mark.skipif(not (FASHION_DIR / "fashion-mnist").is_dir(),
                    reason="Fashion-MNIST is not installed in /usr/share/datasets/fashion-mnist")
def test_fashion_mnist_from_the_system_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_locate, "SYSTEM_DIR", FASHION_DIR)
    for split, count in (("train", 60000), ("test", 10000)):
        images, labels, files = datasets.load_split("fashion-mnist", split, download=False)
        assert files.source == "system" and files.verified
        assert images.shape == (count, 28, 28) and labels.shape == (count,)
        assert datasets.class_balance(labels) == [count // 10] * 10
