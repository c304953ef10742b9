"""AIGCDetectBenchmark adapter on a miniature replica of its test collection and the ProGAN training set."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from replicas import AIGCDETECT_SETS, build_aigcdetect, write_image

from detbench.config import ConfigError, apply_overrides
from detbench.data.index import build_index, index_dir
from detbench.data.preprocess import EVAL_PROFILES
from detbench.data.suites import EVAL_CONVENTIONS, SuiteLayoutError
from detbench.datasets.aigcdetect import SETS, AIGCDetectSuite, canonical_set


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory):
    return build_aigcdetect(tmp_path_factory.mktemp("aigc") / "AIGCDetectBenchmark")


def rows_of(df) -> Counter:
    cols = ["path", "generator", "split", "label", "status"]
    return Counter(tuple(r) for r in df[cols].itertuples(index=False, name=None))


def test_the_16_sets_of_eval_config() -> None:
    assert len(SETS) == 16
    assert [canonical_set(name) for name in AIGCDETECT_SETS] == list(SETS)
    assert canonical_set("Stable_Diffusion_V_1_4") == "sdv14" and canonical_set("WFIR") == "whichfaceisreal"
    assert canonical_set("dalle") is None and canonical_set("sdxl") is None


def test_full_layout_exact_rows_and_counts(full) -> None:
    suite = AIGCDetectSuite()
    index = build_index(suite, full.root, mode="full")
    assert rows_of(index.rows) == Counter(full.expected)
    counts = index.manifest["counts"]
    assert set(counts) == set(SETS) | {"progan-car", "progan-cat", "progan-chair", "progan-horse"}
    assert counts["progan"] == {"test": {"fake": 4, "real": 4}}  # 2 class folders merged
    assert counts["stylegan2"] == {"test": {"fake": 4, "real": 4}}
    assert counts["adm"] == {"test": {"fake": 2, "real": 2}}
    assert counts["progan-cat"] == {"train": {"fake": 2, "real": 2}}
    assert index.manifest["problems"] == {"empty": 1, "truncated": 1, "undecodable": 1}
    assert suite.ignored == []
    rows = index.rows
    assert set(rows.loc[rows["label"] == 0, "family"]) == {"real"}
    fam = rows[rows["label"] == 1].groupby("generator")["family"].first()
    assert fam["midjourney"] == "commercial" and fam["sdv14"] == "diffusion" and fam["whichfaceisreal"] == "gan"


def test_test_folder_as_root_and_unknown_folders(tmp_path: Path) -> None:
    rep = build_aigcdetect(tmp_path / "test", test_dir="", train_classes=(), n=1, defects=False)
    write_image(rep.root / "sdxl" / "1_fake" / "x.png")
    write_image(rep.root / "progan" / "README_files" / "x.png")
    suite = AIGCDetectSuite()
    assert Counter((e.path, e.generator, e.split, e.label, "ok") for e in suite.scan(rep.root)) == Counter(rep.expected)
    assert sorted(suite.ignored) == ["progan/README_files", "sdxl"]


def test_protocols(full) -> None:
    suite = AIGCDetectSuite()
    generators = sorted({e.generator for e in suite.scan(full.root)})
    protocols = suite.protocols(generators)
    assert list(protocols) == ["progan-4class", "progan-20class"] and suite.default_protocol == "progan-4class"
    assert suite.all_protocols(generators)["eval"].eval_generators == tuple(SETS)
    four = protocols["progan-4class"]
    assert four.train_generators == ("progan-car", "progan-cat", "progan-chair", "progan-horse")
    assert (four.train_split, four.eval_split, four.eval_generators) == ("train", "test", tuple(SETS))
    assert "missing from this root: airplane" in protocols["progan-20class"].description


def test_layout_errors(tmp_path: Path) -> None:
    write_image(tmp_path / "photos" / "holiday" / "a.png")
    with pytest.raises(SuiteLayoutError, match=r"(?s)does not look like AIGCDetectBenchmark.*sets: progan.*holiday/"):
        list(AIGCDetectSuite().scan(tmp_path / "photos"))
    rep = build_aigcdetect(tmp_path / "dup", train_classes=(), n=1, defects=False)
    shutil.copytree(rep.root / "test" / "ADM", rep.root / "test" / "adm")
    with pytest.raises(SuiteLayoutError, match="two folders .* set 'adm'"):
        list(AIGCDetectSuite().scan(rep.root))
    empty = tmp_path / "empty"
    (empty / "test" / "ADM" / "0_real").mkdir(parents=True)
    with pytest.raises(SuiteLayoutError, match="no images in 0_real/1_fake"):
        list(AIGCDetectSuite().scan(empty))


def test_eval_profile_option_is_validated_and_not_part_of_the_index_identity(full) -> None:
    suite = AIGCDetectSuite()
    assert suite.options.eval_profile == "detector" and suite.eval_profiles(["adm"]) == {}
    assert suite.eval_convention in EVAL_CONVENTIONS and "native" in EVAL_PROFILES
    crop = AIGCDetectSuite(apply_overrides(suite.Options(), {"eval_profile": "resize-256-center-crop-224"}))
    assert index_dir(crop, full.root, "full") == index_dir(suite, full.root, "full")
    profiles = crop.eval_profiles(["adm", "progan"])
    assert profiles["adm"].resize == 256 and profiles["adm"].crop == 224
    with pytest.raises(ConfigError, match="Did you mean 'resize-256'"):
        apply_overrides(suite.Options(), {"eval_profile": "resize256"})


def test_npr_preset_lists_every_set_and_its_mean() -> None:
    from detbench.results.presets import get_preset

    preset = get_preset("npr.paper-aigcdetect")
    acc = preset.expected("acc")
    assert preset.suite == "aigcdetect" and preset.protocol == "eval" and preset.required_files == ("weights",)
    assert set(acc) == {*SETS, "mean"} and acc["mean"] == 91.7
    assert sum(v for k, v in acc.items() if k != "mean") / 16 == pytest.approx(91.7, abs=0.05)
    assert preset.config["eval_profile"] == "native" and "native" in EVAL_PROFILES
