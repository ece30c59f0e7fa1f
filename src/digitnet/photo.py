"""Find the ink of a photographed or scanned digit, before MNIST's recipe is applied.

A phone photo of a digit on paper is not a clean drawing: a desk lamp or a hand lays a shadow
across the page, pencil is grey and thin, ruled or squared paper adds lines as dark as the
digit's, the table's edge or a second mark may be in the frame. :func:`prepare` turns such a
grey image into light ink on a black background holding the digit alone, one step at a time:

1. polarity: the image becomes dark ink on light paper (a light-on-dark drawing is inverted);
2. illumination: the paper's brightness is estimated (a rank closing over windows a fifth of
   the image wide, on a reduced copy: strokes vanish, a shadow's edge stays where it is), and
   the image is divided by it, so gradients and shadows vanish and the ink's darkness is
   measured against the paper right under it: a threshold adaptive to the light; under uneven
   light both polarities are tried;
3. ink: a hysteresis threshold keeps faint pixels (pencil, anti-aliased edges) only where they
   connect to pixels at least half as dark as the ink, so noise and faint printing drop out;
4. lines: long thin straight runs across the image (ruling and grid lines) and long regions
   along its border (a table's edge) are removed, and strokes they cut are joined again;
5. the digit: ink is grouped into nearby components, and the group nearest the centre
   (weighted by its size) is kept with the small parts near it; a second group of similar
   size is reported in a note.

:func:`with_mnist_strokes` then widens strokes much thinner than MNIST's (a fine pen, pencil),
measured on the cropped digit.

An image whose darkest ink stands out from the paper by less than :data:`MIN_CONTRAST` grey
levels, or by less than the paper's noise allows, is blank; any ink beyond that is kept, so an
image with visible ink is never called blank because of its lighting or its lines.

Built on ``scipy.ndimage``: its rank filters, separable minimum/maximum filters (linear in the
window length) and connected-component labelling are all this needs, in C, and SciPy is
already installed wherever scikit-learn is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["MIN_CONTRAST", "BlankImage", "Prepared", "prepare", "with_mnist_strokes"]

MIN_CONTRAST = 16.0
"""Grey levels by which ink must be darker than the paper around it (of 255) to be seen."""

WORK_SIDE = 512  # larger images are reduced to this longer side first
COARSE_SIDE = 64  # the paper's brightness is estimated on an image this size (longer side)
PAPER_PERCENTILE = 90  # of the levels in a window: paper, even where ink covers most of it
PAPER_WINDOW = 0.2  # the window's side, as a fraction of the image's shorter side
FLAT_PAPER = 0.15  # a border whose levels vary less than this fraction of the contrast is flat
LINE_IMAGE_SIDE = 64  # images smaller than this are drawings: no lines or edges are looked for
LINE_LENGTH = 0.6  # a ruling line runs across at least this fraction of the image
LINE_THICKNESS = 0.02  # and is at most this fraction of the image thick (a stroke is thicker)
EDGE_SPAN = 0.6  # a region along the border this long (fraction of the side) is the frame's
THIN_STROKE = 0.085  # strokes thinner than this fraction of the digit's side are widened
MNIST_STROKE = 0.115  # to this width, MNIST's median
STROKE_SIDE = 112  # strokes are measured and widened on the digit at this size (longer side)
PART_GAP = 0.15  # a part this near the digit (fraction of its size) belongs to it
SECOND_DIGIT = 0.35  # a group with this fraction of the digit's ink and height is another digit


@dataclass(frozen=True)
class Prepared:
    """The ink found in an image and what was noticed on the way.

    ``ink`` is float32 (H, W), light ink on black: 0 is paper, 255 the ink's typical level.
    ``notes`` are sentences for a person (e.g. that the image seems to hold several digits).
    """

    ink: np.ndarray
    notes: tuple[str, ...] = ()


class BlankImage(ValueError):
    """No ink stands out from the paper."""


def prepare(grey: np.ndarray) -> Prepared:
    """Find the digit's ink in a grey image of paper, a scan or a drawing.

    Parameters
    ----------
    grey : numpy.ndarray
        float32 (H, W), values 0..255, either polarity, H and W at least 8.

    Returns
    -------
    Prepared
        The ink, light on black, (H, W) or smaller (reduced to :data:`WORK_SIDE`), and notes.

    Raises
    ------
    BlankImage
        If no ink stands out from the paper.
    """
    dark_on_light, paper = _oriented(_reduced(grey))
    darkness = np.clip(paper - dark_on_light, 0, None)  # grey levels below the paper
    strength = darkness * (255 / np.maximum(paper, 1))  # the same, relative to the paper
    low, mid, ink_level = _levels(strength, darkness)
    mask = _hysteresis(strength, low, mid)
    notes: list[str] = []
    if min(grey.shape) >= LINE_IMAGE_SIDE:
        mask = _without_lines(mask, strength > mid)
        mask = _without_frame(mask)
    mask, notes = _the_digit(mask, strength > mid)
    ink = np.clip((strength - low) * (255 / max(ink_level - low, 1e-3)), 0, 255)
    # to a hundredth of a grey level, so the two polarities of one drawing give one result
    ink = np.round(np.where(mask, ink, 0), 2).astype(np.float32)
    return Prepared(ink, tuple(notes))


# Polarity and paper


def _reduced(grey: np.ndarray) -> np.ndarray:
    """Shrink an image whose longer side exceeds WORK_SIDE by area averaging: the digit ends
    up 20 pixels tall, and every step below costs in proportion to the pixels."""
    height, width = grey.shape
    scale = WORK_SIDE / max(height, width)
    if scale >= 1:
        return grey
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(grey.astype(np.float32)).resize(
        size, Image.Resampling.BOX), dtype=np.float32)


def _border(grey: np.ndarray) -> np.ndarray:
    """The pixels of the image's outer ring (about 3% of the shorter side), flat."""
    width = max(1, min(grey.shape) // 32)
    return np.concatenate([grey[:width].ravel(), grey[-width:].ravel(),
                           grey[width:-width, :width].ravel(),
                           grey[width:-width, -width:].ravel()])


def _supported(grey: np.ndarray, darkest: bool) -> float:
    """The extreme level that some pixel shares with one of its eight neighbours.

    A level one noisy pixel reaches alone does not count, while a stroke's does, however thin.
    Each neighbouring pair is one of four directions (right, down and the two diagonals).
    """
    pair, extreme = (np.maximum, np.min) if darkest else (np.minimum, np.max)
    pairs = (pair(grey[:, :-1], grey[:, 1:]), pair(grey[:-1], grey[1:]),
             pair(grey[:-1, :-1], grey[1:, 1:]), pair(grey[:-1, 1:], grey[1:, :-1]))
    return float(extreme([extreme(p) for p in pairs]))


def _grown(mask: np.ndarray, size: int, axes: tuple[int, ...] = (0, 1)) -> np.ndarray:
    """Binary dilation by a line or a square of ``size`` pixels, by separable maximum filters
    (their cost does not grow with the size)."""
    out = mask.view(np.uint8)
    for axis in axes:
        out = ndimage.maximum_filter1d(out, size, axis=axis)
    return out.astype(bool)


def _shrunk(mask: np.ndarray, size: int, axes: tuple[int, ...] = (0, 1)) -> np.ndarray:
    """Binary erosion, as :func:`_grown` dilates (outside the image counts as ink)."""
    out = mask.view(np.uint8)
    for axis in axes:
        out = ndimage.minimum_filter1d(out, size, axis=axis, mode="nearest")
    return out.astype(bool)


def _dark_ink_on_light(grey: np.ndarray) -> np.ndarray:
    """The image as dark ink on light paper, inverted if its background is the darker side.

    The background level is the median of the border; the range is that of levels held by
    two neighbouring pixels, so a single noisy pixel does not decide. This holds for dim photos
    of paper and under a shadow too, where the paper is darker than mid-grey but still lighter
    than ink.
    """
    background = float(np.median(_border(grey)))
    darkest, brightest = _supported(grey, True), _supported(grey, False)
    if background - darkest >= brightest - background:
        return grey
    return 255 - grey


def _oriented(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image as dark ink on light paper, and the paper's brightness under each pixel.

    Under uneven light the darkest and brightest levels may be the paper's own (a dark corner,
    a lamp's spot), so there both polarities are flattened, and the other one is taken where its
    ink stands out from its paper half as much again as the first's does.
    """
    first = _dark_ink_on_light(grey)
    paper = _paper(first)
    if paper.min() == paper.max():  # evenly lit: the border decides
        return first, paper
    second = 255 - first
    other = _paper(second)
    if _standing_out(second, other) > 1.5 * _standing_out(first, paper):
        return second, other
    return first, paper


def _standing_out(grey: np.ndarray, paper: np.ndarray) -> float:
    darkness = np.clip(paper - grey, 0, None)
    return _supported(darkness, False) - float(np.median(_border(darkness)))


def _paper(grey: np.ndarray) -> np.ndarray:
    """The paper's brightness under every pixel of dark-on-light grey (H, W).

    Where the border is evenly lit, the paper is one level, the border's median: a drawing or a
    scan. Otherwise a high percentile over windows a quarter of the image wide, computed on a
    reduced copy, smoothed and enlarged again: ink covers less than a tenth of almost any such
    window, shadows and gradients are much wider than a stroke.
    """
    border = _border(grey)
    level = float(np.median(border))
    spread = float(np.percentile(border, 90) - np.percentile(border, 10))
    contrast = level - _supported(grey, True)
    if spread <= FLAT_PAPER * max(contrast, 1.0):
        return np.full(grey.shape, level, dtype=np.float32)
    factor = min(1.0, COARSE_SIDE / max(grey.shape))
    coarse = ndimage.zoom(grey, factor, order=1, grid_mode=True, mode="nearest") \
        if factor < 1 else grey
    window = max(3, round(PAPER_WINDOW * min(coarse.shape)))
    # A closing (the brightest level nearby, then the darkest of those) removes dark strokes
    # narrower than the window and keeps a shadow's edge where it is; the upper percentile in
    # place of the maximum keeps a bright speck from spreading.
    paper = ndimage.percentile_filter(coarse, PAPER_PERCENTILE, size=window, mode="nearest")
    paper = ndimage.minimum_filter(paper, size=window, mode="nearest")
    paper = ndimage.uniform_filter(paper, size=3, mode="nearest")
    if factor < 1:
        zoom = (grey.shape[0] / paper.shape[0], grey.shape[1] / paper.shape[1])
        paper = ndimage.zoom(paper, zoom, order=1, grid_mode=True, mode="nearest")
        paper = paper[:grey.shape[0], :grey.shape[1]]
    # The paper is never darker than the pixel itself where no ink is: bright spots stay paper.
    return np.maximum(paper, 1.0).astype(np.float32)


# Ink


def _levels(strength: np.ndarray, darkness: np.ndarray) -> tuple[float, float, float]:
    """The low and middle thresholds and the typical ink level, in units of ``strength``.

    The paper's noise is measured on the border, where the paper is: the 60th percentile lies
    0.253 standard deviations above the median of normal noise, and a region of something else
    on part of the border (a table's edge) does not move it much. The middle is halfway from
    the paper to the darkest supported ink; the low threshold four noise deviations above the
    paper, at least 5 % and at most 40 % of the contrast.
    """
    border = _border(strength)
    base = float(np.median(border))
    noise = max(0.0, float(np.percentile(border, 60)) - base) / 0.253
    contrast = _supported(strength, False) - base
    seen = _supported(darkness, False) - float(np.median(_border(darkness)))
    if seen < MIN_CONTRAST or contrast < 4 * noise:
        raise BlankImage
    mid = base + contrast / 2
    ink_level = float(np.median(strength[strength > mid]))
    low = base + float(np.clip(4 * noise, 0.05 * contrast, 0.4 * contrast))
    return low, mid, ink_level


def _hysteresis(strength: np.ndarray, low: float, mid: float) -> np.ndarray:
    """Pixels above ``low`` connected to a pair of neighbouring pixels above ``mid``."""
    strong = strength > mid
    strong &= ndimage.uniform_filter(strong.astype(np.float32), 3) > 1.5 / 9  # not alone
    weak = strength > low
    labels, count = ndimage.label(weak, structure=np.ones((3, 3), dtype=bool))
    keep = np.zeros(count + 1, dtype=bool)
    keep[np.unique(labels[strong])] = True
    keep[0] = False
    return keep[labels]


# Lines and edges


def _runs(mask: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Pixels of mask lying on a straight run of at least ``length`` along ``axis``.

    A grey opening with a line, by separable minimum and maximum filters whose cost does not
    grow with the length. The mask is first widened by a pixel across the run, so a line
    tilted by a degree or drawn a little unevenly still counts as one run.
    """
    across = 1 - axis
    wide = ndimage.maximum_filter1d(mask.view(np.uint8), 3, axis=across)
    opened = ndimage.maximum_filter1d(ndimage.minimum_filter1d(wide, length, axis=axis),
                                      length, axis=axis)
    return mask & opened.astype(bool)


def _without_lines(mask: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Remove ruling and grid lines from the ink mask, keeping the strokes that cross them."""
    height, width = mask.shape
    removed = np.zeros_like(mask)
    for axis, length, across in ((1, width, height), (0, height, width)):
        runs = _runs(mask, round(LINE_LENGTH * length), axis)
        labels, count = ndimage.label(runs)
        if not count:
            continue
        areas = ndimage.sum_labels(runs, labels, np.arange(1, count + 1))
        thin = np.zeros(count + 1, dtype=bool)
        thin[1:] = areas / length <= max(2.0, LINE_THICKNESS * across)
        removed |= thin[labels]
    if not removed.any():
        return mask
    kept = mask & ~removed
    # Strokes crossing a line were cut by its thickness: join them across the removed pixels.
    gap = max(3, round(LINE_THICKNESS * min(height, width)) + 2)
    joined = _shrunk(_grown(kept, gap, (0,)), gap, (0,)) | \
        _shrunk(_grown(kept, gap, (1,)), gap, (1,))
    kept |= joined & removed
    return kept if (kept & strong).any() else mask


def _without_frame(mask: np.ndarray) -> np.ndarray:
    """Remove regions that touch the border along much of one side (a table's or page's edge)."""
    height, width = mask.shape
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count < 2:
        return mask
    frame = np.zeros(count + 1, dtype=bool)
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        rows, cols = box
        touches_side = rows.start == 0 or rows.stop == height
        touches_end = cols.start == 0 or cols.stop == width
        long_across = (cols.stop - cols.start) >= EDGE_SPAN * width
        long_down = (rows.stop - rows.start) >= EDGE_SPAN * height
        frame[k] = (touches_side and long_across) or (touches_end and long_down)
    if frame.all() or not frame.any() or frame[1:].all():
        return mask
    return mask & ~frame[labels]


# The digit

def with_mnist_strokes(ink: np.ndarray) -> np.ndarray:
    """Widen strokes much thinner than MNIST's (a fine pen, pencil) by a round grey dilation.

    Parameters
    ----------
    ink : numpy.ndarray
        float32 (h, w), light ink on black, cropped to the digit.

    Returns
    -------
    numpy.ndarray
        float32, the same ink if its strokes are wide enough; else the ink resampled so its
        longer side is :data:`STROKE_SIDE` pixels (plus a margin), with wider strokes.

    A stroke's width is twice its area over its outline. Measured so on MNIST's training digits
    (enlarged eight times, ink above a quarter of full), strokes are 0.085 to 0.16 of the
    digit's longer side (5th to 95th percentile, median 0.115). Thinner than
    :data:`THIN_STROKE`, the ink is widened to :data:`MNIST_STROKE`. Measuring on one size
    makes the width of a 28-pixel drawing and of a photo mean the same.
    """
    height, width = ink.shape
    scale = STROKE_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    resized = np.asarray(Image.fromarray(ink.astype(np.float32)).resize(size, resample),
                         dtype=np.float32)
    mask = resized > 64
    outline = np.count_nonzero(mask & ~_shrunk(mask, 3))
    stroke = 2 * np.count_nonzero(mask) / max(outline, 1)
    if stroke >= THIN_STROKE * STROKE_SIDE:
        return ink
    radius = (MNIST_STROKE * STROKE_SIDE - stroke) / 2
    reach = int(np.ceil(radius))
    yy, xx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    disk = yy ** 2 + xx ** 2 <= radius ** 2 + 0.5
    padded = np.pad(resized, reach)
    return ndimage.grey_dilation(padded, footprint=disk).astype(np.float32)


def _extent(box: tuple[slice, ...] | None) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a box from ndimage.find_objects, bottom and right
    exclusive; an empty box for a label that is absent."""
    if box is None:
        return 0, 0, 0, 0
    rows, cols = box
    return rows.start, rows.stop, cols.start, cols.stop


def _the_digit(mask: np.ndarray, strong: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Keep the group of ink nearest the centre; note a second group the size of a digit."""
    height, width = mask.shape
    reach = max(1, round(0.015 * max(height, width)))
    grown = _grown(mask, 2 * reach + 1)
    labels, count = ndimage.label(grown, structure=np.ones((3, 3), dtype=bool))
    labels = np.where(mask, labels, 0)
    if count <= 1:
        return mask, []
    index = np.arange(1, count + 1)
    mass = ndimage.sum_labels(strong, labels, index)
    mass = np.where(mass > 0, mass, 0.1 * ndimage.sum_labels(mask, labels, index))
    centres = np.array(ndimage.center_of_mass(mask, labels, index)).reshape(-1, 2)
    distance = np.hypot((centres[:, 0] - (height - 1) / 2) / height,
                        (centres[:, 1] - (width - 1) / 2) / width)
    score = mass * np.exp(-(distance / 0.35) ** 2)
    main = int(np.argmax(score))
    boxes = ndimage.find_objects(labels)
    top, bottom, left, right = _extent(boxes[main])
    tall = bottom - top
    digit_sized = [box is not None and k != main and mass[k] >= SECOND_DIGIT * mass[main]
                   and box[0].stop - box[0].start >= 2 * SECOND_DIGIT * tall
                   for k, box in enumerate(boxes)]
    keep = np.zeros(count + 1, dtype=bool)
    keep[main + 1] = True
    # Parts near the digit join it, one after another, until none is near: a 5's bar, a stroke the
    # pencil broke, the tail of a 9 cut off by a ruled line.
    grew = True
    while grew:
        grew = False
        reach_now = PART_GAP * max(bottom - top, right - left)
        for k, box in enumerate(boxes):
            if box is None or keep[k + 1] or digit_sized[k]:
                continue
            t, b, lft, rgt = _extent(box)
            gap = max(t - bottom, top - b, lft - right, left - rgt, 0)
            if gap <= reach_now:
                keep[k + 1] = grew = True
                top, bottom, left, right = min(top, t), max(bottom, b), min(left, lft), \
                    max(right, rgt)
    others = sum(digit_sized)
    notes = []
    if others:
        notes.append(f"the image seems to hold {others + 1} digits; read the one nearest "
                     "the centre")
    return keep[labels], notes
