"""UnivFD: the released head through the CLI on a GenImage replica (tiny ViT), fail-fast without weights,
a trained head on the demo suite, and feature-cache sharing with linear-probe."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import invoke
from equivalence import assert_matches_reference, double_state
from PIL import Image
from replicas import build_genimage, build_ufd

from detbench.data.preprocess import Preprocess
from detbench.detectors.univfd import load_head
from detbench.detectors.univfd_train import TrainView
from detbench.models.backbones import load_backbone
from detbench.models.weights import WeightsError
from detbench.registry import DETECTORS

TINY = "detbench-tiny-vit"
DEMO = ["--suite", "demo", "--set", "n_train=24", "--set", "n_val=12", "--set", "size=64", "-q"]


def run_records(home: Path, suite: str, detector: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((home / "runs" / suite / detector).glob("*/run.json"))]


def feature_files(home: Path) -> set[str]:
    return {p.relative_to(home).as_posix() for p in (home / "features").rglob("*.npy")}


@pytest.fixture(scope="module")
def tiny_spec(tiny_vit_file: Path) -> str:
    """The tiny CLIP visual tower (64-d projected embedding) with seeded random weights."""
    return f"open_clip:{TINY}@{tiny_vit_file}"


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_genimage(tmp_path_factory.mktemp("genimage"), n=3).root


def write_head(path: Path, dim: int = 64, seed: int = 0, prefix: str = "") -> Path:
    g = torch.Generator().manual_seed(seed)
    torch.save({f"{prefix}weight": torch.randn(1, dim, generator=g), f"{prefix}bias": torch.tensor([0.1])}, path)
    return path


# ---------------------------------------------------------------------------------------------- (a) released head


def test_released_head_end_to_end(replica: Path, tiny_spec: str, tmp_path: Path, detbench_home: Path) -> None:
    head = write_head(tmp_path / "fc_weights.pth")
    args = ["run", "univfd", "--suite", "genimage", "--root", str(replica), "--set", f"backbone={tiny_spec}", "-q"]
    result = invoke(*args, "--set", f"head={head}")
    assert result.exit_code == 0, result.output
    [record] = run_records(detbench_home, "genimage", "univfd")
    sha = hashlib.sha256(head.read_bytes()).hexdigest()
    assert record["fit"]["head"] == "released" and record["fit"]["trained"] is False
    assert record["fit"]["head_sha256"] == sha == record["key"]["detector_identity"]["head_sha256"]
    assert record["fit"]["padded"]["heldout"] == 2  # replica images are far below 224 px: all padded

    scores = pd.read_parquet(Path(record["paths"]["run"]) / "scores.parquet")
    assert scores["generator"].nunique() == 8
    ok = scores[scores["status"] == "ok"]
    assert len(scores) == 8 * 6 + 3 and len(ok) == 8 * 6 + 1  # + the replica's 16-bit PNG (ok) and 2 broken files
    assert ok["score"].between(0, 1).all() and ok["score"].std() > 1e-4
    assert scores.loc[scores["status"] != "ok", "score"].isna().all()

    # the score is sigmoid(w . raw projected embedding + b) of the centre-cropped (padded) image
    weights = torch.load(head, weights_only=True)
    backbone = load_backbone(tiny_spec)
    rows = ok.iloc[[0, 17, 33]]
    transform = backbone.preprocess.eval_transform()
    x = torch.stack([transform(Image.open(replica / p).convert("RGB")) for p in rows["path"]])
    with torch.inference_mode():
        ref32 = torch.sigmoid(backbone.embed(x, "proj") @ weights["weight"][0] + weights["bias"][0]).numpy()
        backbone.model.double()  # the same weights and float32 input in float64
        w64 = double_state(weights)
        expected = torch.sigmoid(backbone.embed(x.double(), "proj") @ w64["weight"][0] + w64["bias"][0]).numpy()
    assert np.ptp(expected) > 1e-3  # the three images score apart
    # float32 scores vs the float64 reference within 4x the float32 rounding error this reference shows
    # (err32 = max |ref32 - ref64|) + 4 eps32: see tests/equivalence.py; a wrong crop or embedding is >> this bound
    assert_matches_reference(rows["score"], ref32, expected)

    write_head(head, seed=1)  # another file under the same path: a new run, not a reuse
    assert invoke(*args, "--set", f"head={head}").exit_code == 0
    assert len(run_records(detbench_home, "genimage", "univfd")) == 2


def test_wrong_head_shape_fails_clearly(replica: Path, tiny_spec: str, tmp_path: Path) -> None:
    head = write_head(tmp_path / "fc_weights.pth", dim=32)
    result = invoke("run", "univfd", "--suite", "genimage", "--root", str(replica),
                    "--set", f"backbone={tiny_spec}", "--set", f"head={head}", "-q")
    assert result.exit_code == 2, result.output
    assert "expected weight [1, 64]" in result.output and "[1, 32]" in result.output
    assert "Traceback" not in result.output


def test_head_file_forms(tmp_path: Path) -> None:
    full = tmp_path / "model_epoch_best.pth"
    g = torch.Generator().manual_seed(0)
    torch.save({"model": {"fc.weight": torch.ones(1, 8), "fc.bias": torch.tensor([-0.5]),
                          "model.visual.proj": torch.randn(4, 8, generator=g)}}, full)
    weight, bias, info, ignored = load_head(str(full), 8, "8-d features")
    assert weight.shape == (8,) and weight.sum() == 8 and bias == -0.5 and info["ignored_keys"] == 1
    assert list(ignored) == ["model.visual.proj"]
    torch.save({"fc.w": torch.ones(1, 8), "fc.x": torch.ones(1)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="found fc.w, fc.x"):
        load_head(str(tmp_path / "bad.pth"), 8, "8-d features")
    with pytest.raises(WeightsError, match="file not found"):
        load_head(str(tmp_path / "missing.pth"), 8, "8-d features")


# ---------------------------------------------------------------------------------------------- (b) fail fast


@pytest.mark.parametrize("detector", ["univfd", "linear-probe", "mpft"])
def test_missing_default_backbone_fails_at_once(
    detector: str, replica: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_hf_cache"))
    result = invoke("run", detector, "--suite", "genimage", "--root", str(replica), "-q")
    assert result.exit_code == 2, result.output
    assert "ViT-L-14" in result.output and "offline" in result.output
    assert "local-dir:DIR" in result.output and "@/path/to/" in result.output
    assert "Traceback" not in result.output


def test_missing_backbone_fails_before_indexing(
    replica: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, detbench_home: Path
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_hf_cache"))
    assert invoke("run", "univfd", "--suite", "genimage", "--root", str(replica), "-q").exit_code == 2
    assert not any((detbench_home / "indexes").rglob("*.parquet"))


# ---------------------------------------------------------------------------------------------- (c) trained head


def test_trained_head_on_demo_beats_chance_and_is_seeded(detbench_home: Path) -> None:
    args = ["run", "univfd", *DEMO, "--protocol", "upconv", "--set", "lr=1e-3", "--set", "train_batch_size=16"]
    result = invoke(*args)  # the original lr with batch 256 barely moves on 42 images: scaled for this size
    assert result.exit_code == 0, result.output
    [record] = run_records(detbench_home, "demo", "univfd")
    fit = record["fit"]
    assert fit["trained"] is True and fit["n_views"] == 3 and fit["n_train_images"] == 2 * 24 - 2 * 2
    assert 1 <= fit["best_epoch"] <= fit["epochs_run"] == len(fit["history"])
    metrics = pd.read_parquet(Path(record["paths"]["run"]) / "metrics.parquet").set_index("generator")
    assert metrics.loc["upconv", "acc"] >= 0.75 and metrics.loc["upconv", "auc"] >= 0.85
    assert len(list((detbench_home / "features").glob("*/key.json"))) == 3  # clean view + 2 augmented views

    scores = pd.read_parquet(Path(record["paths"]["run"]) / "scores.parquet")
    assert invoke(*args, "--force").exit_code == 0
    again = pd.read_parquet(Path(record["paths"]["run"]) / "scores.parquet")
    np.testing.assert_array_equal(scores["score"].to_numpy(), again["score"].to_numpy())


def test_train_views_are_seeded_per_image_and_follow_the_original_ranges() -> None:
    pp = Preprocess(crop=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    view = TrainView(view=0, seed=0, preprocess=pp, blur_prob=0.5, blur_sigma_max=3.0, jpeg_prob=0.5,
                     jpeg_quality=(30, 100), crop_flip=True)
    assert json.loads(json.dumps(view.identity())) == view.identity()  # the cache compares keys read back
    draws = [view.draws(f"id{i}") for i in range(400)]
    assert draws[:5] == [view.draws(f"id{i}") for i in range(5)]
    assert draws[:5] != [dataclasses.replace(view, view=1).draws(f"id{i}") for i in range(5)]
    sigmas = [d["sigma"] for d in draws if d["sigma"] is not None]
    qualities = [d["quality"] for d in draws if d["quality"] is not None]
    assert 0.4 < len(sigmas) / 400 < 0.6 and 0.4 < len(qualities) / 400 < 0.6
    assert 0 <= min(sigmas) and max(sigmas) <= 3 and 30 <= min(qualities) and max(qualities) <= 100
    assert all(isinstance(q, int) for q in qualities)

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    out = view(img, "id7")
    assert out.size == (32, 32) and np.array_equal(np.asarray(out), np.asarray(view(img, "id7")))
    shorter = dataclasses.replace(view, preprocess=dataclasses.replace(pp, resize="shorter"))
    assert shorter(Image.fromarray(np.zeros((16, 24, 3), dtype=np.uint8)), "x").size == (32, 32)
    assert view(Image.fromarray(np.zeros((16, 24, 3), dtype=np.uint8)), "x").size == (24, 16)  # padded later


# ---------------------------------------------------------------------------------------------- (d) cache sharing


def test_features_are_shared_with_linear_probe(replica: Path, tiny_spec: str, tmp_path: Path,
                                               detbench_home: Path) -> None:
    base = ["--suite", "genimage", "--root", str(replica), "--set", f"backbone={tiny_spec}", "-q"]
    assert invoke("run", "linear-probe", *base).exit_code == 0
    after_probe = feature_files(detbench_home)
    assert after_probe

    head = write_head(tmp_path / "fc_weights.pth")
    result = invoke("run", "univfd", *base, "--set", f"head={head}")
    assert result.exit_code == 0, result.output
    assert feature_files(detbench_home) == after_probe  # nothing computed: every feature came from the cache

    assert invoke("run", "univfd", *base, "--set", "aug_views=1").exit_code == 0
    new = feature_files(detbench_home) - after_probe
    assert new and {Path(p).parent for p in new} & {Path(p).parent for p in after_probe} == set()
    assert len({Path(p).parent for p in new}) == 1  # only the augmented view's cache entry is new


# ---------------------------------------------------------------------------------------------- (d) protocol eval


def test_released_head_runs_the_preset_on_a_test_only_ufd_root(
    tiny_spec: str, tmp_path: Path, detbench_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The UnivFD preset with a released-format head on a root holding only the test domains and
    diffusion_datasets: nothing to train, so no training rows are needed (protocol eval)."""
    from detbench.results import presets

    root = build_ufd(tmp_path / "ufd", train_classes=(), n=2, defects=False).root
    head = write_head(tmp_path / "fc_weights.pth")
    small = {k: dataclasses.replace(v, min_images_per_generator=2) for k, v in presets.load_presets().items()}
    monkeypatch.setattr(presets, "load_presets", lambda: small)
    result = invoke("run", "--preset", "univfd.paper-ufd", "--root", str(root), "--allow-cpu", "-q",
                    "--set", f"head={head}", "--set", f"backbone={tiny_spec}")
    assert result.exit_code == 0, result.output
    (record,) = run_records(detbench_home, "universalfakedetect", "univfd")
    assert record["protocol"] == "eval" and record["counts"]["train"]["used"] == 0
    assert record["fit"]["head"] == "released" and record["counts"]["heldout"] == 0
    assert len(record["counts"]["eval"]) == 19
    assert record["preset"]["departures"] == ["backbone"]


