"""GenImage adapter on miniature replicas of the nested and flat layouts."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from replicas import GENIMAGE_FLAT, GENIMAGE_NESTED, build_genimage, write_image

from detbench.config import ConfigError, apply_overrides
from detbench.data.index import build_index
from detbench.data.suites import SuiteLayoutError
from detbench.datasets.genimage import GENERATORS, GenImageOptions, GenImageSuite, canonical_generator


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DETBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def nested(tmp_path_factory: pytest.TempPathFactory):
    return build_genimage(tmp_path_factory.mktemp("genimage") / "GenImage", layout="nested")


def rows_of(index) -> Counter:
    cols = ["path", "generator", "split", "label", "status"]
    return Counter(tuple(r) for r in index.rows[cols].itertuples(index=False, name=None))


def test_alias_table() -> None:
    for key, (outer, inner) in GENIMAGE_NESTED.items():
        assert canonical_generator(outer) == key
        assert canonical_generator(inner) == key
        assert canonical_generator(outer.upper()) == key
        assert canonical_generator(GENIMAGE_FLAT[key]) == key
    variants = {
        "sdv1.4": "sdv14", "SD14": "sdv14", "sd_v1_4": "sdv14", "stable-diffusion-v1-4": "sdv14",
        "sdv1.5": "sdv15", "SDv1.5": "sdv15", "midjourney": "midjourney", "imagenet_ai_0508_adm": "adm",
        "Imagenet_Glide": "glide", "WUKONG": "wukong", "vqdm": "vqdm", "biggan": "biggan",
        "imagenet_ai": "all",
    }  # fmt: skip
    for name, key in variants.items():
        assert canonical_generator(name) == key, name
    for name in ("imagenet", "sdxl", "train", "nature", "sdv16", "dalle"):
        assert canonical_generator(name) is None, name
    assert list(GENERATORS) == ["midjourney", "sdv14", "sdv15", "adm", "glide", "wukong", "vqdm", "biggan"]
    assert GENERATORS["biggan"] == "gan" and GENERATORS["midjourney"] == "commercial"
    assert {GENERATORS[g] for g in ("sdv14", "sdv15", "adm", "glide", "wukong", "vqdm")} == {"diffusion"}


def test_nested_layout_exact_rows(nested) -> None:
    suite = GenImageSuite()
    index = build_index(suite, nested.root, mode="full")
    assert rows_of(index) == Counter(nested.expected)
    assert len(index.rows) == 70
    counts = index.manifest["counts"]
    assert sorted(counts) == sorted(GENERATORS)
    assert counts["sdv14"]["train"] == {"fake": 2, "real": 2}  # + one 0-byte PNG, flagged
    assert counts["midjourney"]["train"] == {"fake": 2, "real": 3}  # CMYK JPEG counts
    assert counts["vqdm"]["val"] == {"fake": 3, "real": 2}  # 16-bit PNG counts
    assert counts["glide"]["train"] == {"fake": 3, "real": 2}  # palette PNG counts
    assert counts["adm"]["val"] == {"fake": 2, "real": 2} and counts["biggan"]["val"] == {
        "fake": 2,
        "real": 2,
    }
    assert index.manifest["problems"] == {"empty": 1, "truncated": 1, "undecodable": 1}
    assert suite.ignored == []
    fakes = index.rows[(index.rows["label"] == 1) & (index.rows["status"] == "ok")]
    assert set(fakes["format"]) == {"png"}
    assert set(fakes[fakes["generator"] == "biggan"]["width"]) == {8}
    reals = index.rows[(index.rows["label"] == 0) & (index.rows["status"] == "ok")]
    assert set(reals["format"]) == {"jpeg"} and set(reals["family"]) == {"real"}
    assert set(reals["jpeg_quality"]) == {96}
    assert dict(zip(fakes["generator"], fakes["family"], strict=True))["biggan"] == "gan"


def test_labels_come_from_folder_names(nested) -> None:
    """``ai`` sorts before ``nature``: a sort-order labeller would call the fakes real."""
    rows = list(GenImageSuite().scan(nested.root))
    assert {e.label for e in rows if "/ai/" in e.path} == {1}
    assert {e.label for e in rows if "/nature/" in e.path} == {0}
    assert {e.split for e in rows} == {"train", "val"}


def test_flat_layout_mixed_extensions(tmp_path: Path) -> None:
    rep = build_genimage(tmp_path / "flat", layout="flat", n=3)
    index = build_index(GenImageSuite(), rep.root, mode="full")
    assert rows_of(index) == Counter(rep.expected)
    suffixes = {Path(p).suffix for p in index.rows["path"]}
    assert {".PNG", ".JPEG", ".jpg", ".png", ".webp"} <= suffixes
    assert index.manifest["counts"]["sdv14"]["val"] == {"fake": 3, "real": 3}
    assert set(index.rows[index.rows["label"] == 1]["generator"]) == set(GENERATORS)
    assert index.manifest["formats"]["webp"] == 14  # one per split of each generator but ADM (.PNG)


def test_root_is_one_generator(tmp_path: Path) -> None:
    rep = build_genimage(tmp_path, generators=("biggan",), n=1, defects=False)
    outer, inner = GENIMAGE_NESTED["biggan"]
    for root in (tmp_path / outer, tmp_path / outer / inner):
        rows = list(GenImageSuite().scan(root))
        assert {e.generator for e in rows} == {"biggan"} and len(rows) == len(rep.expected) == 4
    unnamed = tmp_path / "my_images"
    shutil.copytree(tmp_path / outer / inner, unnamed)
    with pytest.raises(SuiteLayoutError, match="'my_images' is not a GenImage generator name"):
        list(GenImageSuite().scan(unnamed))


def test_ignored_folders_are_reported(tmp_path: Path) -> None:
    rep = build_genimage(tmp_path / "g", generators=("adm", "wukong"), n=1, defects=False)
    holder = rep.root / "ADM" / "imagenet_ai_0508_adm"
    write_image(holder / "test" / "ai" / "x.png")
    write_image(holder / "train" / "masks" / "x.png")
    write_image(rep.root / "extras" / "x.png")
    write_image(rep.root / "ADM" / "old_copy" / "train" / "ai" / "x.png")
    (rep.root / "VQDM").mkdir()  # extracted nothing yet
    suite = GenImageSuite()
    rows = list(suite.scan(rep.root))
    assert len(rows) == 8
    assert sorted(suite.ignored) == [
        "ADM/imagenet_ai_0508_adm/test",
        "ADM/imagenet_ai_0508_adm/train/masks",
        "ADM/old_copy",
        "VQDM",
        "extras",
    ]


def test_generator_subset(nested) -> None:
    options = apply_overrides(GenImageOptions(), {"generators": "ADM,SDv1.4,sd14"})
    assert options.generators == ("adm", "sdv14")
    rows = list(GenImageSuite(options).scan(nested.root))
    assert Counter(e.generator for e in rows) == {"adm": 9, "sdv14": 9}
    with pytest.raises(ConfigError, match="Did you mean 'biggan'"):
        GenImageOptions(generators=("Big-GAN2",))
    with pytest.raises(ConfigError, match="unknown GenImage generator 'dalle'"):
        apply_overrides(GenImageOptions(), {"generators": "dalle"})


def test_subset_missing_on_disk(tmp_path: Path) -> None:
    rep = build_genimage(tmp_path, generators=("adm",), n=1, defects=False)
    with pytest.raises(SuiteLayoutError, match="no folder for wukong"):
        list(GenImageSuite(GenImageOptions(generators=("wukong",))).scan(rep.root))


def test_merged_tree_and_protocols(tmp_path: Path) -> None:
    rep = build_genimage(tmp_path, generators=("sdv14", "biggan"), n=1, defects=False)
    for split in ("train", "val"):
        write_image(rep.root / "imagenet_ai" / split / "ai" / "a.png")
        write_image(rep.root / "imagenet_ai" / split / "nature" / "b.JPEG")
    suite = GenImageSuite()
    index = build_index(suite, rep.root, mode="fast")
    assert index.generators == ["all", "biggan", "sdv14"]
    assert set(index.rows[index.rows["generator"] == "all"]["family"]) == {"unknown", "real"}
    protocols = suite.protocols(index.generators)
    assert list(protocols) == ["sdv14", "train-on-sdv14", "train-on-biggan", "train-on-all"]
    std = protocols["sdv14"]
    assert (std.train_generators, std.train_split, std.eval_split) == (("sdv14",), "train", "val")
    assert std.eval_generators == tuple(GENERATORS)
    assert protocols["train-on-all"].eval_generators == tuple(GENERATORS)
    assert suite.default_protocol == "sdv14"
    only_all = suite.protocols(["all"])
    assert only_all["train-on-all"].eval_generators == ("all",)


def test_layout_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SuiteLayoutError, match="Accepted layouts"):
        list(GenImageSuite().scan(empty))
    write_image(tmp_path / "photos" / "cats" / "a.png")
    with pytest.raises(
        SuiteLayoutError, match=r"(?s)does not look like GenImage.*imagenet_ai_0508_adm.*cats/"
    ):
        list(GenImageSuite().scan(tmp_path / "photos"))
    build_genimage(tmp_path / "dup", generators=("sdv14",), n=1, layout="flat", defects=False)
    shutil.copytree(tmp_path / "dup" / "SDv1.4", tmp_path / "dup" / "stable_diffusion_v_1_4")
    with pytest.raises(SuiteLayoutError, match="two folders .* generator 'sdv14'"):
        list(GenImageSuite().scan(tmp_path / "dup"))
