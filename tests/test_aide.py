"""AIDE: a checkpoint in the authors' format ({'model', 'optimizer', 'epoch', 'scaler', 'args'}, random weights and
BatchNorm statistics, a tiny timm ConvNeXt standing in for the ConvNeXt-XXL trunk) scores through the CLI exactly as
the original forward and preprocessing, written here from their published semantics; the SRM bank; clear failures."""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import invoke
from equivalence import assert_matches_reference, double_state
from PIL import Image

from detbench.detectors.aide_net import srm_filters

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
TRUNK = "convnext_atto"  # stand-in for convnext_xxlarge: the same timm ConvNeXt code and key layout
STAND_IN = "aide-test-convnext"  # an open_clip tower around it, built as open_clip builds convnext_xxlarge
SIZE = 64  # the tensor resize (256 in the original; any size exercises the same code)
IMAGES = {"0_real": [(45, 61), (70, 50), (33, 40)], "1_fake": [(96, 64), (48, 48), (61, 45)]}
LAYERS = (("layer1", 3, 1), ("layer2", 4, 2), ("layer3", 6, 2), ("layer4", 3, 2))


# ---------------------------------------------------------------------------------------------- reference


def dct_ii(n: int = 32) -> torch.Tensor:
    k, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    m = np.sqrt(np.where(k == 0, 1.0, 2.0) / n) * np.cos(np.pi * (x + 0.5) * k / n)
    return torch.tensor(m, dtype=torch.float32)


def reference_patches(image: torch.Tensor) -> list[torch.Tensor]:
    """AIDE's patch choice: 32 px patches every 16 px, graded by sum_k 2^k * mean over band k of log(|DCT|+1)
    (band k: 64k/6 <= i+j <= 64(k+1)/6), summed over channels; lowest, highest, 2nd lowest, 2nd highest."""
    d = dct_ii()
    patches = image.unfold(1, 32, 16).unfold(2, 32, 16).permute(1, 2, 0, 3, 4).reshape(-1, 3, 32, 32)
    logmag = torch.log(torch.abs(d @ patches @ d.T) + 1)
    ij = torch.arange(32)[:, None] + torch.arange(32)[None, :]
    grade = torch.zeros(len(patches))
    for k in range(6):
        band = ((ij >= 64 / 6 * k) & (ij <= 64 / 6 * (k + 1))).float()
        grade += 2**k * (logmag * band).sum(dim=(1, 2, 3)) / band.sum()
    order = np.argsort(grade.numpy(), kind="stable")
    second = 1 if len(order) > 1 else 0
    return [patches[i] for i in (order[0], order[-1], order[second], order[-1 - second])]


def reference_input(path: Path) -> torch.Tensor:
    """``TestDataset``: ToTensor, the four patches and the whole image, each tensor-resized to SIZE (bilinear,
    no antialias) and ImageNet-normalised, stacked as [minmin, maxmax, minmin1, maxmax1, whole]."""
    img = Image.open(path).convert("RGB")
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255
    views = [*reference_patches(x), x]
    resized = [F.interpolate(v[None], size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=False)[0]
               for v in views]
    return torch.stack([(v - IMAGENET_MEAN) / IMAGENET_STD for v in resized])


def bn(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                        training=False, eps=1e-5)


def resnet50_features(sd: dict, p: str, x: torch.Tensor) -> torch.Tensor:
    """The 2048-d pooled feature of a ResNet-50 (v1.5: stride on the 3x3 conv) with a 30-channel stem."""
    x = F.max_pool2d(F.relu(bn(F.conv2d(x, sd[p + "conv1.weight"], stride=2, padding=3), sd, p + "bn1")), 3, 2, 1)
    for layer, blocks, stride in LAYERS:
        for b in range(blocks):
            q, s = f"{p}{layer}.{b}.", stride if b == 0 else 1
            out = F.relu(bn(F.conv2d(x, sd[q + "conv1.weight"]), sd, q + "bn1"))
            out = F.relu(bn(F.conv2d(out, sd[q + "conv2.weight"], stride=s, padding=1), sd, q + "bn2"))
            out = bn(F.conv2d(out, sd[q + "conv3.weight"]), sd, q + "bn3")
            shortcut = bn(F.conv2d(x, sd[q + "downsample.0.weight"], stride=s), sd, q + "downsample.1") if b == 0 else x
            x = F.relu(out + shortcut)
    return x.mean(dim=(2, 3))


