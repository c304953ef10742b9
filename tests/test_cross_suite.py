"""Cross-suite runs: train on one suite's protocol, evaluate on another (Chameleon from GenImage SD v1.4)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke
from replicas import build_aigcdetect, build_chameleon, build_genimage

TINY = ["--set", "backbone=open_clip:detbench-tiny-vit@random", "--bootstrap", "0", "-q"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("cross")
    genimage = build_genimage(base / "GenImage", generators=("sdv14", "adm"), n=6, defects=False)
    chameleon = build_chameleon(base / "Chameleon", n_real=5, n_fake=4)
    aigc = build_aigcdetect(base / "AIGCDetect", train_classes=(), n=1, defects=False)
    return {"genimage": genimage.root, "chameleon": chameleon.root, "aigcdetect": aigc.root}


def records(suite: str) -> list[dict]:
    home = Path(os.environ["DETBENCH_HOME"])
    return [json.loads(p.read_text()) for p in home.glob(f"runs/{suite}/linear-probe/*/run.json")]


def test_chameleon_trained_on_genimage_sdv14_shares_the_genimage_fit(data: dict[str, Path]) -> None:
    plain = invoke("run", "linear-probe", "--suite", "genimage", "--root", str(data["genimage"]), *TINY)
    assert plain.exit_code == 0, plain.output
    cross = invoke(
        "run", "linear-probe", "--suite", "chameleon", "--root", str(data["chameleon"]),
        "--protocol", "train-genimage-sdv14", "--train-root", str(data["genimage"]), *TINY,
    )  # fmt: skip
    assert cross.exit_code == 0, cross.output
    assert "real acc" in cross.output and "fake acc" in cross.output and "1 empty" in cross.output
    [genimage], [chameleon] = records("genimage"), records("chameleon")
    assert chameleon["fit_id"] == genimage["fit_id"] and chameleon["fit"]["reused"] is True
    assert chameleon["training"]["suite"] == "genimage" and chameleon["training"]["protocol"] == "sdv14"
    assert chameleon["paths"]["train_root"] == str(data["genimage"].resolve())
    assert chameleon["counts"]["train"]["used"] == genimage["counts"]["train"]["used"] > 0
    assert chameleon["counts"]["eval"] == {"chameleon": {"real": 5, "fake": 4, "skipped": 1}}
    scores = pd.read_parquet(Path(chameleon["paths"]["run"]) / "scores.parquet")
    held = pd.read_parquet(Path(chameleon["paths"]["run"]) / "heldout_scores.parquet")
    assert set(scores["generator"]) == {"chameleon"} and set(held["generator"]) == {"sdv14"}
    image = next((data["chameleon"] / "test" / "1_fake").glob("fake_0000.png"))
    predicted = invoke("predict", chameleon["run_id"][:10], str(image), "-q")  # its fit lives with genimage's
    assert predicted.exit_code == 0, predicted.output
    board = invoke("leaderboard", "chameleon")
    assert board.exit_code == 0, board.output
    assert all(f"chameleon leaderboard: {m}" in board.output for m in ("acc", "real_acc", "fake_acc"))


def test_any_suite_protocol_trains_with_train_suite(data: dict[str, Path]) -> None:
    result = invoke(
        "run", "linear-probe", "--suite", "aigcdetect", "--root", str(data["aigcdetect"]),
        "--protocol", "progan-4class", "--train-suite", "genimage", "--train-protocol", "train-on-adm",
        "--train-root", str(data["genimage"]), *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [record] = records("aigcdetect")
    assert record["training"]["protocol"] == "train-on-adm" and record["protocol"] == "progan-4class"
    assert len(record["counts"]["eval"]) == 16 and record["key"]["protocol"]["train_generators"] == ["adm"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--suite", "chameleon", "--protocol", "train-genimage-sdv14"], "pass --train-root PATH"),
        (["--suite", "chameleon", "--protocol", "train-genimage-sdv14", "--train-suite", "ufd", "--train-root", "."],
         "trains on suite genimage, not ufd"),
        (["--suite", "genimage", "--train-root", "."], "--train-root applies to cross-suite runs"),
        (["--suite", "chameleon", "--train-suite", "genimage", "--set", "train_suite.generators=sdv9"],
         "training suite genimage: unknown GenImage generator 'sdv9'"),
    ],
)  # fmt: skip
def test_cross_suite_mistakes_are_one_line(data: dict[str, Path], args: list[str], message: str) -> None:
    root = data["genimage"] if "genimage" == args[1] else data["chameleon"]
    result = invoke("run", "linear-probe", "--root", str(root), *args, *TINY)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
