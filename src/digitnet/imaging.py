"""Turn a person's image of a digit into a 28x28 MNIST-style input.

MNIST's digits were made by a fixed recipe (LeCun, Cortes and Burges): each digit was scaled to
fit a 20x20 box keeping its aspect ratio, anti-aliased by the scaling, and placed in a 28x28
field so that its centre of mass lies at the centre. The network learned digits made that way,
so a photo, scan or drawing has to be made that way too:

    >>> from digitnet import imaging
    >>> x = imaging.preprocess("my-seven.jpg")   # uint8 (28, 28), light ink on black

:func:`read_image` decodes a file or bytes into a grey array, refusing what is not a single
still image of a sensible size. :func:`to_mnist` applies the recipe to any grey array, one small
step at a time:

1. polarity: MNIST is light ink on a dark background, so dark ink on light paper is inverted;
2. contrast: the background goes to 0 and the ink to 255, faint background noise to 0;
3. crop to the bounding box of the ink;
4. scale so the longer side is 20 pixels, keeping the aspect ratio;
5. place in a 28x28 frame with the centre of mass of the intensities at (14, 14).

:func:`from_values` does the same for the 784 grey values that the drawing page sends.

The image should show one digit on a plain background, cropped to the paper or canvas: the
border of the image is taken to be background.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from digitnet.errors import ImageError
from digitnet.guard import read_file

__all__ = [
    "MAX_BYTES",
    "MAX_PIXELS",
    "MIN_SIDE",
    "from_values",
    "preprocess",
    "read_image",
    "to_mnist",
]

MAX_BYTES = 25_000_000
"""The largest image file accepted, in bytes (25 MB: a large phone photo is under 10 MB)."""

MAX_PIXELS = 50_000_000
"""The most pixels (width x height) an image may have: 50 megapixels.