def test_protocol_eval_refuses_a_detector_that_needs_training(tiny_spec: str, replica: Path) -> None:
    result = invoke("run", "univfd", "--suite", "genimage", "--root", str(replica), "--protocol", "eval",
                    "--set", f"backbone={tiny_spec}", "-q")
    assert result.exit_code == 2
    assert "trains nothing, but this detector needs training" in result.output


def test_a_released_head_ignores_the_training_split_of_a_training_protocol(
    tiny_spec: str, replica: Path, tmp_path: Path, detbench_home: Path
) -> None:
    head = write_head(tmp_path / "fc_weights.pth")
    base = ["run", "univfd", "--suite", "genimage", "--root", str(replica), "--set", f"backbone={tiny_spec}",
            "--set", f"head={head}", "-q"]
    assert invoke(*base, "--protocol", "eval").exit_code == 0
    assert invoke(*base).exit_code == 0  # sdv14: the same evaluation rows, the same scores
    runs = {r["protocol"]: r for r in run_records(detbench_home, "genimage", "univfd")}
    scores = {p: pd.read_parquet(Path(r["paths"]["run"]) / "scores.parquet") for p, r in runs.items()}
    pd.testing.assert_frame_equal(scores["eval"], scores["sdv14"])


def test_every_suite_has_the_eval_protocol() -> None:
    from detbench.data.suites import EVAL_CONVENTIONS
    from detbench.registry import SUITES

    for name in SUITES.names():
        suite = SUITES.get(name)()
        protocols = suite.all_protocols([])
        assert protocols["eval"].train_generators == () and not protocols["eval"].trains
        assert suite.eval_convention is None or suite.eval_convention in EVAL_CONVENTIONS


