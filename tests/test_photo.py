"""Tests of digitnet.photo through imaging.to_mnist: photos of paper read as the clean digit.

Every image is drawn here: a digit with Pillow, then the paper (a shadow, ruled or squared
lines, pencil, a table's edge, a second digit) with NumPy.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from digitnet import imaging, photo
from digitnet.errors import ImageError

SIDE = 400


def seven(width: int = 30, box=(130, 80, 270, 320)) -> np.ndarray:
    """Ink coverage 0..1 (SIDE, SIDE) of a '7': a bar along the top, a diagonal down."""
    image = Image.new("L", (SIDE, SIDE), 0)
    left, top, right, bottom = box
    ImageDraw.Draw(image).line([(left, top), (right, top), (left + (right - left) // 3, bottom)],
                               255, width)
    return np.asarray(image, dtype=np.float64) / 255


def three(width: int = 30, box=(130, 80, 270, 320)) -> np.ndarray:
    image = Image.new("L", (SIDE, SIDE), 0)
    left, top, right, bottom = box
    middle = (top + bottom) // 2
    draw = ImageDraw.Draw(image)
    draw.arc((left, top, right, middle), 200, 90, 255, width)
    draw.arc((left, middle, right, bottom), 270, 160, 255, width)
    return np.asarray(image, dtype=np.float64) / 255


def on_paper(ink: np.ndarray, paper: float | np.ndarray = 235.0, pen: float = 25.0
             ) -> np.ndarray:
    """Dark ink on paper: grey (SIDE, SIDE) in 0..255; ``paper`` may vary across the page."""
    return np.clip(paper - (paper - pen) * ink, 0, 255)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """The best correlation of a with b shifted by up to a pixel each way: a stroke that lies
    on a ruled line loses an edge, which moves the centre of mass by a pixel."""
    return max(float(np.corrcoef(a.ravel().astype(float),
                                 np.roll(b, (dy, dx), axis=(0, 1)).ravel().astype(float))[0, 1])
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def clean(ink: np.ndarray) -> np.ndarray:
    return imaging.to_mnist(on_paper(ink))


def shadow(depth: float = 0.6) -> np.ndarray:
    """A lamp's soft shadow over the left half of the page: the light multiplies the paper."""
    x = np.linspace(-1, 1, SIDE)[None, :]
    return np.repeat(1 - depth / (1 + np.exp(x / 0.08)), SIDE, axis=0)


def ruled(spacing: int, width: int, darkness: float, both: bool = False) -> np.ndarray:
    """Printed lines as a factor on the paper: 1 - darkness on the lines."""
    on = (np.arange(SIDE) % spacing) < width
    lines = on[:, None] | (on[None, :] if both else np.zeros((1, SIDE), dtype=bool))
    return 1 - darkness * lines


@pytest.mark.parametrize("digit", [seven, three])
def test_a_shadow_across_the_digit_vanishes(digit):
    ink = digit()
    light = shadow()
    grey = on_paper(ink) * light
    assert correlation(imaging.to_mnist(grey), clean(ink)) > 0.95


def test_a_gradient_from_bright_to_dim_paper_is_not_blank():
    # a clearly visible 3 under a grey gradient: paper 240 at the top to 90 at the bottom
    paper = np.linspace(240, 90, SIDE)[:, None] * np.ones((1, SIDE))
    grey = np.clip(paper - 60 * three(), 0, 255)
    assert correlation(imaging.to_mnist(grey), clean(three())) > 0.9


@pytest.mark.parametrize("digit", [seven, three])
def test_lined_paper_lines_are_removed(digit):
    # lines as dark as a pen's, 40 px apart, crossing the digit several times
    ink = digit()
    grey = on_paper(ink) * ruled(40, 3, 0.6)
    out = imaging.to_mnist(grey)
    assert correlation(out, clean(ink)) > 0.9


@pytest.mark.parametrize("digit", [seven, three])
def test_squared_paper_grid_is_removed(digit):
    ink = digit()
    grey = on_paper(ink) * ruled(30, 2, 0.45, both=True)
    assert correlation(imaging.to_mnist(grey), clean(ink)) > 0.9


