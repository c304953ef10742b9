"""Protocols every suite offers: mixed-source training (``train-on-A,B``), trees without split folders, and the
chronological windows and series over a release-date table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import FAST_FOLDER, invoke
from replicas import build_folder, write_image

from detbench.data.index import build_index
from detbench.data.protocol_builder import ProtocolOptions, parse_chrono, series_preview, series_windows
from detbench.data.release_dates import load_release_dates, parse_month
from detbench.data.suites import Protocol
from detbench.datasets.demo import DemoSuite
from detbench.datasets.folder import FolderSuite
from detbench.engine.protocol_checks import select_protocol, split_rows, training_generators_record
from detbench.errors import InputError, ProtocolError


def one_error(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    text = lines[0]
    for word in words:
        assert word in text, (word, text)
    return text


def images(base: Path, n: int, seed: int, ext: str) -> None:
    for j in range(n):
        write_image(base / f"img_{j:03d}{ext}", seed=seed + j)


@pytest.fixture
def uneven(tmp_path: Path):
    """Split folders; training counts differ per generator and class: a 6 real + 5 fake, b 3 real + 4 fake."""
    root = tmp_path / "uneven"
    counts = {"a": (6, 5), "b": (3, 4)}
    for g, (reals, fakes) in counts.items():
        images(root / "train" / g / "0_real", reals, 100 + ord(g) * 10, ".jpg")
        images(root / "train" / g / "1_fake", fakes, 500 + ord(g) * 10, ".png")
    for i, g in enumerate(("a", "b", "c")):
        images(root / "test" / g / "0_real", 2, 2000 + i * 10, ".jpg")
        images(root / "test" / g / "1_fake", 2, 3000 + i * 10, ".png")
    suite = FolderSuite()
    return suite, build_index(suite, root)


def per_class(rows: pd.DataFrame) -> dict[tuple[str, int], int]:
    return {(str(g), int(label)): int(n) for (g, label), n in rows.groupby(["generator", "label"]).size().items()}


# ------------------------------------------------------------------------------------------ mixed-source training


def test_mix_balanced_per_generator_takes_the_smallest_count_of_each(uneven) -> None:
    suite, index = uneven
    protocol = select_protocol(suite, index, "train-on-b,a")
    assert protocol.name == "train-on-a,b" and protocol.train_generators == ("a", "b")
    assert protocol.balance == "generator" and protocol.eval_generators is None
    train, heldout, evaluation = split_rows(index, protocol, seed=0)
    both = per_class(pd.concat([train, heldout]))
    assert both == {(g, label): 3 for g in "ab" for label in (0, 1)}  # min(6, 5, 3, 4) of each generator and class
    assert per_class(heldout) == {(g, label): 1 for g in "ab" for label in (0, 1)}  # held out per generator and class
    assert set(evaluation["generator"]) == {"a", "b", "c"} and set(evaluation["split"]) == {"test"}
    record = training_generators_record(protocol, train, heldout, index.rows)
    assert record["balance"] == "generator" and record["per_class"] == 3
    assert record["generators"]["a"] == {"real": 2, "fake": 2, "heldout_real": 1, "heldout_fake": 1,
                                         "available_real": 6, "available_fake": 5}
    assert record["generators"]["b"]["available_real"] == 3
    other_seed, _, _ = split_rows(index, protocol, seed=1)
    assert per_class(other_seed) == per_class(train)  # the seed changes which images, never how many


def test_mix_pooled_trains_on_every_image(uneven) -> None:
    suite, index = uneven
    protocol = select_protocol(suite, index, "train-on-a,b", options=ProtocolOptions(balance="pooled"))
    assert protocol.balance is None and "balance" not in protocol.to_dict()
    train, heldout, _ = split_rows(index, protocol, seed=0)
    assert per_class(pd.concat([train, heldout])) == {("a", 0): 6, ("a", 1): 5, ("b", 0): 3, ("b", 1): 4}
    record = training_generators_record(protocol, train, heldout, index.rows)
    assert record["balance"] == "pooled" and "per_class" not in record
    balanced = select_protocol(suite, index, "train-on-a,b")
    assert balanced.to_dict() != protocol.to_dict()  # the balance is part of the run identity


def test_single_generator_protocols_keep_their_identity(uneven) -> None:
    """The suites' own protocols enter the run id as before: no balance, no facts."""
    suite, index = uneven
    protocol = select_protocol(suite, index, "train-on-a", options=ProtocolOptions(balance="generator"))
    assert set(protocol.to_dict()) == {"name", "train_generators", "eval_generators", "train_split", "eval_split",
                                       "heldout_fraction", "description"}
    assert Protocol("p", ("x", "y")).to_dict() == Protocol("p", ("x", "y"), facts={"a": 1}).to_dict()


