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


# ---------------------------------------------------------------------------------------------- --vs-originals


@pytest.mark.slow  # NPR's full-size network (the original allows no smaller one) in two processes: ~15-35 s
def test_vs_originals_end_to_end_on_tiny_inputs(tmp_path: Path) -> None:
    """Both sides in their own processes on the same generated images and weights: equal scores, a ratio, the
    CSV, the Markdown table and the machine description."""
    from detbench.perf.vs_originals import COLUMNS as VS_COLUMNS
    from detbench.perf.vs_originals import VsOptions, run_vs_originals

    seen: list[str] = []
    [row] = run_vs_originals(VsOptions(detectors=("npr",), images=4, repeats=1), tmp_path / "out", seen.append)
    assert seen == ["npr: original loop, repetition 1/1", "npr: detbench loop, repetition 1/1"]
    assert row["images"] == 4 and row["max_abs_diff"] <= row["tolerance"] and row["score_std"] > 0.01
    assert row["detbench_images_per_s"] > 0 and row["original_images_per_s"] > 0
    assert row["ratio_min"] == row["ratio_median"] == row["ratio_max"] > 0
    assert row["detbench_peak_rss_mb"] > 100 and row["original_peak_rss_mb"] > 100
    with open(tmp_path / "out" / "vs_originals.csv") as fh:
        [written] = list(csv.DictReader(fh))
    assert list(written)[1:] == VS_COLUMNS and written["detector"] == "npr"
    assert "| npr | chuangchuangtan/NPR-DeepfakeDetection" in (tmp_path / "out" / "vs_originals.md").read_text()
    assert json.loads((tmp_path / "out" / "vs_originals_machine.json").read_text())["cores"] >= 1


def test_vs_originals_refuses_unequal_or_missing_scores() -> None:
    from detbench.errors import DataError
    from detbench.perf.originals import SCORE_TOLERANCE
    from detbench.perf.vs_originals import _max_abs_diff

    ours = {"scores": {"0_real/a.png": 0.25, "1_fake/b.png": 0.75}}
    close = {"scores": {"0_real/a.png": 0.25 + SCORE_TOLERANCE / 2, "1_fake/b.png": 0.75}}
    assert _max_abs_diff("npr", ["0_real/a.png", "1_fake/b.png"], {"detbench": [ours], "original": [close]}) > 0
    far = {"scores": {"0_real/a.png": 0.25 + 2 * SCORE_TOLERANCE, "1_fake/b.png": 0.75}}
    with pytest.raises(DataError, match="no speed is reported for unequal scores"):
        _max_abs_diff("npr", ["0_real/a.png", "1_fake/b.png"], {"detbench": [ours], "original": [close, far]})
    with pytest.raises(DataError, match="scored 1 of 2 images"):
        _max_abs_diff("npr", ["0_real/a.png", "1_fake/b.png"],
                      {"detbench": [ours], "original": [{"scores": {"0_real/a.png": 0.25}}]})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--detectors", "npr,warp"], "no original evaluation loop for warp"),
        (["--images", "1"], "--images 1"),
        (["--repeats", "0"], "--repeats 0"),
    ],
)
def test_vs_originals_error_lines(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "--vs-originals", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not any(tmp_path.iterdir())


def test_vs_originals_has_aides_loop() -> None:
    from detbench.perf.originals import original
    from detbench.perf.vs_originals import VsOptions

    VsOptions(detectors=("aide",)).validate()
    assert VsOptions(detectors=("aide",)).counts("aide") == (8, 3)
    assert "engine_finetune.py evaluate" in original("aide").SOURCE


def test_detectors_needs_vs_originals() -> None:
    result = CliRunner().invoke(app, ["bench", "--detectors", "npr"])
    assert result.exit_code == 2 and "--detectors applies to --vs-originals only" in result.output


def test_python_bench_returns_the_rows_the_command_prints(tmp_path: Path) -> None:
    import detbench

    rows = detbench.bench(tmp_path, only=["cache_read"], repeats=1, cache_rows=2000)
    assert len(rows) == 1 and rows["what"].iloc[0].startswith("cache_read"), rows
    assert (tmp_path / "pipeline.csv").exists()
    with pytest.raises(detbench.ConfigError, match="unknown bench options"):
        detbench.bench(None, warp=1)
    with pytest.raises(detbench.ConfigError, match="detectors applies to vs_originals only"):
        detbench.bench(None, detectors=["npr"])
