"""Metrics per slice of the index (--by): each slice checked against scikit-learn on the same images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke
from PIL import Image
from sklearn.metrics import accuracy_score, roc_auc_score

import detbench

LIST = {"suite.file": "labels.csv"}
INDEX = {"file": "labels.csv"}
N = 24  # images per generator and class


@pytest.fixture(scope="module")
def sliced_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generators g and h, test split: JPEG (several qualities) and PNG of two sizes in both classes; list columns
    iso (numeric) and camera (categorical; ``fakecam`` only on fakes, so its slices lack reals)."""
    root = tmp_path_factory.mktemp("sliced")
    rng = np.random.default_rng(5)
    lines = ["path,label,generator,split,iso,camera"]
    for generator in ("g", "h"):
        for label in (0, 1):
            for i in range(N):
                side = (40, 40) if rng.integers(2) else (300, 260)
                image = Image.new("RGB", side, tuple(int(v) for v in rng.integers(0, 256, 3)))
                path = root / generator / f"{label}_{i}"
                path.parent.mkdir(parents=True, exist_ok=True)
                if rng.integers(2):
                    path = path.with_suffix(".jpg")
                    image.save(path, quality=int(rng.choice([40, 75, 92, 98])))
                else:
                    path = path.with_suffix(".png")
                    image.save(path)
                camera = "fakecam" if label and i < 4 else str(rng.choice(["a", "b"]))
                lines.append(f"{path.relative_to(root).as_posix()},{label},{generator},test,"
                             f"{int(rng.integers(100, 3200))},{camera}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def _import(root: Path, name: str, seed: int) -> detbench.Run:
    index = detbench.index("list", root=root, settings=INDEX)
    rng = np.random.default_rng(seed)
    scores = np.clip(index["label"].to_numpy() * 0.3 + rng.uniform(0, 0.7, len(index)), 0, 1)
    file = root.parent / f"{root.name}_{name}.csv"
    pd.DataFrame({"path": index["path"], "score": scores}).to_csv(file, index=False)
    return detbench.import_scores("list", file, root=root, name=name, protocol="eval", settings=LIST, bootstrap=0)


def _expected_slice(rows: pd.DataFrame, by: str) -> pd.Series:
    """The slices, computed here independently of detbench's code."""
    if by == "format":
        return rows["format"]
    if by == "jpeg_quality":
        q = rows["jpeg_quality"]
        bands = [(50, "<50"), (70, "50-69"), (80, "70-79"), (90, "80-89"), (95, "90-94"), (101, "95-100")]
        return q.map(lambda v: "none" if pd.isna(v) else next(label for upper, label in bands if v < upper))
    if by == "size":
        return (rows["width"] * rows["height"]).map(lambda p: "<256²" if p < 65536 else "256²-512²")
    if by == "meta_iso:3":
        iso = rows["meta_iso"].astype(float)  # a file list's columns are read as text
        edges = np.quantile(iso.to_numpy(), [0, 1 / 3, 2 / 3, 1])
        return iso.map(lambda v: int(min(np.searchsorted(edges, v, side="right") - 1, 2)))
    return rows["meta_camera"]


@pytest.mark.parametrize("by", ["format", "jpeg_quality", "size", "meta_iso:3", "meta_camera"])
def test_leaderboard_slices_match_scikit_learn(sliced_root: Path, by: str) -> None:
    run = _import(sliced_root, "first", 1)
    table = detbench.leaderboard("list", metric="auc", by=by)
    accs = detbench.leaderboard("list", metric="acc", by=by)
    rows = run.scores.merge(detbench.index("list", root=sliced_root, settings=INDEX).drop_duplicates("path")
                            .drop(columns=["generator", "split", "label"]), on="path")
    rows["expected"] = _expected_slice(rows, by).to_numpy()
    groups = rows.groupby(["generator", "expected"])
    assert len(table) == groups.ngroups and set(table["run_id"]) == {run.id[:16]}
    for (generator, _), part in groups:
        match = table[(table["generator"] == generator) & table["n_real"].eq((part["label"] == 0).sum())
                      & table["n_fake"].eq((part["label"] == 1).sum())]
        got = match["auc"].to_numpy(dtype=float)
        acc = accs.loc[match.index, "acc"].to_numpy(dtype=float)
        if part["label"].nunique() < 2:
            assert np.isnan(got).any() and np.isnan(acc).any()  # one class: n/a, never a number
            continue
        assert np.isclose(got, roc_auc_score(part["label"], part["score"])).any()
        assert np.isclose(acc, accuracy_score(part["label"], part["score"] > 0.5)).any()


def test_a_slice_without_reals_is_not_a_number(sliced_root: Path) -> None:
    _import(sliced_root, "first", 1)
    table = detbench.leaderboard("list", metric="acc", by="meta_camera").set_index(["generator", "slice"])
    for generator in ("g", "h"):
        row = table.loc[(generator, "fakecam")]
        assert row["n_real"] == 0 and row["n_fake"] == 4 and np.isnan(row["acc"])


def test_compare_by_slice_matches_scikit_learn(sliced_root: Path) -> None:
    a, b = _import(sliced_root, "first", 1), _import(sliced_root, "second", 2)
    table = detbench.compare([a, b], metric="acc,auc", bootstrap=0, by="format")
    rows = a.scores.merge(b.scores[["path", "generator", "score"]], on=["path", "generator"], suffixes=("_a", "_b"))
    index = detbench.index("list", root=sliced_root, settings=INDEX).drop_duplicates("path")
    rows = rows.merge(index[["path", "format"]])
    for (generator, fmt), part in rows.groupby(["generator", "format"]):
        got = table[(table["generator"] == generator) & (table["slice"] == fmt)].set_index("metric")
        assert got.loc["acc", "a"] == pytest.approx(accuracy_score(part["label"], part["score_a"] > 0.5))
        assert got.loc["auc", "b"] == pytest.approx(roc_auc_score(part["label"], part["score_b"]))
    csv = sliced_root.parent / "compare.csv"
    result = invoke("compare", a.id[:16], b.id[:16], "--by", "format", "--bootstrap", "0", "--csv", str(csv))
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(csv).columns[:3]) == ["generator", "slice", "metric"]


