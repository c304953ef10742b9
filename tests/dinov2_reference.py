"""A DINOv2 ViT-S/14 re-derived from its published code, with random weights in torch.hub's checkpoint layout, the
notebook's preprocessing and a small folder tree: the reference side of the training-free detectors' tests (RIGID,
Contrastive Blur, MINDER)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
DIM, DEPTH, HEADS, PATCH, TRAINED_GRID = 384, 12, 6, 14, 37  # DINOv2 ViT-S/14, trained at 518 px
SIZE = 56  # a 4x4 patch grid
SIZES = [(45, 61), (70, 50), (64, 64), (33, 80)]


def hub_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in torch.hub's ``dinov2_vits14_pretrain.pth`` layout (with its ``mask_token``); values
    far from the initialisation (layer scales near 1, large position embeddings) so every part matters."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 0.05, offset: float = 0.0) -> torch.Tensor:
        return offset + scale * torch.randn(*shape, generator=g)

    sd = {"cls_token": rnd(1, 1, DIM, scale=1.0), "pos_embed": rnd(1, 1 + TRAINED_GRID**2, DIM, scale=0.5),
          "mask_token": rnd(1, DIM), "patch_embed.proj.weight": rnd(DIM, 3, PATCH, PATCH),
          "patch_embed.proj.bias": rnd(DIM), "norm.weight": rnd(DIM, scale=0.1, offset=1.0),
          "norm.bias": rnd(DIM, scale=0.1)}
    for i in range(DEPTH):
        p = f"blocks.{i}."
        sd |= {p + "norm1.weight": rnd(DIM, scale=0.1, offset=1.0), p + "norm1.bias": rnd(DIM, scale=0.1),
               p + "attn.qkv.weight": rnd(3 * DIM, DIM), p + "attn.qkv.bias": rnd(3 * DIM),
               p + "attn.proj.weight": rnd(DIM, DIM), p + "attn.proj.bias": rnd(DIM),
               p + "ls1.gamma": rnd(DIM, scale=0.2, offset=0.8), p + "norm2.weight": rnd(DIM, scale=0.1, offset=1.0),
               p + "norm2.bias": rnd(DIM, scale=0.1), p + "mlp.fc1.weight": rnd(4 * DIM, DIM),
               p + "mlp.fc1.bias": rnd(4 * DIM), p + "mlp.fc2.weight": rnd(DIM, 4 * DIM),
               p + "mlp.fc2.bias": rnd(DIM), p + "ls2.gamma": rnd(DIM, scale=0.2, offset=0.8)}
    return sd


def dinov2_class_token(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """DINOv2's forward (``dinov2/models/vision_transformer.py``, hub defaults): patch embedding, class token,
    position embeddings interpolated bicubically by the scale factor (grid + 0.1) / 37 without antialias, pre-norm
    blocks with layer scale, final LayerNorm (eps 1e-6), class token."""
    b = x.shape[0]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=PATCH)
    gh, gw = t.shape[-2:]
    t = torch.cat([sd["cls_token"].expand(b, -1, -1), t.flatten(2).transpose(1, 2)], dim=1)
    grid = sd["pos_embed"][:, 1:].reshape(1, TRAINED_GRID, TRAINED_GRID, DIM).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((gh + 0.1) / TRAINED_GRID, (gw + 0.1) / TRAINED_GRID), mode="bicubic",
                         antialias=False)
    t = t + torch.cat([sd["pos_embed"][:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, DIM)], dim=1)
    n, hd = t.shape[1], DIM // HEADS
    for i in range(DEPTH):
        p = f"blocks.{i}."
        h = F.layer_norm(t, (DIM,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps=1e-6)
        q, k, v = F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"]).reshape(
            b, n, 3, HEADS, hd).permute(2, 0, 3, 1, 4)
        attn = ((q * hd**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        h = (attn @ v).transpose(1, 2).reshape(b, n, DIM)
        h = F.linear(h, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        t = t + sd[p + "ls1.gamma"] * h
        h = F.layer_norm(t, (DIM,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps=1e-6)
        h = F.linear(F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])), sd[p + "mlp.fc2.weight"],
                     sd[p + "mlp.fc2.bias"])
        t = t + sd[p + "ls2.gamma"] * h
    return F.layer_norm(t, (DIM,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)[:, 0]


def notebook_input(path: Path, size: int = SIZE) -> torch.Tensor:
    """RIGID's notebook transform: ``Resize((S, S))`` (PIL bilinear), ``ToTensor``, ImageNet normalisation.

    Returns:
        ``[1, 3, S, S]`` float32.
    """
    img = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)
    return ((x - IMAGENET_MEAN) / IMAGENET_STD).unsqueeze(0)


def write_hub_checkpoint(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """Random DINOv2 ViT-S/14 weights saved as torch.hub's ``dinov2_vits14_pretrain.pth``."""
    sd = hub_state_dict()
    path = folder / "dinov2_vits14_pretrain.pth"
    torch.save(sd, path)
    return path, sd


def write_folder_tree(root: Path) -> Path:
    """Odd-sized smooth random images under test/ (the eval split) and a few under train/ (a training protocol)."""
    rng = np.random.default_rng(0)
    for split, sizes in (("test", SIZES), ("train", SIZES[:2])):
        for label in ("0_real", "1_fake"):
            folder = root / split / "gen" / label
            folder.mkdir(parents=True)
            for i, (w, h) in enumerate(sizes):
                base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
                img = Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC)
                img.save(folder / f"{i}.png")
    return root