def reference_p_fake(sd: dict, trunk: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """``AIDE_Model.forward`` then softmax[:, 1]: SRM filters, the two experts averaged over four patches, the
    trunk on the CLIP-renormalised image with its head LayerNorm at every position then average-pooled,
    ``convnext_proj``, the MLP head."""
    minmin, maxmax, minmin1, maxmax1, tokens = x.unbind(1)
    hpf = sd["hpf.hpf.weight"]
    low = [resnet50_features(sd, "model_min." if i % 2 == 0 else "model_max.", F.conv2d(v, hpf, padding=2))
           for i, v in enumerate((minmin, maxmax, minmin1, maxmax1))]
    x_1 = (low[0] + low[1] + low[2] + low[3]) / 4
    clip_mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    clip_std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    renorm = tokens * (IMAGENET_STD / clip_std) + (IMAGENET_MEAN - clip_mean) / clip_std
    fmap = trunk.forward_features(renorm)
    w, b = sd["openclip_convnext_xxl.head.norm.weight"], sd["openclip_convnext_xxl.head.norm.bias"]
    normed = F.layer_norm(fmap.permute(0, 2, 3, 1), (fmap.shape[1],), w, b, eps=trunk.head.norm.eps)
    x_0 = F.linear(normed.mean(dim=(1, 2)), sd["convnext_proj.0.weight"], sd["convnext_proj.0.bias"])
    h = F.gelu(F.linear(torch.cat([x_0, x_1], dim=1), sd["fc.fc1.weight"], sd["fc.fc1.bias"]))
    logits = F.linear(h, sd["fc.fc2.weight"], sd["fc.fc2.bias"]).numpy()
    return float32_softmax_fake(logits)


def float32_softmax_fake(logits: np.ndarray) -> np.ndarray:
    """``engine_finetune.evaluate``: scipy's softmax of the float32 logits (``exp(x - max) / sum``), column 1."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True))[:, 1]


# ---------------------------------------------------------------------------------------------- fixtures


def random_checkpoint_state(seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    """Every key of the original AIDE_Model (two ResNet-50s with their unused fc, hpf, convnext_proj, the MLP,
    the trunk under ``openclip_convnext_xxl.``) with random values, BatchNorm statistics included; and the
    stand-in trunk holding its part (a timm module, as open_clip builds it)."""
    import timm

    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {"hpf.hpf.weight": torch.randn(30, 3, 5, 5, generator=g) * 0.2}
    for expert in ("model_min", "model_max"):
        shapes = {"conv1.weight": (64, 30, 7, 7), "fc.weight": (1000, 2048), "fc.bias": (1000,)}
        channels = 64
        shapes |= {f"bn1.{k}": (64,) for k in ("weight", "bias", "running_mean", "running_var")}
        for layer, blocks, _ in LAYERS:
            width = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}[layer]
            for b in range(blocks):
                q = f"{layer}.{b}."
                cin = channels if b == 0 else width * 4
                shapes |= {q + "conv1.weight": (width, cin, 1, 1), q + "conv2.weight": (width, width, 3, 3),
                           q + "conv3.weight": (width * 4, width, 1, 1)}
                for i, c in ((1, width), (2, width), (3, width * 4)):
                    shapes |= {f"{q}bn{i}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")}
                if b == 0:
                    shapes[q + "downsample.0.weight"] = (width * 4, cin, 1, 1)
                    shapes |= {f"{q}downsample.1.{k}": (width * 4,) for k in ("weight", "bias", "running_mean",
                                                                               "running_var")}
            channels = width * 4
        for key, shape in shapes.items():
            if key.endswith("running_var"):
                value = 0.5 + torch.rand(shape, generator=g)
            elif key.endswith(("bn1.weight", "bn2.weight", "bn3.weight", "downsample.1.weight")):
                value = 0.3 + 0.4 * torch.rand(shape, generator=g)
            elif key.endswith("num_batches_tracked"):
                value = torch.tensor(7)
            elif len(shape) == 4:
                value = torch.randn(shape, generator=g) * (2.0 / (shape[1] * shape[2] * shape[3])) ** 0.5
            else:
                value = torch.randn(shape, generator=g) * 0.1
            sd[f"{expert}.{key}"] = value
        for key in list(sd):
            if key.startswith(expert) and key.endswith("running_var"):
                sd[key.replace("running_var", "num_batches_tracked")] = torch.tensor(7)
    trunk = timm.create_model(TRUNK, pretrained=False)
    trunk.reset_classifier(0)
    trunk_sd = {k: (v + torch.randn(v.shape, generator=g) * 0.05 if v.is_floating_point() else v)
                for k, v in trunk.state_dict().items()}
    trunk.load_state_dict(trunk_sd)
    trunk.eval()
    sd |= {f"openclip_convnext_xxl.{k}": v for k, v in trunk_sd.items()}
    sd |= {"convnext_proj.0.weight": torch.randn(256, trunk.num_features, generator=g) * 0.05,
           "convnext_proj.0.bias": torch.randn(256, generator=g) * 0.05,
           "fc.fc1.weight": torch.randn(1024, 2304, generator=g) * 0.03,
           "fc.fc1.bias": torch.randn(1024, generator=g) * 0.1,
           "fc.fc2.weight": torch.randn(2, 1024, generator=g) * 0.1, "fc.fc2.bias": torch.randn(2, generator=g) * 0.1}
    return sd, trunk


@pytest.fixture(scope="module", autouse=True)
def open_clip_stand_in(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``open_clip:aide-test-convnext``: convnext_xxlarge's open_clip config with the atto trunk (CLIP
    normalisation, timm trunk, linear projection, drop path 0.1), so the real model's code path runs."""
    import open_clip

    config = {"embed_dim": 64, "vision_cfg": {"timm_model_name": TRUNK, "timm_model_pretrained": False,
                                              "timm_pool": "", "timm_proj": "linear", "timm_drop": 0.0,
                                              "timm_drop_path": 0.1, "image_size": SIZE},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
    path = tmp_path_factory.mktemp("open_clip_config") / f"{STAND_IN}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor], torch.nn.Module]:
    sd, trunk = random_checkpoint_state()
    path = tmp_path_factory.mktemp("aide") / "checkpoint-best.pth"
    args = argparse.Namespace(model="AIDE", batch_size=32, blr=1e-4, epochs=20, smoothing=0.1, output_dir="results")
    torch.save({"model": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-6, "params": [0]}]},
                "epoch": 19, "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0},
                "args": args}, path)
    return path, sd, trunk


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("aide_data")
    rng = np.random.default_rng(1)
    for label, sizes in IMAGES.items():
        folder = root / "gen" / label
        folder.mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            coarse = rng.integers(0, 256, (h // 3 + 1, w // 3 + 1, 3), dtype=np.uint8)
            img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)).astype(np.int16)
            img = np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)  # fine texture too
            Image.fromarray(img).save(folder / f"{i}.png")
    Image.fromarray(np.zeros((40, 20, 3), np.uint8)).save(root / "gen" / "1_fake" / "too_small.png")
    return root


