"""Edge-Enhanced ViT (Das, Yahan, Zaman and Bayesh, arXiv 2508.17877, 2025), a documented reconstruction.

No official code is public. What the paper fixes: a ViT pretrained on ImageNet-21k (``vit-base-patch16-224-in21k``)
fine-tuned as a real/fake classifier on the class token; an edge-based module that computes the **variance of the
difference between the edge map of the image and the edge map of a smoothed copy** (generated images have smoother
textures and weaker edges, so smoothing changes their edges less); the module is applied as a **post-processing
step on the ViT's prediction**. Everything it leaves open is a ``--set`` key whose default and reason are in
``docs/edge-vit.md``:

- edge module (:func:`edge_score`): BT.601 luma of the network input, ``edge.operator`` (Sobel gradient magnitude,
  or the absolute 4-neighbour Laplacian) on it and on a Gaussian-smoothed copy (``edge.sigma``, ``edge.kernel``;
  reflected borders, OpenCV's default), their difference, its population variance over the image, and
  ``s = log(variance + edge.eps)``; computed in float32 outside autocast;
- fusion (:class:`EdgeViTNet`): the logit ``alpha * vit_logit + beta * s + gamma``. ``fusion.mode=fit`` fits
  ``(alpha, beta, gamma)`` after the ViT is trained, by a logistic regression of the labels on ``(vit_logit, s)`` of
  the held-out rows of the training generator (the training rows when those lack a class); ``fixed`` takes
  ``alpha = 1``, ``beta = fusion.weight``, ``gamma = fusion.bias``; ``none`` is the fine-tuned ViT alone. The three
  numbers are a tensor of the network (saved and loaded with it) and never trained by the gradient;
- training: the whole ViT and a linear head fine-tuned with BCE (1 = fake), AdamW and a cosine schedule; images
  resized to the ViT's input size as the ViT's image processor does (or centre-cropped: ``resize=crop``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision import transforms

from detbench.config import ConfigError
from detbench.errors import DataError
from detbench.kit.classifier import ClassifierDetector, EvalPreprocessing
from detbench.kit.detector import RunContext
from detbench.kit.schedules import CosineSchedule
from detbench.kit.scoring import score_logits
from detbench.kit.seeded_data import TorchDrawn
from detbench.kit.sensitivity import BlurConfig, gaussian_blur
from detbench.kit.training import TrainSetup, bce_with_logits
from detbench.probabilities import finite_rows

from .tam import luma

VIT_IN21K = "timm:vit_base_patch16_224@orig_in21k"  # google/vit-base-patch16-224-in21k, ported by timm
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


@dataclass(frozen=True)
class EdgeConfig:
    """The edge-difference module: which edge operator, which smoothing, and the log's floor."""

    operator: Literal["sobel", "laplacian"] = "sobel"  # Sobel: gradient magnitude; laplacian: |4-neighbour Laplacian|
    sigma: float = 1.1  # the smoothing Gaussian's standard deviation (OpenCV's for a 5 x 5 kernel)
    kernel: int = 5  # the smoothing kernel's side in pixels (odd; 0: 2 * ceil(3 * sigma) + 1)
    eps: float = 1e-8  # s = log(variance + eps): finite for a flat image

    def validate(self) -> None:
        """Check the option ranges.

        Raises:
            ConfigError: a non-positive sigma or eps, or an even kernel.
        """
        if not (self.sigma > 0 and self.eps > 0):
            raise ConfigError("edge-vit: edge.sigma and edge.eps must be > 0")
        if self.kernel < 0 or (self.kernel and self.kernel % 2 == 0):
            raise ConfigError(f"edge-vit: edge.kernel must be odd (or 0: from sigma), got {self.kernel}")

    @property
    def blur(self) -> BlurConfig:
        """The smoothing as the shared Gaussian blur's settings (reflected borders)."""
        return BlurConfig(sigma=self.sigma, kernel=self.kernel, padding="reflect", against="clean")


@dataclass(frozen=True)
class FusionConfig:
    """How the edge score post-processes the ViT's logit."""

    mode: Literal["fit", "fixed", "none"] = "fit"
    weight: float = 0.0  # fixed: beta
    bias: float = 0.0  # fixed: gamma
    c: float = 1.0  # fit: inverse L2 strength of the logistic regression

    def validate(self) -> None:
        """Check the option ranges.

        Raises:
            ConfigError: a non-positive ``c``.
        """
        if not self.c > 0:
            raise ConfigError("edge-vit: fusion.c must be > 0")