def test_precision_is_part_of_the_identity_and_the_feature_cache_key(
    tiny_spec: str, replica: Path, tmp_path: Path, detbench_home: Path
) -> None:
    head = write_head(tmp_path / "fc_weights.pth")
    base = ["run", "univfd", "--suite", "genimage", "--root", str(replica), "--protocol", "eval",
            "--set", f"backbone={tiny_spec}", "--set", f"head={head}", "-q"]
    assert invoke(*base).exit_code == 0  # auto: fp32 on CPU
    cached = feature_files(detbench_home)
    assert invoke(*base, "--set", "precision=fp32").exit_code == 0  # the same resolved precision: same features
    assert feature_files(detbench_home) == cached
    assert invoke(*base, "--set", "precision=bf16").exit_code == 0
    assert len(feature_files(detbench_home)) == 2 * len(cached)  # re-extracted under its own key
    records = run_records(detbench_home, "genimage", "univfd")
    by_precision = {r["key"]["detector_identity"]["precision"]: r for r in records}
    assert sorted(by_precision) == ["bf16", "fp32"] and len({r["run_id"] for r in records}) == 3
    scores = {p: pd.read_parquet(Path(r["paths"]["run"]) / "scores.parquet")["score"].to_numpy()
              for p, r in by_precision.items()}
    assert not np.array_equal(scores["fp32"], scores["bf16"])
    np.testing.assert_allclose(scores["fp32"], scores["bf16"], atol=0.05)
    assert invoke(*base, "--set", "precision=fp64").exit_code == 2


