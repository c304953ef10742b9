"""`detbench predict`: a finished run's detector scores a mix of good and broken files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import SMALL, invoke
from PIL import Image


@pytest.fixture
def home(small_demo_home: Path) -> Path:
    return small_demo_home


@pytest.fixture
def run(home: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("DETBENCH_HOME", str(home))
    result = invoke("run", "linear-probe", "--suite", "demo", *SMALL)
    assert result.exit_code == 0, result.output
    records = [json.loads(p.read_text()) for p in (home / "runs" / "demo" / "linear-probe").glob("*/run.json")]
    [clean] = [r for r in records if r["perturbation"] is None and r["run_id"][:16] in result.output]
    return clean


@pytest.fixture
def mixed(run: dict, tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """Three demo val images (one nested, one re-saved as JPEG), four broken files and a non-image."""
    scores = pd.read_parquet(Path(run["paths"]["run"]) / "scores.parquet")
    picks = scores.groupby("label").head(2).head(3)
    root = Path(run["paths"]["suite_root"])
    folder = tmp_path / "mine"
    (folder / "nested").mkdir(parents=True)
    names = ["a.png", "nested/b.png", "c.png"]
    for name, rel in zip(names, picks["path"], strict=True):
        shutil.copyfile(root / rel, folder / name)
    Image.open(root / picks["path"].iloc[0]).convert("RGB").save(folder / "d.jpg", quality=90)
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("<html>not an image</html>")
    (folder / "cut.jpg").write_bytes((folder / "d.jpg").read_bytes()[:300])
    (folder / "notes.txt").write_text("ignored: not an image extension")
    expected = pd.DataFrame({"name": names, "score": picks["score"].to_numpy()})
    return folder, expected


def test_predict_scores_good_files_and_reports_broken_ones(run: dict, mixed, tmp_path: Path) -> None:
    folder, expected = mixed
    csv, js = tmp_path / "out" / "p.csv", tmp_path / "out" / "p.json"
    missing = tmp_path / "missing.png"
    result = invoke(
        "predict", run["run_id"][:8], str(folder), str(missing), "--csv", str(csv), "--json", str(js), "-q"
    )
    assert result.exit_code == 0, result.output
    out = pd.read_csv(csv, keep_default_na=False)
    out["name"] = [f.removeprefix(f"{folder}/") for f in out["file"]]
    by_name = out.set_index("name").to_dict("index")
    names = {"a.png", "nested/b.png", "c.png", "d.jpg", "empty.png", "text.png", "cut.jpg", str(missing)}
    assert set(by_name) == names and len(out) == len(names)  # notes.txt skipped: not an image extension
    for name, score in zip(expected["name"], expected["score"], strict=True):
        row = by_name[name]
        assert row["error"] == ""
        assert float(row["score"]) == pytest.approx(score, abs=1e-6)  # what the run scored for this image
        assert row["decision"] == ("fake" if score > run["threshold"]["value"] else "real")
    assert 0 <= float(by_name["d.jpg"]["score"]) <= 1
    assert by_name["empty.png"]["error"].startswith("empty")
    assert by_name["text.png"]["error"].startswith("undecodable")
    assert by_name["cut.jpg"]["error"].startswith("truncated")
    assert by_name[str(missing)]["error"].startswith("not_a_file")
    assert all(by_name[n]["score"] == "" and by_name[n]["decision"] == "" for n in ("empty.png", "cut.jpg"))
    assert "4 could not be scored" in result.output

    doc = json.loads(js.read_text())
    assert doc["run_id"] == run["run_id"] and doc["threshold"]["value"] == run["threshold"]["value"]
    broken = [p for p in doc["predictions"] if p["error"]]
    assert len(doc["predictions"]) == 8 and len(broken) == 4
    assert all(p["score"] is None and p["decision"] is None for p in broken)


def test_predict_errors(run: dict, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    assert invoke("predict", run["run_id"][:8], str(bad), "-q").exit_code == 1  # nothing could be scored
    unknown = invoke("predict", "ffffffffff", str(bad), "-q")
    assert (
        unknown.exit_code == 2 and "no finished run" in unknown.output and "Traceback" not in unknown.output
    )
    empty = tmp_path / "nothing"
    empty.mkdir()
    none = invoke("predict", run["run_id"][:8], str(empty), "-q")
    assert none.exit_code == 2 and "no image files" in none.output


TINY = ["--set", "n_train=8", "--set", "n_val=4", "--set", "size=32", "--set", "crop=32", "-q"]


def test_predict_exports_one_score_column_per_run(detbench_home: Path, tmp_path: Path) -> None:
    """grip-unina's per-image CSV: filename relative to the CSV's folder, one column per run, empty where unscored.
    Its own home (the report tests count the runs of the shared one)."""
    from detbench.probabilities import logit

    ids = []
    for extra in ([], ["--set", "normalize=false"]):  # two runs; the second reuses the cached features
        result = invoke("run", "linear-probe", "--suite", "demo", *TINY, *extra)
        assert result.exit_code == 0, result.output
        ids.append(result.output.split("run ")[-1][:16])
    record = json.loads((detbench_home / "runs" / "demo" / "linear-probe" / ids[0] / "run.json").read_text())
    scores = pd.read_parquet(Path(record["paths"]["run"]) / "scores.parquet").head(3)
    folder = tmp_path / "mine"
    (folder / "nested").mkdir(parents=True)
    names = ["a.png", "nested/b.png", "c.png"]
    for name, rel in zip(names, scores["path"], strict=True):
        shutil.copyfile(Path(record["paths"]["suite_root"]) / rel, folder / name)
    (folder / "empty.png").write_bytes(b"")
    export, csv = tmp_path / "exports" / "scores.csv", tmp_path / "long.csv"
    runs = ",".join(ids)
    result = invoke("predict", runs, str(folder), "--export", str(export), "--csv", str(csv), "-q")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(export)
    columns = [f"linear-probe@{i}" for i in ids]
    assert list(table.columns) == ["filename", *columns]
    assert sorted(table["filename"]) == sorted(f"../mine/{n}" for n in [*names, "empty.png"])
    assert all((export.parent / f).resolve().is_file() for f in table["filename"])  # relative to the CSV's folder
    long = pd.read_csv(csv)
    assert list(long.columns) == ["run", "file", "score", "decision", "error"] and len(long) == 2 * len(table)
    for column in columns:
        mine = long[long["run"] == column]["score"].to_numpy()
        assert np.allclose(table[column].to_numpy(), mine, atol=1e-6, equal_nan=True)
    first = table.set_index("filename")[columns[0]]
    for name, score in zip(names, scores["score"], strict=True):
        assert first[f"../mine/{name}"] == pytest.approx(score, abs=1e-6)  # what the run scored for this image
    assert np.isnan(first["../mine/empty.png"])  # unscored: an empty cell
    # grip-unina's compute_metrics.py: its list (filename, typ) merged on filename; every other column is a method
    listed = pd.DataFrame({"filename": [f"../mine/{n}" for n in names], "typ": ["real", "fake", "fake"]})
    merged = listed.merge(pd.read_csv(export), on=["filename"])
    assert len(merged) == 3 and [c for c in pd.read_csv(export).columns if c != "filename"] == columns
    assert not np.allclose(table[columns[0]].dropna(), table[columns[1]].dropna())  # two different detectors

    logits = tmp_path / "logits.csv"
    assert invoke("predict", runs, str(folder), "--export", str(logits), "--export-logits", "-q").exit_code == 0
    as_logits = pd.read_csv(logits)
    assert np.allclose(as_logits[columns].to_numpy(), logit(table[columns].to_numpy()), atol=1e-5, equal_nan=True)
    assert np.isfinite(as_logits[columns].to_numpy()[np.isfinite(table[columns].to_numpy())]).all()
    lone = invoke("predict", runs, str(folder), "--export-logits", "-q")
    assert lone.exit_code == 2 and "--export FILE" in lone.output


def test_an_output_path_that_is_a_folder_is_refused_in_one_line(run: dict, tmp_path: Path) -> None:
    """--csv/--json/--export naming a folder: one error line (exit 2) and the folder untouched, never a traceback;
    the API refuses it before scoring anything."""
    import detbench

    image = Path(run["paths"]["suite_root"]) / pd.read_parquet(Path(run["paths"]["run"]) / "scores.parquet")[
        "path"
    ].iloc[0]
    folder = tmp_path / "out"
    folder.mkdir()
    for option in ("--export", "--csv", "--json"):
        result = invoke("predict", run["run_id"][:12], str(image), option, str(folder), "-q")
        assert result.exit_code == 2, (option, result.output)
        assert "Traceback" not in result.output and f"{folder} is a folder" in result.output, result.output
    assert list(folder.iterdir()) == []
    with pytest.raises(detbench.InputError, match="is a folder"):
        detbench.predict(run["run_id"][:12], [image], export=folder)
    same = tmp_path / "scores.csv"
    result = invoke("predict", run["run_id"][:12], str(image), "--csv", str(same), "--export", str(same), "-q")
    assert result.exit_code == 2 and "named for two outputs" in result.output, result.output
    assert not same.exists()


def test_an_export_imports_back_from_any_folder(run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: `predict --export` writes filenames relative to the CSV's folder (as grip-unina's main.py), which
    import-scores read relative to the suite root: the round trip failed unless the CSV sat in the suite root."""
    root = Path(run["paths"]["suite_root"])
    scores = pd.read_parquet(Path(run["paths"]["run"]) / "scores.parquet")
    export = tmp_path / "exports" / "scores.csv"
    predicted = invoke("predict", run["run_id"][:8], *[str(root / p) for p in scores["path"]], "--export",
                       str(export), "-q")  # fmt: skip
    assert predicted.exit_code == 0, predicted.output
    monkeypatch.setenv("DETBENCH_HOME", str(tmp_path / "home"))  # the shared home's run list stays as it is
    column = f"linear-probe@{run['run_id'][:16]}"
    args = ["import-scores", "demo", str(export), "--root", str(root), "--name", "round-trip", *SMALL]
    unnamed = invoke(*args)
    assert unnamed.exit_code == 2 and f"pass --score-column {column!r}" in " ".join(unnamed.output.split())
    from_root = invoke(*args, "--score-column", column, "--paths-relative-to", "root")
    assert from_root.exit_code == 2 and "--paths-relative-to file" in " ".join(from_root.output.split())

    imported = invoke(*args, "--score-column", column)
    assert imported.exit_code == 0, imported.output
    [record_path] = (tmp_path / "home").glob("runs/demo/external/*/run.json")
    record = json.loads(record_path.read_text())
    assert record["settings"]["paths_relative_to"] == "file"
    assert record["key"]["scores"]["paths_relative_to"] == Path(os.path.relpath(export.parent, root)).as_posix()
    again = pd.read_parquet(record_path.parent / "scores.parquet").set_index("path")
    assert (again["status"] == "ok").all() and len(again) == len(scores)
    assert np.allclose(again.loc[scores["path"], "score"], scores["score"], atol=1e-6)
    original = pd.read_parquet(Path(run["paths"]["run"]) / "metrics.parquet").set_index("generator")
    metrics = pd.read_parquet(record_path.parent / "metrics.parquet").set_index("generator")
    assert np.allclose(metrics["acc"], original.loc[metrics.index, "acc"])
    explicit = invoke(*args, "--score-column", column, "--paths-relative-to", "file")
    assert explicit.exit_code == 0 and "(reused)" in explicit.output  # the same run, said explicitly
