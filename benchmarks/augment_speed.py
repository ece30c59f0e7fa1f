"""How fast one epoch of augmentation runs: NumPy, SciPy's map_coordinates and numba.

Each engine deforms the 55,000 training images of one epoch of the ``best`` preset (the same
random draws for all three) and the CPU time of the best of ``--repeat`` runs is printed. The
numba kernel is compiled (or loaded from its cache) before timing.

    python benchmarks/augment_speed.py [--data-dir DIR] [--strength 0.5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from digitnet import augment, datasets


def map_coordinates_engine(images: np.ndarray, aug: augment.Augment,
                           rng: np.random.Generator) -> np.ndarray:
    """The NumPy path with its bilinear gather done by scipy.ndimage.map_coordinates."""
    out = np.empty(images.shape, dtype=np.uint8)
    for start in range(0, len(images), augment.CHUNK):
        part = augment.thickness(images[start:start + augment.CHUNK], aug.thickness, rng)
        draws = augment._draws(len(part), aug, rng)
        ys, xs = augment._affine_coordinates(*draws)
        if aug.elastic:
            ey, ex = augment._upsampled(augment._coarse_offsets(len(part), aug.elastic, rng))
            ys, xs = ys + ey, xs + ex
        zs = np.broadcast_to(np.arange(len(part), dtype=np.float32)[:, None, None], ys.shape)
        warped = ndimage.map_coordinates(part.astype(np.float32), [zs, ys, xs], order=1,
                                         mode="constant", cval=0.0)
        out[start:start + augment.CHUNK] = np.clip(warped + 0.5, 0, 255)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    images, _ = datasets.load("mnist", "train", args.data_dir)
    images = np.ascontiguousarray(images[:55_000])
    aug = augment.recipe(args.strength)
    augment.apply(images[:8], aug, np.random.default_rng(0), engine="numba")  # compile
    engines = {
        "numpy": lambda rng: augment.apply(images, aug, rng, engine="numpy"),
        "scipy map_coordinates": lambda rng: map_coordinates_engine(images, aug, rng),
        "numba": lambda rng: augment.apply(images, aug, rng, engine="numba"),
    }
    results = {}
    for name, run in engines.items():
        times = []
        for _ in range(args.repeat):
            start = time.process_time()
            results[name] = run(np.random.default_rng(1))
            times.append(time.process_time() - start)
        print(f"| {name} | {min(times):.2f} s |")
    reference = results["numpy"].astype(np.int16)
    for name, out in results.items():
        diff = np.abs(out - reference)
        print(f"{name}: max difference from numpy {diff.max()} grey levels, "
              f"{np.mean(diff > 0):.2%} of pixels differ")


if __name__ == "__main__":
    main()
