"""SPAI (Karageorgiou et al., "Any-Resolution AI-Generated Image Detection by Spectral Learning", CVPR 2025).

Faithful to the authors' code (mever-team/spai: ``spai/models/sid.py``, ``filters.py``, ``vision_transformer.py``,
``utils.py``, ``data/data_finetune.py``, ``configs/spai.yaml``, ``__main__.py``'s ``validate``):

- **Spectral views of a patch** (``MFViT``): the centre-shifted 2-D DFT of a ``crop`` x ``crop`` patch is multiplied by
  a circular low-pass mask (1 where the distance from the grid ``[c/2-1, ..., 1, 0, 0, 1, ..., c/2-1]`` in x and y
  is below ``mask_radius`` = 16, the checkpoint's ``frequencies_mask``), and by its complement for the high-pass view;
  each view's real inverse DFT is clamped to [0, 1] (the DFT in float32). The patch and its two views are
  normalised with the ImageNet mean/std and each goes through the MFM ViT-B/16 (no LayerScale, q/v biases, LayerNorm
  eps 1e-6); the patch tokens after every block (all 12, ``INTERMEDIATE_LAYERS``) are kept.
- **Spectral reconstruction similarity** (``FrequencyRestorationEstimator``): each block's tokens go through its own
  projector (LayerNorm - Linear 768->1024 - GELU - Linear 1024->1024 - LayerNorm, no last activation); per block the
  cosine similarity of patch-vs-low, patch-vs-high and low-vs-high for every token, their mean and (unbiased) std over
  the tokens: 6 x 12 values; beside them the spectral context vector (``FeatureImportanceProjector``: per block
  the mean and std of the projected patch tokens, a projector, a softmax-weighted sum over blocks, a projector):
  1096 values.
- **Any resolution** (``PatchBasedMFViT.forward_arbitrary_resolution_batch``): the whole image, unresized, padded
  (centred, reflect-101, as albumentations' ``PadIfNeeded``) to at least ``crop`` on each side, is cut into ``crop``
  patches with stride ``stride`` (224: non-overlapping, from the top-left; the rows and columns past the last whole
  patch are dropped); an image with fewer than ``minimum_patches`` (4) patches is scored on torchvision's
  ``five_crop`` instead. The image's patch vectors are fused by the spectral context attention (a learnt query over
  the patches, 12 heads of 128, keys and values from one bias-free linear, an output linear), a LayerNorm and the
  MLP head (1096 -> 3288 -> 3288 -> 1, ReLU). P(fake) is the sigmoid of its logit. This is the original's own tile
  policy, done by the network: detbench's ``eval.tiles``, when set, cuts tiles that are each scored this way.
- **Evaluation** (``build_transform``, ``TEST.ORIGINAL_RESOLUTION``): no resize, no crop; pixels / 255; images of one
  size are batched (the original runs a list of images through the same forward).
- **Released checkpoint** ``spai.pth`` (Apache-2.0, from the repository's README): ``{'model': state_dict}`` in the
  ``PatchBasedMFViT`` key layout (``mfvit.vit.*``, ``mfvit.features_processor.*``, ``mfvit.frequencies_mask``,
  ``patch_aggregator``, ``to_kv``, ``to_out``, ``norm``, ``cls_head``), loaded weights-only and strictly; a file in
  ``utils.save_checkpoint``'s whole layout (beside ``model``: ``optimizer``, ``lr_scheduler``, ``max_accuracy``,
  ``epoch``, ``amp`` and the run's yacs ``CfgNode`` under ``config``, which ``load_pretrained`` reads back with
  ``weights_only=False``) loads too: the node is read as an inert mapping, without yacs. The ViT's
  modules the forward never reads (``fc_norm``, ``cls_pos_embed``, ``actual_cls_token``, ``cls_blocks``,
  ``intermediate_fc_norm``, ``head``) are held so that the file loads key for key.
- **Training**: the paper's recipe needs the MFM-pretrained ViT-B/16 and its LDM training data, views concatenated
  side by side and heavy augmentation. Without ``weights`` detbench trains what the original trains (the backbone is
  frozen: the projectors, the attention and the head) with its optimiser settings (AdamW, lr 5e-4, weight decay 0.05,
  cosine schedule with warm-up, binary cross-entropy) on random ``crop`` crops and flips of the training images,
  on a randomly initialised backbone: a stand-in so the detector runs under every protocol, not the paper's model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision import transforms
from torchvision.transforms.functional import five_crop

from detbench.config import ConfigError
from detbench.data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from detbench.kit.classifier import ClassifierDetector, EvalPreprocessing
from detbench.kit.detector import RunContext
from detbench.kit.schedules import CosineSchedule
from detbench.kit.seeded_data import TorchDrawn
from detbench.kit.training import TrainSetup, bce_with_logits


def circular_mask(size: int, radius: int) -> Tensor:
    """The low-pass mask on the centre-shifted spectrum: 1 inside ``radius`` of the original's centred grid.

    The grid is ``[size/2 - 1, ..., 1, 0, 0, 1, ..., size/2 - 1]`` on both axes (as ``filters.py`` builds it).

    Args:
        size: the (even) patch side.
        radius: the mask radius.

    Returns:
        ``[size, size]`` int64 ones and zeros.
    """
    half = torch.arange(0, size // 2, dtype=torch.float)
    coords = torch.cat([half.flip(0), half])
    radius_grid = torch.sqrt(coords[None, :] ** 2 + coords[:, None] ** 2)
    return torch.where(radius_grid < radius, 1, 0)


def spectral_views(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The low- and high-pass views of ``x`` (the mask and its complement on the centre-shifted DFT), clamped.

    Args:
        x: ``[B, C, H, W]`` pixels in [0, 1].
        mask: ``[H, W]`` low-pass mask.

    Returns:
        The low- and high-pass views in [0, 1], in ``x``'s dtype (the DFT runs in float32).
    """
    spectrum = torch.fft.fftshift(torch.fft.fft2(x.float()), dim=(-2, -1))
    low = torch.fft.ifft2(torch.fft.ifftshift(spectrum * mask, dim=(-2, -1))).real
    high = torch.fft.ifft2(torch.fft.ifftshift(spectrum * (1 - mask), dim=(-2, -1))).real
    return low.clamp(0.0, 1.0).to(x.dtype), high.clamp(0.0, 1.0).to(x.dtype)


