"""BLADES' bi-level pretext training (``extractor=pretext``) against AIGFD_BLO's ``loss.py``, ``BLO.py`` and
``SSL_training_dataset.py`` semantics, written here independently of detbench's code.

The losses are derived in float64 numpy from the code's formulas; the task weights' gradient is checked against
torch.autograd through an explicit unrolled step ``theta'(lambda) = theta - alpha (sum_i lambda_i grad L_i(theta) +
wd theta)``: ``d L_primary(theta'(lambda)) / d lambda``, which the code's finite difference approximates (exactly up to
its O(eps^2) error, eps = 0.01 / ||d||).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import invoke
from equivalence import assert_refused_naming, released_run
from PIL import ExifTags, Image
from scipy.special import erf

ESP = 1e-8
TINY_TEXT = "open_clip:detbench-tiny-vit@random"  # a stand-in for CLIP RN50's text tower (recorded as one)
MAKES = ["NIKON CORPORATION", "Canon", "Apple", "SONY"]


# ---------------------------------------------------------------------------------------------- losses


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ref_rank(logits: np.ndarray, y: np.ndarray) -> float:
    """L2R_Loss: expected level 1..3, every pair i < j, Phi(2 d) against (sign + 1) / 2, the fidelity loss."""
    e = _softmax(logits) @ np.array([1.0, 2.0, 3.0])
    out = []
    for i in range(len(e)):
        for j in range(i + 1, len(e)):
            p = 0.5 * (1 + erf((e[i] - e[j]) / (math.sqrt(2) / 2)))
            g = 0.5 * (np.sign(y[i] - y[j]) + 1)
            out.append(1 - math.sqrt(p * g + ESP) - math.sqrt((1 - p) * (1 - g) + ESP))
    return float(np.mean(out))


def ref_focal(logits: np.ndarray, y: np.ndarray, focal: bool = True) -> float:
    """categorical_focal_loss_fidelity (focal) or Fidelity_Loss_multi with classes: every class in the sum."""
    p = _softmax(logits)
    out = []
    for k in range(len(y)):
        total = sum(math.sqrt(p[k, c] * (c == y[k]) + ESP) for c in range(p.shape[1]))
        out.append((1 - p[k, y[k]]) ** 2 * (1 - total) if focal else 1 - total)
    return float(np.mean(out))


def ref_multilabel(logits: np.ndarray, g: np.ndarray) -> float:
    p = 1 / (1 + np.exp(-logits))
    return float(np.mean(np.mean(1 - (np.sqrt(p * g + ESP) + np.sqrt((1 - p) * (1 - g) + ESP)), axis=1)))


def test_the_eleven_losses_are_the_codes_in_its_column_order() -> None:
    from detbench.detectors.blades_pretext import PROMPTS, TASKS, task_losses

    rng = np.random.default_rng(0)
    b = 5
    logits = rng.normal(scale=3.0, size=(b, PROMPTS))
    targets = {t: rng.integers(1, 4, b) for t in ("iso", "av", "et", "fl")}
    targets["iso"][1] = targets["iso"][0]  # a tie: g = 0.5
    widths = {"makes": 10, "mm": 8, "em": 7, "wb": 2, "ep": 6}
    targets |= {t: rng.integers(0, k, b) for t, k in widths.items()}
    face = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1], [0, 0, 0]])
    got = task_losses(torch.tensor(logits), {**{t: torch.tensor(v) for t, v in targets.items()},
                                             "face": torch.tensor(face)})
    want = [ref_rank(logits[:, 3 * k:3 * k + 3], targets[t]) for k, t in enumerate(("iso", "av", "et", "fl"))]
    start = 12
    for t, k in widths.items():
        want.append(ref_focal(logits[:, start:start + k], targets[t]))
        start += k
    assert start == 45 and PROMPTS == 49 and len(TASKS) == 11
    want.append(ref_focal(logits[:, 45:47], face[:, 0], focal=False))
    want.append(ref_multilabel(logits[:, 47:49], face[:, 1:].astype(float)))
    np.testing.assert_allclose([float(v) for v in got], want, rtol=1e-12)


def test_exif_tags_map_to_the_codes_classes_and_tertile_levels() -> None:
    import pandas as pd

    from detbench.detectors.blades_pretext import CATEGORICAL, pretext_targets

    def tags(i: int, **over: object) -> str:
        base = {"Make": MAKES[i % 4], "MeteringMode": 5, "ExposureMode": 2, "WhiteBalance": 1, "ExposureProgram": 3,
                "ISOSpeedRatings": float(100 * (i + 1)), "FNumber": 2.8, "ExposureTime": 0.01, "FocalLength": 50.0}
        return json.dumps({**base, **over})

    rows = pd.DataFrame({"exif_tags": [tags(0), tags(1), tags(2), tags(3), tags(4, Make="PENTAX Corporation"),
                                       tags(5, Make="Leica"), None, tags(7, ExposureProgram=0),
                                       json.dumps({"Make": "Canon"})]})
    targets, usable, facts = pretext_targets(rows)
    assert list(usable) == [0, 1, 2, 3, 4, 5]
    assert facts["without_exif_tags"] == 1 and facts["without_class"] == {"ExposureProgram": 1}
    assert facts["missing_tag"]["FNumber"] == 1 and facts["used"] == 6
    makes = CATEGORICAL[0][2]
    assert [makes[k] for k in targets["makes"]] == ["Nikon", "Canon", "Apple", "Sony", "Pentax", "others"]
    classes = {task: table for task, _, table in CATEGORICAL}
    assert classes["mm"][targets["mm"][0]] == "multi-segment" and classes["em"][targets["em"][0]] == "auto-bracketing"
    assert classes["wb"][targets["wb"][0]] == "manual" and classes["ep"][targets["ep"][0]] == "aperture priority"
    # ISO 100..600: tertiles at 266.7 and 433.3 -> levels 1, 1, 2, 2, 3, 3; one value everywhere: level 1
    assert list(targets["iso"]) == [1, 1, 2, 2, 3, 3] and list(targets["av"]) == [1] * 6


# ---------------------------------------------------------------------------------------------- the prompts' logits

CODE_PROMPTS = (  # collect_separate_texts_v2(num_exif_scale=3), written out
    [f"a photo of a face with the {lv} value of ISO speed rating" for lv in ("low", "medium", "high")]
    + [f"a photo of a face with the {lv} value of aperture" for lv in ("low", "medium", "high")]
    + [f"a photo of a face with the {lv} value of exposure time" for lv in ("low", "medium", "high")]
    + [f"a photo of a face with the {lv} value of focal length" for lv in ("low", "medium", "high")]
    + [f"a photo of a face taken with the {m} brand camera" for m in
       ("Nikon", "Apple", "FUJIFILM", "Canon", "Samsung", "Sony", "Panasonic", "Nokia", "Pentax", "others")]
    + [f"A photo of the face captured using the {m} metering mode" for m in
       ("average", "centerweighted", "others", "partial", "spot", "multi-spot", "multi-segment", "evaluative")]
    + [f"A photo of the face captured using the {m} exposure mode" for m in
       ("auto", "auto-bracketing", "program", "manual", "aperture-priority", "easy-shooting", "shutter-priority")]
    + [f"A photo of the face captured using the {m} white balance mode" for m in ("auto", "manual")]
    + [f"A photo of the face captured using the exposure program set to {m}" for m in
       ("landscape mode", "manual control", "normal program", "portrait mode", "shutter priority",
        "aperture priority")]
    + ["a photo of a photographic face", "a photo of a manipulated face"]
    + [f"a photo of a face with a manipulated {r} region" for r in ("mouth", "eye", "nose")])


def _tiny_clip() -> torch.nn.Module:
    from detbench.models.backbones import load_text_tower

    return load_text_tower(TINY_TEXT).clip.double()


def test_the_logits_are_the_codes_scaled_cosines_with_text_fc_of_the_text_towers_prompts() -> None:
    import open_clip

    from detbench.detectors.blades_pretext import PromptScorer, code_prompts

    assert code_prompts() == CODE_PROMPTS and len(CODE_PROMPTS) == 50
    torch.manual_seed(0)
    clip = _tiny_clip()
    net = PromptScorer(_Tiny(), clip, 6).double()
    with torch.no_grad():
        clip.logit_scale.fill_(math.log(7.0))
    x = torch.tensor(np.random.default_rng(2).normal(size=(4, 3, 2, 2)))
    got = net(x).detach().numpy()
    # float64 derivation: the text tower's features of the tokens (OpenAI CLIP's BPE, 77), then numpy
    tokens = open_clip.tokenize(CODE_PROMPTS, context_length=77)
    with torch.no_grad():
        text = clip.encode_text(tokens).numpy()
        image = net.visual(x).numpy()
    w, b = net.text_fc.weight.detach().numpy(), net.text_fc.bias.detach().numpy()
    t = text @ w.T + b
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    f = image / np.linalg.norm(image, axis=1, keepdims=True)
    want = 7.0 * f @ t.T
    np.testing.assert_allclose(got, want[:, :49], rtol=1e-10)  # the last prompt ("nose") has no label: not scored
    state = net.text_state_dict()
    assert {"model.token_embedding.weight", "model.positional_embedding", "model.text_projection",
            "model.logit_scale", "model.text_fc.weight", "model.ln_final.weight"} <= set(state)
    assert any(k.startswith("model.transformer.resblocks.0.") for k in state)


def test_freezing_the_text_tower_keeps_text_fc_and_the_scale_training() -> None:
    from detbench.detectors.blades_pretext import PromptScorer

    clip = _tiny_clip()
    net = PromptScorer(_Tiny(), clip, 6, freeze_text=True)
    trained = {n for n, p in net.named_parameters() if p.requires_grad}
    assert "clip.logit_scale" in trained and "text_fc.weight" in trained and "visual.fc.weight" in trained
    assert not any(n.startswith(("clip.transformer", "clip.token_embedding", "clip.ln_final")) for n in trained)
    assert "clip.positional_embedding" not in trained and "clip.text_projection" not in trained
    assert all(p.requires_grad for p in PromptScorer(_Tiny(), _tiny_clip(), 6).parameters())


# ---------------------------------------------------------------------------------------------- the weights' gradient


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(12, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(x.flatten(1)))


def _batch(rng: np.random.Generator, b: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    t = {k: torch.tensor(rng.integers(1, 4, b)) for k in ("iso", "av", "et", "fl")}
    t |= {k: torch.tensor(rng.integers(0, n, b)) for k, n in (("makes", 10), ("mm", 8), ("em", 7), ("wb", 2),
                                                              ("ep", 6))}
    variant = rng.integers(0, 5, b)
    t["face"] = torch.tensor(np.array([[0, 0, 0], [1, 1, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1]])[variant])
    return torch.tensor(rng.normal(scale=0.1, size=(b, 3, 2, 2))), t


@pytest.mark.parametrize("primary", ["face_coarse", "iso"])
def test_the_weights_gradient_is_the_unrolled_steps_derivative(primary: str) -> None:
    from detbench.detectors.blades_pretext import TASKS, PromptScorer, hypergradient, task_losses

    torch.manual_seed(0)
    net = PromptScorer(_Tiny(), _tiny_clip(), 6).double().train()
    with torch.no_grad():  # a gentle scale: the code's finite difference (steps of 0.01 in theta) is then exact to
        net.clip.logit_scale.fill_(math.log(3.0))  # well under the tolerance (at 100 its O(eps^2) error reaches 2 %)
    rng = np.random.default_rng(1)
    train, val = _batch(rng, 6), _batch(rng, 5)
    weights = torch.tensor([1.0] * 9 + [0.3, 0.7], dtype=torch.float64)
    pri = torch.tensor([float(t == primary) for t in TASKS], dtype=torch.float64)
    alpha, wd = 0.5, 0.01
    before = {k: v.clone() for k, v in net.state_dict().items()}
    got = hypergradient(net, weights, train, val, pri, alpha, wd)
    for k, v in net.state_dict().items():  # theta is restored (up to rounding)
        torch.testing.assert_close(v, before[k], rtol=0, atol=1e-14)

    from torch.func import functional_call

    names = [n for n, _ in net.named_parameters()]
    theta = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
    lam = weights.clone().requires_grad_(True)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):  # the text tower's attention, twice differentiable
        losses = task_losses(functional_call(net, dict(zip(names, theta, strict=True)), (train[0],)), train[1])
        inner = sum(w * loss for w, loss in zip(lam, losses, strict=True))
        grads = torch.autograd.grad(inner, theta, create_graph=True)
        unrolled = {n: p - alpha * (g + wd * p) for n, p, g in zip(names, theta, grads, strict=True)}
        proxy = task_losses(functional_call(net, unrolled, (val[0],)), val[1])[TASKS.index(primary)]
        want = torch.autograd.grad(proxy, lam, retain_graph=True)[0]
    assert want.abs().max() > 1e-3  # a test that can fail: the weights do move
    # the code's central difference along d (a step of 0.01 in theta) differs from the derivative by its O(eps^2)
    # truncation error, about 1e-3 of the largest component here; a flipped sign is off by 200 %
    torch.testing.assert_close(got, want, rtol=0, atol=5e-3 * float(want.abs().max()))

    # and exactly the code's finite difference: d at theta' (weight decay in the virtual step), eps = 0.01 / ||d||
    d = torch.autograd.grad(proxy, list(unrolled.values()))
    eps = 0.01 / torch.cat([g.reshape(-1) for g in d]).norm()

    def at(step: float) -> torch.Tensor:
        moved = {n: (p + step * eps * g).detach() for n, p, g in zip(names, theta, d, strict=True)}
        return torch.stack(task_losses(functional_call(net, moved, (train[0],)), train[1])).detach()

    torch.testing.assert_close(got, -alpha * (at(1.0) - at(-1.0)) / (2 * eps), rtol=1e-7, atol=1e-12)


# ---------------------------------------------------------------------------------------------- the command line


def _face(path: Path, i: int, *, tags: bool = True) -> None:
    rng = np.random.default_rng(i)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(rng.integers(0, 255, (40, 36, 3), dtype=np.uint8))
    if not tags:
        image.save(path, quality=92)
        return
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = MAKES[i % 4]
    ifd = exif.get_ifd(0x8769)
    for name, value in (("MeteringMode", 1 + i % 6), ("ExposureMode", i % 3), ("WhiteBalance", i % 2),
                        ("ExposureProgram", 1 + i % 4), ("ISOSpeedRatings", 100 * (1 + i)),
                        ("FNumber", 1.8 + i), ("ExposureTime", 1 / (10 + i)), ("FocalLength", 20.0 + 5 * i)):
        ifd[ExifTags.Base[name]] = value
    image.save(path, quality=92, exif=exif.tobytes())


def _face_suite(tmp_path: Path, *, tags: bool = True) -> tuple[Path, Path]:
    root, copies = tmp_path / "faces", tmp_path / "face_dataaug_neg"
    copies.mkdir()
    for i in range(4):
        _face(root / "train/seen/0_real" / f"r{i}.jpg", i, tags=tags)
        _face(root / "train/seen/1_fake" / f"f{i}.jpg", 10 + i, tags=False)
        for c in range(4):
            Image.fromarray(np.full((32, 32, 3), 40 * c + i, dtype=np.uint8)).save(copies / f"r{i}_{c}.png")
    for i in range(2):
        _face(root / "test/seen/0_real" / f"r{i}.jpg", 20 + i)
        _face(root / "test/seen/1_fake" / f"f{i}.jpg", 30 + i, tags=False)
    return root, copies


def _run(root: Path, *settings: str, text: str = TINY_TEXT, init: str = "random"):
    args = ["run", "blades", "--suite", "folder", "--root", str(root), "--protocol", "train-on-seen", "-q",
            "--set", "suite.content=faces", "--set", "extractor=pretext", "--set", "size=16",
            "--set", f"pretext_text={text}", "--set", f"pretext_init={init}",
            "--set", "pretext_epochs=1", "--set", "pretext_batch_size=2", "--set", "epochs=1",
            "--set", "train_batch_size=4", "--set", "checkpoint_every=0"]
    for s in settings:
        args += ["--set", s]
    return invoke(*args)


def test_pretext_training_then_the_bc_head_on_a_face_suite(tmp_path: Path, detbench_home: Path) -> None:
    root, copies = _face_suite(tmp_path)
    result = _run(root, f"manipulated={copies}")
    assert result.exit_code == 0, result.output
    record, scores = released_run(detbench_home, "blades")
    pretext = record["fit"]["pretext"]
    n = pretext["images"]  # the real training faces left after the held-out share
    assert n >= 3 and pretext["used"] == n and pretext["without_manipulated"] == 0
    assert pretext["steps"] == n // 2 and pretext["skipped_steps"] == n % 2  # a last batch of one face has no pair
    assert pretext["task_weights"]["face_coarse"] != 1.0 and pretext["last_loss"] is not None
    identity = record["key"]["detector_identity"]
    assert identity["extractor"] == "pretext" and identity["manipulated_files"] == 16
    assert len(identity["manipulated_sha256"]) == 64 and "manipulated_path" not in identity
    assert record["key"]["detector"]["config"]["manipulated"] == "file" and (scores["status"] == "ok").all()
    assert identity["pretext_text"]["spec"] == TINY_TEXT and "stand_in" in identity["pretext_text"]
    assert identity["pretext_init"] == "random" and "stand-in" in identity["pretext_init_note"]
    assert record["key"]["detector"]["config"]["pretext_text"] == TINY_TEXT
    assert pretext["logit_scale"] > 0
    # the trained CLIP_EXIF_Net is saved with the fit in its layout: it loads where OC.pth does
    from detbench.detectors.blades import ExifExtractor, drop_text_tower
    from detbench.models.weights import load_checkpoint_file

    saved = load_checkpoint_file(str(next(detbench_home.rglob("extractor.safetensors"))), what="extractor", fix="")
    image, dropped = drop_text_tower(saved.state_dict, "model.")
    assert {"model.token_embedding.weight", "model.text_fc.weight", "model.logit_scale"} <= set(dropped)
    with torch.device("meta"):  # the layout only (no initialisation)
        layout = ExifExtractor().state_dict()
    assert {k: tuple(v.shape) for k, v in image.items()} == {k: tuple(v.shape) for k, v in layout.items()}

    import shutil

    from detbench.progress import quiet
    from detbench.results.predict import predict_files

    shutil.rmtree(copies)  # scoring a finished run reads no training data: its identity comes from the record
    predicted, trained = predict_files(record["run_id"][:12], [root / p for p in scores["path"]], phases=quiet())
    np.testing.assert_array_equal(predicted["score"].to_numpy(), scores["score"].to_numpy())
    from detbench.store import canonical_json

    assert json.loads(canonical_json(trained.detector.identity())) == identity  # no "differs from the run" warning


def test_the_manipulated_folder_is_named_by_its_files_content(tmp_path: Path) -> None:
    from detbench.detectors.blades_pretext import manipulated_identity

    _, copies = _face_suite(tmp_path)
    (copies / "notes.txt").write_text("not an image")
    first = manipulated_identity(str(copies))
    assert first["manipulated_files"] == 16 and manipulated_identity(str(copies)) == first
    (copies / "r0_0.png").write_bytes((copies / "r1_0.png").read_bytes())  # other copies: another identity
    assert manipulated_identity(str(copies))["manipulated_sha256"] != first["manipulated_sha256"]


def test_faces_without_exif_are_one_error_and_nothing_is_written(tmp_path: Path, detbench_home: Path) -> None:
    root, copies = _face_suite(tmp_path, tags=False)
    result = _run(root, f"manipulated={copies}")
    assert_refused_naming(result, "0 of 3 real training faces are usable", "carry no EXIF tag",
                          "of the 0 labelled",
                          "--set extractor=FILE")
    assert not list(detbench_home.rglob("run.json")) and not list(detbench_home.rglob("*.safetensors"))


def test_a_missing_or_empty_manipulated_folder_is_one_error(tmp_path: Path, detbench_home: Path) -> None:
    root, copies = _face_suite(tmp_path)
    assert_refused_naming(_run(root), "manipulated=DIR with extractor=pretext")
    assert_refused_naming(_run(root, f"manipulated={tmp_path / 'nowhere'}"), "manipulated=", "is not a folder")
    (tmp_path / "empty").mkdir()
    assert_refused_naming(_run(root, f"manipulated={tmp_path / 'empty'}"), "manipulated=", "holds no image")
    for f in copies.glob("*_3.png"):
        f.unlink()  # every face lacks one of its copies
    assert_refused_naming(_run(root, f"manipulated={copies}"), "lack <name>_0..3.png", "manipulated=")
    assert not list(detbench_home.rglob("run.json")) and not list(detbench_home.rglob("*.safetensors"))


def test_missing_text_tower_weights_offline_are_one_error_naming_the_setting(tmp_path: Path,
                                                                             detbench_home: Path) -> None:
    root, copies = _face_suite(tmp_path)
    result = _run(root, f"manipulated={copies}", text="open_clip:RN50@openai")
    assert_refused_naming(result, "RN50 tag 'openai'", "--set pretext_text=open_clip:RN50@")
    assert not list(detbench_home.rglob("run.json"))


def test_the_default_start_is_imagenet_and_missing_weights_are_one_error(tmp_path: Path, detbench_home: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from detbench.detectors.blades import BladesConfig

    assert BladesConfig().pretext_init == "imagenet"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no torch hub cache with ImageNet weights
    root, copies = _face_suite(tmp_path)
    result = _run(root, f"manipulated={copies}", init="imagenet")
    assert_refused_naming(result, "resnet50-19c8e357.pth", "--set pretext_init=random")
    assert not list(detbench_home.rglob("run.json"))


def test_a_start_file_gives_the_image_tower_under_model_visual(tmp_path: Path) -> None:
    from detbench.detectors.blades import Blades, BladesConfig, ExifExtractor
    from detbench.errors import WeightsError
    from detbench.kit.detector import RunContext
    from detbench.progress import quiet

    torch.manual_seed(3)
    source = ExifExtractor()
    tower = {f"model.visual.{k}": v for k, v in source.model.visual.state_dict().items()}
    torch.save({"model": {**tower, "model.text_fc.weight": torch.zeros(768, 1024)}}, tmp_path / "wrapper.pth")
    torch.save({"model": {"model.text_fc.weight": torch.zeros(768, 1024)}}, tmp_path / "text_only.pth")
    ctx = RunContext(suite_root=tmp_path, suite_name="x", device="cpu", seed=0, run_dir=tmp_path, phases=quiet())

    def start(path: Path) -> tuple[ExifExtractor, dict]:
        torch.manual_seed(4)
        target = ExifExtractor()
        config = BladesConfig(extractor="pretext", manipulated=str(tmp_path), pretext_init=str(path))
        return target, Blades(config)._pretext_start(ctx, target)

    with pytest.warns(Warning, match="1 tensors outside model.visual. are not read"):
        target, facts = start(tmp_path / "wrapper.pth")
    assert len(facts["pretext_init_sha256"]) == 64
    for k, v in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[k], v, rtol=0, atol=0)
    with pytest.raises(WeightsError, match="no image tower under model.visual"):
        start(tmp_path / "text_only.pth")


def test_the_imagenet_start_is_torchvisions_resnet50_with_a_new_fc(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from torchvision.models import resnet50

    import detbench.detectors.cnnspot as cnnspot
    from detbench.detectors.blades import Blades, BladesConfig, ExifExtractor
    from detbench.kit.detector import RunContext
    from detbench.progress import quiet

    torch.manual_seed(5)
    imagenet = resnet50(weights=None)
    torch.save(imagenet.state_dict(), tmp_path / "w.pth")
    named = tmp_path / f"resnet50-{hashlib.sha256((tmp_path / 'w.pth').read_bytes()).hexdigest()[:8]}.pth"
    (tmp_path / "w.pth").rename(named)  # torch hub's name: its sha256 prefix is checked
    monkeypatch.setattr(cnnspot, "find_imagenet_file", lambda key="init": str(named))
    ctx = RunContext(suite_root=tmp_path, suite_name="x", device="cpu", seed=0, run_dir=tmp_path, phases=quiet())
    torch.manual_seed(6)
    target = ExifExtractor()
    fc = target.model.visual.fc.weight.detach().clone()
    facts = Blades(BladesConfig(extractor="pretext", manipulated=str(tmp_path)))._pretext_start(ctx, target)
    assert facts["pretext_init"] == "imagenet" and facts["pretext_init_path"] == str(named)
    got = target.model.visual.state_dict()
    for k, v in imagenet.state_dict().items():
        if not k.startswith("fc."):
            torch.testing.assert_close(got[k], v, rtol=0, atol=0)
    torch.testing.assert_close(got["fc.weight"], fc, rtol=0, atol=0)  # Linear(2048, 768), as built


def test_pretext_training_then_the_oc_mixture_reloads_identically(tmp_path: Path, detbench_home: Path) -> None:
    root, copies = _face_suite(tmp_path)
    result = _run(root, f"manipulated={copies}", "variant=oc", "gmm_components=1", "gmm_covariance=diag")
    assert result.exit_code == 0, result.output
    record, scores = released_run(detbench_home, "blades")
    assert record["fit"]["pretext"]["steps"] >= 1 and (scores["status"] == "ok").all()
    from detbench.progress import quiet
    from detbench.results.predict import predict_files

    predicted, _ = predict_files(record["run_id"][:12], [root / p for p in scores["path"]], phases=quiet())
    np.testing.assert_array_equal(predicted["score"].to_numpy(), scores["score"].to_numpy())


def test_the_text_towers_spec_enters_the_identity_without_a_path() -> None:
    from detbench.detectors.blades import Blades, BladesConfig
    from detbench.engine.plan import identity_config

    config = BladesConfig(extractor="pretext", manipulated="/data/copies",
                          pretext_text="open_clip:RN50@/data/weights/rn50.bin#sha256=" + "a" * 64)
    values = identity_config(Blades(config), config)
    assert values["pretext_text"] == "open_clip:RN50@file" and values["manipulated"] == "file"
    assert identity_config(Blades(BladesConfig()), BladesConfig())["pretext_text"] == "open_clip:RN50@openai"
