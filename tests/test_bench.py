"""``detbench bench``: every measure on tiny inputs, the CSV and machine description, and the reference loop
computing the same features as detbench's loop (so the speed ratio compares equal work)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from detbench.cli.commands import app
from detbench.models.features import FeatureCache
from detbench.perf.bench import COLUMNS, run_bench
from detbench.perf.inputs import write_images, write_suite
from detbench.perf.options import ALL, Options
from detbench.perf.process import reference_loop

TINY = "open_clip:detbench-tiny-vit@random"
SMALL = dict(
    backbone=TINY,
    crop=224,
    size=64,
    images=12,
    batch_size=4,
    workers=0,
    repeats=1,
    index_files=48,
    cache_rows=500,
    cache_dim=16,
    metric_scores=2000,
    bootstrap=5,
)


def test_every_measure_writes_a_row(tmp_path: Path) -> None:
    opts = Options(**SMALL, only=tuple(w for w in ALL if w != "rss"))
    rows = run_bench(opts, tmp_path / "out")
    assert [r["what"] for r in rows] == [
        "decode",
        "forward",
        "score",
        "reference",
        "mpft_step",
        "index",
        "index",
        "cache_read",
        "metrics",
        "metrics",
    ]
    assert all(r["images_per_s"] > 0 and r["peak_rss_mb"] > 0 for r in rows)
    reference = next(r for r in rows if r["what"] == "reference")
    score = next(r for r in rows if r["what"] == "score")
    # from the seconds (4 decimals), not images/s rounded to 0.1, which at a few images/s is off by over 1 %
    assert reference["ratio"] == pytest.approx(reference["seconds"] / score["seconds"], rel=0.01)
    assert "random weights" in score["note"]
    with open(tmp_path / "out" / "pipeline.csv") as fh:
        written = list(csv.DictReader(fh))
    assert len(written) == len(rows) and list(written[0])[1:] == COLUMNS
    facts = json.loads((tmp_path / "out" / "machine.json").read_text())
    assert facts["cores"] >= 1 and facts["ram_gib"] > 0 and facts["torch"]


def test_reference_loop_computes_detbench_features(tmp_path: Path) -> None:
    from detbench.models.backbones import load_backbone

    names = write_images(tmp_path / "imgs", 6, 240)
    backbone = load_backbone(TINY)
    rows = pd.DataFrame({"path": names, "image_id": names})
    ours, failures, _ = FeatureCache(tmp_path / "cache").extract(backbone, tmp_path / "imgs", rows, workers=0)
    theirs = reference_loop(backbone, tmp_path / "imgs", names, batch_size=4, device="cpu")
    assert not failures
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def test_generated_suite_layout(tmp_path: Path) -> None:
    write_suite(tmp_path, 100, size=8, train_per_class=10)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert len(files) == 100
    assert sum(f.startswith("gen0/train/0_real/") for f in files) == 10
    assert {f.split("/")[0] for f in files} == {f"gen{k}" for k in range(8)}


def test_rss_measure_runs_a_whole_run_in_a_fresh_process(tmp_path: Path) -> None:
    rows = run_bench(
        Options(**{**SMALL, "backbone": "timm:efficientnet_lite0@bundled"}, rss_images=64, only=("rss",)),
        None,
    )
    (row,) = rows
    assert row["what"] == "rss" and row["images"] == 64 and 0 < row["peak_rss_mb"] < 4096
    assert "48 scored" in row["note"]  # 64 images minus 2 x 8 training images


def test_cli_bench_rejects_unknown_measures_and_runs(tmp_path: Path) -> None:
    bad = CliRunner().invoke(app, ["bench", "--only", "metrics,warp"])
    assert bad.exit_code == 2 and "warp" in bad.output
    ok = CliRunner().invoke(app, ["bench", "--only", "cache_read", "--out", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert "cache_read" in ok.output and (tmp_path / "pipeline.csv").exists()
