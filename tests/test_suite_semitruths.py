"""Semi-Truths on a miniature replica: editing models as generators, the shared real pool, the magnitude-of-change
columns kept as meta_ index columns and sliced with --by, wrong roots."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from replicas import build_semitruths, write_image

from detbench.data.index import build_index
from detbench.data.suites import SuiteLayoutError
from detbench.datasets.semitruths import SemiTruthsSuite
from detbench.results.slices import slice_values


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory):
    rep = build_semitruths(tmp_path_factory.mktemp("semitruths") / "Semi-Truths-Evalset")
    suite = SemiTruthsSuite()
    return rep, suite, build_index(suite, rep.root)


def test_semitruths_keeps_the_magnitude_of_change_as_meta_columns(indexed) -> None:
    _, _, index = indexed
    rows = index.rows
    for column in ("meta_sem_magnitude", "meta_post_edit_ratio", "meta_area_ratio", "meta_ssim", "meta_lpips_score",
                   "meta_dataset", "meta_method"):
        assert column in rows.columns, column
    fakes = rows[(rows["label"] == 1) & (rows["status"] == "ok")]
    assert set(fakes["meta_sem_magnitude"]) == {"small", "medium", "large"}
    by_magnitude = slice_values(fakes, "meta_sem_magnitude")
    assert sorted(set(by_magnitude)) == ["large", "medium", "small"]
    binned = slice_values(fakes, "meta_area_ratio:3")
    assert binned.nunique() == 3 and binned.notna().all()
    reals = rows[rows["label"] == 0]
    assert reals["meta_sem_magnitude"].isna().all()  # the originals have no change


def test_semitruths_models_real_pool_and_protocols(indexed) -> None:
    rep, suite, index = indexed
    cols = ["path", "generator", "split", "label", "status"]
    assert sorted(map(tuple, index.rows[cols].itertuples(index=False, name=None))) == sorted(rep.expected)
    assert sorted(index.generators) == ["kandinsky-2-2", "openjourney", "stablediffusion-v4"]
    pool = index.rows[index.rows["label"] == 0]
    assert pool.groupby("path")["generator"].nunique().eq(3).all()
    assert suite.default_protocol == "eval"
    protocols = suite.all_protocols(index.generators)
    assert protocols["eval"].eval_split == "test" and protocols["train-genimage-sdv14"].train_suite == "genimage"


def test_semitruths_full_release_metadata_folder_and_column_options(tmp_path: Path) -> None:
    root = tmp_path / "Semi-Truths"
    real = write_image(root / "original" / "images" / "ADE20K" / "a.jpg")
    fake = write_image(root / "inpainting" / "ADE20K" / "Kandinsky_2_2" / "a_k.png", seed=3)
    (root / "metadata" / "edited").mkdir(parents=True)
    pd.DataFrame({"img_path": [real.relative_to(root).as_posix(), fake.relative_to(root).as_posix()],
                  "label": [0, 1], "diffusion_model": ["", "Kandinsky_2_2"], "sem_magnitude": ["", "large"]}).to_csv(
        root / "metadata" / "edited" / "inpainting.csv", index=False)
    suite = SemiTruthsSuite(SemiTruthsSuite.Options(path_column="img_path", generator_column="diffusion_model"))
    entries = list(suite.scan(root))
    assert {(e.generator, e.label, e.extra["sem_magnitude"]) for e in entries} == {
        ("kandinsky-2-2", 0, None), ("kandinsky-2-2", 1, "large")}
    with pytest.raises(SuiteLayoutError, match="no edited image with a 'model'"):
        list(SemiTruthsSuite(SemiTruthsSuite.Options(path_column="img_path")).scan(root))


def test_semitruths_wrong_root_names_what_is_missing(tmp_path: Path) -> None:
    write_image(tmp_path / "original" / "images" / "a.jpg")
    with pytest.raises(SuiteLayoutError, match=r"(?s)not look like Semi-Truths: no metadata.csv.*original/"):
        list(SemiTruthsSuite().scan(tmp_path))
