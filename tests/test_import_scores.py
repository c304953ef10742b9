"""Scores computed outside detbench: imported as runs of ``external:NAME`` with the metrics scikit-learn computes on
the matched rows, every problem of the file reported, robustness views pairing perturbed imports with the clean one."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import SMALL, SMALL_SETTINGS, invoke, with_small_demo
from sklearn.metrics import average_precision_score, roc_auc_score

import detbench
from detbench.data.score_files import read_score_file
from detbench.datasets.demo_build import FAMILIES
from detbench.probabilities import sigmoid


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory, small_demo_tree: Path) -> Path:
    """One small demo build and index shared by this module's tests (each imports its own files and names)."""
    return with_small_demo(tmp_path_factory.mktemp("import_scores_home"), small_demo_tree)


@pytest.fixture
def demo(demo_home: Path, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """The small demo's index (``.attrs["root"]``) in the shared home."""
    monkeypatch.setenv("DETBENCH_HOME", str(demo_home))
    return detbench.index("demo", settings=SMALL_SETTINGS)


def evaluation_rows(index: pd.DataFrame) -> pd.DataFrame:
    """The images the default protocol evaluates: every family's val split."""
    return index[index["split"] == "val"].sort_values("path").reset_index(drop=True)


def run_id(output: str) -> str:
    found = re.search(r"run ([0-9a-f]{16}) ->", output)
    assert found, output
    return found.group(1)


def test_imported_metrics_equal_scikit_learn_on_the_matched_rows(demo: pd.DataFrame, tmp_path: Path) -> None:
    rows = evaluation_rows(demo)
    rng = np.random.default_rng(7)
    scores = np.clip(0.35 * rows["label"] + 0.65 * rng.random(len(rows)), 0, 1)
    table = pd.DataFrame({"path": rows["path"], "score": scores.round(6)})
    missing, nan_row, absolute, backslash = table.index[[0, 13, 20, 30]]
    root = Path(demo.attrs["root"])
    table.loc[absolute, "path"] = str(root / table.loc[absolute, "path"])  # an absolute path under the root
    table.loc[backslash, "path"] = table.loc[backslash, "path"].replace("/", "\\")  # Windows separators
    table.loc[nan_row, "score"] = np.nan
    repeated = table.loc[5]  # listed twice with the same score
    extra = pd.DataFrame({"path": ["elsewhere/unknown.png", repeated["path"]], "score": [0.9, repeated["score"]]})
    file = tmp_path / "api-scores.csv"
    pd.concat([table.drop(index=missing), extra]).to_csv(file, index=False)

    result = invoke("import-scores", "demo", str(file), "--name", "rand", *SMALL)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    n_eval = len(rows)
    assert f"1 of its {n_eval} images are not images of demo" in out and "elsewhere/unknown.png" in out
    assert "1 images are listed more than once with the same score (kept once)" in out
    assert "1 rows give no number in score" in out
    assert f"1 of the {n_eval} evaluation images of demo/composite have no score in {file.name}" in out
    assert "external:rand on demo" in out

    run = detbench.load_run(run_id(result.output))
    assert run.label == "external:rand" and run.record["external"] is True
    scored = run.scores.set_index("path")
    assert scored.loc[rows.loc[missing, "path"], "status"] == f"no_score: not in {file.name}"
    assert scored.loc[rows.loc[nan_row, "path"], "status"].startswith("no_score")
    expected = rows.assign(score=scores).drop(index=[missing, nan_row])
    assert np.allclose(scored.loc[expected["path"], "score"], expected["score"].round(6), atol=1e-12)
    metrics = run.metrics.set_index("generator")
    for generator, group in expected.assign(score=expected["score"].round(6)).groupby("generator"):
        y, s = group["label"].to_numpy(), group["score"].to_numpy()
        assert metrics.loc[generator, "n_real"] == (y == 0).sum() and metrics.loc[generator, "n_fake"] == (y == 1).sum()
        assert metrics.loc[generator, "acc"] == pytest.approx(np.mean((s > 0.5) == y), abs=1e-12)
        assert metrics.loc[generator, "ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert metrics.loc[generator, "auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)

    board = detbench.leaderboard("demo", detector="external:rand")  # the module's home holds other imports too
    assert list(board["detector"]) == ["external:rand"] and board["run_id"].iloc[0] == run.id[:16]
    listed = detbench.runs("demo", detector="external:rand")
    assert listed["external"].tolist() == [True]
    shown = invoke("ls", "runs")
    assert shown.exit_code == 0 and "external:rand" in shown.output


def test_logits_image_ids_and_parquet(demo: pd.DataFrame, tmp_path: Path) -> None:
    rows = evaluation_rows(demo)
    logits = np.linspace(-6, 6, len(rows))
    file = tmp_path / "logits.parquet"
    pd.DataFrame({"image_id": rows["image_id"], "logit": logits}).to_parquet(file)
    run = detbench.import_scores("demo", file, name="logit-model", logits=True, score_column="logit",
                                 settings=SMALL_SETTINGS)
    by_id = run.scores.set_index("image_id")["score"]
    assert np.allclose(by_id.loc[rows["image_id"]], sigmoid(logits), rtol=0, atol=1e-15)
    assert run.record["key"]["scores"]["logits"] is True and run.record["key"]["scores"]["key_column"] == "image_id"

    refused = invoke("import-scores", "demo", str(file), "--name", "logit-model", "--score-column", "logit", *SMALL)
    assert refused.exit_code == 2 and "outside [0, 1]" in refused.output and "--logits" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and "Traceback" not in refused.output


def test_perturbed_imports_pair_with_the_clean_one(demo: pd.DataFrame, tmp_path: Path) -> None:
    rows = evaluation_rows(demo)
    rng = np.random.default_rng(3)
    clean, jpeg, copy = tmp_path / "clean.csv", tmp_path / "jpeg75.csv", tmp_path / "moved" / "clean.csv"
    pd.DataFrame({"path": rows["path"], "score": 0.5 * rows["label"] + 0.5 * rng.random(len(rows))}).to_csv(
        clean, index=False
    )
    pd.DataFrame({"path": rows["path"], "score": 0.2 * rows["label"] + 0.8 * rng.random(len(rows))}).to_csv(
        jpeg, index=False
    )
    first = detbench.import_scores("demo", clean, name="pair", settings=SMALL_SETTINGS)
    perturbed = detbench.import_scores("demo", jpeg, name="pair", perturb="jpeg:75", settings=SMALL_SETTINGS)
    assert perturbed.record["fit_id"] == first.record["fit_id"] and perturbed.id != first.id
    assert perturbed.perturbation == "jpeg:75" and perturbed.record["perturbation"]["spec"] == "jpeg:75"

    copy.parent.mkdir()
    copy.write_bytes(clean.read_bytes())
    moved = detbench.import_scores("demo", copy, name="pair", settings=SMALL_SETTINGS)
    assert moved.id == first.id and moved.reused  # the file's bytes make the id, not its path

    deltas = detbench.leaderboard("demo", detector="external:pair", delta=True)
    mean = {r.perturbation: r.metrics.set_index("generator").loc["mean", "acc"] for r in (first, perturbed)}
    assert deltas["perturbation"].tolist() == ["jpeg:75"]
    assert deltas["mean"].iloc[0] == pytest.approx(mean["jpeg:75"] - mean["clean"], abs=1e-12)

    report = invoke("report", first.id[:12])
    assert report.exit_code == 0, report.output
    html = (Path(report.output.split("wrote ", 1)[1].split(" and ")[0])).read_text()
    assert "Robustness" in html and "external:pair" in html and "scores computed outside detbench" in html

    with pytest.raises(detbench.ConfigError, match="calibrated threshold needs clean held-out scores"):
        detbench.import_scores("demo", jpeg, name="pair", perturb="jpeg:75", threshold="calibrated",
                               settings=SMALL_SETTINGS)


def test_mistakes_in_score_files_end_in_one_line(demo: pd.DataFrame, tmp_path: Path) -> None:
    rows = evaluation_rows(demo)
    no_key = tmp_path / "no_key.csv"
    pd.DataFrame({"file": rows["path"], "score": 0.5}).to_csv(no_key, index=False)
    no_score = tmp_path / "no_score.csv"
    pd.DataFrame({"path": rows["path"], "scores": 0.5}).to_csv(no_score, index=False)
    elsewhere = tmp_path / "elsewhere.csv"
    pd.DataFrame({"path": "other/" + rows["path"], "score": 0.5}).to_csv(elsewhere, index=False)
    cases = [
        (tmp_path / "absent.csv", ["does not exist"]),
        (no_key, ["no column 'path' or 'filename' or 'image_id'", "file, score", "--key-column"]),
        (no_score, ["no column 'score'", "did you mean 'scores'", "--score-column"]),
        (elsewhere, ["matches an image of demo", "other/", "relative to the suite root"]),
    ]
    for file, words in cases:
        result = invoke("import-scores", "demo", str(file), "--name", "bad", *SMALL)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
        for word in words:
            assert word in " ".join(result.output.split()), (word, result.output)
    swept = invoke("sweep", "external", *SMALL, "--set", f"file={no_key}", "--set", "name=bad", "-p", "jpeg:50")
    assert swept.exit_code == 2 and "import one file per perturbation" in swept.output
    plain = invoke("run", "external", "--suite", "demo", *SMALL)
    assert plain.exit_code == 2 and "--set file=... and --set name=..." in plain.output
    assert "import-scores" in plain.output


def test_predict_refuses_imported_runs(demo: pd.DataFrame, tmp_path: Path) -> None:
    rows = evaluation_rows(demo)
    file = tmp_path / "s.csv"
    pd.DataFrame({"path": rows["path"], "score": 0.25}).to_csv(file, index=False)
    run = detbench.import_scores("demo", file, name="constant", settings=SMALL_SETTINGS)
    image = Path(demo.attrs["root"]) / rows["path"].iloc[0]
    result = invoke("predict", run.id[:12], str(image), "-q")
    assert result.exit_code == 2 and "no model to score new images" in result.output


def test_score_file_checks(tmp_path: Path) -> None:
    root = tmp_path / "data"
    table = tmp_path / "s.tsv"
    table.write_text(
        "path\tscore\n"
        "a/x.png\t0.1\n"
        "a/x.png\t0.9\n"  # the same image, two different scores: unscored, nothing chosen
        f"{root}/b/y.png\t0.4\n"  # absolute, under the root
        "/somewhere/else.png\t0.3\n"  # absolute, elsewhere
        "./c/z.png\t 0.7 \n"
    )
    scores = read_score_file(table)
    assert scores.key_column == "path" and not scores.by_id and scores.rows == 5
    matched, unusable, outside = scores.under(root)
    assert matched == {"b/y.png": 0.4, "c/z.png": 0.7}
    assert unusable == {"a/x.png": "no_score: s.tsv gives it 2 different scores"}
    assert outside == ["/somewhere/else.png"]
    assert any("different scores" in p and "a/x.png (0.1, 0.9)" in p for p in scores.problems)
    assert read_score_file(table) is scores  # read once while the file is unchanged
    lines = tmp_path / "s.jsonl"
    lines.write_text('{"filename": "a.png", "p": 0.2}\n{"filename": "b.png", "p": null}\n')
    jsonl = read_score_file(lines, score_column="p")
    assert jsonl.key_column == "filename" and jsonl.scores == {"a.png": 0.2}
    assert jsonl.unusable == {"b.png": "no_score: s.jsonl gives no number for it"}
    assert jsonl.identity() == {"sha256": jsonl.sha256, "key_column": "filename", "score_column": "p", "logits": False}


def test_a_calibrated_threshold_uses_the_files_held_out_scores(demo: pd.DataFrame, tmp_path: Path) -> None:
    """Scores of the training generator's images let ``calibrated`` choose the threshold on its held-out split."""
    rng = np.random.default_rng(11)
    file = tmp_path / "everything.csv"
    pd.DataFrame({"path": demo["path"], "score": 0.3 * demo["label"] + 0.7 * rng.random(len(demo))}).to_csv(
        file, index=False
    )
    run = detbench.import_scores("demo", file, name="calibrated", threshold="calibrated", settings=SMALL_SETTINGS)
    held = run.heldout_scores
    assert len(held) and (held["status"] == "ok").all() and set(held["generator"]) == {"composite"}
    threshold = run.record["threshold"]
    assert threshold["policy"] == "calibrated" and threshold["value"] == threshold["calibrated_on_heldout"]
    groups = run.scores.groupby("generator")
    per_generator = [np.mean((g["score"] > threshold["value"]) == g["label"]) for _, g in groups]
    assert run.metrics.set_index("generator").loc["mean", "acc"] == pytest.approx(np.mean(per_generator), abs=1e-12)


def test_a_calibrated_threshold_without_held_out_scores_says_why(demo: pd.DataFrame, tmp_path: Path) -> None:
    """A file without scores for the training generator's held-out images cannot calibrate: one line that counts
    the unscored held-out images and their status."""
    file = tmp_path / "evaluation_only.csv"
    rows = evaluation_rows(demo)
    pd.DataFrame({"path": rows["path"], "score": 0.5}).to_csv(file, index=False)
    message = r"held-out split; it has 0 scored images .*not scored: \d+ no_score"
    with pytest.raises(detbench.ProtocolError, match=message):
        detbench.import_scores("demo", file, name="no-heldout", threshold="calibrated", settings=SMALL_SETTINGS)


def test_a_label_column_that_disagrees_with_the_suite_is_reported(tmp_path: Path) -> None:
    """The file's own labels are never used, but labels contradicting the suite's mean the paths name other images
    than the scores are of (or an inverted convention): a warning with counts and examples, never silence."""
    from detbench.data.score_files import match_problems

    root = tmp_path / "data"
    index = pd.DataFrame({
        "path": ["a.png", "b.png", "c.png", "d.png", "e.png"],
        "image_id": ["1", "2", "3", "4", "5"],
        "label": [0, 1, 0, 1, 1],
        "status": "ok",
    })
    file = tmp_path / "labelled.csv"
    file.write_text(
        "filename,score,label\n"
        "a.png,0.1,1\n"  # the suite says real
        "b.png,0.9,fake\n"
        "c.png,0.2,Real\n"
        f"{root}/d.png,0.3,0\n"  # absolute under the root; the suite says fake
        "e.png,0.8,sdxl\n"  # not a label value: not compared
        "elsewhere.png,0.5,0\n"
    )
    problems = match_problems(read_score_file(file), index, root, "mine")
    [disagree] = [p for p in problems if "label column" in p]
    assert "2 of its 4 images with a label" in disagree and "a.png" in disagree and "d.png" in disagree
    assert "b.png" not in disagree and "the suite's labels are used" in disagree

    agreeing = tmp_path / "agreeing.csv"
    agreeing.write_text("path,score,label\na.png,0.1,0\nb.png,0.9,1\n")
    assert not any("label column" in p for p in match_problems(read_score_file(agreeing), index, root, "mine"))


def test_a_parquet_path_column_of_bytes_is_read_as_text(tmp_path: Path) -> None:
    file = tmp_path / "binary.parquet"
    pd.DataFrame({"path": [b"a/x.png", b"b\\y.png"], "score": [0.25, 0.75]}).to_parquet(file)
    assert read_score_file(file).scores == {"a/x.png": 0.25, "b/y.png": 0.75}


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"name": None}, "name must be text"),
        ({"name": ""}, "name must be text"),
        ({"name": "x", "logits": "no"}, "logits must be True or False"),
        ({"name": "x", "score_column": None}, "score_column must be text"),
        ({"name": "x", "key_column": 3}, "key_column must be text"),
    ],
)
def test_import_scores_refuses_arguments_of_the_wrong_type(
    arguments: dict, words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Python value the command line cannot give (None, a string for a flag) is a ConfigError, not a run named
    ``external:none`` or a file read one way and recorded another."""
    monkeypatch.setenv("DETBENCH_HOME", str(tmp_path))
    file = tmp_path / "s.csv"
    file.write_text("path,score\na.png,0.5\n")
    with pytest.raises(detbench.ConfigError, match=words):
        detbench.import_scores("demo", file, settings=SMALL_SETTINGS, **arguments)
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- a key both the detector and the suite define


def list_data(tmp_path: Path, *, generators: tuple[str, ...] = ("sdxl",), n: int = 3) -> tuple[Path, Path, Path]:
    """A list-suite root holding a stale list (every label flipped), the intended list outside the root and a score
    file that is perfect under the intended list (so the stale one would score 0 %).

    Returns:
        ``(root, intended list, score file)``.
    """
    from replicas import write_image

    root = tmp_path / "data"
    rows = []
    for g, generator in enumerate(generators):
        for label in (0, 1):
            for i in range(n):
                path = f"{generator}/{'fake' if label else 'real'}/{i}.png"
                write_image(root / path, seed=100 * g + 10 * label + i)
                rows.append({"path": path, "label": label, "generator": generator, "split": "test"})
    table = pd.DataFrame(rows)
    table.assign(label=1 - table["label"]).to_csv(root / "stale.csv", index=False)
    intended = tmp_path / "lists" / "intended.csv"
    intended.parent.mkdir()
    table.to_csv(intended, index=False)
    scores = tmp_path / "scores.csv"
    table.assign(score=np.where(table["label"] == 1, 0.9, 0.1))[["path", "score"]].to_csv(scores, index=False)
    return root, intended, scores


def test_import_scores_gives_set_file_to_the_list_suite(tmp_path: Path) -> None:
    """Regression: ``--set file=LIST`` went to the external detector (whose ``file`` the score file then replaced),
    so the suite silently used the stale list in the root: mean acc 0 instead of 100, without a word."""
    root, intended, scores = list_data(tmp_path)
    result = invoke("import-scores", "list", str(scores), "--name", "perfect", "--root", str(root),
                    "--set", f"file={intended}", "--bootstrap", "0", "-q")
    assert result.exit_code == 0, result.output
    run = detbench.load_run(run_id(result.output))
    assert run.metrics.set_index("generator").loc["mean", "acc"] == 1.0
    assert run.record["key"]["suite"]["options"]["file"] == str(intended)
    assert run.record["settings"]["file"] == str(scores.absolute())

    python = detbench.import_scores("list", scores, name="perfect", root=root, settings={"file": str(intended)},
                                    bootstrap=0)
    assert python.id == run.id  # the same run from Python
    prefixed = detbench.import_scores("list", scores, name="perfect", root=root,
                                      settings={"suite.file": str(intended)}, bootstrap=0)
    assert prefixed.id == run.id


def test_import_scores_with_two_lists_in_the_root_takes_the_one_named(tmp_path: Path) -> None:
    """Regression: with two lists in the root the error asked for ``--set file=``, which the user had just given."""
    root, intended, scores = list_data(tmp_path)
    (root / "other.csv").write_bytes(intended.read_bytes())
    result = invoke("import-scores", "list", str(scores), "--name", "two-lists", "--root", str(root),
                    "--set", "file=stale.csv", "--bootstrap", "0", "-q")  # the one named, however wrong
    assert result.exit_code == 0, result.output
    assert detbench.load_run(run_id(result.output)).metrics.set_index("generator").loc["mean", "acc"] == 0.0
    result = invoke("import-scores", "list", str(scores), "--name", "two-lists", "--root", str(root),
                    "--set", "file=other.csv", "--bootstrap", "0", "-q")
    assert result.exit_code == 0, result.output
    assert detbench.load_run(run_id(result.output)).metrics.set_index("generator").loc["mean", "acc"] == 1.0


def test_import_scores_set_is_for_the_suite_only(tmp_path: Path) -> None:
    """``--set`` of import-scores sets suite options: a key of the score file's reading is refused, pointing at the
    command's own options, never applied to the detector behind the user's back."""
    root, intended, scores = list_data(tmp_path)
    result = invoke("import-scores", "list", str(scores), "--name", "x", "--root", str(root),
                    "--set", f"file={intended}", "--set", "logits=true", "-q")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "suite option" in text and "'logits'" in text and "--logits" in text


def test_a_key_of_both_the_detector_and_the_suite_is_refused_elsewhere(tmp_path: Path) -> None:
    """Outside import-scores an ambiguous bare key is refused, naming both meanings; ``detector.KEY`` and
    ``suite.KEY`` say which is meant."""
    root, intended, scores = list_data(tmp_path)
    result = invoke("run", "external", "--suite", "list", "--root", str(root), "--set", f"file={intended}",
                    "--set", "name=x", "-q")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "ambiguous" in text and "external" in text and "suite list" in text
    assert "detector.file=" in text and "suite.file=" in text
    with pytest.raises(detbench.ConfigError, match="ambiguous"):
        detbench.run("external", "list", root, settings={"file": str(scores), "name": "x"})

    run = detbench.run("external", "list", root, bootstrap=0,
                       settings={"detector.file": str(scores), "suite.file": str(intended), "name": "perfect"})
    assert run.metrics.set_index("generator").loc["mean", "acc"] == 1.0
    imported = detbench.import_scores("list", scores, name="perfect", root=root, settings={"file": str(intended)},
                                      bootstrap=0)
    assert imported.id == run.id  # one run however it is asked for


# ------------------------------------------------------------------------- coverage: no accuracy over one class


@pytest.mark.parametrize("how", ["fakes only", "NaN for every real"])
def test_an_import_scoring_one_class_has_no_accuracy(how: str, demo: pd.DataFrame, tmp_path: Path) -> None:
    """Regression: an import scoring only the fakes (or NaN for every real image, like a detector that returns NaN
    for them) showed acc 92.5-100 for every generator, mean and worst, ranked beside complete runs."""
    rows = evaluation_rows(demo)
    table = pd.DataFrame({"path": rows["path"], "score": np.where(rows["label"] == 1, 0.9, np.nan)})
    file = tmp_path / "one_class.csv"
    (table[rows["label"] == 1] if how == "fakes only" else table).to_csv(file, index=False)
    name = "fakes-only" if how == "fakes only" else "nan-reals"
    result = invoke("import-scores", "demo", str(file), "--name", name, *SMALL)
    assert result.exit_code == 0, result.output
    assert "no real image could be scored" in " ".join(result.output.split())
    run = detbench.load_run(run_id(result.output))
    metrics = run.metrics.set_index("generator")
    assert metrics[["acc", "balanced_acc", "acc_lo", "acc_hi"]].isna().all().all()
    assert (metrics.loc[metrics.index != "worst", "fake_acc"] == 1.0).all()

    coverage = f"{int(rows['label'].sum())}/{len(rows)}"  # the fakes of every family's val split, of all its images
    board = detbench.leaderboard("demo", detector=f"external:{name}")
    assert np.isnan(board["mean"].iloc[0]) and np.isnan(board["worst"].iloc[0])
    assert board["coverage"].iloc[0] == coverage
    listed = detbench.runs("demo", detector=f"external:{name}")
    assert np.isnan(listed["mean_acc"].iloc[0]) and listed["coverage"].iloc[0] == coverage
    shown = invoke("leaderboard", "demo", "--detector", f"external:{name}")
    assert shown.exit_code == 0 and coverage in shown.output and "100.0" not in shown.output
    assert coverage in invoke("ls", "runs").output


def test_an_import_of_some_generators_has_no_mean(demo: pd.DataFrame, tmp_path: Path) -> None:
    """Regression: a 3-of-24 import averaged over the generators it scored, a mean beside complete runs' means."""
    rows = evaluation_rows(demo)
    part = rows[rows["generator"] == "upconv"]
    file = tmp_path / "upconv_only.csv"
    pd.DataFrame({"path": part["path"], "score": np.where(part["label"] == 1, 0.8, 0.2)}).to_csv(file, index=False)
    result = invoke("import-scores", "demo", str(file), "--name", "one-generator", *SMALL)
    assert result.exit_code == 0, result.output
    assert "none of its 12 evaluation images could be scored" in " ".join(result.output.split())
    run = detbench.load_run(run_id(result.output))
    metrics = run.metrics.set_index("generator")
    assert list(metrics.index) == [*sorted(FAMILIES), "mean", "worst"]
    assert metrics.loc["upconv", "acc"] == 1.0 and metrics.loc["nearest", ["n_real", "n_fake"]].sum() == 0
    assert metrics.loc[["nearest", "mean", "worst"], "acc"].isna().all()
    board = detbench.leaderboard("demo", detector="external:one-generator")
    assert board["coverage"].iloc[0] == f"{len(part)}/{len(rows)}" and np.isnan(board["mean"].iloc[0])
    assert board["upconv"].iloc[0] == 1.0


def test_rows_of_other_generators_and_other_data_are_told_apart(tmp_path: Path) -> None:
    """Runs on other data under one suite name show their data identity and score file hash, and a row whose mean
    covers fewer generators than the table's is marked and ranked after the complete ones, never among them."""
    root_a, list_a, scores_a = list_data(tmp_path / "a", generators=("g1", "g2"))
    root_b, list_b, scores_b = list_data(tmp_path / "b", generators=("g1",))
    worse = pd.read_csv(scores_a)
    worse.loc[worse["path"].str.startswith("g2/real"), "score"] = 0.9  # g2's reals called fake: mean 75 %
    worse.to_csv(scores_a, index=False)
    a = detbench.import_scores("list", scores_a, name="m", root=root_a, settings={"file": str(list_a)}, bootstrap=0)
    b = detbench.import_scores("list", scores_b, name="m", root=root_b, settings={"file": str(list_b)}, bootstrap=0)
    assert a.metrics.set_index("generator").loc["mean", "acc"] == 0.75
    assert b.metrics.set_index("generator").loc["mean", "acc"] == 1.0

    board = detbench.leaderboard("list")
    assert board["run_id"].tolist() == [a.id[:16], b.id[:16]]  # the complete row first, despite its lower mean
    assert board["coverage"].tolist() == ["12/12", "6/6, 1/2 generators"]
    assert board["data"].nunique() == 2 and board["data"].str.fullmatch(r"[0-9a-f]{8}").all()
    assert board["files"].tolist() == [f"scores {a.record['key']['scores']['sha256'][:8]}",
                                       f"scores {b.record['key']['scores']['sha256'][:8]}"]
    shown = invoke("leaderboard", "list")
    text = " ".join(shown.output.split())
    assert shown.exit_code == 0 and "100.0 (1 of 2)" in text and "75.0" in text
    for run in (a, b):
        assert board.loc[board["run_id"] == run.id[:16], "data"].item() == run.record["data"]["index_hash"][:8]
