"""Test-only collections on miniature replicas: GANGen-Detection, DiffusionForensics, Chameleon, Synthbuster."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from replicas import build_chameleon, build_diffusionforensics, build_gangen, build_synthbuster, write_image

from detbench.config import ConfigError, apply_overrides
from detbench.data.index import build_index
from detbench.data.suites import SuiteLayoutError
from detbench.datasets.chameleon import ChameleonSuite
from detbench.datasets.diffusionforensics import DiffusionForensicsOptions, DiffusionForensicsSuite
from detbench.datasets.gangen import GANS, GANGenSuite
from detbench.datasets.synthbuster import GENERATORS, SynthbusterOptions, SynthbusterSuite


def rows_of(df) -> Counter:
    cols = ["path", "generator", "split", "label", "status"]
    return Counter(tuple(r) for r in df[cols].itertuples(index=False, name=None))


def test_gangen_exact_rows_and_cross_suite_protocols(tmp_path: Path) -> None:
    rep = build_gangen(tmp_path / "GANGen-Detection")
    suite = GANGenSuite()
    index = build_index(suite, rep.root)
    assert rows_of(index.rows) == Counter(rep.expected)
    assert index.manifest["counts"]["attgan"] == {"test": {"real": 2, "fake": 2}}
    assert index.manifest["problems"] == {"empty": 1}
    assert set(index.rows.loc[index.rows["label"] == 1, "family"]) == {"gan"}
    protocols = suite.protocols(index.generators)
    assert suite.default_protocol == "eval" and suite.eval_convention == "gangen"
    assert suite.all_protocols(index.generators)["eval"].eval_generators == GANS
    progan = protocols["train-progan-4class"]
    assert (progan.train_suite, progan.train_protocol, progan.eval_generators) == (
        "universalfakedetect", "progan-4class", GANS
    )
    assert protocols["train-genimage-sdv14"].to_dict()["train_suite"] == "genimage"
    wrapped = list(GANGenSuite().scan(tmp_path))  # the parent of GANGen-Detection/ is accepted too
    assert len(wrapped) == len(rep.expected)
    write_image(tmp_path / "other" / "photos" / "a.png")
    with pytest.raises(SuiteLayoutError, match=r"(?s)GANGen-Detection.*AttGAN, BEGAN.*photos/"):
        list(GANGenSuite().scan(tmp_path / "other"))


def test_diffusionforensics_dire_layout_real_pools_and_representations(tmp_path: Path) -> None:
    rep = build_diffusionforensics(tmp_path / "DiffusionForensics")
    suite = DiffusionForensicsSuite()
    index = build_index(suite, rep.root)
    assert rows_of(index.rows) == Counter(rep.expected)
    counts = index.manifest["counts"]
    assert sorted(counts) == [
        "imagenet-adm", "imagenet-sdv1", "lsun_bedroom-adm", "lsun_bedroom-ddpm", "lsun_bedroom-sdv1"
    ]
    assert counts["lsun_bedroom-sdv1"] == {"train": {"fake": 2, "real": 3}, "test": {"fake": 2, "real": 3}}
    assert sorted(suite.ignored) == ["dire", "recons"] and index.manifest["problems"] == {"truncated": 1}
    pool = index.rows[index.rows["path"].str.startswith("images/test/lsun_bedroom/real/")]
    assert pool.groupby("path")["generator"].nunique().eq(3).all()  # one real pool per subset and split
    protocols = suite.protocols(index.generators)
    train_adm = protocols["train-on-lsun_bedroom-adm"]
    assert (train_adm.train_generators, train_adm.eval_split, train_adm.eval_generators) == (
        ("lsun_bedroom-adm",), "test", None
    )
    dire = DiffusionForensicsSuite(DiffusionForensicsOptions(representation="dire"))
    assert {e.path.split("/")[0] for e in dire.scan(rep.root)} == {"dire"}
    with pytest.raises(ConfigError, match="images, recons, dire"):
        apply_overrides(DiffusionForensicsOptions(), {"representation": "latents"})


def test_diffusionforensics_npr_layout(tmp_path: Path) -> None:
    rep = build_diffusionforensics(tmp_path / "DiffusionForensics", layout="npr")
    suite = DiffusionForensicsSuite()
    rows = list(suite.scan(rep.root))
    assert Counter((e.path, e.generator, e.split, e.label, "ok") for e in rows) == Counter(rep.expected)
    assert {e.generator for e in rows} == {"lsun_bedroom-adm", "lsun_bedroom-ddpm", "lsun_bedroom-sdv1"}
    assert suite.eval_convention == "diffusionforensics"
    assert not any(p.startswith("train-on-") for p in suite.protocols(sorted({e.generator for e in rows})))


def test_chameleon_rows_counts_note_and_protocols(tmp_path: Path) -> None:
    rep = build_chameleon(tmp_path / "Chameleon")
    suite = ChameleonSuite()
    index = build_index(suite, rep.root)
    assert rows_of(index.rows) == Counter(rep.expected)
    assert index.manifest["counts"] == {"chameleon": {"test": {"real": 3, "fake": 2}}}
    assert suite.notes and "14863 real and 11170 fake" in suite.notes[0] and "3 real and 3 fake" in suite.notes[0]
    assert suite.headline_metrics == ("acc", "real_acc", "fake_acc")
    assert set(suite.protocols(index.generators)) == {
        "train-progan-4class", "train-progan-20class", "train-genimage-sdv14"
    }
    flat = build_chameleon(tmp_path / "flat", wrapper="")
    assert len(list(ChameleonSuite().scan(flat.root))) == len(flat.expected)
    write_image(tmp_path / "nothing" / "images" / "a.png")
    with pytest.raises(SuiteLayoutError, match=r"(?s)does not look like Chameleon.*\{0_real,1_fake\}.*images/"):
        list(ChameleonSuite().scan(tmp_path / "nothing"))


def test_synthbuster_shared_raise_pool(tmp_path: Path) -> None:
    rep = build_synthbuster(tmp_path / "sb")
    suite = SynthbusterSuite()
    index = build_index(suite, rep.root)
    assert rows_of(index.rows) == Counter(rep.expected)
    assert set(index.manifest["counts"]) == set(GENERATORS)
    assert index.manifest["counts"]["dalle3"] == {"test": {"real": 3, "fake": 2}}
    assert index.manifest["problems"] == {"truncated": len(GENERATORS)}
    reals = index.rows[index.rows["label"] == 0]
    assert reals.groupby("path")["image_id"].nunique().eq(1).all()
    assert set(reals.loc[reals["status"] == "ok", "format"]) == {"tiff"}
    assert suite.ignored == []


@pytest.mark.parametrize("root_is", ["parent", "synthbuster"])
def test_synthbuster_released_evaluation_layout_with_real_raise_1k_pngs(tmp_path: Path, root_is: str) -> None:
    """The released evaluation (grip-unina/ClipBased-SyntheticImageDetection ``synthbuster_download.sh``) unzips
    ``real_RAISE_1k.zip`` into the synthbuster folder: ``synthbuster/real_RAISE_1k/r*.png`` beside the generators,
    named like the fakes (its ``commercial_tools.csv`` lists the reals as ``synthbuster/real_RAISE_1k/*.png``)."""
    top = tmp_path / "data"
    names = ["r05839451t", "r006b0e4bt", "r0191aaf4t"]
    for j, name in enumerate(names):
        write_image(top / "synthbuster" / "real_RAISE_1k" / f"{name}.png", seed=60 + j)
        for k, gen in enumerate(GENERATORS):
            write_image(top / "synthbuster" / gen / f"{name}.png", seed=100 * k + j)
    root = top if root_is == "parent" else top / "synthbuster"
    suite = SynthbusterSuite()
    index = build_index(suite, root)
    assert suite.ignored == []
    reals = index.rows[index.rows["label"] == 0]
    prefix = "synthbuster/" if root_is == "parent" else ""
    assert set(reals["path"]) == {f"{prefix}real_RAISE_1k/{n}.png" for n in names}
    assert set(reals["format"]) == {"png"} and (index.rows["status"] == "ok").all()
    assert index.manifest["counts"]["dalle3"] == {"test": {"real": 3, "fake": 3}}
    assert set(index.generators) == set(GENERATORS)


def test_synthbuster_real_pool_errors(tmp_path: Path) -> None:
    rep = build_synthbuster(tmp_path / "sb", n=1, pool=1)
    (rep.root / "RAISE-1k").rename(rep.root / "photos")
    with pytest.raises(SuiteLayoutError, match=r"holds only the fakes.*real_RAISE_1k\.zip.*real_folder"):
        list(SynthbusterSuite().scan(rep.root))
    chosen = SynthbusterSuite(SynthbusterOptions(real_folder="photos"))
    assert sum(e.label == 0 for e in chosen.scan(rep.root)) == 2 * len(GENERATORS)
    write_image(rep.root / "real" / "x.png")
    write_image(rep.root / "raise_extra" / "x.png")
    with pytest.raises(SuiteLayoutError, match="several folders could be the RAISE-1k real pool"):
        list(SynthbusterSuite().scan(rep.root))
    with pytest.raises(ConfigError, match="inside the suite root"):
        SynthbusterOptions(real_folder="../elsewhere")
