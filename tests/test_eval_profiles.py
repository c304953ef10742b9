"""Suite evaluation conventions (eval profiles): the originals' transforms, and how runs carry them."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from cli_helpers import invoke
from PIL import Image
from replicas import build_aigcdetect

from detbench.data import images
from detbench.data.preprocess import EVAL_PROFILES, EvalProfile, tile_to
from detbench.kit.detector import Detector, RunContext
from detbench.registry import DETECTORS


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def translate_duplicate(img: Image.Image, crop: int) -> Image.Image:
    """NPR README's GenImage transform, written from its published semantics."""
    if min(img.size) >= crop:
        return img
    width, height = img.size
    new = Image.new("RGB", (width * math.ceil(crop / width), height * math.ceil(crop / height)))
    for i in range(0, new.width, width):
        for j in range(0, new.height, height):
            new.paste(img, (i, j))
    return new


def aigc_custom_resize(img: Image.Image) -> Image.Image:
    """AIGCDetectBenchmark ``data/process.py`` ``custom_resize`` as ``processing()`` calls it (``rz_interp``
    bilinear, ``loadSize`` 256): ``TF.resize(img, 256, interpolation=Image.BILINEAR)``, an int size, so the
    shorter side becomes 256 and the aspect ratio is kept. (``data/datasets.py`` defines a square
    ``custom_resize`` too, but ``processing()`` resolves the name in its own module, ``process.py``.)"""
    return TF.resize(img, 256, interpolation=Image.BILINEAR)


ORIGINALS = {  # profile -> the original evaluation transform (before ToTensor + Normalize)
    "native": lambda img: img,
    "center-crop-224": T.CenterCrop(224),
    "resize-256": T.Resize((256, 256)),
    "resize-256-center-crop-224": T.Compose([T.Lambda(aigc_custom_resize), T.CenterCrop(224)]),
    "tile-center-crop-224": T.Compose([T.Lambda(lambda img: translate_duplicate(img, 224)), T.CenterCrop(224)]),
}


@pytest.mark.parametrize("name", sorted(ORIGINALS))
@pytest.mark.parametrize("size", [(301, 199), (100, 61), (224, 224), (513, 90)])
def test_profiles_match_the_original_transforms(name: str, size: tuple[int, int]) -> None:
    img = noise(*size, seed=size[0])
    ours, theirs = EVAL_PROFILES[name].apply(img), ORIGINALS[name](img)
    assert ours.size == theirs.size and np.array_equal(np.asarray(ours), np.asarray(theirs))
    assert EVAL_PROFILES[name].native_size == (name == "native")
    assert EVAL_PROFILES[name].source


def test_resize_policy_is_part_of_the_profile_identity() -> None:
    assert EVAL_PROFILES["resize-256-center-crop-224"].identity()["resize_policy"] == "shorter"
    assert EVAL_PROFILES["resize-256"].identity()["resize_policy"] == "stretch"
    with pytest.raises(ValueError, match="resize_policy"):
        EvalProfile("x", "y", resize=256, resize_policy="none")


def test_tile_leaves_large_images_alone() -> None:
    img = noise(300, 230)
    assert tile_to(img, 224) is img and tile_to(noise(50, 300), 224).size == (250, 300)


@dataclass(frozen=True)
class ProbeConfig:
    pass


class ProfileProbe(Detector):
    """Scores each image by its width after the suite's profile: shows which profile predict() received."""

    name = "profile-probe"
    version = 1
    Config = ProbeConfig
    follows_eval_profiles = True

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict:
        return {}

    def predict(self, rows: pd.DataFrame, ctx: RunContext) -> tuple[np.ndarray, dict[int, str]]:
        out = np.empty(len(rows))
        for i, (path, generator) in enumerate(zip(rows["path"], rows["generator"], strict=True)):
            img = images.load_rgb(Path(ctx.suite_root) / path)
            profile = ctx.eval_profile_for(generator)
            out[i] = (profile.apply(img) if profile else img).width / 1000
        return out, {}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "state.json").write_text("{}")

    def load(self, directory: Path) -> None:
        json.loads((directory / "state.json").read_text())


@pytest.fixture
def probe():
    DETECTORS.register("profile-probe")(ProfileProbe)
    yield
    DETECTORS.unregister("profile-probe")


def test_runs_hand_the_suite_profile_to_detectors_that_follow_it(probe, tmp_path: Path) -> None:
    root = str(build_aigcdetect(tmp_path / "aigc", train_classes=("car", "cat", "chair", "horse"), n=1).root)
    own = invoke("run", "profile-probe", "--suite", "aigcdetect", "--root", root, "--bootstrap", "0", "-q")
    assert own.exit_code == 0, own.output
    native = invoke("run", "profile-probe", "--suite", "aigcdetect", "--root", root, "--bootstrap", "0", "-q",
                    "--set", "suite.eval_profile=native")  # fmt: skip
    assert native.exit_code == 0, native.output
    cropped = invoke("run", "profile-probe", "--suite", "aigcdetect", "--root", root, "--bootstrap", "0", "-q",
                     "--set", "suite.eval_profile=resize-256-center-crop-224")  # fmt: skip
    assert cropped.exit_code == 0, cropped.output
    home = Path(os.environ["DETBENCH_HOME"])
    runs = {r["eval_profiles"].get("adm", "none"): r for r in
            (json.loads(p.read_text()) for p in home.glob("runs/aigcdetect/profile-probe/*/run.json"))}  # fmt: skip
    assert set(runs) == {"none", "native", "resize-256-center-crop-224"}
    assert runs["none"]["run_id"] != runs["native"]["run_id"]
    assert runs["native"]["fit_id"] == runs["resize-256-center-crop-224"]["fit_id"]  # evaluation only
    scores = {k: pd.read_parquet(Path(r["paths"]["run"]) / "scores.parquet") for k, r in runs.items()}
    ok = scores["native"]["status"] == "ok"
    assert set(scores["native"].loc[ok, "score"]) == {0.015, 0.017}  # the replica's native widths
    assert set(scores["resize-256-center-crop-224"].loc[ok, "score"]) == {0.224}


def test_detectors_that_do_not_follow_profiles_are_not_keyed_by_them(tmp_path: Path) -> None:
    root = str(build_aigcdetect(tmp_path / "aigc", train_classes=("car", "cat", "chair", "horse"), n=1).root)
    args = ["run", "linear-probe", "--suite", "aigcdetect", "--root", root,
            "--set", "backbone=open_clip:detbench-tiny-vit@random", "--bootstrap", "0", "-q"]  # fmt: skip
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    again = invoke(*args, "--set", "suite.eval_profile=center-crop-224")
    assert again.exit_code == 0 and "reused" in again.output
    [record] = [json.loads(p.read_text()) for p in Path(os.environ["DETBENCH_HOME"]).glob("runs/*/*/*/run.json")]
    assert record["eval_profiles"] == {}