def run_aide(root: Path, *extra: str) -> tuple[int, str]:
    result = invoke("run", "aide", "--suite", "folder", "--root", str(root), "--protocol", "eval", "-q",
                    "--set", f"backbone=open_clip:{STAND_IN}@random", "--set", f"input_size={SIZE}", *extra)
    return result.exit_code, result.output


# ---------------------------------------------------------------------------------------------- tests


def test_released_checkpoint_scores_as_the_original(checkpoint, folder_root: Path, detbench_home: Path) -> None:
    path, sd, trunk = checkpoint
    code, output = run_aide(folder_root, "--set", f"weights={path}")
    assert code == 0, output
    [run_json] = list((detbench_home / "runs/folder/aide").glob("*/run.json"))
    record = json.loads(run_json.read_text())
    scores = pd.read_parquet(run_json.parent / "scores.parquet")
    small = scores["path"].str.endswith("too_small.png")
    assert scores.loc[small, "status"].str.contains("32x32").all() and scores.loc[small, "score"].isna().all()
    ok = scores[~small]
    assert len(ok) == 6 and (ok["status"] == "ok").all()
    with torch.no_grad():
        x = torch.stack([reference_input(folder_root / p) for p in ok["path"]])
        ref32 = reference_p_fake(sd, trunk, x)
        expected = reference_p_fake(double_state(sd), copy.deepcopy(trunk).double(), x.double())
    assert np.ptp(expected) > 0.05  # the weights discriminate: a constant score would pass nothing
    # float32 scores vs the float64 reference (same weights, same float32 input, cast to double) within 4x the
    # float32 rounding error this reference shows (err32 = max |ref32 - ref64|) + 4 eps32: see tests/equivalence.py
    assert_matches_reference(ok["score"], ref32, expected)

    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["fit"]["weights"] == "released" and record["fit"]["sha256"] == sha
    assert record["key"]["detector_identity"]["weights_sha256"] == sha
    assert record["fit"]["hpf_is_srm"] is False  # the random bank above; a released one holds the SRM filters
    assert STAND_IN in record["key"]["detector_identity"]["stand_in"]