def test_the_original_sample_sizes_are_expressible(tiny_spec: str, tmp_path: Path, detbench_home: Path) -> None:
    """validate.py's rule: N real + N fake per domain, a smaller equal count where either class is short."""
    root = build_ufd(tmp_path / "ufd", train_classes=(), n=2, pool=3, defects=False).root
    head = write_head(tmp_path / "fc_weights.pth")
    args = ["run", "univfd", "--suite", "ufd", "--root", str(root), "--protocol", "eval", "-q",
            "--set", f"backbone={tiny_spec}", "--set", f"head={head}",
            "--set", "eval_per_class=4", "--set", "eval_per_class_fallback=1"]
    assert invoke(*args).exit_code == 0
    (record,) = run_records(detbench_home, "universalfakedetect", "univfd")
    full = {"progan", "stylegan", "cyclegan"}  # 4 or more of each class in the replica
    for generator, counts in record["counts"]["eval"].items():
        n = 4 if generator in full else 1
        assert (counts["real"], counts["fake"]) == (n, n), generator
        assert record["eval_sample"]["generators"][generator]["per_class"] == n
    assert record["eval_sample"]["generators"]["stylegan"] == {"available_real": 6, "available_fake": 6,
                                                               "per_class": 4}
    assert invoke(*args).exit_code == 0 and len(run_records(detbench_home, "universalfakedetect", "univfd")) == 1
    assert invoke(*args, "--set", "cap_seed=1").exit_code == 0  # another draw is another run
    second = [r for r in run_records(detbench_home, "universalfakedetect", "univfd") if r["run_id"] != record["run_id"]]
    assert len(second) == 1 and second[0]["key"]["suite"]["options"]["cap_seed"] == 1


