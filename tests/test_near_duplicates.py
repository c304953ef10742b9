"""Near-duplicates between training and evaluation images: the perceptual hash, the band search, the index column,
the settings, and runs that find (or refuse) resized and re-encoded copies of training images."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke
from PIL import Image

import detbench
from detbench.data.perceptual_hash import hamming, hash_values, near_pairs, perceptual_hash

TINY = ["--set", "backbone=open_clip:detbench-tiny-vit@random", "--bootstrap", "0", "-q"]


PHOTOS = ("astronaut", "coffee", "chelsea", "hubble_deep_field", "immunohistochemistry")


def photo(seed: int, size: int = 96) -> Image.Image:
    """A crop of a photograph bundled with scikit-image: each seed its own cell of a grid, never overlapping another
    seed's."""
    from skimage import data

    pixels = getattr(data, PHOTOS[seed % len(PHOTOS)])()
    columns = pixels.shape[1] // size
    row, column = divmod(seed // len(PHOTOS), columns)
    assert (row + 1) * size <= pixels.shape[0], "seed too large for this photo"
    return Image.fromarray(pixels[row * size:(row + 1) * size, column * size:(column + 1) * size]).convert("RGB")


def resized_jpeg(image: Image.Image, factor: float = 1.5, quality: int = 80) -> bytes:
    """``image`` resized by ``factor`` (bicubic) and re-encoded as JPEG: another file, other bytes, the same picture."""
    size = (round(image.width * factor), round(image.height * factor))
    buffer = io.BytesIO()
    image.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def reference_phash(image: Image.Image) -> str:
    """pHash computed independently: the DCT-II as an explicit cosine matrix product, bits packed one by one."""
    grey = np.asarray(image.convert("RGB").convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    n = np.arange(32)
    basis = 2 * np.cos(np.pi * np.outer(n, 2 * n + 1) / 64)  # unnormalised DCT-II: X_k = 2 sum x_n cos(...)
    low = (basis @ grey @ basis.T)[:8, :8]
    value = 0
    for bit in (low > np.median(low)).ravel():
        value = (value << 1) | int(bit)
    return format(value, "016x")


# ------------------------------------------------------------------ the hash and the band search


def test_phash_equals_an_independent_computation() -> None:
    rng = np.random.default_rng(0)
    images = [photo(seed) for seed in range(12)]
    images += [Image.fromarray(rng.integers(0, 256, (n, n + 3, 3), dtype=np.uint8)) for n in (8, 17, 40, 133)]
    images.append(photo(3).convert("L"))
    for image in images:
        assert perceptual_hash(image.convert("RGB")) == reference_phash(image)


def test_resized_and_reencoded_copies_stay_close_and_other_pictures_far() -> None:
    originals = [photo(seed) for seed in range(8)]
    hashes = hash_values(perceptual_hash(im) for im in originals)
    for factor, quality in ((0.5, 70), (1.5, 85), (0.75, 95)):
        copies = hash_values(perceptual_hash(Image.open(io.BytesIO(resized_jpeg(im, factor, quality))).convert("RGB"))
                             for im in originals)
        assert hamming(hashes, copies).max() <= 4
    apart = hamming(hashes[:, None], hashes[None, :])[np.triu_indices(len(hashes), 1)]
    assert apart.min() > 8


@pytest.mark.parametrize("distance", [0, 1, 4, 6, 11])
def test_the_band_search_finds_every_pair_a_brute_force_loop_finds(distance: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from detbench.data import perceptual_hash as module

    rng = np.random.default_rng(distance)
    a = rng.integers(0, 2**63, 300, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 300).astype(np.uint64)
    b = rng.integers(0, 2**63, 250, dtype=np.uint64)
    for k in range(120):  # plant pairs at every distance up to distance + 2, duplicates too
        flipped = int(a[k])
        for bit in rng.choice(64, int(rng.integers(0, distance + 3)), replace=False):
            flipped ^= 1 << int(bit)
        b[k] = flipped
    b[200:206] = a[7]
    a[290:295] = a[7]
    expected = [(i, j, int(hamming(a[i], b[j]))) for i in range(len(a)) for j in range(len(b))
                if bin(int(a[i]) ^ int(b[j])).count("1") <= distance]
    for chunk in (module._CHUNK, 5):  # small chunks: pairs split across chunks are neither lost nor repeated
        monkeypatch.setattr(module, "_CHUNK", chunk)
        i, j, d = near_pairs(a, b, distance)
        assert list(zip(i.tolist(), j.tolist(), d.tolist(), strict=True)) == expected
    assert len(expected) >= 50


def test_the_band_search_of_empty_sets_and_bad_distances() -> None:
    some = hash_values(["00000000000000ff"])
    for a, b in ((some[:0], some), (some, some[:0])):
        assert all(len(x) == 0 for x in near_pairs(a, b, 4))
    with pytest.raises(ValueError, match="distance must be in 0..63"):
        near_pairs(some, some, 64)


# ------------------------------------------------------------------ the index column


def _photo_tree(root: Path) -> Path:
    folder = root / "gen" / "0_real"
    folder.mkdir(parents=True)
    for seed in range(3):
        photo(seed).save(folder / f"{seed}.png")
    (folder / "empty.png").write_bytes(b"")
    return root


def test_the_index_holds_each_decoded_image_phash_and_fast_mode_none(tmp_path: Path) -> None:
    from detbench.data.index import build_index
    from detbench.datasets.folder import FolderOptions, FolderSuite

    root = _photo_tree(tmp_path / "tree")
    rows = build_index(FolderSuite(FolderOptions()), root).rows.set_index("path")
    for seed in range(3):
        assert rows.loc[f"gen/0_real/{seed}.png", "phash"] == perceptual_hash(photo(seed))
    assert pd.isna(rows.loc["gen/0_real/empty.png", "phash"])
    fast = build_index(FolderSuite(FolderOptions()), root, mode="fast").rows
    assert fast["phash"].isna().all()


def test_an_index_written_before_phash_is_probed_again_and_keeps_its_hash(tmp_path: Path) -> None:
    from detbench.data.index import build_index
    from detbench.datasets.folder import FolderOptions, FolderSuite

    root = _photo_tree(tmp_path / "tree")
    suite = FolderSuite(FolderOptions())
    first = build_index(suite, root)
    first.rows.drop(columns=["phash"]).to_parquet(first.directory / "index.parquet")  # as an older detbench wrote it
    again = build_index(suite, root)
    assert again.manifest["reused_rows"] == 0
    assert again.rows["phash"].notna().sum() == 3
    assert again.manifest["index_hash"] == first.manifest["index_hash"]  # run ids of unchanged data are kept
    assert build_index(suite, root).manifest["reused_rows"] == 4  # once


def test_parquet_shard_images_get_a_phash(tmp_path: Path) -> None:
    from replicas import write_hf_shard

    from detbench.data.index import build_index
    from detbench.registry import SUITES

    image = photo(5)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    write_hf_shard(tmp_path / "hub" / "data" / "test-00000-of-00001.parquet",
                   [{"image": buffer.getvalue(), "label": 0}, {"image": None, "label": 1}])
    suite_cls = SUITES.get("parquet")
    rows = build_index(suite_cls(suite_cls.Options()), tmp_path / "hub").rows.sort_values("path")
    assert rows["phash"].iloc[0] == perceptual_hash(image) and pd.isna(rows["phash"].iloc[1])


# ------------------------------------------------------------------ the settings


@pytest.mark.parametrize(
    "setting, message",
    [
        ("check.near_duplicates=maybe", "check.near_duplicates takes warn, refuse, off; got 'maybe'"),
        ("check.near_duplicates_distance=-1", "takes a number of differing bits from 0 to 16 (of 64); got '-1'"),
        ("check.near_duplicates_distance=17", "from 0 to 16"),
        ("check.near_duplicates_distance=four", "from 0 to 16"),
        ("check.near_dupes=warn", "unknown check setting 'check.near_dupes'"),
    ],
)
def test_bad_check_settings_are_one_line_before_any_work(setting: str, message: str) -> None:
    result = invoke("run", "linear-probe", "--suite", "demo", "--set", setting, "-q")
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and len(result.output.strip().splitlines()) == 1
    assert not (Path(os.environ["DETBENCH_HOME"]) / "demo").exists()  # refused before the demo is built


# ------------------------------------------------------------------ runs


def _encoded(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture()
def hub(tmp_path: Path) -> Path:
    """A Parquet suite whose test shard holds a resized JPEG copy of a training photo, a byte copy of another,
    and pictures of its own."""
    from replicas import write_hf_shard

    train = [{"image": _encoded(photo(i)), "label": i % 2, "generator": "g"} for i in range(10)]
    planted = {"image": resized_jpeg(photo(2)), "label": 0, "generator": "g"}
    copied = dict(train[5])
    fresh = [{"image": _encoded(photo(20 + i)), "label": i % 2, "generator": "g"} for i in range(4)]
    write_hf_shard(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet", train, class_names=None)
    write_hf_shard(tmp_path / "hub" / "data" / "test-00000-of-00001.parquet", [planted, copied, *fresh],
                   class_names=None)
    return tmp_path / "hub"


def parquet_run(root: Path, *extra: str):
    return invoke("run", "linear-probe", "--suite", "parquet", "--root", str(root), "--protocol", "train-on-g",
                  "--set", "generator_column=generator", *extra, *TINY)


def records(suite: str) -> list[dict]:
    home = Path(os.environ["DETBENCH_HOME"])
    return [json.loads(p.read_text()) for p in home.glob(f"runs/{suite}/*/*/run.json")]


def test_a_near_duplicate_within_one_suite_is_warned_recorded_and_flagged(hub: Path) -> None:
    result = parquet_run(hub)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "1 of the 6 evaluation images are near-duplicates of training images (perceptual hash within 4 of 64 " \
           "bits; byte-identical copies apart), e.g. data/test-00000-of-00001.parquet#image:000000000 ~ " \
           "data/train-00000-of-00001.parquet#image:000000002 (" in text, text
    [record] = records("parquet")
    near = record["counts"]["near_duplicates_of_training"]
    assert (near["mode"], near["distance"], near["eval"], near["copies"], near["train"]) == ("warn", 4, 1, 1, 1)
    assert near["unhashed"] == {"train": 0, "eval": 0}
    [example] = near["examples"]  # the fresh pictures are not flagged
    assert example["eval"].endswith("#image:000000000") and example["train"].endswith("#image:000000002")
    assert example["distance"] <= 4
    assert record["counts"]["copies_of_training"]["eval"] == 1  # the byte copy keeps its own count
    assert detbench.leaderboard("parquet")["flags"].tolist() == ["1 train copies, 1 near-dups (d<=4)"]

    again = parquet_run(hub, "--set", "check.near_duplicates_distance=6", "--set", "check.near_duplicates=off")
    assert again.exit_code == 0, again.output
    assert [r["run_id"] for r in records("parquet")] == [record["run_id"]]  # the checks change no run id


def test_refuse_is_one_line_before_any_training_and_writes_no_run(hub: Path) -> None:
    result = parquet_run(hub, "--set", "check.near_duplicates=refuse")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert "check.near_duplicates=refuse: 2 of the 6 evaluation images are near-duplicates of training images " \
           "(perceptual hash within 4 of 64 bits, 1 of them byte-identical copies)" in text, text
    home = Path(os.environ["DETBENCH_HOME"])
    assert not (home / "runs").exists() or not any(p.is_file() for p in (home / "runs").rglob("*"))


def test_refuse_runs_when_nothing_is_near(hub: Path, tmp_path: Path) -> None:
    from replicas import write_hf_shard

    fresh = [{"image": _encoded(photo(30 + i)), "label": i % 2, "generator": "g"} for i in range(4)]
    write_hf_shard(hub / "data" / "test-00000-of-00001.parquet", fresh, class_names=None)
    result = parquet_run(hub, "--set", "check.near_duplicates=refuse")
    assert result.exit_code == 0, result.output
    [record] = records("parquet")
    near = record["counts"]["near_duplicates_of_training"]
    assert (near["mode"], near["eval"], near["copies"], near["examples"]) == ("refuse", 0, 0, [])
    assert detbench.leaderboard("parquet")["flags"].fillna("").tolist() == [""]


def test_a_fast_index_is_not_checked_and_says_so(hub: Path) -> None:
    from replicas import write_hf_shard

    planted = {"image": resized_jpeg(photo(2)), "label": 0, "generator": "g"}
    fresh = [{"image": _encoded(photo(20 + i)), "label": i % 2, "generator": "g"} for i in range(4)]
    write_hf_shard(hub / "data" / "test-00000-of-00001.parquet", [planted, *fresh], class_names=None)  # no byte copy
    result = parquet_run(hub, "--fast-index")
    assert result.exit_code == 0, result.output
    assert "have no perceptual hash (an index made with --fast decodes nothing)" in " ".join(result.output.split())
    refused = parquet_run(hub, "--fast-index", "--set", "check.near_duplicates=refuse")
    assert refused.exit_code == 2 and "index without --fast" in refused.output, refused.output


def test_find_near_duplicates_counts_each_side() -> None:
    from detbench.engine.near_duplicates import find_near_duplicates

    h = ["0000000000000000", "00000000000000ff", "ffffffffffffffff"]
    trained = pd.DataFrame({"path": ["t0", "t1", "t2", "t3"], "image_id": ["a", "b", "c", "d"],
                            "phash": [h[0], h[0], h[2], None]})
    evaluation = pd.DataFrame({"path": ["e0", "e1", "e2", "e3", "e4"], "image_id": ["x", "y", "c", "z", "w"],
                               "status": ["ok", "ok", "ok", "ok", "undecodable"],
                               "phash": ["0000000000000003", h[1], h[2], None, None]})
    found = find_near_duplicates(trained, evaluation, 4)
    assert (found["eval"], found["copies"], found["train"]) == (1, 1, 2)  # e0 ~ t0, t1; e2 is a byte copy of t2
    assert found["examples"] == [{"eval": "e0", "train": "t0", "distance": 2}]
    assert found["unhashed"] == {"train": 1, "eval": 1}  # the undecodable row is not counted
