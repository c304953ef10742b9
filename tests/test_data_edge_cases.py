"""Ordinary data that used to give a wrong number silently or crash a run after all the work: colliding fast ids,
evaluating training images, generators dropped from the table, odd file names, oversized images under a
perturbation or a resize, reserved generator names, PNGs with large metadata, one-image label groups."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import FAST_FOLDER, invoke
from PIL import Image, PngImagePlugin
from replicas import build_folder, write_broken, write_image

import detbench.detectors.linear_probe
from detbench.data import images
from detbench.data.index import check_unique_ids
from detbench.data.preprocess import Preprocess
from detbench.errors import DataError

FAST = FAST_FOLDER


def run_folder(root: Path, *extra: str, protocol: str = "train-on-a"):
    return invoke("run", "linear-probe", "--suite", "folder", "--root", str(root), "--protocol", protocol,
                  *FAST, *extra)


def record_of(home: Path) -> dict:
    (path,) = home.glob("runs/folder/linear-probe/*/run.json")
    return json.loads(path.read_text())


def scores_of(home: Path) -> pd.DataFrame:
    (path,) = home.glob("runs/folder/linear-probe/*/scores.parquet")
    return pd.read_parquet(path).set_index("path")


def nothing_extracted(home: Path) -> bool:
    return not list(home.glob("features/*/*.npy")) and not list(home.glob("runs/*/*/*/run.json"))


# ------------------------------------------------------------------------------------------ silent wrong numbers


def test_fast_index_ids_differ_for_same_name_size_and_mtime(tmp_path: Path, detbench_home: Path) -> None:
    """Regression: fast ids hashed size + mtime + base name, so 0_real/x.bmp and 1_fake/x.bmp of one archive shared
    an id and their cached features: a perfect detector scored 50 %."""
    root = tmp_path / "tree"
    for label, value in (("0_real", 0), ("1_fake", 255)):
        path = root / "gen" / label / "x.bmp"
        path.parent.mkdir(parents=True)
        Image.new("RGB", (16, 16), (value,) * 3).save(path)  # fixed-size BMPs: equal sizes
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # mtimes from the archive
    result = invoke("index", "folder", "--root", str(root), "--fast")
    assert result.exit_code == 0, result.output
    (index,) = detbench_home.glob("indexes/folder/*/index.parquet")
    assert pd.read_parquet(index)["image_id"].nunique() == 2


def test_fast_ids_shared_by_different_files_are_refused() -> None:
    rows = pd.DataFrame({"path": ["a/1.png", "b/1.png", "a/1.png"], "image_id": ["x", "x", "x"]})
    with pytest.raises(DataError, match="collide"):
        check_unique_ids(rows)
    check_unique_ids(rows.iloc[[0, 2]])  # one file listed twice (a shared real pool) is fine


def test_evaluating_the_training_images_is_refused(tmp_path: Path, detbench_home: Path) -> None:
    """Regression: --set split_default=train put every image in the train split, which the protocol then also
    evaluated, without a word."""
    root = tmp_path / "tree"
    build_folder(root, generators=("a", "b"), n=3)  # no split folders
    result = run_folder(root, "--set", "split_default=train")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "would evaluate" in text and "of the images it trains on" in text and "Traceback" not in text
    assert nothing_extracted(detbench_home)


def test_a_generator_whose_images_all_fail_is_reported_not_dropped(tmp_path: Path, detbench_home: Path) -> None:
    root = tmp_path / "tree"
    build_folder(root, generators=("a", "b"), splits=("train", "test"), n=3)
    for path in (root / "test" / "b").rglob("*.*"):
        write_broken(path, "empty")
    result = run_folder(root)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning: generator b: none of its 6 evaluation images could be scored (6 empty)" in text
    assert record_of(detbench_home)["missing_eval_generators"] == ["b"]


def test_a_run_that_scores_nothing_names_the_generators_and_reasons(tmp_path: Path, detbench_home: Path) -> None:
    """The message "no evaluation image could be scored" names the generators and why."""
    root = tmp_path / "tree"
    build_folder(root, generators=("a", "b"), splits=("train", "test"), n=3)
    for i, path in enumerate(sorted((root / "test").rglob("*.*"))):
        write_broken(path, "empty" if i % 3 else "text")
    result = run_folder(root)
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert "error: no evaluation image could be scored: 12 images of 2 generators, a (6: 4 empty, 2 undecodable), " \
           "b (6: 4 empty, 2 undecodable)" in line, line
    assert "Traceback" not in line


def test_a_score_the_detector_could_not_give_is_counted_as_skipped(
    tmp_path: Path, detbench_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NaN score without a failure reason was left 'ok' and silently dropped from the metrics."""
    root = tmp_path / "tree"
    build_folder(root, generators=("a", "b"), splits=("train", "test"), n=3)
    decision = detbench.detectors.linear_probe.LinearProbe.decision

    def first_is_nan(self, feats: np.ndarray) -> np.ndarray:
        out = decision(self, feats)
        out[:1] = np.nan
        return out

    monkeypatch.setattr(detbench.detectors.linear_probe.LinearProbe, "decision", first_is_nan)
    assert run_folder(root).exit_code == 0
    record = record_of(detbench_home)
    assert record["counts"]["skipped_reasons"] == {"no_score": 1}
    assert (scores_of(detbench_home)["status"] == "no_score: the detector returned NaN or infinity").sum() == 1


# ------------------------------------------------------------------------------------------ the split