def test_demo_family_mix_and_alias() -> None:
    suite = DemoSuite()
    rows = pd.DataFrame(
        [{"path": f"{g}/{s}/{label}/{i}.png", "generator": g, "split": s, "label": label, "status": "ok"}
         for g in ("upconv", "nearest", "denoise") for s in ("train", "val") for label in (0, 1) for i in range(3)]
    )

    class Ix:
        usable = rows
        generators = sorted(rows["generator"].unique())
        root = Path(".")

    assert select_protocol(suite, Ix, "train-on-upconv").name == "upconv"  # the demo's own protocol: its run id
    mix = select_protocol(suite, Ix, "train-on-upconv,nearest")
    assert (mix.train_split, mix.eval_split, mix.eval_generators) == ("train", "val", None)


# ------------------------------------------------------------------------------------------ trees without splits


def test_folder_without_split_folders_trains_on_one_generator(tmp_path: Path, detbench_home: Path) -> None:
    root = tmp_path / "inhouse"
    build_folder(root, generators=("g1", "g2", "g3"), n=5)  # g*/0_real, g*/1_fake: no split folders
    result = invoke("run", "linear-probe", "--suite", "folder", "--root", str(root), "--protocol", "train-on-g1",
                    *FAST_FOLDER)
    assert result.exit_code == 0, result.output
    (path,) = detbench_home.glob("runs/folder/linear-probe/*/run.json")
    record = json.loads(path.read_text())
    scores = pd.read_parquet(path.parent / "scores.parquet")
    assert set(scores["generator"]) == {"g2", "g3"}  # g1's images trained or selected the model: never scored
    assert record["protocol_facts"]["not_evaluated"] == ["g1"] and record["protocol_facts"]["carved"]
    g1 = record["training_generators"]["generators"]["g1"]
    assert (g1["real"], g1["fake"], g1["heldout_real"], g1["heldout_fake"]) == (4, 4, 1, 1)  # train.holdout 0.1
    assert record["key"]["protocol"]["train_split"] == "test"
    assert record["holdout"]["used"] == "0.1"


# ------------------------------------------------------------------------------------------ chronological


DATES = "generator,released,source\na,2020-01,paper A\nb,2020-06,paper B\nc,2021-01,paper C\n"


@pytest.fixture
def dated(tmp_path: Path):
    root = tmp_path / "dated"
    build_folder(root, generators=("a", "b", "c", "d"), n=2)
    dates = tmp_path / "dates.csv"
    dates.write_text(DATES)
    suite = FolderSuite()
    return suite, build_index(suite, root), ProtocolOptions(dates_file=str(dates)), root, dates


def test_chrono_windows_train_on_the_past_and_test_on_the_future(dated) -> None:
    suite, index, options, _, _ = dated
    cut = select_protocol(suite, index, "chrono:2020-06", options=options)
    assert cut.train_generators == ("a", "b") and cut.eval_generators == ("c",)
    assert cut.facts["undated"] == ["d"] and cut.facts["train"] == {"a": "2020-01", "b": "2020-06"}
    assert cut.train_split == "test" and cut.facts["carved"]  # no train split: their images train
    sliding = select_protocol(suite, index, "chrono:2020-02..2020-06", options=options)
    assert sliding.train_generators == ("b",) and sliding.eval_generators == ("c",)
    assert select_protocol(suite, index, "chrono:2020-01", options=options).eval_generators == ("b", "c")