@dataclass(frozen=True)
class EdgeViTConfig:
    """Edge-Enhanced ViT options: the ViT, the edge module, the fusion and the fine-tuning recipe."""

    weights: str = ""  # a state of this network (model.safetensors of a fit, or a .pth of it)[#sha256=HEX]
    backbone: str = VIT_IN21K  # the ViT fine-tuned (any timm or open_clip image encoder)
    crop: int = 0  # the input side; 0: the backbone's
    resize: Literal["resize", "crop"] = "resize"  # resize: the whole image to crop x crop; crop: centre crop
    edge: EdgeConfig = field(default_factory=EdgeConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    epochs: int = 3
    train_batch_size: int = 32
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup: float = 0.0  # epochs of linear warm-up
    flip: float = 0.5  # probability of a horizontal flip in training
    checkpoint_every: int = 500
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    sigmoid_dtype: Literal["float32", "float64"] = "float32"
    batch_size: int = 64  # evaluation batch

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: the first option out of range.
        """
        self.edge.validate()
        self.fusion.validate()
        checks = [
            (self.crop >= 0, "crop must be >= 0 (0: the backbone's)"),
            (self.epochs >= 1 and self.train_batch_size >= 1 and self.batch_size >= 1,
             "epochs, train_batch_size and batch_size must be >= 1"),
            (self.lr > 0 and self.weight_decay >= 0 and self.warmup >= 0, "lr must be > 0, weight_decay and "
             "warmup >= 0"),
            (0 <= self.flip <= 1, "flip must be in [0, 1]"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"edge-vit: {message}")


# ------------------------------------------------------------------------------------------- edge module


def edge_map(gray: Tensor, operator: str) -> Tensor:
    """Edge strength of ``[B, H, W]`` images (reflected borders, as OpenCV's default).

    Args:
        gray: the grey-level images.
        operator: ``sobel`` (gradient magnitude ``hypot(gx, gy)``) or ``laplacian`` (absolute 4-neighbour Laplacian).

    Returns:
        ``[B, H, W]``, same dtype.
    """
    x = F.pad(gray.unsqueeze(1), (1, 1, 1, 1), mode="reflect")
    if operator == "sobel":
        gx = torch.tensor(SOBEL_X, dtype=gray.dtype, device=gray.device)
        g = F.conv2d(x, torch.stack([gx, gx.T]).unsqueeze(1))
        return torch.hypot(g[:, 0], g[:, 1])
    lap = torch.tensor(LAPLACIAN, dtype=gray.dtype, device=gray.device)
    return F.conv2d(x, lap.view(1, 1, 3, 3))[:, 0].abs()


def edge_difference(gray: Tensor, smoothed: Tensor, operator: str) -> Tensor:
    """The edge-difference map: edges of the image minus edges of its processed copy.

    Args:
        gray: ``[B, H, W]`` images.
        smoothed: ``[B, H, W]`` their processed copies.
        operator: the edge operator (:func:`edge_map`).

    Returns:
        ``[B, H, W]``.
    """
    return edge_map(gray, operator) - edge_map(smoothed, operator)


def edge_score(x: Tensor, mean: Any, std: Any, edge: EdgeConfig) -> Tensor:
    """``s = log(Var[edge difference] + eps)`` of normalised images, in float32 (lower: smoother, more likely fake).

    Args:
        x: ``[B, 3, H, W]`` normalised images.
        mean: the normalisation's per-channel mean.
        std: its per-channel standard deviation.
        edge: the module's settings.

    Returns:
        ``[B]`` float32.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        gray = luma(x.float(), mean, std)
        smoothed = gaussian_blur(gray.unsqueeze(1), edge.blur)[:, 0]
        diff = edge_difference(gray, smoothed, edge.operator)
        return torch.log(diff.flatten(1).var(dim=1, unbiased=False) + edge.eps)


# ------------------------------------------------------------------------------------------- network


class EdgeViTNet(nn.Module):
    """The ViT (``vit``), its linear head on the class-token embedding (``head``) and the fusion ``(alpha, beta,
    gamma)`` of the edge score (``fusion``, not trained by the gradient).

    In training mode the forward is the ViT's logit alone; in evaluation mode ``alpha * vit_logit + beta * s +
    gamma`` (with ``fusion.mode=none`` the edge score is not computed).
    """

    def __init__(self, backbone: Any, edge: EdgeConfig, use_edge: bool) -> None:
        super().__init__()
        self.backbone = backbone  # the facade: embed() and the normalisation (its model is registered as vit)
        self.vit = backbone.model
        self.head = nn.Linear(backbone.embed_dim, 1)
        self.fusion = nn.Parameter(torch.tensor([1.0, 0.0, 0.0]), requires_grad=False)
        self.edge, self.use_edge = edge, use_edge

    def vit_logit(self, x: Tensor) -> Tensor:
        """The fine-tuned ViT's logit.

        Args:
            x: ``[B, 3, H, W]`` normalised images.

        Returns:
            ``[B, 1]``.
        """
        return self.head(self.backbone.embed(x).float())

    def edge_score(self, x: Tensor) -> Tensor:
        """:func:`edge_score` under this network's normalisation.

        Args:
            x: ``[B, 3, H, W]`` normalised images.

        Returns:
            ``[B]`` float32.
        """
        pp = self.backbone.preprocess
        return edge_score(x, pp.mean, pp.std, self.edge)

    def parts(self, x: Tensor) -> Tensor:
        """The fusion's inputs: the ViT logit and the edge score.

        Args:
            x: ``[B, 3, H, W]`` normalised images.

        Returns:
            ``[B, 2]``.
        """
        return torch.cat([self.vit_logit(x).float(), self.edge_score(x).unsqueeze(1)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """The ViT's logit (training) or the fused logit (evaluation).

        Args:
            x: ``[B, 3, H, W]`` normalised images.

        Returns:
            ``[B, 1]``.
        """
        if self.training or not self.use_edge:
            return self.vit_logit(x)
        return fuse(self.parts(x), self.fusion)


def fuse(parts: Tensor, fusion: Tensor) -> Tensor:
    """``alpha * vit_logit + beta * s + gamma``.

    Args:
        parts: ``[B, 2]`` (ViT logit, edge score).
        fusion: ``[3]`` (alpha, beta, gamma).

    Returns:
        ``[B, 1]``.
    """
    return (parts @ fusion[:2].to(parts.dtype) + fusion[2].to(parts.dtype)).unsqueeze(1)


def fit_fusion(parts: np.ndarray, labels: np.ndarray, c: float, seed: int) -> tuple[float, float, float]:
    """Fit ``(alpha, beta, gamma)`` by an L2 logistic regression of ``labels`` on ``(vit_logit, s)``.

    Args:
        parts: ``[N, 2]`` finite rows.
        labels: ``[N]`` 0/1, both present.
        c: the inverse L2 strength.
        seed: the solver's ``random_state``.

    Returns:
        The three numbers.
    """
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=1000, random_state=seed).fit(parts.astype(np.float64), labels)
    return float(model.coef_[0, 0]), float(model.coef_[0, 1]), float(model.intercept_[0])


# ------------------------------------------------------------------------------------------- detector


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "edge-vit",
    "class": "EdgeViT",
    "summary": ("Edge-Enhanced ViT (2025, reconstructed): a fine-tuned ImageNet-21k ViT-B/16 whose logit is "
                "post-processed by the log variance of an edge-difference map (image vs its Gaussian-smoothed copy)."),
    "paper": "Das et al., arXiv 2508.17877",
    "year": 2025,
    "training": "trains",
    "weights_key": "weights",
    "released": "none known (no public code or weights); --set weights= takes a saved state of this network",
}


class EdgeViT(ClassifierDetector):
    """Fine-tuned ViT with an edge-difference post-processing of its logit."""

    name = REGISTRATION["name"]
    version = 1
    Config = EdgeViTConfig
    summary = REGISTRATION["summary"]
    tiny_settings: ClassVar[dict[str, Any]] = {
        "backbone": "open_clip:detbench-tiny-vit@random", "epochs": 1, "train_batch_size": 8,
        "checkpoint_every": 0, "precision": "fp32",
    }
    profile_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        # "small" (the demo): no ViT weights ship offline, so the bundled ImageNet EfficientNet-Lite0 stands in
        # for the ViT at 128 px (its whole network fine-tuned), with a learning rate raised for few steps.
        "small": {"backbone": "timm:efficientnet_lite0@bundled", "crop": 128, "epochs": 3, "lr": 1e-4,
                  "checkpoint_every": 0},
    }
    weights_what = "the edge-vit state"
    weights_fix = "pass --set weights=/path/to/model.safetensors (the state a fit of edge-vit saved)"

    def build_network(self) -> EdgeViTNet:
        """Load the backbone (pretrained as its spec says) and add the head; the whole ViT trains.

        Returns:
            The :class:`EdgeViTNet`.

        Raises:
            ConfigError: the smoothing kernel does not fit in the input.
        """
        from detbench.models.backbones import load_backbone

        c = self.config
        self.backbone = load_backbone(c.backbone, device="cpu", crop=c.crop or None)
        side = self.backbone.preprocess.crop
        if c.edge.blur.kernel_size // 2 >= side:
            raise ConfigError(f"edge-vit: a {c.edge.blur.kernel_size} px smoothing kernel needs an input larger "
                              f"than the {side} px crop")
        net = EdgeViTNet(self.backbone, c.edge, use_edge=c.fusion.mode != "none")
        net.requires_grad_(True)
        net.fusion.requires_grad_(False)
        if c.fusion.mode == "fixed":
            net.fusion.data = torch.tensor([1.0, c.fusion.weight, c.fusion.bias])
        return net

    def setup(self, ctx: RunContext) -> None:
        """As the base class; a fixed or absent fusion then overrides a loaded state's.

        Args:
            ctx: the run context.
        """
        super().setup(ctx)
        c = self.config.fusion
        if c.mode != "fit":
            self.net.fusion.data = torch.tensor([1.0, c.weight, c.bias] if c.mode == "fixed" else [1.0, 0.0, 0.0])

    def identity(self) -> dict[str, Any]:
        """The base class's identity plus the backbone's.

        Returns:
            The identity facts.
        """
        return {**super().identity(), "backbone": self.backbone.identity()}

    def to_tensor(self) -> Any:
        """PIL image -> normalised tensor with the backbone's statistics.

        Returns:
            The transform.
        """
        pp = self.backbone.preprocess
        return transforms.Compose([transforms.ToTensor(), transforms.Normalize(pp.mean, pp.std)])

    def _geometry(self) -> Any:
        side = self.backbone.preprocess.crop
        if self.config.resize == "resize":
            return transforms.Resize((side, side), interpolation=transforms.InterpolationMode.BILINEAR)
        return transforms.CenterCrop(side)

    def eval_preprocessing(self, ctx: RunContext) -> EvalPreprocessing:
        """The whole image resized to the input side (``resize=resize``), or its centre crop, for every test set.

        Args:
            ctx: unused.

        Returns:
            The preprocessing.
        """
        side = self.backbone.preprocess.crop
        facts = {"geometry": f"{self.config.resize} {side}", "normalise": list(self.backbone.preprocess.mean)}
        return EvalPreprocessing(transforms.Compose([self._geometry(), self.to_tensor()]), by_shape=False,
                                 facts=facts)

    def train_setup(self, ctx: RunContext, train: pd.DataFrame) -> TrainSetup:
        """Fine-tune the whole ViT and the head: AdamW, cosine schedule, BCE, flips.

        Args:
            ctx: unused.
            train: the training rows (a batch never holds more than there are).

        Returns:
            The recipe.
        """
        c = self.config
        augment = transforms.Compose([self._geometry(), transforms.RandomHorizontalFlip(c.flip), self.to_tensor()])
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        return TrainSetup(
            model=self.net, optimizer=optimizer,
            schedule=CosineSchedule(c.lr, epochs=c.epochs, warmup_epochs=c.warmup),
            train_transform=TorchDrawn(augment), heldout_transform=self.preprocessing.transform,
            loss=bce_with_logits, probabilities=self.probabilities, epochs=c.epochs,
            batch_size=min(c.train_batch_size, len(train)), keep="last", checkpoint_every=c.checkpoint_every,
            heldout_batch_size=c.batch_size, precision=self.precision, name=self.name)

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Fine-tune the ViT, then fit the fusion on the held-out rows (``fusion.mode=fit``).

        Args:
            train: the training rows.
            heldout: the held-out rows of the training generator.
            ctx: the run context.

        Returns:
            The base class's facts plus the fusion's.

        Raises:
            DataError: no rows with both classes to fit the fusion on.
        """
        facts = super().fit(train, heldout, ctx)
        if self.released is not None or self.config.fusion.mode != "fit":
            return {**facts, "fusion": self.net.fusion.tolist()}
        source = "heldout" if _both_classes(heldout) else "train"
        rows = heldout if source == "heldout" else train
        if not _both_classes(rows):
            raise DataError("edge-vit: fitting the edge fusion needs real and generated rows")
        parts, _ = score_logits(self.net.parts, rows, ctx, self.preprocessing.transform, device=ctx.device,
                                precision=self.precision, batch_size=ctx.batch_size or self.config.batch_size,
                                description=f"fit {self.name} fusion")
        ok = finite_rows(parts)
        labels = rows["label"].to_numpy()[ok].astype(int)
        if len(set(labels.tolist())) < 2:
            raise DataError("edge-vit: the edge fusion's rows left only one class after unreadable images")
        fitted = fit_fusion(parts[ok], labels, self.config.fusion.c, ctx.seed)
        self.net.fusion.data = torch.tensor(fitted, dtype=torch.float32, device=self.net.fusion.device)
        return {**facts, "fusion": list(fitted), "fusion_rows": source, "fusion_n": int(ok.sum())}


def _both_classes(rows: pd.DataFrame) -> bool:
    return len(rows) > 0 and set(rows["label"].astype(int).unique()) >= {0, 1}