class Mlp(nn.Module):
    """The transformer block's MLP (``fc1`` - GELU - ``fc2``)."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention with a bias-free ``qkv`` and separate q and v biases (the k bias is zero)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (width // heads) ** -0.5
        self.qkv = nn.Linear(width, width * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """A pre-norm transformer block without LayerScale (``INIT_VALUES: None``)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MfmViT(nn.Module):
    """The MFM ViT as SPAI builds it: the patch tokens after every block, ``[B, depth, L, width]``.

    Modules the forward never reads are held under their names so the released state dict loads key for key.
    """

    def __init__(self, crop: int, patch: int, width: int, depth: int, heads: int, mlp_ratio: float,
                 num_classes: int) -> None:
        super().__init__()
        tokens = (crop // patch) ** 2 + 1
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, width, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, width))
        self.blocks = nn.ModuleList([Block(width, heads, mlp_ratio) for _ in range(depth)])
        # unused by the forward (the original's classifier parts of the MFM ViT)
        self.fc_norm = nn.LayerNorm(width, eps=1e-6)
        self.cls_pos_embed = nn.Parameter(torch.zeros(1, tokens, width))
        self.actual_cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.cls_blocks = nn.ModuleList([Block(width, heads, mlp_ratio)])
        self.intermediate_fc_norm = nn.ModuleList([nn.LayerNorm(width, eps=1e-6) for _ in range(depth)])
        self.head = nn.Linear(width * depth, num_classes)
        for p in (self.pos_embed, self.cls_pos_embed, self.cls_token, self.actual_cls_token):
            nn.init.trunc_normal_(p, std=0.02)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        kept = []
        for block in self.blocks:
            x = block(x)
            kept.append(x[:, 1:])
        return torch.stack(kept, dim=1)


