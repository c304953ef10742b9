"""Cross-suite runs: train on one suite's protocol, evaluate on another (Chameleon from GenImage SD v1.4); the same
files are never evaluated as trained on, and copies of training images are recorded and flagged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke
from replicas import build_aigcdetect, build_chameleon, build_genimage

import detbench

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


# ------------------------------------------------------------------ the same files, and copies of training images


def sdv14_training_images(genimage: Path) -> list[Path]:
    """The files a run trained on GenImage sdv14 learns from (train split, both classes)."""
    return sorted(p for p in genimage.rglob("*") if p.is_file() and "train" in p.parts and "sdv" in str(p).lower())


def write_list(path: Path, root: Path, files: list[Path], generator: str = "copies") -> Path:
    labels = ["1" if "ai" in f.parts else "0" for f in files]
    rows = pd.DataFrame({"path": [f.relative_to(root).as_posix() for f in files], "label": labels,
                         "generator": generator, "split": "test"})
    rows.to_csv(path, index=False)
    return path


def cross_run(root: Path, genimage: Path, *extra: str):
    return invoke("run", "linear-probe", "--suite", "list", "--root", str(root), "--train-suite", "genimage",
                  "--train-protocol", "sdv14", "--train-root", str(genimage), *extra, *TINY)


@pytest.mark.parametrize("where", ["same-root", "nested-root"])
def test_a_cross_suite_run_on_the_training_files_is_refused(data: dict[str, Path], tmp_path: Path,
                                                            where: str) -> None:
    """Regression: evaluating GenImage's own training files as another suite ran, with a warning calling them copies
    "under other names", and run.json kept no trace."""
    genimage = data["genimage"]
    trained = sdv14_training_images(genimage)
    root = genimage if where == "same-root" else trained[0].parents[2]  # .../sdv14 holder: train/ai/x.png
    listed = write_list(tmp_path / "same.csv", root, trained[:4] + trained[-4:])
    result = cross_run(root, genimage, "--set", f"suite.file={listed}")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "would evaluate 8 of the images it trains on" in text and "Point --root and --train-root" in text, text
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not list(Path(os.environ["DETBENCH_HOME"]).glob("runs/list/*/*/run.json"))


def test_copies_of_training_images_are_recorded_and_flagged(data: dict[str, Path], tmp_path: Path) -> None:
    """Regression: byte-identical copies of the training images under another root were a console warning only."""
    import shutil

    genimage = data["genimage"]
    trained = sdv14_training_images(genimage)
    root = tmp_path / "copies"
    sources = trained[:2] + trained[-1:]  # two fakes and a real
    copies = [root / "copied" / f.relative_to(genimage) for f in sources]
    for source, copy in zip(sources, copies, strict=True):
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copy)
    fresh = root / "fresh" / "ai"  # other images, labelled fake by their folder's name
    fresh.mkdir(parents=True)
    others = sorted(p for p in data["chameleon"].rglob("*.png") if p.is_file() and p.stat().st_size)[:4]
    for i, source in enumerate(others):
        shutil.copyfile(source, fresh / f"{i}.png")
    write_list(root / "labels.csv", root, copies + sorted(fresh.iterdir()))
    result = cross_run(root, genimage, "--set", "suite.file=labels.csv")
    assert result.exit_code == 0, result.output
    assert "3 of the 7 evaluation images are byte-identical copies of training images" in " ".join(
        result.output.split())
    [record] = records("list")
    assert record["counts"]["copies_of_training"] == {"eval": 3, "by": "content id"}

    board = invoke("leaderboard", "list", "--csv", str(tmp_path / "board"), "--markdown", str(tmp_path / "b.md"))
    assert board.exit_code == 0 and "N train copies = N evaluation images are byte-identical" in " ".join(
        board.output.split())
    wide = pd.read_csv(tmp_path / "board" / "list_leaderboard.csv")
    assert wide["flags"].tolist() == ["3 train copies"]
    assert "| 3 train copies |" in (tmp_path / "b.md").read_text()
    assert detbench.runs("list")["flags"].tolist() == ["3 train copies"]
    report = invoke("report", record["run_id"][:12], "--out", str(tmp_path / "report"))
    assert report.exit_code == 0, report.output
    page = " ".join((tmp_path / "report" / "report.html").read_text().split())
    assert "3 evaluation images are byte-identical copies of training images" in page
    assert '<td class="text">3 train copies</td>' in page  # the leaderboard section's flag


def test_a_parquet_suite_whose_test_rows_copy_its_training_rows_records_them(tmp_path: Path) -> None:
    """Copies within one suite (another shard, the same bytes) are counted in the record and flagged."""
    from replicas import encode_image, write_hf_shard

    train = [{"image": encode_image("PNG" if label else "JPEG", seed=100 + i), "label": label, "generator": "g"}
             for i, label in enumerate((0, 1) * 4)]
    fresh = [{"image": encode_image("PNG" if label else "JPEG", seed=200 + i), "label": label, "generator": "g"}
             for i, label in enumerate((0, 1) * 2)]
    write_hf_shard(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet", train, class_names=None)
    write_hf_shard(tmp_path / "hub" / "data" / "test-00000-of-00001.parquet", train[:2] + fresh, class_names=None)
    result = invoke("run", "linear-probe", "--suite", "parquet", "--root", str(tmp_path / "hub"), "--protocol",
                    "train-on-g", "--set", "generator_column=generator", *TINY)
    assert result.exit_code == 0, result.output
    [record] = records("parquet")
    assert record["counts"]["copies_of_training"] == {"eval": 2, "by": "content id"}
    board = detbench.leaderboard("parquet")
    assert board["flags"].tolist() == ["2 train copies"]


def test_same_files_links_and_copies_across_roots(tmp_path: Path) -> None:
    """The check itself: one folder, nested roots and links are the same files; other files with the same bytes are
    copies; distinct content is neither."""
    from detbench.data.suites import Protocol
    from detbench.engine.protocol_checks import check_no_training_images_evaluated
    from detbench.errors import ProtocolError

    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a / "sub", b):
        folder.mkdir(parents=True)
    (a / "sub" / "x.png").write_bytes(b"x")
    (a / "sub" / "y.png").write_bytes(b"y")
    (b / "copy.png").write_bytes(b"x")
    (b / "link.png").symlink_to(a / "sub" / "x.png")
    protocol = Protocol(name="p", train_generators=("g",), train_split="train", eval_split="test")
    train = pd.DataFrame({"path": ["sub/x.png"], "image_id": ["id-x"]})
    empty = train.iloc[:0]

    def check(evaluation: pd.DataFrame, eval_root: Path) -> int:
        return check_no_training_images_evaluated(protocol, train, empty, evaluation, train_root=a,
                                                  eval_root=eval_root, cross_suite=True)

    assert check(pd.DataFrame({"path": ["copy.png", "other.png"], "image_id": ["id-x", "id-o"]}), b) == 1
    for evaluation, root in (
        (pd.DataFrame({"path": ["x.png"], "image_id": ["id-x"]}), a / "sub"),  # nested root, the same file
        (pd.DataFrame({"path": ["sub/x.png"], "image_id": [None]}), a),  # one root (fast ids: by path)
        (pd.DataFrame({"path": ["link.png"], "image_id": ["id-x"]}), b),  # a link to the training file
    ):
        with pytest.raises(ProtocolError, match="would evaluate 1 of the images it trains on"):
            check(evaluation, root)


def test_a_resized_reencoded_copy_of_a_training_image_in_another_suite_is_found(data: dict[str, Path],
                                                                                 tmp_path: Path) -> None:
    """A training image of GenImage, resized and re-encoded as JPEG (other bytes, the same picture) in the evaluated
    suite's data, is a near-duplicate: warned of, recorded with the pair and flagged; the other images are not."""
    import io
    import shutil

    from PIL import Image

    genimage = data["genimage"]
    source = sdv14_training_images(genimage)[0]
    root = tmp_path / "near"
    planted = root / "ai" / "planted.jpg"
    planted.parent.mkdir(parents=True)
    with Image.open(source) as image:
        resized = image.convert("RGB").resize((image.width * 3 // 2, image.height * 3 // 2), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    resized.save(buffer, "JPEG", quality=85)
    planted.write_bytes(buffer.getvalue())
    others = sorted(p for p in data["chameleon"].rglob("*.png") if p.is_file() and p.stat().st_size)[:4]
    for i, other in enumerate(others):
        shutil.copyfile(other, root / "ai" / f"{i}.png")
    write_list(root / "labels.csv", root, sorted((root / "ai").iterdir()))
    result = cross_run(root, genimage, "--set", "suite.file=labels.csv")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "1 of the 5 evaluation images are near-duplicates of training images (of the training suite)" in text, text
    [record] = records("list")
    near = record["counts"]["near_duplicates_of_training"]
    assert (near["eval"], near["train"], near["copies"]) == (1, 1, 0)
    assert near["examples"][0]["eval"] == "ai/planted.jpg"
    assert near["examples"][0]["train"] == source.relative_to(genimage).as_posix()
    assert record["counts"]["copies_of_training"]["eval"] == 0
    assert detbench.runs("list")["flags"].tolist() == ["1 near-dups (d<=4)"]
    report = invoke("report", record["run_id"][:12], "--out", str(tmp_path / "report"))
    assert report.exit_code == 0, report.output
    page = " ".join((tmp_path / "report" / "report.html").read_text().split())
    assert "1 evaluation images are near-duplicates of training images" in page and "ai/planted.jpg" in page
