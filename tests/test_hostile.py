"""Hostile inputs end to end: a scraped-looking ``folder`` tree through ``detbench index``, ``run`` and
``predict`` (CLI, bundled EfficientNet-Lite0 backbone at 64 px), plus the loud failures of bad roots,
protocols and options. Unit tests of each hostile file live in test_images.py."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke
from hostile_tree import HostileTree, build_hostile_tree
from replicas import build_folder, write_broken

import detbench.engine.plan

FAST = ["--set", "backbone=timm:efficientnet_lite0@bundled", "--set", "crop=64", "-q"]



def run_folder(root: Path, protocol: str = "train-on-alpha", *extra: str):
    args = ["run", "linear-probe", "--suite", "folder", "--root", str(root), "--protocol", protocol]
    return invoke(*args, *FAST, *extra)


def only(paths: list[Path]) -> Path:
    assert len(paths) == 1, paths
    return paths[0]


@pytest.fixture
def tree(tmp_path: Path) -> HostileTree:
    return build_hostile_tree(tmp_path / "scraped")


def test_index_keeps_every_bad_file_with_status_and_reason(tree: HostileTree, detbench_home: Path) -> None:
    result = invoke("index", "folder", "--root", str(tree.root))
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(only(list(detbench_home.glob("indexes/folder/*/index.parquet")))).set_index("path")

    assert len(rows) == len(tree.good) + len(tree.cases)  # nothing dropped, nothing walked twice
    assert not any("dir_loop" in p for p in rows.index)  # the directory symlink loop is entered once only
    assert (rows.loc[tree.good, "status"] == "ok").all()
    for kind, case in tree.cases.items():
        row = rows.loc[case.path]
        assert row["status"] == case.status, (kind, row["status"], row["reason"])
        if case.status != "ok":
            assert isinstance(row["reason"], str) and row["reason"], kind
    assert rows.loc[tree.cases["symlink-loop"].path, "reason"] == "symlink loop"
    assert rows.loc[tree.cases["dangling-symlink"].path, "reason"] == "dangling symlink"
    assert "100000x100000" in rows.loc[tree.cases["decompression-bomb"].path, "reason"]
    assert rows.loc[tree.cases["wrong-extension"].path, "format"] == "png"
    rotated = rows.loc[tree.cases["exif-rotated"].path]
    assert (rotated["width"], rotated["height"]) == (48, 32)  # as stored; orientation is applied on load

    bad = sum(case.status != "ok" for case in tree.cases.values())
    assert f"{bad} unusable files" in result.output
    for status in ("empty", "truncated", "undecodable", "too_large", "not_a_file"):
        assert status in result.output


def test_run_and_predict_score_odd_images_and_count_every_skip(
    tree: HostileTree, detbench_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    split_rows = detbench.engine.plan.split_rows

    def mutate_after_indexing(*args, **kwargs):
        tree.after_indexing()  # the run has indexed the tree: now delete one file and rewrite another
        return split_rows(*args, **kwargs)

    monkeypatch.setattr(detbench.engine.plan, "split_rows", mutate_after_indexing)
    result = run_folder(tree.root)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output

    run_dir = only(list(detbench_home.glob("runs/folder/linear-probe/*/run.json"))).parent
    record = json.loads((run_dir / "run.json").read_text())
    scores = pd.read_parquet(run_dir / "scores.parquet").set_index("path")
    for kind, case in tree.eval_cases.items():
        row = scores.loc[case.path]
        if case.skip is None:
            assert np.isfinite(row["score"]) and row["status"] == "ok", (kind, row["status"])
        else:
            assert np.isnan(row["score"]) and row["status"].startswith(case.skip), (kind, row["status"])
    good_eval = [p for p in tree.good if p.startswith("test/")]
    assert np.isfinite(scores.loc[good_eval, "score"]).all()

    expected = Counter(c.skip for c in tree.eval_cases.values() if c.skip)
    counts = record["counts"]
    assert counts["eval_skipped"] == sum(expected.values())
    assert counts["skipped_reasons"] == dict(expected)
    assert counts["train"]["skipped"] == 2
    assert counts["train"]["skipped_reasons"] == {"empty": 1, "undecodable": 1}
    # the training file deleted after indexing is left out of the fit, not fatal
    assert record["fit"]["n_train_used"] + record["fit"]["n_heldout_used"] == 16

    text = " ".join(result.output.split())
    assert f"{sum(expected.values())} evaluation images skipped:" in text
    assert "2 training images skipped: 1 empty, 1 undecodable" in text
    for reason, n in expected.items():
        assert f"{n} {reason}" in text

    # the rewritten file was not scored, so nothing was cached under the id of its old bytes
    index = pd.read_parquet(Path(record["paths"]["index"]) / "index.parquet").set_index("path")
    old_id = index.loc[tree.cases["changed-after-index"].path, "image_id"]
    cached = {i for f in detbench_home.glob("features/*/*.ids.npy") for i in np.load(f).tolist()}
    assert old_id not in cached and index.loc[tree.good[0], "image_id"] in cached

    # `detbench predict` with the trained run: unreadable files reported one by one, the others scored
    files = [tree.root / c.path for c in tree.eval_cases.values()]
    out = tmp_path / "pred.csv"
    predicted = invoke("predict", record["run_id"][:16], *map(str, files), "--csv", str(out), "-q")
    assert predicted.exit_code == 0, predicted.output
    predictions = pd.read_csv(out, keep_default_na=False)
    assert len(predictions) == len(files)
    for (kind, case), row in zip(tree.eval_cases.items(), predictions.to_dict("records"), strict=True):
        assert Path(row["file"]).name == Path(case.path).name
        usable = case.status == "ok" and kind != "deleted-after-index"
        assert (row["error"] == "") == usable, (kind, row)
        assert (row["score"] != "") == usable, (kind, row)

    # running again re-indexes: the rewritten file gets a new id and a score, the deleted ones are gone
    monkeypatch.setattr(detbench.engine.plan, "split_rows", split_rows)
    again = run_folder(tree.root)
    assert again.exit_code == 0, again.output
    finished = [p.parent for p in detbench_home.glob("runs/folder/linear-probe/*/run.json")]
    rerun_dir = only([d for d in finished if d != run_dir])
    rescored = pd.read_parquet(rerun_dir / "scores.parquet").set_index("path")
    assert np.isfinite(rescored.loc[tree.cases["changed-after-index"].path, "score"])
    assert tree.cases["deleted-after-index"].path not in rescored.index


# ------------------------------------------------------------------------------------------ loud failures


def test_root_without_images_names_what_it_found(tmp_path: Path, detbench_home: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "unlabelled" / "sdxl").mkdir(parents=True)
    write_broken(tmp_path / "unlabelled" / "sdxl" / "a.png", "empty")
    for root, words in (
        (empty, ["no images", "(empty)"]),
        (tmp_path / "unlabelled", ["0_real/1_fake", "sdxl/"]),
        (tmp_path / "missing", ["not a directory"]),
    ):
        for args in (
            ["index", "folder", "--root", str(root)],
            ["run", "linear-probe", "--suite", "folder", "--root", str(root), "--protocol", "x", *FAST],
        ):
            result = invoke(*args)
            assert result.exit_code == 2, result.output
            assert "Traceback" not in result.output
            for word in words:
                assert word in result.output, (root, word, result.output)
    assert not list(detbench_home.glob("runs/*"))


def test_protocol_without_usable_training_images_names_what_was_found(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    build_folder(root, generators=("alpha", "beta"), splits=("test",))
    build_folder(root, generators=("alpha",), splits=("train",), n=3)
    for path in (root / "train" / "alpha" / "0_real").iterdir():  # every real training image is broken
        write_broken(path, "empty")

    carved = run_folder(root, "train-on-beta")  # beta has no train split: a seeded part of its test images trains
    assert carved.exit_code == 0, carved.output
    assert "│ alpha" in carved.output and "│ beta" not in carved.output  # beta's remaining images are not evaluated
    missing = run_folder(root, "train-on-gamma")
    assert missing.exit_code == 2, missing.output
    assert "unknown generator(s) gamma" in missing.output and "alpha, beta" in missing.output

    one_class = run_folder(root, "train-on-alpha")
    assert one_class.exit_code == 2, one_class.output
    text = " ".join(one_class.output.split())
    assert "alpha/train with both real and fake images" in text
    assert "alpha/train (3)" in text and "beta/test (4)" in text  # what the index does hold (usable)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["run", "linear-probe", "--suite", "demo", "--set", "bogus=1"],
            ["'bogus'", "Valid keys", "backbone"],
        ),
        (["run", "linear-probe", "--suite", "demo", "--set", "suite.n_trian=4"], ["n_trian", "n_train"]),
        (["run", "linear-probe", "--suite", "demo", "--set", "backbone=resnet50"], ["bad backbone spec"]),
        (
            ["run", "linear-probe", "--suite", "demo", "--set", "backbone=tf:x@y"],
            ["unknown backbone provider"],
        ),
        (["run", "linear-probe", "--suite", "demo", "--set", "size=7"], ["32 <= size <= 512"]),
        (["run", "mpft", "--suite", "demo", "--set", "size=60"], ["size a multiple of 8", "size=60"]),
        (["run", "linear-probe", "--suite", "demo", "--seed", "-1"], ["--seed must be in 0..", "got -1"]),
        (["run", "linear-probe", "--suite", "demo", "--set", "c_grid=nan"], ["c_grid must be a finite number"]),
        (["run", "linear-probe", "--suite", "demo", "--set", "max_iter=-1"], ["max_iter must be >= 1"]),
        (["run", "linear-probe", "--suite", "demo", "--set", "crop=-1"], ["crop must be >= 0"]),
        (["run", "linear-probe", "--suite", "demo", "--set", "batch_size=0"], ["batch_size must be >= 1"]),
        (["run", "univfd", "--suite", "demo", "--set", "crop=-1"], ["crop >= 0"]),
        (["run", "mpft", "--suite", "demo", "--set", "lr_head=1e309"], ["lr_head must be a finite number"]),
        (["run", "linear-probe", "--suite", "demo", "--batch-size", "0"], ["--batch-size must be >= 1"]),
        (["run", "linear-probe", "--suite", "demo", "--workers", "-1"], ["--workers must be >= 0"]),
        (["run", "linear-probe", "--suite", "demo", "--nproc", "0"], ["--nproc must be >= 1"]),
        (["sweep", "linear-probe", "--suite", "demo", "-p", "jpeg:90", "--seed", "-2"], ["--seed must be in"]),
        (  # the demo's crop (128) does not fit a fixed-size ViT: refused in one line, naming the fix
            ["run", "linear-probe", "--suite", "demo", "--set", "backbone=open_clip:detbench-tiny-vit@random"],
            ["fixed input size of 224 px", "crop=128", "--set crop=224"],
        ),
        (["bench", "--backbone", "resnet50"], ["bad backbone spec 'resnet50'"]),
        (["bench", "--crop", "0"], ["--crop 0"]),
        (["index", "demo", "--set", "bogus=1"], ["'bogus'", "n_train"]),
        (
            [
                "run",
                "linear-probe",
                "--suite",
                "folder",
                "--root",
                "/nonexistent",
                "--set",
                "split_default=../x",
            ],
            ["split_default must be a split name"],
        ),
    ],
)
def test_options_are_validated_before_any_work(
    args: list[str], words: list[str], detbench_home: Path
) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    for word in words:
        assert word in text
    for sub in ("demo", "indexes", "features", "runs"):  # nothing built, indexed or extracted first
        assert not (detbench_home / sub).exists() or not any((detbench_home / sub).iterdir()), sub
