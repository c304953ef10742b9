"""The numbers behind the near-duplicate check's default distance, its search time, and the README's example tree.

    python benchmarks/near_duplicates.py [--tree inhouse]

1. Crops (96..200 px, 40 per photo, seeded) of the photographs bundled with scikit-image and scikit-learn: the share
   of resized (0.5, 0.75, 1.5x, bicubic) and JPEG re-encoded (quality 60, 75, 90) copies whose pHash lies within
   2..10 bits of the original's, and how many pairs of crops of different photographs do.
2. The band search on 200,000 x 100,000 random hashes at distances 4 and 6 (seconds).
3. With ``--tree DIR``: the small demo's ``upconv`` and ``nearest`` training images in ``DIR/<family>/<class>``,
   and two ``upconv`` training images resized to 96 px and saved as JPEG (quality 85) among ``nearest``'s.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from detbench.data.perceptual_hash import hamming, hash_values, near_pairs, perceptual_hash

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "brick", "grass", "gravel", "page",
          "text", "clock", "hubble_deep_field", "retina", "immunohistochemistry")


def photographs() -> list[np.ndarray]:
    from skimage import data
    from sklearn.datasets import load_sample_images

    return [getattr(data, name)() for name in PHOTOS] + list(load_sample_images().images)


def copies_and_strangers(per_photo: int = 40) -> None:
    rng = np.random.default_rng(1)
    crops, owner = [], []
    for n, pixels in enumerate(photographs()):
        image = Image.fromarray(pixels).convert("RGB")
        for _ in range(per_photo):
            side = min(int(rng.integers(96, 200)), min(image.size) - 2)
            x, y = rng.integers(0, image.width - side), rng.integers(0, image.height - side)
            crops.append(image.crop((x, y, x + side, y + side)))
            owner.append(n)
    hashes = hash_values(perceptual_hash(c) for c in crops)
    distances = []
    for factor in (0.5, 0.75, 1.5):
        for quality in (60, 75, 90):
            copies = []
            for crop in crops:
                buffer = io.BytesIO()
                size = (int(crop.width * factor), int(crop.height * factor))
                crop.resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=quality)
                copies.append(perceptual_hash(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))
            distances.append(hamming(hashes, hash_values(copies)))
    d = np.concatenate(distances)
    print(f"{len(d)} resized and re-encoded copies within", {k: f"{(d <= k).mean():.1%}" for k in (2, 4, 6, 8, 10)})
    owner_array = np.array(owner)
    i, j = np.triu_indices(len(hashes), 1)
    apart = hamming(hashes[i], hashes[j])[owner_array[i] != owner_array[j]]
    print(f"{len(apart)} pairs of crops of different photographs within", {k: int((apart <= k).sum())
                                                                           for k in (4, 6, 8, 10, 12)})


def search_time() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**64 - 1, 200_000, dtype=np.uint64)
    b = rng.integers(0, 2**64 - 1, 100_000, dtype=np.uint64)
    for distance in (4, 6):
        started = time.perf_counter()
        near_pairs(a, b, distance)
        print(f"band search, 200,000 x 100,000 random hashes, distance {distance}: "
              f"{time.perf_counter() - started:.1f} s")


def example_tree(target: Path) -> None:
    from detbench.datasets.demo_build import build_demo

    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp)
        build_demo(build, n_train=12, n_val=6, size=64)
        for family in ("upconv", "nearest"):
            for label in ("0_real", "1_fake"):
                folder = target / family / label
                folder.mkdir(parents=True)
                for image in sorted((build / family / "train" / label).glob("*.png")):
                    shutil.copyfile(image, folder / image.name)
    for label, name in (("0_real", "upconv_train_0_real_00003.png"), ("1_fake", "upconv_train_1_fake_00007.png")):
        with Image.open(target / "upconv" / label / name) as image:
            resized = image.convert("RGB").resize((96, 96), Image.Resampling.BICUBIC)
        resized.save(target / "nearest" / label / f"reposted_{Path(name).stem}.jpg", "JPEG", quality=85)
    print(f"wrote {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, help="also write the README's example tree here (a new folder)")
    args = parser.parse_args()
    copies_and_strangers()
    search_time()
    if args.tree is not None:
        example_tree(args.tree)


if __name__ == "__main__":
    main()
