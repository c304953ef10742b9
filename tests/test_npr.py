"""NPR: a flat checkpoint in the original's format scores through the CLI exactly as NPR's test.py would.

The reference (written here from the original's published semantics, not imported): ``test.py`` builds
``resnet50(num_classes=1)`` of ``networks/resnet.py`` (3x3 stride-2 ``conv1``, ``layer1``, ``layer2``,
``fc1 = Linear(512, 1)``), loads ``torch.load(path)`` strictly and scores ``sigmoid(model(x))``. The forward
drops the last row/column of odd sizes (the README's fix), takes ``NPR = x - up(down(x))`` where nearest
down- and up-sampling by 2 copy each 2x2 block's top-left pixel, and feeds ``NPR * 2 / 3`` to the network.
Preprocessing per test set: ``Resize((256, 256))`` (PIL bilinear) for ForenSynths-style sets, none for
GANGen/AIGCDetectBenchmark, tiling (``translate_duplicate``) + ``CenterCrop(224)`` for GenImage.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import invoke
from equivalence import assert_matches_reference, double_state
from PIL import Image
from replicas import build_genimage
from resnet_reference import calibrate_head, head_logits, random_resnet_state, resnet_features, to_normalised_tensor

from detbench.kit.detector import RunContext
from detbench.progress import quiet
from detbench.registry import DETECTORS

IMAGES = [  # (generator, label folder, name, width, height): odd sizes included
    ("sdxl", "0_real", "a.png", 48, 40),
    ("sdxl", "0_real", "b.jpg", 41, 57),
    ("sdxl", "1_fake", "c.png", 64, 63),
    ("dalle", "0_real", "d.png", 53, 53),
    ("dalle", "1_fake", "e.png", 70, 47),
    ("dalle", "1_fake", "f.png", 66, 66),
]
MODES = {"square": "resize=auto", "native": "resize=native", "tile": "resize=tile"}


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(3)
    for gen, label, name, w, h in IMAGES:
        path = root / gen / label / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ramp = np.linspace(0, 220, w)[None, :, None] + np.linspace(0, 35, h)[:, None, None]
        noise = rng.normal(0, 25, (h, w, 3))
        if label == "1_fake":  # nearest-neighbour upsampled noise: the artefact NPR looks for
            noise = np.repeat(np.repeat(noise[::2, ::2], 2, axis=0), 2, axis=1)[:h, :w]
        Image.fromarray(np.clip(ramp + noise, 0, 255).astype(np.uint8)).save(path, quality=92)
    return root


def tile_then_center_crop(img: Image.Image, size: int) -> np.ndarray:
    """The README's ``translate_duplicate(img, 224)`` (repeat an image whose shorter side is below 224) then
    torchvision's ``CenterCrop(224)``."""
    if min(img.size) < size:
        w, h = img.size
        tiled = Image.new("RGB", (w * math.ceil(size / w), h * math.ceil(size / h)))
        for i in range(0, tiled.width, w):
            for j in range(0, tiled.height, h):
                tiled.paste(img, (i, j))
        img = tiled
    pixels = np.asarray(img)
    h, w = pixels.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return pixels[top:top + size, left:left + size]


def original_input(path: Path, mode: str) -> torch.Tensor:
    img = Image.open(path).convert("RGB")
    if mode == "square":
        pixels = np.asarray(img.resize((256, 256), Image.Resampling.BILINEAR))
    elif mode == "tile":
        pixels = tile_then_center_crop(img, 224)
    else:
        pixels = np.asarray(img)
    return to_normalised_tensor(pixels)[None]


