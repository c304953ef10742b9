from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from detbench.data.index import COLUMNS, build_index, load_index
from detbench.data.suites import SuiteLayoutError, safe_join
from detbench.datasets.demo import DemoOptions, DemoSuite
from detbench.datasets.demo_build import FAMILIES, build_demo


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    build_demo(root, n_train=4, n_val=2, size=48)
    return root


def test_index_schema_counts_and_manifest(demo_root: Path) -> None:
    idx = build_index(DemoSuite(DemoOptions()), demo_root)
    assert list(idx.rows.columns) == COLUMNS
    assert len(idx.rows) == len(FAMILIES) * 2 * (4 + 2)
    assert set(idx.rows["status"]) == {"ok"}
    assert set(idx.rows["format"]) == {"png"}
    assert idx.rows["image_id"].str.len().eq(32).all()
    counts = idx.manifest["counts"]
    assert set(counts) == set(idx.generators) and len(counts) == len(FAMILIES)
    for per_split in counts.values():
        assert per_split == {"train": {"real": 4, "fake": 4}, "val": {"real": 2, "fake": 2}}
    fakes = idx.rows[idx.rows["label"] == 1]
    assert fakes["path"].str.contains("/1_fake/").all()
    assert idx.manifest["index_hash"] == load_index(idx.directory).manifest["index_hash"]