def test_sha256_pin_and_strict_keys(checkpoint, folder_root: Path, tmp_path: Path) -> None:
    path, sd, _ = checkpoint
    code, output = run_aide(folder_root, "--set", f"weights={path}#sha256={'0' * 64}")
    assert code == 2 and "sha256 mismatch" in output and "Traceback" not in output
    broken = tmp_path / "broken.pth"
    torch.save({"model": {k: v for k, v in sd.items() if k != "convnext_proj.0.bias"}, "epoch": 1}, broken)
    code, output = run_aide(folder_root, "--set", f"weights={broken}")
    assert code == 2 and "convnext_proj.0.bias" in output and "Traceback" not in output


def test_without_weights_eval_needs_training(folder_root: Path) -> None:
    code, output = run_aide(folder_root)
    assert code == 2 and "needs training" in output and "Traceback" not in output


def test_srm_bank() -> None:
    bank = srm_filters()
    assert bank.shape == (30, 5, 5) and np.allclose(bank.sum(axis=(1, 2)), 0, atol=1e-6)  # all high-pass
    assert bank[0][1:4, 1:4].tolist() == [[1, 0, 0], [0, -1, 0], [0, 0, 0]]  # first order, up-left neighbour
    assert np.allclose(bank[8][1:4, 1:4] * 2, [[1, 0, 0], [0, -2, 0], [0, 0, 1]])  # second order /2
    assert np.allclose(bank[12] * 3, np.diag([-1, 3, -3, 1, 0]))  # third order /3
    kv = np.array([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]])
    assert np.allclose(bank[29] * 12, kv) and np.allclose(bank[24] * 12, np.where(np.arange(5)[:, None] < 3, kv, 0))
    assert np.allclose(bank[28][1:4, 1:4] * 4, [[-1, 2, -1], [2, -4, 2], [-1, 2, -1]])


def test_genimage_preset_cites_its_numbers() -> None:
    from detbench.results.presets import get_preset

    preset = get_preset("aide.paper-genimage")
    acc = preset.expected("acc")
    assert preset.detector == "aide" and preset.protocol == "sdv14" and len(acc) == 9
    assert sum(v for k, v in acc.items() if k != "mean") / 8 == pytest.approx(acc["mean"], abs=0.05)
    assert "convnext_xxlarge@laion2b_s34b_b82k_augreg_soup" in preset.config["backbone"]


# ---------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def train_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ and test/ splits of one generator: 5 + 2 images per class, 40-56 px."""
    root = tmp_path_factory.mktemp("aide_train")
    rng = np.random.default_rng(2)
    for split, n in (("train", 5), ("test", 2)):
        for label in ("0_real", "1_fake"):
            folder = root / split / "gen" / label
            folder.mkdir(parents=True)
            for i in range(n):
                side = int(rng.integers(40, 57))
                arr = rng.integers(0, 256, (side, side + 3, 3), dtype=np.uint8)
                if label == "1_fake":
                    arr[::2, ::2] = arr[::2, ::2] // 2  # a periodic trace to learn
                Image.fromarray(arr).save(folder / f"{i}.png")
    return root