def test_preset_tolerance_widens_to_the_sampling_error() -> None:
    from detbench.results.presets import row_tolerance

    assert row_tolerance(3.0, 50.0, 200) == pytest.approx(2 * 100 * (0.25 / 200) ** 0.5)  # 7.07 points
    assert row_tolerance(3.0, 100.0, 200) == 3.0 and row_tolerance(3.0, 80.0, 2000) == 3.0
    assert row_tolerance(3.0, None, 200) == 3.0 and row_tolerance(3.0, 50.0, float("nan")) == 3.0


def test_the_head_and_its_sigmoid_run_in_float32_as_validate_py() -> None:
    """validate.py scores ``model(x).sigmoid()``: the fc layer and the sigmoid on float32 tensors, so logits above
    about 16.6 all give exactly 1.0 and tie in AP; ``sigmoid_dtype=float64`` (a recorded departure) ranks them."""
    cls = DETECTORS.get("univfd")
    rng = np.random.default_rng(1)  # two logits above 30, two below 0
    feats = rng.normal(size=(6, 8)).astype(np.float32)
    weight = rng.normal(size=8).astype(np.float32) * 20
    bias = 1.5
    fc = torch.nn.Linear(8, 1)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(weight)[None])
        fc.bias.fill_(bias)
        theirs = fc(torch.from_numpy(feats)).sigmoid().flatten().double().numpy()
    scores = {}
    for dtype in ("float32", "float64"):
        detector = cls(cls.Config(head="fc_weights.pth", sigmoid_dtype=dtype))
        detector.weight, detector.bias = weight.astype(np.float64), float(bias)
        scores[dtype] = detector.decision(feats)
    np.testing.assert_allclose(scores["float32"], theirs, rtol=0, atol=1e-7)
    saturated = theirs == 1.0
    assert saturated.sum() >= 2 and (scores["float32"][saturated] == 1.0).all()
    assert (scores["float64"][saturated] < 1.0).all()


# ---------------------------------------------------------------------------------------------- hostile heads


