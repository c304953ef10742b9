"""The shortcut floor: a metadata-only detector, trained like any other and, under --protocol eval, a bias probe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import detbench
from detbench.errors import DataError

FAST = {"bootstrap": 0, "workers": 0}


def _tree(root: Path, n: int, *, balanced: bool, seed: int = 0) -> Path:
    """``{train,test}/<gen>/{0_real,1_fake}``: noise images of random sizes. Unbalanced: reals JPEG, fakes PNG.
    Balanced: both classes draw format, size and EXIF from the same distribution (metadata says nothing)."""
    rng = np.random.default_rng(seed)
    exif = Image.Exif()
    exif[0x010F] = "maker"
    for split, generators in (("train", ("seen",)), ("test", ("seen", "other"))):
        for generator in generators:
            for label in (0, 1):
                folder = root / split / generator / ("1_fake" if label else "0_real")
                folder.mkdir(parents=True)
                for i in range(n):
                    w, h = (int(v) for v in rng.integers(12, 40, 2))
                    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
                    jpeg = bool(rng.integers(2)) if balanced else label == 0
                    extra = {"exif": exif.tobytes()} if balanced and rng.integers(2) else {}
                    if jpeg:
                        image.save(folder / f"{i:03d}.jpg", quality=int(rng.integers(70, 96)), **extra)
                    else:
                        image.save(folder / f"{i:03d}.png", **extra)
    return root


@pytest.fixture(scope="module")
def shortcut_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tree(tmp_path_factory.mktemp("shortcut"), 20, balanced=False)


@pytest.fixture(scope="module")
def balanced_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tree(tmp_path_factory.mktemp("balanced"), 40, balanced=True, seed=1)


def _mean(run: detbench.Run, metric: str) -> float:
    return float(run.metrics.set_index("generator").loc["mean", metric])


def test_a_format_shortcut_is_found_when_trained(shortcut_tree: Path) -> None:
    run = detbench.run("shortcut", "folder", root=shortcut_tree, protocol="train-on-seen", **FAST)
    assert _mean(run, "acc") >= 0.99 and _mean(run, "auc") >= 0.99
    assert not run.record["bias_probe"] and run.record["floor"]


def test_a_format_shortcut_is_found_by_the_bias_probe(shortcut_tree: Path) -> None:
    run = detbench.run("shortcut", "folder", root=shortcut_tree, protocol="eval", **FAST)
    assert run.record["bias_probe"] and run.record["fit"]["probe_folds"] == 5
    assert _mean(run, "acc") >= 0.99
    assert detbench.runs("folder")["detector"].tolist() == ["shortcut (bias probe)"]


def test_balanced_metadata_gives_chance(balanced_tree: Path) -> None:
    # 40 real and 40 fake test images per generator whose metadata is drawn alike for both classes: under the null
    # the AUC's standard deviation is sqrt((n0 + n1 + 1) / (12 n0 n1)) = 0.065, so [0.3, 0.7] is about 3 sd wide on
    # each side; a shortcut would put the AUC near 1.
    trained = detbench.run("shortcut", "folder", root=balanced_tree, protocol="train-on-seen", **FAST)
    probe = detbench.run("shortcut", "folder", root=balanced_tree, protocol="eval", **FAST)
    for run in (trained, probe):
        aucs = run.metrics.set_index("generator").loc[["seen", "other"], "auc"]
        assert aucs.between(0.3, 0.7).all(), aucs


def test_the_probe_scores_each_image_by_the_fold_model_that_did_not_see_it(shortcut_tree: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    from detbench.detectors.shortcut import metadata_features

    run = detbench.run("shortcut", "folder", root=shortcut_tree, protocol="eval", seed=3, **FAST)
    index = detbench.index("folder", root=shortcut_tree)
    for generator in ("seen", "other"):
        rows = index[(index["generator"] == generator) & (index["split"] == "test")]
        rows = rows.sort_values("path", kind="stable").reset_index(drop=True)
        y = rows["label"].to_numpy()
        expected = np.full(len(rows), np.nan)
        for train, test in StratifiedKFold(5, shuffle=True, random_state=3).split(np.zeros(len(y)), y):
            formats = sorted(set(rows.loc[train, "format"]))
            scaler = StandardScaler().fit(metadata_features(rows.loc[train], formats))
            model = LogisticRegression(random_state=3, max_iter=1000).fit(
                scaler.transform(metadata_features(rows.loc[train], formats)), y[train])
            expected[test] = model.predict_proba(scaler.transform(metadata_features(rows.loc[test], formats)))[:, 1]
        got = run.scores.set_index("path").loc[rows["path"], "score"].to_numpy(dtype=float)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_folds_never_score_an_item_they_trained_on() -> None:
    from detbench.detectors.shortcut import cross_validated_scores

    labels = np.array([0] * 7 + [1] * 13)
    seen: list[tuple[set[int], set[int]]] = []

    def memoriser(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        seen.append((set(train.tolist()), set(test.tolist())))
        return np.array([1.0 if t in set(train.tolist()) else 0.0 for t in test])  # 1 = it saw this item

    scores, k = cross_validated_scores(labels, 5, 0, memoriser)
    assert k == 5 and (scores == 0).all()
    tested = [t for _, test in seen for t in test]
    assert sorted(tested) == list(range(20))  # each item scored exactly once
    assert all(not (train & test) and labels[list(train)].min() == 0 and labels[list(train)].max() == 1
               for train, test in seen)
    few, k = cross_validated_scores(np.array([0, 0, 0, 1]), 5, 0, memoriser)
    assert k == 0 and np.isnan(few).all()  # one fake: no fold could learn both classes
    assert cross_validated_scores(np.array([0, 0, 0, 1, 1]), 5, 0, memoriser)[1] == 2


def test_probe_folds_is_a_setting_and_part_of_the_run_id(shortcut_tree: Path) -> None:
    first = detbench.run("shortcut", "folder", root=shortcut_tree, protocol="eval", **FAST)
    three = detbench.run("shortcut", "folder", root=shortcut_tree, protocol="eval", settings={"probe_folds": 3},
                         **FAST)
    assert first.id != three.id and three.record["fit"]["probe_folds"] == 3
    with pytest.raises(detbench.DetbenchError, match="probe_folds"):
        detbench.run("shortcut", "folder", root=shortcut_tree, protocol="eval", settings={"probe_folds": 1})


def test_predict_probes_the_metadata_of_new_files(shortcut_tree: Path) -> None:
    run = detbench.run("shortcut", "folder", root=shortcut_tree, protocol="train-on-seen", **FAST)
    files = sorted(str(p) for p in (shortcut_tree / "test" / "other").rglob("*.*"))[:6]
    out = detbench.predict(run, files)
    expected = run.scores.assign(file=lambda t: [str(shortcut_tree / p) for p in t["path"]]).set_index("file")
    np.testing.assert_allclose(out["score"].to_numpy(dtype=float),
                               expected.loc[files, "score"].to_numpy(dtype=float), rtol=1e-9)


def test_rows_without_metadata_are_refused() -> None:
    from detbench.detectors.shortcut import metadata_features

    with pytest.raises(DataError, match="exif"):
        metadata_features(pd.DataFrame({"format": ["png"], "jpeg_quality": [None], "width": [1], "height": [1],
                                        "bytes": [1]}), ["png"])


def _import(root: Path, tmp_path: Path, name: str, flip: bool) -> detbench.Run:
    index = detbench.index("folder", root=root)
    test = index[index["split"] == "test"].drop_duplicates("path")
    scores = test["label"].astype(float).map(lambda y: 1 - y if flip else y).clip(0.1, 0.9)
    file = tmp_path / f"{name}.csv"
    pd.DataFrame({"path": test["path"], "score": scores}).to_csv(file, index=False)
    return detbench.import_scores("folder", file, root=root, name=name, protocol="train-on-seen", bootstrap=0)


def test_leaderboard_and_report_mark_runs_that_do_not_beat_the_floor(balanced_tree: Path, tmp_path: Path) -> None:
    from cli_helpers import invoke

    _import(balanced_tree, tmp_path, "perfect", flip=False)
    _import(balanced_tree, tmp_path, "inverted", flip=True)
    before = detbench.leaderboard("folder").set_index("detector")
    assert set(before["floor"]) == {"n/a"}  # no floor run yet
    floor = detbench.run("shortcut", "folder", root=balanced_tree, protocol="train-on-seen", **FAST)
    board = detbench.leaderboard("folder").set_index("detector")
    assert board.loc["external:perfect", "floor"] == "beats" and board.loc["external:inverted", "floor"] == "below"
    assert board.loc["shortcut", "floor"] == "floor"
    floor_mean = _mean(floor, "acc")
    assert board.loc["external:inverted", "mean"] < floor_mean < board.loc["external:perfect", "mean"]
    assert detbench.leaderboard("folder", metric="ece").set_index("detector").loc["external:perfect", "floor"] in (
        "beats", "below")  # lower is better for ece: compared in that direction
    markdown = tmp_path / "board.md"
    result = invoke("leaderboard", "folder", "--markdown", str(markdown))
    assert result.exit_code == 0, result.output
    lines = {line.split("|")[1].strip(): line for line in markdown.read_text().splitlines() if line.startswith("| ")}
    assert "↓" in lines["external:inverted"] and "↓" not in lines["external:perfect"]
    assert "shortcut floor" in markdown.read_text()
    report = detbench_report(tmp_path)
    assert "below" in report and "beats" in report and "shortcut floor" in report


def detbench_report(tmp_path: Path) -> str:
    from detbench.results.html import build_report

    return build_report("folder", tmp_path / "report").read_text()