TRAIN_SETS = ["--set", "input_size=32", "--set", "epochs=1", "--set", "train_batch_size=8", "--set", "blr=0.01",
              "--set", "backbone=timm:efficientnet_lite0@bundled"]


def test_training_end_to_end_and_fit_reuse(train_root: Path, detbench_home: Path) -> None:
    """The real network trains one step through the CLI; the fit's state reloads for a perturbed evaluation."""
    args = ["run", "aide", "--suite", "folder", "--root", str(train_root), "--protocol", "train-on-gen", "-q",
            *TRAIN_SETS]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    [run_json] = list((detbench_home / "runs/folder/aide").glob("*/run.json"))
    fit = json.loads(run_json.read_text())["fit"]
    assert fit["trained"] is True and fit["steps"] == fit["steps_per_epoch"] == 1 and len(fit["history"]) == 1
    assert fit["kept_epoch"] == 1 and fit["n_train"] == {"real": 4, "fake": 4}
    assert fit["stand_in"] and fit["schedule"]["kind"] == "CosineSchedule"
    assert fit["schedule"]["base_lr"] == pytest.approx(0.01 * 8 / 256) and fit["batch_size"] == 8
    state = next((detbench_home / "runs/folder/aide/fits").glob("*/state/model.safetensors"))
    from safetensors import safe_open

    with safe_open(str(state), framework="pt") as fh:
        keys = set(fh.keys())
    assert "model_min.conv1.weight" in keys and "fc.fc2.bias" in keys and "hpf.hpf.weight" in keys
    assert not any(k.startswith("openclip_convnext_xxl") for k in keys)  # the frozen trunk is not copied
    scores = pd.read_parquet(run_json.parent / "scores.parquet")["score"]

    # a perturbed evaluation reuses the trained state (load path) and scores every image
    result = invoke(*args, "--perturb", "jpeg:90")
    assert result.exit_code == 0, result.output
    records = [json.loads(p.read_text()) for p in (detbench_home / "runs/folder/aide").glob("*/run.json")]
    perturbed = next(r for r in records if r["perturbation"])
    assert perturbed["fit"]["reused"] is True
    assert pd.read_parquet(Path(perturbed["paths"]["run"]) / "scores.parquet")["score"].notna().sum() == len(scores)


class TinyAIDE(torch.nn.Module):
    """AIDENet's interface (module names, [B, 5, 3, S, S] -> 2 logits) at toy size, for the training loop's tests;
    its frozen trunk has dropout and BatchNorm to show the modes the loop sets."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.hpf = nn.Conv2d(3, 4, 3, padding=1, bias=False).requires_grad_(False)
        self.model_min, self.model_max = (nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                                        nn.AdaptiveAvgPool2d(1), nn.Flatten()) for _ in range(2))
        self.openclip_convnext_xxl = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.Dropout(0.5),
                                                   nn.AdaptiveAvgPool2d(1), nn.Flatten()).requires_grad_(False)
        self.convnext_proj = nn.Linear(3, 2).requires_grad_(False)
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = [self.hpf(v) for v in x.unbind(1)[:4]]
        low = (self.model_min(p[0]) + self.model_max(p[1]) + self.model_min(p[2]) + self.model_max(p[3])) / 4
        return self.fc(torch.cat([self.convnext_proj(self.openclip_convnext_xxl(x[:, 4])), low], dim=1))


def test_trainable_view_sets_the_originals_modes() -> None:
    from detbench.detectors.aide_train import TrainableAIDE

    net = TinyAIDE()
    view = TrainableAIDE(net, semantic_train_mode=True).train()
    trunk = net.openclip_convnext_xxl
    assert trunk.training and trunk[2].training and not trunk[1].training  # dropout on, statistics frozen
    assert not any(k.startswith("openclip_convnext_xxl") for k in view.state_dict())
    TrainableAIDE(net, semantic_train_mode=False).train()
    assert not trunk.training and net.model_min.training


def split_rows(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training rows of ``train_root`` (8) and two held-out ones (one per class)."""
    from detbench.data.index import build_index
    from detbench.registry import SUITES

    index = build_index(SUITES.get("folder")(), root)
    train = index.usable[index.usable["split"] == "train"].sort_values("path")
    heldout = train.groupby("label").head(1)
    return train.drop(heldout.index), heldout


