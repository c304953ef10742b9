"""Index throughput: files/s of ``build_index`` in fast and full mode on a generated tree of small images.

    python benchmarks/bench_index.py --files 20000 --workers 2

Writes ``--files`` small PNG/JPEG files (8..32 px) into a temporary folder-suite tree, then times a cold
index in each mode (fresh ``$DETBENCH_HOME``) and a warm re-index (every row reused).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_tree(root: Path, n_files: int, seed: int = 0) -> None:
    """``gen<k>/<split>/<label>/img_<i>.<ext>``: 8 generators, train/test, 0_real (JPEG) / 1_fake (PNG)."""
    rng = np.random.default_rng(seed)
    blobs: dict[str, list[bytes]] = {"png": [], "jpg": []}
    for _ in range(64):
        size = int(rng.integers(8, 33))
        im = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        for ext, fmt in (("png", "PNG"), ("jpg", "JPEG")):
            buffer = io.BytesIO()
            im.save(buffer, fmt)
            blobs[ext].append(buffer.getvalue())
    for i in range(n_files):
        gen, split, label = i % 8, ("train", "test")[(i // 8) % 2], (i // 16) % 2
        ext = "png" if label else "jpg"
        folder = root / f"gen{gen}" / split / ("1_fake" if label else "0_real")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img_{i:06d}.{ext}").write_bytes(blobs[ext][i % 64])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="detbench-bench-") as tmp:
        os.environ["DETBENCH_HOME"] = str(Path(tmp) / "home")
        from detbench.data.index import build_index
        from detbench.datasets.folder import FolderSuite

        root = Path(tmp) / "tree"
        t = time.perf_counter()
        make_tree(root, args.files)
        print(f"generated {args.files} files in {time.perf_counter() - t:.1f} s")
        suite = FolderSuite()
        t = time.perf_counter()
        n = sum(1 for _ in suite.scan(root))
        print(f"scan only:          {n / (time.perf_counter() - t):9.0f} files/s")
        for mode, label in (("fast", "fast (cold)"), ("fast", "fast (reused)"), ("full", "full (cold)")):
            t = time.perf_counter()
            index = build_index(suite, root, mode=mode, workers=args.workers)
            seconds = time.perf_counter() - t
            assert len(index.rows) == args.files and index.manifest["n_usable"] == args.files
            rate = args.files / seconds
            print(f"{label + ':':19s} {rate:9.0f} files/s ({seconds:.2f} s, {args.workers} workers)")


if __name__ == "__main__":
    main()
