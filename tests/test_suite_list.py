"""File-list suite: CSV/TSV/JSON/Parquet lists, explicit label values, bad rows reported with line numbers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from replicas import write_broken, write_image

from detbench.config import ConfigError, apply_overrides
from detbench.datasets.filelist import FileListOptions, FileListSuite
from detbench.index import build_index
from detbench.suites import SuiteLayoutError

HEADER = "path,label,generator,split,prompt\n"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Six images (one truncated) and a CSV naming them, a missing file, a bad label, a repeat and an escape."""
    root = tmp_path / "data"
    for i, name in enumerate(("real/a.jpg", "real/b.jpg", "fake/sdxl/c.png", "fake/sdxl/d.png", "fake/flux/e.png")):
        write_image(root / name, seed=i)
    write_broken(root / "fake" / "flux" / "f.png", "truncated")
    rows = [
        "real/a.jpg,real,sdxl,train,a photo",  # line 2
        "fake/sdxl/c.png,fake,sdxl,train,a cat",  # line 3
        "real/b.jpg,0,,test,",  # line 4: generator from the file name
        "fake/sdxl/d.png,1,sdxl,test,",  # line 5
        "fake/flux/e.png,FAKE,flux,test,x",  # line 6
        "fake/flux/f.png,1,flux,test,",  # line 7: truncated file, kept
        "fake/flux/gone.png,1,flux,test,",  # line 8: missing file, kept as not_a_file
        "real/a.jpg,maybe,sdxl,test,",  # line 9: bad label
        "fake/sdxl/c.png,1,sdxl,train,again",  # line 10: repeated
        "../outside.png,1,sdxl,test,",  # line 11: leaves the root
        "real\\a.jpg,0,flux,test,windows separators",  # line 12
    ]
    (root / "labels.csv").write_text(HEADER + "\n".join(rows) + "\n")
    return root


def test_csv_rows_statuses_extras_and_notes(data: Path) -> None:
    suite = FileListSuite(FileListOptions(file="labels.csv"))
    index = build_index(suite, data)
    rows = index.rows.set_index(["path", "generator"])
    assert Counter(zip(index.rows["generator"], index.rows["split"], index.rows["label"], strict=True)) == {
        ("sdxl", "train", 0): 1, ("sdxl", "train", 1): 1, ("labels", "test", 0): 1, ("sdxl", "test", 1): 1,
        ("flux", "test", 1): 3, ("flux", "test", 0): 1,
    }  # fmt: skip
    assert rows.loc[("fake/flux/f.png", "flux"), "status"] == "truncated"
    assert rows.loc[("fake/flux/gone.png", "flux"), "status"] == "not_a_file"
    assert rows.loc[("real/a.jpg", "flux"), "status"] == "ok"  # backslashes read as folder separators
    assert rows.loc[("real/a.jpg", "sdxl"), "meta_prompt"] == "a photo"
    assert rows.loc[("fake/sdxl/c.png", "sdxl"), "meta_line"] == 3
    notes = " | ".join(suite.notes)
    assert "1 rows skipped for a label that is not one of (real: 0, real; fake: 1, fake): 9" in notes
    assert "repeated (path, generator, split): kept once: 10" in notes
    assert "leaving the root: 11" in notes
    assert "1 rows name files that do not exist (indexed as not_a_file): 8" in notes
    protocols = suite.protocols(index.generators)
    assert list(protocols) == ["train-on-sdxl"] and protocols["train-on-sdxl"].eval_split == "test"


@pytest.mark.parametrize("kind", ["tsv", "json", "jsonl", "parquet"])
def test_other_list_formats(data: Path, kind: str) -> None:
    table = pd.read_csv(data / "labels.csv", dtype=str, keep_default_na=False).head(6)
    target = data / f"list.{kind}"
    if kind == "tsv":
        table.to_csv(target, sep="\t", index=False)
    elif kind == "json":
        target.write_text(json.dumps(table.to_dict("records")))
    elif kind == "jsonl":
        target.write_text("".join(json.dumps(r) + "\n" for r in table.to_dict("records")))
    else:
        table.assign(label=[0, 1, 0, 1, 1, 1]).to_parquet(target)
    entries = list(FileListSuite(FileListOptions(file=target.name)).scan(data))
    assert [e.path for e in entries] == list(table["path"])
    assert [e.label for e in entries] == [0, 1, 0, 1, 1, 1]


def test_inverted_label_values_and_column_names(tmp_path: Path) -> None:
    write_image(tmp_path / "x.png")
    write_image(tmp_path / "y.png", seed=1)
    (tmp_path / "lota.csv").write_text("file,is_real\nx.png,1\ny.png,0\n")
    options = apply_overrides(
        FileListOptions(),
        {"path_column": "file", "label_column": "is_real", "real_values": "1", "fake_values": "0"},
    )
    entries = {e.path: e.label for e in FileListSuite(options).scan(tmp_path)}  # the only list: found by itself
    assert entries == {"x.png": 0, "y.png": 1}
    with pytest.raises(SuiteLayoutError, match=r"no column 'path' or 'label'.*columns: file, is_real"):
        list(FileListSuite(FileListOptions()).scan(tmp_path))
    with pytest.raises(ConfigError, match="both real and fake"):
        FileListOptions(real_values=("0", "1"))


def test_list_errors(tmp_path: Path) -> None:
    with pytest.raises(SuiteLayoutError, match="--set file=PATH"):
        list(FileListSuite().scan(tmp_path))
    with pytest.raises(SuiteLayoutError, match="file=nope.csv: no such file"):
        list(FileListSuite(FileListOptions(file="nope.csv")).scan(tmp_path))
    (tmp_path / "bad.csv").write_text("path,label\na.png,maybe\n")
    with pytest.raises(SuiteLayoutError, match=r"no usable rows among its 1.*skipped.*: 2"):
        list(FileListSuite(FileListOptions(file="bad.csv")).scan(tmp_path))
    (tmp_path / "broken.json").write_text("[{not json")
    with pytest.raises(SuiteLayoutError, match="cannot read it as a json file list"):
        list(FileListSuite(FileListOptions(file="broken.json")).scan(tmp_path))
