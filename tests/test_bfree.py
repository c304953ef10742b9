"""B-Free against its authors' inference, re-derived here from their published code (never imported).

The reference: ``main_bfree.py`` reads each image unresized, ``ToTensor`` and the ImageNet normalisation
(``get_list_norm('resnet')``), and ``Wrapper5crops`` runs the DINOv2 ViT's patch convolution on the whole image,
wraps a patch grid smaller than the window periodically and cuts it to the window (``replicate_wrap``), classifies
five windows of the grid (centre at ``(g - side) // 2``, the four corners) and averages the five logits. The ViT
(timm's ``VisionTransformer`` with registers, ``no_embed_class``: the position embedding is added to the patch tokens
only, then the class and register tokens are put in front; pre-norm blocks with LayerScale, exact GELU, LayerNorm
eps 1e-6; the class token after the final norm into the one-logit head) is written out below. A tiny network of the
same family (4 px patches, an 8 x 8 window, width 32) keeps it fast; random weights are saved as the original's
``{'model': state_dict}`` in timm's key layout.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import invoke
from equivalence import assert_refused_naming, assert_released_run_matches, double_state, write_test_images
from PIL import Image
from torch.nn import functional as F

from detbench.registry import DETECTORS

ARCH = {"crop": 32, "patch": 4, "width": 32, "depth": 2, "heads": 2}
SETTINGS = [f"{k}={v}" for k, v in ARCH.items()]
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
IMAGES = [  # (generator, label folder, name, width, height)
    ("sdxl", "0_real", "a.png", 50, 43),  # larger on both sides, not whole patches: the remainder dropped
    ("sdxl", "0_real", "b.png", 32, 32),  # exactly the window
    ("sdxl", "1_fake", "c.png", 21, 18),  # smaller on both sides: the grid wrapped
    ("dalle", "0_real", "d.png", 70, 22),  # smaller in height only: wrapped there, cut to the first window in width
    ("dalle", "1_fake", "e.png", 37, 61),
    ("dalle", "1_fake", "f.png", 48, 48),
]


def original_input(path: Path) -> np.ndarray:
    x = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / np.float32(255)
    x = (x - MEAN.astype(np.float32)) / STD.astype(np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))[None]


def wrap(grid: torch.Tensor, side: int) -> torch.Tensor:
    h, w = grid.shape[-2:]
    return grid.repeat(1, 1, max(math.ceil(side / h), 1), max(math.ceil(side / w), 1))[..., :side, :side]


def reference_features(x: np.ndarray, sd: dict, heads: int, side: int, patch: int) -> torch.Tensor:
    """The class token after the final norm, averaged over the five windows (the head is linear)."""
    t = torch.from_numpy(x).to(sd["pos_embed"].dtype)
    grid = F.conv2d(t, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
    if grid.shape[-2] < side or grid.shape[-1] < side:
        grid = wrap(grid, side)
    gh, gw = grid.shape[-2:]
    hs, ws = (gh - side) // 2, (gw - side) // 2
    windows = [grid[..., hs:hs + side, ws:ws + side], grid[..., :side, :side], grid[..., gh - side:, :side],
               grid[..., gh - side:, gw - side:], grid[..., :side, gw - side:]]
    feats = []
    for win in windows:
        z = win.flatten(2).transpose(1, 2) + sd["pos_embed"]
        z = torch.cat([sd["cls_token"], sd["reg_token"], z], 1)
        n, d = z.shape[1], z.shape[2]
        for b in range(sum(1 for k in sd if k.endswith(".attn.qkv.weight"))):
            p = f"blocks.{b}."
            y = F.layer_norm(z, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6)
            q, k, v = (y @ sd[p + "attn.qkv.weight"].T + sd[p + "attn.qkv.bias"]).reshape(
                1, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), -1) @ v
            a = a.transpose(1, 2).reshape(1, n, d) @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]
            z = z + sd[p + "ls1.gamma"] * a
            y = F.layer_norm(z, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
            y = F.gelu(y @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
            z = z + sd[p + "ls2.gamma"] * (y @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"])
        z = F.layer_norm(z, (d,), sd["norm.weight"], sd["norm.bias"], 1e-6)
        feats.append(z[:, 0])
    return torch.stack(feats).mean(0)


def random_state() -> dict[str, torch.Tensor]:
    """Random weights in timm's layout of the tiny architecture (LayerScale and tokens far from their init)."""
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(img_size=ARCH["crop"], patch_size=ARCH["patch"], embed_dim=ARCH["width"],
                            depth=ARCH["depth"], num_heads=ARCH["heads"], init_values=1e-5, reg_tokens=4,
                            no_embed_class=True, num_classes=1)
    gen = torch.Generator().manual_seed(3)
    sd = {}
    for key, value in vit.state_dict().items():
        noise = torch.randn(value.shape, generator=gen)
        norm = key.endswith(("norm1.weight", "norm2.weight", "norm.weight"))
        sd[key] = 1 + 0.1 * noise if norm else 0.3 * noise
    return sd


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_images(tmp_path_factory.mktemp("folder"), IMAGES, seed=7, noise=(8, 8))