Checked on the size the file states, before any pixel is decoded, so a small file that claims to
be enormous (a decompression bomb) is refused without allocating it. Pillow's own bomb check
(above about 179 megapixels) stands behind this one.
"""

MIN_SIDE = 8
"""The smallest width and height, in pixels, of an image that can hold a digit."""

FRAME = 28  # MNIST's field, in pixels
BOX = 20  # the digit's longer side within the field
CENTRE = 14.0  # where the centre of mass goes, in pixel-index coordinates (row, column)
WORK_SIDE = 1024  # larger images are first reduced to this longer side: the result is 20 px
MIN_CONTRAST = 32.0  # grey levels between background and ink below which there is no digit

# The still-image formats read. Restricting Pillow to these keeps formats whose readers run
# external programs (EPS runs Ghostscript) or are rarely exercised away from people's files.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")

# Pillow's decoders report damaged data with many exception types, not only OSError.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    EOFError,
    IndexError,
    KeyError,
    struct.error,
    ZeroDivisionError,
    OverflowError,
    MemoryError,
)


def read_image(source: str | os.PathLike[str] | bytes, max_pixels: int = MAX_PIXELS,
               max_side: int | None = None) -> np.ndarray:
    """Read an image file (or its bytes) as a grey array.

    Parameters
    ----------
    source : str, path-like or bytes
        A path to a PNG, JPEG, BMP, GIF, TIFF, WebP or PPM file, or the file's content.
    max_pixels : int
        The most pixels (width x height) accepted, checked on the size the decoder will
        produce, before any pixel is decoded (default :data:`MAX_PIXELS`).
    max_side : int or None
        The widest and tallest image accepted, in pixels, checked the same way.

    Returns
    -------
    numpy.ndarray
        float32 (H, W), values in 0..255, ink in whatever polarity the image has. The EXIF
        orientation is applied. Colour becomes luma (ITU-R 601); 16-bit images are scaled down
        to 0..255. An image with transparency is laid over its own background colour, except
        one that is mostly transparent: there the opacity is the drawing, returned as light
        ink (alpha x 255) on black, whatever colour the ink is.

    Raises
    ------
    ImageError
        Naming the source, when it is missing, a directory, empty, larger than
        :data:`MAX_BYTES`, not an image in a format above, damaged or truncated, larger than
        ``max_pixels`` or ``max_side``, or animated (more than one frame: which frame to read
        is not for digitnet to guess).
    """
    name = _source_name(source)
    data = _read_bytes(source, name)
    with warnings.catch_warnings():
        # Pillow warns about oddities in files it can still read; the checks here decide.
        warnings.simplefilter("ignore")
        image = _open(data, name, max_pixels, max_side)
        image = _decode(image, name)
        return _grey(image, name)


def to_mnist(grey: np.ndarray, source: str = "image") -> np.ndarray:
    """Apply MNIST's recipe to a grey image of one digit.

    Parameters
    ----------
    grey : numpy.ndarray
        (H, W), any real dtype, values in 0..255; either light ink on a dark background or dark
        ink on a light one. H and W must be at least :data:`MIN_SIDE`. An array that is already
        28x28 MNIST-style comes back nearly unchanged.
    source : str
        What the image is called in error messages (a file name, say).

    Returns
    -------
    numpy.ndarray
        uint8 (28, 28): light ink on black, background 0, brightest ink 255, the ink's longer
        side 20 pixels, its centre of mass at (14, 14) in (row, column) pixel indices.

    Raises
    ------
    ImageError
        If the array is not 2-D, too small, not finite or outside 0..255, or holds no digit.
    """
    grey = _validated(grey, source)
    grey = _reduced(grey)
    grey = _light_ink_on_dark(grey)
    ink = _normalise_contrast(grey, source)
    ink = _without_specks(ink)
    ink = _crop_to_ink(ink, source)
    return _centre_by_mass(_fit_box(ink))


def preprocess(source: str | os.PathLike[str] | bytes) -> np.ndarray:
    """Read an image and make it an MNIST-style input: ``to_mnist(read_image(source))``.

    Parameters
    ----------
    source : str, path-like or bytes
        As for :func:`read_image`.

    Returns
    -------
    numpy.ndarray
        uint8 (28, 28), as for :func:`to_mnist`.

    Raises
    ------
    ImageError
        As for :func:`read_image` and :func:`to_mnist`.
    """
    return to_mnist(read_image(source), source=_source_name(source))


def from_values(values: object, source: str = "input") -> np.ndarray:
    """Make an MNIST-style input from 784 grey values, as the drawing page sends them.

    Parameters
    ----------
    values : sequence of numbers or numpy.ndarray
        Flat, 784 values in 0..255: a 28x28 drawing row by row, light ink on dark or dark ink
        on light.
    source : str
        What the values are called in error messages.

    Returns
    -------
    numpy.ndarray
        uint8 (28, 28), as for :func:`to_mnist`.

    Raises
    ------
    ImageError
        If the values are not numbers, not flat, not 784 of them, not finite (naming the first
        bad index), outside 0..255 (naming the first such value and its index), or blank.
    """
    n_pixels = FRAME * FRAME
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:  # ragged nesting
        raise ImageError(f"{source}: expected a list of {n_pixels} numbers ({exc})") from None
    if array.dtype.kind not in "biuf":
        raise ImageError(f"{source}: expected a list of {n_pixels} numbers, got {array.dtype}")
    array = array.astype(np.float64)
    if array.ndim != 1:
        raise ImageError(
            f"{source}: expected a flat list of {n_pixels} grey values, "
            f"got an array of shape {array.shape}"
        )
    if array.size != n_pixels:
        raise ImageError(f"{source}: expected {n_pixels} grey values (28x28), got {array.size}")
    not_finite = np.flatnonzero(~np.isfinite(array))
    if not_finite.size:
        i = int(not_finite[0])
        raise ImageError(f"{source}: the value at index {i} is {array[i]}, not a finite number")
    outside = np.flatnonzero((array < 0) | (array > 255))
    if outside.size:
        i = int(outside[0])
        raise ImageError(f"{source}: the value {array[i]:g} at index {i} is outside 0..255")
    return to_mnist(array.reshape(FRAME, FRAME), source=source)


# Reading


def _source_name(source: object) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "image data"
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    raise TypeError(f"an image source is a path or bytes, not {type(source).__name__}")


def _read_bytes(source: str | os.PathLike[str] | bytes, name: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > MAX_BYTES:
            raise ImageError(f"{name}: {len(data):,} bytes is larger than any image file "
                             f"digitnet reads (the limit is {MAX_BYTES:,} bytes)")
    else:
        data = read_file(source, what="image file", limit=MAX_BYTES, error=ImageError).data
    if not data:
        raise ImageError(f"{name}: the file is empty (0 bytes)")
    return data


def _open(data: bytes, name: str, max_pixels: int, max_side: int | None) -> Image.Image:
    """Identify the image and check the size the decoder will produce, decoding no pixels yet.

    The size is Pillow's own reading of the header (wherever in the file it lies), the one the
    decoder allocates for, not bytes at a fixed offset.
    """
    Image.init()
    formats = [f for f in FORMATS if f in Image.OPEN]
    try:
        image = Image.open(io.BytesIO(data), formats=formats)
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(f"{name}: the image is {width}x{height} = {width * height:,} "
                             f"pixels; the limit is {max_pixels:,}")
        if max_side is not None and max(width, height) > max_side:
            raise ImageError(f"{name}: the image is {width}x{height} pixels; the largest "
                             f"accepted is {max_side}x{max_side}")
        n_frames = getattr(image, "n_frames", 1)
    except Image.DecompressionBombError as exc:
        raise ImageError(_too_many_pixels(name, _claimed(exc))) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{name}: not an image, or not one of the formats read ({', '.join(FORMATS)})"
        ) from None
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{name}: the image is damaged or truncated ({exc})") from None
    # An MPO (many phone cameras' JPEG) holds the photo first, then previews or depth maps.
    if n_frames > 1 and image.format != "MPO":
        raise ImageError(
            f"{name}: the image is animated or has several pages ({n_frames} frames); "
            "save the one to read as a still image"
        )
    return image


def _too_many_pixels(name: str, stated: str) -> str:
    return f"{name}: the image {stated} pixels; the limit is {MAX_PIXELS:,}"


# EXIF orientation (tag 0x0112) and the transposition that makes the image upright.
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says; as it is when the EXIF is unreadable.

    Only the orientation tag is read: ``ImageOps.exif_transpose`` rewrites the whole EXIF
    block, and fails on any other tag stored with an unexpected type.
    """
    try:
        orientation = image.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - a damaged EXIF block only costs the orientation
        return image
    method = _ORIENTATION.get(orientation) if isinstance(orientation, int) else None
    return image.transpose(method) if method is not None else image


