"""detbench from Python: a cheap import, the API from a fresh process, the same runs and errors as the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import SMALL, SMALL_SETTINGS, invoke, with_small_demo

import detbench
from detbench.api import settings_overrides


def python(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with ``DETBENCH_HOME=home``."""
    env = {**os.environ, "DETBENCH_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def api_home(tmp_path_factory: pytest.TempPathFactory, small_demo_tree: Path) -> Path:
    """A home shared by this module's tests, so the small demo run is trained once (not small_demo_home: the
    report tests count the runs there)."""
    return with_small_demo(tmp_path_factory.mktemp("api_home"), small_demo_tree)


def test_import_detbench_imports_no_torch(tmp_path: Path) -> None:
    done = python(
        """
        import sys
        import detbench
        assert "torch" not in sys.modules and "pandas" not in sys.modules, "import detbench imported torch/pandas"
        detectors, suites = detbench.list_detectors(), detbench.list_suites()
        assert {"linear-probe", "mpft", "external"} <= set(detectors["name"]), detectors
        facts = detectors.set_index("name")
        assert facts.loc["external", "training"] == "training-free" and facts.loc["univfd", "weights_key"] == "head"
        assert facts.loc["univfd", "year"] == 2023 and str(facts.loc["linear-probe", "year"]) == "<NA>"
        assert {"demo", "genimage"} <= set(suites["name"]), suites
        assert "torch" not in sys.modules, "listing detectors imported torch"
        assert isinstance(detbench.DetbenchError, type) and detbench.__version__
        print("ok")
        """,
        tmp_path,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_api_from_a_fresh_process_matches_the_cli(api_home: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "facts.json"
    done = python(
        f"""
        import json
        from pathlib import Path
        import detbench
        from detbench.datasets.demo_build import FAMILIES

        small = {SMALL_SETTINGS!r}
        run = detbench.run("linear-probe", "demo", settings=small)
        metrics, scores = run.metrics, run.scores
        assert list(metrics["generator"])[-2:] == ["mean", "worst"], metrics
        assert len(scores) == len(FAMILIES) * 2 * 6 and set(scores["status"]) == {{"ok"}}, scores
        again = detbench.load_run(run.id[:10])
        assert again.id == run.id and again.path == run.path
        assert again.metrics.equals(metrics)
        listed = detbench.runs("demo", detector="linear-probe")
        assert run.id in set(listed["run_id"]), listed
        board = detbench.leaderboard("demo", metric="ap")
        row = board[board["run_id"] == run.id[:16]]
        mean_ap = metrics.set_index("generator").loc["mean", "ap"]
        assert len(row) == 1 and abs(float(row["mean"].iloc[0]) - mean_ap) < 1e-12
        index = detbench.index("demo", settings=small)
        assert len(index) == len(FAMILIES) * 2 * 18 and Path(index.attrs["root"]).is_dir()
        image = Path(index.attrs["root"]) / scores["path"].iloc[0]
        predicted = detbench.predict(run, [image])
        assert list(predicted.columns) == ["run", "file", "score", "decision", "error"], predicted
        assert abs(predicted["score"].iloc[0] - scores["score"].iloc[0]) < 1e-6
        json.dump({{"id": run.id, "path": str(run.path), "repr": repr(run)}}, open({str(out)!r}, "w"))
        """,
        api_home,
    )
    assert done.returncode == 0, done.stderr
    facts = json.loads(out.read_text())
    assert len(facts["id"]) == 64 and facts["repr"].startswith(f"<Run {facts['id'][:16]}: linear-probe on demo")
    monkeypatch.setenv("DETBENCH_HOME", str(api_home))
    cli = invoke("run", "linear-probe", "--suite", "demo", *SMALL)  # the same run: the same id, reused
    assert cli.exit_code == 0 and f"run {facts['id'][:16]}" in cli.output and "(reused)" in cli.output, cli.output


def test_settings_become_the_strings_the_cli_takes() -> None:
    assert settings_overrides(
        {"normalize": False, "c_grid": (0.1, 1, 10.0), "lr": 3e-5, "name": None, "n_train": 12, "mask.grid": "16"}
    ) == {"normalize": "false", "c_grid": "0.1,1,10.0", "lr": "3e-05", "name": "none", "n_train": "12",
          "mask.grid": "16"}
    with pytest.raises(detbench.ConfigError, match="mapping"):
        settings_overrides(["n_train=12"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "kind", "words"),
    [
        (lambda: detbench.run("linear-prob"), detbench.RegistryError, "Did you mean 'linear-probe'"),
        (lambda: detbench.run("linear-probe", settings={"bogus": 1}), detbench.ConfigError, "unknown --set key"),
        (lambda: detbench.run("linear-probe", "folder"), detbench.InputError, "needs its data"),
        (lambda: detbench.run(), detbench.ConfigError, "name a detector"),
        (lambda: detbench.run("linear-probe", seed=-1), detbench.ConfigError, "--seed"),
        (lambda: detbench.leaderboard("demo"), detbench.RunLookupError, "no finished runs"),
        (lambda: detbench.load_run("0123456789abcdef"), detbench.RunLookupError, "no finished run"),
        (lambda: detbench.sweep("linear-probe", "demo", []), detbench.ConfigError, "perturbation axis"),
        (lambda: detbench.index("folder", "/nonexistent/data"), detbench.InputError, "not a directory"),
        (lambda: detbench.compare("0123456789abcdef"), detbench.ConfigError, "two or more runs"),
        (lambda: detbench.compare(["0123", "4567"], metric="eer"), detbench.ConfigError, "cannot compare metric"),
        (lambda: detbench.compare(["0123", "4567"]), detbench.RunLookupError, "no finished run"),
    ],
)
def test_mistakes_raise_the_detbench_error_family(call, kind: type, words: str) -> None:
    with pytest.raises(kind, match=words) as caught:
        call()
    assert isinstance(caught.value, detbench.DetbenchError)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: detbench.run("linear-probe", seed=True), "seed must be an integer (not a bool); got True"),
        (lambda: detbench.run("linear-probe", seed="3"), "seed must be an integer"),
        (lambda: detbench.run("linear-probe", bootstrap=10.0), "bootstrap must be an integer"),
        (lambda: detbench.run("linear-probe", workers=False), "workers must be an integer"),
        (lambda: detbench.run("linear-probe", threshold=True), "threshold must be 'calibrated' or a number"),
        (lambda: detbench.run("linear-probe", force="no"), "force must be True or False"),
        (lambda: detbench.run("linear-probe", progress=1), "progress must be True or False"),
        (lambda: detbench.run("linear-probe", root=5), "root must be a path"),
        (lambda: detbench.run(5), "detector must be text"),
        (lambda: detbench.run("linear-probe", suite=["demo"]), "suite must be text"),
        (lambda: detbench.run("linear-probe", device=0), "device must be text"),
        (lambda: detbench.sweep("linear-probe", "demo", [75]), "perturb must be a list of perturbation axes"),
        (lambda: detbench.sweep("linear-probe", "demo", 75), "perturb must be a list of perturbation axes"),
        (lambda: detbench.import_scores(None, "s.csv", name="x"), "suite must name the suite the scores are of"),
        (lambda: detbench.import_scores("demo", None, name="x"), "file must be a path"),
        (lambda: detbench.import_scores("demo", "s.csv", name="x", seed=True), "seed must be an integer"),
        (lambda: detbench.import_scores("demo", "s.csv", name="x", paths_relative_to="here"),
         "paths_relative_to must be 'root', 'file' or None"),
        (lambda: detbench.leaderboard("demo", metric=1), "metric must be text"),
        (lambda: detbench.leaderboard("demo", delta="yes"), "delta must be True or False"),
        (lambda: detbench.leaderboard("demo", cost="yes"), "cost must be True or False"),
        (lambda: detbench.load_run(123), "run_id must be text"),
        (lambda: detbench.runs(suite=1), "suite must be text"),
        (lambda: detbench.index("demo", fast="yes"), "fast must be True or False"),
        (lambda: detbench.index(None), "suite must be text"),
        (lambda: detbench.predict(123, "x.png"), "run must be a Run, a run id"),
        (lambda: detbench.predict("0123", 5), "paths must be a path"),
        (lambda: detbench.predict("0123", "x.png", batch_size=True), "batch_size must be an integer"),
    ],
)  # fmt: skip
def test_arguments_of_the_wrong_type_raise_one_config_error(call, words: str) -> None:
    """Regression: wrong types raised bare TypeError/AttributeError deep inside (or were accepted: seed=True ran
    as seed 1), and import_scores(None, ...) silently imported into the demo suite."""
    with pytest.raises(detbench.ConfigError) as caught:
        call()
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_numpy_integers_are_integers() -> None:
    import numpy as np

    req = detbench.api.request("linear-probe", seed=np.int64(3), bootstrap=np.int32(10), threshold=np.float64(0.25))
    assert req.run.seed == 3 and type(req.run.seed) is int and req.run.n_boot == 10 and req.run.threshold == "0.25"


def test_runs_and_empty_home() -> None:
    table = detbench.runs()
    assert isinstance(table, pd.DataFrame) and table.empty and "external" in table.columns


def test_api_functions_and_the_modules_behind_them_have_distinct_names() -> None:
    import importlib

    for name, module in (("index", "detbench.data.index"), ("leaderboard", "detbench.results.leaderboard"),
                         ("predict", "detbench.results.predict"), ("sweep", "detbench.engine.sweep")):
        importlib.import_module(module)
        assert getattr(detbench, name) is getattr(detbench.api, name) and callable(getattr(detbench, name))
    assert sorted(detbench.__all__) == sorted(set(detbench.__all__))  # no name twice


def test_readme_python_example_runs(api_home: Path, tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    example = readme.split("## From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    env = {**os.environ, "DETBENCH_HOME": str(api_home), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "external:other-tool" in done.stdout and "linear-probe" in done.stdout
    assert "mcnemar-exact" in done.stdout and "delong" in done.stdout  # detbench.compare
    exported = pd.read_csv(tmp_path / "for_other_tools.csv")
    assert list(exported.columns)[0] == "filename" and len(exported) == 3
