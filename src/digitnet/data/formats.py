"""Other formats people have digits in: CSV, keras' npz, single IDX files."""

from __future__ import annotations

import io
import math
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from digitnet.data import idx as _idx
from digitnet.data.idx import (
    _check_images,
    _check_labels,
    _check_pair,
    _decompress,
    _size,
    parse_idx,
    read_bytes,
    read_idx,
)
from digitnet.data.registry import IMAGE_SHAPE, N_CLASSES, N_PIXELS, _check_split
from digitnet.errors import DataError


def parse_csv(
    data: bytes | bytearray, source: str = "<bytes>"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Parse an MNIST CSV: Kaggle's (with a header) or headerless ``label,784 pixels``.

    A Kaggle ``test.csv`` (header ``pixel0..pixel783``, no label) gives images only, and so does
    a headerless file of 784 columns. Quoted cells, a byte-order mark, CRLF line ends and blank
    lines are accepted; every cell must be an integer, pixels 0-255 and labels 0-9.

    Returns
    -------
    images : ndarray of uint8, shape (n, 28, 28)
    labels : ndarray of uint8, shape (n,), or None when the file has no label column

    Raises
    ------
    DataError
        Naming ``source``, the line and what is wrong.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{source}: not a text CSV file (undecodable bytes)") from None
    # (line number, line) for each non-blank line, so messages point at the file's own lines.
    rows = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not rows:
        raise DataError(f"{source}: empty CSV file")
    _check_delimiter(rows[0][1], source)
    first = _cells(rows[0][1])
    # A header names its columns: Kaggle's start with "label" or "pixel0". A first line that
    # starts with a number is data, and a non-number later in it a bad cell; one that numbers
    # the columns 0, 1, 2, ... is the header pandas writes for unnamed columns.
    numbered = len(first) in (N_PIXELS, N_PIXELS + 1) and first == [
        str(k) for k in range(len(first))]
    has_header = numbered or not _is_number(first[0])
    if has_header:
        has_label = len(first) == N_PIXELS + 1 if numbered else _check_header(first, source)
        rows = rows[1:]
        if not rows:
            raise DataError(f"{source}: no rows after the header")
    else:
        if len(first) not in (N_PIXELS, N_PIXELS + 1):
            raise DataError(f"{source}: {len(first)} columns in line {rows[0][0]}, expected 785 "
                            "(label and 784 pixels) or 784 (pixels only)")
        has_label = len(first) == N_PIXELS + 1
    values = _csv_values(rows, has_label, has_header, source)
    pixels = values[:, 1:] if has_label else values
    outside = (pixels < 0) | (pixels > 255)
    if outside.any():
        row, col = np.argwhere(outside)[0]
        raise DataError(f"{source}: pixel value {pixels[row, col]} on line {rows[row][0]} "
                        f"(column {col + 1 + has_label}) outside 0-255")
    images = pixels.astype(np.uint8).reshape(-1, *IMAGE_SHAPE)
    if not has_label:
        return images, None
    bad = np.flatnonzero((values[:, 0] < 0) | (values[:, 0] >= N_CLASSES))
    if bad.size:
        raise DataError(f"{source}: label {values[bad[0], 0]} on line {rows[bad[0]][0]} "
                        "out of range 0-9")
    return images, values[:, 0].astype(np.uint8)


def _cells(line: str) -> list[str]:
    return [cell.strip().strip('"').strip().lower() for cell in line.split(",")]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _check_delimiter(line: str, source: str) -> None:
    """Refuse a CSV whose cells are not separated by commas, saying which separator it uses."""
    if "," in line:
        return
    for separator, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
        if line.count(separator) >= 10:
            raise DataError(f"{source}: cells are separated by {name}, not commas; save it as "
                            "comma-separated CSV (label,pixel0,...,pixel783)")


def _shown(text: str, limit: int = 30) -> str:
    """A cell for a one-line message: its repr, cut short."""
    quoted = repr(text)
    return quoted if len(quoted) <= limit else quoted[:limit - 1] + "…"


def _check_header(header: list[str], source: str) -> bool:
    """Check a Kaggle header and say whether it has a label column."""
    has_label = header[0] == "label"
    if not has_label and header[0] != "pixel0":
        raise DataError(f"{source}: header starts with {_shown(header[0])}, expected 'label' (or "
                        "'pixel0' for a file without labels)")
    pixels = header[1:] if has_label else header
    if len(pixels) != N_PIXELS:
        raise DataError(f"{source}: {len(pixels)} pixel columns in the header, expected 784")
    return has_label


def _csv_values(
    rows: list[tuple[int, str]], has_label: bool, has_header: bool, source: str
) -> np.ndarray:
    columns = N_PIXELS + has_label
    for number, line in rows:
        found = line.count(",") + 1
        if found != columns:
            hint = ""
            if has_header and not has_label and found == columns + 1:
                hint = " (the header has no 'label' column but the rows have one more cell)"
            raise DataError(f"{source}: line {number} has {found} columns, expected "
                            f"{columns}{hint}")
    try:
        # int32: a Kaggle train.csv (42,000 rows) takes 130 MB, not 260; any value int32
        # cannot hold is out of range anyway.
        return np.loadtxt([line for _, line in rows], delimiter=",", dtype=np.int32,
                          quotechar='"', comments=None, ndmin=2)
    except (ValueError, OverflowError) as exc:
        raise DataError(_bad_cell(rows, source, exc)) from None


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _bad_cell(rows: list[tuple[int, str]], source: str, exc: Exception) -> str:
    """Find the cell NumPy could not read, to name its line and column."""
    for number, line in rows:
        for column, cell in enumerate(line.split(","), start=1):
            text = cell.strip().strip('"').strip()
            if not _INTEGER.fullmatch(text):
                return (f"{source}: cell {cell.strip()[:20]!r} on line {number}, column "
                        f"{column} is not an integer")
            if abs(int(text)) >= 2**31:
                return (f"{source}: value {text[:20]} on line {number}, column {column} "
                        "is far out of range")
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{source}: malformed CSV ({detail})"


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def parse_npz(
    data: bytes, source: str = "<bytes>", split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Parse keras' ``mnist.npz`` (``x_train, y_train, x_test, y_test``).

    Never unpickles: an archive holding object arrays is refused before they are read, and so
    is an array whose header claims more data than the archive holds.

    Returns
    -------
    images : ndarray of uint8, shape (n, 28, 28)
    labels : ndarray of uint8, shape (n,)
    """
    _check_split(split)
    if data[:4] not in _ZIP_MAGIC:
        raise DataError(f"{source}: not an npz file (it does not start with the zip signature)")
    x_key, y_key = f"x_{split}", f"y_{split}"
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            missing = [k for k in (x_key, y_key) if k not in archive.files]
            if not any(name.endswith(".npy") for name in archive.zip.namelist()):
                inside = ", ".join(archive.zip.namelist()[:3])[:60] or "nothing"
                raise DataError(f"{source}: a zip archive, not an npz file (it holds "
                                f"{inside}); unzip it and give the file inside")
            if missing:
                raise DataError(f"{source}: npz file lacks {', '.join(missing)} (has "
                                f"{', '.join(archive.files)[:60] or 'no arrays'}); keras' "
                                "mnist.npz holds x_train, y_train, x_test and y_test")
            images, labels = (_npz_array(archive, key, source) for key in (x_key, y_key))
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, zlib.error,
            NotImplementedError, RuntimeError) as exc:
        raise DataError(f"{source}: not a readable npz file ({type(exc).__name__})") from None
    images = _check_images(images, source)
    labels = _check_labels(labels, source)
    _check_pair(images, labels, source)
    return np.ascontiguousarray(images), labels


def _npz_array(archive: Any, key: str, source: str) -> np.ndarray:
    """Read one array of an npz after checking its header: no objects, no inflated sizes."""
    member = f"{key}.npy" if f"{key}.npy" in archive.zip.namelist() else key
    with archive.zip.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise DataError(f"{source}: {key} uses .npy format version {version}, "
                            "expected 1.0 or 2.0")
        header_size = f.tell()
    if dtype.hasobject:
        raise DataError(f"{source}: {key} is an array of Python objects, which would have to "
                        "be unpickled; refusing to load it")
    size = archive.zip.getinfo(member).file_size
    if size > _idx.MAX_FILE_BYTES:
        raise DataError(f"{source}: {key} holds {size:,} bytes, more than any MNIST-format "
                        f"array digitnet reads (at most {_size(_idx.MAX_FILE_BYTES)})")
    if header_size + math.prod(shape) * dtype.itemsize > size:
        raise DataError(f"{source}: {key} is truncated (shape {shape} of {dtype} needs more "
                        f"than the {size} bytes stored)")
    return archive[key]


def load_file(
    path: str | Path, split: str = "test"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Load digits from a file, choosing the reader by its content.

    Reads a CSV (Kaggle or headerless), keras' ``mnist.npz`` (``split`` picks ``x_train`` or
    ``x_test``), an IDX images file (labels are taken from the IDX labels file beside it when
    there is one), or an IDX labels file.

    Returns
    -------
    images : ndarray of uint8, shape (n, 28, 28)
    labels : ndarray of uint8, shape (n,), or None when the file has no labels

    Raises
    ------
    DataError
        If the file cannot be read or is malformed, naming the file and the problem.
    """
    path = Path(path)
    data = read_bytes(path)
    if not data:
        raise DataError(f"{path}: empty file")
    if data[:4] in _ZIP_MAGIC:
        return parse_npz(data, str(path), split)
    raw = _decompress(data, str(path))
    if raw[:2] == b"\x00\x00" or _is_idx_name(path.name):
        array = parse_idx(raw, str(path))
        if array.ndim == 1:
            raise DataError(f"{path}: holds labels only; give the images file")
        images = _check_images(array, str(path))
        labels = _labels_beside(path)
        if labels is not None:
            _check_pair(images, labels, str(path))
        return images, labels
    return parse_csv(raw, str(path))


def _is_idx_name(name: str) -> bool:
    # Named like an IDX file: a damaged one should get the IDX reader's message, not the CSV's.
    name = name.lower().removesuffix(".gz")
    return "ubyte" in name or name.endswith((".idx", "-idx1", "-idx3"))


def _labels_beside(images_path: Path) -> np.ndarray | None:
    """The labels file that goes with an IDX images file, compressed or not, if present."""
    name = images_path.name
    if "images" not in name:
        return None
    twin = name.replace("images", "labels").replace("idx3", "idx1")
    stem = twin.removesuffix(".gz")
    for candidate in (twin, f"{stem}.gz", stem):
        path = images_path.with_name(candidate)
        if path.is_file():
            return _check_labels(read_idx(path), str(path))
    return None

