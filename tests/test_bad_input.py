"""The catalogue of bad input: every case is answered with one clear line.

Each case runs a command, as the installed program (a real subprocess) for a good share and with
Typer's runner for the rest, and checks the same four things:

* the exit status is non-zero (1 for bad input, 2 for a malformed command line);
* stderr is one line, ``error: ...``, naming the input and the problem;
* there is no traceback, and nothing on stdout;
* no file was written, changed or left behind: the working folder, which holds the model and
  data files the case uses, is byte for byte what it was.

Cases that should *work* (quoted CSV cells, a 16-bit PNG, ...) are here too, beside the ones
they resemble. Everything is made under tmp_path; only the tests marked ``mnist`` read the real
data.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from safetensors.numpy import save as st_save
from typer.testing import CliRunner

from digitnet import datasets, modelfile
from digitnet.cli import app
from digitnet.model import Model, Preprocessing
from digitnet.network import init_params
from tiny_data import idx_bytes, odd_exif

DIGITNET = Path(sys.executable).with_name("digitnet")


# --------------------------------------------------------------------------------------------
# Running a command and judging its answer


@dataclasses.dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links and special files included) and what it holds."""
    found = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink() or not path.exists():
            found[key] = f"link to {os.readlink(path)}"
        elif path.is_file():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[key] = "folder" if path.is_dir() else "special"
    return found


