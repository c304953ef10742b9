"""RIGID: the CLI score equals 1 - cos of a DINOv2 class token computed here from the authors' semantics (a
torch.hub-format checkpoint, position embeddings interpolated as DINOv2 does), per-image noise that ignores
batch size and order, any protocol, and a clear failure when the DINOv2 weights are missing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import invoke
from dinov2_reference import (
    DIM,
    SIZE,
    SIZES,
    dinov2_class_token,
    hub_state_dict,
    notebook_input,
    write_folder_tree,
)
from equivalence import assert_matches_reference, double_state

from detbench.detectors.rigid import RIGID, RIGIDConfig, noise_for
from detbench.kit.detector import RunContext
from detbench.models.backbones import resample_pos_embed
from detbench.progress import quiet

NOISE = 0.5  # lambda for the equivalence check: a plain multiplier, larger than 0.05 so that scores are far from 0


def rigid_reference(sd: dict[str, torch.Tensor], path: Path, image_id: str, seed: int = 0) -> tuple[float, float]:
    """The notebook's transform (Resize((S, S)) PIL bilinear, ToTensor, ImageNet normalisation), noise times lambda
    added after normalisation, 1 - cosine similarity of the two class tokens: in float32 (the notebook's
    precision) and in float64 (the same weights and float32 input cast to double)."""
    x = notebook_input(path)
    noisy = x + NOISE * noise_for(image_id, seed, (3, SIZE, SIZE)).unsqueeze(0)
    batch = torch.cat([x, noisy])
    out = []
    with torch.no_grad():
        for weights, inputs in ((sd, batch), (double_state(sd), batch.double())):
            feats = dinov2_class_token(weights, inputs)
            out.append(float(1 - F.cosine_similarity(feats[:1], feats[1:], dim=-1)[0]))
    return out[0], out[1]


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder_tree(tmp_path_factory.mktemp("rigid_data"))


def scores_of(home: Path, suite: str = "folder") -> pd.DataFrame:
    [run_json] = list((home / "runs" / suite / "rigid").glob("*/run.json"))
    return pd.read_parquet(run_json.parent / "scores.parquet")


def test_cli_score_equals_the_authors_computation(hub_checkpoint, folder_root: Path, detbench_home: Path) -> None:
    path, sd = hub_checkpoint
    result = invoke("run", "rigid", "--suite", "folder", "--root", str(folder_root), "--protocol", "eval", "-q",
                    "--set", f"backbone=timm:vit_small_patch14_dinov2@{path}", "--set", f"input_size={SIZE}",
                    "--set", f"noise={NOISE}")
    assert result.exit_code == 0, result.output
    scores = scores_of(detbench_home)
    assert len(scores) == 2 * len(SIZES) and (scores["status"] == "ok").all()
    pairs = zip(scores["path"], scores["image_id"], strict=True)
    ref32, expected = zip(*(rigid_reference(sd, folder_root / p, i) for p, i in pairs), strict=True)
    # float32 scores vs the float64 reference within 4x the float32 rounding error this reference shows
    # (err32 = max |ref32 - ref64|) + 4 eps32: see tests/equivalence.py; wrong position embeddings are >> this bound
    assert_matches_reference(scores["score"], ref32, expected)
    assert scores["score"].std() > 1e-3  # the images differ: a constant score would pass nothing
    record = json.loads(next((detbench_home / "runs" / "folder" / "rigid").glob("*/run.json")).read_text())
    identity = record["key"]["detector_identity"]
    assert "DINOv2's own" in identity["backbone"]["model_cfg"]["pos_embed_resample"]
    assert identity["stand_in"] and "vit_small" in identity["stand_in"]  # not the authors' ViT-L/14
    assert record["fit"]["training_free"] is True


def test_dinov2_and_timm_resampling_differ() -> None:
    """The test above can tell DINOv2's interpolation from timm's: they differ well beyond its tolerance."""
    pos = hub_state_dict()["pos_embed"]
    dinov2 = resample_pos_embed(pos, (4, 4), 1, "dinov2")
    timm_way = resample_pos_embed(pos, (4, 4), 1, "timm")
    assert dinov2.shape == timm_way.shape == (1, 17, DIM)
    assert torch.equal(dinov2[:, 0], pos[:, 0]) and (dinov2 - timm_way).abs().max() > 0.05


def test_scores_ignore_batch_size_and_order(hub_checkpoint, folder_root: Path, detbench_home: Path) -> None:
    from detbench.data.index import build_index
    from detbench.registry import SUITES

    path, _ = hub_checkpoint
    index = build_index(SUITES.get("folder")(), folder_root)
    rows = index.usable[index.usable["split"] == "test"]
    detector = RIGID(RIGIDConfig(backbone=f"timm:vit_small_patch14_dinov2@{path}", input_size=SIZE))
    results = []
    for batch_size, order in ((8, slice(None)), (3, slice(None, None, -1))):
        ctx = RunContext(suite_root=folder_root, suite_name="folder", device="cpu", seed=0, run_dir=detbench_home,
                         phases=quiet(), batch_size=batch_size)
        if not results:
            detector.setup(ctx)
        scores, failures = detector.predict(rows.iloc[order], ctx)
        assert not failures
        results.append(pd.Series(scores, index=rows["image_id"].iloc[order]).loc[rows["image_id"]].to_numpy())
    # float32 cosines near 1 lie 6e-8 apart: batch-dependent float32 sums may move them a few steps
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=4e-7)
    assert np.ptp(results[0]) > 1e-5  # per-image scores, not one value


def test_runs_under_a_training_protocol_and_ignores_its_training_rows(hub_checkpoint, folder_root: Path,
                                                                     detbench_home: Path) -> None:
    path, _ = hub_checkpoint
    result = invoke("run", "rigid", "--suite", "folder", "--root", str(folder_root), "-q", "--protocol",
                    "train-on-gen", "--threshold", "calibrated", "--set", f"input_size={SIZE}", "--seed", "3",
                    "--set", f"backbone=timm:vit_small_patch14_dinov2@{path}")
    assert result.exit_code == 0, result.output
    [run_json] = list((detbench_home / "runs/folder/rigid").glob("*/run.json"))
    record = json.loads(run_json.read_text())
    assert record["fit"]["ignored_train_rows"] > 0 and record["fit"]["trained"] is False
    assert math.isfinite(record["threshold"]["calibrated_on_heldout"])  # the held-out rows only calibrate

    # detbench predict scores a file as the run did: the run's noise seed travels with its fit
    scores = pd.read_parquet(run_json.parent / "scores.parquet")
    first = scores.iloc[0]
    out = detbench_home / "pred.csv"
    result = invoke("predict", record["run_id"][:12], str(folder_root / first["path"]), "--csv", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["score"].iloc[0] == pytest.approx(first["score"], rel=1e-5)


def test_noise_is_a_function_of_seed_and_image() -> None:
    a = noise_for("abc", 0, (3, 8, 8))
    assert torch.equal(a, noise_for("abc", 0, (3, 8, 8)))
    assert not torch.equal(a, noise_for("abd", 0, (3, 8, 8))) and not torch.equal(a, noise_for("abc", 1, (3, 8, 8)))
    assert abs(float(noise_for("x", 0, (3, 64, 64)).std()) - 1) < 0.05


def test_missing_dinov2_weights_fail_before_any_work(folder_root: Path) -> None:
    result = invoke("run", "rigid", "--suite", "folder", "--root", str(folder_root), "--protocol", "eval", "-q")
    assert result.exit_code == 2, result.output
    assert "vit_large_patch14_dinov2" in result.output and "Traceback" not in result.output


def test_input_size_must_fit_the_patches(hub_checkpoint, folder_root: Path) -> None:
    path, _ = hub_checkpoint
    result = invoke("run", "rigid", "--suite", "folder", "--root", str(folder_root), "--protocol", "eval", "-q",
                    "--set", f"backbone=timm:vit_small_patch14_dinov2@{path}", "--set", "input_size=50")
    assert result.exit_code == 2, result.output
    assert "whole 14 px patches" in result.output and "Traceback" not in result.output


def test_score_is_one_minus_the_float32_cosine() -> None:
    """The notebook's ``F.cosine_similarity`` of the float32 embeddings (1 - sim is then exact in float32): so
    near-identical embeddings round, and tie, as there; ``cos_dtype=float64`` (a recorded departure) ranks them."""
    from detbench.detectors.rigid import embedding_distance

    g = torch.Generator().manual_seed(0)
    clean = torch.randn(64, 384, generator=g)
    noisy = clean + 1e-3 * torch.randn(64, 384, generator=g)
    expected = (1 - F.cosine_similarity(clean, noisy, dim=-1)).numpy()
    assert expected.dtype == np.float32 and len(set(expected.tolist())) < len(expected)  # float32 ties
    np.testing.assert_array_equal(embedding_distance(clean, noisy, "float32"), expected)
    ranked = embedding_distance(clean, noisy, "float64")
    assert len(set(ranked.tolist())) == len(ranked)
    np.testing.assert_allclose(ranked, expected, rtol=0, atol=1e-6)
