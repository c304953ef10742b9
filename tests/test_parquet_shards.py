"""Hugging Face Parquet shards: images addressed by shard and row, indexed, loaded, run, predicted and reported."""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from cli_helpers import invoke
from PIL import Image
from replicas import build_hf_parquet, encode_image, write_hf_shard

from detbench.config import apply_overrides
from detbench.data import images, shards
from detbench.data.index import build_index
from detbench.data.loading import ImageRowsDataset
from detbench.data.suites import SuiteLayoutError
from detbench.datasets.hfparquet import ParquetOptions, ParquetSuite

TINY = ["--set", "backbone=open_clip:detbench-tiny-vit@random", "--bootstrap", "0", "-q"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    return build_hf_parquet(tmp_path_factory.mktemp("hub") / "org--fakes")


def suite_with(**options: str) -> ParquetSuite:
    return ParquetSuite(apply_overrides(ParquetOptions(), {"generator_column": "generator", **options}))


def rows_of(df: pd.DataFrame) -> Counter:
    cols = ["path", "generator", "split", "label", "status"]
    return Counter(tuple(r) for r in df[cols].itertuples(index=False, name=None))


def test_locators_round_trip() -> None:
    loc = shards.Locator("data/test-00000-of-00002.parquet", "image", 42)
    assert str(loc) == "data/test-00000-of-00002.parquet#image:000000042"
    assert shards.parse_locator(str(loc)) == loc
    assert shards.parse_locator("photos/a#b:1.png") is None and shards.parse_locator("a.parquet") is None
    assert sorted(str(shards.Locator("s.parquet", "image", r)) for r in (10, 9, 100)) == [
        str(shards.Locator("s.parquet", "image", r)) for r in (9, 10, 100)
    ]


def test_index_rows_ids_formats_and_class_label_names(hub) -> None:
    suite = suite_with(keep_columns="prompt")
    index = build_index(suite, hub.root)
    assert rows_of(index.rows) == Counter(hub.expected)  # ClassLabel names fake, real: 0 read as fake
    rows = index.rows.set_index("path")
    first = "data/train-00000-of-00001.parquet#image:000000000"
    data = pq.read_table(hub.root / "data/train-00000-of-00001.parquet").column("image")[0].as_py()["bytes"]
    assert rows.loc[first, "image_id"] == images.bytes_digest(data) and rows.loc[first, "bytes"] == len(data)
    ok = index.rows[index.rows["status"] == "ok"]
    assert set(ok.loc[ok["label"] == 0, "format"]) == {"jpeg"} and set(ok.loc[ok["label"] == 0, "jpeg_quality"]) == {90}
    assert set(ok.loc[ok["label"] == 1, "width"]) == {17} and rows.loc[first, "meta_prompt"].startswith("p")
    assert index.manifest["problems"] == {"empty": 2, "truncated": 1, "undecodable": 1}
    assert index.manifest["counts"]["sdxl"] == {"train": {"real": 4, "fake": 4}, "test": {"real": 4, "fake": 4}}
    assert list(suite.protocols(index.generators)) == ["train-on-flux", "train-on-sdxl"]


def test_shard_images_record_whether_they_carry_exif(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    cells = []
    for with_exif in (True, False):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, "JPEG", quality=90,
                                                      **({"exif": exif.tobytes()} if with_exif else {}))
        cells.append(buffer.getvalue())
    rows = [{"image": data, "label": label, "generator": "g"} for data, label in zip(cells, (0, 1), strict=True)]
    write_hf_shard(tmp_path / "data" / "test-00000-of-00001.parquet", rows)
    index = build_index(suite_with(), tmp_path)
    assert index.rows.sort_values("path")["exif"].tolist() == [True, False]


def test_reindex_reuses_unchanged_shards_and_reprobes_changed_ones(hub, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    root.mkdir()
    for shard in (hub.root / "data").iterdir():
        (root / shard.name).write_bytes(shard.read_bytes())
    first = build_index(suite_with(), root)
    again = build_index(suite_with(), root)
    assert again.manifest["reused_rows"] == len(first.rows)
    shard = root / "test-00000-of-00002.parquet"
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
    third = build_index(suite_with(), root)
    assert third.manifest["reused_rows"] == len(first.rows) - pq.read_metadata(shard).num_rows
    assert third.manifest["index_hash"] == first.manifest["index_hash"]


def test_loader_decodes_shard_rows_and_guards_changes(hub) -> None:
    index = build_index(suite_with(), hub.root)
    rows = index.rows.sort_values("path")
    dataset = ImageRowsDataset(
        hub.root,
        rows["path"].tolist(),
        lambda img: np.asarray(img),
        stats=list(zip(rows["bytes"], rows["mtime_ns"], strict=True)),
    )
    by_path = dict(zip(rows["path"], range(len(rows)), strict=True))
    x, _, err = dataset[by_path["data/train-00000-of-00001.parquet#image:000000000"]]
    data = pq.read_table(hub.root / "data/train-00000-of-00001.parquet").column("image")[0].as_py()["bytes"]
    assert err is None and np.array_equal(x, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    bad = rows[rows["status"] != "ok"]["path"].tolist()
    reasons = sorted(dataset[by_path[p]][2].split(":")[0] for p in bad)
    assert reasons == ["empty", "empty", "truncated", "undecodable"]
    moved = ImageRowsDataset(hub.root, rows["path"].tolist(), np.asarray, stats=[(1, m) for m in rows["mtime_ns"]])
    assert moved[0][2].startswith("changed")  # the index said 1 byte: these are other bytes


def test_shard_errors_name_the_column(tmp_path: Path) -> None:
    write_hf_shard(tmp_path / "data" / "test-0.parquet", [{"image": encode_image("PNG"), "label": 1}],
                   image_column="img", class_names=None)  # fmt: skip
    with pytest.raises(SuiteLayoutError, match=r"no column 'image'.*its image column is 'img'.*image_column"):
        list(ParquetSuite().scan(tmp_path))
    rows = list(ParquetSuite(ParquetOptions(image_column="img")).scan(tmp_path))
    assert [(r.path, r.label, r.split, r.generator) for r in rows] == [
        ("data/test-0.parquet#img:000000000", 1, "test", tmp_path.name)
    ]
    with pytest.raises(SuiteLayoutError, match="no Parquet shards"):
        list(ParquetSuite().scan(tmp_path / "data" / "nothing"))
    write_hf_shard(tmp_path / "odd" / "x.parquet", [{"image": encode_image("PNG"), "label": 0}],
                   class_names=("AI", "human"))  # fmt: skip
    with pytest.raises(SuiteLayoutError, match=r"ClassLabel with names \['AI', 'human'\]; 'AI', 'human' is neither"):
        list(ParquetSuite(ParquetOptions(files="odd/*.parquet")).scan(tmp_path))


def test_end_to_end_index_run_leaderboard_predict_report(hub, tmp_path: Path) -> None:
    root = str(hub.root)
    sets = ["--set", "generator_column=generator"]
    indexed = invoke("index", "parquet", "--root", root, *sets)
    assert indexed.exit_code == 0, indexed.output
    assert "4 unusable files" in indexed.output and "#image:" in indexed.output
    run = invoke("run", "linear-probe", "--suite", "parquet", "--root", root, "--protocol", "train-on-sdxl",
                 *sets, *TINY)  # fmt: skip
    assert run.exit_code == 0, run.output
    [record_path] = Path(os.environ["DETBENCH_HOME"]).glob("runs/parquet/linear-probe/*/run.json")
    record = json.loads(record_path.read_text())
    assert record["counts"]["eval"]["sdxl"] == {"real": 4, "fake": 4, "skipped": 4}
    assert record["counts"]["skipped_reasons"] == {"empty": 2, "truncated": 1, "undecodable": 1}
    scores = pd.read_parquet(record_path.parent / "scores.parquet")
    assert scores["path"].str.contains(".parquet#image:").all() and scores["score"].notna().sum() == 16
    board = invoke("leaderboard", "parquet")
    assert board.exit_code == 0 and "sdxl" in board.output and "flux" in board.output
    predicted = invoke("predict", record["run_id"][:10], str(hub.root / "data/test-00001-of-00002.parquet"),
                       "--csv", str(tmp_path / "p.csv"), "-q")  # fmt: skip
    assert predicted.exit_code == 0, predicted.output
    out = pd.read_csv(tmp_path / "p.csv").fillna({"error": ""})
    assert len(out) == pq.read_metadata(hub.root / "data/test-00001-of-00002.parquet").num_rows
    merged = out.assign(path="data/" + out["file"].str.rsplit("/", n=1).str[-1]).merge(scores, on="path")
    usable = merged[merged["error"] == ""]
    assert len(usable) == 8 and np.allclose(usable["score_x"], usable["score_y"], atol=1e-6)
    assert sorted(out.loc[out["error"] != "", "error"].str.split(":").str[0]) == [
        "empty", "empty", "truncated", "undecodable"
    ]
    report = invoke("report", record["run_id"][:10], "--out", str(tmp_path / "report"))
    assert report.exit_code == 0, report.output


def test_a_damaged_shard_is_skipped_with_a_note(hub, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    (root / "data").mkdir(parents=True)
    shard = "train-00000-of-00001.parquet"
    (root / "data" / shard).write_bytes((hub.root / "data" / shard).read_bytes())
    (root / "data" / "test-00000-of-00001.parquet").write_bytes(b"PAR1 not really parquet")
    suite = suite_with()
    rows = list(suite.scan(root))
    assert {r.split for r in rows} == {"train"} and len(rows) == 16
    assert suite.notes and "data/test-00000-of-00001.parquet skipped: " in suite.notes[0]


# ------------------------------------------------------------------------------------------ hostile shards


def test_a_rewritten_shard_keeping_its_mtime_is_read_again(tmp_path: Path) -> None:
    """A shard rewritten with other images (another size) but the old mtime kept its stale ids, so their cached
    features were reused: 100 % reported, 0 % true."""
    shard = tmp_path / "test-00000-of-00001.parquet"
    write_hf_shard(shard, [{"image": encode_image("PNG", seed=i), "label": i % 2} for i in range(4)])
    first = build_index(ParquetSuite(), tmp_path)
    assert first.manifest["shards"]["test-00000-of-00001.parquet"]["footer"]
    st = shard.stat()
    write_hf_shard(shard, [{"image": encode_image("PNG", seed=50 + i, size=20), "label": 1 - i % 2} for i in range(4)])
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert shard.stat().st_mtime_ns == st.st_mtime_ns and shard.stat().st_size != st.st_size
    second = build_index(ParquetSuite(), tmp_path)
    assert second.manifest["reused_rows"] == 0
    assert not set(first.rows["image_id"]) & set(second.rows["image_id"])
    assert build_index(ParquetSuite(), tmp_path).manifest["reused_rows"] == 4  # unchanged now: reused

    # the loader checks the bytes too: a stale index row is never loaded under its old id
    rows = first.rows.sort_values("path")
    stale = ImageRowsDataset(tmp_path, rows["path"].tolist(), np.asarray, image_ids=rows["image_id"].tolist(),
                             stats=list(zip(rows["bytes"], rows["mtime_ns"], strict=True)))  # fmt: skip
    assert all(stale[i][2].startswith("changed") for i in range(len(rows)))
    fresh = second.rows.sort_values("path")
    ok = ImageRowsDataset(tmp_path, fresh["path"].tolist(), np.asarray, image_ids=fresh["image_id"].tolist())
    assert all(ok[i][2] is None for i in range(len(fresh)))


def test_shards_linked_from_outside_the_root_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_hf_shard(root / "data" / "test-0.parquet", [{"image": encode_image("PNG"), "label": 1}])
    outside = write_hf_shard(tmp_path / "elsewhere" / "test-1.parquet", [{"image": encode_image("PNG"), "label": 0}])
    (root / "data" / "test-1.parquet").symlink_to(outside)
    suite = ParquetSuite()
    assert [e.path for e in suite.scan(root)] == ["data/test-0.parquet#image:000000000"]
    assert "1 shards are symlinks leading outside the root" in " ".join(suite.notes)
    assert "data/test-1.parquet" in " ".join(suite.notes)
    allowed = ParquetSuite(ParquetOptions(allow_links_outside_root=True))
    assert len(list(allowed.scan(root))) == 2 and allowed.identity() != suite.identity()


def test_a_parquet_file_without_images_is_skipped_with_a_note(hub, tmp_path: Path) -> None:
    """One metadata.parquet beside the shards stopped the whole index, suggesting --set image_column."""
    root = tmp_path / "copy"
    (root / "data").mkdir(parents=True)
    shard = "train-00000-of-00001.parquet"
    (root / "data" / shard).write_bytes((hub.root / "data" / shard).read_bytes())
    pd.DataFrame({"file_name": ["a", "b"], "width": [1, 2]}).to_parquet(root / "metadata.parquet")
    suite = suite_with()
    assert len(list(suite.scan(root))) == 16
    assert "metadata.parquet skipped: it holds no image column (columns: file_name, width)" in " ".join(suite.notes)


def test_a_class_label_column_holding_names_is_read_by_name(tmp_path: Path) -> None:
    """A ClassLabel column holding its names as text was refused as "not one of (real: 0, real; fake: 1, fake)"
    for the cell 'real'."""
    cells = ["real", "fake", "Fake", "0", "other"]
    write_hf_shard(tmp_path / "test-0.parquet", [{"image": encode_image("PNG", seed=i), "label": c}
                                                 for i, c in enumerate(cells)])  # fmt: skip
    suite = ParquetSuite()
    assert [e.label for e in suite.scan(tmp_path)] == [0, 1, 1]
    notes = " ".join(suite.notes)
    assert "2 rows skipped: their 'label' is a ClassLabel with names ['fake', 'real']" in notes
    assert "neither a class number (0 to 1) nor one of those names" in notes and "row 3 ('0')" in notes


def test_split_column_values_are_normalised(tmp_path: Path) -> None:
    splits = ["Train", "training", "validation", "DEV", "Test"]
    write_hf_shard(tmp_path / "all.parquet", [{"image": encode_image("PNG", seed=i), "label": i % 2, "split": s}
                                              for i, s in enumerate(splits)], class_names=None)  # fmt: skip
    rows = list(ParquetSuite(ParquetOptions(split_column="split")).scan(tmp_path))
    assert [r.split for r in rows] == ["train", "train", "val", "val", "test"]
