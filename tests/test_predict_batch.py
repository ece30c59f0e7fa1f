"""`digitnet predict` on many images: it goes on past a refused one, shows and saves inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitnet import imaging, modelfile, network
from digitnet.model import Model, Preprocessing


def program(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "digitnet.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    params = network.init_params((784, 10, 10), np.random.default_rng(5))
    model = modelfile.save(Model(params, Preprocessing(1 / 255, 0.13, 0.31)),
                           tmp_path / "m.safetensors")
    one = np.full((40, 30), 255, dtype=np.uint8)
    one[5:35, 13:17] = 0  # dark ink on white paper
    seven = np.full((50, 50), 250, dtype=np.uint8)
    seven[8:12, 10:40] = 10
    for r in range(12, 42):
        seven[r, 36 - (r - 12) // 2:40 - (r - 12) // 2] = 10
    good, good2 = tmp_path / "good.png", tmp_path / "sub" / "good2.png"
    good2.parent.mkdir()
    Image.fromarray(one).save(good)
    Image.fromarray(seven).save(good2)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a PNG")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((30, 30), 255, dtype=np.uint8)).save(blank)
    return {"model": model, "good": good, "bad": bad, "good2": good2, "blank": blank}


def test_a_refused_image_is_named_and_the_others_predicted(files):
    result = program("predict", files["model"], files["good"], files["bad"], files["good2"])
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{files['good']}: ")
    assert lines[1].startswith(f"{files['good2']}: ")
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert errors[0].startswith("error: ") and str(files["bad"]) in errors[0]


def test_json_lists_the_refused_images_in_order(files):
    result = program("predict", files["model"], files["good"], files["bad"], files["blank"],
                     files["good2"], "--json")
    assert result.returncode == 1
    answers = json.loads(result.stdout)
    assert [a["file"] for a in answers] == [str(files[k]) for k in ("good", "bad", "blank",
                                                                    "good2")]
    assert [a.get("refused", False) for a in answers] == [False, True, True, False]
    assert str(files["bad"]) in answers[1]["error"]
    assert "no digit" in answers[2]["error"] or "blank" in answers[2]["error"] \
        or "empty" in answers[2]["error"], answers[2]["error"]
    for answer in (answers[0], answers[3]):
        assert answer["label"] == int(np.argmax(answer["probabilities"]))
    assert len(result.stderr.strip().splitlines()) == 2  # one line per refused image


def test_all_good_exits_0(files):
    result = program("predict", files["model"], files["good"], files["good2"])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_save_input_writes_the_28x28_the_network_read(files, tmp_path):
    out = tmp_path / "inputs"
    result = program("predict", files["model"], files["good"], files["bad"], files["good2"],
                     "--save-input", out, "--json")
    assert result.returncode == 1
    answers = json.loads(result.stdout)
    assert sorted(p.name for p in out.iterdir()) == ["good.28x28.png", "good2.28x28.png"]
    for answer, key in ((answers[0], "good"), (answers[2], "good2")):
        saved = np.asarray(Image.open(answer["input_png"]))
        np.testing.assert_array_equal(saved, imaging.preprocess(files[key]))
    assert not list(out.glob(".*"))  # no temporary file left


def test_save_input_numbers_files_of_the_same_name(files, tmp_path):
    out = tmp_path / "inputs"
    result = program("predict", files["model"], files["good"], files["good"], "--save-input",
                     out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good-2.28x28.png", "good.28x28.png"]


def test_save_input_refuses_a_file_as_folder(files):
    result = program("predict", files["model"], files["good"], "--save-input", files["good2"])
    assert result.returncode == 1
    assert "is a file" in result.stderr and "Traceback" not in result.stderr


def test_show_draws_the_input(files):
    result = program("predict", files["model"], files["good"], "--show")
    assert result.returncode == 0, result.stderr
    drawing = result.stdout.split("the 28x28 input\n", 1)[1].splitlines()
    assert len(drawing) == 28 and all(len(line) == 56 for line in drawing)
    assert any("@" in line or "%" in line for line in drawing)
    # with --json the drawing goes to stderr and stdout stays JSON
    result = program("predict", files["model"], files["good"], "--show", "--json")
    assert json.loads(result.stdout)[0]["file"] == str(files["good"])
    assert "the 28x28 input" in result.stderr