def test_the_recipe_is_train_sh() -> None:
    """AdamW over the trained parts only, the per-step half cosine of ``utils.adjust_learning_rate`` (written here
    from its published semantics), timm's label-smoothing cross-entropy, incomplete batches dropped, best kept."""
    from detbench.detectors.aide import AIDEConfig
    from detbench.detectors.aide_patches import AIDETransform
    from detbench.detectors.aide_train import TrainableAIDE, training_recipe

    config = AIDEConfig(epochs=3, train_batch_size=64, blr=1e-4, min_lr=1e-6)
    net = TinyAIDE()
    setup = training_recipe(TrainableAIDE(net, True), config, 1000, AIDETransform(32, antialias=False), "fp32")
    assert setup.drop_last and setup.keep == "best" and setup.batch_size == 64 and setup.checkpoint_each_epoch
    group = setup.optimizer.param_groups[0]
    assert isinstance(setup.optimizer, torch.optim.AdamW) and group["weight_decay"] == 0 and group["eps"] == 1e-8
    trained = {id(p) for p in group["params"]}
    assert trained == {id(p) for m in (net.model_min, net.model_max, net.fc) for p in m.parameters()}

    lr = 1e-4 * 64 / 256  # args.lr = blr * eff_batch_size / 256

    def adjust_learning_rate(epoch: float) -> float:  # warmup_epochs = 0
        return 1e-6 + (lr - 1e-6) * 0.5 * (1.0 + np.cos(np.pi * epoch / 3))

    steps_per_epoch = setup.steps_per_epoch(1000)
    assert steps_per_epoch == 1000 // 64
    for step in range(3 * steps_per_epoch):
        epoch, data_iter_step = divmod(step, steps_per_epoch)
        expected = adjust_learning_rate(data_iter_step / steps_per_epoch + epoch)
        assert setup.schedule.lr(step, epoch, steps_per_epoch) == pytest.approx(expected, rel=1e-6)

    logits, labels = torch.randn(6, 2), torch.tensor([0.0, 1, 1, 0, 1, 0])
    logp = torch.log_softmax(logits, dim=-1)  # LabelSmoothingCrossEntropy(0.1)
    nll = -logp.gather(1, labels.long()[:, None])[:, 0]
    expected = (0.9 * nll + 0.1 * -logp.mean(dim=-1)).mean()
    torch.testing.assert_close(setup.loss(logits, labels), expected)
    np.testing.assert_array_equal(setup.probabilities(logits.numpy()), float32_softmax_fake(logits.numpy()))


