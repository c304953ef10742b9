"""Community Forensics' evaluation shards on a miniature replica: generators, the shared real pool, test only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from replicas import build_commfor, write_image

from detbench.data.index import build_index
from detbench.data.suites import SuiteLayoutError
from detbench.datasets.commfor import CommForSuite


def test_commfor_rows_generators_meta_and_protocols(tmp_path: Path) -> None:
    rep = build_commfor(tmp_path / "CommunityForensics")
    suite = CommForSuite()
    index = build_index(suite, rep.root)
    cols = ["path", "generator", "split", "label", "status"]
    assert Counter(tuple(r) for r in index.rows[cols].itertuples(index=False, name=None)) == Counter(rep.expected)
    assert sorted(index.generators) == ["Midjourney", "runwayml--stable-diffusion-v1-5",
                                        "stabilityai--stable-diffusion-2"]
    assert set(index.rows["meta_format"]) == {"PNG"} and "meta_resolution" in index.rows
    protocols = suite.all_protocols(index.generators)
    assert suite.default_protocol == "eval" and protocols["eval"].eval_split == "test"
    assert protocols["train-progan-4class"].train_suite == "universalfakedetect"


def test_commfor_without_shards_names_what_is_missing(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "a.png")
    with pytest.raises(SuiteLayoutError, match=r"no Parquet shards matching 'data/publicEval/\*\.parquet'"):
        list(CommForSuite().scan(tmp_path))
