from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import detbench.api
from detbench.registry import DETECTORS, SUITES, Registry, RegistryError


def test_builtins_are_listed_without_import() -> None:
    assert "linear-probe" in DETECTORS.names()
    assert "demo" in SUITES.names()
    assert DETECTORS.describe("linear-probe")["summary"]


def test_unknown_name_suggests_close_match() -> None:
    with pytest.raises(RegistryError, match="Did you mean 'linear-probe'"):
        DETECTORS.get("linear-prob")


def test_duplicate_registration_is_rejected() -> None:
    reg = Registry("widget")
    reg.register_lazy("a", "math:sqrt")
    with pytest.raises(RegistryError, match="already registered"):
        reg.register_lazy("a", "math:floor")

    @reg.register("b")
    class B:
        pass

    with pytest.raises(RegistryError):
        reg.register("b")(int)


def test_lazy_target_resolves_and_decorator_on_own_module_is_not_a_duplicate() -> None:
    reg = Registry("widget")
    reg.register_lazy("sqrt", "math:sqrt")
    import math

    assert reg.get("sqrt") is math.sqrt


def test_entry_point_plugins_are_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "my_plugin.py"
    pkg.write_text("class MyDetector:\n    name = 'my-detector'\n")
    dist = tmp_path / "my_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[detbench.detectors]\nmy-detector = my_plugin:MyDetector\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("detector", "detbench.detectors")
    assert "my-detector" in reg.names()
    assert reg.describe("my-detector")["origin"] == "entry point of my-plugin"
    assert reg.get("my-detector").name == "my-detector"


def test_listing_detectors_does_not_import_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        from typer.testing import CliRunner
        from detbench.cli.commands import app
        result = CliRunner().invoke(app, ["ls", "detectors"])
        assert result.exit_code == 0, result.output
        assert "linear-probe" in result.output
        result = CliRunner().invoke(app, ["ls", "suites"])
        assert "demo" in result.output
        heavy = [m for m in ("torch", "sklearn", "open_clip", "timm") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_builtin_detector_states_its_facts_and_they_match_the_class() -> None:
    """``detbench ls detectors``: paper, year, trains or training-free, released weights; one fact per place, so
    the listing's training kind must agree with the class and the weights key must be a config key."""
    from detbench.config import field_paths

    for name in DETECTORS.names():
        if DETECTORS.describe(name)["origin"] != "built-in":
            continue
        info = DETECTORS.info(name)
        assert info is not None and info.paper, name
        cls = DETECTORS.get(name)
        assert (info.training == "training-free") == bool(cls.training_free), name
        if info.weights_key:
            assert info.weights_key in field_paths(cls.Config) and info.released, name
            assert cls(cls.Config(**{info.weights_key: "w.pth"})).needs_training() is False, name


def test_ls_detectors_lists_the_facts_without_importing_torch() -> None:
    code = ("import sys; from detbench.cli.commands import app\n"
            "try:\n    app(['ls', 'detectors'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'ls detectors imported torch'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for text in ("cnnspot", "Wang et al., CVPR", "2020", "npr", "2024", "--set weights=PATH", "NPR.pth",
                 "--set head=PATH", "trains"):
        assert text in out, text


def test_a_plugin_that_is_not_a_detector_fails_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli_helpers import invoke

    (tmp_path / "not_a_detector.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    DETECTORS.register_lazy("thing", "not_a_detector:Thing")
    try:
        with pytest.raises(RegistryError, match="not a subclass of detbench.kit.detector.Detector"):
            DETECTORS.get("thing")
        result = invoke("run", "thing", "--suite", "demo")
        assert result.exit_code == 2 and "not a subclass" in result.output and "Traceback" not in result.output
    finally:
        DETECTORS.unregister("thing")


def test_suite_facts_are_read_from_the_registration_and_listed() -> None:
    """A suite module's REGISTRATION may state its paper, year, download and licence; they are listed without
    importing the suite."""
    frame = detbench.api.list_suites().set_index("name")
    assert {"paper", "year", "download", "licence"} <= set(frame.columns)
    row = frame.loc["wildrf"]
    assert "2406.09398" in row["paper"] and row["year"] == 2024 and row["download"] and row["licence"]
    assert frame["year"].dtype == "Int64"


def test_ls_suites_shows_the_paper_and_year() -> None:
    from typer.testing import CliRunner

    from detbench.cli.commands import app

    result = CliRunner().invoke(app, ["ls", "suites"])
    assert result.exit_code == 0, result.output
    assert "licence" in result.output and "Cavia" in result.output  # WildRF's paper, in the table's paper column
