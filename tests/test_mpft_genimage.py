"""MPFT on a GenImage replica: missing ViT weights fail at once; a local weight file runs end to end."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from replicas import build_genimage
from typer.testing import CliRunner

from detbench.cli.commands import app


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_genimage(tmp_path_factory.mktemp("genimage"), n=4, defects=True).root


def test_offline_without_vit_l14_weights_fails_at_once_with_the_ways_to_supply_them(replica: Path) -> None:
    result = CliRunner().invoke(app, ["--offline", "run", "mpft", "--suite", "genimage", "--root", str(replica)])
    assert result.exit_code == 2, result.output
    assert "ViT-L-14" in result.output and "local-dir:" in result.output and "Traceback" not in result.output


def test_local_weight_file_runs_the_standard_protocol(replica: Path, tiny_vit_file: Path, detbench_home: Path) -> None:
    spec = f"open_clip:detbench-tiny-vit@{tiny_vit_file}"
    args = ["run", "mpft", "--suite", "genimage", "--root", str(replica), "--set", f"backbone={spec}",
            "--set", "steps=2", "--set", "batch_size=4", "--set", "eval_every=1", "--bootstrap", "0", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    [path] = (detbench_home / "runs" / "genimage" / "mpft").glob("*/run.json")
    record = json.loads(path.read_text())
    backbone = record["key"]["detector_identity"]["backbone"]
    assert backbone["weights_sha256"] == hashlib.sha256(tiny_vit_file.read_bytes()).hexdigest()
    assert record["protocol"] == "sdv14"
    metrics = pd.read_parquet(path.parent / "metrics.parquet")
    assert set(metrics["generator"]) >= {"sdv14", "midjourney", "biggan", "mean", "worst"}
    assert record["counts"]["eval_skipped"] >= 1  # the replica's truncated and non-image files are counted