@pytest.mark.parametrize("dtype", [torch.int64, torch.complex64, torch.bool])
def test_a_head_that_is_not_floating_point_is_refused(dtype: torch.dtype, tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    torch.save({"weight": (torch.randn(1, 8, generator=g) * 5).to(dtype), "bias": torch.tensor([1]).to(dtype)},
               tmp_path / "fc_weights.pth")
    with pytest.raises(WeightsError, match="not floating point") as err:
        load_head(str(tmp_path / "fc_weights.pth"), 8, "8-d features")
    name = str(dtype).removeprefix("torch.")
    assert f"weight: {name}" in str(err.value) and f"bias: {name}" in str(err.value)
    torch.save({"weight": torch.ones(1, 8, dtype=torch.float16), "bias": torch.ones(1, dtype=torch.bfloat16)},
               tmp_path / "half.pth")
    assert load_head(str(tmp_path / "half.pth"), 8, "8-d features")[1] == 1.0  # fp16/bf16 are fine


def whole_checkpoint(path: Path, visual: dict[str, torch.Tensor], dim: int = 64) -> Path:
    """A whole UnivFD checkpoint as the original's training saves it: ``model.visual.*`` (the frozen CLIP), text
    tower keys, and ``fc.*``."""
    g = torch.Generator().manual_seed(3)
    state = {f"model.visual.{k}": v.clone() for k, v in visual.items()}
    state["model.transformer.resblocks.0.attn.in_proj_weight"] = torch.randn(12, 4, generator=g)  # text tower
    state["model.logit_scale"] = torch.tensor(4.6)
    state["fc.weight"], state["fc.bias"] = torch.randn(1, dim, generator=g), torch.tensor([0.2])
    torch.save({"model": state}, path)
    return path


def test_a_whole_checkpoint_counts_what_it_ignores_and_refuses_another_backbone(
    replica: Path, tiny_spec: str, tmp_path: Path, detbench_home: Path
) -> None:
    visual = {k: v for k, v in load_backbone(tiny_spec).model.state_dict().items()}
    same = whole_checkpoint(tmp_path / "model_epoch_best.pth", visual)
    base = ["run", "univfd", "--suite", "genimage", "--root", str(replica), "--protocol", "eval",
            "--set", f"backbone={tiny_spec}", "-q"]
    result = invoke(*base, "--set", f"head={same}")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    n = len(visual) + 2
    assert f"{n} other tensors are ignored ({len(visual)} of them the backbone's tensors, equal to" in text
    [record] = run_records(detbench_home, "genimage", "univfd")
    assert record["fit"]["head_ignored_tensors"] == n
    assert record["fit"]["head_ignored_backbone_tensors_equal"] == len(visual)

    half = whole_checkpoint(tmp_path / "half.pth", {k: v.half() for k, v in visual.items()})  # the same, in fp16
    assert invoke(*base, "--set", f"head={half}").exit_code == 0

    other = dict(visual)
    other["proj"] = other["proj"] + 0.5  # another backbone's projection: the head was trained on other features
    other["conv1.weight"] = torch.zeros_like(other["conv1.weight"])
    result = invoke(*base, "--set", f"head={whole_checkpoint(tmp_path / 'other.pth', other)}")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"2 of its {len(visual)} backbone tensors (under 'model.visual') differ" in text
    assert "conv1.weight" in text and "proj" in text and "Traceback" not in text


def test_paths_of_heads_and_backbone_files_are_not_part_of_the_run_id(
    replica: Path, tiny_spec: str, tiny_vit_file: Path, tmp_path: Path, detbench_home: Path
) -> None:
    """The README: no path is part of a run id; the same bytes elsewhere are the same run (as score files)."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    head, moved = write_head(tmp_path / "a" / "fc_weights.pth"), tmp_path / "b" / "head.pth"
    shutil.copyfile(head, moved)
    backbone = tmp_path / "b" / "tiny.safetensors"
    shutil.copyfile(tiny_vit_file, backbone)
    sha = hashlib.sha256(head.read_bytes()).hexdigest()
    base = ["run", "univfd", "--suite", "genimage", "--root", str(replica), "--protocol", "eval", "-q"]
    assert invoke(*base, "--set", f"backbone={tiny_spec}", "--set", f"head={head}").exit_code == 0
    result = invoke(*base, "--set", f"backbone=open_clip:{TINY}@{backbone}", "--set", f"head={moved}#sha256={sha}")
    assert result.exit_code == 0, result.output
    [record] = run_records(detbench_home, "genimage", "univfd")  # reused: the same run
    key = json.dumps(record["key"])
    assert str(tmp_path) not in key and str(tiny_vit_file.parent) not in key
    assert record["key"]["detector"]["config"]["head"] == "file"
    assert record["key"]["detector"]["config"]["backbone"] == f"open_clip:{TINY}@file"
    assert record["key"]["detector_identity"]["head_sha256"] == sha
    assert record["config"]["head"] == str(head)  # the record still says which file the run read

    write_head(moved, seed=4)  # other bytes: another run
    assert invoke(*base, "--set", f"backbone={tiny_spec}", "--set", f"head={moved}").exit_code == 0
    assert len(run_records(detbench_home, "genimage", "univfd")) == 2


def test_the_released_backbone_check_uses_the_resolved_tag(
    tiny_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenAI's ViT-L/14 passed as FILE#tag=openai is the released head's backbone: no warning (the check compared
    the source string, a path, with 'openai'); the same file under another tag is warned about."""
    from rich.console import Console

    import detbench.models.backbones
    from detbench.errors import DetbenchWarning
    from detbench.kit.detector import RunContext
    from detbench.models.features import FeatureCache
    from detbench.progress import Phases

    head = write_head(tmp_path / "fc_weights.pth")
    real_load = detbench.models.backbones.load_backbone

    def as_vit_l14_file(tag: str):
        def load(spec: str, **kwargs):  # the tiny tower dressed as OpenAI's ViT-L/14 read from a file
            bb = real_load(tiny_spec, **kwargs)
            bb.arch, bb.source = "ViT-L-14", "/weights/open_clip_pytorch_model.bin"
            bb.spec = f"open_clip:ViT-L-14@{bb.source}"
            bb.model_cfg = {**bb.model_cfg, "tag": tag}
            return bb
        return load

    def said(tag: str) -> str:  # everything the setup printed or warned
        monkeypatch.setattr(detbench.models.backbones, "load_backbone", as_vit_l14_file(tag))
        console = Console(record=True, width=200)
        ctx = RunContext(suite_root=tmp_path, suite_name="x", device="cpu", seed=0, run_dir=tmp_path,
                         phases=Phases(console), feature_cache=FeatureCache())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DetbenchWarning)
            cls(cls.Config(backbone="x", head=str(head))).setup(ctx)
        return console.export_text() + " ".join(str(w.message) for w in caught)

    cls = DETECTORS.get("univfd")
    assert "trained on" not in said("openai")
    other = said("laion2b_s32b_b82k")
    assert "trained on open_clip:ViT-L-14@openai features, not open_clip:ViT-L-14@/weights/" in other


