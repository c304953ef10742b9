"""RealHD on a miniature replica of the layout the paper describes: generators per method, masks never indexed,
reals paired once in training and with every generator in test, the layout's choices as validated settings, wrong
roots."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from cli_helpers import invoke
from replicas import build_realhd, write_image

from detbench.config import ConfigError, apply_overrides
from detbench.data.index import build_index
from detbench.data.suites import SuiteLayoutError
from detbench.datasets.realhd import RealHDOptions, RealHDSuite
from detbench.errors import DetbenchError

GENERATORS = ["faceswap-inswapper", "inpainting-sdxl-inpainting", "text2image-flux-1-dev"]


def _rows(index) -> Counter:
    cols = ["path", "generator", "split", "label", "status"]
    return Counter(tuple(r) for r in index.rows[cols].itertuples(index=False, name=None))


def test_methods_generators_categories_and_pairing(tmp_path: Path) -> None:
    rep = build_realhd(tmp_path / "data")  # the RealHD/ folder inside the root
    suite = RealHDSuite()
    index = build_index(suite, rep.root)
    assert _rows(index) == Counter(rep.expected)
    rows = index.rows
    assert sorted(index.generators) == GENERATORS
    assert not rows["path"].str.contains("/masks/").any()
    assert {"RealHD/docs", "RealHD/train/inpainting/SDXL_Inpainting/masks",
            "RealHD/test/inpainting/SDXL_Inpainting/masks"} <= set(suite.ignored)
    train_reals = rows[(rows["split"] == "train") & (rows["label"] == 0)]
    assert train_reals["path"].is_unique and len(train_reals) == 4  # each real trains once
    test_reals = rows[(rows["split"] == "test") & (rows["label"] == 0)]
    assert Counter(test_reals["path"].value_counts()) == {3: 4}  # under each of the three generators
    assert set(rows["meta_category"].dropna()) == {"animal", "portrait"}
    fakes = rows[rows["label"] == 1]
    assert fakes[fakes["generator"] == "faceswap-inswapper"]["meta_category"].isna().all()
    assert set(rows.loc[rows["label"] == 1, "family"]) == {"diffusion", "unknown"}


def test_protocols_train_on_all_or_one_method(tmp_path: Path) -> None:
    suite = RealHDSuite()
    protocols = suite.all_protocols(GENERATORS)
    assert suite.default_protocol == "all"
    assert protocols["all"].train_generators == tuple(GENERATORS) and protocols["all"].eval_split == "test"
    assert protocols["method-inpainting"].train_generators == ("inpainting-sdxl-inpainting",)
    assert protocols["method-inpainting"].eval_generators is None
    assert "method-refinement" not in protocols and protocols["eval"].eval_split == "test"


def test_pairing_seed_moves_train_reals_only(tmp_path: Path) -> None:
    rep = build_realhd(tmp_path / "data", defects=False)
    first = [e for e in RealHDSuite().scan(rep.root) if e.label == 0]
    other = [e for e in RealHDSuite(RealHDOptions(pairing_seed=7)).scan(rep.root) if e.label == 0]
    assert {e.path for e in first} == {e.path for e in other}
    assert [e for e in first if e.split == "test"] == [e for e in other if e.split == "test"]
    assert [e.generator for e in first if e.split == "train"] != [e.generator for e in other if e.split == "train"]


def test_layout_choices_are_settings(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    write_image(root / "Photos" / "a.jpg")
    write_image(root / "Text-to-Image" / "a.png")
    write_image(root / "Face_Swap" / "b.png")
    write_image(root / "inpaint" / "mask" / "c.png")
    write_image(root / "inpaint" / "c.png")
    with pytest.raises(SuiteLayoutError, match="no train/val/test folder"):
        list(RealHDSuite().scan(root))
    options = apply_overrides(RealHDOptions(), {"split_default": "test", "generator_folders": "false",
                                                "real_folder": "photos", "methods": "text2image,inpainting"})
    suite = RealHDSuite(options)
    entries = list(suite.scan(root))
    assert Counter((e.generator, e.label) for e in entries) == {("text2image", 1): 1, ("inpainting", 1): 1,
                                                                ("text2image", 0): 1, ("inpainting", 0): 1}
    assert set(suite.ignored) == {"Face_Swap", "inpaint/mask"}
    loose = RealHDSuite(apply_overrides(RealHDOptions(), {"split_default": "test", "real_folder": "photos"}))
    with pytest.raises(SuiteLayoutError, match="no generated images of"):
        list(loose.scan(root))
    assert any("generator_folders=false" in note for note in loose.notes)


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="unknown RealHD method 'inpaint'.*Did you mean 'inpainting'"):
        apply_overrides(RealHDOptions(), {"methods": "inpaint"})
    with pytest.raises(ConfigError, match="split_default must be one of test, train, val"):
        apply_overrides(RealHDOptions(), {"split_default": "eval"})
    with pytest.raises(ConfigError, match="real_folder must name a folder"):
        apply_overrides(RealHDOptions(), {"real_folder": "/"})


def test_wrong_root_is_one_error_line(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "a.jpg")
    with pytest.raises(SuiteLayoutError, match=r"(?s)RealHD: no train/val/test folder.*<method>/<generator>.*"
                                               r"Found:\n.*images/") as caught:
        list(RealHDSuite().scan(tmp_path))
    assert isinstance(caught.value, DetbenchError)
    only_reals = tmp_path / "reals"
    write_image(only_reals / "test" / "real" / "a.jpg")
    with pytest.raises(SuiteLayoutError, match="no generated images of text2image, inpainting, refinement, faceswap"):
        list(RealHDSuite().scan(only_reals))
    result = invoke("index", "realhd", "--root", str(tmp_path))
    assert result.exit_code == 2 and result.output.count("error: ") == 1 and "Traceback" not in result.output
