"""DDA (Chen et al., "Dual Data Alignment Makes AI-Generated Image Detector Easier Generalizable", NeurIPS 2025).

Faithful to the authors' code (roy-ch/Dual-Data-Alignment: ``Inference/inference.py``,
``Inference/models/dinov2_models_lora.py``, ``dinov2_models.py`` and ``lora.py``; ``Training/train.sh``,
``options.py``, ``networks/trainer.py`` and ``data/datasets.py`` for the recipe):

- **Network** (``DINOv2ModelWithLoRA('dinov2_vitl14', lora_rank=8, lora_alpha=1)``): torch.hub's DINOv2 ViT-L/14
  (no registers, LayerScale, trained at 518 px: a 37 x 37 position grid, resampled at every forward pass to the
  input's grid bicubically by the scale factor ``(grid + 0.1) / 37`` without antialiasing, in float32; unchanged for
  a square input of the trained grid), every ``nn.Linear`` whose name contains ``attn.qkv``, ``attn.proj``,
  ``mlp.fc1`` or ``mlp.fc2`` wrapped as ``LoRALinear``: ``original_layer(x) + (x A^T) B^T * alpha / rank`` (the
  branch on the activations, never merged into the weight), then ``fc = Linear(1024, 1)`` on ``x_norm_clstoken`` (the
  class token after the final LayerNorm). P(fake) = ``sigmoid`` of the float32 logit.
- **Released checkpoint** (``ckpt.pth``, Hugging Face ``Junwei-Xi/Dual-Data-Alignment``, Apache-2.0 as the code):
  ``{'model': state_dict}`` (beside ``optimizer`` and ``total_steps`` when saved by ``save_networks``) in the
  wrapper's key layout: ``base_model.model.`` (the hub ViT: ``cls_token``, ``pos_embed`` [1, 1370, 1024],
  ``mask_token``, ``patch_embed.proj.*``, ``blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1,
  mlp.fc2, ls2.gamma}``, ``norm.*``; a wrapped linear as ``….original_layer.{weight,bias}`` and
  ``….lora.{lora_A,lora_B}``) and ``base_model.fc.*``. Loaded weights-only and strictly.
- **Evaluation** (``inference.py``): ``CenterCrop(336)`` of the unresized image (zero-padded where a side is
  smaller, as torchvision pads), ``ToTensor``, CLIP's mean/std; the same for every test set.
- **Training** (``train.sh``): LoRA factors and ``fc`` trained (``fc.weight`` ~ N(0, 0.02)), everything else
  frozen; AdamW (lr 1e-4, betas 0.9/0.999, no weight decay), cosine annealing per optimizer step with
  ``T_max`` 1000 and ``eta_min = lr / 1000`` (periodic past ``T_max``, as ``CosineAnnealingLR``); one epoch;
  loss ``0.5 * BCE + 0.5 * contrastive`` on the class-token features (pytorch-metric-learning's
  ``ContrastiveLoss(pos_margin=0, neg_margin=1)``: L2 distances of the normalised features over all ordered pairs,
  positives ``d``, negatives ``relu(1 - d)``, each averaged over its non-zero terms). The data are real images
  (label 0) and their VAE reconstructions (label 1; the original's ``vae_rec.py`` makes them with a diffusers
  ``AutoencoderKL``, ``stabilityai/stable-diffusion-2-1``): ``train_data=reconstructions`` pairs each real
  training image with ``reconstructions/STEM.png`` (as ``datasets.py`` pairs them; reals without one are skipped);
  ``train_data=suite`` trains on the suite's real and generated training images instead (a stand-in).

Departures, recorded in the README: training augments each image by itself with the original's per-image chain
(:class:`TrainAugment`; ``augment=flip-crop``: flips and the crop alone), drawn per image, where the original draws
it once per pair and applies it to the real image, its reconstruction and their rescaled copies alike; the pair-wise
steps (the reconstruction JPEG-compressed at its real image's quality half the time, pixel and frequency mixing of
the pair, two rescaled copies of both) are not reproduced; one batch of ``train_batch_size`` images per optimizer
step instead of 16 samples times 4 accumulation steps. detbench makes no reconstructions itself (no VAE offline).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision import transforms
from torchvision.transforms import functional as TF

from detbench.config import ConfigError
from detbench.errors import DataError
from detbench.kit.classifier import ClassifierDetector, EvalPreprocessing
from detbench.kit.detector import RunContext
from detbench.kit.schedules import EpochOutcome, Schedule
from detbench.kit.seeded_data import TorchDrawn
from detbench.kit.sensitivity import DINOV2_BACKBONE
from detbench.kit.training import TrainSetup
from detbench.models.backbones.timm_adapter import resample_pos_embed
from detbench.probabilities import sigmoid

from .effort import clip_tensor
from .lora import wrap_linears

LORA_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
NO_BACKBONE = ""  # backbone setting: start training from a random initialisation (a stand-in)


# ---------------------------------------------------------------------------------------------- network


class PatchEmbed(nn.Module):
    """DINOv2's patch embedding (``patch_embed.proj``: a stride-``patch`` convolution), tokens ``[B, N, D]``."""

    def __init__(self, patch: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> ``[B, (H // patch) * (W // patch), D]``."""
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2(nn.Module):
    """torch.hub's DINOv2 ViT (``dinov2/models/vision_transformer.py``, no registers) under its own key names."""

    def __init__(self, patch: int, width: int, depth: int, heads: int, pos_grid: int) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        self.patch = patch
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pos_grid**2, width))
        self.mask_token = nn.Parameter(torch.zeros(1, width))  # masked pre-training only: never read here
        self.patch_embed = PatchEmbed(patch, width)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList([Block(width, heads, mlp_ratio=4.0, qkv_bias=True, init_values=1.0,
                                           norm_layer=norm) for _ in range(depth)])
        self.norm = norm(width)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def positions(self, rows: int, cols: int, height: int, width: int) -> Tensor:
        """``interpolate_pos_encoding``: the trained embeddings for a square input of the trained grid, else
        resampled to ``rows x cols`` (bicubic, scale factor ``(grid + 0.1) / trained``, no antialias, float32).
        """
        trained = self.pos_embed.shape[1] - 1
        if rows * cols == trained and height == width:
            return self.pos_embed
        return resample_pos_embed(self.pos_embed, (rows, cols), 1, "dinov2")

    def forward(self, x: Tensor) -> Tensor:
        """``forward_features(x)['x_norm_clstoken']``: ``[B, 3, H, W]`` -> ``[B, D]``."""
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        pos = self.positions(x.shape[-2] // self.patch, x.shape[-1] // self.patch, x.shape[-2], x.shape[-1])
        tokens = tokens + pos.to(tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


class _Base(nn.Module):
    """``DINOv2Model``: the ViT (``model``) and the linear head (``fc``)."""

    def __init__(self, vit: DinoV2, width: int) -> None:
        super().__init__()
        self.model = vit
        self.fc = nn.Linear(width, 1)


class DDANet(nn.Module):
    """``DINOv2ModelWithLoRA``: its state dict is the released checkpoint's, key for key."""

    def __init__(self, c: DDAConfig) -> None:
        super().__init__()
        vit = DinoV2(c.patch, c.width, c.depth, c.heads, c.pos_grid)
        self.base_model = _Base(vit, c.width)
        wrap_linears(vit, LORA_TARGETS, c.lora_rank, c.lora_alpha)
        for name, p in self.named_parameters():  # the LoRA factors and the head train
            p.requires_grad_(".lora." in name or name.startswith("base_model.fc."))

    def features(self, x: Tensor) -> Tensor:
        """The class token after the final norm, ``[B, D]``."""
        return self.base_model.model(x)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> ``[B, 1]`` logits."""
        return self.base_model.fc(self.features(x))


class _TrainingForward(nn.Module):
    """Training's view of the network: ``[B, 1 + D]`` (the logit, then the features the contrastive loss reads)."""

    def __init__(self, net: DDANet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        """The logit and the features side by side."""
        feats = self.net.features(x)
        return torch.cat([self.net.base_model.fc(feats), feats], dim=1)


# ---------------------------------------------------------------------------------------------- training parts


def contrastive_loss(features: Tensor, labels: Tensor, neg_margin: float = 1.0) -> Tensor:
    """pytorch-metric-learning's ``ContrastiveLoss(pos_margin=0, neg_margin=1)`` with its defaults.

    L2 distances of the L2-normalised features over all ordered pairs ``i != j``; positives (same label) cost
    ``d``, negatives ``relu(neg_margin - d)``; each kind is averaged over its non-zero terms (0 when none) and the
    two averages are summed.

    Args:
        features: ``[B, D]``.
        labels: ``[B]``.
        neg_margin: the negative margin.

    Returns:
        The scalar loss.
    """
    z = F.normalize(features.float(), dim=1)
    d = torch.cdist(z, z).clamp_min(0)
    same = labels[:, None] == labels[None, :]
    off = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    total = features.new_zeros((), dtype=torch.float32)
    for terms in (d[same & off], F.relu(neg_margin - d[~same])):
        nonzero = terms > 0
        if nonzero.any():
            total = total + terms[nonzero].mean()
    return total


def dda_loss(outputs: Tensor, labels: Tensor) -> Tensor:
    """``0.5 * BCE(logit) + 0.5 * contrastive(features)`` (``trainer.optimize_parameters``).

    Args:
        outputs: ``[B, 1 + D]`` from the training forward.
        labels: ``[B]`` float, 1 = fake.

    Returns:
        The scalar loss.
    """
    bce = F.binary_cross_entropy_with_logits(outputs[:, 0], labels)
    return 0.5 * bce + 0.5 * contrastive_loss(outputs[:, 1:], labels)


class AnnealingSteps(Schedule):
    """``CosineAnnealingLR(T_max, eta_min)`` stepped after every optimizer step: ``eta_min + (lr - eta_min) *
    (1 + cos(pi * step / T_max)) / 2`` (periodic past ``T_max``); every epoch kept, never stopped early.
    """

    def __init__(self, lr: float, *, t_max: int, eta_min: float) -> None:
        self.base_lr, self.t_max, self.eta_min = lr, t_max, eta_min

    def lr(self, step: int, epoch: int, steps_per_epoch: int) -> float:
        """The rate of optimizer step ``step`` (0-based).

        Args:
            step: the global step.
            epoch: unused.
            steps_per_epoch: unused.

        Returns:
            The learning rate.
        """
        return self.eta_min + (self.base_lr - self.eta_min) * 0.5 * (1 + math.cos(math.pi * step / self.t_max))

    def end_epoch(self, epoch: int, heldout: dict[str, float]) -> EpochOutcome:
        """Keep every epoch (the original saves the last one).

        Args:
            epoch: unused.
            heldout: unused.

        Returns:
            keep, never stop.
        """
        return EpochOutcome(keep=True, stop=False)


def _motion_kernel(size: int, angle: float) -> np.ndarray:
    """``MotionBlur``'s kernel: ones along a line through the centre at ``angle`` degrees, normalised."""
    kernel = np.zeros((size, size))
    centre, rad = size // 2, np.deg2rad(angle)
    for i in range(size):
        x = int(centre + np.round((i - centre) * np.cos(rad)))
        y = int(centre + np.round((i - centre) * np.sin(rad)))
        if 0 <= x < size and 0 <= y < size:
            kernel[y, x] = 1
    return kernel / kernel.sum()


def _cv2_gaussian_kernel(sigma: float) -> np.ndarray:
    """``cv2.getGaussianKernel`` for ``GaussianBlur(float32, (0, 0), sigma)``: ``round(8 * sigma + 1) | 1`` taps."""
    size = int(round(8 * sigma + 1)) | 1
    x = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


@dataclass(frozen=True)
class TrainAugment:
    """``create_train_transforms``' chain on one image, every draw from the image's own generator (``datasets.py``,
    ``custom_transforms.py``): JPEG (p 0.15, quality U{55..100}, 100 leaves the image), horizontal and vertical flips
    (p 0.5 each), Gaussian noise (p 0.1, std 55, truncated to 8 bits), pepper noise (p 0.1, 1-10 % of the pixels
    zeroed), one blur of four (p 0.2: Gaussian 3 or 5 px with sigma U(0.1, 2), median 3, motion 5 at an angle
    U(0, 180)), sharpening (p 0.1: ``x + U(1, 3) * (x - blur_sigma3(x))``), colour jitter (p 0.2: brightness,
    contrast, saturation 0.4 and hue 0.175 in a random order), greyscale (p 0.1), ``PadRandomCrop`` (a side under
    ``crop`` zero-padded evenly, the odd pixel right or bottom, then a random crop), then the normalised tensor.
    OpenCV's filters are written with scipy (its borders: replicate for the median, reflect-101 for the others).
    """

    crop: int

    def __call__(self, img: Any, rng: np.random.Generator) -> Tensor:
        """The augmented tensor of ``img``."""
        from PIL import Image
        from scipy import ndimage

        from detbench.data.perturbations import JpegQuality

        img = img.convert("RGB")
        if rng.random() < 0.15:
            quality = int(rng.integers(55, 101))
            img = img if quality == 100 else JpegQuality(quality).apply(img)
        if rng.random() < 0.5:
            img = TF.hflip(img)
        if rng.random() < 0.5:
            img = TF.vflip(img)
        if rng.random() < 0.1:
            noisy = np.asarray(img, dtype=np.float32) + rng.normal(0, 55, (img.height, img.width, 3))
            img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
        if rng.random() < 0.1:
            arr = np.array(img)
            n = int(arr.shape[0] * arr.shape[1] * rng.uniform(0.01, 0.10))
            arr[rng.integers(0, arr.shape[0], n), rng.integers(0, arr.shape[1], n)] = 0
            img = Image.fromarray(arr)
        if rng.random() < 0.2:
            kind = int(rng.integers(4))
            if kind < 2:
                sigma = float(rng.uniform(0.1, 2.0))
                img = TF.gaussian_blur(img, [3 + 2 * kind] * 2, [sigma, sigma])
            elif kind == 2:
                img = Image.fromarray(ndimage.median_filter(np.asarray(img), size=(3, 3, 1), mode="nearest"))
            else:
                kernel = _motion_kernel(5, float(rng.uniform(0, 180)))[:, :, None]
                out = ndimage.correlate(np.asarray(img, dtype=np.float64), kernel, mode="mirror")
                img = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
        if rng.random() < 0.1:
            arr = np.asarray(img, dtype=np.float32)
            blurred = arr
            for axis in (0, 1):
                blurred = ndimage.correlate1d(blurred, _cv2_gaussian_kernel(3.0), axis=axis, mode="mirror")
            sharp = arr + float(rng.uniform(1.0, 3.0)) * (arr - blurred)
            img = Image.fromarray(np.clip(sharp, 0, 255).astype(np.uint8))
        if rng.random() < 0.2:
            b, c, s = rng.uniform(0.6, 1.4, 3)
            h = float(rng.uniform(-0.175, 0.175))
            steps = (lambda x: TF.adjust_brightness(x, float(b)), lambda x: TF.adjust_contrast(x, float(c)),
                     lambda x: TF.adjust_saturation(x, float(s)), lambda x: TF.adjust_hue(x, h))
            for i in rng.permutation(4):
                img = steps[i](img)
        if rng.random() < 0.1:
            img = TF.rgb_to_grayscale(img, num_output_channels=3)
        w, h = img.size
        pad_w, pad_h = max(0, self.crop - w), max(0, self.crop - h)
        if pad_w or pad_h:
            img = TF.pad(img, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
        top = int(rng.integers(0, img.height - self.crop + 1))
        left = int(rng.integers(0, img.width - self.crop + 1))
        return clip_tensor()(TF.crop(img, top, left, self.crop, self.crop))


def reconstruction_rows(train: pd.DataFrame, folder: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The suite's real training rows and their reconstructions ``folder/STEM.png`` (label 1), as ``datasets.py``
    pairs them: a real image without a reconstruction is skipped; generated training rows are not used.

    Args:
        train: the suite's training rows.
        folder: the reconstructions.

    Returns:
        The rows (the reconstructions by absolute path) and the facts recorded.

    Raises:
        DataError: the folder holds no reconstruction of any real training image.
    """
    real = train[train["label"] == 0]
    recon = [folder / f"{Path(p).stem}.png" for p in real["path"]]
    has = np.array([p.is_file() for p in recon], dtype=bool)
    if not has.any():
        raise DataError(f"dda: {folder} holds no reconstruction STEM.png of the {len(real)} real training images")
    kept = real[has]
    fakes = pd.DataFrame({"path": [str(p) for p, ok in zip(recon, has, strict=True) if ok], "label": 1})
    rows = pd.concat([kept[["path", "label"]], fakes], ignore_index=True)
    facts = {"train_data": "reconstructions", "real_used": int(has.sum()), "real_without_reconstruction":
             int((~has).sum()), "generated_unused": int((train["label"] == 1).sum())}
    return rows, facts


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class DDAConfig:
    """DDA options: released weights or training (its data source), the architecture and the preprocessing."""

    weights: str = ""  # the released ckpt.pth ({'model': state_dict})[#sha256=HEX]; empty: train
    crop: int = 336  # inference.py's CenterCrop
    patch: int = 14
    width: int = 1024  # ViT-L/14
    depth: int = 24
    heads: int = 16
    pos_grid: int = 37  # the trained position grid (518 px / 14)
    lora_rank: int = 8
    lora_alpha: float = 1.0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    sigmoid_dtype: Literal["float32", "float64"] = "float32"  # the original's model(x).sigmoid()
    batch_size: int = 32  # evaluation batch
    # training (train.sh): where it starts and what it reads
    backbone: str = DINOV2_BACKBONE  # the DINOv2 ViT training starts from; "": random (a stand-in)
    train_data: Literal["reconstructions", "suite"] = "reconstructions"
    augment: Literal["original", "flip-crop"] = "original"  # the per-image chain, or flips and the crop alone
    reconstructions: str = ""  # folder of VAE reconstructions STEM.png of the real training images
    epochs: int = 1
    train_batch_size: int = 64  # images per optimizer step (16 samples x 4 accumulation steps)
    lr: float = 1e-4
    weight_decay: float = 0.0
    t_max: int = 1000  # CosineAnnealingLR's period in optimizer steps (eta_min = lr / 1000)
    checkpoint_every: int = 200

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: listing the ranges when any option is out of its range.
        """
        ok = (self.patch >= 1 and self.crop >= self.patch and self.width >= 1 and self.depth >= 1
              and self.heads >= 1 and self.width % self.heads == 0 and self.pos_grid >= 1 and self.lora_rank >= 1
              and self.lora_alpha > 0 and min(self.batch_size, self.epochs, self.train_batch_size, self.t_max) >= 1
              and self.lr > 0 and self.weight_decay >= 0 and self.checkpoint_every >= 0)
        if not ok:
            raise ConfigError("dda options need crop >= patch >= 1, width a multiple of heads, pos_grid, lora_rank, "
                              "batch_size, epochs, train_batch_size and t_max >= 1, lora_alpha and lr > 0, "
                              "weight_decay and checkpoint_every >= 0")


# ---------------------------------------------------------------------------------------------- detector


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "dda",
    "class": "DDA",
    "summary": ("DDA (NeurIPS 2025): DINOv2 ViT-L/14 with rank-8 LoRA on its attention and MLP linears and a "
                "linear head on the class token, a 336 px centre crop; released weights (or real/VAE training)."),
    "paper": "Chen et al., NeurIPS",
    "year": 2025,
    "training": "trains",
    "weights_key": "weights",
    "released": ("ckpt.pth from huggingface.co/Junwei-Xi/Dual-Data-Alignment (github.com/roy-ch/"
                 "Dual-Data-Alignment; Apache-2.0)"),
}


class DDA(ClassifierDetector):
    """DDA: DINOv2 ViT-L/14 with LoRA adapters and a linear head, on a 336 px centre crop."""

    name = REGISTRATION["name"]
    version = 1
    Config = DDAConfig
    summary = REGISTRATION["summary"]
    tiny_settings: ClassVar[dict[str, Any]] = {
        "crop": 32, "patch": 4, "width": 32, "depth": 2, "heads": 2, "pos_grid": 5, "backbone": NO_BACKBONE,
        "train_data": "suite", "train_batch_size": 8, "checkpoint_every": 0,
    }
    profile_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        # "small" (the demo): a tiny random ViT of the family (no DINOv2 offline), trained on the suite's own real and
        # generated images (no VAE reconstructions offline), 3 epochs of 32 images
        "small": {**{k: v for k, v in tiny_settings.items() if k not in ("train_batch_size", "checkpoint_every")},
                  "epochs": 3, "train_batch_size": 32, "lr": 1e-3, "checkpoint_every": 20},
    }
    weights_what = "the DDA checkpoint"
    weights_fix = ("pass --set weights=/path/to/ckpt.pth (huggingface.co/Junwei-Xi/Dual-Data-Alignment; the "
                   "format inference.py reads: {'model': state_dict})")

    def build_network(self) -> nn.Module:
        """The original's network for the configured architecture, its head initialised as ``trainer.py`` does.

        Returns:
            The :class:`DDANet`.
        """
        net = DDANet(self.config)
        nn.init.normal_(net.base_model.fc.weight, 0.0, 0.02)
        return net

    def setup(self, ctx: RunContext) -> None:
        """Refuse a training without its data before anything is loaded, then as the base class.

        Args:
            ctx: the run context.

        Raises:
            ConfigError: training on reconstructions without ``reconstructions``.
            DataError: ``reconstructions`` is not a folder.
        """
        c = self.config
        on_reconstructions = not c.weights and c.train_data == "reconstructions"
        if on_reconstructions and c.reconstructions and not Path(c.reconstructions).is_dir():
            raise DataError(f"dda: --set reconstructions={c.reconstructions} is not a folder")
        if on_reconstructions and not c.reconstructions:
            raise ConfigError(
                "dda trains on real images and their VAE reconstructions: pass --set reconstructions=DIR (one "
                "STEM.png per real training image, made with a diffusers AutoencoderKL as the original's "
                "Reconstruction/vae_rec.py does; detbench has no VAE), or --set train_data=suite to train on the "
                "suite's real and generated images, or --set weights=/path/to/ckpt.pth")
        super().setup(ctx)

    def to_tensor(self) -> Any:
        """PIL image -> network input: ``ToTensor`` and CLIP's mean/std.

        Returns:
            The transform.
        """
        return clip_tensor()

    def eval_preprocessing(self, ctx: RunContext) -> EvalPreprocessing:
        """``inference.py``: ``CenterCrop(crop)`` of the unresized image, for every test set.

        Args:
            ctx: unused (the original evaluates every image alike).

        Returns:
            The preprocessing.
        """
        c = self.config
        facts = {"resize": "none", "crop": f"center {c.crop}", "normalise": "clip"}
        return EvalPreprocessing(transforms.Compose([transforms.CenterCrop(c.crop), self.to_tensor()]),
                                 by_shape=False, facts=facts)

    def prepare_training(self, ctx: RunContext) -> dict[str, Any]:
        """Start from the ``backbone``'s DINOv2 weights (its ``mask_token`` is never read), LoRA factors fresh.

        Args:
            ctx: unused.

        Returns:
            The backbone's identity.

        Raises:
            ConfigError: the backbone is not a ViT of the configured shape.
        """
        spec = self.config.backbone
        if spec == NO_BACKBONE:
            return {"backbone": "random initialisation"}
        from detbench.models.backbones import load_backbone

        bb = load_backbone(spec)
        vit = self.net.base_model.model
        own = {re.sub(r"\.(original_layer)\.", ".", k): k for k in vit.state_dict() if ".lora." not in k}
        theirs = bb.model.state_dict()
        missing = sorted(set(own) - set(theirs) - {"mask_token"})
        shapes = [k for k in own if k in theirs and theirs[k].shape != vit.state_dict()[own[k]].shape]
        if missing or shapes:
            raise ConfigError(f"--set backbone={spec} is not a DINOv2 ViT of the configured patch, width, depth and "
                              f"pos_grid: {', '.join((missing + shapes)[:4])}")
        vit.load_state_dict({own[k]: theirs[k] for k in own if k in theirs}, strict=False)
        return {"backbone": bb.identity_spec}

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Train on the configured data source (or load nothing more with released weights).

        Args:
            train: the suite's training rows.
            heldout: the held-out rows (scored after the epoch; the last state is kept).
            ctx: the run context.

        Returns:
            The base class's facts and the training data's.
        """
        c = self.config
        data: dict[str, Any] = {"train_data": c.train_data}
        if self.needs_training() and c.train_data == "reconstructions":
            train, data = reconstruction_rows(train, Path(c.reconstructions))
        facts = super().fit(train, heldout, ctx)
        return facts if self.released is not None else {**facts, "training_data": data}

    def training_probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """P(fake) of the training forward's outputs (the logit is their first column).

        Args:
            outputs: ``[N, 1 + D]``.

        Returns:
            ``[N]`` P(fake).
        """
        return sigmoid(outputs[:, 0], self.config.sigmoid_dtype)

    def train_setup(self, ctx: RunContext, train: pd.DataFrame) -> TrainSetup:
        """``train.sh``'s recipe on the shared loop.

        Args:
            ctx: unused.
            train: the training rows (a batch never holds more than there are).

        Returns:
            The recipe.
        """
        c = self.config
        augment = (TrainAugment(c.crop) if c.augment == "original" else
                   TorchDrawn(transforms.Compose([transforms.RandomHorizontalFlip(), transforms.RandomVerticalFlip(),
                                                  transforms.RandomCrop(c.crop, pad_if_needed=True),
                                                  self.to_tensor()])))
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=c.lr, betas=(0.9, 0.999), weight_decay=c.weight_decay)
        return TrainSetup(
            model=_TrainingForward(self.net), optimizer=optimizer,
            schedule=AnnealingSteps(c.lr, t_max=c.t_max, eta_min=c.lr * 1e-3), train_transform=augment,
            heldout_transform=self.preprocessing.transform, loss=dda_loss,
            probabilities=self.training_probabilities, epochs=c.epochs,
            batch_size=min(c.train_batch_size, len(train)), keep="last", checkpoint_every=c.checkpoint_every,
            heldout_batch_size=c.batch_size, precision=self.precision, name=self.name)