def test_an_unknown_slice_column_is_one_error_line(sliced_root: Path, tmp_path: Path) -> None:
    run = _import(sliced_root, "first", 1)
    for args in (("leaderboard", "list", "--by", "meta_lens"), ("report", run.id[:16], "--by", "meta_lens"),
                 ("compare", run.id[:16], _import(sliced_root, "second", 2).id[:16], "--by", "meta_lens")):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), result.output
        assert "format, jpeg_quality, size, meta_camera, meta_iso" in lines[0]
    assert invoke("leaderboard", "list", "--by", "format:3").exit_code == 2  # bins on a fixed band


def test_report_and_cli_leaderboard_by_slice(sliced_root: Path, tmp_path: Path) -> None:
    run = _import(sliced_root, "first", 1)
    result = invoke("report", run.id[:16], "--by", "size", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r" / "report.html").read_text()
    assert "metrics by size" in html and "g | 256²-512²" in html
    result = invoke("leaderboard", "list", "--by", "jpeg_quality", "--csv", str(tmp_path), "--markdown",
                    str(tmp_path / "by.md"))
    assert result.exit_code == 0, result.output
    written = pd.read_csv(tmp_path / "list_leaderboard_by_jpeg_quality.csv")
    assert {"generator", "slice", "n_real", "n_fake", "acc"} <= set(written.columns)
    assert "| g | none |" in (tmp_path / "by.md").read_text().replace(run.id[:16], "")


def test_python_report_by_slice(sliced_root: Path, tmp_path: Path) -> None:
    run = _import(sliced_root, "first", 1)
    path = detbench.report(run.id[:16], tmp_path / "r", by="format")
    assert "metrics by format" in path.read_text()
    with pytest.raises(detbench.ConfigError, match="meta_camera"):
        detbench.report(run.id[:16], tmp_path / "r", by="meta_lens")
