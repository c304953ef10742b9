"""Paper presets: files cite sources, environment checks list what is missing, and a stand-in run is no reproduction."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from replicas import GENIMAGE_NESTED, build_genimage
from typer.testing import CliRunner

from detbench.cli.commands import app
from detbench.registry import DETECTORS, SUITES
from detbench.results import presets


def test_every_preset_loads_cites_its_source_and_names_registered_plugins() -> None:
    loaded = presets.load_presets()
    assert {"univfd.paper-ufd", "linear-probe.vitl14-genimage", "mpft.paper-genimage", "mpft.paper-ufd"} <= set(loaded)
    for p in loaded.values():
        assert p.published["source"] and p.published["confidence"] in ("paper", "compiled", "rerun")
        assert p.suite in SUITES.names()
        assert p.expected("acc") or p.expected_range("acc")
    ufd = loaded["univfd.paper-ufd"]
    acc = ufd.expected("acc")
    assert len(acc) == 20 and acc["mean"] == pytest.approx(81.38)
    assert sum(v for k, v in acc.items() if k != "mean") / 19 == pytest.approx(81.38, abs=0.01)
    assert loaded["mpft.paper-genimage"].expected("acc") == {"mean": 98.2}


def test_unknown_preset_suggests() -> None:
    with pytest.raises(presets.PresetError, match="Did you mean 'mpft.paper-ufd'"):
        presets.get_preset("mpft.paper-udf")


def test_checks_list_everything_missing_without_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the check under test, on any machine
    root = tmp_path / "genimage"
    build_genimage(root, generators=("sdv14", "adm"), n=2)
    result = CliRunner().invoke(
        app, ["--offline", "run", "--preset", "linear-probe.vitl14-genimage", "--root", str(root)]
    )
    assert result.exit_code == 2, result.output
    out = result.output
    assert "cannot run yet" in out and "Traceback" not in out
    assert "no CUDA GPU found" in out
    assert "backbone open_clip:ViT-L-14@openai" in out and "local-dir:" in out
    assert "generator midjourney: no val images" in out
    assert "generator adm: only" in out


def test_preset_compare_flags_deltas_beyond_tolerance() -> None:
    import pandas as pd

    preset = presets.get_preset("univfd.paper-ufd")
    metrics = pd.DataFrame({"generator": ["progan", "san", "mean"], "acc": [0.99, 0.70, 0.80], "ap": [1.0, 0.79, 0.9]})
    table = presets.compare(preset, metrics).set_index(["generator", "metric"])
    assert table.loc[("progan", "acc"), "delta"] == pytest.approx(-1.0)
    assert not table.loc[("progan", "acc"), "flag"]
    assert table.loc[("san", "acc"), "flag"]  # 70.0 vs 57.5
    assert table.loc[("mean", "ap"), "expected"] == pytest.approx(93.38)


def test_stand_in_backbone_runs_end_to_end_but_is_not_a_reproduction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "linear-probe" in DETECTORS.names()
    root = tmp_path / "genimage"
    build_genimage(root, n=6, defects=False)
    real = presets.load_presets()
    small = {k: dataclasses.replace(v, min_images_per_generator=4) for k, v in real.items()}
    monkeypatch.setattr(presets, "load_presets", lambda: small)
    args = [
        "run",
        "--preset",
        "linear-probe.vitl14-genimage",
        "--root",
        str(root),
        "--allow-cpu",
        "-q",
        "--set",
        "backbone=open_clip:detbench-tiny-vit@random",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "measured vs published" in result.output and "Not a reproduction" in result.output
    record = json.loads(_only_record())
    assert record["preset"] == {
        "name": "linear-probe.vitl14-genimage",
        "version": 1,
        "reproduction": False,
        "departures": ["backbone"],
        "unverified": [],
        "files": {},
    }


def _only_record() -> str:
    import os

    runs = list(Path(os.environ["DETBENCH_HOME"]).glob("runs/genimage/linear-probe/*/run.json"))
    assert len(runs) == 1
    return runs[0].read_text()


def test_leaderboard_shows_published_rows_marked_as_such() -> None:
    result = CliRunner().invoke(app, ["leaderboard", "ufd", "--published"])
    assert result.exit_code == 0, result.output
    assert "(published:" in result.output and "r2" in result.output
    assert "81.4" in result.output and "94.6" in result.output


def _prepare(preset: presets.Preset, root: Path, **overrides: str) -> dict:
    return presets.prepare_preset_run(preset, None, None, None, overrides, root=root, allow_cpu=True, device=None)[4]


def test_preflight_reads_a_pinned_path_and_records_whether_the_file_is_the_release(tmp_path: Path) -> None:
    """``--set weights=PATH#sha256=HEX`` was refused as "no such file"; and any file of the right architecture was
    recorded as a reproduction, no preset knowing the release's sha256."""
    root = build_genimage(tmp_path / "genimage", n=1, defects=False).root
    folder = tmp_path / "run#3"  # a '#' inside the path is the path's
    folder.mkdir()
    weights = folder / "npr.pth"
    weights.write_bytes(b"pre-flight reads no tensor")
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    preset = dataclasses.replace(presets.get_preset("npr.genimage-sdv14"), min_images_per_generator=1)
    assert "sha256" not in preset.release["weights"]  # detbench knows no published digest: it invents none

    record = _prepare(preset, root, weights=f"{weights}#sha256={sha}")
    assert record["reproduction"] is False and record["unverified"] == ["weights"] and record["departures"] == []
    assert record["files"] == {"weights": {"sha256": sha, "release_sha256": None, "matches": None}}
    with pytest.raises(presets.PresetError, match="sha256 mismatch"):
        _prepare(preset, root, weights=f"{weights}#sha256={'0' * 64}")
    with pytest.raises(presets.PresetError, match="no such file"):
        _prepare(preset, root, weights=str(folder / "absent.pth"))

    released = dataclasses.replace(preset, release={"weights": {"file": "npr.pth", "sha256": sha}})
    record = _prepare(released, root, weights=str(weights))
    assert record["reproduction"] is True and record["files"]["weights"]["matches"] is True
    other = dataclasses.replace(preset, release={"weights": {"file": "npr.pth", "sha256": "1" * 64}})
    record = _prepare(other, root, weights=str(weights))
    assert record["reproduction"] is False and record["unverified"] == []
    assert record["departures"] == [f"weights (sha256 {sha[:12]}… is not the release's {'1' * 12}…)"]


