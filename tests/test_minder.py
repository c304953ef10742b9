"""Contrastive Blur and MINDER (Tsai et al., arXiv 2411.19117), reconstructed without public code: what the paper
fixes is computed here from its description on a DINOv2 re-derived from its published code (the blurred copy
against the sharpened copy; MINDER's per-image minimum over the noise and Contrastive Blur distances; RIGID's
noise and DINOv2 backbone), and every open choice is a setting (docs/minder.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import invoke
from dinov2_reference import SIZE, SIZES, dinov2_class_token, notebook_input, write_folder_tree
from equivalence import assert_matches_reference, double_state
from scipy import ndimage

from detbench.kit.sensitivity import BlurConfig, gaussian_blur, noise_for, sharpen
from detbench.registry import DETECTORS

NOISE = 0.75  # lambda: far above the default 0.05, so that noise and blur distances interleave
SIGMA = 1.5  # blur sigma in pixels of the 56 px input: kernel 2 * ceil(4.5) + 1 = 11 taps


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder_tree(tmp_path_factory.mktemp("minder_data"))


def scipy_blur(x: np.ndarray, sigma: float, mode: str = "mirror") -> np.ndarray:
    """A Gaussian blur of each channel of ``[C, H, W]`` (float64), truncated at ``ceil(3 sigma)`` pixels."""
    radius = int(np.ceil(3 * sigma))
    return np.stack([ndimage.gaussian_filter(c, sigma, mode=mode, radius=radius) for c in x])


def distances(sd: dict[str, torch.Tensor], pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[list, list]:
    """``1 - cos`` of the class tokens of each pair, in float32 and in float64 (weights and inputs cast)."""
    out32, out64 = [], []
    with torch.no_grad():
        for a, b in pairs:
            for weights, kind, out in ((sd, torch.float32, out32), (double_state(sd), torch.float64, out64)):
                feats = dinov2_class_token(weights, torch.cat([a, b]).to(kind))
                out.append(float(1 - F.cosine_similarity(feats[:1], feats[1:], dim=-1)[0]))
    return out32, out64


def paper_views(path: Path, image_id: str) -> dict[str, torch.Tensor]:
    """The paper's views of one image: RIGID's noisy copy, and Contrastive Blur's blurred and sharpened copies
    (unsharp masking, x + (x - blur(x))), all of the normalised 56 px image."""
    x = notebook_input(path)
    blurred = torch.from_numpy(scipy_blur(x[0].double().numpy(), SIGMA)).unsqueeze(0)
    return {"clean": x, "noisy": x + NOISE * noise_for(image_id, 0, tuple(x.shape[1:])).unsqueeze(0),
            "blurred": blurred.float(), "sharpened": (2 * x.double() - blurred).float()}


def run_scores(home: Path, detector: str) -> tuple[pd.DataFrame, dict]:
    [run_json] = list((home / "runs" / "folder" / detector).glob("*/run.json"))
    return pd.read_parquet(run_json.parent / "scores.parquet"), json.loads(run_json.read_text())


def run_cli(detector: str, path: Path, root: Path, *extra: str):
    return invoke("run", detector, "--suite", "folder", "--root", str(root), "--protocol", "eval", "-q",
                  "--set", f"backbone=timm:vit_small_patch14_dinov2@{path}", "--set", f"input_size={SIZE}", *extra)


def test_contrastive_blur_scores_the_blurred_copy_against_the_sharpened_copy(hub_checkpoint, folder_root: Path,
                                                                             detbench_home: Path) -> None:
    path, sd = hub_checkpoint
    result = run_cli("contrastive-blur", path, folder_root, "--set", f"blur.sigma={SIGMA}")
    assert result.exit_code == 0, result.output
    scores, record = run_scores(detbench_home, "contrastive-blur")
    assert len(scores) == 2 * len(SIZES) and (scores["status"] == "ok").all()
    views = [paper_views(folder_root / p, i) for p, i in zip(scores["path"], scores["image_id"], strict=True)]
    ref32, ref64 = distances(sd, [(v["blurred"], v["sharpened"]) for v in views])
    # float32 scores vs the float64 reference within 4x the float32 rounding error it shows: tests/equivalence.py
    assert_matches_reference(scores["score"], ref32, ref64)
    assert scores["score"].std() > 1e-3
    # not the blurred copy against the image itself (the plain blur perturbation): that is another number
    plain32, plain64 = distances(sd, [(v["blurred"], v["clean"]) for v in views])
    assert np.abs(np.asarray(plain64) - np.asarray(ref64)).min() > 1e-4
    identity = record["key"]["detector_identity"]
    assert identity["stand_in"] and "vit_small" in identity["stand_in"] and record["fit"]["training_free"] is True

    first = set((detbench_home / "runs/folder/contrastive-blur").glob("*/run.json"))
    result = run_cli("contrastive-blur", path, folder_root, "--set", f"blur.sigma={SIGMA}",
                     "--set", "blur.against=clean")
    assert result.exit_code == 0, result.output
    [run_json] = set((detbench_home / "runs/folder/contrastive-blur").glob("*/run.json")) - first
    plain = pd.read_parquet(run_json.parent / "scores.parquet")
    assert plain["image_id"].tolist() == scores["image_id"].tolist()
    assert_matches_reference(plain["score"], plain32, plain64)


@pytest.mark.parametrize("combine", ["min_distance", "min_similarity"])
def test_minder_combines_the_noise_and_contrastive_blur_distances_per_image(
        combine: str, hub_checkpoint, folder_root: Path, detbench_home: Path) -> None:
    path, sd = hub_checkpoint
    result = run_cli("minder", path, folder_root, "--set", f"blur.sigma={SIGMA}", "--set", f"noise={NOISE}",
                     "--set", f"combine={combine}")
    assert result.exit_code == 0, result.output
    scores, record = run_scores(detbench_home, "minder")
    views = [paper_views(folder_root / p, i) for p, i in zip(scores["path"], scores["image_id"], strict=True)]
    noise32, noise64 = distances(sd, [(v["clean"], v["noisy"]) for v in views])
    blur32, blur64 = distances(sd, [(v["blurred"], v["sharpened"]) for v in views])
    # the minimum of the distances, or of the similarities (1 - the maximum of the distances)
    pick = np.minimum if combine == "min_distance" else np.maximum
    ref32, ref64 = pick(noise32, blur32), pick(noise64, blur64)
    assert_matches_reference(scores["score"], ref32, ref64)
    # each image's score comes from either perturbation: the combination is per image, not per data set
    chosen_noise = np.isclose(ref64, noise64, rtol=0, atol=1e-9)
    assert chosen_noise.any() and not chosen_noise.all(), (noise64, blur64)
    identity = record["key"]["detector_identity"]
    assert identity["noise_draw"] and identity["blur_view"] and record["fit"]["training_free"] is True


def test_minder_noise_branch_is_rigid() -> None:
    """MINDER's noise distance is RIGID's score: the same default noise, network, input and draws."""
    from detbench.detectors.contrastive_blur import ContrastiveBlurConfig
    from detbench.detectors.minder import MINDERConfig
    from detbench.detectors.rigid import RIGIDConfig

    rigid, minder, blur = RIGIDConfig(), MINDERConfig(), ContrastiveBlurConfig()
    for name in ("backbone", "embedding", "input_size", "interpolation", "precision", "cos_dtype"):
        assert getattr(minder, name) == getattr(rigid, name) == getattr(blur, name), name
    assert minder.noise == rigid.noise == 0.05 and "dinov2" in rigid.backbone
    assert minder.blur == blur.blur and minder.combine == "min_distance" and blur.blur.against == "sharpened"


@pytest.mark.parametrize("padding,mode", [("reflect", "mirror"), ("replicate", "nearest"), ("zeros", "constant")])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5])
def test_blur_is_a_separable_gaussian(padding: str, mode: str, sigma: float) -> None:
    x = torch.randn(2, 3, 17, 23, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = gaussian_blur(x, BlurConfig(sigma=sigma, padding=padding))
    expected = np.stack([scipy_blur(img, sigma, mode) for img in x.numpy()])
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-6)
    assert BlurConfig(sigma=sigma).kernel_size == 2 * int(np.ceil(3 * sigma)) + 1
    explicit = gaussian_blur(x, BlurConfig(sigma=sigma, kernel=3, padding=padding))
    radius1 = np.stack([[ndimage.gaussian_filter(c, sigma, mode=mode, radius=1) for c in img] for img in x.numpy()])
    np.testing.assert_allclose(explicit.numpy(), radius1, rtol=0, atol=1e-6)


def test_sharpening_mirrors_the_blurred_copy_about_the_image() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 16, 16, generator=g)
    blurred = gaussian_blur(x, BlurConfig())
    np.testing.assert_allclose((sharpen(x, blurred, 1.0) - x).numpy(), (x - blurred).numpy(), atol=1e-6)
    flat = torch.full((1, 3, 16, 16), 0.3)
    for padding in ("reflect", "replicate"):  # a flat image has no detail: blurring and sharpening keep it
        flat_blurred = gaussian_blur(flat, BlurConfig(padding=padding))
        torch.testing.assert_close(flat_blurred, flat)
        torch.testing.assert_close(sharpen(flat, flat_blurred, 2.0), flat)


def test_views_and_clipping(hub_checkpoint) -> None:
    """Only the views a score needs are embedded; ``blur.clip`` clamps them to the pixel range [0, 1]."""
    from detbench.detectors.contrastive_blur import ContrastiveBlur, ContrastiveBlurConfig
    from detbench.detectors.minder import MINDER, MINDERConfig
    from detbench.kit.detector import RunContext
    from detbench.progress import quiet

    path, _ = hub_checkpoint
    spec = f"timm:vit_small_patch14_dinov2@{path}"
    ctx = RunContext(suite_root=Path("."), suite_name="folder", device="cpu", seed=0, run_dir=Path("."),
                     phases=quiet())
    x = 3 * torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    ids = ["a", "b"]
    detector = ContrastiveBlur(ContrastiveBlurConfig(backbone=spec, input_size=28))
    detector.setup(ctx)
    assert set(detector.views(x, ids)) == {"blurred", "sharpened"}
    detector = ContrastiveBlur(ContrastiveBlurConfig(backbone=spec, input_size=28, blur=BlurConfig(against="clean")))
    detector.setup(ctx)
    assert set(detector.views(x, ids)) == {"clean", "blurred"}
    detector = MINDER(MINDERConfig(backbone=spec, input_size=28, blur=BlurConfig(clip=True)))
    detector.setup(ctx)
    views = detector.views(x, ids)
    assert set(views) == {"clean", "noisy", "blurred", "sharpened"}
    low, high = detector.pixel_range()
    for name in ("blurred", "sharpened"):
        assert (views[name] >= low - 1e-6).all() and (views[name] <= high + 1e-6).all(), name
    assert torch.equal(views["clean"], x)
    eps = torch.stack([noise_for(i, 0, (3, 28, 28)) for i in ids])
    torch.testing.assert_close(views["noisy"], x + 0.05 * eps)  # RIGID's noise, not clipped


def test_registered_training_free_with_the_dinov2_backbone_as_their_weights() -> None:
    for name in ("minder", "contrastive-blur"):
        info = DETECTORS.info(name)
        assert info is not None and "2411.19117" in info.paper and info.year == 2024, name
        assert info.training == "training-free" and info.weights_key == "backbone", name
        assert "dinov2" in info.released.lower(), name
    result = invoke("ls", "detectors")
    assert result.exit_code == 0 and "minder" in result.output and "contrastive-blur" in result.output
    assert "--set backbone=SPEC" in result.output  # a backbone spec (PROVIDER:ARCH@SOURCE), not a bare path


@pytest.mark.parametrize("detector", ["minder", "contrastive-blur"])
def test_missing_backbone_file_is_one_error_line_and_nothing_is_written(detector: str, folder_root: Path,
                                                                        detbench_home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "dinov2_vitl14_pretrain.pth"
    result = invoke("run", detector, "--suite", "folder", "--root", str(folder_root), "--protocol", "eval", "-q",
                    "--set", f"backbone=timm:vit_large_patch14_dinov2@{missing}")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(missing) in errors[0], result.output
    assert [p for p in detbench_home.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("setting,words", [
    ("blur.sigma=0", "blur.sigma"), ("blur.kernel=4", "blur.kernel"), ("blur.amount=-1", "blur.amount"),
    ("noise=-0.1", "noise"), ("combine=mean", "combine"), ("blur.against=noisy", "blur.against"),
])
def test_settings_are_checked_before_any_work(setting: str, words: str, folder_root: Path,
                                              detbench_home: Path) -> None:
    result = invoke("run", "minder", "--suite", "folder", "--root", str(folder_root), "--protocol", "eval", "-q",
                    "--set", setting)
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output
    assert [p for p in detbench_home.rglob("*") if p.is_file()] == []


def test_python_api_runs_both_and_the_scores_agree_with_minders_parts(folder_root: Path) -> None:
    """``detbench.run`` (the Python API) scores both; MINDER's score is the per-image minimum of RIGID's and
    Contrastive Blur's on the same images and seed (one forward pass per batch, the same numbers)."""
    import detbench

    common = {"backbone": "timm:vit_small_patch14_dinov2@random", "input_size": 28, "noise": 0.4}
    runs = {name: detbench.run(name, suite="folder", root=folder_root, protocol="eval", bootstrap=0,
                               settings={k: v for k, v in common.items() if name != "contrastive-blur" or k != "noise"})
            for name in ("rigid", "contrastive-blur", "minder")}
    scores = {name: run.scores.set_index("image_id")["score"]
              for name, run in runs.items()}
    parts = np.minimum(scores["rigid"], scores["contrastive-blur"].loc[scores["rigid"].index])
    np.testing.assert_allclose(scores["minder"].loc[parts.index], parts, rtol=1e-5, atol=1e-7)
    assert (scores["minder"] < scores["rigid"]).any() or (scores["minder"] < scores["contrastive-blur"]).any()
