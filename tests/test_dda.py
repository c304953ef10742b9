"""DDA against its authors' inference, re-derived here from their published code (never imported).

The reference (``Inference/inference.py`` and ``Inference/models/``): ``CenterCrop(336)`` of the unresized image
(torchvision pads a smaller side with zeros, ``(crop - side) // 2`` before and the rest after, then crops at
``int(round((side - crop) / 2))``), ``ToTensor``, CLIP's mean/std; torch.hub's DINOv2 ViT (``forward_features``:
patch convolution, class token, the 37 x 37 trained position grid interpolated bicubically by the scale factor
``(grid + 0.1) / 37`` without antialiasing unless the input is square with the trained number of patches, pre-norm
blocks with LayerScale, LayerNorm eps 1e-6, exact GELU; ``x_norm_clstoken``), each ``attn.qkv``, ``attn.proj``,
``mlp.fc1`` and ``mlp.fc2`` linear computing ``x W^T + b + einsum(einsum(x, A), B) * alpha / rank`` (``LoRALinear``),
then ``fc`` and ``sigmoid``. A tiny network of the same family (4 px patches, a 28 px crop: a 7 x 7 grid, a trained
grid of 5 or 7, width 32) keeps it fast; random weights are saved as ``save_networks`` saves them:
``{'model': state_dict, 'optimizer': ..., 'total_steps': ...}`` in ``DINOv2ModelWithLoRA``'s key layout.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import invoke
from equivalence import assert_refused_naming, assert_released_run_matches, double_state, write_test_images
from PIL import Image
from torch.nn import functional as F

from detbench.registry import DETECTORS

ARCH = {"crop": 28, "patch": 4, "width": 32, "depth": 2, "heads": 2}
RANK, ALPHA = 8, 1.0
MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
STD = np.array([0.26862954, 0.26130258, 0.27577711])
TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
IMAGES = [  # (generator, label folder, name, width, height)
    ("sdxl", "0_real", "a.png", 50, 43),  # cropped; an odd margin rounds half to even
    ("sdxl", "0_real", "b.png", 28, 28),  # exactly the crop
    ("sdxl", "1_fake", "c.png", 21, 18),  # smaller on both sides: zero-padded
    ("dalle", "0_real", "d.png", 70, 22),  # padded in height, cropped in width
    ("dalle", "1_fake", "e.png", 37, 61),
    ("dalle", "1_fake", "f.png", 48, 48),
]
PATHS = [f"{gen}/{label}/{name}" for gen, label, name, _w, _h in IMAGES]


def original_input(path: Path) -> np.ndarray:
    """``CenterCrop(crop)`` (torchvision's padding and rounding), ``ToTensor``, CLIP normalisation: ``[1, 3, c, c]``."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    crop = ARCH["crop"]
    h, w = pixels.shape[:2]
    pad_h, pad_w = max(crop - h, 0), max(crop - w, 0)
    pixels = np.pad(pixels, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
    h, w = pixels.shape[:2]
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    x = pixels[top:top + crop, left:left + crop].astype(np.float32) / np.float32(255)
    x = (x - MEAN.astype(np.float32)) / STD.astype(np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))[None]


def reference_logit(x: np.ndarray, sd: dict) -> torch.Tensor:
    """``DINOv2ModelWithLoRA(x)`` from the state dict (in its dtype)."""
    pre = "base_model.model."
    heads, patch = ARCH["heads"], ARCH["patch"]

    def linear(t: torch.Tensor, name: str) -> torch.Tensor:
        if any(target in name for target in TARGETS):
            base = t @ sd[f"{pre}{name}.original_layer.weight"].T + sd[f"{pre}{name}.original_layer.bias"]
            low = torch.einsum("...d,rd->...r", t, sd[f"{pre}{name}.lora.lora_A"])
            return base + torch.einsum("...r,or->...o", low, sd[f"{pre}{name}.lora.lora_B"]) * (ALPHA / RANK)
        return t @ sd[f"{pre}{name}.weight"].T + sd[f"{pre}{name}.bias"]

    t = torch.from_numpy(x).to(sd[pre + "pos_embed"].dtype)
    grid = F.conv2d(t, sd[pre + "patch_embed.proj.weight"], sd[pre + "patch_embed.proj.bias"], stride=patch)
    gh, gw = grid.shape[-2:]
    z = torch.cat([sd[pre + "cls_token"], grid.flatten(2).transpose(1, 2)], 1)
    pos = sd[pre + "pos_embed"]
    m = math.isqrt(pos.shape[1] - 1)
    if not (gh * gw == m * m and t.shape[-2] == t.shape[-1]):
        square = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
        square = F.interpolate(square, scale_factor=((gh + 0.1) / m, (gw + 0.1) / m), mode="bicubic",
                               antialias=False)
        pos = torch.cat([pos[:, :1], square.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)], 1)
    z = z + pos
    n, d = z.shape[1], z.shape[2]
    for b in range(ARCH["depth"]):
        p = f"blocks.{b}."
        y = F.layer_norm(z, (d,), sd[pre + p + "norm1.weight"], sd[pre + p + "norm1.bias"], 1e-6)
        q, k, v = linear(y, p + "attn.qkv").reshape(1, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax((q * (d // heads) ** -0.5) @ k.transpose(-1, -2), -1) @ v
        z = z + sd[pre + p + "ls1.gamma"] * linear(a.transpose(1, 2).reshape(1, n, d), p + "attn.proj")
        y = F.layer_norm(z, (d,), sd[pre + p + "norm2.weight"], sd[pre + p + "norm2.bias"], 1e-6)
        z = z + sd[pre + p + "ls2.gamma"] * linear(F.gelu(linear(y, p + "mlp.fc1")), p + "mlp.fc2")
    feats = F.layer_norm(z, (d,), sd[pre + "norm.weight"], sd[pre + "norm.bias"], 1e-6)[:, 0]
    return feats @ sd["base_model.fc.weight"].T + sd["base_model.fc.bias"]


def random_state(pos_grid: int) -> dict[str, torch.Tensor]:
    """Random weights in ``DINOv2ModelWithLoRA``'s key layout (LoRA factors, LayerScale and tokens far from init)."""
    d = ARCH["width"]
    gen = torch.Generator().manual_seed(11)

    def r(*shape: int, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
        return offset + scale * torch.randn(*shape, generator=gen)

    pre = "base_model.model."
    sd = {pre + "cls_token": r(1, 1, d), pre + "pos_embed": r(1, 1 + pos_grid**2, d, scale=0.5),
          pre + "mask_token": r(1, d), pre + "patch_embed.proj.weight": r(d, 3, ARCH["patch"], ARCH["patch"],
                                                                          scale=0.15),
          pre + "patch_embed.proj.bias": r(d, scale=0.1), pre + "norm.weight": r(d, scale=0.1, offset=1.0),
          pre + "norm.bias": r(d, scale=0.1)}
    shapes = {"attn.qkv": (3 * d, d), "attn.proj": (d, d), "mlp.fc1": (4 * d, d), "mlp.fc2": (d, 4 * d)}
    for b in range(ARCH["depth"]):
        p = f"{pre}blocks.{b}."
        for norm in ("norm1", "norm2"):
            sd[f"{p}{norm}.weight"], sd[f"{p}{norm}.bias"] = r(d, scale=0.1, offset=1.0), r(d, scale=0.1)
        for ls in ("ls1", "ls2"):
            sd[f"{p}{ls}.gamma"] = r(d, scale=0.2, offset=0.8)
        for name, (out, inp) in shapes.items():
            sd[f"{p}{name}.original_layer.weight"] = r(out, inp, scale=inp**-0.5)
            sd[f"{p}{name}.original_layer.bias"] = r(out, scale=0.1)
            sd[f"{p}{name}.lora.lora_A"] = r(RANK, inp, scale=inp**-0.5)
            sd[f"{p}{name}.lora.lora_B"] = r(out, RANK, scale=1.5)
    sd["base_model.fc.weight"], sd["base_model.fc.bias"] = r(1, d), r(1)
    return sd


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_images(tmp_path_factory.mktemp("folder"), IMAGES, seed=7, noise=(8, 8))


def make_checkpoint(root: Path, path: Path, pos_grid: int) -> tuple[dict[str, float], dict[str, float]]:
    """Random weights with a head spreading these images' logits, saved as ``save_networks`` does; the reference
    P(fake) in float32 and float64."""
    sd = random_state(pos_grid)
    inputs = [original_input(root / p) for p in PATHS]
    with torch.no_grad():
        sd["base_model.fc.weight"], sd["base_model.fc.bias"] = torch.eye(ARCH["width"]), torch.zeros(ARCH["width"])
        feats = torch.cat([reference_logit(x, sd) for x in inputs])  # the identity head: the features
        centred = feats - feats.mean(0)
        direction = centred[0] - centred[1:].mean(0)
        sd["base_model.fc.weight"] = (2.0 * direction / (centred @ direction).std())[None]
        sd["base_model.fc.bias"] = -(feats.mean(0) @ sd["base_model.fc.weight"][0])[None]
        ref32 = torch.sigmoid(torch.cat([reference_logit(x, sd) for x in inputs]))[:, 0].double().numpy()
        sd64 = double_state(sd)
        ref64 = torch.sigmoid(torch.cat([reference_logit(x.astype(np.float64), sd64) for x in inputs]))[:, 0]
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0, 1]}]}
    torch.save({"model": sd, "optimizer": optimizer, "total_steps": 7}, path)
    return dict(zip(PATHS, ref32, strict=True)), dict(zip(PATHS, ref64.numpy(), strict=True))


def run(root: Path, *extra: str):
    args = [a for s in [*(f"{k}={v}" for k, v in ARCH.items()), *extra] for a in ("--set", s)]
    return invoke("run", "dda", "--suite", "folder", "--root", str(root), "--protocol", "eval", "-q", *args)


@pytest.mark.parametrize("pos_grid", [5, 7])  # resampled to the 7 x 7 grid; the trained grid used as it is
def test_released_checkpoint_scores_as_the_original_eval(pos_grid: int, image_root: Path, tmp_path: Path,
                                                        detbench_home: Path) -> None:
    ckpt = tmp_path / "ckpt.pth"
    ref32, ref64 = make_checkpoint(image_root, ckpt, pos_grid)
    result = run(image_root, f"weights={ckpt}", f"pos_grid={pos_grid}")
    assert result.exit_code == 0, result.output
    # float32 scores vs the float64 reference within 4x the float32 rounding error this reference shows
    # (err32 = max |ref32 - ref64|) + 4 eps32: see tests/equivalence.py; a wrong crop, padding, position
    # resampling, LoRA scale or normalisation is >> this bound
    record = assert_released_run_matches(detbench_home, "dda", ref32, ref64, images=len(IMAGES))
    identity = record["key"]["detector_identity"]
    assert identity["eval_preprocessing"] == {"resize": "none", "crop": f"center {ARCH['crop']}", "normalise": "clip"}


def test_a_wrong_checkpoint_is_refused_naming_its_keys(tmp_path: Path, image_root: Path) -> None:
    sd = random_state(5)
    plain = {k.replace(".original_layer.", "."): v for k, v in sd.items() if ".lora." not in k}  # no LoRA
    torch.save({"model": plain}, tmp_path / "plain.pth")
    result = run(image_root, f"weights={tmp_path / 'plain.pth'}", "pos_grid=5")
    assert_refused_naming(result, "missing keys: base_model.model.blocks.0.attn.qkv.original_layer.weight",
                          "unexpected keys: base_model.model.blocks.0.attn.qkv.weight")


def test_training_on_reconstructions_needs_them(image_root: Path, tmp_path: Path) -> None:
    from detbench.detectors.dda import DDA

    tiny = {k: v for k, v in DDA.tiny_settings.items() if k != "train_data"}  # the default data source
    result = invoke("run", "dda", "--suite", "folder", "--root", str(image_root), "--protocol", "train-on-sdxl", "-q",
                    *[a for k, v in tiny.items() for a in ("--set", f"{k}={v}")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "--set reconstructions=DIR" in result.output and "train_data=suite" in result.output
    missing = tmp_path / "no_such_folder"
    result = invoke("run", "dda", "--suite", "folder", "--root", str(image_root), "--protocol", "train-on-sdxl", "-q",
                    *[a for k, v in tiny.items() for a in ("--set", f"{k}={v}")], "--set", f"reconstructions={missing}")
    assert result.exit_code == 2 and f"reconstructions={missing} is not a folder" in result.output, result.output


def test_reconstructions_pair_with_real_training_images(tmp_path: Path) -> None:
    from detbench.detectors.dda import reconstruction_rows

    folder = tmp_path / "sd2.0"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")  # a.jpg's reconstruction; b.jpg has none
    train = pd.DataFrame({"path": ["g/0_real/a.jpg", "g/0_real/b.jpg", "g/1_fake/c.png"], "label": [0, 0, 1]})
    rows, facts = reconstruction_rows(train, folder)
    assert rows["path"].tolist() == ["g/0_real/a.jpg", str(folder / "a.png")] and rows["label"].tolist() == [0, 1]
    assert facts == {"train_data": "reconstructions", "real_used": 1, "real_without_reconstruction": 1,
                     "generated_unused": 1}


def test_contrastive_loss_on_a_hand_computed_case() -> None:
    """pytorch-metric-learning's ``ContrastiveLoss(pos_margin=0, neg_margin=1)``: the mean positive distance
    plus the mean of the non-zero ``1 - d`` over negative pairs (normalised features)."""
    from detbench.detectors.dda import contrastive_loss

    feats = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [1.0, 0.2]])
    labels = torch.tensor([0.0, 0.0, 1.0, 1.0])
    z = F.normalize(feats, dim=1)
    d = torch.cdist(z, z)
    pos = torch.stack([d[0, 1], d[2, 3]])  # d[0, 1] = 0: a zero term, left out of the mean
    neg = torch.relu(1 - torch.stack([d[0, 2], d[0, 3], d[1, 2], d[1, 3]]))
    expected = pos[pos > 0].mean() + neg[neg > 0].mean()
    torch.testing.assert_close(contrastive_loss(feats, labels), expected)


def test_registry_facts() -> None:
    info = DETECTORS.info("dda")
    assert info is not None and info.year == 2025 and info.weights_key == "weights"
    assert "Apache-2.0" in info.released and "ckpt.pth" in info.released


def test_training_starts_from_the_dinov2_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backbone's ViT (timm's DINOv2 layout) lands in the hub layout under the LoRA wrappers: with the LoRA
    ``B`` factors at zero the network's features are the backbone's class token; only LoRA and ``fc`` train."""
    from timm.models.vision_transformer import VisionTransformer

    import detbench.models.backbones as backbones
    from detbench.config import ConfigError
    from detbench.detectors.dda import DDA, DDAConfig
    from detbench.kit.detector import RunContext
    from detbench.progress import quiet

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=20, patch_size=4, embed_dim=32, depth=2, num_heads=2, init_values=0.5,
                            num_classes=0).eval()
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(0.2 * torch.randn_like(p))

    class Stub:
        model, identity_spec = vit, "timm:stub@random"

    monkeypatch.setattr(backbones, "load_backbone", lambda spec: Stub())
    settings = {k: v for k, v in DDA.tiny_settings.items() if k != "backbone"}
    detector = DDA(DDAConfig(**{**settings, "crop": 20, "backbone": "timm:stub@random"}))
    detector.setup(RunContext(suite_root=Path("."), suite_name="x", device="cpu", seed=0, run_dir=Path("."),
                              phases=quiet()))
    x = torch.randn(3, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(detector.net.features(x), vit.forward_features(x)[:, 0], rtol=0, atol=1e-5)
    trainable = {n for n, p in detector.net.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in detector.net.named_parameters() if ".lora." in n or ".fc." in n}
    assert len(trainable) == 2 + 2 * 4 * 2 and detector.identity()["backbone"] == "timm:stub@random"
    setup = detector.train_setup(None, pd.DataFrame({"path": ["a.png"] * 100, "label": [0, 1] * 50}))
    group = setup.optimizer.param_groups[0]
    assert isinstance(setup.optimizer, torch.optim.AdamW) and group["lr"] == 1e-4 and group["weight_decay"] == 0
    assert setup.schedule.lr(1000, 0, 1) == pytest.approx(1e-7) and setup.schedule.lr(500, 0, 1) == pytest.approx(
        (1e-4 + 1e-7) / 2)

    class Wide:  # a ViT of another width does not fit: refused, naming its first mismatched tensors
        model = VisionTransformer(img_size=20, patch_size=4, embed_dim=48, depth=2, num_heads=2, init_values=0.5,
                                  num_classes=0)
        identity_spec = "timm:wide@random"

    monkeypatch.setattr(backbones, "load_backbone", lambda spec: Wide())
    wide = DDA(DDAConfig(**{**settings, "crop": 20, "backbone": "timm:wide@random"}))
    with pytest.raises(ConfigError, match="cls_token"):
        wide.setup(RunContext(suite_root=Path("."), suite_name="x", device="cpu", seed=0, run_dir=Path("."),
                              phases=quiet()))


def test_training_on_reconstructions_end_to_end(tmp_path: Path, detbench_home: Path) -> None:
    """Real training images and their reconstructions (label 1) train the tiny network; the fit records them."""
    from detbench.detectors.dda import DDA

    rng = np.random.default_rng(3)
    root, folder = tmp_path / "tree", tmp_path / "recon"
    folder.mkdir()
    for gen in ("g", "h"):
        for label in ("0_real", "1_fake"):
            (root / gen / label).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / gen / label / f"{gen}{i}.png")
                if gen == "g" and label == "0_real" and i < 2:  # g2 has no reconstruction
                    Image.fromarray(pixels // 2).save(folder / f"{gen}{i}.png")
    tiny = {**{k: v for k, v in DDA.tiny_settings.items() if k != "train_data"}, "reconstructions": folder}
    result = invoke("run", "dda", "--suite", "folder", "--root", str(root), "--protocol", "train-on-g", "-q",
                    *[a for k, v in tiny.items() for a in ("--set", f"{k}={v}")])
    assert result.exit_code == 0, result.output
    [record] = [json.loads(p.read_text()) for p in (detbench_home / "runs" / "folder" / "dda").glob("*/run.json")]
    data = record["fit"]["training_data"]
    assert data["train_data"] == "reconstructions" and record["fit"]["weights"] == "trained"
    assert data["real_used"] + data["real_without_reconstruction"] == 2 and data["real_used"] >= 1


def test_training_augmentation_is_drawn_from_the_image_generator() -> None:
    """The per-image chain draws only from the generator it is given (same seed, same tensor) and always ends in a
    normalised ``crop`` square; its OpenCV kernels are the originals' (a motion line, 25 Gaussian taps at sigma 3)."""
    from detbench.detectors.dda import TrainAugment, _cv2_gaussian_kernel, _motion_kernel

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 45, 3), dtype=np.uint8))
    augment = TrainAugment(40)  # larger than the image: padded
    for seed in range(60):  # these seeds run every branch (the rarest, motion blur, p = 0.05, four times)
        a, b = augment(img, np.random.default_rng(seed)), augment(img, np.random.default_rng(seed))
        assert a.shape == (3, 40, 40) and torch.equal(a, b)
    np.testing.assert_allclose(_motion_kernel(5, 0.0), np.pad(np.full((1, 5), 0.2), ((2, 2), (0, 0))))
    kernel = _cv2_gaussian_kernel(3.0)
    assert kernel.shape == (25,) and kernel.sum() == pytest.approx(1) and kernel.argmax() == 12
