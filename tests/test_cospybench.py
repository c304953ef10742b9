"""Co-Spy-Bench on a miniature replica: generators per model, caption sources as meta_source (per-source tables
with --by), reals paired with the fakes of their source, the original's per-cell evaluation draw, wrong roots."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from cli_helpers import invoke
from replicas import build_cospybench, pack_cospybench, write_image

import detbench
from detbench.config import ConfigError, apply_overrides
from detbench.data.index import build_index
from detbench.data.release_dates import load_release_dates
from detbench.data.suites import SuiteLayoutError
from detbench.datasets.cospybench import CoSpyBenchOptions, CoSpyBenchSuite, model_key
from detbench.errors import DetbenchError


def _rows(index) -> Counter:
    cols = ["path", "generator", "split", "label", "status"]
    return Counter(tuple(r) for r in index.rows[cols].itertuples(index=False, name=None))


def test_models_are_generators_and_reals_pair_with_their_caption_source(tmp_path: Path) -> None:
    rep = build_cospybench(tmp_path / "Co-Spy-Bench")
    suite = CoSpyBenchSuite()
    index = build_index(suite, rep.root)
    assert _rows(index) == Counter(rep.expected)
    rows = index.rows
    assert sorted(index.generators) == ["flux-1-dev", "stable-diffusion-v1-4"]
    assert set(rows["meta_source"]) == {"cc3m", "textcaps"}
    reals = rows[rows["label"] == 0]
    assert all(Path(p).parts[1].lower() == s for p, s in zip(reals["path"], reals["meta_source"], strict=True))
    fakes = rows[rows["label"] == 1]
    assert all(Path(p).parts[1] == s for p, s in zip(fakes["path"], fakes["meta_source"], strict=True))
    assert not rows["path"].str.endswith(".json").any()  # the captions beside the reals are no images
    assert any("caption source mscoco" in note and "MSCOCO" in note for note in suite.notes)
    protocols = suite.all_protocols(index.generators)
    assert suite.default_protocol == "eval" and protocols["eval"].eval_split == "test"
    assert "train-genimage-sdv14" in protocols


def test_evaluation_draws_the_first_images_by_name_per_source_and_generator(tmp_path: Path) -> None:
    rep = build_cospybench(tmp_path / "root", n=3)
    suite = CoSpyBenchSuite(CoSpyBenchOptions(eval_per_class=2))
    rows = build_index(suite, rep.root).rows
    sampled, facts = suite.sample_eval(rows)
    assert facts is not None and facts["per_class"] == 2
    cells = sampled.groupby(["generator", "meta_source", "label"]).size()
    assert set(cells) == {2} and len(cells) == 2 * 2 * 2
    cell = sampled[(sampled["generator"] == "flux-1-dev") & (sampled["meta_source"] == "textcaps")]
    assert {Path(p).name for p in cell["path"]} == {"000000.png", "000001.png", "00000000.jpg", "00000001.jpg"}
    # 4 fakes there, one truncated: never drawn
    assert facts["cells"]["flux-1-dev/textcaps"] == {"available_real": 4, "available_fake": 3, "per_class": 2}
    assert (sampled["status"] == "ok").all()
    everything, none = CoSpyBenchSuite(CoSpyBenchOptions(eval_per_class=0)).sample_eval(rows)
    assert none is None and len(everything) == len(rows)


def test_default_draw_is_the_originals_and_cuts_to_the_smaller_class(tmp_path: Path) -> None:
    """min(2000, reals, fakes): the truncated fake is never drawn, so TextCaps' FLUX cell keeps 2 of 3 reals."""
    rep = build_cospybench(tmp_path / "root")
    suite = CoSpyBenchSuite()
    assert suite.options.eval_per_class == 2000
    sampled, facts = suite.sample_eval(build_index(suite, rep.root).rows)
    assert facts["cells"]["flux-1-dev/textcaps"] == {"available_real": 3, "available_fake": 2, "per_class": 2}
    counts = sampled.groupby(["generator", "meta_source"])["label"].value_counts().unstack()
    assert (counts[0] == counts[1]).all()