def npr_features(x: torch.Tensor, sd: dict) -> torch.Tensor:
    h, w = x.shape[-2:]
    x = x[:, :, : h - h % 2, : w - w % 2]
    rows = 2 * (torch.arange(x.shape[-2]) // 2)
    cols = 2 * (torch.arange(x.shape[-1]) // 2)
    residual = x - x[:, :, rows][:, :, :, cols]
    return resnet_features(residual * 2.0 / 3.0, sd, stem_kernel=3, stages=2)


def make_state(root: Path, mode: str) -> tuple[OrderedDict, dict[str, float], dict[str, float]]:
    """Random weights in the original's flat layout (head calibrated to spread these images' logits) and the
    reference score of every image: in float32 (the original's precision) and in float64 (the same weights and
    input cast to double)."""
    sd = random_resnet_state(stem_kernel=3, stages=2, head="fc1", head_scale=1.0, seed=5)
    paths = [f"{gen}/{label}/{name}" for gen, label, name, _w, _h in IMAGES]
    inputs = [original_input(root / p, mode) for p in paths]
    with torch.no_grad():
        feats = torch.cat([npr_features(x, sd) for x in inputs])
        calibrate_head(sd, feats, "fc1")
        ref32 = torch.sigmoid(head_logits(feats, sd, "fc1")).double().numpy()
        sd64 = double_state(sd)
        feats64 = torch.cat([npr_features(x.double(), sd64) for x in inputs])
        ref64 = torch.sigmoid(head_logits(feats64, sd64, "fc1")).numpy()
    return sd, dict(zip(paths, ref32, strict=True)), dict(zip(paths, ref64, strict=True))


def records(home: Path, suite: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in (home / "runs" / suite / "npr").glob("*/run.json")]


@pytest.mark.parametrize("mode", list(MODES))
def test_released_checkpoint_scores_as_the_original_test(mode: str, image_root: Path, tmp_path: Path,
                                                        detbench_home: Path) -> None:
    state, ref32, ref64 = make_state(image_root, mode)
    ckpt = tmp_path / "NPR.pth"
    torch.save(state, ckpt)  # base_model.py save_networks: the flat state dict
    result = invoke("run", "npr", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    "--set", f"weights={ckpt}", "--set", MODES[mode])
    assert result.exit_code == 0, result.output
    [record] = records(detbench_home, "folder")
    scores = pd.read_parquet(Path(record["paths"]["run"]) / "scores.parquet")
    assert len(scores) == len(IMAGES) and (scores["status"] == "ok").all()
    expected = scores["path"].map(ref64).to_numpy()
    assert expected.std() > 0.05 and ((expected > 0.02) & (expected < 0.98)).sum() >= 3  # not saturated
    # float32 scores vs the float64 reference within 4x the float32 rounding error this reference shows
    # (err32 = max |ref32 - ref64|) + 4 eps32: see tests/equivalence.py; a wrong layer or resize is >> this bound
    assert_matches_reference(scores["score"], scores["path"].map(ref32), expected)

    identity = record["key"]["detector_identity"]
    assert identity["weights_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert identity["eval_preprocessing"]["resize"] == mode and identity["precision"] == "fp32"
    assert record["fit"]["weights"] == "released" and record["counts"]["train"]["used"] == 0


def test_the_weights_path_is_not_part_of_the_run_id(image_root: Path, tmp_path: Path, detbench_home: Path) -> None:
    """The README: no path is part of a run id. The same checkpoint elsewhere (or pinned) is the same run."""
    import shutil

    state = random_resnet_state(stem_kernel=3, stages=2, head="fc1", head_scale=1.0, seed=3)
    torch.save(state, tmp_path / "NPR.pth")
    (tmp_path / "copy#2").mkdir()
    shutil.copyfile(tmp_path / "NPR.pth", tmp_path / "copy#2" / "NPR.pth")
    sha = hashlib.sha256((tmp_path / "NPR.pth").read_bytes()).hexdigest()
    base = ["run", "npr", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q"]
    assert invoke(*base, "--set", f"weights={tmp_path / 'NPR.pth'}").exit_code == 0
    result = invoke(*base, "--set", f"weights={tmp_path / 'copy#2' / 'NPR.pth'}#sha256={sha}")
    assert result.exit_code == 0, result.output
    [record] = records(detbench_home, "folder")
    assert str(tmp_path) not in json.dumps(record["key"]) and record["key"]["detector"]["config"]["weights"] == "file"
    assert record["key"]["detector_identity"]["weights_sha256"] == sha


def test_auto_preprocessing_follows_the_suite_convention() -> None:
    from detbench.detectors.npr import NPR, NPRConfig

    expected = {"forensynths": "square", "universalfakedetect": "square", "diffusionforensics": "square",
                "gangen": "native", "aigcdetect": "native", "genimage": "tile", "chameleon": "square",
                "synthbuster": "square", None: "square"}
    from detbench.data.suites import EVAL_CONVENTIONS

    assert set(expected) - {None} == set(EVAL_CONVENTIONS)  # every published convention is decided
    detector = NPR(NPRConfig())
    for convention, mode in expected.items():
        ctx = RunContext(suite_root=Path("."), suite_name="x", device="cpu", seed=0, run_dir=Path("."),
                         phases=quiet(), eval_convention=convention)
        assert detector.resolved_resize(ctx)[0] == mode, convention
    ctx.eval_convention = "genimage"
    assert NPR(NPRConfig(resize="native")).resolved_resize(ctx) == ("native", "setting")


def test_genimage_suite_tiles_and_crops(tmp_path: Path, detbench_home: Path) -> None:
    root = build_genimage(tmp_path / "genimage", generators=("adm", "biggan"), n=1, defects=False).root
    state = random_resnet_state(stem_kernel=3, stages=2, head="fc1", head_scale=1.0, seed=2)
    torch.save(state, tmp_path / "npr_genimage.pth")
    result = invoke("run", "npr", "--suite", "genimage", "--root", str(root), "--protocol", "eval", "-q",
                    "--set", f"weights={tmp_path / 'npr_genimage.pth'}")
    assert result.exit_code == 0, result.output
    [record] = records(detbench_home, "genimage")
    facts = record["key"]["detector_identity"]["eval_preprocessing"]
    assert facts["resize"] == "tile" and facts["chosen_by"] == "convention genimage"
    scores = pd.read_parquet(Path(record["paths"]["run"]) / "scores.parquet")
    assert (scores["status"] == "ok").all() and len(scores) == 4
    row = scores.iloc[0]
    with torch.no_grad():
        logit = head_logits(npr_features(original_input(root / row["path"], "tile"), state), state, "fc1")
    assert row["score"] == pytest.approx(float(torch.sigmoid(logit)), abs=1e-5)

    from detbench.results.predict import predict_files  # your own files are scored as the run scored (tiled)

    predicted, _ = predict_files(record["run_id"][:12], [root / row["path"]], phases=quiet())
    assert predicted["score"].iloc[0] == pytest.approx(row["score"], abs=1e-6)


def test_strict_loading_and_registry_facts(image_root: Path, tmp_path: Path) -> None:
    state = random_resnet_state(stem_kernel=3, stages=2, head="fc1", head_scale=1.0, seed=1)
    state["layer3.0.conv1.weight"] = torch.zeros(1)  # a full ResNet-50 key NPR never builds
    torch.save(state, tmp_path / "wrong.pth")
    result = invoke("run", "npr", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    "--set", f"weights={tmp_path / 'wrong.pth'}")
    assert result.exit_code == 2 and "unexpected keys: layer3.0.conv1.weight" in result.output
    assert "Traceback" not in result.output

    info = DETECTORS.info("npr")
    assert info is not None and info.year == 2024 and info.weights_key == "weights" and info.training == "trains"


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool])
def test_an_integer_or_bool_checkpoint_is_refused_naming_its_keys(dtype: torch.dtype, image_root: Path,
                                                                  tmp_path: Path) -> None:
    """Keys and shapes match, so only the dtype tells: an int8 checkpoint ran as a garbage model (AP 50), a bool
    one as a model scoring NaN."""
    state = random_resnet_state(stem_kernel=3, stages=2, head="fc1", head_scale=1.0, seed=1)
    cast = OrderedDict((k, v.to(dtype) if v.is_floating_point() else v) for k, v in state.items())
    torch.save(cast, tmp_path / "cast.pth")
    result = invoke("run", "npr", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    "--set", f"weights={tmp_path / 'cast.pth'}")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    name = str(dtype).removeprefix("torch.")
    assert "not floating point where the model holds floating point" in text and "Traceback" not in text
    assert f"conv1.weight: checkpoint {name} vs model float32" in text and "more)" in text  # 8 named, then a count
    half = OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in state.items())
    torch.save(half, tmp_path / "half.pth")  # fp16 -> fp32 is fine
    result = invoke("run", "npr", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    "--set", f"weights={tmp_path / 'half.pth'}")
    assert result.exit_code == 0, result.output


def test_presets_name_real_generators_and_run_on_a_genimage_replica(tmp_path: Path, detbench_home: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from detbench.datasets.aigcdetect import SETS
    from detbench.datasets.genimage import GENERATORS
    from detbench.datasets.universalfakedetect import DOMAINS, EXTRAS
    from detbench.results import presets

    loaded = {name: p for name, p in presets.load_presets().items() if p.detector == "npr"}
    known = {"universalfakedetect": set(DOMAINS) | set(EXTRAS), "genimage": set(GENERATORS),
             "aigcdetect": {*SETS, "mean"}}
    assert {"npr.paper-forensynths-ufd", "npr.genimage-sdv14", "npr.paper-aigcdetect"} <= set(loaded)
    for p in loaded.values():
        assert p.expected("acc"), p.name
        for metric in ("acc", "ap"):
            assert set(p.expected(metric)) <= known[p.suite], p.name

    root = build_genimage(tmp_path / "genimage", n=1, defects=False).root
    torch.save(random_resnet_state(stem_kernel=3, stages=2, head="fc1", head_scale=1.0, seed=4), tmp_path / "n.pth")
    small = {k: dataclasses.replace(v, min_images_per_generator=1) for k, v in presets.load_presets().items()}
    monkeypatch.setattr(presets, "load_presets", lambda: small)
    result = invoke("run", "--preset", "npr.genimage-sdv14", "--root", str(root), "--allow-cpu", "-q",
                    "--set", f"weights={tmp_path / 'n.pth'}")
    assert result.exit_code == 0, result.output
    assert "Unverified reproduction" in result.output
    [record] = records(detbench_home, "genimage")
    sha = hashlib.sha256((tmp_path / "n.pth").read_bytes()).hexdigest()
    # no published sha256 is known for the release: any file of the right architecture is unverified, never true
    assert record["preset"]["reproduction"] is False and record["preset"]["unverified"] == ["weights"]
    assert record["preset"]["files"] == {"weights": {"sha256": sha, "release_sha256": None, "matches": None}}
    assert record["preset"]["departures"] == [] and len(record["counts"]["eval"]) == 8
    assert record["key"]["detector_identity"]["eval_preprocessing"]["resize"] == "tile"


def test_aigcdetect_preset_native_profile_scores_odd_sizes_as_the_original(tmp_path: Path, detbench_home: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite-imposed profile (``suite.eval_profile=native`` in the preset) replaces NPR's own choice: odd
    15/17 px images at their own sizes, last row/column dropped, scored as the reference does one by one."""
    import dataclasses

    from replicas import build_aigcdetect

    from detbench.results import presets

    root = build_aigcdetect(tmp_path / "aigc", train_classes=(), n=1, defects=False).root
    state = random_resnet_state(stem_kernel=3, stages=2, head="fc1", head_scale=1.0, seed=6)
    torch.save(state, tmp_path / "model_epoch_last_3090.pth")
    small = {k: dataclasses.replace(v, min_images_per_generator=1) for k, v in presets.load_presets().items()}
    monkeypatch.setattr(presets, "load_presets", lambda: small)
    result = invoke("run", "--preset", "npr.paper-aigcdetect", "--root", str(root), "--allow-cpu", "-q",
                    "--set", f"weights={tmp_path / 'model_epoch_last_3090.pth'}")
    assert result.exit_code == 0, result.output
    [record] = records(detbench_home, "aigcdetect")
    assert set(record["eval_profiles"].values()) == {"native"} and record["preset"]["departures"] == []
    assert record["preset"]["reproduction"] is False and record["preset"]["unverified"] == ["weights"]
    scores = pd.read_parquet(Path(record["paths"]["run"]) / "scores.parquet")
    assert (scores["status"] == "ok").all() and scores["generator"].nunique() == 16
    rows = scores.iloc[[0, 7, 20]]
    state64 = double_state(state)
    with torch.no_grad():
        inputs = [original_input(root / p, "native") for p in rows["path"]]
        ref32 = [float(torch.sigmoid(head_logits(npr_features(x, state), state, "fc1"))) for x in inputs]
        ref64 = [float(torch.sigmoid(head_logits(npr_features(x.double(), state64), state64, "fc1"))) for x in inputs]
    assert_matches_reference(rows["score"], ref32, ref64)  # the derived bound of tests/equivalence.py


def test_the_bench_original_loop_scores_as_the_reference(image_root: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """``detbench bench --vs-originals``'s NPR loop (detbench.perf.originals.npr) is the original: on these images
    and weights it gives the reference scores of test.py's ForenSynths semantics (Resize((256, 256)))."""
    from detbench.perf.originals import npr as original

    state, ref32, ref64 = make_state(image_root, "square")
    ckpt = tmp_path / "NPR.pth"
    torch.save(state, ckpt)
    monkeypatch.setattr(original, "WORKERS", 0)  # the loader's workers change no score
    model = original.load({"weights": ckpt})
    scores = {f"{gen}/{rel}": s for gen in ("sdxl", "dalle")
              for rel, s in original.score(model, image_root / gen).items()}
    paths = sorted(scores)
    assert len(paths) == len(IMAGES)
    assert_matches_reference([scores[p] for p in paths], [ref32[p] for p in paths], [ref64[p] for p in paths])