def _claimed(bomb: Exception) -> str:
    """What Pillow's bomb check says the image claims: "claims 400,000,000" or "claims more"."""
    found = re.search(r"\((\d+) pixels\)", str(bomb))
    return f"claims {int(found.group(1)):,}" if found else "claims more"


def _decode(image: Image.Image, name: str) -> Image.Image:
    """Decode every pixel now, so damage shows here, and apply the EXIF orientation."""
    try:
        image.load()
        return _upright(image)
    except Image.DecompressionBombError as exc:
        raise ImageError(_too_many_pixels(name, _claimed(exc))) from None
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{name}: the image is damaged or truncated ({exc})") from None


def _grey(image: Image.Image, name: str) -> np.ndarray:
    """Grey levels 0..255 as float32 (H, W), from any of Pillow's modes."""
    mode = image.mode
    try:
        if mode.startswith("I;16"):
            grey = np.asarray(image).astype(np.float32) / 257  # 65535 -> 255
        elif mode == "I":
            # 32-bit integer images come from 16-bit PNG and TIFF files
            grey = np.clip(np.asarray(image), 0, 65535).astype(np.float32) / 257
        elif mode == "F":
            grey = _float_grey(np.asarray(image, dtype=np.float32), name)
        elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
            rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
            grey = _composited(_luma(rgba[..., :3]), rgba[..., 3] / 255)
        elif mode in ("L", "1", "P", "RGB"):
            grey = np.asarray(image.convert("L"), dtype=np.float32)
        else:  # CMYK, YCbCr, LAB, HSV
            grey = _luma(np.asarray(image.convert("RGB"), dtype=np.float32))
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{name}: cannot read colour mode {mode} ({exc})") from None
    return np.ascontiguousarray(grey, dtype=np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    # ITU-R 601-2, the weights Pillow's convert("L") uses
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _float_grey(grey: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(grey).all():
        raise ImageError(f"{name}: the image holds values that are not finite numbers")
    if grey.size and grey.min() >= 0 and grey.max() <= 1:
        return grey * 255  # floating-point images usually hold 0..1
    return np.clip(grey, 0, 255)


def _composited(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten grey (H, W) with opacity alpha (H, W) in 0..1 to one grey image."""
    transparent = alpha < 0.5
    if transparent.mean() > 0.5:
        # Ink drawn on a transparent layer: the opacity is the ink, whatever its colour (the
        # colour hidden under transparent pixels is often the ink's own).
        return alpha * 255
    # Mostly opaque: transparent corners or holes take the image's own background colour.
    background = np.median(grey[~transparent])
    return grey * alpha + background * (1 - alpha)


# MNIST's recipe


def _validated(grey: np.ndarray, source: str) -> np.ndarray:
    array = np.asarray(grey)
    if array.ndim != 2:
        raise ImageError(f"{source}: expected a 2-D grey image, got shape {array.shape}")
    numeric = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    if not (numeric or array.dtype == bool):
        raise ImageError(f"{source}: expected grey levels as numbers, got dtype {array.dtype}")
    height, width = array.shape
    if min(height, width) < MIN_SIDE:
        raise ImageError(
            f"{source}: the image is {width}x{height} pixels, too small to hold a digit "
            f"(it needs at least {MIN_SIDE}x{MIN_SIDE})"
        )
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ImageError(f"{source}: the image holds values that are not finite numbers")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 255:
        raise ImageError(f"{source}: grey levels must lie in 0..255, found {low:g}..{high:g}")
    return array


def _reduced(grey: np.ndarray) -> np.ndarray:
    """Shrink an image whose longer side exceeds WORK_SIDE by area averaging.

    The digit ends up 20 pixels tall, so nothing is lost; averaging also quietens sensor noise.
    """
    height, width = grey.shape
    scale = WORK_SIDE / max(height, width)
    if scale >= 1:
        return grey
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.BOX), np.float32)


def _border(grey: np.ndarray) -> np.ndarray:
    """The pixels of the image's outer ring (about 3% of the shorter side), flat."""
    width = max(1, min(grey.shape) // 32)
    return np.concatenate(
        [
            grey[:width].ravel(),
            grey[-width:].ravel(),
            grey[width:-width, :width].ravel(),
            grey[width:-width, -width:].ravel(),
        ]
    )


def _neighbourhood(grey: np.ndarray, reduce: np.ufunc) -> np.ndarray:
    """reduce (np.maximum or np.minimum) over each pixel's eight neighbours, itself left out.

    Outside the image counts as the level that never wins, so an edge pixel is not its own
    neighbour.
    """
    never = grey.min() if reduce is np.maximum else grey.max()
    padded = np.pad(grey, 1, constant_values=never)
    height, width = grey.shape
    shifts = [
        padded[r : r + height, c : c + width]
        for r in range(3)
        for c in range(3)
        if (r, c) != (1, 1)
    ]
    return reduce.reduce(shifts)


def _supported_range(grey: np.ndarray) -> tuple[float, float]:
    """The darkest and brightest levels that some pixel shares with a neighbour.

    A level one noisy pixel reaches alone does not count, while a stroke's level does, however
    thin the stroke.
    """
    darkest = np.maximum(grey, _neighbourhood(grey, np.minimum)).min()
    brightest = np.minimum(grey, _neighbourhood(grey, np.maximum)).max()
    return float(darkest), float(brightest)


def _light_ink_on_dark(grey: np.ndarray) -> np.ndarray:
    """Invert the image if its background is nearer the bright end of its range.

    The background level is the median of the border; the range is that of levels held by two
    neighbouring pixels, so a single noisy pixel does not decide. This holds for dim photos of
    paper too, where the paper is darker than mid-grey but still lighter than ink.
    """
    background = float(np.median(_border(grey)))
    darkest, brightest = _supported_range(grey)
    if background - darkest > brightest - background:
        return 255 - grey
    return grey


def _normalise_contrast(grey: np.ndarray, source: str) -> np.ndarray:
    """Stretch light-on-dark grey (H, W) so the background is 0 and the ink 255.

    The background level is the median of the border. Its noise is measured on the bright side
    only, where ink lies and where a background clipped at 0 still shows its noise: the upper
    quartile lies 0.674 standard deviations above the median of normal noise. The ink level is
    the median of pixels above the midpoint between background and brightest ink (see
    _supported_range). Levels less than four noise deviations (at least 5% of the contrast, at
    most 40%) above the background become 0: noise, paper texture and uneven lighting go.
    """
    border = _border(grey)
    background = float(np.median(border))
    noise = (float(np.percentile(border, 75)) - background) / 0.674
    contrast = _supported_range(grey)[1] - background
    if contrast < max(MIN_CONTRAST, 3 * noise):
        raise ImageError(_blank(source))
    ink = float(np.median(grey[grey > background + contrast / 2]))
    floor = background + float(np.clip(4 * noise, 0.05 * contrast, 0.4 * contrast))
    return np.clip((grey - floor) * (255 / (ink - floor)), 0, 255)


def _blank(source: str) -> str:
    return f"{source}: no digit found (the image is blank)"


def _without_specks(ink: np.ndarray) -> np.ndarray:
    """Clear ink pixels none of whose eight neighbours is ink, so specks cannot widen the crop."""
    mask = ink > 0
    return np.where(mask & _neighbourhood(mask, np.maximum), ink, 0)


def _crop_to_ink(ink: np.ndarray, source: str) -> np.ndarray:
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        raise ImageError(_blank(source))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _fit_box(ink: np.ndarray) -> np.ndarray:
    """Scale (h, w) ink so its longer side is BOX pixels, keeping the aspect ratio.

    Lanczos resampling anti-aliases as it shrinks. The brightest pixel is brought back to 255,
    since a thin stroke dims when shrunk and MNIST's strokes reach full intensity.
    """
    height, width = ink.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size != (width, height):
        resized = Image.fromarray(ink.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
        ink = np.clip(np.asarray(resized, dtype=np.float32), 0, 255)
    peak = float(ink.max())
    return ink * (255 / peak) if peak > 0 else ink


def _centre_by_mass(ink: np.ndarray) -> np.ndarray:
    """Place (h, w) ink in a 28x28 frame with its centre of mass at (14, 14).

    The shift is rounded to whole pixels and ink that falls outside the frame is cut, as in
    MNIST.
    """
    height, width = ink.shape
    mass = float(ink.sum())
    if mass > 0:
        row = float(ink.sum(axis=1) @ np.arange(height)) / mass
        col = float(ink.sum(axis=0) @ np.arange(width)) / mass
    else:
        row, col = (height - 1) / 2, (width - 1) / 2
    top = int(np.floor(CENTRE - row + 0.5))
    left = int(np.floor(CENTRE - col + 0.5))
    frame = np.zeros((FRAME, FRAME), dtype=np.float32)
    r0, r1 = max(top, 0), min(top + height, FRAME)
    c0, c1 = max(left, 0), min(left + width, FRAME)
    frame[r0:r1, c0:c1] = ink[r0 - top : r1 - top, c0 - left : c1 - left]
    return np.rint(np.clip(frame, 0, 255)).astype(np.uint8)
