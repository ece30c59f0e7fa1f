"""Tests of digitnet.imaging: a person's image becomes a 28x28 MNIST-style input.

Every image is drawn here, with NumPy and Pillow, and written under tmp_path.
"""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from digitnet import imaging
from digitnet.errors import ImageError

FUZZ_EXAMPLES = int(os.environ.get("DIGITNET_FUZZ_EXAMPLES", "500"))


# Drawing


def draw_seven(size=(400, 400), box=(100, 60, 300, 340), ink=0, paper=255, width=24):
    """A '7' in a grey (L) image: a bar along the top of box, a diagonal to its bottom."""
    image = Image.new("L", size, paper)
    left, top, right, bottom = box
    draw = ImageDraw.Draw(image)
    draw.line([(left, top), (right, top), (left + (right - left) // 3, bottom)], ink, width)
    return image


def draw_zero(size=(400, 400), box=(120, 60, 280, 340), ink=0, paper=255, width=24):
    image = Image.new("L", size, paper)
    ImageDraw.Draw(image).ellipse(box, outline=ink, width=width)
    return image


def photo_like(digit: Image.Image, seed=0) -> np.ndarray:
    """Add a lighting gradient and sensor noise to a grey image; float (H, W) in 0..255."""
    rng = np.random.default_rng(seed)
    grey = np.asarray(digit, dtype=np.float64)
    height, width = grey.shape
    gradient = np.linspace(-25, 25, width)[None, :] + np.linspace(-10, 10, height)[:, None]
    return np.clip(grey + gradient + rng.normal(0, 6, grey.shape), 0, 255)


def save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# Measuring


def ink_box(x: np.ndarray) -> tuple[int, int]:
    """(height, width) of the bounding box of the non-zero pixels."""
    rows = np.flatnonzero(x.any(axis=1))
    cols = np.flatnonzero(x.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    mass = x.astype(np.float64)
    total = mass.sum()
    return (
        float(mass.sum(axis=1) @ np.arange(x.shape[0]) / total),
        float(mass.sum(axis=0) @ np.arange(x.shape[1]) / total),
    )


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def assert_mnist_like(x: np.ndarray) -> None:
    """28x28 uint8, longer side 20 (+-1), centred by mass, dark background, bright ink."""
    assert x.shape == (28, 28)
    assert x.dtype == np.uint8
    assert max(ink_box(x)) in (19, 20, 21)
    row, col = centre_of_mass(x)
    assert abs(row - 14) <= 1 and abs(col - 14) <= 1
    assert np.median(x) == 0
    assert x.max() == 255
    assert (x > 128).sum() >= 15


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The '7' as a clean light-on-dark drawing, made MNIST-style."""
    return imaging.to_mnist(np.asarray(draw_seven(ink=255, paper=0)))


# The recipe


def test_clean_drawing_is_mnist_like(reference):
    assert_mnist_like(reference)
    # the 7 is taller than wide: its height is the longer side
    height, width = ink_box(reference)
    assert height == 20 and width < 20


def test_off_centre_digit_is_centred(reference):
    corner = draw_seven(size=(800, 600), box=(20, 20, 220, 300), ink=255, paper=0)
    out = imaging.to_mnist(np.asarray(corner))
    assert_mnist_like(out)
    assert correlation(out, reference) > 0.9


def test_dark_ink_on_white_paper_is_inverted(reference):
    out = imaging.to_mnist(np.asarray(draw_seven(ink=0, paper=255)))
    assert_mnist_like(out)
    assert correlation(out, reference) > 0.95


def test_large_noisy_photo(tmp_path, reference):
    digit = draw_seven(size=(1200, 900), box=(400, 150, 800, 750), ink=40, paper=200, width=50)
    grey = photo_like(digit)
    out = imaging.to_mnist(grey)
    assert_mnist_like(out)
    assert correlation(out, reference) > 0.8
    # the same photo as a JPEG file
    path = save(Image.fromarray(grey.astype(np.uint8)), tmp_path / "photo.jpg", quality=85)
    assert correlation(imaging.preprocess(path), out) > 0.95


def test_dim_paper_darker_than_mid_grey_is_still_inverted():
    out = imaging.to_mnist(photo_like(draw_zero(ink=20, paper=110)))
    assert_mnist_like(out)
    # a '0' is hollow: its middle stays dark
    assert out[12:16, 12:16].max() < 64


def mnist_style_six() -> np.ndarray:
    """A '6' made as MNIST's digits were: drawn large, shrunk to 20 rows, centred by mass."""
    big = Image.new("L", (140, 200), 0)
    draw = ImageDraw.Draw(big)
    draw.ellipse((0, 80, 139, 199), outline=255, width=26)
    draw.arc((0, 0, 240, 220), start=180, end=255, fill=255, width=26)
    patch = np.asarray(big.resize((14, 20), Image.Resampling.BOX), dtype=np.float64)
    assert ink_box(patch) == (20, 14)
    row, col = centre_of_mass(patch)
    top, left = round(14 - row), round(14 - col)
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[top : top + 20, left : left + 14] = patch
    return digit


def test_mnist_style_digit_stays_nearly_unchanged():
    digit = mnist_style_six()
    out = imaging.to_mnist(digit)
    assert correlation(out, digit) > 0.95
    assert np.abs(out.astype(int) - digit).mean() < 5


def test_to_mnist_is_nearly_idempotent(reference):
    again = imaging.to_mnist(reference)
    assert correlation(again, reference) > 0.95


def test_polarity_does_not_matter():
    dark_on_light = imaging.to_mnist(np.asarray(draw_zero(ink=30, paper=230)))
    light_on_dark = imaging.to_mnist(np.asarray(draw_zero(ink=220, paper=20)))
    assert correlation(dark_on_light, light_on_dark) > 0.95


def test_tall_thin_one_stays_thin():
    one = Image.new("L", (400, 400), 255)
    ImageDraw.Draw(one).rectangle((185, 50, 215, 350), fill=0)
    out = imaging.to_mnist(np.asarray(one))
    height, width = ink_box(out)
    assert height == 20
    assert width <= 4


def test_wide_digit_fits_by_width():
    dash = Image.new("L", (400, 200), 0)
    ImageDraw.Draw(dash).rectangle((50, 80, 350, 130), fill=255)
    height, width = ink_box(imaging.to_mnist(np.asarray(dash)))
    assert width == 20
    assert 2 <= height <= 5


def test_specks_do_not_widen_the_crop(reference):
    grey = np.asarray(draw_seven(ink=255, paper=0)).copy()
    grey[5, 5] = grey[390, 395] = grey[200, 10] = 255
    assert correlation(imaging.to_mnist(grey), reference) > 0.95


def test_already_28x28_and_integer_or_float_input(reference):
    small = np.asarray(draw_seven(ink=255, paper=0).resize((28, 28), Image.Resampling.BOX))
    for dtype in (np.uint8, np.int64, np.float32, np.float64):
        assert_mnist_like(imaging.to_mnist(small.astype(dtype)))


# Formats


def _formats(tmp_path: Path) -> dict[str, Path]:
    seven = draw_seven(ink=0, paper=255)
    rgb = Image.merge("RGB", [seven.point(lambda v: min(255, v + 40)), seven, seven])
    # transparent background whose hidden colour is the ink's own, so only alpha tells them apart
    alpha = seven.point(lambda v: 255 - v)
    dark_rgba = Image.merge("RGBA", [Image.new("L", seven.size, 0)] * 3 + [alpha])
    light_rgba = Image.merge("RGBA", [Image.new("L", seven.size, 255)] * 3 + [alpha])
    sixteen = Image.fromarray(np.asarray(seven, dtype=np.uint16) * 257)
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    paths = {
        "grey.png": save(seven, tmp_path / "grey.png"),
        "grey.jpg": save(seven, tmp_path / "grey.jpg", quality=90),
        "rgb.png": save(rgb, tmp_path / "rgb.png"),
        "rgb.jpg": save(rgb, tmp_path / "rgb.jpg", quality=90),
        "rgb.bmp": save(rgb, tmp_path / "rgb.bmp"),
        "grey.bmp": save(seven, tmp_path / "grey.bmp"),
        "rgb.tiff": save(rgb, tmp_path / "rgb.tiff"),
        "bilevel.png": save(seven.convert("1"), tmp_path / "bilevel.png"),
        "dark-ink-transparent.png": save(dark_rgba, tmp_path / "dark-ink-transparent.png"),
        "light-ink-transparent.png": save(light_rgba, tmp_path / "light-ink-transparent.png"),
        "grey-alpha.png": save(dark_rgba.convert("LA"), tmp_path / "grey-alpha.png"),
        "palette.png": save(palette, tmp_path / "palette.png"),
        "palette.gif": save(palette, tmp_path / "palette.gif"),
        "16-bit.png": save(sixteen, tmp_path / "16-bit.png"),
        "transparent.gif": save(seven.convert("P"), tmp_path / "transparent.gif", transparency=255),
    }
    return paths


FORMAT_NAMES = [
    "grey.png",
    "grey.jpg",
    "rgb.png",
    "rgb.jpg",
    "rgb.bmp",
    "grey.bmp",
    "rgb.tiff",
    "bilevel.png",
    "dark-ink-transparent.png",
    "light-ink-transparent.png",
    "grey-alpha.png",
    "palette.png",
    "palette.gif",
    "16-bit.png",
    "transparent.gif",
]


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_formats(tmp_path, reference, name):
    path = _formats(tmp_path)[name]
    out = imaging.preprocess(path)
    assert_mnist_like(out)
    assert correlation(out, reference) > 0.9
    # bytes and str paths give the same
    assert np.array_equal(imaging.preprocess(path.read_bytes()), out)
    assert np.array_equal(imaging.preprocess(str(path)), out)


def test_sixteen_bit_is_scaled_to_0_255(tmp_path):
    levels = np.tile(np.arange(0, 256, dtype=np.uint16), (16, 1))
    path = save(Image.fromarray(levels * 257), tmp_path / "ramp.png")
    grey = imaging.read_image(path)
    assert grey.dtype == np.float32
    np.testing.assert_allclose(grey, levels, atol=0.01)


def test_read_image_keeps_polarity_and_levels(tmp_path):
    seven = draw_seven(ink=10, paper=240)
    grey = imaging.read_image(save(seven, tmp_path / "seven.png"))
    assert grey.shape == (400, 400)
    np.testing.assert_array_equal(grey, np.asarray(seven))


def test_transparent_ink_reads_as_light_on_black(tmp_path):
    path = _formats(tmp_path)["dark-ink-transparent.png"]
    grey = imaging.read_image(path)
    assert np.median(grey) == 0
    assert grey.max() == 255


def test_transparent_corners_take_the_background_colour(tmp_path):
    seven = draw_seven(ink=0, paper=255).convert("RGBA")
    ImageDraw.Draw(seven).rectangle((0, 0, 40, 40), fill=(0, 0, 0, 0))
    grey = imaging.read_image(save(seven, tmp_path / "corner.png"))
    assert grey[:40, :40].min() == 255


def test_exif_orientation_is_applied(tmp_path):
    wide = draw_seven(size=(400, 300), box=(100, 40, 300, 260), ink=0, paper=255)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    path = save(wide, tmp_path / "rotated.jpg", exif=exif, quality=95)
    grey = imaging.read_image(path)
    assert grey.shape == (400, 300)
    rotated = np.asarray(wide.transpose(Image.Transpose.ROTATE_270), dtype=np.float32)
    assert np.abs(grey - rotated).mean() < 3


# Bad input


def _bomb(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height, its CRC patched to match."""
    data = bytearray(png_bytes(Image.new("L", (8, 8), 0)))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _truncated_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)
    data = png_bytes(Image.fromarray(noise))
    return data[: len(data) // 2]


def _animated_gif() -> bytes:
    frames = [draw_seven(ink=0, paper=255), draw_zero(ink=0, paper=255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def _animated_png() -> bytes:
    frames = [draw_seven(ink=0, paper=255), draw_zero(ink=0, paper=255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


BAD_FILES = {
    "notes.txt": (b"seven, in words\n", r"not an image"),
    "empty.png": (b"", r"empty \(0 bytes\)"),
    "truncated.png": (_truncated_png(), r"damaged or truncated"),
    "one-pixel.png": (png_bytes(Image.new("L", (1, 1), 0)), r"1x1 pixels.*at least 8x8"),
    "thin.png": (png_bytes(Image.new("L", (100, 5), 0)), r"100x5 pixels.*too small"),
    "bomb.png": (_bomb(20_000, 20_000), r"pixels; the limit is 50,000,000"),
    "large.png": (_bomb(8_000, 8_000), r"8000x8000 = 64,000,000 pixels; the limit"),
    "animated.gif": (_animated_gif(), r"animated.*2 frames"),
    "animated.png": (_animated_png(), r"animated.*2 frames"),
    "white.png": (
        png_bytes(Image.new("L", (64, 64), 255)),
        r"no digit found \(the image is blank\)",
    ),
    "black.png": (png_bytes(Image.new("L", (64, 64), 0)), r"no digit found"),
    "grey.jpg": (None, r"no digit found"),
    "transparent.png": (png_bytes(Image.new("RGBA", (64, 64), (0, 0, 0, 0))), r"no digit found"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_are_refused_by_name(tmp_path, name):
    content, problem = BAD_FILES[name]
    path = tmp_path / name
    if content is None:
        Image.new("RGB", (300, 200), (120, 120, 120)).save(path, quality=80)
    else:
        path.write_bytes(content)
    start = time.perf_counter()
    with pytest.raises(ImageError, match=problem) as caught:
        imaging.preprocess(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert time.perf_counter() - start < 2  # a bomb is refused before it is decoded


def test_bad_bytes_are_refused_as_image_data():
    with pytest.raises(ImageError, match=r"^image data: not an image"):
        imaging.preprocess(b"GIF89a, or not")
    with pytest.raises(ImageError, match=r"^image data: the file is empty"):
        imaging.read_image(b"")


def test_file_over_the_byte_limit(tmp_path, monkeypatch):
    path = save(draw_seven(), tmp_path / "seven.png")
    monkeypatch.setattr(imaging, "MAX_BYTES", 100)
    with pytest.raises(ImageError, match=rf"^{path}: .*larger than any image file digitnet "
                                         r"reads .the limit is 100 bytes"):
        imaging.preprocess(path)
    with pytest.raises(ImageError, match=r"larger than any image file digitnet reads"):
        imaging.preprocess(path.read_bytes())


def test_directory_and_missing_path(tmp_path):
    with pytest.raises(ImageError, match=rf"^{tmp_path}: is a directory"):
        imaging.preprocess(tmp_path)
    missing = tmp_path / "nowhere.png"
    with pytest.raises(ImageError, match=rf"^{missing}: no such image file"):
        imaging.preprocess(missing)


def test_source_of_the_wrong_type():
    with pytest.raises(TypeError, match="path or bytes"):
        imaging.read_image(12)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("grey", "problem"),
    [
        (np.zeros((28, 28, 3)), r"2-D grey image, got shape \(28, 28, 3\)"),
        (np.zeros((1, 1)), r"1x1 pixels"),
        (np.full((28, 28), np.nan), r"not finite"),
        (np.full((28, 28), 300.0), r"0\.\.255, found 300\.\.300"),
        (np.full((28, 28), -1), r"0\.\.255, found -1\.\.-1"),
        (np.full((28, 28), "a"), r"dtype"),
        (np.full((28, 28), 17.0), r"blank"),
    ],
)
def test_to_mnist_refuses(grey, problem):
    with pytest.raises(ImageError, match=rf"^scan\.png: .*{problem}"):
        imaging.to_mnist(grey, source="scan.png")


def test_noise_alone_is_blank():
    noise = np.random.default_rng(1).normal(128, 4, (200, 200)).clip(0, 255)
    with pytest.raises(ImageError, match="blank"):
        imaging.to_mnist(noise)


# Values from the drawing page


def test_from_values_light_and_dark(reference):
    canvas = np.asarray(draw_seven(ink=255, paper=0).resize((28, 28), Image.Resampling.BOX))
    light = imaging.from_values(canvas.ravel().tolist())
    dark = imaging.from_values((255 - canvas).ravel())
    assert_mnist_like(light)
    assert correlation(light, reference) > 0.9
    assert correlation(light, dark) > 0.99


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ([0] * 783, r"expected 784 grey values \(28x28\), got 783"),
        ([0] * 785, r"got 785"),
        ([[0] * 28] * 28, r"flat list of 784 grey values, got an array of shape \(28, 28\)"),
        ([0] * 10 + [float("nan")] + [0] * 773, r"index 10 is nan, not a finite number"),
        ([0] * 783 + [float("inf")], r"index 783 is inf"),
        ([0] * 5 + [256] + [0] * 778, r"value 256 at index 5 is outside 0\.\.255"),
        ([-0.5] + [0] * 783, r"value -0\.5 at index 0 is outside"),
        (["x"] * 784, r"expected a list of 784 numbers"),
        ([None] * 784, r"expected a list of 784 numbers"),
        ([0] * 784, r"no digit found \(the image is blank\)"),
        ([255] * 784, r"no digit found"),
    ],
)
def test_from_values_refuses(values, problem):
    with pytest.raises(ImageError, match=rf"^canvas: .*{problem}"):
        imaging.from_values(values, source="canvas")


# Properties


def _seed_files() -> list[bytes]:
    seven = draw_seven(size=(48, 40), box=(10, 6, 38, 34), ink=0, paper=255, width=4)
    files = []
    for fmt, image in [
        ("PNG", seven),
        ("PNG", seven.convert("RGBA")),
        ("JPEG", seven),
        ("BMP", seven),
        ("GIF", seven),
        ("TIFF", seven),
        ("WEBP", seven),
        ("PPM", seven),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        files.append(buffer.getvalue())
    return files + [_animated_gif()[:3000], _bomb(9000, 9000)]


SEED_FILES = _seed_files()


@st.composite
def damaged_images(draw) -> bytes:
    """A small valid image file with some bytes changed, and perhaps cut short."""
    data = bytearray(draw(st.sampled_from(SEED_FILES)))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=512), damaged_images()))
def test_any_bytes_raise_only_image_error(data):
    try:
        out = imaging.preprocess(data)
    except ImageError:
        return
    assert out.shape == (28, 28) and out.dtype == np.uint8


@st.composite
def images_with_ink(draw) -> np.ndarray:
    """A background level with noise, and a block of ink that stands out, away from the edge."""
    height, width = draw(st.integers(8, 60)), draw(st.integers(8, 60))
    background = draw(st.integers(0, 255))
    ink = draw(st.integers(0, 255).filter(lambda v: abs(v - background) >= 64))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    grey = background + rng.normal(0, draw(st.sampled_from([0, 1, 4])), (height, width))
    top, left = draw(st.integers(1, height - 3)), draw(st.integers(1, width - 3))
    bottom = draw(st.integers(top + 2, min(height - 1, top + height // 2 + 2)))
    right = draw(st.integers(left + 2, min(width - 1, left + width // 2 + 2)))
    grey[top:bottom, left:right] = ink
    return np.clip(grey, 0, 255)


@settings(max_examples=200, deadline=None)
@given(images_with_ink())
def test_images_with_ink_always_give_28x28(grey):
    out = imaging.to_mnist(grey)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out.max() == 255
    row, col = centre_of_mass(out)
    assert abs(row - 14) <= 1 and abs(col - 14) <= 1
