"""Tiled evaluation (``--set eval.tiles`` / ``eval.fuse``): the boxes, the loader's crops, and runs whose fused scores
equal scoring each tile as an image of its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import invoke
from PIL import Image
from resnet_reference import calibrate_head, random_resnet_state, resnet_features, to_normalised_tensor

from detbench.data.loading import ImageRowsDataset
from detbench.data.perturbations import parse_perturbation
from detbench.data.tiles import Tiling, parse_tiling, tile_boxes
from detbench.errors import ConfigError
from detbench.probabilities import logit, sigmoid

# (generator, label folder, name, width, height): grid:32 cuts 3 x 2, 2 x 2, 1 (smaller than a tile) and 2 x 2 tiles
IMAGES = [
    ("gen", "0_real", "a.png", 80, 50),
    ("gen", "1_fake", "b.png", 64, 64),
    ("gen", "1_fake", "c.png", 20, 30),
    ("gen", "0_real", "d.png", 33, 40),
]
SIDE = 32


def pixels(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, w)[None, :, None] + np.linspace(0, 55, h)[:, None, None]
    return np.clip(ramp + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiles")
    for seed, (gen, label, name, w, h) in enumerate(IMAGES):
        (root / gen / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels(w, h, seed)).save(root / gen / label / name)
    return root


def hand_tiles(root: Path) -> dict[str, list[Image.Image]]:
    """Each image's grid tiles, cut by hand with PIL: every SIDE px from the top-left, the last one at the edge."""
    out = {}
    for gen, label, name, w, h in IMAGES:
        img = Image.open(root / gen / label / name).convert("RGB")
        xs = [0] if w <= SIDE else [*range(0, w - SIDE, SIDE), w - SIDE]
        ys = [0] if h <= SIDE else [*range(0, h - SIDE, SIDE), h - SIDE]
        out[f"{gen}/{label}/{name}"] = [img.crop((x, y, min(x + SIDE, w), min(y + SIDE, h))) for y in ys for x in xs]
    return out


