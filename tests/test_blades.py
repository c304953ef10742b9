"""BLADES: checkpoints in the original's format score through the CLI as AIGFD_BLO's BC_MLP.py / OC_GMM.py would.

The reference (written here from the original's published semantics, not imported): ``GatherDataset`` turns a PIL
RGB image into ``ToTensor`` -> ``Resize((224, 224))`` of the tensor (bilinear, no antialias: torchvision 0.14) ->
CLIP ``Normalize``; ``CLIP_EXIF_Net.encode_image`` is torchvision's ResNet-50 with ``fc`` 2048 -> 768, divided by
its L2 norm; ``BC_MLP`` adds ``fc2(relu(fc1(f)))`` and ``softmax[:, 1]``. ``BC.pth`` / ``OC.pth`` are ``{'model':
state_dict}`` holding CLIP_EXIF_Net's text side too. OC-GMM: scikit-learn's ``GaussianMixture`` on the real
training features, ``score_samples`` of each evaluation image, the threshold at 5 % of the real training faces.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import invoke
from equivalence import (
    assert_refused_naming,
    assert_released_run_matches,
    double_state,
    released_run,
    write_test_images,
)
from PIL import Image
from resnet_reference import random_resnet_state, resnet_features
from torch.nn import functional as F

from detbench.registry import DETECTORS

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIZE = 224
IMAGES = [  # (generator, label folder, name, width, height): small, odd, non-square (all upsampled to 224)
    ("gen", "0_real", "a.png", 48, 40),
    ("gen", "0_real", "b.jpg", 41, 57),
    ("gen", "1_fake", "c.png", 64, 64),
    ("gen", "1_fake", "d.png", 90, 45),
    ("gen", "0_real", "e.png", 53, 53),
    ("gen", "1_fake", "f.png", 70, 47),
]
PATHS = [f"{g}/{label}/{name}" for g, label, name, _w, _h in IMAGES]


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_images(tmp_path_factory.mktemp("folder"), IMAGES, seed=5, noise=(6, 10), quality=90)


def original_input(path: Path, size: int = SIZE) -> torch.Tensor:
    """``_transform(size)``: ToTensor, the tensor's bilinear resize without antialias, CLIP's mean/std (float32)."""
    x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1).float() / 255.0
    x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=False)[0]
    return (x - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)


def extractor_state(seed: int) -> OrderedDict:
    """Random ResNet-50 weights (BatchNorm statistics too) in torchvision's layout, ``fc`` 2048 -> 768."""
    gen = torch.Generator().manual_seed(seed + 1)
    sd = random_resnet_state(stem_kernel=7, stages=4, head="fc", head_scale=1.0, seed=seed)
    sd["fc.weight"] = torch.randn(768, 2048, generator=gen) / 2048**0.5
    sd["fc.bias"] = 0.1 * torch.randn(768, generator=gen)
    return sd


def features(x: torch.Tensor, visual: dict) -> torch.Tensor:
    """``encode_image`` divided by its norm."""
    f = resnet_features(x, visual, stem_kernel=7, stages=4) @ visual["fc.weight"].T + visual["fc.bias"]
    return f / f.norm(dim=1, keepdim=True)


def text_side(prefix: str) -> dict[str, torch.Tensor]:
    """A few of CLIP_EXIF_Net's text-side tensors (never read by detection; their shapes do not matter)."""
    names = ["token_embedding.weight", "positional_embedding", "transformer.resblocks.0.attn.in_proj_weight",
             "ln_final.weight", "text_projection", "logit_scale", "text_fc.weight", "text_fc.bias"]
    return {prefix + n: torch.randn(4, 3) for n in names}


