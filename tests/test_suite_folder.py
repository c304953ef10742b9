"""Generic folder adapter: label folder pairs, generator level, splits, errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from replicas import build_folder, write_broken, write_image

from detbench.config import ConfigError, apply_overrides
from detbench.data.index import build_index
from detbench.data.suites import SuiteLayoutError
from detbench.datasets.folder import FolderOptions, FolderSuite


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DETBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def as_rows(entries) -> Counter:
    return Counter((e.path, e.generator, e.split, e.label, "ok") for e in entries)


@pytest.mark.parametrize(
    "pair",
    [
        ("0_real", "1_fake"),
        ("real", "fake"),
        ("nature", "ai"),
        ("Real", "FAKE"),
        ("0_REAL", "1_Fake"),
        ("Nature", "AI"),
    ],
)
def test_label_pairs_by_name(tmp_path: Path, pair: tuple[str, str]) -> None:
    """``fake`` sorts before ``real`` and ``ai`` before ``nature``: labels must come from the names."""
    rep = build_folder(tmp_path / "data", pair=pair, generators=("sdxl", "flux"))
    index = build_index(FolderSuite(), rep.root, mode="full")
    rows = index.rows
    assert Counter(
        tuple(r)
        for r in rows[["path", "generator", "split", "label", "status"]].itertuples(index=False, name=None)
    ) == Counter(rep.expected)
    assert set(rows[rows["label"] == 1]["width"]) == {17} and set(rows[rows["label"] == 1]["format"]) == {
        "png"
    }
    assert set(rows[rows["label"] == 0]["width"]) == {23} and set(rows[rows["label"] == 0]["format"]) == {
        "jpeg"
    }
    assert index.manifest["counts"] == {g: {"test": {"fake": 2, "real": 2}} for g in ("flux", "sdxl")}
    assert set(rows["family"]) == {"real", "unknown"}


def test_split_folders_and_protocols(tmp_path: Path) -> None:
    rep = build_folder(tmp_path / "d", generators=("a", "b"), splits=("train", "test"))
    build_folder(tmp_path / "d", generators=("c",), splits=("validation",))
    suite = FolderSuite()
    rows = list(suite.scan(rep.root))
    assert Counter((e.generator, e.split) for e in rows) == {
        ("a", "train"): 4,
        ("a", "test"): 4,
        ("b", "train"): 4,
        ("b", "test"): 4,
        ("c", "val"): 4,
    }
    protocols = suite.protocols(sorted({e.generator for e in rows}))
    assert list(protocols) == ["train-on-a", "train-on-b"]
    assert protocols["train-on-a"].train_generators == ("a",)
    assert (protocols["train-on-a"].train_split, protocols["train-on-a"].eval_split) == ("train", "test")
    assert protocols["train-on-a"].eval_generators is None


def test_generator_level(tmp_path: Path) -> None:
    for gen, cls in (("gen1", "car"), ("gen1", "cat"), ("gen2", "car")):
        for folder in ("0_real", "1_fake"):
            write_image(tmp_path / "d" / gen / "test" / cls / folder / "x.png")
    by_level = {}
    for level in (0, 1, -1, -2):
        options = apply_overrides(FolderOptions(), {"generator_level": str(level)})
        by_level[level] = Counter(e.generator for e in FolderSuite(options).scan(tmp_path / "d"))
    assert by_level[0] == by_level[-2] == {"gen1": 4, "gen2": 2}
    assert by_level[1] == by_level[-1] == {"car": 4, "cat": 2}
    with pytest.raises(SuiteLayoutError, match="generator_level=2"):
        list(FolderSuite(FolderOptions(generator_level=2)).scan(tmp_path / "d"))


def test_root_level_labels_and_split_default(tmp_path: Path) -> None:
    root = tmp_path / "Chameleon"
    for folder in ("0_real", "1_fake"):
        write_image(root / folder / "a.jpg")
    write_broken(root / "1_fake" / "b.png", "empty")
    suite = FolderSuite(apply_overrides(FolderOptions(), {"split_default": "val"}))
    index = build_index(suite, root, mode="full")
    assert set(index.rows["generator"]) == {"Chameleon"} and set(index.rows["split"]) == {"val"}
    assert sorted(index.rows["status"]) == ["empty", "ok", "ok"]
    assert suite.protocols(index.generators) == {}  # nothing to train on
    with pytest.raises(ConfigError, match="split_default"):
        FolderOptions(split_default="")


def test_unlabelled_folders_and_errors(tmp_path: Path) -> None:
    rep = build_folder(tmp_path / "d", n=1)
    write_image(rep.root / "sdxl" / "previews" / "p.png")
    write_image(rep.root / "loose.png")
    suite = FolderSuite()
    assert as_rows(suite.scan(rep.root)) == Counter(rep.expected)
    assert suite.ignored == [".", "sdxl/previews"]
    write_image(tmp_path / "plain" / "cats" / "a.png")
    with pytest.raises(SuiteLayoutError, match=r"(?s)0_real/1_fake, real/fake or nature/ai.*cats/"):
        list(FolderSuite().scan(tmp_path / "plain"))
