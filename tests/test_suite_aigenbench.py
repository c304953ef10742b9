"""AI-GenBench on a miniature save_to_disk replica: Arrow IPC shards, the real pool paired with generators, the
benchmark's timeline driving the chronological protocols."""

from __future__ import annotations

import io
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from cli_helpers import invoke
from PIL import Image
from replicas import AIGENBENCH_GENERATORS, build_aigenbench, encode_image, write_arrow_shard

from detbench.config import apply_overrides
from detbench.data import shards
from detbench.data.index import build_index
from detbench.data.loading import ImageRowsDataset
from detbench.data.protocol_builder import ProtocolOptions, parse_chrono, series_windows
from detbench.data.release_dates import format_month, load_release_dates
from detbench.data.suites import SuiteLayoutError
from detbench.datasets.aigenbench import AIGenBenchOptions, AIGenBenchSuite, generator_key
from detbench.engine.protocol_checks import select_protocol

TINY = ["--set", "backbone=open_clip:detbench-tiny-vit@random", "--bootstrap", "0", "-q"]
COLUMNS = ["path", "generator", "split", "label", "status"]
# AI-GenBench's sliding windows (4 generators each, by release day) as growing chrono cuts, as the README gives them
WINDOW_CUTS = "chrono:2017-11,2018-12,2020-11,2021-06,2021-11,2021-12,2022-06,2023-04"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory):
    return build_aigenbench(tmp_path_factory.mktemp("aigenbench") / "out")


def suite_with(**options: str) -> AIGenBenchSuite:
    return AIGenBenchSuite(apply_overrides(AIGenBenchOptions(), options))


def test_rows_splits_meta_and_what_is_skipped(saved) -> None:
    suite = AIGenBenchSuite()
    index = build_index(suite, saved.root)
    assert Counter(tuple(r) for r in index.rows[COLUMNS].itertuples(index=False, name=None)) == Counter(saved.expected)
    assert sorted(index.generators) == sorted(AIGENBENCH_GENERATORS.values())
    assert set(index.rows["split"]) == {"train", "test"} and set(index.rows["meta_origin_dataset"]) == {"coco", "synth"}
    assert index.rows["path"].str.contains(r"^ai_gen_bench_v1\.0\.0/(?:train|validation)/data-0000[01]-of-00002"
                                           r"\.arrow#image:\d{9}$").all()  # fmt: skip
    assert suite.ignored == [f"ai_gen_bench_v1.0.0/{s}/cache-0123456789abcdef.arrow" for s in ("train", "validation")]
    assert any("outside AI-GenBench's timeline" in note and "(Firefly)" in note for note in suite.notes)
    kept = suite_with(generator_set="all")
    assert "firefly" in {e.generator for e in kept.scan(saved.root)}


def test_each_real_is_listed_once_in_shares_proportional_to_the_fakes(saved) -> None:
    entries = list(AIGenBenchSuite().scan(saved.root))
    reals = [e for e in entries if e.label == 0]
    assert len({e.path for e in reals}) == len(reals)  # no real image under two generators
    for split in ("train", "test"):
        shares = Counter(e.generator for e in reals if e.split == split)
        others = {g: 1 for g in AIGENBENCH_GENERATORS.values() if g != "flux-1-dev"}
        assert shares == Counter({"flux-1-dev": 3, **others})  # 8 reals for 2 fakes each and FLUX's 4
    reseeded = [e for e in suite_with(real_pairing_seed="7").scan(saved.root) if e.label == 0]
    assert Counter(e.generator for e in reseeded) == Counter(e.generator for e in reals)
    assert {(e.path, e.generator) for e in reseeded} != {(e.path, e.generator) for e in reals}
    assert AIGenBenchSuite().identity() != suite_with(real_pairing_seed="7").identity()


def test_the_timeline_has_the_benchmarks_36_generators_and_drives_chrono(saved) -> None:
    dates = load_release_dates()
    timeline = {g: r for g, s, r in dates.rows if s == "aigenbench"}
    assert len(timeline) == 36 and all("benchmark_generators.py" in r.source for r in timeline.values())
    assert generator_key("Diffusion GAN (ProjectedGAN)") == "diffusion-gan-projectedgan"
    assert format_month(dates.for_suite("aigenbench")["midjourney"].month) == "2022-02"  # not GenImage's V5 date
    suite = AIGenBenchSuite()
    index = build_index(suite, saved.root)
    window = select_protocol(suite, index, "chrono:2022-06", options=ProtocolOptions())
    assert window.train_generators == ("cyclegan", "diffusion-gan-projectedgan", "stylegan1")
    assert window.eval_generators == ("flux-1-dev", "stable-diffusion-1-4", "stable-diffusion-xl-1-0")
    assert (window.train_split, window.eval_split) == ("train", "test")
    assert "AI-GenBench's timeline" in window.facts["sources"]["stylegan1"]
    months = {g: r.month for g, r in timeline.items()}
    windows = series_windows(parse_chrono(WINDOW_CUTS), months)
    trained = [sum(m <= parse_chrono(w).cuts[0] for m in months.values()) for w in windows]
    assert trained == [4, 8, 12, 16, 21, 24, 28, 32]  # VQ-Diffusion (29 Nov 2021) shares its month with window 5