def test_every_required_file_has_a_release_entry_and_no_digest_is_made_up() -> None:
    for p in presets.load_presets().values():
        assert set(p.required_files) <= set(p.release), p.name
        for release in p.release.values():
            assert release["file"] and release["where"] and "sha256" not in release, p.name


def test_preflight_needs_both_classes_of_every_generator(tmp_path: Path) -> None:
    root = build_genimage(tmp_path / "genimage", generators=("sdv14", "adm"), n=3, defects=False).root
    outer, inner = GENIMAGE_NESTED["adm"]
    shutil.rmtree(root / outer / inner / "val" / "nature")  # 3 fakes, no real image: acc and AP mean nothing
    preset = dataclasses.replace(presets.get_preset("npr.genimage-sdv14"), min_images_per_generator=2,
                                 published={"acc": {"adm": 87.8, "sdv14": 90.0}})
    weights = tmp_path / "npr.pth"
    weights.write_bytes(b"x")
    with pytest.raises(presets.PresetError) as err:
        _prepare(preset, root, weights=str(weights))
    text = " ".join(str(err.value).split())
    assert "generator adm: no real val images" in text and "(3 of the other class)" in text
    assert "generator sdv14" not in text


def test_the_preset_table_shows_the_tolerance_in_points() -> None:
    import pandas as pd

    from detbench.cli.views import preset_table_cells
    from detbench.results.display import frame_table

    preset = presets.get_preset("univfd.paper-ufd")
    metrics = pd.DataFrame({"generator": ["progan"], "acc": [0.99], "ap": [1.0]})
    table = presets.compare(preset, metrics)
    cells = preset_table_cells(table)
    assert list(cells["tolerance"]) == ["3.0", "3.0"] and list(cells["measured"]) == ["99.0", "100.0"]
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(frame_table(cells, "t"))
    assert "300.0" not in console.export_text()


def test_a_release_that_is_a_folder_is_checked_as_one_and_recorded_unverified(tmp_path: Path) -> None:
    """A detector whose released weights are a folder of files (``folder = true`` in ``[release.KEY]``): the
    pre-flight refused every folder as "no such file" and the digest of a folder was never defined."""
    root = build_genimage(tmp_path / "genimage", n=1, defects=False).root
    release = {"weights": {"file": "the release folder", "where": "its README", "folder": "True"}}
    preset = dataclasses.replace(presets.get_preset("npr.genimage-sdv14"), min_images_per_generator=1,
                                 release=release)
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "fusion_weights.pth").write_bytes(b"pre-flight reads no tensor")
    record = _prepare(preset, root, weights=str(folder))
    assert record["reproduction"] is False and record["unverified"] == ["weights"] and record["departures"] == []
    assert record["files"] == {"weights": {"sha256": None, "release_sha256": None, "matches": None}}
    with pytest.raises(presets.PresetError, match="not a folder"):
        _prepare(preset, root, weights=str(folder / "fusion_weights.pth"))
    with pytest.raises(presets.PresetError, match="no such folder"):
        _prepare(preset, root, weights=str(tmp_path / "absent"))


def test_the_papers_perturbation_is_applied_and_another_is_a_departure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A paper that re-encodes every test image (Co-Spy-Bench: JPEG 95) names it in its preset: a preset run applies
    it unless the user asks for another perturbation, which is then recorded as a departure."""
    from detbench import api

    root = build_genimage(tmp_path / "genimage", n=1, defects=False).root
    weights = tmp_path / "npr.pth"
    weights.write_bytes(b"pre-flight reads no tensor")
    preset = dataclasses.replace(presets.get_preset("npr.genimage-sdv14"), min_images_per_generator=1,
                                 perturb="jpeg:95")
    prepared = presets.prepare_preset_run(preset, None, None, None, {"weights": str(weights)}, root=root,
                                          allow_cpu=True, device=None)
    assert prepared[5] == "jpeg:95" and prepared[4]["departures"] == []
    prepared = presets.prepare_preset_run(preset, None, None, None, {"weights": str(weights)}, root=root,
                                          allow_cpu=True, device=None, perturb="jpeg:75")
    assert prepared[5] == "jpeg:75" and prepared[4]["departures"] == ["perturb=jpeg:75 (the paper's: jpeg:95)"]

    cospy = [p for p in presets.load_presets().values() if p.suite == "cospybench"]
    assert cospy and all(p.perturb == "jpeg:95" for p in cospy)
    assert all(p.perturb is None for p in presets.load_presets().values() if p.suite != "cospybench")
    monkeypatch.setattr(presets, "get_preset", lambda name: preset)
    planned = api.request(preset=preset.name, root=root, settings={"weights": str(weights)}, allow_cpu=True)
    assert planned.run.perturb == "jpeg:95"
    planned = api.request(preset=preset.name, root=root, settings={"weights": str(weights)}, allow_cpu=True,
                          perturb="jpeg:75")
    assert planned.run.perturb == "jpeg:75" and planned.run.preset["departures"] == [
        "perturb=jpeg:75 (the paper's: jpeg:95)"]