@pytest.fixture(scope="module")
def checkpoint(image_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random ResNet-50 weights in CNNSpot's layout, the head scaled so that the tiles' logits spread."""
    sd = random_resnet_state(stem_kernel=7, stages=4, head="fc", head_scale=1.0, seed=5)
    full = [t for tiles in hand_tiles(image_root).values() for t in tiles if t.size == (SIDE, SIDE)]
    with torch.no_grad():
        feats = torch.cat([resnet_features(to_normalised_tensor(np.asarray(t))[None], sd, stem_kernel=7, stages=4)
                           for t in full])
    calibrate_head(sd, feats, "fc")
    path = tmp_path_factory.mktemp("weights") / "tiles.pth"
    torch.save({"model": sd}, path)
    return path


def run(root: Path, home: Path, checkpoint: Path, *sets: str) -> tuple[pd.DataFrame, dict]:
    args = ["run", "cnnspot", "--suite", "folder", "--root", str(root), "--protocol", "eval", "--bootstrap", "0",
            "-q", "--set", f"weights={checkpoint}", "--set", f"eval_crop={SIDE}"]
    for item in sets:
        args += ["--set", item]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    records = [json.loads(p.read_text()) for p in (home / "runs" / "folder" / "cnnspot").glob("*/run.json")]
    want = dict(item.split("=", 1) for item in sets)
    [record] = [r for r in records if {k: v for k, v in r["settings"].items() if k.startswith("eval.")} == want]
    return pd.read_parquet(Path(record["paths"]["run"]) / "scores.parquet"), record


def test_grid_scores_equal_scoring_each_tile_as_an_image(image_root: Path, checkpoint: Path, tmp_path: Path,
                                                         detbench_home: Path) -> None:
    tiles = hand_tiles(image_root)
    crops = tmp_path / "crops"
    for rel, parts in tiles.items():
        for k, tile in enumerate(parts):
            target = crops / Path(rel).parent / f"{Path(rel).stem}_{k}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            tile.save(target)
    by_crop, _ = run(crops, detbench_home, checkpoint)
    assert (by_crop["status"] == "ok").all() and len(by_crop) == sum(map(len, tiles.values())) == 15
    tile_scores = {rel: np.array([by_crop.set_index("path").loc[f"{Path(rel).parent}/{Path(rel).stem}_{k}.png",
                                                                 "score"] for k in range(len(parts))])
                   for rel, parts in tiles.items()}
    assert 0.05 < np.concatenate(list(tile_scores.values())).std()  # the tiles' scores differ: max != mean
    hand = {"mean": np.mean, "max": np.max, "logit-mean": lambda p: float(sigmoid(np.mean(logit(p))))}
    for rule, fuse in hand.items():
        scores, record = run(image_root, detbench_home, checkpoint, f"eval.tiles=grid:{SIDE}", f"eval.fuse={rule}")
        assert (scores["status"] == "ok").all()
        expected = scores["path"].map(lambda rel: fuse(tile_scores[rel])).to_numpy(dtype=float)  # noqa: B023
        np.testing.assert_allclose(scores["score"].to_numpy(dtype=float), expected, rtol=0, atol=1e-6)
        assert scores.set_index("path")["n_tiles"].to_dict() == {rel: len(t) for rel, t in tiles.items()}
        assert record["run_key"]["tiles"] == {"tiles": f"grid:{SIDE}", "fuse": rule, "version": 1}
        assert record["tiles"] == {"tiles": f"grid:{SIDE}", "fuse": rule, "chosen_by": "--set eval.tiles",
                                   "sides": {"gen": SIDE}}
        assert record["cost"]["tiles_per_image"] == 15 / 4


def test_none_keeps_the_run_id_and_the_fusion_is_keyed(image_root: Path, checkpoint: Path,
                                                       detbench_home: Path) -> None:
    whole, record = run(image_root, detbench_home, checkpoint)
    assert "tiles" not in record["run_key"] and record["tiles"] is None and "n_tiles" not in whole
    again = invoke("run", "cnnspot", "--suite", "folder", "--root", str(image_root), "--protocol", "eval",
                   "--bootstrap", "0", "-q", "--set", f"weights={checkpoint}", "--set", f"eval_crop={SIDE}",
                   "--set", "eval.tiles=none")  # fmt: skip
    assert again.exit_code == 0 and f"{record['run_id'][:16]}" in again.output and "(reused)" in again.output
    five_scores, five = run(image_root, detbench_home, checkpoint, "eval.tiles=five", "eval.fuse=max")
    assert five["run_id"] != record["run_id"] and five["fit_id"] == record["fit_id"]
    assert five["tiles"]["sides"] == {"gen": SIDE} and set(five_scores["n_tiles"]) == {5}
    assert not np.allclose(five_scores["score"], whole["score"])  # the corners count
    import detbench

    predicted = detbench.predict(five["run_id"], image_root)  # predict cuts the run's tiles too
    by_name = dict(zip(predicted["file"].map(lambda f: Path(f).name), predicted["score"], strict=True))
    np.testing.assert_allclose(five_scores["path"].map(lambda p: by_name[Path(p).name]), five_scores["score"],
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [(80, 50), (64, 64), (33, 90)])
def test_five_and_center_boxes_are_torchvision_s(size: tuple[int, int]) -> None:
    from torchvision.transforms import CenterCrop, FiveCrop

    img = Image.fromarray(pixels(*size, seed=1))
    five = [img.crop(box) for box in tile_boxes("five", SIDE, *img.size)]
    assert len(five) == 5
    for ours, theirs in zip(five, FiveCrop(SIDE)(img), strict=True):
        assert np.array_equal(np.asarray(ours), np.asarray(theirs))
    [center] = [img.crop(box) for box in tile_boxes("center", SIDE, *img.size)]
    assert np.array_equal(np.asarray(center), np.asarray(CenterCrop(SIDE)(img)))


def test_grid_boxes_cover_the_image_and_small_sides_are_kept_whole() -> None:
    assert tile_boxes("grid", 32, 80, 50) == [(0, 0, 32, 32), (32, 0, 64, 32), (48, 0, 80, 32),
                                              (0, 18, 32, 50), (32, 18, 64, 50), (48, 18, 80, 50)]
    assert tile_boxes("grid", 32, 64, 32) == [(0, 0, 32, 32), (32, 0, 64, 32)]
    assert tile_boxes("grid", 32, 20, 30) == [(0, 0, 20, 30)]
    assert tile_boxes("grid", 32, 20, 70) == [(0, 0, 20, 32), (0, 32, 20, 64), (0, 38, 20, 70)]
    assert tile_boxes("five", 32, 20, 70)[1] == (0, 0, 20, 32)  # a side below the tile: spanned whole, not padded
    assert Tiling("grid", 32).count(80, 50) == 6 == Tiling("grid", 32).count(50, 80)


def test_the_loader_perturbs_the_whole_image_then_crops_the_tile(tmp_path: Path) -> None:
    Image.fromarray(pixels(80, 50, seed=2)).save(tmp_path / "x.png")
    crop = parse_perturbation("crop:0.5")
    ids = ["img", Tiling("five").tile_id("img", 16, 1)]
    dataset = ImageRowsDataset(tmp_path, ["x.png", "x.png"], lambda im: torch.from_numpy(np.asarray(im).copy()),
                               image_ids=ids, perturb=crop)
    whole, tile = dataset[0][0].numpy(), dataset[1][0].numpy()
    assert whole.shape == (25, 40, 3)
    assert np.array_equal(tile, whole[0:16, 24:40])  # FiveCrop's top-right of the perturbed 40 x 25 image


@pytest.mark.parametrize(("tiles", "fuse"), [("grid:0", None), ("grid:x", None), ("six", None), ("five", "median"),
                                             ("none", "max")])
def test_bad_settings_are_refused(tiles: str, fuse: str | None) -> None:
    with pytest.raises(ConfigError):
        parse_tiling(tiles, fuse)


@pytest.mark.parametrize(("detector", "sets", "words"), [
    ("cnnspot", ["eval.tiles=grid:-4"], "eval.tiles must be one of"),
    ("cnnspot", ["eval.fuse=max"], "needs eval.tiles"),
    ("cnnspot", ["eval.tiles=five", "eval.fuse=median"], "eval.fuse must be one of"),
    ("cnnspot", ["eval.tile=five"], "unknown evaluation setting"),
    ("shortcut", ["eval.tiles=five"], "reads no pixels"),
    ("rigid", ["eval.tiles=five", "eval.fuse=logit-mean"], "not probabilities"),
])
def test_bad_values_end_in_one_error_line_before_any_work(detector: str, sets: list[str], words: str,
                                                          image_root: Path, detbench_home: Path) -> None:
    args = ["run", detector, "--suite", "folder", "--root", str(image_root), "--protocol", "eval"]
    result = invoke(*args, *[a for s in sets for a in ("--set", s)])
    assert result.exit_code == 2 and words in result.output, result.output
    assert result.output.strip().count("\n") == 0 and result.output.startswith("error:")
    assert not (detbench_home / "indexes").exists()  # refused before indexing


def test_center_needs_an_input_size(image_root: Path, checkpoint: Path) -> None:
    result = invoke("run", "cnnspot", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    "--set", f"weights={checkpoint}", "--set", "eval_crop=0", "--set", "eval.tiles=center")
    assert result.exit_code == 2 and "use eval.tiles=grid:SIZE" in result.output, result.output
    assert result.output.strip().count("\n") == 0


class _TileIds:
    """A stand-in detector for predict_tiled: scores each tile row by its tile number; tile 2 gets no score."""

    name = "tile-ids"

    def predict(self, rows: pd.DataFrame, ctx: object) -> tuple[np.ndarray, dict[int, str]]:
        k = np.array([int(i.rsplit(":", 1)[1]) for i in rows["image_id"]])
        return np.where(k == 2, np.nan, (k + 1) / 10), {}

    def input_size(self, ctx: object, generator: str) -> int:
        return 8


def _ctx(root: Path, perturb: str | None = None) -> object:
    from detbench.kit.detector import RunContext
    from detbench.progress import Phases

    return RunContext(suite_root=root, suite_name="t", device="cpu", seed=0, run_dir=root, workers=0,
                      phases=Phases(enabled=False, warnings=False),
                      perturbation=parse_perturbation(perturb) if perturb else None)


def test_a_grid_counts_the_tiles_of_the_perturbed_image_and_a_failed_tile_fails_its_image(tmp_path: Path) -> None:
    from detbench.kit.tiling import predict_tiled

    for name, (w, h) in {"big.png": (80, 50), "small.png": (16, 16)}.items():
        Image.fromarray(pixels(w, h, seed=3)).save(tmp_path / name)
    rows = pd.DataFrame({"image_id": ["b", "s"], "path": ["big.png", "small.png"], "generator": "g",
                         "width": [80, 16], "height": [50, 16]})
    grid = Tiling("grid", 16, "max")
    scores, failures, n_tiles = predict_tiled(_TileIds(), rows, _ctx(tmp_path), grid)  # type: ignore[arg-type]
    assert list(n_tiles) == [19, 1] and np.isnan(scores[0]) and scores[1] == 0.1  # 5 x 4 tiles by the index
    assert failures == {0: "no_score: the detector returned NaN or infinity (tile 3 of 20)"}
    _, failures, n_tiles = predict_tiled(_TileIds(), rows, _ctx(tmp_path, "downscale:0.5"),  # type: ignore[arg-type]
                                         grid)
    assert list(n_tiles) == [5, 1] and failures[0].endswith("(tile 3 of 6)")  # 40 x 25 after the perturbation: 3 x 2
    scores, failures, n_tiles = predict_tiled(_TileIds(), rows, _ctx(tmp_path), Tiling("center"))  # type: ignore
    assert failures == {} and list(scores) == [0.1, 0.1]