def test_per_source_table_with_by_meta_source(tmp_path: Path) -> None:
    rep = build_cospybench(tmp_path / "root", defects=False)
    index = detbench.index("cospybench", root=rep.root)
    scores = index.drop_duplicates("path").assign(score=lambda f: 0.2 + 0.6 * f["label"])
    file = tmp_path / "scores.csv"
    scores[["path", "score"]].to_csv(file, index=False)
    detbench.import_scores("cospybench", file, root=rep.root, name="perfect", protocol="eval", bootstrap=0)
    table = detbench.leaderboard("cospybench", metric="acc", by="meta_source")
    assert set(table["slice"]) == {"cc3m", "textcaps"}
    assert set(table["generator"]) == {"flux-1-dev", "stable-diffusion-v1-4"}
    # 3 reals and 2 fakes per cell: the draw scores min(reals, fakes) of each
    assert (table["acc"] == 1.0).all() and (table["n_real"] == 2).all() and (table["n_fake"] == 2).all()


def test_folder_spellings_and_unknown_folders(tmp_path: Path) -> None:
    root = tmp_path / "bench"
    write_image(root / "synthetic" / "MSCOCO2017" / "stable-diffusion-2" / "0.png")
    write_image(root / "synthetic" / "laion" / "x@y" / "0.png")
    write_image(root / "real_image_examples" / "val2017" / "000000000139.jpg")
    write_image(root / "real_image_examples" / "Other" / "a.jpg")
    write_image(root / "ckpt" / "a.png")
    suite = CoSpyBenchSuite()
    entries = list(suite.scan(root))
    assert {(e.generator, e.label, e.extra["source"]) for e in entries} == {("stable-diffusion-2", 1, "mscoco"),
                                                                            ("stable-diffusion-2", 0, "mscoco")}
    assert set(suite.ignored) == {"synthetic/laion", "real_image_examples/Other", "ckpt"}


def test_wrong_roots_fail_with_one_message(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "a.png")
    with pytest.raises(SuiteLayoutError, match=r"(?s)Co-Spy-Bench: no synthetic/<source>/<model>.*real_image_"
                                               r"examples.*Found:\n.*images/"):
        list(CoSpyBenchSuite().scan(tmp_path))
    only_fakes = tmp_path / "fakes"
    write_image(only_fakes / "synthetic" / "cc3m" / "CompVis@stable-diffusion-v1-4" / "0.png")
    with pytest.raises(SuiteLayoutError, match="no real_image_examples/<Source> real images") as caught:
        list(CoSpyBenchSuite().scan(only_fakes))
    assert isinstance(caught.value, DetbenchError)


def test_eval_per_class_is_validated() -> None:
    with pytest.raises(ConfigError, match="eval_per_class must be >= 0"):
        apply_overrides(CoSpyBenchOptions(), {"eval_per_class": "-1"})
    assert apply_overrides(CoSpyBenchOptions(), {"eval_per_class": "500"}).eval_per_class == 500



def test_sources_indexes_only_the_named_caption_sources_and_stays_out_of_default_ids(tmp_path: Path) -> None:
    """The README's tables are per caption source: a generator's row pooled over every source is none of them."""
    rep = build_cospybench(tmp_path / "root", defects=False)
    one = CoSpyBenchSuite(apply_overrides(CoSpyBenchOptions(), {"sources": "TextCaps"}))
    rows = build_index(one, rep.root).rows
    assert set(rows["meta_source"]) == {"textcaps"} and len(rows) == 2 * (2 + 3)
    assert one.identity()["options"]["sources"] == ("textcaps",)
    assert "sources" not in CoSpyBenchSuite().identity()["options"]  # runs of every source keep their ids
    assert set(build_index(CoSpyBenchSuite(), rep.root).rows["meta_source"]) == {"cc3m", "textcaps"}
    with pytest.raises(ConfigError, match="unknown caption source 'coco2014'"):
        apply_overrides(CoSpyBenchOptions(), {"sources": "coco2014"})

# the model folders of CO-SPY's download.py (MODEL_LIST), as extracted
MODELS = (
    "CompVis@ldm-text2im-large-256", "CompVis@stable-diffusion-v1-4", "runwayml@stable-diffusion-v1-5",
    "segmind@SSD-1B", "segmind@tiny-sd", "segmind@SegMoE-SD-4x2-v0", "segmind@small-sd",
    "stabilityai@stable-diffusion-2-1", "stabilityai@stable-diffusion-3-medium-diffusers", "stabilityai@sdxl-turbo",
    "stabilityai@stable-diffusion-2", "stabilityai@stable-diffusion-xl-base-1.0",
    "playgroundai@playground-v2.5-1024px-aesthetic", "playgroundai@playground-v2-1024px-aesthetic",
    "playgroundai@playground-v2-512px-base", "playgroundai@playground-v2-256px-base",
    "PixArt-alpha@PixArt-XL-2-1024-MS", "PixArt-alpha@PixArt-XL-2-512x512", "latent-consistency@lcm-lora-sdxl",
    "latent-consistency@lcm-lora-sdv1-5", "black-forest-labs@FLUX.1-schnell", "black-forest-labs@FLUX.1-dev",
)


