"""Perturbations in runs: a sweep of newer steps with each image's drawn chain recorded, a class-targeted run
checked against its parts scored separately, and bad specs refused before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import FAST_FOLDER, invoke
from replicas import build_folder

import detbench
from detbench.data.perturbations import SocialChain


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("perturb_tree") / "tree"
    build_folder(root, generators=("a", "b"), splits=("train", "test"), n=3)
    return root


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("perturb_home")


@pytest.fixture
def home(shared_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DETBENCH_HOME", str(shared_home))
    return shared_home


def folder(root: Path) -> list[str]:
    return ["--suite", "folder", "--root", str(root), "--protocol", "train-on-a", *FAST_FOLDER]


def runs_by_spec(home: Path) -> dict[str, dict]:
    recs = [json.loads(p.read_text()) for p in home.glob("runs/folder/linear-probe/*/run.json")]
    return {(r["perturbation"] or {}).get("spec", "clean"): r for r in recs}


def scores(record: dict) -> pd.DataFrame:
    return pd.read_parquet(Path(record["paths"]["run"]) / "scores.parquet").set_index("path").sort_index()


def test_a_sweep_of_webp_and_social_chains_trains_once_and_records_each_images_chain(tree: Path, home: Path) -> None:
    result = invoke("sweep", "linear-probe", *folder(tree), "-p", "webp:40", "-p", "social:3")
    assert result.exit_code == 0, result.output
    runs = runs_by_spec(home)
    assert {"clean", "webp:40", "social:3"} <= set(runs)
    assert {r["fit_id"] for r in runs.values()} == {runs["clean"]["fit_id"]}
    assert runs["webp:40"]["fit"]["reused"] and runs["social:3"]["fit"]["reused"]
    clean, webp, social = (scores(runs[s]) for s in ("clean", "webp:40", "social:3"))
    assert (clean["status"] == "ok").all() and len(clean) == 12
    assert not np.allclose(webp["score"], clean["score"]) and not np.allclose(social["score"], clean["score"])
    chains = [SocialChain(3).spec_for(i) for i in social["image_id"]]
    assert social["perturbation"].tolist() == chains and len(set(chains)) > 1  # drawn per image
    assert "perturbation" not in webp.columns and "perturbation" not in clean.columns  # uniform: in run.json


def test_a_fake_targeted_jpeg_run_scores_reals_clean_and_fakes_as_jpeg_96(tree: Path, home: Path) -> None:
    clean = invoke("run", "linear-probe", *folder(tree))
    assert clean.exit_code == 0, clean.output
    settings = {"backbone": "timm:efficientnet_lite0@bundled", "crop": 32}
    targeted = detbench.run("linear-probe", "folder", root=tree, protocol="train-on-a", settings=settings,
                            perturb="jpeg:96@fake")
    keys = [json.loads(p.read_text())["perturbation"] for p in home.glob("features/**/key.json")]
    assert {(k or {}).get("spec", "clean") for k in keys} >= {"clean", "jpeg:96"}  # reals' clean features shared
    assert not any("target" in (k or {}) for k in keys)
    shutil.rmtree(home / "features")  # the untargeted run computes the JPEG-96 fakes afresh
    plain = invoke("run", "linear-probe", *folder(tree), "--perturb", "jpeg:96")
    assert plain.exit_code == 0, plain.output

    runs = runs_by_spec(home)
    rec = runs["jpeg:96@fake"]
    assert rec["run_id"] == targeted.record["run_id"] and rec["perturbation"]["target"] == "fake"
    assert len({runs[s]["run_id"] for s in ("clean", "jpeg:96", "jpeg:96@fake")}) == 3
    assert len({runs[s]["fit_id"] for s in ("clean", "jpeg:96", "jpeg:96@fake")}) == 1
    ours, by_hand_real, by_hand_fake = scores(rec), scores(runs["clean"]), scores(runs["jpeg:96"])
    real, fake = ours["label"] == 0, ours["label"] == 1
    assert real.sum() == fake.sum() == 6 and (ours["status"] == "ok").all()
    np.testing.assert_allclose(ours.loc[real, "score"], by_hand_real.loc[real, "score"], rtol=1e-6)
    np.testing.assert_allclose(ours.loc[fake, "score"], by_hand_fake.loc[fake, "score"], rtol=1e-6)
    assert not np.allclose(ours.loc[fake, "score"], by_hand_real.loc[fake, "score"])  # the fakes were perturbed
    assert ours["perturbation"].tolist() == ["jpeg:96" if label else "clean" for label in ours["label"]]


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "linear-probe", "--perturb", "webp:0@fake"], "1..100"),
        (["run", "linear-probe", "--perturb", "jpeg:96@fake+blur:1"], "once, at the end"),
        (["sweep", "linear-probe", "-p", "noise:4,400"], "(0, 255]"),
        (["sweep", "linear-probe", "-p", "social:2", "-p", "resize-jpeg:0.5,75"], "resize-jpeg:0.5/75"),
    ],
)
def test_bad_specs_fail_with_one_error_line_before_any_work(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.setenv("DETBENCH_HOME", str(tmp_path))
    result = invoke(*args, *folder(tree))
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and message in text and "Traceback" not in text, result.output
    assert result.output.count("error:") == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "indexes").exists()
