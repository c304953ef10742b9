"""Untrusted files through the CLI: code-carrying checkpoints are refused before anything runs, weights
that do not match are loud, and paths from an index cannot leave the suite root."""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from replicas import build_folder, write_image
from typer.testing import CliRunner

import detbench.data.images
import detbench.engine.plan
import detbench.models.backbones.timm_adapter
from detbench.cli.commands import app
from detbench.data.index import load_index
from detbench.data.loading import ImageRowsDataset
from detbench.models.backbones import BUNDLED_SHA256, bundled_weights_path, load_backbone

TINY = "open_clip:detbench-tiny-vit"


class Payload:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    build_folder(root, generators=("a", "b"), splits=("train", "test"), n=4)
    return root


def run(root: Path, backbone: str, *extra: str):
    args = ["run", "linear-probe", "--suite", "folder", "--root", str(root), "--protocol", "train-on-a"]
    return CliRunner().invoke(app, [*args, "--set", f"backbone={backbone}", "--set", "crop=32", "-q", *extra])


def refused(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    for word in words:
        assert word in text, (word, text)
    return text


# ------------------------------------------------------------------------------------------ checkpoints


def _torch_zip(path: Path, marker: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hook": Payload(marker)}, path)


def _raw_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"w": Payload(marker)}, protocol=2))


def _torchscript(path: Path, marker: Path) -> None:
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
@pytest.mark.parametrize(
    ("write", "name", "words"),
    [
        (_torch_zip, "evil.pt", ["not a safe checkpoint", "a pickle is code"]),
        (_raw_pickle, "evil.bin", ["not a safe checkpoint"]),
        (_raw_pickle, "evil.safetensors", ["not a readable safetensors file"]),
        (_torchscript, "scripted.pt", ["TorchScript archive"]),
    ],
)
def test_code_carrying_checkpoints_are_refused_unrun(tree: Path, tmp_path: Path, write, name, words) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / name
    write(evil, marker)
    text = refused(run(tree, f"{TINY}@{evil}"), str(evil), *words)
    assert not marker.exists()
    assert "weights_only" not in text and "arbitrary code execution" not in text  # torch's way around is not quoted


def test_the_crafted_pickle_really_runs_code_when_unpickled(tmp_path: Path) -> None:
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    _torch_zip(evil, marker)
    torch.load(evil, weights_only=False)  # what loading it the unsafe way would do
    assert marker.read_text() == "pwned"


def test_a_checkpoint_for_another_architecture_is_refused(tree: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = dict(load_backbone(f"{TINY}@random").model.state_dict())
    state["conv1.weight"] = torch.zeros(8, 3, 4, 4)  # another patch size and width
    del state["ln_post.weight"]
    state["head.fc.weight"] = torch.zeros(2, 64)
    path = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    refused(
        run(tree, f"{TINY}@{path}"),
        "does not match the architecture",
        "1 missing keys: ln_post.weight",
        "1 unexpected keys: head.fc.weight",
        "conv1.weight: checkpoint (8, 3, 4, 4)",
    )


def test_corrupt_weights_show_both_hashes(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corrupt = tmp_path / "efficientnet-lite0.pth"
    shutil.copyfile(bundled_weights_path(), corrupt)
    with open(corrupt, "r+b") as fh:  # one flipped byte, as after a bad download or disk
        fh.seek(-100, 2)
        byte = fh.read(1)
        fh.seek(-100, 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    actual = hashlib.sha256(corrupt.read_bytes()).hexdigest()
    monkeypatch.setattr(detbench.models.backbones.timm_adapter, "bundled_weights_path", lambda: corrupt)
    refused(
        run(tree, "timm:efficientnet_lite0@bundled"), "sha256 mismatch", f"expected {BUNDLED_SHA256}", actual
    )


# ------------------------------------------------------------------------------------------ paths


def test_dataset_refuses_paths_that_leave_the_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    write_image(root / "inside.png", size=8)
    outside = write_image(tmp_path / "outside.png", size=8)
    opened: list[str] = []
    open_regular = detbench.data.images._open_regular
    monkeypatch.setattr(detbench.data.images, "_open_regular", lambda p: opened.append(str(p)) or open_regular(p))

    paths = ["../outside.png", str(outside), "inside.png", "sub/../../outside.png", ""]
    dataset = ImageRowsDataset(root, paths, lambda im: torch.zeros(1))
    results = [dataset[i] for i in range(len(paths))]
    assert [r[2] is None for r in results] == [False, False, True, False, False]
    assert all("escapes the suite root" in r[2] for r in results if r[2] is not None)
    assert opened == [str(root / "inside.png")]


def test_a_hand_edited_index_cannot_make_a_run_read_outside_the_root(
    tree: Path, tmp_path: Path, detbench_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CliRunner().invoke(app, ["index", "folder", "--root", str(tree)]).exit_code == 0
    (directory,) = [p.parent for p in detbench_home.glob("indexes/folder/*/index.parquet")]
    rows = pd.read_parquet(directory / "index.parquet")
    outside = write_image(tmp_path / "outside.png", size=17)
    injected = rows[(rows["generator"] == "b") & (rows["split"] == "test")].head(3).copy()
    injected["path"] = ["../../etc/passwd", "../outside.png", str(outside)]
    injected["image_id"] = [f"{i:032x}" for i in range(3)]  # ids nothing in the cache holds
    pd.concat([rows, injected], ignore_index=True).to_parquet(directory / "index.parquet", index=False)

    opened: list[str] = []
    open_regular = detbench.data.images._open_regular
    monkeypatch.setattr(detbench.data.images, "_open_regular", lambda p: opened.append(str(p)) or open_regular(p))

    # a normal run re-indexes the tree: rows for files its scan did not find are dropped
    normal = run(tree, "timm:efficientnet_lite0@bundled")
    assert normal.exit_code == 0, normal.output
    assert not set(injected["path"]) & set(pd.read_parquet(directory / "index.parquet")["path"])

    # a run handed the tampered index as is: the rows are skipped as invalid and nothing outside is read
    tampered = load_index(directory)
    tampered.rows = pd.concat([tampered.rows, injected], ignore_index=True)
    monkeypatch.setattr(detbench.engine.plan, "build_index", lambda *args, **kwargs: tampered)
    trusting = run(tree, "timm:efficientnet_lite0@bundled", "--force")
    assert trusting.exit_code == 0, trusting.output
    (run_json,) = [p for p in detbench_home.glob("runs/folder/linear-probe/*/run.json")]
    scores = pd.read_parquet(run_json.parent / "scores.parquet").set_index("path")
    for path in injected["path"]:
        assert np.isnan(scores.loc[path, "score"])
        assert (
            scores.loc[path, "status"].startswith("invalid: path")
            and "escapes the suite root" in scores.loc[path, "status"]
        )
    assert "3 invalid" in " ".join(trusting.output.split())
    assert all(Path(p).resolve().is_relative_to(tree.resolve()) for p in opened), opened
