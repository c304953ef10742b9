"""UniversalFakeDetect adapter on miniature replicas of the ForenSynths + diffusion_datasets layout."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from replicas import build_ufd, write_image

from detbench.config import ConfigError, apply_overrides
from detbench.data.index import build_index, index_dir
from detbench.data.suites import SuiteLayoutError
from detbench.datasets.universalfakedetect import DOMAINS, UFDOptions, UniversalFakeDetectSuite

LAION_DOMAINS = ("ldm_200", "ldm_200_cfg", "ldm_100", "glide_100_27", "glide_50_27", "glide_100_10", "dalle")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DETBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory):
    return build_ufd(tmp_path_factory.mktemp("ufd") / "UniversalFakeDetect")


def rows_of(df) -> Counter:
    cols = ["path", "generator", "split", "label", "status"]
    return Counter(tuple(r) for r in df[cols].itertuples(index=False, name=None))


def test_domain_table() -> None:
    assert len(DOMAINS) == 19
    assert DOMAINS[:11] == (
        "progan",
        "cyclegan",
        "biggan",
        "stylegan",
        "gaugan",
        "stargan",
        "deepfake",
        "sitd",
        "san",
        "crn",
        "imle",
    )


def test_full_layout_exact_rows(full) -> None:
    suite = UniversalFakeDetectSuite()
    index = build_index(suite, full.root, mode="full")
    assert rows_of(index.rows) == Counter(full.expected)
    counts = index.manifest["counts"]
    assert set(g for g in counts if not g.startswith("progan-")) == set(DOMAINS)
    assert counts["progan-car"] == {"train": {"fake": 2, "real": 2}}
    assert counts["progan"]["test"] == {"fake": 4, "real": 4}  # 2 classes
    assert counts["stylegan"]["test"] == {"fake": 6, "real": 6}  # 3 classes
    assert counts["sitd"]["test"] == {"fake": 2, "real": 2}  # folder seeingdark
    assert counts["san"]["test"] == {"fake": 2, "real": 2}  # + a 0-byte file, flagged
    assert counts["guided"]["test"] == {"fake": 2, "real": 3}  # imagenet pool
    for domain in LAION_DOMAINS:
        assert counts[domain]["test"] == {"fake": 2, "real": 3}, domain  # laion pool (+ 1 truncated)
    assert index.manifest["problems"] == {"empty": 1, "truncated": 7}
    assert sorted(suite.ignored) == ["test/stylegan2", "test/whichfaceisreal"]
    families = dict(
        zip(
            index.rows["generator"] + "/" + index.rows["label"].astype(str), index.rows["family"], strict=True
        )
    )
    assert families["progan/1"] == "gan" and families["progan-cat/1"] == "gan"
    assert families["sitd/1"] == "unknown" and families["deepfake/1"] == "unknown"
    assert families["dalle/1"] == "autoregressive" and families["guided/1"] == "diffusion"
    assert {families[f"{g}/0"] for g in DOMAINS} == {"real"}


def test_shared_real_pools_and_reuse(full) -> None:
    suite = UniversalFakeDetectSuite()
    first = build_index(suite, full.root, mode="full")
    laion = first.rows[first.rows["path"].str.startswith("diffusion_datasets/laion/")]
    assert len(laion) == 4 * 7
    by_path = laion.groupby("path")
    assert set(by_path["generator"].apply(lambda g: tuple(sorted(g)))) == {tuple(sorted(LAION_DOMAINS))}
    assert (by_path["image_id"].nunique() == 1).all()
    assert set(
        first.rows[first.rows["path"].str.startswith("diffusion_datasets/imagenet/")]["generator"]
    ) == {"guided"}
    again = build_index(suite, full.root, mode="full")
    assert again.manifest["reused_rows"] == len(first.rows)
    assert again.manifest["index_hash"] == first.manifest["index_hash"]
    assert rows_of(again.rows) == rows_of(first.rows)


def test_test_folder_as_root_without_training(tmp_path: Path) -> None:
    rep = build_ufd(tmp_path / "test", train_classes=(), test_dir="", defects=False)
    suite = UniversalFakeDetectSuite()
    rows = list(suite.scan(rep.root))
    assert Counter((e.path, e.generator, e.split, e.label, "ok") for e in rows) == Counter(rep.expected)
    assert {e.split for e in rows} == {"test"}
    protocols = suite.protocols(sorted({e.generator for e in rows}))
    assert "missing from this root: car, cat, chair, horse" in protocols["progan-4class"].description


def test_datasets_wrapper_as_in_the_reference_repo(tmp_path: Path) -> None:
    rep = build_ufd(tmp_path / "datasets", n=1, defects=False, extras=False)
    rows = list(UniversalFakeDetectSuite().scan(tmp_path))
    assert len(rows) == len(rep.expected)
    assert all(e.path.startswith("datasets/") for e in rows)


def test_extra_domains_option(full) -> None:
    options = apply_overrides(UFDOptions(), {"extra_domains": "whichfaceisreal,stylegan2"})
    assert options.extra_domains == ("stylegan2", "whichfaceisreal")
    suite = UniversalFakeDetectSuite(options)
    generators = Counter(e.generator for e in suite.scan(full.root))
    assert generators["stylegan2"] == 2 and generators["whichfaceisreal"] == 2
    assert suite.ignored == []
    assert suite.protocols(list(generators))["progan-4class"].eval_generators[-2:] == (
        "stylegan2",
        "whichfaceisreal",
    )
    with pytest.raises(ConfigError, match="Did you mean 'stylegan2'"):
        UFDOptions(extra_domains=("stylegan3",))


def test_max_per_class_cap(full) -> None:
    options = apply_overrides(UFDOptions(), {"max_per_class": "1"})
    suite = UniversalFakeDetectSuite(options)
    index = build_index(suite, full.root, mode="fast")
    sizes = index.rows.groupby(["generator", "split", "label"]).size()
    assert set(sizes) == {1} and len(sizes) == 2 * (5 + 19)
    laion = index.rows[index.rows["path"].str.startswith("diffusion_datasets/laion/")]
    assert laion["path"].nunique() == 1 and len(laion) == 7  # the same pool image in all 7 domains
    assert index.directory != index_dir(UniversalFakeDetectSuite(), full.root.resolve(), "fast")
    assert suite.identity()["options"] == {"max_per_class": 1, "cap_seed": 0, "extra_domains": (), "eval_per_class": 0,
                                           "eval_per_class_fallback": 0}
    first = [e.path for e in suite.scan(full.root)]
    assert first == [e.path for e in suite.scan(full.root)]
    others = [
        [e.path for e in UniversalFakeDetectSuite(UFDOptions(max_per_class=1, cap_seed=s)).scan(full.root)]
        for s in range(1, 6)
    ]
    assert any(o != first for o in others)
    capped_two = Counter(
        e.generator for e in UniversalFakeDetectSuite(UFDOptions(max_per_class=2)).scan(full.root)
    )
    assert capped_two["guided"] == 4 and capped_two["progan"] == 4
    with pytest.raises(ConfigError, match="max_per_class"):
        UFDOptions(max_per_class=-1)


def test_protocols(full) -> None:
    suite = UniversalFakeDetectSuite()
    generators = sorted({e.generator for e in suite.scan(full.root)})
    protocols = suite.protocols(generators)
    assert (
        list(protocols) == ["progan-4class", "progan-20class"] and suite.default_protocol == "progan-4class"
    )
    four = protocols["progan-4class"]
    assert four.train_generators == ("progan-car", "progan-cat", "progan-chair", "progan-horse")
    assert (four.train_split, four.eval_split, four.eval_generators) == ("train", "test", DOMAINS)
    assert "missing" not in four.description
    twenty = protocols["progan-20class"]
    assert len(twenty.train_generators) == 20 and "missing from this root: bicycle" in twenty.description


def test_layout_errors(tmp_path: Path) -> None:
    write_image(tmp_path / "photos" / "holiday" / "a.png")
    with pytest.raises(SuiteLayoutError, match=r"(?s)does not look like UniversalFakeDetect.*holiday/"):
        list(UniversalFakeDetectSuite().scan(tmp_path / "photos"))
    rep = build_ufd(tmp_path / "dup", train_classes=(), n=1, defects=False, extras=False)
    shutil.copytree(rep.root / "test" / "seeingdark", rep.root / "test" / "sitd")
    with pytest.raises(SuiteLayoutError, match="two folders .* domain 'sitd'"):
        list(UniversalFakeDetectSuite().scan(rep.root))


def test_cnndetection_layouts_are_found_not_ignored(tmp_path: Path) -> None:
    """CNNDetection's own layout: classes right under train/, test domains inside CNN_synth_testset/."""
    root = tmp_path / "cnndetection"
    for cls in ("car", "cat", "chair", "horse"):
        for label in ("0_real", "1_fake"):
            write_image(root / "train" / cls / label / "a.png")
    for domain in ("progan", "seeingdark"):
        for label in ("0_real", "1_fake"):
            write_image(root / "CNN_synth_testset" / domain / label / "a.png")
    write_image(root / "unrelated" / "notes" / "x.png")
    suite = UniversalFakeDetectSuite(UFDOptions())
    rows = sorted((e.generator, e.split, e.label) for e in suite.scan(root))
    assert ("progan-car", "train", 1) in rows and ("sitd", "test", 0) in rows and ("progan", "test", 1) in rows
    assert len(rows) == 4 * 2 + 2 * 2
    assert suite.ignored == ["unrelated"] or "unrelated" in suite.ignored[0]