@pytest.mark.parametrize(("n_real", "n_fake"), [(1, 3), (1, 1)])
def test_too_few_training_images_of_a_class_fail_before_any_work(
    tmp_path: Path, detbench_home: Path, n_real: int, n_fake: int
) -> None:
    """Regression: a one-image label group went wholly to the held-out split, leaving training with one class
    (or, with one real and one fake, no rows at all) and a traceback after feature extraction."""
    root = tmp_path / "tree"
    build_folder(root, generators=("b",), splits=("test",), n=2)
    for label, n in (("0_real", n_real), ("1_fake", n_fake)):
        for j in range(n):
            write_image(root / "train" / "a" / label / f"{j}.png", seed=j + 10 * n_real)
    result = run_folder(root)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "needs at least 2 usable real and 2 usable fake images" in text and f"{n_real} real" in text
    assert nothing_extracted(detbench_home)


# ------------------------------------------------------------------------------------------ crashes on ordinary data


def test_a_file_name_that_is_not_utf8_gets_a_status(tmp_path: Path, detbench_home: Path) -> None:
    """Regression: a non-UTF-8 file name crashed index, run and predict after probing everything."""
    root = tmp_path / "tree"
    build_folder(root, generators=("a", "b"), splits=("train", "test"), n=3)
    bad = os.fsencode(root / "test" / "b" / "1_fake") + b"/bad\xff.png"
    with open(bad, "wb") as fh:
        Image.new("RGB", (16, 16), (9, 9, 9)).save(fh, "PNG")
    indexed = invoke("index", "folder", "--root", str(root))
    assert indexed.exit_code == 0, indexed.output
    (index,) = detbench_home.glob("indexes/folder/*/index.parquet")
    row = pd.read_parquet(index).set_index("path").loc["test/b/1_fake/bad\\xff.png"]
    assert row["status"] == "bad_name" and "UTF-8" in row["reason"]

    result = run_folder(root)
    assert result.exit_code == 0, result.output
    assert record_of(detbench_home)["counts"]["skipped_reasons"] == {"bad_name": 1}
    predicted = invoke("predict", record_of(detbench_home)["run_id"][:16], str(root / "test" / "b"), "--csv",
                       str(tmp_path / "p.csv"), "-q")
    assert predicted.exit_code == 0, predicted.output
    files = pd.read_csv(tmp_path / "p.csv", keep_default_na=False).set_index("file")
    assert files.loc[str(root / "test" / "b" / "1_fake" / "bad\\xff.png"), "error"].startswith("bad_name: ")
    assert (files["error"] == "").sum() == len(files) - 1  # the others are scored


def test_jpeg_perturbation_of_a_very_wide_image_skips_it(tmp_path: Path, detbench_home: Path) -> None:
    """Regression: --perturb jpeg:Q on an image with a side over 65,500 px raised from Pillow inside the dataset;
    the run could never finish."""
    root = tmp_path / "tree"
    build_folder(root, generators=("a", "b"), splits=("train", "test"), n=3)
    Image.new("RGB", (65_600, 1), (200, 10, 10)).save(root / "test" / "b" / "1_fake" / "wide.png")
    result = run_folder(root, "--perturb", "jpeg:75")
    assert result.exit_code == 0, result.output
    status = scores_of(detbench_home).loc["test/b/1_fake/wide.png", "status"]
    assert status.startswith("too_large") and "JPEG" in status


def test_resize_never_inflates_an_image_past_the_pixel_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: --set resize=shorter made a 4 KB 1 x 1,000,000 strip 224 x 224,000,000 and died of memory; the
    pixel guard now also applies after resizing (a smaller guard keeps this test small)."""
    monkeypatch.setattr(images, "DEFAULT_MAX_PIXELS", 1_000_000)
    strip = Image.new("RGB", (1, 10_000))
    pp = Preprocess(crop=32, mean=(0.5,) * 3, std=(0.5,) * 3, resize="shorter")
    for transform in (pp.eval_transform(), pp.train_transform()):
        with pytest.raises(images.ImageError) as caught:
            transform(strip)
        assert caught.value.status == "too_large" and "32x320000" in caught.value.reason
    assert pp.eval_transform()(Image.new("RGB", (40, 50))).shape == (3, 32, 32)


@pytest.mark.parametrize("name", ["mean", "Worst"])
def test_reserved_generator_names_are_refused_at_index_time(tmp_path: Path, detbench_home: Path, name: str) -> None:
    """Regression: a generator folder named mean or worst failed after all the scoring."""
    root = tmp_path / "tree"
    build_folder(root, generators=("a", name), splits=("train", "test"), n=3)
    result = run_folder(root)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"generator name(s) '{name}'" in text and "reserved" in text and "rename" in text
    assert nothing_extracted(detbench_home)


def _png_with_metadata(kind: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    big = "{" + "x" * (2 * 1024 * 1024) + "}"  # a generator's workflow JSON, 2 MB
    kwargs: dict = {}
    if kind == "ztxt":
        info.add_text("workflow", big, zip=True)
    elif kind == "itxt":
        info.add_itxt("prompt", big, zip=True)
    else:
        kwargs["icc_profile"] = b"\0" * (2 * 1024 * 1024)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, "PNG", pnginfo=info, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["ztxt", "itxt", "icc"])
def test_pngs_with_large_metadata_chunks_are_usable(tmp_path: Path, kind: str) -> None:
    """Regression: PNGs with a text/ICC chunk over 1 MB (generated images carry their workflow) were marked
    undecodable, which dropped them from the fake class only."""
    path = tmp_path / "gen.png"
    path.write_bytes(_png_with_metadata(kind))
    before = PngImagePlugin.MAX_TEXT_CHUNK
    assert images.probe(path).status == "ok"
    assert images.load_rgb(path).getpixel((0, 0)) == (1, 2, 3)
    assert PngImagePlugin.MAX_TEXT_CHUNK == before  # PIL's own setting is left as it was
