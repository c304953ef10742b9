"""`detbench report`: a self-contained HTML report (and its PNGs) from a small real run and its sweep."""

from __future__ import annotations

import base64
import io
import itertools
import json
import re
import shutil
from pathlib import Path

import pytest
from cli_helpers import SMALL, invoke
from PIL import Image

from detbench.datasets.demo_build import FAMILIES
from detbench.store import content_hash, seal_record

GENERATORS = tuple(FAMILIES)



@pytest.fixture
def home(small_demo_home: Path) -> Path:
    return small_demo_home


@pytest.fixture(scope="module")
def sweep_records(small_demo_home: Path) -> dict[str, dict]:
    """The records of a small sweep (clean, jpeg:50, blur:2) by perturbation, swept once per test process.
    Shared and read-only: no test changes them or the runs they name."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DETBENCH_HOME", str(small_demo_home))
        result = invoke("sweep", "linear-probe", *SMALL, "-p", "jpeg:50", "-p", "blur:2")
    assert result.exit_code == 0, result.output
    runs = small_demo_home / "runs" / "demo" / "linear-probe"
    recs = [json.loads(p.read_text()) for p in runs.glob("*/run.json")]
    return {(r["perturbation"] or {}).get("spec", "clean"): r for r in recs}


@pytest.fixture
def swept(home: Path, sweep_records: dict[str, dict], monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    monkeypatch.setenv("DETBENCH_HOME", str(home))
    return sweep_records


def embedded_pngs(page: str) -> list[bytes]:
    return [
        base64.b64decode(m) for m in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    ]


def test_run_report_is_self_contained_with_every_chart_and_the_leaderboard(swept, tmp_path: Path) -> None:
    clean = swept["clean"]
    out = tmp_path / "report"
    result = invoke("report", clean["run_id"][:10], "--out", str(out))
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    pngs = sorted(out.glob("*.png"))
    stems = {p.stem.split("_", 1)[1] for p in pngs}
    assert stems == {"acc", "roc", "scores", "reliability", "robustness"}
    images = embedded_pngs(page)
    assert len(images) == 5 and page.count("<img ") == 5
    assert sorted(images) == sorted(p.read_bytes() for p in pngs)  # the files are the embedded charts
    for data in images:
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 200
    for title in ("Accuracy and AP per generator", "ROC curves", "Score distributions", "Reliability diagram",
                  "Robustness curves"):
        assert f"<b>{title}.</b>" in page
    calibration = page.split("<h3>Operating points and calibration per generator</h3>")[1].split("</table>")[0]
    for header in ("TPR@FPR 1%", "TPR@FPR 5%", "TPR@FPR 10%", "ECE", "Brier", "NLL"):
        assert f"<th>{header}</th>" in calibration
    assert all(f"<th>{g}</th>" in calibration for g in (*GENERATORS, "mean", "worst"))
    assert "<title>detbench report: linear-probe on demo" in page and "Metrics per generator" in page
    assert all(f"<th>{g}</th>" in page for g in GENERATORS)
    assert page.count('<table class="leaderboard">') == 1
    board = page.split('<table class="leaderboard">')[1].split("</table>")[0]
    assert board.count("<tr>") == 1 + len(swept)  # header + one row per finished run
    robustness = page.split("<h3>Robustness")[1].split("</table>")[0]
    assert "jpeg:50" in robustness and "blur:2" in robustness
    assert "±" in page and clean["run_id"] in page
    assert not re.search(r"<script|https?://|<link ", page)  # no scripts, no network resources


def test_perturbed_run_and_suite_reports(swept, tmp_path: Path) -> None:
    blur = swept["blur:2"]
    result = invoke("report", blur["run_id"][:16], "--out", str(tmp_path / "blur"))
    assert result.exit_code == 0, result.output
    page = (tmp_path / "blur" / "report.html").read_text()
    assert "blur:2 · run" in page and "Robustness curves" in page and len(embedded_pngs(page)) == 5

    suite = invoke("report", "demo", "--out", str(tmp_path / "suite"))
    assert suite.exit_code == 0, suite.output
    page = (tmp_path / "suite" / "report.html").read_text()
    assert (
        "suite demo" in page and page.count('<section id="run-') == 1
    )  # clean runs only; the others as curves


def test_unknown_and_ambiguous_run_ids(swept, home: Path, tmp_path: Path, monkeypatch) -> None:
    unknown = invoke("report", "zzzz")
    assert (
        unknown.exit_code == 2 and "no finished run" in unknown.output and "Traceback" not in unknown.output
    )

    copy = tmp_path / "home"
    shutil.copytree(home / "runs", copy / "runs")
    monkeypatch.setenv("DETBENCH_HOME", str(copy))
    run_dir = Path(swept["clean"]["paths"]["run"])
    renamed = copy / "runs" / "demo" / "linear-probe" / (run_dir.name[:4] + "x" * 12)
    shutil.copytree(run_dir, renamed)  # a run folder copied under another name is not that run
    alone = invoke("report", run_dir.name[:4], "--out", str(tmp_path / "alone"))
    assert alone.exit_code == 0 and f"run {renamed.name} is damaged" in " ".join(alone.output.split())
    shutil.rmtree(renamed)

    record = json.loads((run_dir / "run.json").read_text())  # another run whose id shares the first 4 characters
    run_key = next(k for n in itertools.count() if content_hash(k := {**record["run_key"], "twin": n}).startswith(
        run_dir.name[:4]))
    run_id = content_hash(run_key)
    twin = copy / "runs" / "demo" / "linear-probe" / run_id[:16]
    shutil.copytree(run_dir, twin)
    (twin / "run.json").write_text(json.dumps(seal_record({**record, "run_key": run_key, "run_id": run_id})))
    ambiguous = invoke("report", run_dir.name[:4])
    assert ambiguous.exit_code == 2 and "ambiguous" in ambiguous.output and run_dir.name in ambiguous.output


def test_report_of_a_folder(swept, home: Path, tmp_path: Path) -> None:
    """Regression: `detbench report /absolute/dir` crashed (NotImplementedError from a glob) instead of saying what
    it takes; a run's or a suite's folder under the runs folder is reported."""
    for target in (str(tmp_path), str(tmp_path / "missing"), "..", "demo/linear-probe"):
        result = invoke("report", target)
        assert result.exit_code == 2 and "Traceback" not in result.output, (target, result.output)
        assert "neither a run id nor a suite name" in " ".join(result.output.split()), result.output
    run_dir = Path(swept["clean"]["paths"]["run"])
    by_folder = invoke("report", str(run_dir), "--out", str(tmp_path / "run"))
    assert by_folder.exit_code == 0, by_folder.output
    assert f"run {run_dir.name}" in (tmp_path / "run" / "report.html").read_text()
    by_suite = invoke("report", str(home / "runs" / "demo"), "--out", str(tmp_path / "suite"))
    assert by_suite.exit_code == 0 and "suite demo" in (tmp_path / "suite" / "report.html").read_text()


def test_a_perfect_ap_stored_just_below_one_draws_its_error_bar(tmp_path: Path) -> None:
    """Regression: an AP of 0.99999999999999989 with bootstrap bounds [1, 1] gave a negative error bar and
    matplotlib's ValueError, on a normal demo run."""
    import pandas as pd

    from detbench.engine.finished_run import Run
    from detbench.results.figures import acc_figure

    metrics = pd.DataFrame({
        "generator": ["g", "mean", "worst"], "acc": [1.0, 1.0, 1.0], "ap": [0.99999999999999989, 1.0, 1.0],
        "acc_lo": [1.0, 1.0, float("nan")], "acc_hi": [1.0, 1.0, float("nan")],
        "ap_lo": [1.0, 1.0, float("nan")], "ap_hi": [1.0, 1.0, float("nan")],
    })
    record = {"run_id": "0123456789abcdef" * 4, "perturbation": None,
              "threshold": {"policy": "fixed", "label": "0.5", "value": 0.5}}
    figure = acc_figure(Run(tmp_path / "0123456789abcdef", record, metrics))
    assert figure.png.startswith(b"\x89PNG")


def test_report_writes_nothing_outside_detbench_home(swept, home: Path, tmp_path: Path) -> None:
    """Regression: matplotlib wrote its font cache and config under ~/.cache and ~/.config."""
    import os
    import subprocess
    import sys

    user_home = tmp_path / "user"
    user_home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
    env.update(HOME=str(user_home), DETBENCH_HOME=str(home))
    done = subprocess.run([sys.executable, "-m", "detbench", "report", swept["clean"]["run_id"][:16], "--out",
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert list(user_home.rglob("*")) == [] and (home / "matplotlib").is_dir()