def bc_head(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random ``fc1``/``fc2`` weights."""
    return {"fc1.weight": torch.randn(1536, 768, generator=gen) / 768**0.5 * 3,
            "fc1.bias": 0.1 * torch.randn(1536, generator=gen),
            "fc2.weight": torch.randn(2, 1536, generator=gen) / 1536**0.5,
            "fc2.bias": 0.1 * torch.randn(2, generator=gen)}


def bc_checkpoint(root: Path, path: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Random BC-MLP weights saved as BC.pth, ``fc2`` scaled so these images' scores spread; the reference scores."""
    visual, head = extractor_state(3), bc_head(torch.Generator().manual_seed(9))
    inputs = torch.stack([original_input(root / p) for p in PATHS])

    def forward(x: torch.Tensor, visual: dict, head: dict) -> torch.Tensor:
        hidden = torch.relu(features(x, visual) @ head["fc1.weight"].T + head["fc1.bias"])
        return hidden @ head["fc2.weight"].T + head["fc2.bias"]

    with torch.no_grad():
        hidden = torch.relu(features(inputs, visual) @ head["fc1.weight"].T + head["fc1.bias"])
        margin = hidden @ (head["fc2.weight"][1] - head["fc2.weight"][0])
        scale = 2.0 / float(margin.std())
        head["fc2.weight"] = head["fc2.weight"] * scale
        head["fc2.bias"] = torch.tensor([0.0, -float(margin.mean()) * scale])
        ref32 = torch.softmax(forward(inputs, visual, head), 1)[:, 1].double().numpy()
        ref64 = torch.softmax(forward(inputs.double(), double_state(visual), double_state(head)), 1)[:, 1].numpy()
    sd = {f"model.model.visual.{k}": v for k, v in visual.items()} | text_side("model.model.") | head
    torch.save({"model": sd}, path)
    return dict(zip(PATHS, ref32, strict=True)), dict(zip(PATHS, ref64, strict=True))


def run(root: Path, *args: str):
    """``detbench run blades`` on a folder suite (not faces: the override is set)."""
    return invoke("run", "blades", "--suite", "folder", "--root", str(root), "-q", "--set", "allow_non_faces=true",
                  *args)


def test_released_bc_checkpoint_scores_as_the_original(image_root: Path, tmp_path: Path, detbench_home: Path) -> None:
    ckpt = tmp_path / "BC.pth"
    ref32, ref64 = bc_checkpoint(image_root, ckpt)
    result = run(image_root, "--protocol", "eval", "--set", f"weights={ckpt}")
    assert result.exit_code == 0, result.output
    assert "8 tensors of CLIP_EXIF_Net's text side" in " ".join(result.output.split())
    # a wrong resize, normalisation or layer is far beyond the bound
    record = assert_released_run_matches(detbench_home, "blades", ref32, ref64, images=len(IMAGES))
    identity = record["key"]["detector_identity"]
    assert identity["weights_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert identity["eval_preprocessing"]["antialias"] is False


def test_another_detectors_checkpoint_is_refused_naming_its_keys(image_root: Path, tmp_path: Path) -> None:
    cnnspot = random_resnet_state(stem_kernel=7, stages=4, head="fc", head_scale=1.0, seed=1)
    torch.save({"model": cnnspot}, tmp_path / "cnnspot.pth")
    result = run(image_root, "--protocol", "eval", "--set", f"weights={tmp_path / 'cnnspot.pth'}")
    assert_refused_naming(result, "missing keys: model.model.visual.conv1.weight", "unexpected keys: conv1.weight")


def test_oc_gmm_scores_are_sklearn_log_likelihoods_mapped_at_the_original_threshold(
        tmp_path: Path, detbench_home: Path) -> None:
    """OC.pth's extractor, a mixture fitted on the real training faces' features, each evaluation face's score from
    its log-likelihood: the same ranking as ``-log p`` and above 0.5 exactly below the 5 %-false-alarm threshold of
    the real training faces. One diagonal component: its fit does not depend on the order of the faces (the
    original's loader shuffles them) nor on the k-means++ draw, so scikit-learn's own fit is the reference."""
    from sklearn.mixture import GaussianMixture

    train = [("gen", "0_real", f"r{i}.png", 40 + i, 44) for i in range(12)] + [
        ("gen", "1_fake", f"t{i}.png", 44, 40 + i) for i in range(4)]
    root = write_test_images(tmp_path / "train_tree" / "train", train, seed=2, noise=(4, 3))
    write_test_images(tmp_path / "train_tree" / "test", IMAGES, seed=5, noise=(6, 10), quality=90)
    visual = extractor_state(4)
    sd = {f"model.visual.{k}": v for k, v in visual.items()} | text_side("model.")
    torch.save({"model": sd}, tmp_path / "OC.pth")
    result = run(root.parent, "--set", "variant=oc", "--set", f"weights={tmp_path / 'OC.pth'}",
                 "--set", "gmm_components=1", "--set", "gmm_covariance=diag", "--set", "train.holdout=0",
                 "--set", "size=64", "--protocol", "train-on-gen")
    assert result.exit_code == 0, result.output
    record, scores = released_run(detbench_home, "blades")
    assert (scores["status"] == "ok").all() and len(scores) == len(IMAGES)

    real_train = [f"train/gen/0_real/r{i}.png" for i in range(12)]
    with torch.no_grad():
        x_train = features(torch.stack([original_input(root.parent / p, 64) for p in real_train]), visual).numpy()
        x_eval = features(torch.stack([original_input(root.parent / "test" / p, 64) for p in PATHS]), visual).numpy()
    gmm = GaussianMixture(n_components=1, covariance_type="diag", init_params="k-means++", random_state=2024)
    gmm.fit(x_train)
    logp_train = np.sort(gmm.score_samples(x_train))
    threshold = logp_train[int(len(logp_train) * 0.05)]
    logp = gmm.score_samples(x_eval)
    z = (threshold - logp) / logp_train.std()
    expected = 0.5 * (1 + z / (1 + np.abs(z)))
    got = scores.set_index("path").loc[[f"test/{p}" for p in PATHS], "score"].to_numpy()
    # float32 features of two summation orders: diagonal Gaussians of 768 features amplify their last-bit
    # differences to about 1e-4 relative in log p; a wrong resize, normalisation or threshold moves far more
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-3)
    assert np.array_equal(np.argsort(got), np.argsort(-logp))
    assert record["fit"]["gmm"]["n_real"] == 12 and record["fit"]["gmm"]["threshold"] == pytest.approx(threshold,
                                                                                                        rel=1e-3)


def test_oc_gmm_state_round_trips_without_pickle(tmp_path: Path) -> None:
    from detbench.detectors.blades import FEATURE_DIM, BladesConfig
    from detbench.errors import WeightsError
    from detbench.kit.mixture import RealMixture

    x = np.random.default_rng(0).normal(size=(40, FEATURE_DIM)).astype(np.float32)
    c = BladesConfig(variant="oc", gmm_components=3, gmm_covariance="diag")
    fitted = RealMixture.fit(x, components=3, covariance="diag", seed=c.gmm_seed, false_alarm=c.false_alarm,
                             who="blades")
    fitted.save(tmp_path)
    again = RealMixture.load(tmp_path, components=3, covariance="diag", who="blades", dim=FEATURE_DIM)
    np.testing.assert_array_equal(again.probability(x), fitted.probability(x))
    assert not list(tmp_path.glob("*.pkl")) and again.threshold == fitted.threshold
    with pytest.raises(WeightsError, match="4-component"):
        RealMixture.load(tmp_path, components=4, covariance="diag", who="blades", dim=FEATURE_DIM)


def test_a_mixture_that_cannot_be_fitted_is_one_data_error() -> None:
    from detbench.errors import DataError
    from detbench.kit.mixture import RealMixture

    x = np.random.default_rng(0).normal(size=(40, 768)).astype(np.float32)  # 40 faces, full 768-d covariances
    with pytest.raises(DataError, match="gmm_covariance=diag"):
        RealMixture.fit(x, components=3, covariance="full", seed=2024, false_alarm=0.05, who="blades variant oc")


def test_registered_with_facts() -> None:
    info = DETECTORS.info("blades")
    cls = DETECTORS.get("blades")
    assert info is not None and info.year == 2025 and info.weights_key == "weights" and info.training == "trains"
    assert cls(cls.Config(weights="BC.pth")).needs_training() is False
    assert cls(cls.Config(variant="oc", weights="OC.pth")).needs_training() is True  # the GMM fits on real faces


def test_oc_gmm_fit_reloads_identically_and_a_damaged_mixture_is_refused(tmp_path: Path, detbench_home: Path) -> None:
    import detbench
    from detbench.engine.layout import fit_dir
    from detbench.errors import DetbenchError
    from detbench.kit.detector import RunContext
    from detbench.progress import Phases
    from detbench.results.predict import load_trained

    train = [("gen", label, f"{label}{i}.png", 40, 36) for label in ("0_real", "1_fake") for i in range(6)]
    root = write_test_images(tmp_path / "tree" / "train", train, seed=1, noise=(4, 3)).parent
    write_test_images(root / "test", IMAGES, seed=5, noise=(6, 10))
    settings = {"variant": "oc", "extractor": "random", "size": 32, "gmm_components": 1, "gmm_covariance": "diag",
                "allow_non_faces": True, "train.holdout": "0"}
    run = detbench.run("blades", "folder", root=root, protocol="train-on-gen", settings=settings, bootstrap=0,
                       workers=0)
    assert run.record["fit"]["gmm"]["n_real"] == 6 and run.record["fit"]["extractor"] == "random"
    ctx = RunContext(suite_root=root, suite_name="folder", device="cpu", seed=0, run_dir=tmp_path / "ctx",
                     phases=Phases(enabled=False, warnings=False), workers=0)
    fresh = load_trained(run.id, ctx).detector
    rows = detbench.index("folder", root=root)
    rows = rows[rows["split"] == "test"].sort_values("path").reset_index(drop=True)
    again, _ = fresh.predict(rows, ctx)
    expected = run.scores.set_index("path").loc[rows["path"], "score"].to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(again, expected)

    state = fit_dir("folder", "blades", run.record["fit_id"]) / "state"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "gmm.safetensors").write_bytes((state / "gmm.safetensors").read_bytes())
    (tmp_path / "bad" / "gmm.json").write_text("{not json")
    with pytest.raises(DetbenchError, match="gmm.json"):
        fresh.load(tmp_path / "bad")


