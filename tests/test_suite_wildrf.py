"""WildRF on a miniature replica: platforms as generators, the Reddit protocol, wrapper folders, wrong roots."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from replicas import build_wildrf, write_image

from detbench.data.index import build_index
from detbench.data.protocol_builder import ProtocolOptions, build_protocol
from detbench.data.suites import SuiteLayoutError
from detbench.datasets.wildrf import WildRFSuite
from detbench.errors import ProtocolError


def _rows(index) -> Counter:
    cols = ["path", "generator", "split", "label", "status"]
    return Counter(tuple(r) for r in index.rows[cols].itertuples(index=False, name=None))


def test_wildrf_platforms_splits_and_reddit_protocol(tmp_path: Path) -> None:
    rep = build_wildrf(tmp_path / "data")  # the archive's WildRF/ folder inside the root
    suite = WildRFSuite()
    index = build_index(suite, rep.root)
    assert _rows(index) == Counter(rep.expected)
    counts = index.manifest["counts"]
    assert counts["reddit"] == {"train": {"real": 2, "fake": 2}, "val": {"real": 2, "fake": 2},
                                "test": {"real": 2, "fake": 2}}
    assert set(counts) == {"reddit", "twitter", "facebook"}
    protocol = suite.all_protocols(index.generators)[suite.default_protocol]
    assert (protocol.name, protocol.train_generators, protocol.train_split, protocol.eval_split) == (
        "reddit", ("reddit",), "train", "test")
    assert protocol.eval_generators == ("reddit", "twitter", "facebook")
    assert suite.all_protocols(index.generators)["eval"].eval_split == "test"


def test_wildrf_training_on_another_platform_carves_its_test_images(tmp_path: Path) -> None:
    """Twitter has no train split: the built protocol trains on a seeded part of its test images and does not
    evaluate it."""
    rep = build_wildrf(tmp_path / "WildRF", wrapper="", defects=False)
    suite = WildRFSuite()
    usable = pd.DataFrame([{"path": p, "generator": g, "split": s, "label": lab} for p, g, s, lab, _ in rep.expected])
    built = build_protocol(suite, usable, "train-on-twitter", ProtocolOptions())
    assert built is not None and built.facts["carved"] and built.eval_generators == ("reddit", "facebook")
    with pytest.raises(ProtocolError, match="have a train split"):
        build_protocol(suite, usable, "train-on-reddit,twitter", ProtocolOptions())


def test_wildrf_wrong_root_names_what_is_missing(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "a.jpg")
    with pytest.raises(SuiteLayoutError, match=r"(?s)WildRF: no test/<platform>.*reddit,twitter,facebook.*images/"):
        list(WildRFSuite().scan(tmp_path))
    one_label = tmp_path / "partial"
    write_image(one_label / "test" / "twitter" / "1_fake" / "a.jpg")
    suite = WildRFSuite()
    assert len(list(suite.scan(one_label))) == 1
    assert any("no 0_real" in note for note in suite.notes) and any("reddit, facebook" in n for n in suite.notes)