def test_the_22_models_have_distinct_keys_and_release_dates() -> None:
    keys = [model_key(model) for model in MODELS]
    assert len(set(keys)) == 22 and "playground-v2-5-1024px-aesthetic" in keys and "flux-1-schnell" in keys
    dated = load_release_dates().for_suite("cospybench")
    undated = sorted(k for k in keys if k not in dated)
    assert undated == ["segmoe-sd-4x2-v0", "small-sd", "tiny-sd"]  # no release date with a source to cite
    rows = {g for g, s, _r in load_release_dates().rows if s == "cospybench"}
    assert rows <= set(keys)


def test_the_hugging_face_archives_unextracted_fail_naming_the_archive(tmp_path: Path, detbench_home: Path) -> None:
    """A download of ruojiruoli/Co-Spy-Bench holds <source>/<org>@<model>/images_with_metadata.tar.gz; extracted as
    CO-SPY's download.py does (each into synthetic/<source>/, the zip of reals beside), it is the tree read."""
    rep = build_cospybench(tmp_path / "extracted", defects=False)
    hub = tmp_path / "hub"
    pack_cospybench(rep, hub)
    with pytest.raises(SuiteLayoutError, match=r"^\S+ does not look like Co-Spy-Bench: no synthetic/<source>/<model> "
                                               r"images \(6 images_with_metadata\.tar\.gz not extracted, first: "
                                               r"cc3m/CompVis@stable-diffusion-v1-4/images_with_metadata\.tar\.gz; "
                                               r"extract each into synthetic/<source>/"):
        list(CoSpyBenchSuite().scan(hub))
    result = invoke("index", "cospybench", "--root", str(hub))
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.output
    assert "6 images_with_metadata.tar.gz not extracted" in errors[0]
    out = tmp_path / "Co-Spy-Bench"
    for archive in sorted(hub.glob("*/*/images_with_metadata.tar.gz")):
        with tarfile.open(archive) as tar:
            tar.extractall(out / "synthetic" / archive.parent.parent.name, filter="data")
    with zipfile.ZipFile(hub / "real_image_examples.zip") as zipped:
        zipped.extractall(out)
    assert _rows(build_index(CoSpyBenchSuite(), out)) == Counter(rep.expected)


def test_an_archive_left_unextracted_beside_extracted_models_is_reported(tmp_path: Path) -> None:
    """download.py stopped between download and extraction leaves synthetic/<source>/images_with_metadata.tar.gz."""
    rep = build_cospybench(tmp_path / "root", defects=False)
    (rep.root / "synthetic" / "sbu").mkdir()
    (rep.root / "synthetic" / "sbu" / "images_with_metadata.tar.gz").write_bytes(b"\x1f\x8b")
    suite = CoSpyBenchSuite()
    assert _rows(build_index(suite, rep.root)) == Counter(rep.expected)
    assert any(note.startswith("1 images_with_metadata.tar.gz not extracted, first: synthetic/sbu/images_with_"
                               "metadata.tar.gz; extract each into synthetic/<source>/") for note in suite.notes)


def test_zipped_real_images_fail_naming_the_zip(tmp_path: Path) -> None:
    rep = build_cospybench(tmp_path / "root", defects=False)
    pack_cospybench(rep, tmp_path / "hub")
    shutil.rmtree(rep.root / "real_image_examples")
    shutil.move(tmp_path / "hub" / "real_image_examples.zip", rep.root)
    suite = CoSpyBenchSuite()
    with pytest.raises(SuiteLayoutError, match=r"no real_image_examples/<Source> real images for any source with "
                                               r"synthetic images \(real_image_examples\.zip is not unzipped: "
                                               r"unzip it in \S+, giving real_image_examples/CC3M, SBU and TextCaps\)"):
        list(suite.scan(rep.root))
    assert any("cc3m" in note and "real_image_examples.zip is not unzipped" in note for note in suite.notes)