def test_arrow_shards_stream_and_file_format_read_by_locator(tmp_path: Path) -> None:
    images = [encode_image("PNG", seed=s) for s in range(5)]
    table = pa.table({"image": pa.array([{"bytes": b, "path": None} for b in images]), "label": [1] * 5})
    for stream in (True, False):
        shard = write_arrow_shard(tmp_path / f"s{int(stream)}.arrow", table, stream=stream, batch_rows=2)
        assert shards.row_group_sizes(shards.open_shard(shard)) == [2, 2, 1]
        assert [v["image"] for _, v in shards.iter_rows(shard, ["image"], batch_rows=3)] == [images[:2], images[2:4],
                                                                                          images[4:]]  # fmt: skip
        reader = shards.ShardReader(tmp_path, batch_rows=1)
        for row in (4, 0, 3):
            assert reader.read(shards.parse_locator(f"{shard.name}#image:{row:09d}")) == images[row]
        before = shards.fingerprint(shard)
        assert before is not None and before["footer"] is not None
        write_arrow_shard(shard, table.slice(0, 4), stream=stream, batch_rows=2)
        assert shards.fingerprint(shard)["footer"] != before["footer"]
    truncated = tmp_path / "t.arrow"
    truncated.write_bytes((tmp_path / "s1.arrow").read_bytes()[:-100])
    assert shards.fingerprint(truncated)["footer"] is None  # a damaged stream is read again, never trusted
    with pytest.raises(shards.ShardError, match="not a readable Arrow IPC file"):
        shards.open_shard(truncated)


def test_loader_decodes_arrow_rows(saved) -> None:
    index = build_index(AIGenBenchSuite(), saved.root)
    rows = index.rows.sort_values("path")
    dataset = ImageRowsDataset(saved.root, rows["path"].tolist(), np.asarray, image_ids=rows["image_id"].tolist(),
                               stats=list(zip(rows["bytes"], rows["mtime_ns"], strict=True)))  # fmt: skip
    first = rows["path"].iloc[0]
    locator = shards.parse_locator(first)
    data = shards.ShardReader(saved.root).read(locator)
    x, _, err = dataset[0]
    assert err is None and np.array_equal(x, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    broken = rows.reset_index(drop=True).index[rows["status"].to_numpy() == "truncated"]
    assert [dataset[i][2].split(":")[0] for i in broken] == ["truncated"]


def test_roots_that_are_no_saved_dataset(saved, tmp_path: Path) -> None:
    with pytest.raises(SuiteLayoutError, match=r"does not look like AI-GenBench.*dataset_dict\.json or state\.json"):
        list(AIGenBenchSuite().scan(tmp_path))
    one_split = saved.root / "ai_gen_bench_v1.0.0" / "validation"
    entries = list(AIGenBenchSuite().scan(one_split))  # one split's folder: read as that split
    assert {e.split for e in entries} == {"test"} and entries[0].path.startswith("data-0000")
    copy = tmp_path / "copy"
    shutil.copytree(saved.root, copy)
    (copy / "ai_gen_bench_v1.0.0" / "train" / "data-00001-of-00002.arrow").unlink()
    with pytest.raises(SuiteLayoutError, match="1 shards its state.json lists are missing: data-00001-of-00002"):
        list(AIGenBenchSuite().scan(copy))
    shutil.copy(saved.root / "ai_gen_bench_v1.0.0" / "train" / "data-00001-of-00002.arrow", copy / "ai_gen_bench_v1.0.0"
                / "train")  # fmt: skip
    state = copy / "ai_gen_bench_v1.0.0" / "validation" / "state.json"
    state.write_text(json.dumps({"_data_files": [{"filename": "../train/data-00000-of-00002.arrow"}]}))
    with pytest.raises(SuiteLayoutError, match="each _data_files entry must name a file in that folder"):
        list(AIGenBenchSuite().scan(copy))
    (copy / "ai_gen_bench_v1.0.0" / "dataset_dict.json").write_text(json.dumps({"splits": ["../elsewhere"]}))
    with pytest.raises(SuiteLayoutError, match="does not list its splits as folder names"):
        list(AIGenBenchSuite().scan(copy))
    with pytest.raises(Exception, match="generator_set must be one of benchmark, all"):
        suite_with(generator_set="some")


def test_chrono_run_and_predict_on_an_arrow_shard(tmp_path: Path) -> None:
    saved = build_aigenbench(tmp_path / "out", n=4)  # 2 reals per training generator: one is held out
    root = str(saved.root)
    run = invoke("run", "linear-probe", "--suite", "aigenbench", "--root", root, "--protocol", "chrono:2022-06",
                 *TINY)  # fmt: skip
    assert run.exit_code == 0, run.output
    [record_path] = Path(os.environ["DETBENCH_HOME"]).glob("runs/aigenbench/linear-probe/*/run.json")
    record = json.loads(record_path.read_text())
    assert sorted(record["protocol_facts"]["test"]) == ["flux-1-dev", "stable-diffusion-1-4", "stable-diffusion-xl-1-0"]
    scores = pd.read_parquet(record_path.parent / "scores.parquet")
    assert scores["path"].str.contains(".arrow#image:").all() and set(scores["split"]) == {"test"}
    shard = saved.root / "ai_gen_bench_v1.0.0" / "validation" / "data-00000-of-00002.arrow"
    predicted = invoke("predict", record["run_id"][:10], str(shard), "--csv", str(tmp_path / "p.csv"), "-q")
    assert predicted.exit_code == 0, predicted.output
    out = pd.read_csv(tmp_path / "p.csv")
    assert len(out) == sum(shards.row_group_sizes(shards.open_shard(shard)))
    out["path"] = "ai_gen_bench_v1.0.0/validation/" + out["file"].str.rsplit("/", n=1).str[-1]
    merged = out.merge(scores, on="path")
    assert len(merged) and np.allclose(merged["score_x"], merged["score_y"], atol=1e-6)
