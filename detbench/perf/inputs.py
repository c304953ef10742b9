"""Generated inputs of ``detbench bench``: distinct PNG images, and folder suites made of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_images(folder: Path, n: int, size: int, seed: int = 0, prefix: str = "img") -> list[str]:
    """``n`` distinct PNGs (a gradient, a disc and noise) of ``size`` px in ``folder``.

    Args:
        folder: where to write them (created if missing).
        n: how many.
        size: the side of each square image in pixels.
        seed: seeds the images.
        prefix: file name prefix (``<prefix>_000000.png`` ...).

    Returns:
        The file names, in order.
    """
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    names = []
    for i in range(n):
        base = (xx * rng.uniform(0.2, 1.0) + yy * rng.uniform(0.2, 1.0))[..., None] * rng.uniform(0.3, 1.0, 3)
        cx, cy, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 8, size / 3)]
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r)[..., None] * rng.uniform(-80, 80, 3)
        img = base + disc + rng.normal(0, rng.uniform(2, 30), (size, size, 3))
        name = f"{prefix}_{i:06d}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / name)
        names.append(name)
    return names


def write_suite(root: Path, n: int, size: int, train_per_class: int, seed: int = 0) -> None:
    """A folder suite of ``n`` images: ``gen0/train/{0_real,1_fake}`` and ``gen<k>/test/{0_real,1_fake}``.

    ``train_per_class`` images per label go to ``gen0/train``; the rest are spread over the test folders of
    ``gen0`` to ``gen7``.

    Args:
        root: the suite root.
        n: images in all.
        size: image side in pixels.
        train_per_class: training images per label.
        seed: seeds the images.
    """
    n_test = n - 2 * train_per_class
    for label in ("0_real", "1_fake"):
        write_images(root / "gen0" / "train" / label, train_per_class, size, seed=seed + len(label))
    for k in range(8):
        for j, label in enumerate(("0_real", "1_fake")):
            count = n_test * (2 * k + j + 1) // 16 - n_test * (2 * k + j) // 16
            write_images(root / f"gen{k}" / "test" / label, count, size, seed=seed + 100 + 2 * k + j)


def write_test_set(root: Path, n: int, seed: int = 0, sizes: tuple[int, int] = (160, 320)) -> list[str]:
    """A test set of ``n`` images in ``root/{0_real,1_fake}`` (alternating), of mixed sizes and formats.

    Each image is a random width and height in ``sizes`` (non-square; some below a 224 crop, some above), saved as
    PNG or as JPEG (quality 90) in turn: the decode paths a real test set mixes.

    Args:
        root: the test set folder (both label folders are created).
        n: images in all.
        seed: seeds the sizes and the pixels.
        sizes: the smallest and largest side in pixels.

    Returns:
        The paths written, relative to ``root``, in order.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = []
    for i in range(n):
        label = ("0_real", "1_fake")[i % 2]
        w, h = (int(s) for s in rng.integers(sizes[0], sizes[1] + 1, 2))
        ramp = np.linspace(0, rng.uniform(80, 220), w)[None, :, None] + np.linspace(0, 50, h)[:, None, None]
        pixels = np.clip(ramp * rng.uniform(0.4, 1.0, 3) + rng.normal(0, rng.uniform(5, 40), (h, w, 3)), 0, 255)
        name = f"{label}/img_{i:05d}.{'png' if i % 4 < 2 else 'jpg'}"
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(root / name, quality=90)
        written.append(name)
    return written