def test_a_suite_that_does_not_declare_faces_is_refused_unless_overridden(image_root: Path, tmp_path: Path,
                                                                          detbench_home: Path) -> None:
    ckpt = tmp_path / "BC.pth"
    sd = {f"model.model.visual.{k}": v for k, v in extractor_state(3).items()} | bc_head(torch.Generator())
    torch.save({"model": sd}, ckpt)
    base = ["run", "blades", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
            "--set", f"weights={ckpt}", "--set", "size=32"]
    refused = invoke(*base)
    assert_refused_naming(refused, "content", "faces", "--set allow_non_faces=true", "--set suite.content=faces")
    assert [line for line in refused.output.splitlines() if line.strip()][0].startswith("error:")
    assert len([line for line in refused.output.splitlines() if line.strip()]) == 1
    assert not (detbench_home / "runs").exists()  # nothing written

    declared = invoke(*base, "--set", "suite.content=faces")  # a folder of faces says so
    assert declared.exit_code == 0, declared.output
    assert "allow_non_faces" not in declared.output
    overridden = invoke(*base, "--set", "allow_non_faces=true")
    assert overridden.exit_code == 0 and "allow_non_faces=true" in " ".join(overridden.output.split())
    runs = [json.loads(p.read_text()) for p in (detbench_home / "runs" / "folder" / "blades").glob("*/run.json")]
    assert len(runs) == 2 and len({r["run_id"] for r in runs}) == 2  # the override is part of the run identity
    assert sorted(r["key"]["detector"]["config"]["allow_non_faces"] for r in runs) == [False, True]