def test_training_resumes_after_a_kill_as_if_uninterrupted(train_root: Path, tmp_path: Path) -> None:
    """A run killed mid-step resumes from its last epoch-end checkpoint (only the trained parts) and ends as an
    uninterrupted run: same history, same weights. 8 rows in batches of 3: two steps per epoch (drop_last)."""
    from safetensors import safe_open

    from detbench.detectors.aide import AIDEConfig
    from detbench.detectors.aide_patches import AIDETransform
    from detbench.detectors.aide_train import TrainableAIDE, training_recipe
    from detbench.kit.detector import RunContext
    from detbench.kit.training import CHECKPOINT, train_classifier
    from detbench.progress import quiet

    train, heldout = split_rows(train_root)
    config = AIDEConfig(input_size=32, epochs=2, train_batch_size=3, blr=0.5, checkpoint_every=0, blur_prob=0.5,
                        jpeg_prob=0.5)

    def trained(run_dir: Path, kill_at_step: int | None = None) -> tuple[dict, dict]:
        """A fresh process's view: a new network, the run directory on disk."""
        ctx = RunContext(suite_root=train_root, suite_name="folder", device="cpu", seed=0, run_dir=run_dir,
                         phases=quiet(), workers=0)
        torch.manual_seed(0)
        net = TinyAIDE()
        view = TrainableAIDE(net, True)
        steps = []

        def forward(x: torch.Tensor) -> torch.Tensor:
            if view.training:
                steps.append(1)
                if len(steps) == kill_at_step:
                    raise KeyboardInterrupt  # the process dies in the middle of this step
            return net(x)

        view.forward = forward
        setup = training_recipe(view, config, len(train), AIDETransform(32, antialias=False), "fp32")
        facts = train_classifier(setup, train, heldout, ctx)
        return net.state_dict(), facts

    checkpoint = tmp_path / "a" / "checkpoints" / CHECKPOINT
    with pytest.raises(KeyboardInterrupt):
        trained(tmp_path / "a", kill_at_step=4)  # the second step of epoch 2
    with safe_open(str(checkpoint), framework="pt") as fh:
        keys = set(fh.keys())
    assert "model/model_min.0.weight" in keys and "kept/fc.weight" in keys and "model/hpf.weight" in keys
    assert not any("openclip_convnext_xxl" in k for k in keys)  # the frozen trunk is not copied
    resumed, facts = trained(tmp_path / "a")
    clean, clean_facts = trained(tmp_path / "b")
    assert facts["resumed_from_step"] == 2 and clean_facts["resumed_from_step"] is None
    assert facts["steps"] == 4 and facts["steps_per_epoch"] == 2 and facts["batch_size"] == 3
    assert facts["history"] == clean_facts["history"] and len(facts["history"]) == 2
    assert not checkpoint.exists()
    for key in clean:
        torch.testing.assert_close(resumed[key], clean[key], rtol=1e-5, atol=1e-7)
    assert not torch.equal(clean["fc.weight"], TinyAIDE().fc.weight)  # it trained


class SubNamespace(argparse.Namespace):
    """Not ``argparse.Namespace`` itself: a checkpoint holding it is refused."""


def test_checkpoints_may_carry_exactly_the_namespace_class(tmp_path: Path) -> None:
    from detbench.models.weights import WeightsError, load_state_dict_safely

    weights = {"w": torch.ones(2)}
    torch.save({"model": weights, "args": argparse.Namespace(blr=1e-4, epochs=20)}, tmp_path / "ok.pth")
    assert load_state_dict_safely(tmp_path / "ok.pth").keys() == {"w"}
    torch.save({"model": weights, "args": SubNamespace(blr=1e-4)}, tmp_path / "sub.pth")
    with pytest.raises(WeightsError, match="not a safe checkpoint"):
        load_state_dict_safely(tmp_path / "sub.pth")


def test_train_proj_trains_the_projection_the_code_leaves_random() -> None:
    from detbench.detectors.aide_net import AIDENet
    from detbench.models.backbones import load_backbone

    trunk = load_backbone("timm:convnext_atto@random").model
    for train_proj in (False, True):
        net = AIDENet(trunk, trunk.num_features, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), convnext_pool=True,
                      train_proj=train_proj)
        net(torch.randn(2, 5, 3, 32, 32)).sum().backward()
        assert (net.convnext_proj[0].weight.grad is not None) == train_proj
        assert net.model_min.conv1.weight.grad is not None and net.fc.fc1.weight.grad is not None
        assert all(p.grad is None for p in trunk.parameters()) and net.hpf.hpf.weight.grad is None


