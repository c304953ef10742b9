"""CNNSpot: a checkpoint in the original's format scores through the CLI exactly as CNNDetection's eval.py would.

The reference (written here from the original's published semantics, not imported): ``eval.py`` builds
``resnet50(num_classes=1)``, loads ``torch.load(path)['model']`` strictly, and scores
``sigmoid(model(x))`` where ``x`` = PIL RGB -> (no resize) -> ``CenterCrop(224)`` (torchvision pads smaller
images with black: left/top get the floor of half the gap) -> ToTensor -> ImageNet Normalize; the README's
no-crop variant skips the crop (batch 1).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import invoke
from equivalence import assert_matches_reference, double_state
from PIL import Image
from resnet_reference import (
    calibrate_head,
    head_logits,
    random_resnet_state,
    resnet_features,
    to_normalised_tensor,
)

from detbench.registry import DETECTORS

# (generator, label folder, name, width, height): tiny, odd, non-square, one wider than the 224 crop
IMAGES = [
    ("progan", "0_real", "a.png", 48, 40),
    ("progan", "0_real", "b.jpg", 41, 57),
    ("progan", "1_fake", "c.png", 64, 64),
    ("progan", "1_fake", "d.png", 231, 45),
    ("biggan", "0_real", "e.png", 53, 53),
    ("biggan", "1_fake", "f.png", 70, 47),
]


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(11)
    for gen, label, name, w, h in IMAGES:
        path = root / gen / label / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ramp = np.linspace(0, 200, w)[None, :, None] + np.linspace(0, 55, h)[:, None, None]
        pixels = np.clip(ramp + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=90)
    return root


def make_state(image_root: Path, crop: int) -> tuple[OrderedDict, dict[str, float], dict[str, float]]:
    """Random weights in the original's layout, the head scaled so that these images' logits spread, and the
    reference score of every image (the original's eval.py semantics, batch 1): in float32 (the original's
    precision) and in float64 (the same weights and input cast to double)."""
    sd = random_resnet_state(stem_kernel=7, stages=4, head="fc", head_scale=1.0, seed=7)
    paths = [f"{gen}/{label}/{name}" for gen, label, name, _w, _h in IMAGES]
    feats = features(image_root, paths, sd, crop)
    calibrate_head(sd, feats, "fc")
    ref32 = torch.sigmoid(head_logits(feats, sd, "fc")).double().numpy()
    sd64 = double_state(sd)
    ref64 = torch.sigmoid(head_logits(features(image_root, paths, sd64, crop, torch.float64), sd64, "fc")).numpy()
    return sd, dict(zip(paths, ref32, strict=True)), dict(zip(paths, ref64, strict=True))


@pytest.fixture(scope="module")
def reference(image_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """``crop -> (checkpoint, ref32, ref64)``: ``make_state(image_root, crop)`` saved in the original's format, each
    crop computed and written once per module. Shared and read-only: a test links the file into its own folder and
    never changes the checkpoint or the reference scores."""
    root = tmp_path_factory.mktemp("cnnspot_reference")

    @functools.cache
    def made(crop: int) -> tuple[Path, dict[str, float], dict[str, float]]:
        state, ref32, ref64 = make_state(image_root, crop)
        return save_original_format(state, root / f"crop{crop}.pth"), ref32, ref64

    return made


def own_copy(shared: Path, path: Path) -> Path:
    """A test's own name for a shared read-only checkpoint (a hard link: no bytes copied)."""
    os.link(shared, path)
    return path


@pytest.fixture(scope="module")
def state() -> OrderedDict:
    return random_resnet_state(stem_kernel=7, stages=4, head="fc", head_scale=1.0, seed=7)


def save_original_format(sd: OrderedDict, path: Path) -> Path:
    """``networks/base_model.py`` ``save_networks``: ``{'model', 'optimizer', 'total_steps'}``."""
    names = list(sd)[:2]
    optimizer = {
        "state": {i: {"step": torch.tensor(100.0), "exp_avg": torch.zeros_like(sd[n]),
                      "exp_avg_sq": torch.zeros_like(sd[n])} for i, n in enumerate(names)},
        "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "amsgrad": False,
                          "params": list(range(len(names)))}],
    }
    torch.save({"model": sd, "optimizer": optimizer, "total_steps": 123456}, path)
    return path