def test_a_suite_content_is_one_of_the_known_facts(image_root: Path) -> None:
    result = invoke("index", "folder", "--root", str(image_root), "--set", "content=face")
    assert result.exit_code == 2 and "faces" in result.output and "Traceback" not in result.output


def test_the_demo_runs_it_with_the_override() -> None:
    assert DETECTORS.get("blades").profile_defaults["small"]["allow_non_faces"] is True


def test_bc_head_trains_on_the_frozen_extractor_of_a_clip_exif_net_file(tmp_path: Path, detbench_home: Path) -> None:
    import detbench
    from detbench.kit.detector import RunContext
    from detbench.progress import Phases
    from detbench.results.predict import load_trained

    train = [("gen", label, f"{label}{i}.png", 40, 36) for label in ("0_real", "1_fake") for i in range(4)]
    root = write_test_images(tmp_path / "tree" / "train", train, seed=1, noise=(4, 3)).parent
    write_test_images(root / "test", IMAGES[:2], seed=5, noise=(6, 10))
    visual = extractor_state(6)
    torch.save({"model": {f"model.visual.{k}": v for k, v in visual.items()} | text_side("model.")},
               tmp_path / "OC.pth")
    refused = run(root, "--protocol", "train-on-gen", "--set", "size=32")
    assert_refused_naming(refused, "--set extractor=", "extractor=random")

    settings = {"extractor": str(tmp_path / "OC.pth"), "size": 32, "epochs": 1, "train_batch_size": 4,
                "checkpoint_every": 0, "allow_non_faces": True, "train.holdout": "0.25"}
    trained = detbench.run("blades", "folder", root=root, protocol="train-on-gen", settings=settings, bootstrap=0,
                           workers=0)
    assert trained.record["fit"]["weights"] == "trained"
    identity = trained.record["key"]["detector_identity"]
    assert identity["extractor_sha256"] == hashlib.sha256((tmp_path / "OC.pth").read_bytes()).hexdigest()
    ctx = RunContext(suite_root=root, suite_name="folder", device="cpu", seed=0, run_dir=tmp_path / "ctx",
                     phases=Phases(enabled=False, warnings=False), workers=0)
    net = load_trained(trained.id, ctx).detector.net
    for key, value in visual.items():  # the extractor did not train: it is the file's
        assert torch.equal(net.model.model.visual.state_dict()[key], value), key


def test_a_training_suite_that_does_not_declare_faces_is_refused(image_root: Path, tmp_path: Path) -> None:
    train = [("gen", label, f"{label}{i}.png", 40, 36) for label in ("0_real", "1_fake") for i in range(4)]
    train_root = write_test_images(tmp_path / "train_tree" / "train", train, seed=1, noise=(4, 3)).parent
    args = ["run", "blades", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "--set",
            "suite.content=faces",
            "--train-suite", "folder", "--train-root", str(train_root), "--train-protocol", "train-on-gen",
            "--set", "extractor=random", "--set", "size=32", "-q"]
    assert_refused_naming(invoke(*args), "suite folder declares no content", "--set allow_non_faces=true")
    faces = invoke(*args, "--set", "train_suite.content=faces", "--set", "epochs=1", "--set", "train.holdout=0.25")
    assert faces.exit_code == 0, faces.output


def test_an_extractor_beside_released_weights_is_refused() -> None:
    from detbench.config import ConfigError, apply_overrides
    from detbench.detectors.blades import BladesConfig

    with pytest.raises(ConfigError, match="extractor"):
        apply_overrides(BladesConfig(), {"weights": "BC.pth", "extractor": "OC.pth"})