def test_p_fake_is_the_originals_float32_softmax() -> None:
    """engine_finetune.evaluate: scipy's ``softmax`` of the float32 logits, column 1, i.e. ``exp(x - max) / sum`` in
    float32: from a margin of about 17.3 every P(fake) is exactly 1.0, and such images tie in AP as they do there.
    ``softmax_dtype=float64`` (a recorded departure) ranks them."""
    from detbench.detectors.aide import AIDE, AIDEConfig

    logits = np.array([[0, 17.5], [0, 19], [-2, 21], [1, 1.5], [3, -30], [0.25, 0.25], [0.1, 0.3]], np.float32)
    expected = float32_softmax_fake(logits)
    assert expected.dtype == np.float32 and (expected[:3] == 1.0).all()
    np.testing.assert_array_equal(AIDE(AIDEConfig()).probabilities(logits), expected)
    np.testing.assert_array_equal(AIDE(AIDEConfig()).probabilities(logits.astype(np.float64)), expected)
    ranked = AIDE(AIDEConfig(softmax_dtype="float64")).probabilities(logits)
    assert len(set(ranked[:3].tolist())) == 3 and ranked.max() < 1.0
    from sklearn.metrics import average_precision_score

    from detbench.metrics import binary_metrics

    labels = np.array([1, 0, 1, 1, 0, 0, 1])
    ours = AIDE(AIDEConfig()).probabilities(logits)
    assert binary_metrics(labels, ours)["ap"] == average_precision_score(labels, expected)
    assert average_precision_score(labels, ranked) != average_precision_score(labels, expected)  # the ties matter


def test_the_bench_original_loop_scores_as_the_reference(checkpoint, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``detbench bench --vs-originals``'s AIDE loop (detbench.perf.originals.aide) is the original: on generated
    images (PNG and JPEG, 160-320 px) and the checkpoint it writes (its head rescaled so that the scores spread), it
    gives the reference's P(fake), with the stand-in trunk and size in place of ConvNeXt-XXL at 256 px (the loop's
    assertion then checks their map); it writes the authors' keys."""
    import timm

    from detbench.models.weights import load_state_dict_safely
    from detbench.perf.inputs import write_test_set
    from detbench.perf.originals import aide as original

    for name, value in (("WORKERS", 0), ("TRUNK", STAND_IN), ("INPUT_SIZE", SIZE)):  # workers change no score
        monkeypatch.setattr(original, name, value)
    paths = write_test_set(tmp_path / "set", 6)
    written = original.write_checkpoint(tmp_path, tmp_path / "set")
    assert written.settings == [f"weights={written.files['weights']}"]
    sd = load_state_dict_safely(written.files["weights"])
    assert set(sd) == set(load_state_dict_safely(checkpoint[0]))  # the authors' keys, which load() loads strictly

    from PIL import ImageFile

    scores = original.score(original.load(written.files), tmp_path / "set")
    assert sorted(scores) == sorted(paths)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # the loop's truncated-image setting does not outlive it
    trunk = timm.create_model(TRUNK, pretrained=False)
    trunk.reset_classifier(0)
    prefix = "openclip_convnext_xxl."
    trunk.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
    with torch.no_grad():
        x = torch.stack([reference_input(tmp_path / "set" / p) for p in paths])
        ref32 = reference_p_fake(sd, trunk.eval(), x)
        expected = reference_p_fake(double_state(sd), copy.deepcopy(trunk).double(), x.double())
    assert np.ptp(expected) > 0.05  # the rescaled head spreads the scores
    assert_matches_reference([scores[p] for p in paths], ref32, expected)


def test_the_patch_choice_and_stack_are_the_bench_originals_to_the_bit() -> None:
    """The patch grading picks, rebuilds and resizes exactly as the bench's original loop (``DCT_base_Rec_Module`` and
    ``TestDataset`` step by step): the same four patches, to the bit, on noise, on flat images (every grade tied) and
    at sizes with one and with many patches, with and without antialias."""
    from detbench.detectors.aide_patches import AIDETransform
    from detbench.perf.originals import aide as original

    g = torch.Generator().manual_seed(3)
    images = [torch.rand(3, 70, 53, generator=g), torch.rand(3, 32, 32, generator=g), torch.full((3, 48, 64), 0.5),
              (torch.rand(3, 1, 1, generator=g) + torch.zeros(3, 40, 90)).contiguous()]
    originals = original._Patches()
    for antialias in (False, True):
        ours = AIDETransform(SIZE, antialias)
        for image in images:
            expected = [F.interpolate(v[None], size=(SIZE, SIZE), mode="bilinear", align_corners=False,
                                      antialias=antialias)[0] for v in (*originals(image), image)]
            expected = torch.stack([(v - IMAGENET_MEAN) / IMAGENET_STD for v in expected])
            assert torch.equal(ours.from_tensor(image), expected)