def test_unusable_files_stay_with_a_reason_and_reindex_is_incremental(demo_root: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "tree"
    shutil.copytree(demo_root, root)
    broken = root / "upconv" / "val" / "1_fake" / "broken.png"
    broken.write_bytes(b"")
    suite = DemoSuite(DemoOptions())
    first = build_index(suite, root)
    row = first.rows.set_index("path").loc["upconv/val/1_fake/broken.png"]
    assert row["status"] == "empty" and row["reason"]
    assert first.manifest["problems"] == {"empty": 1}
    assert first.manifest["counts"]["upconv"]["val"]["fake"] == 2  # usable counts exclude it

    victim = next((root / "nearest" / "train" / "0_real").glob("*.png"))
    victim.write_bytes(victim.read_bytes()[:40])
    os.utime(victim, ns=(1, 1))
    second = build_index(suite, root)
    assert second.manifest["reused_rows"] == len(first.rows) - 1
    assert second.rows.set_index("path").loc[victim.relative_to(root).as_posix(), "status"] == "truncated"
    assert second.manifest["index_hash"] != first.manifest["index_hash"]


def test_fast_mode_ids_are_recorded(demo_root: Path) -> None:
    idx = build_index(DemoSuite(DemoOptions()), demo_root, mode="fast")
    assert idx.manifest["id_mode"] == "fast"
    full = build_index(DemoSuite(DemoOptions()), demo_root, mode="full")
    assert not set(idx.rows["image_id"]) & set(full.rows["image_id"])
    assert idx.directory != full.directory


def test_wrong_layout_and_empty_root_fail_clearly(tmp_path: Path) -> None:
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.png").write_bytes(b"x")
    with pytest.raises(SuiteLayoutError, match="cats"):
        build_index(DemoSuite(DemoOptions()), tmp_path)


def test_safe_join_refuses_escapes(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "a/b.png") == tmp_path / "a" / "b.png"
    for bad in ("../x.png", "/etc/passwd", "a/../../x.png", ""):
        with pytest.raises(ValueError):
            safe_join(tmp_path, bad)


def test_index_parquet_round_trips_types(demo_root: Path) -> None:
    idx = build_index(DemoSuite(DemoOptions()), demo_root)
    df = pd.read_parquet(idx.directory / "index.parquet")
    assert df["label"].dtype.name == "int8"
    assert df["width"].min() == 48


def _exif_tree(root: Path) -> dict[str, bool]:
    """A folder-suite tree: a JPEG with an EXIF block, one without, a PNG with an eXIf chunk and one without."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "Camera maker"  # Make
    folder = root / "gen" / "0_real"
    folder.mkdir(parents=True)
    image = Image.new("RGB", (8, 8), (120, 30, 200))
    image.save(folder / "with.jpg", quality=90, exif=exif.tobytes())
    image.save(folder / "without.jpg", quality=90)
    image.save(folder / "with.png", exif=exif.tobytes())
    image.save(folder / "without.png")
    return {f"gen/0_real/{name}": name.startswith("with.") for name in ("with.jpg", "without.jpg", "with.png",
                                                                       "without.png")}


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_index_records_whether_a_file_carries_exif(tmp_path: Path, mode: str) -> None:
    from detbench.datasets.folder import FolderOptions, FolderSuite

    expected = _exif_tree(tmp_path / "tree")
    idx = build_index(FolderSuite(FolderOptions()), tmp_path / "tree", mode=mode)
    assert idx.rows.set_index("path")["exif"].to_dict() == expected


def test_index_records_the_exif_tags_a_detector_reads(tmp_path: Path) -> None:
    """The camera tags (IFD0 and the Exif sub-directory) as JSON, numbers as floats; None without an EXIF block
    or when it holds none of them (never a default)."""
    import json

    from PIL import Image

    from detbench.datasets.folder import FolderOptions, FolderSuite

    folder = tmp_path / "tree" / "gen" / "0_real"
    folder.mkdir(parents=True)
    image = Image.new("RGB", (16, 16), (90, 120, 150))
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Maker\x00", "Model X"  # Make (NUL-padded), Model
    ifd = exif.get_ifd(0x8769)
    ifd[0x829A], ifd[0x8827], ifd[0x9209] = 0.004, 200, 16  # ExposureTime, ISOSpeedRatings, Flash
    image.save(folder / "tags.jpg", quality=90, exif=exif.tobytes())
    other = Image.Exif()
    other[0x0131] = "an editor"  # Software only: an EXIF block without camera tags
    image.save(folder / "software.jpg", quality=90, exif=other.tobytes())
    image.save(folder / "none.png")
    rows = build_index(FolderSuite(FolderOptions()), tmp_path / "tree").rows.set_index("path")["exif_tags"]
    assert json.loads(rows["gen/0_real/tags.jpg"]) == {"Make": "Maker", "Model": "Model X", "ExposureTime": 0.004,
                                                       "ISOSpeedRatings": 200.0, "Flash": 16.0}
    assert pd.isna(rows["gen/0_real/software.jpg"]) and pd.isna(rows["gen/0_real/none.png"])


def test_an_index_written_before_exif_is_probed_again(tmp_path: Path) -> None:
    from detbench.datasets.folder import FolderOptions, FolderSuite

    expected = _exif_tree(tmp_path / "tree")
    suite = FolderSuite(FolderOptions())
    first = build_index(suite, tmp_path / "tree")
    old = first.rows.drop(columns=["exif"])  # as an older detbench wrote it
    old.to_parquet(first.directory / "index.parquet")
    again = build_index(suite, tmp_path / "tree")
    assert again.manifest["reused_rows"] == 0
    assert again.rows.set_index("path")["exif"].to_dict() == expected
    assert again.manifest["index_hash"] == first.manifest["index_hash"]  # run ids of unchanged data are kept


SMALL = DemoOptions(n_train=4, n_val=1, size=32)


def _never_probed(*args: object) -> None:
    raise AssertionError(f"probed {args}")


def test_a_demo_built_here_is_indexed_from_the_rows_its_build_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """The build knows what it wrote: its rows replace reading every file back, and equal what probing gives."""
    import shutil

    from detbench.data import index

    suite = DemoSuite(SMALL)
    root = suite.default_root()
    with monkeypatch.context() as patched:
        patched.setattr(index, "_probe_one", _never_probed)
        built = build_index(suite, root)
    assert len(built.rows) == len(FAMILIES) * 2 * (4 + 1) and built.manifest["reused_rows"] == 0
    shutil.rmtree(built.directory)
    probed = build_index(DemoSuite(SMALL), root)  # another adapter: it built nothing, so every file is read
    pd.testing.assert_frame_equal(built.rows, probed.rows)
    assert {k: v for k, v in built.manifest.items() if k != "seconds"} == {
        k: v for k, v in probed.manifest.items() if k != "seconds"
    }


def test_a_demo_file_changed_after_its_build_is_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from detbench.data import images, index

    suite = DemoSuite(SMALL)
    root = suite.default_root()
    changed = "nearest/val/1_fake/nearest_val_1_fake_00000.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(root / changed)
    os.utime(root / changed, ns=(1, 1))
    probed: list[str] = []
    original = index._probe_one
    monkeypatch.setattr(index, "_probe_one", lambda args: probed.append(args[0]) or original(args))
    rows = build_index(suite, root).rows.set_index("path")
    assert probed == [changed]
    assert rows.loc[changed, "image_id"] == images.file_digest(root / changed)
    assert rows.loc[changed, "phash"] == images.probe(root / changed).phash


def test_fast_ids_never_come_from_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    suite = DemoSuite(SMALL)
    root = suite.default_root()
    fast = build_index(suite, root, mode="fast")
    assert fast.manifest["id_mode"] == "fast" and fast.rows["phash"].isna().all()
    assert fast.rows["image_id"].tolist() != build_index(suite, root).rows["image_id"].tolist()