def make_checkpoint(root: Path, path: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Random weights with a head spreading these images' logits, saved as ``{'model': state_dict}``; the
    reference P(fake) in float32 and float64."""
    sd = random_state()
    paths = [f"{gen}/{label}/{name}" for gen, label, name, _w, _h in IMAGES]
    inputs = [original_input(root / p) for p in paths]
    side = ARCH["crop"] // ARCH["patch"]
    with torch.no_grad():
        feats = torch.cat([reference_features(x, sd, ARCH["heads"], side, ARCH["patch"]) for x in inputs])
        centred = feats - feats.mean(0)
        direction = centred[0] - centred[1:].mean(0)
        spread = (centred @ direction).std()
        sd["head.weight"] = (2.0 * direction / spread)[None]
        sd["head.bias"] = -(feats.mean(0) @ sd["head.weight"][0])[None]
        ref32 = torch.sigmoid(feats @ sd["head.weight"].T + sd["head.bias"])[:, 0].double().numpy()
        sd64 = double_state(sd)
        feats64 = torch.cat([reference_features(x.astype(np.float64), sd64, ARCH["heads"], side, ARCH["patch"])
                             for x in inputs])
        ref64 = torch.sigmoid(feats64 @ sd64["head.weight"].T + sd64["head.bias"])[:, 0].numpy()
    torch.save({"model": sd}, path)
    return dict(zip(paths, ref32, strict=True)), dict(zip(paths, ref64, strict=True))



def settings(*extra: str) -> list[str]:
    return [arg for s in (*SETTINGS, *extra) for arg in ("--set", s)]


def test_released_checkpoint_scores_as_the_original_eval(image_root: Path, tmp_path: Path,
                                                        detbench_home: Path) -> None:
    ckpt = tmp_path / "model_epoch_best.pth"
    ref32, ref64 = make_checkpoint(image_root, ckpt)
    result = invoke("run", "bfree", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    *settings(f"weights={ckpt}"))
    assert result.exit_code == 0, result.output
    # float32 scores vs the float64 reference within 4x the float32 rounding error this reference shows
    # (err32 = max |ref32 - ref64|) + 4 eps32: see tests/equivalence.py; a wrong window, wrap or normalisation
    # is >> this bound
    record = assert_released_run_matches(detbench_home, "bfree", ref32, ref64, images=len(IMAGES))
    identity = record["key"]["detector_identity"]
    assert identity["eval_preprocessing"]["resize"] == "none"


def test_a_wrong_checkpoint_is_refused_naming_its_keys(tmp_path: Path, image_root: Path) -> None:
    sd = random_state()
    sd["fc.weight"] = sd.pop("head.weight")
    del sd["reg_token"]
    torch.save({"model": sd}, tmp_path / "wrong.pth")
    result = invoke("run", "bfree", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    *settings(f"weights={tmp_path / 'wrong.pth'}"))
    assert_refused_naming(result, "reg_token", "head.weight", "fc.weight")


def test_registry_facts() -> None:
    info = DETECTORS.info("bfree")
    assert info is not None and info.year == 2025 and info.weights_key == "weights"
    assert "model_epoch_best.pth" in info.released and "non-commercial" in info.released
