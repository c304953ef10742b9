"""File-list suite: CSV/TSV/JSON/Parquet lists, explicit label values, bad rows reported with line numbers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from replicas import write_broken, write_image

from detbench.config import ConfigError, apply_overrides
from detbench.data.index import build_index
from detbench.data.suites import SuiteLayoutError
from detbench.datasets.filelist import FileListOptions, FileListSuite

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


# ------------------------------------------------------------------------------------------- hostile lists


def test_symlinks_leading_outside_the_root_are_skipped_with_their_line(tmp_path: Path, detbench_home: Path) -> None:
    """A link to /etc/passwd (here: a private file beside the root) was read and its first bytes were written into
    the index's reason; a linked folder leading out of the root was followed too."""
    root = tmp_path / "data"
    write_image(root / "a.png")
    write_image(root / "inner" / "b.png", seed=1)
    secret = tmp_path / "private" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    write_image(tmp_path / "private" / "c.png", seed=2)
    (root / "link.png").symlink_to(secret)
    (root / "outdir").symlink_to(secret.parent, target_is_directory=True)
    (root / "inside_link.png").symlink_to(root / "inner" / "b.png")  # a link within the root is fine
    (root / "list.csv").write_text(
        "path,label\na.png,0\nlink.png,1\noutdir/c.png,1\noutdir/gone.png,1\ninside_link.png,1\n"
    )
    suite = FileListSuite(FileListOptions(file="list.csv"))
    index = build_index(suite, root)
    assert sorted(index.rows["path"]) == ["a.png", "inside_link.png"]
    assert (index.rows["status"] == "ok").all()
    notes = " | ".join(suite.notes)
    assert "3 rows skipped for a path whose symlinks lead outside the root" in notes and ": 3, 4, 5" in notes
    assert "allow_links_outside_root=true" in notes
    assert "root:x" not in index.rows.to_string()

    allowed = FileListSuite(FileListOptions(file="list.csv", allow_links_outside_root=True))
    assert allowed.identity() != suite.identity()  # recorded: another index, another run id
    followed = build_index(allowed, root).rows.set_index("path")
    assert followed.loc["outdir/c.png", "status"] == "ok"
    assert followed.loc["link.png", "status"] == "undecodable"
    reason = followed.loc["link.png", "reason"]
    assert "root" not in reason and "text" in reason  # described, never quoted
    assert "rows name symlinks leading outside the root, followed" in " | ".join(allowed.notes)


def test_conflicting_labels_are_reported_and_not_used(tmp_path: Path) -> None:
    """The first of two rows giving one file different labels was kept without a word."""
    for i, name in enumerate(("a.png", "b.png", "c.png", "d.png")):
        write_image(tmp_path / name, seed=i)
    (tmp_path / "list.csv").write_text(
        "path,label,generator,split\n"
        "a.png,0,sdxl,test\n"  # 2
        "a.png,1,sdxl,test\n"  # 3: the same row, other label
        "b.png,1,sdxl,test\n"  # 4
        "b.png,0,flux,test\n"  # 5: fake under sdxl, real under flux
        "c.png,0,sdxl,test\n"  # 6: a shared real pool is consistent
        "c.png,0,flux,test\n"  # 7
        "d.png,1,flux,test\n"  # 8
    )
    suite = FileListSuite(FileListOptions(file="list.csv"))
    entries = list(suite.scan(tmp_path))
    assert sorted((e.path, e.generator) for e in entries) == [("c.png", "flux"), ("c.png", "sdxl"), ("d.png", "flux")]
    notes = " | ".join(suite.notes)
    assert "4 rows skipped: 2 paths are listed as both real and fake" in notes
    assert "a.png (lines 2, 3)" in notes and "b.png (lines 4, 5)" in notes


def test_split_names_are_normalised(tmp_path: Path) -> None:
    rows = []
    for i, split in enumerate(("Train", "TRAINING", "train", "validation", "Val", "dev", "valid", "Test", "testing",
                               "Holdout")):  # fmt: skip
        write_image(tmp_path / f"{i}.png", seed=i)
        rows.append(f"{i}.png,{i % 2},g,{split}")
    (tmp_path / "list.csv").write_text("path,label,generator,split\n" + "\n".join(rows) + "\n")
    suite = FileListSuite(FileListOptions(file="list.csv", split_default="Test"))
    splits = [e.split for e in suite.scan(tmp_path)]
    assert splits == ["train"] * 3 + ["val"] * 4 + ["test"] * 2 + ["holdout"]
    assert list(suite.protocols(["g"])) == ["train-on-g"] and suite.options.split_default == "test"


def test_nul_bytes_huge_cells_binary_paths_and_a_line_column(tmp_path: Path) -> None:
    """A NUL byte in a path and a cell over 128 KiB were tracebacks; a binary path column was read as "b'a.png'";
    a column named line replaced meta_line."""
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png", seed=1)
    workflow = json.dumps({"nodes": ["x" * 100] * 3000})  # about 300 kB, as generators embed
    (tmp_path / "list.csv").write_text(
        f'path,label,line,prompt\n"a\x00.png",0,l1,p\nb.png,1,l2,"{workflow.replace(chr(34), chr(34) * 2)}"\n'
        "a.png,0,l3,q\n"
    )
    suite = FileListSuite(FileListOptions(file="list.csv"))
    entries = list(suite.scan(tmp_path))
    assert [e.path for e in entries] == ["b.png", "a.png"]
    assert entries[0].extra["prompt"] == workflow
    assert entries[0].extra["line"] == 3 and entries[0].extra["line_column"] == "l2"
    notes = " | ".join(suite.notes)
    assert "1 rows skipped for a path holding a NUL byte" in notes and ": 2" in notes
    assert "'line' as meta_line_column" in notes

    pd.DataFrame({"path": [b"a.png", b"b.png"], "label": [0, 1]}).to_parquet(tmp_path / "binary.parquet")
    entries = list(FileListSuite(FileListOptions(file="binary.parquet")).scan(tmp_path))
    assert [(e.path, e.label) for e in entries] == [("a.png", 0), ("b.png", 1)]


def test_a_list_of_faces_declares_its_content_without_changing_its_identity() -> None:
    from detbench.datasets.filelist import FileListOptions, FileListSuite

    plain, faces = FileListSuite(FileListOptions()), FileListSuite(FileListOptions(content="faces"))
    assert plain.declared_content() == "" and faces.declared_content() == "faces"
    assert plain.identity() == faces.identity()  # no row changes: the index is shared
    with pytest.raises(ConfigError, match="faces"):
        FileListOptions(content="face")
