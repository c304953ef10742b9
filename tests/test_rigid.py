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
from equivalence import assert_matches_reference, double_state
from PIL import Image

from detbench.detectors.rigid import RIGID, RIGIDConfig, noise_for
from detbench.kit.detector import RunContext
from detbench.models.backbones import resample_pos_embed
from detbench.progress import quiet

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
DIM, DEPTH, HEADS, PATCH, TRAINED_GRID = 384, 12, 6, 14, 37  # DINOv2 ViT-S/14, trained at 518 px
SIZE = 56  # a 4x4 patch grid
SIZES = [(45, 61), (70, 50), (64, 64), (33, 80)]
NOISE = 0.5  # lambda for the equivalence check: a plain multiplier, larger than 0.05 so that scores are far from 0


def hub_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in torch.hub's ``dinov2_vits14_pretrain.pth`` layout (with its ``mask_token``); values
    far from the initialisation (layer scales near 1, large position embeddings) so every part matters."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 0.05, offset: float = 0.0) -> torch.Tensor:
        return offset + scale * torch.randn(*shape, generator=g)

    sd = {"cls_token": rnd(1, 1, DIM, scale=1.0), "pos_embed": rnd(1, 1 + TRAINED_GRID**2, DIM, scale=0.5),
          "mask_token": rnd(1, DIM), "patch_embed.proj.weight": rnd(DIM, 3, PATCH, PATCH),
          "patch_embed.proj.bias": rnd(DIM), "norm.weight": rnd(DIM, scale=0.1, offset=1.0),
          "norm.bias": rnd(DIM, scale=0.1)}
    for i in range(DEPTH):
        p = f"blocks.{i}."
        sd |= {p + "norm1.weight": rnd(DIM, scale=0.1, offset=1.0), p + "norm1.bias": rnd(DIM, scale=0.1),
               p + "attn.qkv.weight": rnd(3 * DIM, DIM), p + "attn.qkv.bias": rnd(3 * DIM),
               p + "attn.proj.weight": rnd(DIM, DIM), p + "attn.proj.bias": rnd(DIM),
               p + "ls1.gamma": rnd(DIM, scale=0.2, offset=0.8), p + "norm2.weight": rnd(DIM, scale=0.1, offset=1.0),
               p + "norm2.bias": rnd(DIM, scale=0.1), p + "mlp.fc1.weight": rnd(4 * DIM, DIM),
               p + "mlp.fc1.bias": rnd(4 * DIM), p + "mlp.fc2.weight": rnd(DIM, 4 * DIM),
               p + "mlp.fc2.bias": rnd(DIM), p + "ls2.gamma": rnd(DIM, scale=0.2, offset=0.8)}
    return sd


def dinov2_class_token(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """DINOv2's forward (``dinov2/models/vision_transformer.py``, hub defaults): patch embedding, class token,
    position embeddings interpolated bicubically by the scale factor (grid + 0.1) / 37 without antialias, pre-norm
    blocks with layer scale, final LayerNorm (eps 1e-6), class token."""
    b = x.shape[0]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=PATCH)
    gh, gw = t.shape[-2:]
    t = torch.cat([sd["cls_token"].expand(b, -1, -1), t.flatten(2).transpose(1, 2)], dim=1)
    grid = sd["pos_embed"][:, 1:].reshape(1, TRAINED_GRID, TRAINED_GRID, DIM).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((gh + 0.1) / TRAINED_GRID, (gw + 0.1) / TRAINED_GRID), mode="bicubic",
                         antialias=False)
    t = t + torch.cat([sd["pos_embed"][:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, DIM)], dim=1)
    n, hd = t.shape[1], DIM // HEADS
    for i in range(DEPTH):
        p = f"blocks.{i}."
        h = F.layer_norm(t, (DIM,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps=1e-6)
        q, k, v = F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"]).reshape(
            b, n, 3, HEADS, hd).permute(2, 0, 3, 1, 4)
        attn = ((q * hd**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        h = (attn @ v).transpose(1, 2).reshape(b, n, DIM)
        h = F.linear(h, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        t = t + sd[p + "ls1.gamma"] * h
        h = F.layer_norm(t, (DIM,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps=1e-6)
        h = F.linear(F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])), sd[p + "mlp.fc2.weight"],
                     sd[p + "mlp.fc2.bias"])
        t = t + sd[p + "ls2.gamma"] * h
    return F.layer_norm(t, (DIM,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)[:, 0]


def rigid_reference(sd: dict[str, torch.Tensor], path: Path, image_id: str, seed: int = 0) -> tuple[float, float]:
    """The notebook's transform (Resize((S, S)) PIL bilinear, ToTensor, ImageNet normalisation), noise times lambda
    added after normalisation, 1 - cosine similarity of the two class tokens: in float32 (the notebook's
    precision) and in float64 (the same weights and float32 input cast to double)."""
    img = Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)
    x = ((x - IMAGENET_MEAN) / IMAGENET_STD).unsqueeze(0)
    noisy = x + NOISE * noise_for(image_id, seed, (3, SIZE, SIZE)).unsqueeze(0)
    batch = torch.cat([x, noisy])
    out = []
    with torch.no_grad():
        for weights, inputs in ((sd, batch), (double_state(sd), batch.double())):
            feats = dinov2_class_token(weights, inputs)
            out.append(float(1 - F.cosine_similarity(feats[:1], feats[1:], dim=-1)[0]))
    return out[0], out[1]


@pytest.fixture(scope="module")
def hub_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    sd = hub_state_dict()
    path = tmp_path_factory.mktemp("dinov2") / "dinov2_vits14_pretrain.pth"
    torch.save(sd, path)
    return path, sd


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Odd-sized images under test/ (the eval split) and a few under train/ (for a training protocol)."""
    root = tmp_path_factory.mktemp("rigid_data")
    rng = np.random.default_rng(0)
    for split, sizes in (("test", SIZES), ("train", SIZES[:2])):
        for label in ("0_real", "1_fake"):
            folder = root / split / "gen" / label
            folder.mkdir(parents=True)
            for i, (w, h) in enumerate(sizes):
                base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
                img = Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC)
                img.save(folder / f"{i}.png")
    return root


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
