from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
        from detbench.cli import app
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


def test_a_plugin_that_is_not_a_detector_fails_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli_helpers import invoke

    (tmp_path / "not_a_detector.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    DETECTORS.register_lazy("thing", "not_a_detector:Thing")
    try:
        with pytest.raises(RegistryError, match="not a subclass of detbench.detector.Detector"):
            DETECTORS.get("thing")
        result = invoke("run", "thing", "--suite", "demo")
        assert result.exit_code == 2 and "not a subclass" in result.output and "Traceback" not in result.output
    finally:
        DETECTORS.unregister("thing")
