"""AIGIBench on a miniature replica: its two training settings, the built mixes, test subsets, wrong roots."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from replicas import build_aigibench, write_image

from detbench.data.index import build_index
from detbench.data.protocol_builder import ProtocolOptions
from detbench.data.suites import SuiteLayoutError
from detbench.datasets.aigibench import PROGAN_KEYS, AIGIBenchSuite
from detbench.engine.protocol_checks import select_protocol, split_rows


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory):
    rep = build_aigibench(tmp_path_factory.mktemp("aigibench") / "AIGIBench")
    suite = AIGIBenchSuite()
    return rep, suite, build_index(suite, rep.root)


def test_aigibench_rows_and_families(indexed) -> None:
    rep, suite, index = indexed
    cols = ["path", "generator", "split", "label", "status"]
    assert Counter(tuple(r) for r in index.rows[cols].itertuples(index=False, name=None)) == Counter(rep.expected)
    fakes = index.rows[index.rows["label"] == 1].groupby("generator")["family"].first()
    assert fakes["sdv14"] == "diffusion" and fakes["progan-car"] == "gan" and fakes["midjourney-v6"] == "commercial"
    assert suite.notes == []  # every test folder is one of the paper's subsets


def test_aigibench_settings_train_on_the_pooled_sources_and_evaluate_the_test_subsets(indexed) -> None:
    _, suite, index = indexed
    one = select_protocol(suite, index, "setting-1")
    two = select_protocol(suite, index, None)
    assert suite.default_protocol == "setting-2" and two.name == "setting-2"
    assert one.train_generators == PROGAN_KEYS and two.train_generators == (*PROGAN_KEYS, "sdv14")
    tested = {"progan", "stylegan-xl", "inswap", "flux1-dev", "midjourney-v6", "infinite-id", "socialrf"}
    assert set(two.eval_generators) == tested and two.eval_split == "test" and two.balance is None
    train, heldout, evaluation = split_rows(index, two, seed=0)
    per_source = Counter(train["generator"]) + Counter(heldout["generator"])
    assert per_source["sdv14"] == 8 and per_source["progan-cat"] == 4  # pooled: every training image
    assert set(evaluation["generator"]) == tested
    balanced = select_protocol(suite, index, "setting-2", options=ProtocolOptions(balance="generator"))
    train, heldout, _ = split_rows(index, balanced, seed=0)
    assert (Counter(train["generator"]) + Counter(heldout["generator"]))["sdv14"] == 4
    mix = select_protocol(suite, index, "train-on-" + ",".join((*PROGAN_KEYS, "sdv14")))
    assert mix.train_generators == two.train_generators and mix.balance == "generator"
    assert set(mix.eval_generators) == tested


def test_aigibench_wrong_root_names_what_is_missing(tmp_path: Path) -> None:
    write_image(tmp_path / "photos" / "a.png")
    with pytest.raises(SuiteLayoutError, match=r"(?s)AIGIBench: no train/<source>.*sdv1\.4.*photos/"):
        list(AIGIBenchSuite().scan(tmp_path))
    write_image(tmp_path / "test" / "NewGen" / "1_fake" / "a.png")
    suite = AIGIBenchSuite()
    assert [e.generator for e in suite.scan(tmp_path)] == ["newgen"]
    assert "not one of the paper's 25 test subsets" in suite.notes[0]