@pytest.mark.parametrize("digit", [seven, three])
def test_pencil_grey_thin_and_broken_reads_as_the_digit(digit):
    rng = np.random.default_rng(0)
    ink = digit(width=9)
    skips = rng.random((SIDE // 8, SIDE // 8)) > 0.15  # the graphite skips an eighth
    ink = ink * np.kron(skips, np.ones((8, 8)))
    grey = on_paper(ink, paper=225, pen=160) + rng.normal(0, 3, ink.shape)  # grey, grainy
    out = imaging.to_mnist(np.clip(grey, 0, 255))
    assert correlation(out, clean(digit())) > 0.85


def test_thin_strokes_are_widened_like_mnist_and_wide_ones_kept():
    thin, wide = imaging.to_mnist(on_paper(seven(width=8))), clean(seven(width=30))
    assert correlation(thin, wide) > 0.9
    # the thin stroke is widened, not left at a pixel's width
    assert np.count_nonzero(thin > 128) >= 0.7 * np.count_nonzero(wide > 128)


def test_a_table_edge_in_the_frame_is_removed():
    ink = seven()
    grey = on_paper(ink)
    grey[:, :40] = 60  # the dark table beyond the page's left edge
    assert correlation(imaging.to_mnist(grey), clean(ink)) > 0.95


def test_a_small_mark_away_from_the_digit_is_left_out_without_a_note():
    ink = seven()
    ink[20:32, 340:370] = 1  # a short dash near the corner
    out, notes = imaging.to_mnist_with_notes(on_paper(ink))
    assert correlation(out, clean(seven())) > 0.95
    assert notes == ()


def test_two_digits_get_a_note_and_the_one_nearest_the_centre_is_read():
    left = seven(box=(20, 80, 150, 320))
    centre = three(box=(180, 60, 330, 340))
    out, notes = imaging.to_mnist_with_notes(on_paper(np.maximum(left, centre)),
                                             source="two.png")
    assert len(notes) == 1 and notes[0].startswith("two.png: ") and "2 digits" in notes[0]
    assert correlation(out, clean(three(box=(180, 60, 330, 340)))) > 0.95


def test_one_digit_gets_no_note():
    assert imaging.to_mnist_with_notes(on_paper(three()))[1] == ()
    assert imaging.to_mnist_with_notes(on_paper(three()) * shadow())[1] == ()


def test_paper_alone_is_blank_even_under_a_shadow():
    with pytest.raises(ImageError, match="blank"):
        imaging.to_mnist(np.full((SIDE, SIDE), 235.0) * shadow())
    with pytest.raises(ImageError, match="blank"):
        imaging.to_mnist(np.linspace(240, 60, SIDE)[:, None] * np.ones((1, SIDE)))


@st.composite
def visible_ink_on_uneven_paper(draw) -> np.ndarray:
    """A stroke darker than the paper around it by at least 3 * MIN_CONTRAST, on paper that a
    shadow or gradient makes uneven, with some noise."""
    side = draw(st.integers(64, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    paper = draw(st.floats(120, 250))
    angle = draw(st.floats(0, 2 * np.pi))
    yy, xx = np.mgrid[0:side, 0:side] / side - 0.5
    light = 1 - draw(st.floats(0, 0.5)) * (np.cos(angle) * xx + np.sin(angle) * yy + 0.5)
    contrast = draw(st.floats(3 * photo.MIN_CONTRAST, 200))
    width = draw(st.integers(max(2, side // 40), max(3, side // 8)))
    top, left = draw(st.integers(side // 5, side // 2)), draw(st.integers(side // 5, side // 2))
    length = draw(st.integers(side // 5, side // 3))
    ink = np.zeros((side, side))
    if draw(st.booleans()):
        ink[top:top + length, left:left + width] = 1  # a 1
    else:
        ink[top:top + width, left:left + length] = 1  # a dash
    grey = (paper - np.minimum(contrast, paper) * ink) * light
    return np.clip(grey + rng.normal(0, draw(st.sampled_from([0, 2, 5])), grey.shape), 0, 255)


@settings(max_examples=60, deadline=None)
@given(visible_ink_on_uneven_paper())
def test_visible_ink_is_never_blank(grey):
    out = imaging.to_mnist(grey)
    assert out.shape == (28, 28) and out.max() == 255


def test_predict_shows_the_note_for_two_digits(tmp_path):
    from typer.testing import CliRunner

    from digitnet import modelfile, network
    from digitnet.cli import app
    from digitnet.model import Model, Preprocessing

    params = network.init_params((784, 10, 10), np.random.default_rng(0))
    model = modelfile.save(Model(params, Preprocessing(1 / 255, 0.13, 0.31), {}),
                           tmp_path / "m.safetensors")
    two = tmp_path / "two.png"
    grey = on_paper(np.maximum(seven(box=(20, 80, 150, 320)), three(box=(180, 60, 330, 340))))
    Image.fromarray(grey.astype(np.uint8)).save(two)
    one = tmp_path / "one.png"
    Image.fromarray(on_paper(three()).astype(np.uint8)).save(one)
    result = CliRunner().invoke(app, ["predict", str(model), str(two), str(one), "--json"])
    assert result.exit_code == 0, result.output
    answers = {a["file"]: a for a in json.loads(result.stdout)}
    assert "2 digits" in answers[str(two)]["notes"][0]
    assert "notes" not in answers[str(one)]
    result = CliRunner().invoke(app, ["predict", str(model), str(two)])
    assert result.exit_code == 0 and "note: " in result.stdout and "2 digits" in result.stdout