def center_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    """torchvision ``CenterCrop(size)`` on an image: pad with black to at least ``size`` (left/top get the floor
    of half the gap), then take the window at ``int(round((H - size) / 2))``, ``int(round((W - size) / 2))``."""
    h, w = pixels.shape[:2]
    pad_h, pad_w = max(0, size - h), max(0, size - w)
    pixels = np.pad(pixels, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
    h, w = pixels.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return pixels[top:top + size, left:left + size]


def features(root: Path, paths: list[str], sd: dict, crop: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The original's evaluation input (float32), image by image (batch 1), through the reference ResNet-50 in
    ``dtype``."""
    out = []
    for rel in paths:
        pixels = np.asarray(Image.open(root / rel).convert("RGB"))
        if crop:
            pixels = center_crop(pixels, crop)
        with torch.no_grad():
            out.append(resnet_features(to_normalised_tensor(pixels)[None].to(dtype), sd, stem_kernel=7, stages=4))
    return torch.cat(out)


def run_scores(root: Path, home: Path, *sets: str) -> tuple[pd.DataFrame, dict]:
    args = ["run", "cnnspot", "--suite", "folder", "--root", str(root), "--protocol", "eval", "-q"]
    for item in sets:
        args += ["--set", item]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    [record] = [json.loads(p.read_text()) for p in (home / "runs" / "folder" / "cnnspot").glob("*/run.json")]
    return pd.read_parquet(Path(record["paths"]["run"]) / "scores.parquet"), record


@pytest.mark.parametrize("crop", [224, 0], ids=["center-crop-224", "no-crop"])
def test_released_checkpoint_scores_as_the_original_eval(crop: int, image_root: Path, reference, tmp_path: Path,
                                                         detbench_home: Path) -> None:
    shared, ref32, ref64 = reference(crop)
    ckpt = own_copy(shared, tmp_path / "blur_jpg_prob0.5.pth")
    sets = [f"weights={ckpt}"] + ([] if crop == 224 else ["eval_crop=0"])
    scores, record = run_scores(image_root, detbench_home, *sets)
    assert len(scores) == len(IMAGES) and (scores["status"] == "ok").all()
    expected = scores["path"].map(ref64).to_numpy()
    assert 0.05 < expected.std() and ((expected > 0.02) & (expected < 0.98)).sum() >= 3  # not saturated
    # float32 scores vs the float64 reference within 4x the float32 rounding error this reference shows
    # (err32 = max |ref32 - ref64|) + 4 eps32: see tests/equivalence.py; a wrong layer or crop is >> this bound
    assert_matches_reference(scores["score"], scores["path"].map(ref32), expected)

    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert record["key"]["detector_identity"]["weights_sha256"] == sha
    assert record["fit"]["weights"] == "released" and record["fit"]["sha256"] == sha
    assert record["counts"]["train"]["used"] == 0


def test_sha256_pin_and_strict_keys(image_root: Path, state: OrderedDict, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = save_original_format(state, tmp_path / "blur_jpg_prob0.1.pth")
    base = ["run", "cnnspot", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q"]
    wrong = "0" * 64
    result = invoke(*base, "--set", f"weights={ckpt}#sha256={wrong}")
    assert result.exit_code == 2 and "sha256 mismatch" in result.output and wrong in result.output
    assert "Traceback" not in result.output

    bad = OrderedDict(state)
    bad["fc1.weight"] = bad.pop("fc.weight")  # NPR's head name
    result = invoke(*base, "--set", f"weights={save_original_format(bad, tmp_path / 'bad.pth')}")
    assert result.exit_code == 2 and "missing keys: fc.weight" in result.output
    assert "unexpected keys: fc1.weight" in result.output and "Traceback" not in result.output

    result = invoke(*base, "--set", f"weights={tmp_path / 'absent.pth'}")
    assert result.exit_code == 2 and "absent.pth" in result.output and "--set weights=" in result.output

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no torch hub cache with ImageNet weights
    result = invoke(*base)  # no weights: training starts from ImageNet weights, which are not here
    assert result.exit_code == 2 and "resnet50-19c8e357.pth" in result.output and "init=random" in result.output
    result = invoke(*base, "--set", "init=random")  # a stand-in start, but protocol eval trains nothing
    assert result.exit_code == 2 and "needs training" in result.output


def test_registered_with_facts() -> None:
    info = DETECTORS.info("cnnspot")
    cls = DETECTORS.get("cnnspot")
    assert info is not None and info.year == 2020 and info.weights_key == "weights"
    assert info.training == "trains" and not cls.training_free
    assert cls(cls.Config(weights="x.pth")).needs_training() is False
    assert cls(cls.Config()).needs_training() is True


def test_presets_name_real_domains_and_run_on_a_test_only_ufd_root(tmp_path: Path, detbench_home: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The no-crop preset (native 16 px replica images keep this cheap) with a released-format checkpoint on a
    root holding only the test domains: nothing trains, the extra domains are evaluated, deltas are printed."""
    import dataclasses

    from replicas import build_ufd

    from detbench.datasets.universalfakedetect import DOMAINS, EXTRAS
    from detbench.results import presets

    loaded = {name: p for name, p in presets.load_presets().items() if p.detector == "cnnspot"}
    assert len(loaded) == 5
    for p in loaded.values():
        known = set(DOMAINS) | set(EXTRAS) if p.suite == "universalfakedetect" else None
        for metric in ("acc", "ap"):
            assert known is None or set(p.expected(metric)) <= known, p.name
    assert len(loaded["cnnspot.prob0.5-crop224-ufd"].expected("acc")) == 13

    root = build_ufd(tmp_path / "ufd", train_classes=(), n=1, defects=False).root
    ckpt = save_original_format(random_resnet_state(stem_kernel=7, stages=4, head="fc", head_scale=1.0, seed=3),
                                tmp_path / "blur_jpg_prob0.5.pth")
    small = {k: dataclasses.replace(v, min_images_per_generator=1) for k, v in presets.load_presets().items()}
    monkeypatch.setattr(presets, "load_presets", lambda: small)
    result = invoke("run", "--preset", "cnnspot.prob0.5-nocrop-ufd", "--root", str(root), "--allow-cpu", "-q",
                    "--set", f"weights={ckpt}")
    assert result.exit_code == 0, result.output
    assert "measured vs published" in result.output
    [record] = [json.loads(p.read_text()) for p in (detbench_home / "runs").glob("*/cnnspot/*/run.json")]
    assert record["protocol"] == "eval" and record["preset"]["departures"] == []
    assert record["preset"]["reproduction"] is False and record["preset"]["unverified"] == ["weights"]  # random
    assert {"stylegan2", "whichfaceisreal"} <= set(record["counts"]["eval"]) and len(record["counts"]["eval"]) == 21


@pytest.mark.parametrize("name", ["cnnspot", "npr"])
def test_scores_are_the_originals_float32_sigmoid_so_saturated_images_tie(name: str) -> None:
    """``validate.py`` (CNNDetection, NPR, AIGCDetectBenchmark) scores ``model(x).sigmoid()`` on float32 logits:
    every logit above about 16.6 becomes exactly 1.0, so a confident false positive ties with confident fakes in
    ``average_precision_score``. ``sigmoid_dtype=float64`` (a recorded departure) keeps every logit's rank."""
    from sklearn.metrics import average_precision_score

    from detbench.metrics import binary_metrics

    cls = DETECTORS.get(name)
    logits = np.array([[17.0], [30.0], [25.0], [-3.0], [2.0], [16.2]], dtype=np.float32)
    labels = np.array([0, 1, 1, 0, 1, 1])
    theirs = torch.from_numpy(logits).sigmoid().flatten().double().numpy()
    ours = cls(cls.Config(weights="x.pth")).probabilities(logits)
    assert ours.dtype == np.float64 and ours.ravel().tolist() == theirs.tolist()  # bit for bit
    assert binary_metrics(labels, ours.ravel())["ap"] == average_precision_score(labels, theirs)
    ranked = cls(cls.Config(weights="x.pth", sigmoid_dtype="float64")).probabilities(logits).ravel()
    assert ranked[0] < ranked[2] and ranked[5] < ranked[0]  # float64: every logit keeps its rank
    assert average_precision_score(labels, ranked) != average_precision_score(labels, theirs)  # the ties matter


def test_weights_and_init_files_enter_the_identity_by_sha256_only() -> None:
    """No path is part of a run id: ``weights``/``init`` files read ``file`` in the key's config and the identity
    holds their sha256; the words ``imagenet``/``random`` and an empty value stay as they are (ids kept)."""
    from detbench.engine.plan import identity_config
    from detbench.kit.classifier import EvalPreprocessing

    cls = DETECTORS.get("cnnspot")
    detector = cls(cls.Config(init="/data/run#3/resnet50.pth#sha256=" + "a" * 64))
    detector.precision, detector.released = "fp32", None
    detector.preprocessing = EvalPreprocessing(None, by_shape=False, facts={"crop": 224})
    detector.training_facts = {"init": "imagenet", "init_path": "/data/run#3/resnet50.pth", "init_sha256": "a" * 64}
    assert detector.identity() == {"precision": "fp32", "eval_preprocessing": {"crop": 224}, "init": "imagenet",
                                   "init_sha256": "a" * 64}
    config = identity_config(detector, detector.config)
    assert config["init"] == "file" and config["weights"] == "" and "/data" not in json.dumps(config)
    for word in ("imagenet", "random"):
        assert identity_config(detector, cls.Config(init=word))["init"] == word
    assert identity_config(detector, cls.Config(weights="/w/blur_jpg_prob0.5.pth"))["weights"] == "file"


def test_the_bench_original_loop_scores_as_the_reference(image_root: Path, reference, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """``detbench bench --vs-originals``'s CNNDetection loop (detbench.perf.originals.cnnspot) is the original:
    on these images and weights it gives the reference scores of eval.py's semantics (CenterCrop 224)."""
    from detbench.perf.originals import cnnspot as original

    shared, ref32, ref64 = reference(224)
    ckpt = own_copy(shared, tmp_path / "blur_jpg_prob0.5.pth")
    monkeypatch.setattr(original, "WORKERS", 0)  # the loader's workers change no score
    model = original.load({"weights": ckpt})
    scores = {f"{gen}/{rel}": s for gen in ("progan", "biggan")
              for rel, s in original.score(model, image_root / gen).items()}
    paths = sorted(scores)
    assert len(paths) == len(IMAGES)
    assert_matches_reference([scores[p] for p in paths], [ref32[p] for p in paths], [ref64[p] for p in paths])
