"""SPAI against its authors' inference, re-derived here from their published code (never imported).

The reference: ``build_transform`` (test split, ``TEST.ORIGINAL_RESOLUTION``) pads each image centred with
reflect-101 to at least the patch side (albumentations ``PadIfNeeded``: top ``(side - h) // 2``, the rest at the
bottom), divides by 255 and keeps its size; ``PatchBasedMFViT.forward_arbitrary_resolution_batch`` cuts it into
patches at the stride (``unfold`` row by row, the remainder dropped), or, below ``MINIMUM_PATCHES``, into
torchvision's five crops (top-left, top-right, bottom-left, bottom-right, centre at ``round((H - side) / 2)``);
``MFViT`` filters each patch in the centre-shifted DFT with the circular mask (and its complement), clamps both
views to [0, 1], normalises the three with ImageNet's statistics and runs the MFM ViT (no LayerScale, q/v biases,
LayerNorm eps 1e-6) keeping every block's patch tokens; the ``FrequencyRestorationEstimator`` projects them per
block, takes the mean and unbiased std over tokens of the three cosine similarities and appends the spectral context
vector; the spectral context attention (a learnt query, keys/values from one bias-free linear) fuses an image's
patches, then a LayerNorm and the MLP head give the logit. All of it is written out below with plain tensor
operations. A tiny network of the same family (32 px patches of 8 px tokens, width 16, two blocks) keeps it fast;
random weights are saved as the original's ``{'model': state_dict, 'epoch': ...}`` in its key layout.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import invoke
from equivalence import (
    assert_matches_reference,
    assert_refused_naming,
    assert_released_run_matches,
    double_state,
    released_run,
    write_test_images,
)
from PIL import Image
from released_layouts import yacs_cfgnode
from torch.nn import functional as F

from detbench.registry import DETECTORS

ARCH = {"crop": 32, "stride": 32, "patch": 8, "mask_radius": 6, "width": 16, "depth": 2, "heads": 2,
        "proj_dim": 8, "attn_heads": 2, "attn_dim": 8, "head_ratio": 2}
SETTINGS = [f"{k}={v}" for k, v in ARCH.items()]
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
IMAGES = [  # (generator, label folder, name, width, height)
    ("sdxl", "0_real", "a.png", 20, 17),  # smaller on both sides: padded (odd padding), then five equal crops
    ("sdxl", "0_real", "b.png", 101, 41),  # three patches, fewer than four: five crops, centre rounded half-even
    ("sdxl", "1_fake", "c.png", 70, 66),  # a 2 x 2 grid, the remainder dropped
    ("dalle", "0_real", "d.png", 96, 64),  # a 3 x 2 grid
    ("dalle", "1_fake", "e.png", 50, 20),  # padded in height only
    ("dalle", "1_fake", "f.png", 130, 99),  # a 4 x 3 grid
]
PATHS = [f"{gen}/{label}/{name}" for gen, label, name, _w, _h in IMAGES]


def reflect101(n: int, before: int, after: int) -> np.ndarray:
    """Source indices of a reflect-101 padded axis (OpenCV's ``BORDER_REFLECT_101``)."""
    idx = np.arange(-before, n + after)
    while ((idx < 0) | (idx >= n)).any():
        idx = np.where(idx < 0, -idx, idx)
        idx = np.where(idx >= n, 2 * (n - 1) - idx, idx)
    return idx


def original_input(path: Path, side: int) -> np.ndarray:
    a = np.asarray(Image.open(path).convert("RGB"))
    h, w = a.shape[:2]
    top = int((side - h) / 2.0) if h < side else 0
    left = int((side - w) / 2.0) if w < side else 0
    rows = reflect101(h, top, max(side - h - top, 0))
    cols = reflect101(w, left, max(side - w - left, 0))
    a = a[rows][:, cols].astype(np.float32) * np.float32(1 / 255.0)
    return np.ascontiguousarray(a.transpose(2, 0, 1))[None]


def original_patches(x: torch.Tensor, side: int, stride: int, minimum: int) -> list[torch.Tensor]:
    h, w = x.shape[-2:]
    grid = [x[..., i:i + side, j:j + side] for i in range(0, h - side + 1, stride)
            for j in range(0, w - side + 1, stride)]
    if len(grid) >= minimum:
        return grid
    top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
    return [x[..., :side, :side], x[..., :side, w - side:], x[..., h - side:, :side], x[..., h - side:, w - side:],
            x[..., top:top + side, left:left + side]]


def original_mask(side: int, radius: float) -> torch.Tensor:
    half = list(range(side // 2))
    coords = torch.tensor(half[::-1] + half, dtype=torch.float)
    xs, ys = coords[None, :].expand(side, side), coords[:, None].expand(side, side)
    return (torch.sqrt(xs * xs + ys * ys) < radius).long()


def ln(x: torch.Tensor, sd: dict, key: str, eps: float) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), sd[key + ".weight"], sd[key + ".bias"], eps)


def lin(x: torch.Tensor, sd: dict, key: str) -> torch.Tensor:
    return x @ sd[key + ".weight"].T + (sd[key + ".bias"] if key + ".bias" in sd else 0)


def vit_tokens(x: torch.Tensor, sd: dict) -> list[torch.Tensor]:
    p = "mfvit.vit."
    heads, patch = ARCH["heads"], ARCH["patch"]
    z = F.conv2d(x, sd[p + "patch_embed.proj.weight"], sd[p + "patch_embed.proj.bias"], stride=patch)
    z = torch.cat([sd[p + "cls_token"], z.flatten(2).transpose(1, 2)], 1) + sd[p + "pos_embed"]
    n, d = z.shape[1], z.shape[2]
    kept = []
    for b in range(ARCH["depth"]):
        q = f"{p}blocks.{b}."
        y = ln(z, sd, q + "norm1", 1e-6)
        bias = torch.cat([sd[q + "attn.q_bias"], torch.zeros_like(sd[q + "attn.v_bias"]), sd[q + "attn.v_bias"]])
        qkv = (y @ sd[q + "attn.qkv.weight"].T + bias).reshape(1, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax((qkv[0] / math.sqrt(d // heads)) @ qkv[1].transpose(-1, -2), -1) @ qkv[2]
        z = z + lin(a.transpose(1, 2).reshape(1, n, d), sd, q + "attn.proj")
        y = ln(z, sd, q + "norm2", 1e-6)
        z = z + lin(F.gelu(lin(y, sd, q + "mlp.fc1")), sd, q + "mlp.fc2")
        kept.append(z[0, 1:])
    return kept


def projector(x: torch.Tensor, sd: dict, key: str, input_norm: bool, last_gelu: bool) -> torch.Tensor:
    if input_norm:
        x = ln(x, sd, key + ".norm1", 1e-5)
    x = F.gelu(lin(x, sd, key + ".projector.1"))
    x = lin(x, sd, key + ".projector.4")
    return ln(F.gelu(x) if last_gelu else x, sd, key + ".norm2", 1e-5)


def patch_vector(patch: torch.Tensor, sd: dict, mask: torch.Tensor, fft_dtype: torch.dtype) -> torch.Tensor:
    spectrum = torch.fft.fftshift(torch.fft.fft2(patch.to(fft_dtype)))  # all dims shifted, as the original
    low = torch.fft.ifft2(torch.fft.ifftshift(spectrum * mask)).real.clamp(0, 1).to(patch.dtype)
    high = torch.fft.ifft2(torch.fft.ifftshift(spectrum * (1 - mask))).real.clamp(0, 1).to(patch.dtype)
    mean = torch.tensor(MEAN, dtype=patch.dtype).view(3, 1, 1)
    std = torch.tensor(STD, dtype=patch.dtype).view(3, 1, 1)
    fre = "mfvit.features_processor."
    views = []
    for v in (patch, low, high):
        tokens = vit_tokens((v - mean) / std, sd)
        views.append([projector(t, sd, f"{fre}patch_projector.projectors.{i}", True, False)
                      for i, t in enumerate(tokens)])
    orig, lo, hi = views
    stats: list[list[torch.Tensor]] = [[], [], [], [], [], []]
    for i in range(ARCH["depth"]):
        for j, (a, b) in enumerate(((orig[i], lo[i]), (orig[i], hi[i]), (lo[i], hi[i]))):
            cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
            stats[2 * j].append(cos.mean())
            stats[2 * j + 1].append(cos.std())
    ofp = fre + "original_features_processor."
    per_block = torch.stack([projector(torch.cat([t.mean(0), t.std(0)]), sd, ofp + "proj1", False, True)
                             for t in orig])
    context = projector((torch.softmax(sd[ofp + "alpha"][0], 0) * per_block).sum(0), sd, ofp + "proj2", False, True)
    return torch.cat([torch.stack(s) for s in stats] + [context])


def reference_hidden(x: np.ndarray, sd: dict, fft_dtype: torch.dtype) -> torch.Tensor:
    """The head's input to its last linear for one image (the rest of the head is linear)."""
    t = torch.from_numpy(x).to(sd["norm.weight"].dtype)
    mask = sd["mfvit.frequencies_mask"]
    vectors = torch.stack([patch_vector(p, sd, mask, fft_dtype)
                           for p in original_patches(t, ARCH["crop"], ARCH["stride"], 4)])
    heads = ARCH["attn_heads"]
    kv = vectors @ sd["to_kv.weight"].T
    k, v = kv[:, :ARCH["attn_dim"]], kv[:, ARCH["attn_dim"]:]
    fused = []
    for h in range(heads):
        dh = ARCH["attn_dim"] // heads
        kh, vh = k[:, h * dh:(h + 1) * dh], v[:, h * dh:(h + 1) * dh]
        weights = torch.softmax(sd["patch_aggregator"][h, 0] @ kh.T / math.sqrt(dh), 0)
        fused.append(weights @ vh)
    y = ln(torch.cat(fused) @ sd["to_out.0.weight"].T, sd, "norm", 1e-5)
    y = F.relu(lin(y, sd, "cls_head.head.0"))
    return F.relu(lin(y, sd, "cls_head.head.3"))[None]


def original_layout() -> dict[str, tuple[int, ...]]:
    """The key layout of ``PatchBasedMFViT``'s state dict for the tiny architecture (built by hand)."""
    w, d, c, p = ARCH["width"], ARCH["depth"], ARCH["crop"], ARCH["patch"]
    proj, e, h = ARCH["proj_dim"], ARCH["attn_dim"], ARCH["attn_heads"]
    dim, hidden = 6 * d + proj, (6 * d + proj) * ARCH["head_ratio"]
    tokens = (c // p) ** 2 + 1
    shapes: dict[str, tuple[int, ...]] = {}
    v = "mfvit.vit."
    shapes.update({v + "cls_token": (1, 1, w), v + "pos_embed": (1, tokens, w), v + "cls_pos_embed": (1, tokens, w),
                   v + "actual_cls_token": (1, 1, w), v + "patch_embed.proj.weight": (w, 3, p, p),
                   v + "patch_embed.proj.bias": (w,), v + "fc_norm.weight": (w,), v + "fc_norm.bias": (w,),
                   v + "head.weight": (2, w * d), v + "head.bias": (2,)})
    for block in [f"blocks.{i}" for i in range(d)] + ["cls_blocks.0"]:
        b = v + block + "."
        shapes.update({b + "norm1.weight": (w,), b + "norm1.bias": (w,), b + "attn.q_bias": (w,),
                       b + "attn.v_bias": (w,), b + "attn.qkv.weight": (3 * w, w), b + "attn.proj.weight": (w, w),
                       b + "attn.proj.bias": (w,), b + "norm2.weight": (w,), b + "norm2.bias": (w,),
                       b + "mlp.fc1.weight": (4 * w, w), b + "mlp.fc1.bias": (4 * w,),
                       b + "mlp.fc2.weight": (w, 4 * w), b + "mlp.fc2.bias": (w,)})
    for i in range(d):
        shapes.update({f"{v}intermediate_fc_norm.{i}.weight": (w,), f"{v}intermediate_fc_norm.{i}.bias": (w,)})
        q = f"mfvit.features_processor.patch_projector.projectors.{i}."
        shapes.update({q + "norm1.weight": (w,), q + "norm1.bias": (w,), q + "projector.1.weight": (proj, w),
                       q + "projector.1.bias": (proj,), q + "projector.4.weight": (proj, proj),
                       q + "projector.4.bias": (proj,), q + "norm2.weight": (proj,), q + "norm2.bias": (proj,)})
    o = "mfvit.features_processor.original_features_processor."
    shapes[o + "alpha"] = (1, d, proj)
    for name, width_in in (("proj1", 2 * proj), ("proj2", proj)):
        shapes.update({f"{o}{name}.projector.1.weight": (proj, width_in), f"{o}{name}.projector.1.bias": (proj,),
                       f"{o}{name}.projector.4.weight": (proj, proj), f"{o}{name}.projector.4.bias": (proj,),
                       f"{o}{name}.norm2.weight": (proj,), f"{o}{name}.norm2.bias": (proj,)})
    shapes.update({"patch_aggregator": (h, 1, e // h), "to_kv.weight": (2 * e, dim), "to_out.0.weight": (dim, e),
                   "norm.weight": (dim,), "norm.bias": (dim,), "cls_head.head.0.weight": (hidden, dim),
                   "cls_head.head.0.bias": (hidden,), "cls_head.head.3.weight": (hidden, hidden),
                   "cls_head.head.3.bias": (hidden,), "cls_head.head.6.weight": (1, hidden),
                   "cls_head.head.6.bias": (1,)})
    return shapes


def random_state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    sd: dict[str, torch.Tensor] = {}
    for key, shape in original_layout().items():
        noise = torch.randn(shape, generator=gen)
        norm = key.endswith(("norm1.weight", "norm2.weight", "norm.weight")) and "head" not in key
        sd[key] = 1 + 0.1 * noise if norm else 0.4 * noise
    sd["mfvit.frequencies_mask"] = original_mask(ARCH["crop"], ARCH["mask_radius"])
    return sd


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_images(tmp_path_factory.mktemp("folder"), IMAGES, seed=11, noise=(6, 10))


def reference_scores(sd: dict, inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """P(fake) of the original for these inputs in float32 (the DFT in float32, as the original) and float64."""
    with torch.no_grad():
        hidden = torch.cat([reference_hidden(x, sd, torch.float32) for x in inputs])
        ref32 = torch.sigmoid(lin(hidden, sd, "cls_head.head.6"))[:, 0].double().numpy()
        sd64 = double_state(sd)
        hidden64 = torch.cat([reference_hidden(x.astype(np.float64), sd64, torch.float64) for x in inputs])
        ref64 = torch.sigmoid(lin(hidden64, sd64, "cls_head.head.6"))[:, 0].numpy()
    return ref32, ref64


def make_checkpoint(root: Path, path: Path) -> dict[str, torch.Tensor]:
    """Random weights with a last head layer spreading these images' logits, saved in the original's wrapper."""
    sd = random_state()
    inputs = [original_input(root / p, ARCH["crop"]) for p in PATHS]
    with torch.no_grad():
        hidden = torch.cat([reference_hidden(x, sd, torch.float32) for x in inputs])
        centred = hidden - hidden.mean(0)
        direction = centred[0] - centred[1:].mean(0)
        spread = (centred @ direction).std()
        sd["cls_head.head.6.weight"] = (2.0 * direction / spread)[None]
        sd["cls_head.head.6.bias"] = -(hidden.mean(0) @ sd["cls_head.head.6.weight"][0])[None]
    torch.save({"model": sd, "epoch": 34, "max_accuracy": 0.5}, path)
    return sd



def settings(*extra: str) -> list[str]:
    return [arg for s in (*SETTINGS, *extra) for arg in ("--set", s)]


def test_released_checkpoint_scores_as_the_original_eval(image_root: Path, tmp_path: Path,
                                                        detbench_home: Path) -> None:
    ckpt = tmp_path / "spai.pth"
    ref32, ref64 = (dict(zip(PATHS, r, strict=True)) for r in reference_scores(
        make_checkpoint(image_root, ckpt), [original_input(image_root / p, ARCH["crop"]) for p in PATHS]))
    result = invoke("run", "spai", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    *settings(f"weights={ckpt}"))
    assert result.exit_code == 0, result.output
    # float32 scores vs the float64 reference within 4x the float32 rounding error this reference shows
    # (err32 = max |ref32 - ref64|) + 4 eps32: see tests/equivalence.py; a wrong patch, crop, padding, filter or
    # fusion is >> this bound
    record = assert_released_run_matches(detbench_home, "spai", ref32, ref64, images=len(IMAGES))
    identity = record["key"]["detector_identity"]
    assert identity["eval_preprocessing"]["resize"] == "none"


def test_the_training_checkpoint_with_its_yacs_config_scores_as_the_original(
        image_root: Path, tmp_path: Path, detbench_home: Path) -> None:
    """``utils.save_checkpoint``'s layout, the one ``load_pretrained`` reads back with ``weights_only=False``: the
    weights beside the optimizer, scheduler and apex amp states and the frozen yacs ``CfgNode`` of the run. torch's
    weights-only unpickler refuses the node even when allow-listed (it sets items only on plain dicts); detbench reads
    it as an inert mapping, needing no yacs and running none of its code, and scores with the weights."""
    ckpt, marker = tmp_path / "spai.pth", tmp_path / "yacs-code-ran"
    sd = make_checkpoint(image_root, ckpt)
    with yacs_cfgnode(marker) as node:
        config = node({"MODEL": node({"TYPE": "vit", "NUM_CLASSES": 1, "SID_APPROACH": "freq_restoration"}),
                       "TRAIN": node({"EPOCHS": 35, "BASE_LR": 5e-4}), "AMP_OPT_LEVEL": "O1",
                       "PRETRAINED": "./weights/mfm_pretrain_vit_base.pth"})
        config.freeze()
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=5e-4, weight_decay=0.05)
        scheduler = {"t_initial": 35, "lr_min": 2.5e-7, "warmup_t": 5, "base_values": [5e-4], "noise_range_t": None,
                     "param_group_field": "lr"}
        torch.save({"model": sd, "optimizer": optimizer.state_dict(), "lr_scheduler": scheduler, "max_accuracy": 0.5,
                    "epoch": 34, "config": config, "amp": {"loss_scaler0": {"loss_scale": 65536.0, "unskipped": 0}}},
                   ckpt)
    ref32, ref64 = (dict(zip(PATHS, r, strict=True)) for r in reference_scores(
        sd, [original_input(image_root / p, ARCH["crop"]) for p in PATHS]))
    result = invoke("run", "spai", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    *settings(f"weights={ckpt}"))
    assert result.exit_code == 0, result.output
    assert_released_run_matches(detbench_home, "spai", ref32, ref64, images=len(IMAGES))
    assert not marker.exists()


def test_a_wrong_checkpoint_is_refused_naming_its_keys(tmp_path: Path, image_root: Path) -> None:
    sd = random_state()
    sd["cls_head.fc.weight"] = sd.pop("cls_head.head.6.weight")
    del sd["mfvit.frequencies_mask"]
    torch.save({"model": sd}, tmp_path / "wrong.pth")
    result = invoke("run", "spai", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    *settings(f"weights={tmp_path / 'wrong.pth'}"))
    assert_refused_naming(result, "mfvit.frequencies_mask", "cls_head.head.6.weight", "cls_head.fc.weight")


def test_registry_facts() -> None:
    info = DETECTORS.info("spai")
    assert info is not None and info.year == 2025 and info.weights_key == "weights"
    assert "spai.pth" in info.released and "Apache-2.0" in info.released


def test_a_set_tile_is_scored_as_an_image_by_the_same_policy(image_root: Path, tmp_path: Path,
                                                             detbench_home: Path) -> None:
    """``eval.tiles=center``: each image's centre crop of the patch side (the whole side where it is shorter), cut at
    torchvision ``CenterCrop``'s offset, scored as the original scores that crop as an image."""
    ckpt = tmp_path / "spai.pth"
    sd = make_checkpoint(image_root, ckpt)
    side = ARCH["crop"]
    inputs = []
    for p in PATHS:
        img = Image.open(image_root / p).convert("RGB")
        w, h = img.size
        tw, th = min(side, w), min(side, h)
        top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
        tile = tmp_path / "tile.png"
        img.crop((left, top, left + tw, top + th)).save(tile)
        inputs.append(original_input(tile, side))
    ref32, ref64 = reference_scores(sd, inputs)
    result = invoke("run", "spai", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    *settings(f"weights={ckpt}", "eval.tiles=center"))
    assert result.exit_code == 0, result.output
    record, scores = released_run(detbench_home, "spai")
    assert (scores["status"] == "ok").all() and (scores["n_tiles"] == 1).all()
    order = [PATHS.index(p) for p in scores["path"]]
    assert_matches_reference(scores["score"], ref32[order], ref64[order])