def test_chrono_series_windows(dated) -> None:
    suite, index, options, _, _ = dated
    assert series_preview(suite, index.usable, parse_chrono("chrono:growing:6m"), options) == [
        "chrono:2020-01", "chrono:2020-07"]
    assert series_preview(suite, index.usable, parse_chrono("chrono:sliding:3m"), options) == [
        "chrono:2019-11..2020-01", "chrono:2020-05..2020-07"]  # 2020-02..04 trains nothing
    months = {"a": parse_month("2020-01"), "b": parse_month("2020-01"), "c": parse_month("2020-03")}
    assert series_windows(parse_chrono("chrono:growing:1m"), months) == ["chrono:2020-01"]  # unchanged ones skipped
    assert parse_chrono("chrono:2021-01,2020-06").cuts == (parse_month("2020-06"), parse_month("2021-01"))
    assert parse_chrono("chrono:growing:1y").step == 12


def test_shipped_table_dates_every_row_with_a_source() -> None:
    table = load_release_dates()
    assert table.origin == "shipped" and len(table.rows) > 40
    assert all(release.source for _, _, release in table.rows)
    assert table.for_suite("genimage")["sdv14"].month == parse_month("2022-08")
    demo = table.for_suite("demo")
    assert all(demo[f].synthetic for f in ("upconv", "nearest", "autoencoder", "denoise"))
    assert "upconv" not in table.for_suite("folder")  # the synthetic demo dates apply to the demo only


def test_a_bad_dates_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("generator,released,source\na,2020-13,paper\n")
    with pytest.raises(InputError, match="line 2"):
        load_release_dates(bad)


# ------------------------------------------------------------------------------------------ bad input


def test_unknown_generator_names_the_known_ones(uneven) -> None:
    suite, index = uneven
    with pytest.raises(ProtocolError, match=r"unknown generator\(s\) zz.*has: a, b, c"):
        select_protocol(suite, index, "train-on-a,zz")


@pytest.mark.parametrize(
    ("protocol", "extra", "words"),
    [
        ("train-on-g1,nope", [], ["unknown generator(s) nope", "g1, g2, g3"]),
        ("train-on-g1:eval-on-g1,g2", [], ["both to train and to evaluate", "g1"]),
        ("chrono:2021-01", ["DATES"], ["no generator of this data was released after 2021-01"]),
        ("chrono:2020-06", [], ["need release dates", "chrono.dates"]),
        ("chrono:growing:12x", [], ["chrono:growing:STEP"]),
        ("train-on-g1", ["--set", "suite.balance=classes"], ["suite.balance", "generator, pooled"]),
    ],
    ids=["unknown-generator", "overlap", "no-later-generator", "no-dates", "bad-step", "bad-balance"],
)
def test_bad_protocol_input_is_one_error_line(tmp_path: Path, protocol: str, extra: list[str], words) -> None:
    root = tmp_path / "tree"
    build_folder(root, generators=("g1", "g2", "g3"), n=2)
    dates = tmp_path / "dates.csv"
    dates.write_text("generator,released,source\ng1,2020-01,p\ng2,2020-06,p\ng3,2021-01,p\n")
    extra = ["--set", f"chrono.dates={dates}"] if extra == ["DATES"] else extra
    result = invoke("run", "linear-probe", "--suite", "folder", "--root", str(root), "--protocol", protocol,
                    *FAST_FOLDER, *extra)
    one_error(result, *words)


def test_chrono_series_runs_one_window_each_and_the_report_draws_it(dated, detbench_home: Path) -> None:
    _, _, _, root, dates = dated
    result = invoke("run", "linear-probe", "--suite", "folder", "--root", str(root), "--protocol",
                    "chrono:growing:6m", "--set", f"chrono.dates={dates}", "--bootstrap", "0", *FAST_FOLDER)
    assert result.exit_code == 0, result.output
    assert "warning: protocol chrono:2020-01: no release date for d" in " ".join(result.output.split())
    records = [json.loads(p.read_text()) for p in detbench_home.glob("runs/folder/linear-probe/*/run.json")]
    windows = {r["protocol"]: r["protocol_facts"] for r in records}
    assert set(windows) == {"chrono:2020-01", "chrono:2020-07"}
    assert (list(windows["chrono:2020-07"]["train"]), list(windows["chrono:2020-07"]["test"])) == (["a", "b"], ["c"])
    assert "past to future" in result.output
    report = invoke("report", "folder")
    assert report.exit_code == 0, report.output
    (page,) = detbench_home.glob("reports/folder/report.html")
    assert "Past to future" in page.read_text() and (page.parent / "folder_chrono.png").exists()
