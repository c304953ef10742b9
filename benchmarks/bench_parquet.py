"""Peak memory of Parquet-shard datasets against shard size: indexing and loading stay bounded by a batch.

    python benchmarks/bench_parquet.py [--rows 400 1600 4800] [--out results/bench/parquet_memory.csv]

Writes shards of N 256 px noise PNGs (about 197 kB each, no compression, no dictionary: the file is the sum of
its images), each in two layouts: Hugging Face ``datasets``' 100-row row groups, and one row group for the
whole shard as pyarrow writes it by default (its data pages then hold 1024 rows, about 200 MB: a reader must
hold one page). Each measure runs in a fresh Python process and reports its peak RSS above the RSS right after
the imports:

- ``index``: ``build_index`` of the ``parquet`` suite (full mode: every image decoded and hashed);
- ``load_in_order`` / ``load_shuffled``: every image through ``ImageRowsDataset`` (the loader of features,
  training and scoring), in index order and shuffled (shuffled only for the 100-row groups: with one row group
  a jump back restarts the stream, so shuffled reading is quadratic in time, not in memory);
- ``read_table`` (the contrast): ``pyarrow.parquet.read_table`` of the shard, what a naive reader does.

Expected: the detbench measures stay flat as the shard grows (bounded by a record batch and one data page),
``read_table`` grows with the shard.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEASURES = ("index", "load_in_order", "load_shuffled", "read_table")


def write_shard(path: Path, rows: int, row_group: int, seed: int = 0) -> int:
    """A shard of ``rows`` images (32 distinct noise PNGs repeated), HF Image struct column; its size in bytes."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(32):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(buffer, "PNG", compress_level=1)
        blobs.append(buffer.getvalue())
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    images = pa.array([{"bytes": blobs[i % 32], "path": f"{i}.png"} for i in range(rows)], type=struct)
    table = pa.table({"image": images, "label": pa.array([i % 2 for i in range(rows)])})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group, compression="none", use_dictionary=False)
    return path.stat().st_size


def measure(what: str, root: str) -> dict[str, float]:
    """Run one measure in this process; peak RSS (MiB) above the post-import baseline, and seconds."""
    import numpy as np
    import pyarrow.parquet as pq

    from detbench.data.index import build_index
    from detbench.data.loading import ImageRowsDataset
    from detbench.datasets.hfparquet import ParquetSuite

    def status_mib(field: str) -> float:
        """VmRSS (now) or VmHWM (peak) of this process; unlike ru_maxrss, the peak does not carry over the
        parent's through fork + exec."""
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")

    def rss_mib() -> float:
        return status_mib("VmRSS")

    baseline = rss_mib()
    started = time.perf_counter()
    shard = next(Path(root).glob("*.parquet"))
    if what == "index":
        build_index(ParquetSuite(), Path(root), mode="full", workers=1)
    elif what.startswith("load"):
        n = pq.read_metadata(shard).num_rows
        paths = [f"{shard.name}#image:{r:09d}" for r in range(n)]
        if what == "load_shuffled":
            paths = [paths[i] for i in np.random.default_rng(0).permutation(n)]
        dataset = ImageRowsDataset(Path(root), paths, lambda img: img.size)
        for i in range(n):
            assert dataset[i][2] is None
    else:
        pq.read_table(shard)
    peak = status_mib("VmHWM")
    return {"peak_above_baseline_mib": round(peak - baseline, 1), "seconds": round(time.perf_counter() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[400, 1600, 4800])
    parser.add_argument("--out", type=Path, default=Path("results/bench/parquet_memory.csv"))
    parser.add_argument("--measure", nargs=2, metavar=("WHAT", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="detbench-bench-parquet-") as tmp:
        for rows in args.rows:
            for layout, row_group in (("hf-100-row-groups", 100), ("one-row-group", rows)):
                root = Path(tmp) / f"{layout}-{rows}"
                size = write_shard(root / "test-00000-of-00001.parquet", rows, row_group)
                for what in MEASURES:
                    if what == "load_shuffled" and layout == "one-row-group":
                        continue
                    env = {**os.environ, "DETBENCH_HOME": str(Path(tmp) / f"home-{layout}-{rows}-{what}")}
                    done = subprocess.run(
                        [sys.executable, __file__, "--measure", what, str(root)],
                        capture_output=True, text=True, env=env, check=True,
                    )  # fmt: skip
                    row = {"rows": rows, "shard_mib": round(size / 2**20, 1), "layout": layout, "measure": what,
                           **json.loads(done.stdout.strip().splitlines()[-1])}  # fmt: skip
                    results.append(row)
                    print(row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