class Projector(nn.Module):
    """LayerNorm (optional) - [Dropout - Linear - GELU]... (the last activation configurable) - LayerNorm."""

    def __init__(self, layers: int, width: int, dim: int, last_gelu: bool, input_norm: bool, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width) if input_norm else nn.Identity()
        steps: list[nn.Module] = [nn.Dropout(dropout)]
        for i in range(layers):
            last = i == layers - 1
            steps += [nn.Linear(width if i == 0 else dim, dim), nn.GELU() if not last or last_gelu else nn.Identity(),
                      nn.Dropout(dropout)]
        self.projector = nn.Sequential(*steps)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.norm2(self.projector(self.norm1(x)))


class FeatureSpecificProjector(nn.Module):
    """One projector per block's tokens."""

    def __init__(self, blocks: int, layers: int, width: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.projectors = nn.ModuleList([Projector(layers, width, dim, False, True, dropout) for _ in range(blocks)])

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return torch.stack([p(x[:, i]) for i, p in enumerate(self.projectors)], dim=1)


class FeatureImportanceProjector(nn.Module):
    """The spectral context vector: per block the tokens' mean and std, projected, weighted over blocks."""

    def __init__(self, blocks: int, dim: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.randn([1, blocks, dim]))
        self.proj1 = Projector(layers, 2 * dim, dim, True, False, dropout)
        self.proj2 = Projector(layers, dim, dim, True, False, dropout)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        x = self.proj1(torch.cat([x.mean(dim=2), x.std(dim=2)], dim=-1))
        return self.proj2((torch.softmax(self.alpha, dim=1) * x).sum(dim=1))


class FrequencyRestorationEstimator(nn.Module):
    """The spectral reconstruction similarity (6 values per block) and the spectral context vector."""

    def __init__(self, blocks: int, width: int, dim: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.patch_projector = FeatureSpecificProjector(blocks, layers, width, dim, dropout)
        self.original_features_processor = FeatureImportanceProjector(blocks, dim, layers, dropout)

    def forward(self, x: Tensor, low: Tensor, high: Tensor) -> Tensor:  # noqa: D102
        orig, low, high = self.patch_projector(x), self.patch_projector(low), self.patch_projector(high)
        stats = []
        for a, b in ((orig, low), (orig, high), (low, high)):
            sim = F.cosine_similarity(a, b, dim=-1)
            stats += [sim.mean(dim=-1), sim.std(dim=-1)]
        return torch.cat([*stats, self.original_features_processor(orig)], dim=1)


class MFViT(nn.Module):
    """A patch's vector: the ViT on the patch and its two spectral views, then the estimator."""

    def __init__(self, vit: MfmViT, estimator: FrequencyRestorationEstimator, crop: int, radius: int) -> None:
        super().__init__()
        self.vit = vit
        self.features_processor = estimator
        self.frequencies_mask = nn.Parameter(circular_mask(crop, radius), requires_grad=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        low, high = spectral_views(x, self.frequencies_mask)
        feats = [self.vit((v - self.mean.to(v.dtype)) / self.std.to(v.dtype)) for v in (x, low, high)]
        return self.features_processor(*feats)


class ClassificationHead(nn.Module):
    """Linear - ReLU - Dropout - Linear - ReLU - Dropout - Linear(1)."""

    def __init__(self, dim: int, ratio: int, dropout: float) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Linear(dim, dim * ratio), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(dim * ratio, dim * ratio), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(dim * ratio, 1))

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.head(x)


def patchify(x: Tensor, side: int, stride: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, L, C, side, side]``: the patches at ``stride``, row by row (the rest dropped)."""
    p = x.unfold(2, side, stride).unfold(3, side, stride).permute(0, 2, 3, 1, 4, 5)
    return p.reshape(x.shape[0], -1, x.shape[1], side, side)


class SpaiNet(nn.Module):
    """``PatchBasedMFViT``: patch vectors of an image of any size, fused by spectral context attention, one logit.

    Its state dict is the original's, key for key.
    """

    def __init__(self, c: SpaiConfig) -> None:
        super().__init__()
        blocks = c.depth
        dim = 6 * blocks + c.proj_dim
        vit = MfmViT(c.crop, c.patch, c.width, c.depth, c.heads, c.mlp_ratio, 2)
        estimator = FrequencyRestorationEstimator(blocks, c.width, c.proj_dim, c.proj_layers, c.dropout)
        self.mfvit = MFViT(vit, estimator, c.crop, c.mask_radius)
        self.crop, self.stride, self.minimum = c.crop, c.stride, c.minimum_patches
        self.feature_batch = c.feature_batch
        self.heads = c.attn_heads
        self.scale = (c.attn_dim // c.attn_heads) ** -0.5
        self.to_kv = nn.Linear(dim, c.attn_dim * 2, bias=False)
        self.patch_aggregator = nn.Parameter(torch.zeros((c.attn_heads, 1, c.attn_dim // c.attn_heads)))
        nn.init.trunc_normal_(self.patch_aggregator, std=0.02)
        self.to_out = nn.Sequential(nn.Linear(c.attn_dim, dim, bias=False), nn.Dropout(c.dropout))
        self.norm = nn.LayerNorm(dim)
        self.cls_head = ClassificationHead(dim, c.head_ratio, c.dropout)

    def train(self, mode: bool = True) -> SpaiNet:
        """Train mode for the trainable parts; the frozen backbone stays in evaluation mode.

        Args:
            mode: train (True) or evaluate.

        Returns:
            The network.
        """
        super().train(mode)
        self.mfvit.vit.eval()
        return self

    def patches(self, x: Tensor) -> Tensor:
        """The patches each image is scored on: the stride grid, or five crops when it holds too few.

        Args:
            x: ``[B, C, H, W]`` images of one size (at least ``crop`` on each side).

        Returns:
            ``[B, L, C, crop, crop]``.
        """
        grid = patchify(x, self.crop, self.stride)
        if grid.shape[1] < self.minimum:
            grid = torch.stack(five_crop(x, [self.crop, self.crop]), dim=1)
        return grid

    def attend(self, x: Tensor) -> Tensor:
        """Spectral context attention: a learnt query over an image's patch vectors.

        Args:
            x: ``[B, L, D]`` patch vectors.

        Returns:
            ``[B, D]``.
        """
        b, n, _ = x.shape
        k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_kv(x).chunk(2, dim=-1))
        query = self.patch_aggregator.expand(b, -1, -1, -1)
        attn = torch.softmax(query @ k.transpose(-1, -2) * self.scale, dim=-1)
        return self.to_out((attn @ v).transpose(1, 2).reshape(b, 1, -1)).squeeze(1)

    def forward(self, x: Tensor) -> Tensor:
        """One logit per image.

        Args:
            x: ``[B, 3, H, W]`` pixels in [0, 1], padded to at least ``crop`` on each side.

        Returns:
            ``[B, 1]`` logits.
        """
        patches = self.patches(x)
        b, n = patches.shape[:2]
        flat = patches.reshape(b * n, *patches.shape[2:])
        feats = torch.cat([self.mfvit(flat[i:i + self.feature_batch])
                           for i in range(0, flat.shape[0], self.feature_batch)])
        return self.cls_head(self.norm(self.attend(feats.reshape(b, n, -1))))


@dataclass(frozen=True)
class PadToTensor:
    """PIL image -> ``[3, H, W]`` float pixels / 255, padded centred (reflect-101) to at least ``side`` a side."""

    side: int

    def __call__(self, img: Image.Image) -> Tensor:  # noqa: D102
        a = np.asarray(img.convert("RGB"))
        h, w = a.shape[:2]
        ph, pw = max(self.side - h, 0), max(self.side - w, 0)
        if ph or pw:
            a = np.pad(a, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="reflect")
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float().div_(255.0)


@dataclass(frozen=True)
class SpaiConfig:
    """SPAI options: released weights or the stand-in training, the architecture and its any-resolution policy."""

    weights: str = ""  # released spai.pth ({'model': state_dict, ...})[#sha256=HEX]; empty: the stand-in training
    crop: int = 224  # the patch side (DATA.IMG_SIZE)
    stride: int = 224  # MODEL.PATCH_VIT.PATCH_STRIDE
    minimum_patches: int = 4  # fewer patches: five crops instead (MODEL.PATCH_VIT.MINIMUM_PATCHES)
    mask_radius: int = 16  # MODEL.FRE.MASKING_RADIUS
    patch: int = 16  # ViT-B/16
    width: int = 768
    depth: int = 12  # every block's tokens are used (INTERMEDIATE_LAYERS 0..11)
    heads: int = 12
    mlp_ratio: float = 4.0
    proj_dim: int = 1024  # MODEL.VIT.PROJECTION_DIM
    proj_layers: int = 2
    attn_heads: int = 12  # MODEL.PATCH_VIT.NUM_HEADS
    attn_dim: int = 1536  # MODEL.PATCH_VIT.ATTN_EMBED_DIM
    head_ratio: int = 3  # MODEL.CLS_HEAD.MLP_RATIO
    dropout: float = 0.5  # MODEL.SID_DROPOUT (training only)
    feature_batch: int = 400  # patches per ViT forward (MODEL.FEATURE_EXTRACTION_BATCH)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    sigmoid_dtype: Literal["float32", "float64"] = "float32"
    batch_size: int = 8  # evaluation batch (images of one size)
    # the stand-in training (configs/spai.yaml's optimiser on a randomly initialised, frozen backbone)
    epochs: int = 35
    warmup_epochs: float = 5.0
    train_batch_size: int = 72
    lr: float = 5e-4
    min_lr: float = 2.5e-7
    weight_decay: float = 0.05
    flip: float = 0.5
    checkpoint_every: int = 200

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: listing the ranges when any option is out of its range.
        """
        ok = (self.patch >= 1 and self.crop >= self.patch and self.crop % self.patch == 0 and self.crop % 2 == 0
              and 1 <= self.stride and self.minimum_patches >= 0 and 0 < self.mask_radius
              and self.width >= 1 and self.depth >= 1 and self.heads >= 1 and self.width % self.heads == 0
              and self.mlp_ratio > 0 and self.proj_dim >= 1 and self.proj_layers >= 1 and self.attn_heads >= 1
              and self.attn_dim % self.attn_heads == 0 and self.attn_dim >= 1 and self.head_ratio >= 1
              and 0 <= self.dropout < 1 and self.feature_batch >= 1 and self.batch_size >= 1 and self.epochs >= 1
              and 0 <= self.warmup_epochs <= self.epochs and self.train_batch_size >= 1 and self.lr > 0
              and 0 <= self.min_lr <= self.lr and self.weight_decay >= 0 and 0 <= self.flip <= 1
              and self.checkpoint_every >= 0)
        if not ok:
            raise ConfigError(
                "spai options need crop even and a multiple of patch >= 1, stride >= 1, minimum_patches >= 0, "
                "mask_radius > 0, width a multiple of heads, attn_dim a multiple of attn_heads, mlp_ratio > 0, "
                "proj_dim, proj_layers, head_ratio, feature_batch, batch_size, epochs and train_batch_size >= 1, "
                "dropout in [0, 1), warmup_epochs in [0, epochs], lr > 0, min_lr in [0, lr], weight_decay >= 0, "
                "flip in [0, 1], checkpoint_every >= 0")


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "spai",
    "class": "Spai",
    "summary": (
        "SPAI (CVPR 2025): spectral reconstruction similarity of an MFM ViT-B/16 on each 224 px patch of the "
        "unresized image, fused by spectral context attention; released weights (or a stand-in training)."
    ),
    "paper": "Karageorgiou et al., CVPR",
    "year": 2025,
    "training": "trains",
    "weights_key": "weights",
    "released": (
        "spai.pth from github.com/mever-team/spai (Google Drive link in its README; Apache-2.0); detbench ships no "
        "weights and loads the file you provide"
    ),
}


class Spai(ClassifierDetector):
    """SPAI: spectral reconstruction similarity per patch, any resolution by attention over the patches."""

    name = REGISTRATION["name"]
    version = 1
    Config = SpaiConfig
    summary = REGISTRATION["summary"]
    tiny_settings: ClassVar[dict[str, Any]] = {
        "crop": 16, "stride": 16, "patch": 8, "mask_radius": 3, "width": 16, "depth": 2, "heads": 2,
        "proj_dim": 8, "attn_heads": 2, "attn_dim": 8, "head_ratio": 1, "epochs": 1, "warmup_epochs": 0.0,
        "train_batch_size": 8, "checkpoint_every": 0,
    }
    profile_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        # "small" (the demo): a tiny random ViT of the family on 32 px patches (16 per 128 px image) instead of the
        # ViT-B/16 on 224 px ones, 3 epochs of 32 images
        "small": {**{k: v for k, v in tiny_settings.items() if k not in ("crop", "stride", "epochs",
                                                                         "train_batch_size", "checkpoint_every")},
                  "crop": 32, "stride": 32, "epochs": 3, "train_batch_size": 32, "lr": 1e-3, "checkpoint_every": 20},
    }
    weights_what = "the SPAI checkpoint"
    weights_fix = ("pass --set weights=/path/to/spai.pth (the released checkpoint of github.com/mever-team/spai: "
                   "{'model': state_dict}, with or without the optimizer, scheduler and yacs config that "
                   "utils.save_checkpoint saves beside it)")

    def build_network(self) -> nn.Module:
        """The original's network for the configured architecture, its backbone frozen.

        Returns:
            The :class:`SpaiNet`.
        """
        net = SpaiNet(self.config)
        net.mfvit.vit.requires_grad_(False)
        return net

    def to_tensor(self) -> Any:
        """PIL image -> network input: centred reflect-101 padding to ``crop``, pixels / 255.

        Returns:
            The transform.
        """
        return PadToTensor(self.config.crop)

    def eval_preprocessing(self, ctx: RunContext) -> EvalPreprocessing:
        """The whole image, unresized (padded to ``crop`` when smaller), for every test set.

        Args:
            ctx: unused (the original evaluates every test set alike).

        Returns:
            The preprocessing (native sizes, batched by shape).
        """
        c = self.config
        facts = {"resize": "none", "pad": f"reflect-101 to {c.crop}",
                 "patches": f"{c.crop} px stride {c.stride}, five crops below {c.minimum_patches}"}
        return EvalPreprocessing(self.to_tensor(), by_shape=True, facts=facts)

    def input_size(self, ctx: RunContext, generator: str) -> int | None:
        """The patch side, the tile side of ``eval.tiles=center|five`` (the network takes any size).

        Args:
            ctx: unused.
            generator: unused.

        Returns:
            ``crop``.
        """
        return self.config.crop

    def train_setup(self, ctx: RunContext, train: pd.DataFrame) -> TrainSetup:
        """The stand-in recipe: AdamW with warm-up and cosine decay on random crops and flips, BCE.

        Args:
            ctx: unused.
            train: the training rows (a batch never holds more than there are).

        Returns:
            The recipe.
        """
        c = self.config
        pad = PadToTensor(c.crop)
        augment = transforms.Compose([transforms.RandomCrop(c.crop, pad_if_needed=True, padding_mode="reflect"),
                                      transforms.RandomHorizontalFlip(c.flip), pad])
        heldout = transforms.Compose([transforms.CenterCrop(c.crop), pad])
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        schedule = CosineSchedule(c.lr, epochs=c.epochs, min_lr=c.min_lr, warmup_epochs=c.warmup_epochs)
        return TrainSetup(
            model=self.net, optimizer=optimizer, schedule=schedule, train_transform=TorchDrawn(augment),
            heldout_transform=heldout, loss=bce_with_logits, probabilities=self.probabilities, epochs=c.epochs,
            batch_size=min(c.train_batch_size, len(train)), keep="last", checkpoint_every=c.checkpoint_every,
            heldout_batch_size=c.batch_size, precision=self.precision, name=self.name)