@pytest.mark.slow  # an OpenAI-layout CLIP (text tower included) built and saved twice: ~40 s on 2 cores
def test_the_bench_original_loop_scores_as_the_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``detbench bench --vs-originals``'s UnivFD loop (detbench.perf.originals.univfd) is the original: on
    generated images and an OpenAI-layout CLIP (RN50, the smaller architecture validate.py's ``get_model`` accepts)
    it gives the reference score, sigmoid(w . projected embedding + b) of the centre-cropped (padded) image."""
    from detbench.perf.inputs import write_test_set
    from detbench.perf.originals import univfd as original

    monkeypatch.setattr(original, "WORKERS", 0)  # the loader's workers change no score
    paths = write_test_set(tmp_path / "set", 6)
    ckpt = original.write_checkpoint(tmp_path, tmp_path / "set", arch="RN50")
    scores = original.score(original.load(ckpt.files), tmp_path / "set")
    assert sorted(scores) == sorted(paths)

    weights = torch.load(ckpt.files["head"], weights_only=True)
    backbone = load_backbone(f"open_clip:RN50@{ckpt.files['clip']}#tag=openai")
    transform = dataclasses.replace(backbone.preprocess, pad="black").eval_transform()  # CenterCrop's padding
    x = torch.stack([transform(Image.open(tmp_path / "set" / p).convert("RGB")) for p in paths])
    with torch.inference_mode():
        ref32 = torch.sigmoid(backbone.embed(x, "proj") @ weights["weight"][0] + weights["bias"][0]).numpy()
        backbone.model.double()
        w64 = double_state(weights)
        ref64 = torch.sigmoid(backbone.embed(x.double(), "proj") @ w64["weight"][0] + w64["bias"][0]).numpy()
    assert np.ptp(ref64) > 0.05  # the rescaled head spreads the scores
    assert_matches_reference([scores[p] for p in paths], ref32, ref64)