class Cli:
    """Runs digitnet in ``work`` and checks that a failing run leaves ``work`` untouched."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work = work
        self.env = env

    def program(self, *args: str) -> Outcome:
        if not DIGITNET.exists():
            pytest.skip(f"the digitnet program is not installed beside {sys.executable}")
        return self._judged(lambda: self._subprocess(args))

    def in_process(self, *args: str) -> Outcome:
        return self._judged(lambda: self._runner(args))

    def _subprocess(self, args: tuple[str, ...]) -> Outcome:
        done = subprocess.run([str(DIGITNET), *args], capture_output=True, text=True,
                              env=self.env, cwd=self.work, timeout=120, check=False)
        return Outcome(done.returncode, done.stdout, done.stderr)

    def _runner(self, args: tuple[str, ...]) -> Outcome:
        result = CliRunner().invoke(app, list(args))
        # The runner turns an escaped exception into exit status 1: that is a crash, not an answer.
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Outcome(result.exit_code, result.stdout, result.stderr)

    def _judged(self, run: Callable[[], Outcome]) -> Outcome:
        before = _tree(self.work)
        outcome = run()
        if outcome.code != 0:
            assert _tree(self.work) == before, "a failed run changed the working folder"
        return outcome


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def cli(work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Both ways of running digitnet, away from the user's cache, DIGITNET_DATA and the network."""
    monkeypatch.setenv("DIGITNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DIGITNET_DATA", raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.chdir(work)
    for name, info in list(datasets.DATASETS.items()):  # nothing listens on port 1
        monkeypatch.setitem(datasets.DATASETS, name,
                            dataclasses.replace(info, mirrors=("http://127.0.0.1:1/",)))
    env = {k: v for k, v in os.environ.items() if k != "DIGITNET_DATA"}
    env.update(DIGITNET_CACHE=str(tmp_path / "cache"), OPENBLAS_NUM_THREADS="1",
               COLUMNS="200")
    return Cli(work, env)


def refused(outcome: Outcome, *words: str, code: int = 1) -> str:
    """Check a refusal: exit ``code``, one ``error:`` line holding ``words``, no traceback."""
    assert "Traceback" not in outcome.stderr + outcome.stdout, outcome.stderr
    assert outcome.code == code, (outcome.code, outcome.stderr, outcome.stdout)
    assert outcome.stdout == "", outcome.stdout
    lines = outcome.stderr.strip("\n").splitlines()
    assert len(lines) == 1, outcome.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    return line


def worked(outcome: Outcome) -> dict | list:
    assert outcome.code == 0, outcome.stderr
    assert "Traceback" not in outcome.stderr
    return json.loads(outcome.stdout)


# --------------------------------------------------------------------------------------------
# Inputs to spoil


# Three digits: a block of random grey levels on a black field, so each CSV row starts ",0,".
IMAGES = np.zeros((3, 28, 28), dtype=np.uint8)
IMAGES[:, 6:22, 10:18] = np.random.default_rng(0).integers(1, 256, size=(3, 16, 8))
LABELS = np.array([7, 2, 1], dtype=np.uint8)


def csv_text(header: str | None = "label", rows: int = 2, label: bool = True,
             cells: int = 784) -> str:
    lines = []
    if header is not None:
        lines.append(",".join(([header] if label else []) + [f"pixel{i}" for i in range(cells)]))
    for image, y in zip(IMAGES[:rows], LABELS[:rows], strict=True):
        pixels = [str(v) for v in image.ravel()[:cells]] + ["0"] * (cells - 784)
        lines.append(",".join(([str(y)] if label else []) + pixels))
    return "\n".join(lines) + "\n"


def npz(**arrays: object) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def model_bytes(sizes: tuple[int, ...] = (784, 10, 10), **meta: object) -> bytes:
    params = init_params(sizes, np.random.default_rng(1), "he", np.float32)
    return modelfile.to_bytes(Model(params, Preprocessing(), {"preset": "default", **meta}))


GOOD_MODEL = model_bytes()


def edited_model(edit: Callable[[dict, dict, dict], None]) -> bytes:
    """The good model re-saved after ``edit(arrays, header metadata, digitnet metadata)``."""
    n = struct.unpack("<Q", GOOD_MODEL[:8])[0]
    header = json.loads(GOOD_MODEL[8:8 + n])["__metadata__"]
    info = json.loads(header["digitnet"])
    arrays = {k: np.array(v) for k, v in modelfile.from_bytes(GOOD_MODEL).params.arrays().items()}
    before = header["digitnet"]
    edit(arrays, header, info)
    if header.get("digitnet") == before:  # unless the edit replaced it
        header["digitnet"] = json.dumps(info)
    return st_save(arrays, metadata=header)


def png(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def one(mode: str = "L", size: tuple[int, int] = (60, 80), ink: object = 0,
        paper: object = 255) -> Image.Image:
    """A '1' drawn as a thick vertical stroke."""
    image = Image.new(mode, size, paper)
    ImageDraw.Draw(image).line([(30, 12), (30, 68)], fill=ink, width=8)
    return image


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height``: never decoded, never allocated."""
    data = png(Image.new("L", (8, 8), 0))
    fields = struct.pack(">II", width, height) + data[24:29]
    return data[:8] + chunk(b"IHDR", fields) + data[33:]


def damaged_idat(data: bytes) -> bytes:
    """A PNG with one byte of its pixel data changed, so the chunk's CRC no longer matches."""
    at = data.index(b"IDAT") + 8
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def animated_gif() -> bytes:
    buffer = io.BytesIO()
    frames = [one().convert("P"), one(ink=80).convert("P")]
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    return buffer.getvalue()


def write(folder: Path, files: dict[str, bytes | str]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


@pytest.fixture
def model(work: Path) -> Path:
    path = work / "model.safetensors"
    path.write_bytes(GOOD_MODEL)
    return path


# --------------------------------------------------------------------------------------------
# Data files given to `digitnet evaluate MODEL --dataset FILE`

IMG = "t10k-images-idx3-ubyte"
LAB = "t10k-labels-idx1-ubyte"
GOOD_IDX = idx_bytes(IMAGES)

DATA_FILES: dict[str, tuple[dict[str, bytes | str], str, tuple[str, ...]]] = {
    # case: (files, the file given, words the message must hold)
    "wrong magic": ({IMG: b"\x12\x34" + GOOD_IDX[2:]}, IMG, ("wrong magic number",)),
    "truncated": ({IMG: GOOD_IDX[:1000]}, IMG, ("truncated", "holds 1000")),
    "truncated header": ({IMG: GOOD_IDX[:9]}, IMG, ("truncated IDX header",)),
    "dimensions vs size": ({IMG: GOOD_IDX + b"\0"}, IMG, ("too long", "3x28x28")),
    "unknown type byte": ({IMG: GOOD_IDX[:2] + b"\x07" + GOOD_IDX[3:]}, IMG, ("type byte",)),
    "images 27x28": ({IMG: idx_bytes(IMAGES[:, :27])}, IMG, ("n x 28 x 28", "3 x 27 x 28")),
    "label above 9": ({IMG: GOOD_IDX, LAB: idx_bytes([7, 12, 1])}, IMG, (LAB, "label 12", "0-9")),
    "count mismatch": ({IMG: GOOD_IDX, LAB: idx_bytes([7, 2])}, IMG, ("3 images but 2 labels",)),
    "labels file alone": ({LAB: idx_bytes(LABELS)}, LAB, ("labels only",)),
    ".gz not gzip": ({f"{IMG}.gz": GOOD_IDX}, f"{IMG}.gz", ("not a gzip file",)),
    "damaged gzip": ({f"{IMG}.gz": gzip.compress(GOOD_IDX)[:-12]}, f"{IMG}.gz",
                     ("damaged gzip file",)),
    "empty file": ({"digits.csv": b""}, "digits.csv", ("empty file",)),
    "empty gzip": ({f"{IMG}.gz": gzip.compress(b"")}, f"{IMG}.gz", ("empty file",)),
    "csv 786 columns": ({"d.csv": csv_text(None, cells=785)}, "d.csv", ("786 columns",)),
    "csv 783 columns": ({"d.csv": csv_text(None, label=False, cells=783)}, "d.csv",
                        ("783 columns",)),
    "csv rows without the label": (
        {"d.csv": csv_text().split("\n", 1)[0] + "\n" + csv_text(None, label=False)}, "d.csv",
        ("has 784 columns, expected 785",)),
    "csv header without label, rows with": (
        {"d.csv": csv_text(label=False).split("\n", 1)[0] + "\n" + csv_text(None)}, "d.csv",
        ("no 'label' column but the rows have one more",)),
    "csv non-numeric cell": ({"d.csv": csv_text().replace(",0,", ",x7,", 1)}, "d.csv",
                             ("'x7'", "is not an integer")),
    "csv non-numeric cell in line 1": ({"d.csv": csv_text(None).replace(",0,", ",x7,", 1)},
                                       "d.csv", ("'x7' on line 1", "not an integer")),
    "csv fraction": ({"d.csv": csv_text().replace(",0,", ",0.5,", 1)}, "d.csv",
                     ("'0.5'", "not an integer")),
    "csv pixel 256": ({"d.csv": csv_text().replace(",0,", ",256,", 1)}, "d.csv",
                      ("pixel value 256", "outside 0-255")),
    "csv pixel -1": ({"d.csv": csv_text().replace(",0,", ",-1,", 1)}, "d.csv",
                     ("pixel value -1", "outside 0-255")),
    "csv huge value": ({"d.csv": csv_text().replace(",0,", ",99999999999999999999,", 1)},
                       "d.csv", ("far out of range",)),
    "csv label 12": ({"d.csv": "12" + csv_text(None)[1:]}, "d.csv", ("label 12", "0-9")),
    "csv unknown header": ({"d.csv": csv_text("digit")}, "d.csv", ("header starts with 'digit'",)),
    "csv header only": ({"d.csv": csv_text(rows=0)}, "d.csv", ("no rows after the header",)),
    "csv without labels": ({"test.csv": csv_text(label=False)}, "test.csv",
                           ("has no labels", "label column", "digitnet predict")),
    "csv not text": ({"d.csv": png(one())}, "d.csv", ("not a text CSV file",)),
    "npz missing keys": ({"m.npz": npz(x_train=IMAGES, y_train=LABELS)}, "m.npz",
                         ("lacks x_test, y_test",)),
    "npz of Python objects": ({"m.npz": npz(x_test=np.array([None], dtype=object),
                                            y_test=LABELS)}, "m.npz", ("unpickled",)),
    "npz truncated": ({"m.npz": npz(x_test=IMAGES, y_test=LABELS)[:300]}, "m.npz",
                      ("not a readable npz file",)),
    "npz float labels": ({"m.npz": npz(x_test=IMAGES, y_test=LABELS + 0.5)}, "m.npz",
                         ("labels must be integers",)),
    "no images": ({IMG: idx_bytes(np.zeros((0, 28, 28))), LAB: idx_bytes([])}, IMG,
                  ("holds no images",)),
}
# Run as the installed program; the rest in process.
PROGRAM_CASES = {"wrong magic", "truncated", "label above 9", "count mismatch", ".gz not gzip",
                 "empty file", "csv non-numeric cell", "npz missing keys"}


@pytest.mark.parametrize("case", DATA_FILES)
def test_bad_data_file(cli: Cli, model: Path, case: str) -> None:
    files, given, words = DATA_FILES[case]
    write(cli.work, files)
    run = cli.program if case in PROGRAM_CASES else cli.in_process
    outcome = run("evaluate", str(model), "--dataset", str(cli.work / given), "--json")
    refused(outcome, str(cli.work), *words)  # the file given, or the labels file beside it


GOOD_CSV = {
    "quoted cells": '"label",' + ",".join(f'"pixel{i}"' for i in range(784)) + "\n" + "\n".join(
        ",".join(f'"{cell}"' for cell in line.split(",")) for line in csv_text(None).split("\n")
        if line),
    "byte-order mark": "\ufeff" + csv_text(),
    "CRLF line ends": csv_text().replace("\n", "\r\n"),
    "blank lines": csv_text().replace("\n", "\n\n"),
    "headerless": csv_text(None),
    "pandas column numbers": ",".join(map(str, range(785))) + "\n" + csv_text(None),
}


@pytest.mark.parametrize("case", GOOD_CSV)
def test_csv_variants_that_work(cli: Cli, model: Path, case: str) -> None:
    path = cli.work / "digits.csv"
    path.write_bytes(GOOD_CSV[case].encode("utf-8"))
    run = cli.program if case in ("quoted cells", "byte-order mark") else cli.in_process
    result = worked(run("evaluate", str(model), "--dataset", str(path), "--json"))
    assert result["n"] == 2
    assert [row["support"] for row in result["per_class"]][2] == 1  # labels 7 and 2


def test_directory_given_as_a_data_file(cli: Cli, model: Path) -> None:
    (cli.work / "digits.csv").mkdir()
    refused(cli.program("evaluate", str(model), "--dataset", str(cli.work / "digits.csv")),
            "digits.csv", "is a directory")


def test_data_file_that_does_not_exist(cli: Cli, model: Path) -> None:
    refused(cli.in_process("evaluate", str(model), "--dataset", "nope.csv"),
            "nope.csv", "neither a dataset name", "nor a file")


def test_data_file_under_a_file(cli: Cli, model: Path) -> None:
    # An unreadable path that stops root too: a file where a folder should be.
    refused(cli.program("data", "--data-dir", str(model / "data")),
            str(model / "data"), "cannot be searched")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="running as root: chmod 000 does not stop root from reading a file "
                           "(test_data_file_under_a_file covers an unreadable path)")
def test_data_file_without_permission(cli: Cli, model: Path) -> None:
    path = cli.work / "digits.csv"
    path.write_text(csv_text())
    path.chmod(0)
    try:
        refused(cli.program("evaluate", str(model), "--dataset", str(path)),
                str(path), "permission denied")
    finally:
        path.chmod(0o644)


def test_data_file_symlink_loop(cli: Cli, model: Path) -> None:
    loop = cli.work / "loop.csv"
    loop.symlink_to(loop)
    refused(cli.program("evaluate", str(model), "--dataset", str(loop)),
            str(loop), "cannot be read")


def test_data_file_that_is_a_fifo(cli: Cli, model: Path) -> None:
    fifo = cli.work / "digits.csv"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    refused(cli.program("evaluate", str(model), "--dataset", str(fifo)),
            str(fifo), "not a regular file")


def test_gzip_bomb(cli: Cli, model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same check stops a real bomb at 1 GiB; a lower limit keeps the test small.
    monkeypatch.setattr(datasets, "MAX_FILE_BYTES", 1 << 20)
    path = cli.work / f"{IMG}.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((2000, 28, 28)))))
    assert path.stat().st_size < 10_000
    refused(cli.in_process("evaluate", str(model), "--dataset", str(path)),
            str(path), "decompresses to more than 1 MiB")


def test_data_file_too_large(cli: Cli, model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "MAX_FILE_BYTES", 1 << 20)
    path = cli.work / "digits.csv"
    with path.open("wb") as f:
        f.truncate((1 << 20) + 1)  # sparse: takes no space
    refused(cli.in_process("evaluate", str(model), "--dataset", str(path)),
            str(path), "larger than any data file digitnet reads")


# --------------------------------------------------------------------------------------------
# Dataset folders given to `digitnet data --data-dir`

STEMS = [stem for split in ("train", "test") for stem in datasets.FILES[split]]
TINY = {"train-images-idx3-ubyte": idx_bytes(IMAGES), "train-labels-idx1-ubyte": idx_bytes(LABELS),
        IMG: idx_bytes(IMAGES[:2]), LAB: idx_bytes(LABELS[:2])}


def register(monkeypatch: pytest.MonkeyPatch, contents: dict[str, bytes]) -> None:
    """Register ``contents`` as the published MNIST, so that they verify and get parsed."""
    sha256 = {stem: hashlib.sha256(raw).hexdigest() for stem, raw in contents.items()}
    info = dataclasses.replace(datasets.DATASETS["mnist"], sha256=sha256)
    monkeypatch.setitem(datasets.DATASETS, "mnist", info)


# Files that verify (their hashes are registered) but are malformed: the parser must say what.
VERIFIED_BUT_BAD = {
    "wrong magic": ({IMG: b"\x01\x02" + TINY[IMG][2:]}, IMG, "wrong magic number"),
    "truncated": ({IMG: TINY[IMG][:100]}, IMG, "truncated"),
    "dimensions vs size": ({IMG: TINY[IMG] + b"\0\0"}, IMG, "too long"),
    "label above 9": ({LAB: idx_bytes([3, 10])}, LAB, "label 10 (item 2) out of range 0-9"),
    "count mismatch": ({LAB: idx_bytes([3])}, "mnist", "2 images but 1 labels"),
    "images for labels": ({LAB: TINY[IMG]}, LAB, "labels must be one-dimensional"),
}


@pytest.mark.parametrize("case", VERIFIED_BUT_BAD)
def test_data_folder_with_malformed_files(cli: Cli, monkeypatch: pytest.MonkeyPatch,
                                          case: str) -> None:
    changes, named, words = VERIFIED_BUT_BAD[case]
    contents = {**TINY, **changes}
    register(monkeypatch, contents)
    write(cli.work, {f"data/mnist/{stem}.gz": gzip.compress(raw) for stem, raw in
                     contents.items()})
    line = refused(cli.in_process("data", "--no-download", "--data-dir", str(cli.work / "data")),
                   words)
    assert str(cli.work / "data" / "mnist") in line and named in line


DATA_FOLDERS: dict[str, tuple[dict[str, bytes], tuple[str, ...]]] = {
    "only some files": ({f"{stem}.gz": gzip.compress(TINY[stem]) for stem in STEMS[2:]},
                        ("holds only some of the MNIST files", "train-images-idx3-ubyte")),
    "hash mismatch": ({f"{stem}.gz": gzip.compress(TINY[stem]) for stem in STEMS},
                      ("content differs from the published MNIST", "train-images")),
    ".gz not gzip": ({f"{stem}.gz": TINY[stem] for stem in STEMS}, ("not a gzip file",)),
    "empty file": ({**{f"{stem}.gz": gzip.compress(TINY[stem]) for stem in STEMS},
                    "train-images-idx3-ubyte.gz": b""}, ("train-images", "empty file")),
    "damaged gzip": ({**{f"{stem}.gz": gzip.compress(TINY[stem]) for stem in STEMS},
                      "train-images-idx3-ubyte.gz": gzip.compress(TINY[STEMS[0]])[:40]},
                     ("train-images", "damaged gzip file")),
}


@pytest.mark.parametrize("case", DATA_FOLDERS)
def test_bad_data_folder(cli: Cli, case: str) -> None:
    files, words = DATA_FOLDERS[case]
    write(cli.work / "data" / "mnist", files)
    refused(cli.program("data", "--no-download", "--json", "--data-dir", str(cli.work / "data")),
            str(cli.work / "data" / "mnist"), *words)


def test_data_folder_holding_a_directory_for_a_file(cli: Cli) -> None:
    write(cli.work / "data" / "mnist", {f"{stem}.gz": gzip.compress(TINY[stem])
                                        for stem in STEMS[1:]})
    (cli.work / "data" / "mnist" / f"{STEMS[0]}.gz").mkdir()  # the first file read
    refused(cli.program("data", "--no-download", "--data-dir", str(cli.work / "data")),
            f"{STEMS[0]}.gz", "is a directory")


def test_data_folder_holding_a_symlink_loop(cli: Cli) -> None:
    write(cli.work / "data" / "mnist", {f"{stem}.gz": gzip.compress(TINY[stem])
                                        for stem in STEMS[1:]})
    loop = cli.work / "data" / "mnist" / f"{STEMS[0]}.gz"
    loop.symlink_to(loop)
    refused(cli.in_process("data", "--no-download", "--data-dir", str(cli.work / "data")),
            f"{STEMS[0]}.gz", "cannot be read")


@pytest.mark.parametrize(
    ("given", "words"),
    [("missing", ("no such folder", "--data-dir")),
     ("model.safetensors", ("is a file, expected a folder",)),
     ("loop", ("cannot be searched",))],
)
def test_bad_data_dir(cli: Cli, model: Path, given: str, words: tuple[str, ...]) -> None:
    (cli.work / "loop").symlink_to(cli.work / "loop")
    refused(cli.in_process("data", "--no-download", "--data-dir", str(cli.work / given)),
            str(cli.work / given), *words)


def test_unknown_dataset_name(cli: Cli) -> None:
    refused(cli.in_process("data", "--dataset", "emnist"), "unknown dataset 'emnist'",
            "mnist, fashion-mnist")


# --------------------------------------------------------------------------------------------
# Images given to `digitnet predict MODEL IMAGE`

TRANSPARENT = Image.new("RGBA", (60, 80), (0, 0, 0, 0))
ImageDraw.Draw(TRANSPARENT).line([(30, 12), (30, 68)], fill=(20, 20, 20, 255), width=8)

BAD_IMAGES: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "not an image": (b"hello, world\n", ("not an image",)),
    "zero bytes": (b"", ("the file is empty (0 bytes)",)),
    "truncated PNG": (png(one())[:png(one()).index(b"IDAT") + 20], ("damaged or truncated",)),
    "PNG with a bad checksum": (damaged_idat(png(one())), ("damaged",)),
    "1x1": (png(Image.new("L", (1, 1), 0)), ("1x1 pixels", "too small")),
    "20000x20000 bomb": (bomb_png(20_000, 20_000),
                         ("claims 400,000,000 pixels", "limit is 50,000,000")),
    "8000x8000 bomb": (bomb_png(8000, 8000), ("8000x8000", "limit is 50,000,000")),
    "animated GIF": (animated_gif(), ("animated", "2 frames")),
    "all white": (png(Image.new("L", (60, 60), 255)), ("no digit found",)),
    "all black": (png(Image.new("L", (60, 60), 0)), ("no digit found",)),
    "all transparent": (png(Image.new("RGBA", (60, 60), (0, 0, 0, 0))), ("no digit found",)),
    "PDF": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", ("not an image",)),
    "SVG": (b'<svg xmlns="http://www.w3.org/2000/svg"><path d="M1 1"/></svg>', ("not an image",)),
}
PROGRAM_IMAGES = {"not an image", "zero bytes", "truncated PNG", "20000x20000 bomb",
                  "animated GIF", "all white"}


@pytest.mark.parametrize("case", BAD_IMAGES)
def test_bad_image(cli: Cli, model: Path, case: str) -> None:
    data, words = BAD_IMAGES[case]
    path = cli.work / "digit.png"
    path.write_bytes(data)
    run = cli.program if case in PROGRAM_IMAGES else cli.in_process
    refused(run("predict", str(model), str(path)), str(path), *words)


def test_bad_image_among_good_ones(cli: Cli, model: Path) -> None:
    """The bad one is named on stderr, the good ones are still predicted, and the exit is 1."""
    write(cli.work, {"a.png": png(one()), "b.png": b"", "c.png": png(one())})
    outcome = cli.in_process("predict", str(model), "a.png", "b.png", "c.png")
    assert outcome.code == 1 and "Traceback" not in outcome.stderr
    assert [line.split(":")[0] for line in outcome.stdout.splitlines()] == ["a.png", "c.png"]
    [line] = outcome.stderr.strip("\n").splitlines()
    assert line.startswith("error: ") and "b.png" in line and "empty" in line


GOOD_IMAGES = {
    "16-bit PNG": png(Image.fromarray(np.asarray(one(), dtype=np.uint16) * 257)),
    "RGBA, transparent background": png(TRANSPARENT),
    "RGBA, transparent background, white ink": png(Image.merge(
        "RGBA", (*Image.new("RGB", (60, 80), (255, 255, 255)).split(),
                 TRANSPARENT.getchannel("A")))),
    "palette": png(one().convert("P")),
    "1-bit": png(one("1", ink=0, paper=1)),
    "light ink on black": png(one(ink=255, paper=0)),
    "JPEG": jpeg(one("RGB", ink=(0, 0, 0), paper=(255, 255, 255))),
}


@pytest.mark.parametrize("case", GOOD_IMAGES)
def test_images_that_work(cli: Cli, model: Path, case: str) -> None:
    path = cli.work / "digit.img"
    path.write_bytes(GOOD_IMAGES[case])
    run = cli.program if case in ("16-bit PNG", "RGBA, transparent background") \
        else cli.in_process
    [result] = worked(run("predict", str(model), str(path), "--json"))
    assert result["file"] == str(path)
    assert 0 <= result["label"] <= 9
    assert abs(sum(result["probabilities"]) - 1) < 1e-4


def test_image_that_is_missing_a_directory_a_loop_or_a_fifo(cli: Cli, model: Path) -> None:
    (cli.work / "folder.png").mkdir()
    (cli.work / "loop.png").symlink_to(cli.work / "loop.png")
    os.mkfifo(cli.work / "fifo.png")
    for name, words in (("missing.png", ("no such image file",)),
                        ("folder.png", ("is a directory",)),
                        ("loop.png", ("cannot be read",)),
                        ("fifo.png", ("not a regular file",))):
        refused(cli.in_process("predict", str(model), name), name, *words)


def test_image_name_with_brackets_is_shown_as_it_is(cli: Cli, model: Path) -> None:
    # Rich would read "[/]" as a closing tag; the name must come through untouched.
    (cli.work / "a[").mkdir()
    path = cli.work / "a[" / "]b.png"  # the path reads .../a[/]b.png
    path.write_bytes(b"")
    refused(cli.program("predict", str(model), str(path)), str(path), "empty")
    good = cli.work / "x[bold]y.png"
    good.write_bytes(png(one()))
    outcome = cli.in_process("predict", str(model), str(good))
    assert outcome.code == 0 and str(good) in outcome.stdout


def test_image_over_the_size_limit(cli: Cli, model: Path) -> None:
    path = cli.work / "huge.png"
    data = png(one())
    with path.open("wb") as f:  # a PNG with 25 MB of zeros after it; sparse on disk
        f.write(data)
        f.truncate(25_000_001)
    refused(cli.in_process("predict", str(model), str(path)), str(path),
            "larger than any image file", "the limit is 25,000,000 bytes")


# --------------------------------------------------------------------------------------------
# Model files given to `digitnet info/evaluate/predict MODEL`


def _set(path: str, value: object) -> Callable[[dict, dict, dict], None]:
    """An edit setting ``info[a][b]`` (path "a.b") in the digitnet metadata."""
    def edit(arrays: dict, header: dict, info: dict) -> None:
        *parents, key = path.split(".")
        target = info
        for parent in parents:
            target = target.setdefault(parent, {})
        if value is _DELETE:
            del target[key]
        else:
            target[key] = value
    return edit


_DELETE = object()


def _arrays(change: Callable[[dict], None]) -> Callable[[dict, dict, dict], None]:
    return lambda arrays, header, info: change(arrays)


def _header(change: Callable[[dict], None]) -> Callable[[dict, dict, dict], None]:
    return lambda arrays, header, info: change(header)


def _nan_bias(arrays: dict) -> None:
    arrays["b1"][3] = np.nan


def _modified(arrays: dict) -> None:
    arrays["W2"][0, 0] += 0.25


def _torch_like() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    return buffer.getvalue()


BAD_MODELS: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "empty": (b"", ("truncated or empty (0 bytes)",)),
    "truncated": (GOOD_MODEL[:len(GOOD_MODEL) // 2], ("truncated", "its header describes")),
    "header cut": (GOOD_MODEL[:300], ("truncated or another format",)),
    "text file": (b"this is not a model\n", ("not a safetensors model file",)),
    "pickle renamed": (pickle.dumps({"W1": np.zeros((784, 10))}), ("a Python pickle",)),
    "PyTorch zip": (_torch_like(), ("a zip archive",)),
    "safetensors from something else": (
        st_save({"embeddings.weight": np.zeros((5, 3), np.float32)}, metadata={"format": "pt"}),
        ("not a digitnet model",)),
    "safetensors without metadata": (st_save({"W1": np.zeros((784, 10), np.float32)}),
                                     ("not a digitnet model",)),
    "future format version": (edited_model(_header(lambda h: h.update(format_version="2"))),
                              ("newer digitnet", "model format 2")),
    "unreadable format version": (
        edited_model(_header(lambda h: h.update(format_version="one"))),
        ("unreadable format_version 'one'",)),
    "missing digitnet metadata": (edited_model(_header(lambda h: h.pop("digitnet"))),
                                  ("lacks the 'digitnet' entry",)),
    "metadata not JSON": (edited_model(_header(lambda h: h.update(digitnet="{oops"))),
                          ("not JSON",)),
    "missing weights hash": (edited_model(_set("weights_sha256", _DELETE)),
                             ("lacks 'weights_sha256'",)),
    "missing architecture": (edited_model(_set("architecture", _DELETE)),
                             ("lacks 'architecture'",)),
    "wrong shapes": (edited_model(_set("architecture.sizes", [784, 12, 10])),
                     ("W1 has shape (784, 10)", "(784, 12)")),
    "no layer sizes": (edited_model(_set("architecture.sizes", "784-10-10")),
                       ("no valid layer sizes",)),
    "missing array": (edited_model(_arrays(lambda a: a.pop("b2"))), ("missing array b2",)),
    "extra array": (edited_model(_arrays(lambda a: a.update(W3=np.zeros(2, np.float32)))),
                    ("unexpected arrays W3",)),
    "integer weights": (edited_model(_arrays(lambda a: a.update(
        b1=np.zeros(10, np.int32)))), ("tensor type 'I32'",)),
    "non-finite weights": (edited_model(_arrays(_nan_bias)), ("b1", "non-finite")),
    "modified weights": (edited_model(_arrays(_modified)), ("modified or corrupted",)),
    "flipped byte in the weights": (GOOD_MODEL[:-30] + bytes([GOOD_MODEL[-30] ^ 0x40]) +
                                    GOOD_MODEL[-29:], ("modified or corrupted",)),
    "invalid preprocessing": (edited_model(_set("preprocessing.std", 0)),
                              ("invalid preprocessing",)),
    "class names too few": (edited_model(_set("class_names", ["0", "1"])),
                            ("damaged digitnet metadata", "class_names should be 10 names")),
    "metrics not an object": (edited_model(_set("metrics", [0.9])),
                              ("damaged digitnet metadata", "metrics should be an object")),
    "metric not a number": (edited_model(_set("metrics.test_accuracy", "high")),
                            ("metric 'test_accuracy' should be a number",)),
    "dataset hashes not an object": (edited_model(_set("datasets.train.sha256", "abc")),
                                     ("datasets train",)),
}
PROGRAM_MODELS = {"empty", "truncated", "pickle renamed", "safetensors from something else",
                  "future format version", "wrong shapes", "modified weights"}


@pytest.mark.parametrize("case", BAD_MODELS)
def test_bad_model_file_info(cli: Cli, case: str) -> None:
    data, words = BAD_MODELS[case]
    path = cli.work / "model.safetensors"
    path.write_bytes(data)
    run = cli.program if case in PROGRAM_MODELS else cli.in_process
    refused(run("info", str(path)), str(path), *words)


@pytest.mark.parametrize("command", ["evaluate", "predict"])
@pytest.mark.parametrize("case", BAD_MODELS)
def test_bad_model_file_evaluate_predict(cli: Cli, case: str, command: str) -> None:
    data, words = BAD_MODELS[case]
    path = cli.work / "model.safetensors"
    path.write_bytes(data)
    write(cli.work, {"digits.csv": csv_text(), "digit.png": png(one())})
    given = "--dataset=digits.csv" if command == "evaluate" else "digit.png"
    refused(cli.in_process(command, str(path), given), str(path), *words)


def test_model_that_is_missing_a_directory_a_loop_or_a_fifo(cli: Cli) -> None:
    (cli.work / "folder.safetensors").mkdir()
    (cli.work / "loop.safetensors").symlink_to(cli.work / "loop.safetensors")
    os.mkfifo(cli.work / "fifo.safetensors")
    for name, words in (("missing.safetensors", ("no such model file",)),
                        ("folder.safetensors", ("is a directory",)),
                        ("loop.safetensors", ("cannot be read",)),
                        ("fifo.safetensors", ("not a regular file",))):
        refused(cli.in_process("info", name), name, *words)


def test_model_that_does_not_read_digits(cli: Cli) -> None:
    # A valid model of 64 inputs (8x8 digits): info reads it, evaluate and predict refuse it.
    path = cli.work / "small.safetensors"
    path.write_bytes(model_bytes((64, 10, 10)))
    write(cli.work, {"digits.csv": csv_text(), "digit.png": png(one())})
    assert worked(cli.in_process("info", str(path), "--json"))["sizes"] == [64, 10, 10]
    for args in (["evaluate", str(path), "--dataset", "digits.csv"],
                 ["predict", str(path), "digit.png"]):
        refused(cli.in_process(*args), str(path), "takes 64 inputs", "784 pixels")


def test_model_with_fewer_classes_than_the_labels(cli: Cli) -> None:
    path = cli.work / "three.safetensors"
    path.write_bytes(model_bytes((784, 10, 3)))
    (cli.work / "digits.csv").write_text(csv_text())
    refused(cli.in_process("evaluate", str(path), "--dataset", "digits.csv"),
            "digits.csv", "label 7", "only 3 classes")


def test_model_metadata_with_markup(cli: Cli) -> None:
    # Text from a file is shown as it is, not read as Rich markup.
    path = cli.work / "model.safetensors"
    path.write_bytes(model_bytes(preset="[/]", class_names=[f"[bold]{k}" for k in range(10)]))
    (cli.work / "digits.csv").write_text(csv_text())
    for args in (["info", str(path)], ["evaluate", str(path), "--dataset", "digits.csv"],
                 ["predict", str(path), "--dataset", "digits.csv", "--index", "0"]):
        outcome = cli.in_process(*args)
        assert outcome.code == 0, outcome.stderr
        assert "[bold]" in outcome.stdout or "[/]" in outcome.stdout


# --------------------------------------------------------------------------------------------
# Options: refused before any data is read

# (flag, value, words): a missing --data-dir is given too, so a case that read data first
# would name that folder instead. Zero is a valid --batch-size (full batch), --val-size (no
# validation), --seed and --l2; NaN and inf are refused as non-integers by the option parser
# (NOT_INTEGERS below) for every integer flag.
BAD_TRAIN_OPTIONS = [
    *[(f"--{flag}", value, (flag.replace("-", "_"), "out of range"))
      for flag in ("hidden", "layers", "epochs", "iterations")
      for value in ("-1", "0", "99999999999")],
    ("--batch-size", "-1", ("batch_size", "out of range")),
    ("--batch-size", "99999999999", ("batch_size", "out of range")),
    ("--val-size", "-1", ("val_size", "out of range")),
    ("--val-size", "99999999999", ("val_size", "out of range")),
    ("--seed", "-1", ("seed", "out of range")),
    ("--seed", str(2**64), ("seed", "out of range")),
    *[(f"--{flag}", value, (flag, words))
      for flag in ("lr", "l2")
      for value, words in (("-1", "out of range"), ("nan", "not a finite number"),
                           ("inf", "not a finite number"), ("-inf", "not a finite number"),
                           ("1e99", "out of range"))],
    ("--lr", "0", ("lr", "out of range; it must be > 0")),
    ("--preset", "fast", ("unknown preset 'fast'", "seed, default")),
    ("--optimizer", "sgd", ("unknown optimizer 'sgd'", "gd, momentum, adam")),
    ("--schedule", "linear", ("unknown schedule 'linear'", "constant, cosine, onecycle")),
]
# Values that are not integers at all: the command line itself is refused (exit 2).
NOT_INTEGERS = [(f"--{flag}", value) for flag in ("hidden", "layers", "epochs", "iterations",
                                                  "batch-size", "seed", "val-size")
                for value in ("nan", "inf", "1e3", "ten")] + [("--lr", "fast")]


@pytest.mark.parametrize(("flag", "value", "words"), BAD_TRAIN_OPTIONS,
                         ids=[f"{f}={v}" for f, v, _ in BAD_TRAIN_OPTIONS])
def test_bad_train_option(cli: Cli, model: Path, flag: str, value: str,
                          words: tuple[str, ...]) -> None:
    # --out names the existing model: a refused run must leave it as it was (checked by cli).
    run = cli.program if (flag, value) in (("--lr", "nan"), ("--preset", "fast")) \
        else cli.in_process
    line = refused(run("train", f"{flag}={value}", "--data-dir", "missing",
                       "--out", str(model)), *words)
    assert "missing" not in line


@pytest.mark.parametrize(("flag", "value"), NOT_INTEGERS, ids=[f"{f}={v}" for f, v in NOT_INTEGERS])
def test_train_option_of_the_wrong_type(cli: Cli, flag: str, value: str) -> None:
    run = cli.program if (flag, value) == ("--hidden", "nan") else cli.in_process
    refused(run("train", f"{flag}={value}", "--data-dir", "missing"),
            f"'{flag}'", f"got '{value}'", "digitnet train --help", code=2)


def test_unknown_option(cli: Cli) -> None:
    refused(cli.program("train", "--epoch", "3"), "No such option: --epoch", code=2)


def test_unknown_command(cli: Cli) -> None:
    refused(cli.in_process("trian"), "No such command 'trian'", code=2)


def test_train_unknown_dataset(cli: Cli) -> None:
    refused(cli.in_process("train", "--dataset", "emnist"), "unknown dataset 'emnist'")


@pytest.mark.parametrize("out", ["folder", "model.safetensors/inside.safetensors"])
def test_train_out_that_cannot_be_written(cli: Cli, model: Path, out: str) -> None:
    (cli.work / "folder").mkdir()
    # Refused before the data is looked for: the data folder does not exist.
    line = refused(cli.in_process("train", "--out", out, "--data-dir", "missing"), out)
    assert "missing" not in line


@pytest.mark.parametrize("value", ["0", "-1", "11", "99999999999"])
def test_predict_top_out_of_range(cli: Cli, model: Path, value: str) -> None:
    (cli.work / "digit.png").write_bytes(png(one()))
    run = cli.program if value == "0" else cli.in_process
    refused(run("predict", str(model), "digit.png", "--top", value),
            f"--top {value} is out of range", "between 1 and 10")


@pytest.mark.parametrize("value", ["nan", "inf", "3.5"])
def test_predict_top_not_an_integer(cli: Cli, model: Path, value: str) -> None:
    refused(cli.in_process("predict", str(model), "digit.png", "--top", value),
            "'--top'", f"got '{value}'", code=2)


@pytest.mark.parametrize("value", ["-1", "2", "99999999999"])
def test_predict_index_out_of_range(cli: Cli, model: Path, value: str) -> None:
    (cli.work / "digits.csv").write_text(csv_text())
    run = cli.program if value == "2" else cli.in_process
    refused(run("predict", str(model), "--dataset", "digits.csv", "--index", value),
            f"--index {value} is out of range", "2 images (0 to 1)")


@pytest.mark.parametrize(
    ("args", "words"),
    [(["--index", "nan"], ("'--index'", "got 'nan'")),
     (["--index", "0"], ("--dataset and --index go together",)),
     (["--dataset", "digits.csv"], ("--dataset and --index go together",)),
     (["--dataset", "digits.csv", "--index", "0", "digit.png"], ("not both",)),
     ([], ("give at least one image file",))],
)
def test_predict_option_combinations(cli: Cli, model: Path, args: list[str],
                                     words: tuple[str, ...]) -> None:
    write(cli.work, {"digits.csv": csv_text(), "digit.png": png(one())})
    code = 2 if "nan" in args else 1
    refused(cli.in_process("predict", str(model), *args), *words, code=code)


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_unknown_split(cli: Cli, model: Path, command: str) -> None:
    (cli.work / "m.npz").write_bytes(npz(x_test=IMAGES, y_test=LABELS))
    args = ["--dataset", "m.npz", "--split", "nope"] + (["--index", "0"]
                                                       if command == "predict" else [])
    run = cli.program if command == "evaluate" else cli.in_process
    refused(run(command, str(model), *args), "unknown split 'nope'", "'train' or 'test'")


def test_evaluate_unknown_dataset(cli: Cli, model: Path) -> None:
    refused(cli.in_process("evaluate", str(model), "--dataset", "emnist"),
            "emnist", "neither a dataset name (mnist, fashion-mnist) nor a file")


# --------------------------------------------------------------------------------------------
# Training that fails: the model file at --out stays as it was


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on the way to NaN
@pytest.mark.parametrize(
    ("options", "words"),
    [(["--optimizer", "gd", "--schedule", "constant", "--lr", "1e4", "--val-size", "10",
       "--batch-size", "5"], ("diverged", "smaller learning rate")),
     (["--val-size", "300"], ("val_size = 300 leaves no training images",))],
    ids=["diverges", "no training images"],
)
def test_failed_training_keeps_the_old_model(cli: Cli, model: Path, tiny_mnist: Path,
                                             options: list[str], words: tuple[str, ...]) -> None:
    refused(cli.in_process("train", *options, "--epochs", "3", "--quiet", "--data-dir",
                           str(tiny_mnist), "--out", str(model)), *words)
    assert model.read_bytes() == GOOD_MODEL  # also checked by cli, with no stray files


@pytest.mark.mnist
@pytest.mark.parametrize("existing", [True, False], ids=["over a model", "new file"])
def test_diverging_training_on_mnist(cli: Cli, mnist_dir: Path, existing: bool) -> None:
    out = cli.work / "models" / "diverged.safetensors"
    if existing:
        write(out.parent, {out.name: GOOD_MODEL})
    line = refused(cli.program("train", "--lr", "1e4", "--data-dir", str(mnist_dir),
                               "--out", str(out)), "diverged", "smaller learning rate", "--lr")
    step = int(line.split("diverged at step ")[1].split()[0])
    assert step <= 50, line  # stops within a few steps, not after the epochs asked for
    if existing:  # the old model, byte for byte, and no temporary file beside it
        assert os.listdir(out.parent) == [out.name] and out.read_bytes() == GOOD_MODEL
    else:
        assert not out.parent.exists()


# --------------------------------------------------------------------------------------------
# Tried as an adversarial user would: each case beside another of its class


def retyped(dtype: str, itemsize: int) -> bytes:
    """The good model with every tensor declared as ``dtype`` (valid safetensors, right names)."""
    n = struct.unpack("<Q", GOOD_MODEL[:8])[0]
    header = json.loads(GOOD_MODEL[8:8 + n])
    arrays = modelfile.from_bytes(GOOD_MODEL).params.arrays()
    body, offset = b"", 0
    for name, array in arrays.items():
        raw = bytes(array.size * itemsize)
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        body, offset = body + raw, offset + len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def scaled_model(weights: float = 1.0, **pre: float) -> bytes:
    params = init_params((784, 10, 10), np.random.default_rng(1), "he", np.float32)
    params = type(params)([w * np.float32(weights) for w in params.W], list(params.b))
    return modelfile.to_bytes(Model(params, Preprocessing(**pre), {"preset": "default"}))


ADVERSARIAL_MODELS: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "BF16 tensors": (retyped("BF16", 2), ("tensor type 'BF16'", "F32 or F64")),
    "F8 tensors": (retyped("F8_E4M3", 1), ("tensor type 'F8_E4M3'", "F32 or F64")),
    "F16 tensors": (retyped("F16", 2), ("tensor type 'F16'",)),
    "config.dataset a list": (edited_model(_set("config.dataset", ["mnist"])),
                              ("config dataset should be a string",)),
    "config.dataset an object": (edited_model(_set("config.dataset", {"name": "mnist"})),
                                 ("config dataset should be a string",)),
    "history of uneven lengths": (edited_model(_set("history", {"epoch": [1, 2], "loss": [1.0]})),
                                  ("one entry per epoch",)),
    "one class": (model_bytes((784, 10, 1)), ("1 output class", "at least 2")),
    "std 1e-320": (scaled_model(std=1e-320), ("not finite numbers", "retrain")),
    "huge weights": (scaled_model(1e37), ("not finite numbers",)),
    "mean 1e300": (scaled_model(mean=1e300), ("not finite numbers",)),
}


@pytest.mark.parametrize("command", ["info", "evaluate", "predict", "serve"])
@pytest.mark.parametrize("case", ADVERSARIAL_MODELS)
def test_adversarial_model_file(cli: Cli, case: str, command: str) -> None:
    data, words = ADVERSARIAL_MODELS[case]
    path = cli.work / "model.safetensors"
    path.write_bytes(data)
    write(cli.work, {"digits.csv": csv_text(), "digit.png": png(one())})
    args = {"info": [], "evaluate": ["--dataset", "digits.csv"], "predict": ["digit.png"],
            "serve": ["--port", "0", "--data-dir", "nothing"]}[command]
    run = cli.program if (case, command) in (("BF16 tensors", "info"),
                                             ("std 1e-320", "predict")) else cli.in_process
    refused(run(command, str(path), *args), str(path), *words)


def test_no_numpy_warnings_from_a_model_that_overflows(cli: Cli) -> None:
    path = cli.work / "model.safetensors"
    path.write_bytes(scaled_model(1e37))
    (cli.work / "digit.png").write_bytes(png(one()))
    outcome = cli.program("predict", str(path), "digit.png")
    refused(outcome, "not finite")
    assert "Warning" not in outcome.stderr


def test_a_three_class_model_is_blamed_not_the_dataset(cli: Cli) -> None:
    path = cli.work / "three.safetensors"
    path.write_bytes(model_bytes((784, 10, 3)))
    (cli.work / "digits.csv").write_text(csv_text())
    refused(cli.in_process("report", str(path), "--dataset", "digits.csv", "--out", "r"),
            str(path), "knows 3 classes", "label 7")
    # predict of a stored digit whose label the model does not know still answers
    outcome = cli.in_process("predict", str(path), "--dataset", "digits.csv", "--index", "0")
    assert outcome.code == 0 and "(true: 7)" in outcome.stdout, outcome.stderr


def exif_png(kind: str, make_type: int, orientation: int = 6) -> bytes:
    """A '1' whose EXIF holds an Orientation tag and Make stored as ``make_type``
    (5 RATIONAL, 11 FLOAT): valid TIFF structure, a type no camera writes for Make."""
    exif = odd_exif(make_type, orientation)
    buffer = io.BytesIO()
    image = one("RGB", ink=(0, 0, 0), paper=(255, 255, 255)) if kind == "JPEG" else one()
    image.save(buffer, format=kind, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["JPEG", "PNG"])
@pytest.mark.parametrize("make_type", [5, 11], ids=["Make RATIONAL", "Make FLOAT"])
def test_malformed_exif_is_read_and_its_orientation_kept(cli: Cli, model: Path, kind: str,
                                                         make_type: int) -> None:
    from digitnet import imaging

    path = cli.work / f"digit.{kind.lower()}"
    path.write_bytes(exif_png(kind, make_type))
    run = cli.program if (kind, make_type) == ("JPEG", 5) else cli.in_process
    [result] = worked(run("predict", str(model), str(path), "--json"))
    assert 0 <= result["label"] <= 9
    # the orientation tag (6: turn 90 degrees) is honoured: the stroke becomes horizontal
    grey = imaging.read_image(path)
    assert grey.shape == (60, 80)


# Outputs that are inputs: refused before any work, the input untouched (checked by cli).


def test_export_over_its_own_model(cli: Cli, model: Path) -> None:
    refused(cli.program("export", str(model), str(model)), str(model), "same file as the input")


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_export_over_a_link_to_its_model(cli: Cli, model: Path, link: str) -> None:
    other = cli.work / "model.onnx"
    (os.link if link == "hard" else os.symlink)(model, other)
    refused(cli.in_process("export", str(model), str(other)), "same file as the input")


def test_train_out_naming_a_data_file(cli: Cli, tiny_mnist: Path) -> None:
    data_file = tiny_mnist / "mnist" / "t10k-labels-idx1-ubyte.gz"
    before = data_file.read_bytes()
    refused(cli.in_process("train", "--data-dir", str(tiny_mnist), "--epochs", "1",
                           "--out", str(data_file)), "--out", "same file as the input")
    refused(cli.in_process("train", "--data-dir", str(tiny_mnist), "--epochs", "1",
                           "--checkpoint", str(data_file), "--out", "m.safetensors"),
            "--checkpoint", "same file as the input")
    assert data_file.read_bytes() == before


def test_train_resume_out_naming_the_checkpoint(cli: Cli, tiny_mnist: Path) -> None:
    ckpt = cli.work / "run.ckpt"
    ckpt.write_bytes(b"a checkpoint")  # refused before it is even read
    refused(cli.in_process("train", "--resume", str(ckpt), "--out", str(ckpt)),
            "--out", "same file as the input", str(ckpt))
    refused(cli.in_process("train", "--out", "m.safetensors", "--checkpoint", "m.safetensors",
                           "--data-dir", str(tiny_mnist)), "same file as --out")


@pytest.mark.parametrize(("args", "words"), [
    (["--out", "."], ("--out .", "is a directory", "model.safetensors")),
    (["--out", ".."], ("--out ..", "is a directory")),
    (["--checkpoint", ""], ("--checkpoint", "is a directory", "run.ckpt")),
])
def test_train_outputs_that_are_folders(cli: Cli, args: list[str], words: tuple[str, ...]) -> None:
    line = refused(cli.in_process("train", *args, "--data-dir", "missing"), *words)
    assert "PosixPath" not in line and "busy" not in line


# A signal while the final file is synced: the temporary file goes, the exit is 128 + signal.

SLOW_FSYNC = """
import os, sys, time
from pathlib import Path
marker = Path(sys.argv[1])
real = os.fsync
def slow(fd):
    marker.touch()
    time.sleep(3)
    real(fd)
os.fsync = slow
sys.argv = ["digitnet", *sys.argv[2:]]
from digitnet.cli import main
main()
"""


@pytest.mark.parametrize(("sig", "code", "word"), [(15, 143, "terminated"),
                                                   (2, 130, "interrupted")])
def test_a_signal_during_the_final_write_leaves_no_temporary_file(
        cli: Cli, model: Path, sig: int, code: int, word: str) -> None:
    import signal as signals
    import time

    pytest.importorskip("onnx")
    marker = cli.work.parent / "syncing"
    process = subprocess.Popen([sys.executable, "-c", SLOW_FSYNC, str(marker), "export",
                                str(model), str(cli.work / "out.onnx")], cwd=cli.work,
                               env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    for _ in range(600):
        if marker.exists() or process.poll() is not None:
            break
        time.sleep(0.05)
    assert marker.exists(), process.communicate()
    process.send_signal(signals.Signals(sig))
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    how = "SIGTERM" if sig == 15 else "Ctrl-C"
    assert stderr.strip().splitlines() == [f"error: {word} ({how})"]
    assert "Traceback" not in stderr
    assert sorted(p.name for p in cli.work.iterdir()) in (["model.safetensors"],
                                                          ["model.safetensors", "out.onnx"])


SLOW_LOAD = """
import sys, time
from pathlib import Path
from digitnet import modelfile
marker = Path(sys.argv[1])
def slow(path):
    marker.touch()
    time.sleep(30)
modelfile.load = slow
sys.argv = ["digitnet", *sys.argv[2:]]
from digitnet.cli import main
main()
"""


@pytest.mark.parametrize(("sig", "code", "line"), [
    (2, 130, "error: interrupted (Ctrl-C)"), (15, 143, "error: terminated (SIGTERM)")])
def test_ctrl_c_and_sigterm_say_so_in_one_line(cli: Cli, model: Path, sig: int, code: int,
                                               line: str) -> None:
    import signal as signals
    import time

    marker = cli.work.parent / "loading"
    process = subprocess.Popen([sys.executable, "-c", SLOW_LOAD, str(marker), "info",
                                str(model)], cwd=cli.work, env=cli.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        if marker.exists() or process.poll() is not None:
            break
        time.sleep(0.05)
    process.send_signal(signals.Signals(sig))
    stdout, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr.strip().splitlines(), stdout) == (code, [line], "")


# Output streams and terminals


def _run_with(cli: Cli, *args: str, **popen: Any) -> Outcome:
    env = {**cli.env, **popen.pop("env", {})}
    done = subprocess.run([sys.executable, "-m", "digitnet.cli", *args], cwd=cli.work,
                          env=env, capture_output="stdout" not in popen, text=True,
                          timeout=120, check=False, **popen)
    return Outcome(done.returncode, done.stdout or "", done.stderr or "")


@pytest.mark.parametrize("args", [["info", "model.safetensors"],
                                  ["info", "model.safetensors", "--json"],
                                  ["predict", "model.safetensors", "digit.png"]])
def test_stdout_closed_or_full(cli: Cli, model: Path, args: list[str]) -> None:
    (cli.work / "digit.png").write_bytes(png(one()))
    closed = _run_with(cli, *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       preexec_fn=lambda: os.close(1))
    refused(closed, "standard output is closed")
    with open("/dev/full", "w") as full:
        outcome = _run_with(cli, *args, stdout=full, stderr=subprocess.PIPE)
    refused(outcome, "cannot write to standard output", "No space left on device")


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"}, {"COLUMNS": "0"},
                                 {"COLUMNS": "5"}, {"COLUMNS": "99999999"}],
                         ids=["ascii", "zero width", "five columns", "huge width"])
def test_terminals_that_cannot_show_everything(cli: Cli, env: dict[str, str]) -> None:
    path = cli.work / "model.safetensors"
    path.write_bytes(model_bytes(preset="zéro…", class_names=[f"chiffre {k} é" for k in
                                                              range(10)]))
    (cli.work / "digit.png").write_bytes(png(one()))
    for args in (["info", str(path)], ["predict", str(path), "digit.png"]):
        outcome = _run_with(cli, *args, env=env)
        assert outcome.code == 0, outcome.stderr
        assert "Traceback" not in outcome.stderr and outcome.stderr == ""
        assert "digit.png" in outcome.stdout or "preset" in outcome.stdout


def test_text_from_a_model_file_cannot_drive_the_terminal(cli: Cli) -> None:
    path = cli.work / "model.safetensors"
    path.write_bytes(model_bytes(preset="de\x1b[31mfault\n\rX", digitnet_version="\x1b]0;x\x07",
                                 class_names=[f"c\x1b[2J{k}\u202e" for k in range(10)]))
    (cli.work / "digits.csv").write_text(csv_text())
    (cli.work / "digit.png").write_bytes(png(one()))
    for args in (["info", str(path)], ["evaluate", str(path), "--dataset", "digits.csv"],
                 ["predict", str(path), "digit.png"]):
        outcome = cli.in_process(*args)
        assert outcome.code == 0, outcome.stderr
        for raw in ("\x1b", "\x07", "\r", "\u202e"):
            assert raw not in outcome.stdout, (args, raw)
        assert "\\x1b" in outcome.stdout


def test_a_file_name_with_control_characters_stays_one_line(cli: Cli, model: Path) -> None:
    name = "evil\n\x1b[2Jname.png"
    line = refused(cli.in_process("predict", str(model), name), "no such image file")
    assert "\\n" in line and "\\x1b" in line


# Messages that name the input, the problem and what would work, in one short line

SEMICOLON = csv_text().replace(",", ";")
ZIPPED_CSV = io.BytesIO()
with zipfile.ZipFile(ZIPPED_CSV, "w") as _archive:
    _archive.writestr("train.csv", csv_text())

MESSAGES: dict[str, tuple[dict[str, bytes | str], str, tuple[str, ...]]] = {
    "semicolon CSV": ({"d.csv": SEMICOLON}, "d.csv", ("separated by semicolons", "commas")),
    "tab CSV": ({"d.csv": csv_text().replace(",", "\t")}, "d.csv", ("separated by tabs",)),
    "long unknown header": ({"d.csv": csv_text("x" * 5000)}, "d.csv", ("header starts with",)),
    "zipped CSV": ({"train.csv.zip": ZIPPED_CSV.getvalue()}, "train.csv.zip",
                   ("a zip archive, not an npz file", "train.csv", "unzip")),
    "npz of one scalar": ({"m.npz": npz(x_test=np.uint8(3), y_test=LABELS)}, "m.npz",
                          ("a single number",)),
    "npz of scalar labels": ({"m.npz": npz(x_test=IMAGES, y_test=np.uint8(3))}, "m.npz",
                             ("labels must be one-dimensional", "a single number")),
}


@pytest.mark.parametrize("case", MESSAGES)
def test_messages_that_name_the_problem(cli: Cli, model: Path, case: str) -> None:
    files, given, words = MESSAGES[case]
    write(cli.work, files)
    line = refused(cli.in_process("evaluate", str(model), "--dataset", given), given, *words)
    assert len(line) < 300, line


@pytest.mark.parametrize("name", ["test.csv", "headerless.csv"])
def test_predict_a_stored_digit_of_a_file_without_labels(cli: Cli, model: Path,
                                                         name: str) -> None:
    write(cli.work, {name: csv_text(label=False, header="label" if name == "test.csv"
                                    else None)})
    [result] = worked(cli.in_process("predict", str(model), "--dataset", name, "--index", "1",
                                     "--json"))
    assert "true_label" not in result and 0 <= result["label"] <= 9
    refused(cli.in_process("evaluate", str(model), "--dataset", name), name, "has no labels",
            "label column")


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf", "5"])
def test_gradcheck_threshold_out_of_range(cli: Cli, value: str) -> None:
    refused(cli.in_process("gradcheck", "--threshold", value), "--threshold", "out of range")


def test_gradcheck_failure_says_so(cli: Cli) -> None:
    outcome = cli.in_process("gradcheck", "--threshold", "1e-300")
    assert outcome.code == 1
    assert outcome.stderr.strip().splitlines() == [outcome.stderr.strip()]
    assert "gradient check failed" in outcome.stderr and "--threshold" in outcome.stderr


def test_predict_top_defaults_to_the_classes_there_are(cli: Cli) -> None:
    path = cli.work / "two.safetensors"
    path.write_bytes(model_bytes((784, 10, 2)))
    (cli.work / "digit.png").write_bytes(png(one()))
    outcome = cli.in_process("predict", str(path), "digit.png")
    assert outcome.code == 0, outcome.stderr
    refused(cli.in_process("predict", str(path), "digit.png", "--top", "3"),
            "--top 3 is out of range", "between 1 and 2")


@pytest.mark.parametrize(("host", "words"), [("no such host", ("not an address",)),
                                             ("256.1.1.1", ("not an address",))])
def test_serve_where_it_cannot_listen(cli: Cli, model: Path, host: str,
                                      words: tuple[str, ...]) -> None:
    refused(cli.in_process("serve", str(model), "--host", host, "--data-dir", "nothing"),
            f"--host {host}", *words)


def test_serve_on_a_port_in_use(cli: Cli, model: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        refused(cli.program("serve", str(model), "--port", port, "--data-dir", "nothing"),
                f"--port {port}", "cannot listen there", "--port 0")


def _checkpoint(**info: object) -> bytes:
    header = {"format": "digitnet-checkpoint", "format_version": "2",
              "digitnet": json.dumps(info)}
    return st_save({"params.W1": np.zeros((784, 10), np.float32)}, metadata=header)


@pytest.mark.parametrize(("info", "words"), [
    ({"config": {}}, ("damaged checkpoint metadata", "epoch")),
    ({"config": {"hiddenn": 3}, "epoch": 1, "step": 1, "history": {}, "preprocessing":
      {"scale": 1, "mean": 0, "std": 1}, "loss_watch": {"smoothed": 1, "limit": None}},
     ("unknown config fields hiddenn",)),
    ({"config": [], "epoch": "1"}, ("damaged checkpoint metadata", "config")),
], ids=["no epoch", "unknown field", "config a list"])
def test_resume_from_a_damaged_checkpoint(cli: Cli, info: dict, words: tuple[str, ...]) -> None:
    path = cli.work / "run.ckpt"
    path.write_bytes(_checkpoint(**info))
    refused(cli.in_process("train", "--resume", str(path), "--out", "m.safetensors"),
            str(path), *words)


# Photos of real paper: visible ink is never "blank", and ruling is not read as ink.
def _photo_png(path: Path, grey: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def mnist_model(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from digitnet import runner, training

    model = runner.train_on_dataset(training.make_config("default", seed=3), mnist_dir,
                                    download=False)
    return modelfile.save(model, tmp_path_factory.mktemp("photo") / "default.safetensors")


def _papers() -> dict[str, np.ndarray]:
    from test_photo import SIDE, on_paper, ruled, seven, shadow

    ink = seven()
    gradient = np.linspace(235, 110, SIDE)[:, None] * np.ones((1, SIDE))  # as reported
    return {
        "lined paper": on_paper(ink) * ruled(40, 3, 0.6),
        "strong shadow gradient": np.clip(gradient - (gradient - 25) * ink, 0, 255),
        "lamp shadow": on_paper(ink) * shadow(0.6),
        "squared paper": on_paper(ink) * ruled(30, 2, 0.45, both=True),
    }


@pytest.mark.mnist
@pytest.mark.parametrize("paper", ["lined paper", "strong shadow gradient", "lamp shadow",
                                   "squared paper"])
def test_a_seven_on_real_paper_reads_as_seven(cli: Cli, mnist_model: Path, paper: str) -> None:
    image = _photo_png(cli.work.parent / f"{paper.replace(' ', '-')}.png", _papers()[paper])
    outcome = cli.in_process("predict", str(mnist_model), str(image), "--json")
    assert outcome.code == 0, outcome.stderr
    assert "Traceback" not in outcome.stderr
    (result,) = json.loads(outcome.stdout)
    assert result["label"] == 7, (paper, result)
