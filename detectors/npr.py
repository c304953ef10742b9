"""NPR (Tan et al., "Rethinking the Up-Sampling Operations in CNN-based Generative Network for Generalizable
Deepfake Detection", CVPR 2024).

Faithful to chuangchuangtan/NPR-DeepfakeDetection (``networks/resnet.py``, ``test.py``, ``data/datasets.py``):

- **Network**: a ResNet-50 cut after ``layer2``, with a 3x3 stride-2 ``conv1``: conv1 - bn1 - ReLU - maxpool -
  layer1 (64 -> 256) - layer2 (-> 512) - global average pool - ``fc1 = Linear(512, 1)``; keys ``conv1``, ``bn1``,
  ``layer1``, ``layer2``, ``fc1``. It sees the neighbouring-pixel residual of the normalised image,
  ``NPR = x - up(down(x))`` (nearest down- then up-sampling by 2, so each pixel minus the top-left pixel of its
  2x2 block), scaled by 2/3. An odd height or width loses its last row/column first (the README's fix for
  odd sizes). P(fake) = sigmoid(logit), in float32 as ``validate.py``'s ``model(x).sigmoid()`` (saturated
  logits tie in AP, as in the original; ``sigmoid_dtype=float64`` ranks them: a departure).
- **Released checkpoints** ``NPR.pth`` (the paper) and ``model_epoch_last_3090.pth`` (the AIGCDetectBenchmark
  table), flat state dicts: ``--set weights=PATH[#sha256=HEX]`` loads them weights-only and strictly; nothing
  trains and no training rows are needed.
- **Evaluation** follows the original's per-test-set table (``test.py`` ``DetectionTests``, README):
  ``resize=auto`` picks by the suite's test-set convention: ``square`` (``Resize((256, 256))``, bilinear, no
  crop) for ForenSynths, UniversalFakeDetect and DiffusionForensics; ``native`` (no resize, no crop; the
  original runs batch 1, detbench batches equal sizes) for GANGen-Detection and AIGCDetectBenchmark; ``tile``
  (images smaller than 224 tiled by ``translate_duplicate``, then ``CenterCrop(224)``) for GenImage. Suites
  without a convention get ``square``, the original ``test.py`` default. ``--set resize=...`` overrides.
- **Training** from scratch as ``train.py`` (``--lr 0.0002 --batch_size 32 --niter 50 --delr_freq 10``):
  Kaiming init, BCE-with-logits, Adam (betas 0.9/0.999), learning rate x0.9 after every 10th epoch (0-based
  epochs 10, 20, ...), ``Resize((256, 256))`` - random 224 crop - random flip, no blur or JPEG, and the last
  epoch is kept (``model_epoch_last.pth``). Every training image trains and nothing is held out
  (``train.holdout=0``), as ``train.py`` trains on all of ``<dataroot>/train``; the original also scores its
  ``val`` split after every epoch for the log only, which ``--set train.holdout=val-split`` reproduces (held-out
  images are scored with ``Resize((256, 256))`` + ``CenterCrop(224)``, as the original validates; a fraction
  such as ``0.1`` trains on the rest). ``--threshold calibrated`` needs held-out images: set one of these.
  Under ``resize=tile`` (GenImage) training tiles small images instead of resizing, as the README's GenImage
  recipe does.

Departures, recorded: the original seeds with 100 (GenImage: 70) and disables cuDNN; detbench seeds from the
run seed (``--seed``).
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
from torchvision.models.resnet import Bottleneck, conv1x1
from torchvision.transforms import functional as TF

from detbench.config import ConfigError
from detbench.data.preprocess import imagenet_tensor, tile_to
from detbench.kit.classifier import ClassifierDetector, EvalPreprocessing
from detbench.kit.detector import RunContext
from detbench.kit.schedules import StepDecaySchedule
from detbench.kit.training import TrainSetup, bce_with_logits

RESIZE_MODES = ("square", "native", "tile")
# The original's evaluation preprocessing per test-set convention (detbench.data.suites.EVAL_CONVENTIONS).
CONVENTION_RESIZE: dict[str, str] = {
    "forensynths": "square",
    "universalfakedetect": "square",
    "diffusionforensics": "square",
    "gangen": "native",
    "aigcdetect": "native",
    "genimage": "tile",
}
DEFAULT_RESIZE = "square"  # test.py's default (no_resize=False): for suites without a published convention


@dataclass(frozen=True)
class NPRConfig:
    """NPR options: released weights or training, the evaluation resize policy and the training schedule."""

    weights: str = ""  # released checkpoint (NPR.pth, model_epoch_last_3090.pth)[#sha256=HEX]; empty: train
    resize: Literal["auto", "square", "native", "tile"] = "auto"  # evaluation; auto: by the suite's convention
    load_size: int = 256  # square: Resize((load_size, load_size))
    crop_size: int = 224  # tile: tiled up to and centre-cropped to this; training: random crop
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"  # fp32: the original
    # P(fake) = sigmoid of the logit in float32, as the original (saturated logits tie in AP); float64: ranked
    sigmoid_dtype: Literal["float32", "float64"] = "float32"
    batch_size: int = 64  # evaluation batch
    lr: float = 2e-4
    beta1: float = 0.9
    train_batch_size: int = 32
    epochs: int = 50
    lr_decay: float = 0.9  # multiplied into the learning rate ...
    lr_decay_every: int = 10  # ... after every such 0-based epoch (delr_freq)
    flip: bool = True
    checkpoint_every: int = 500  # steps between resumable checkpoints; 0: none

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: naming every option out of range.
        """
        checks = [
            (self.load_size >= 2 and self.crop_size >= 2, "load_size and crop_size >= 2"),
            (self.batch_size >= 1 and self.train_batch_size >= 1, "batch_size and train_batch_size >= 1"),
            (self.lr > 0 and 0 <= self.beta1 < 1, "lr > 0 and 0 <= beta1 < 1"),
            (self.epochs >= 1 and self.lr_decay > 0 and self.lr_decay_every >= 0,
             "epochs >= 1, lr_decay > 0, lr_decay_every >= 0"),
            (self.checkpoint_every >= 0, "checkpoint_every >= 0 (0: off)"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ConfigError("npr options need " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------- network


class NPRNet(nn.Module):
    """The original's ``resnet50(num_classes=1)``: conv1 (3x3, stride 2) + layer1 + layer2 + fc1, on the
    neighbouring-pixel residual. Initialised as the original: Kaiming normal (fan out) convolutions, BatchNorm
    weight 1 and bias 0, PyTorch's default ``fc1``. :meth:`classify` is the network without the residual (SAFE's
    network is the same one on another input, with two logits).
    """

    def __init__(self, layers: tuple[int, int] = (3, 4), num_classes: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _bottlenecks(64, 64, layers[0], stride=1)
        self.layer2 = _bottlenecks(256, 128, layers[1], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc1 = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    @staticmethod
    def residual(x: Tensor) -> Tensor:
        """NPR: ``x`` minus its nearest-neighbour down- and up-sampled copy (even height and width).

        Args:
            x: ``[B, 3, H, W]`` images with even H and W.

        Returns:
            The residual, same shape.
        """
        down = F.interpolate(x, scale_factor=0.5, mode="nearest", recompute_scale_factor=True)
        return x - F.interpolate(down, scale_factor=2.0, mode="nearest", recompute_scale_factor=True)

    def forward(self, x: Tensor) -> Tensor:
        """The logit of each image (odd sizes lose their last row/column first).

        Args:
            x: ``[B, 3, H, W]`` normalised images.

        Returns:
            ``[B, 1]`` logits.
        """
        h, w = x.shape[-2:]
        x = x[:, :, : h - h % 2, : w - w % 2]  # odd sizes lose the last row/column (the README's fix)
        return self.classify(self.residual(x) * 2.0 / 3.0)

    def classify(self, x: Tensor) -> Tensor:
        """The network on its input: conv1 - bn1 - ReLU - maxpool - layer1 - layer2 - average pool - fc1.

        Args:
            x: ``[B, 3, H, W]`` network inputs.

        Returns:
            ``[B, num_classes]`` logits.
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc1(torch.flatten(self.avgpool(x), 1))


def _bottlenecks(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """Torchvision's ``ResNet._make_layer`` for Bottleneck blocks (stride on the 3x3 convolution)."""
    downsample = None
    if stride != 1 or inplanes != planes * Bottleneck.expansion:
        downsample = nn.Sequential(conv1x1(inplanes, planes * Bottleneck.expansion, stride),
                                   nn.BatchNorm2d(planes * Bottleneck.expansion))
    layers = [Bottleneck(inplanes, planes, stride, downsample)]
    layers += [Bottleneck(planes * Bottleneck.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------- transforms


@dataclass(frozen=True)
class TileTo:
    """The README's ``translate_duplicate`` for GenImage (:func:`detbench.data.preprocess.tile_to`), picklable."""

    size: int

    def __call__(self, img: Image.Image) -> Image.Image:
        """``img`` tiled up to ``size`` when smaller (``translate_duplicate``)."""
        return tile_to(img, self.size)


@dataclass(frozen=True)
class TrainAugment:
    """``train.py``'s training transform from the image's own generator: ``Resize((load, load))`` (or
    tiling), random ``crop`` x ``crop`` window, random horizontal flip, ToTensor, normalise.
    """

    mode: str
    load_size: int
    crop: int
    flip: bool

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Tensor:
        """The augmented, normalised training tensor of ``img``, drawing from ``rng``."""
        if self.mode == "tile":
            img = TileTo(self.crop)(img)
        else:
            img = TF.resize(img, [self.load_size, self.load_size])
        w, h = img.size
        if w < self.crop or h < self.crop:
            raise ValueError(f"image of {w}x{h} px is smaller than the {self.crop} px training crop")
        top, left = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
        img = TF.crop(img, top, left, self.crop, self.crop)
        if self.flip and rng.random() < 0.5:
            img = TF.hflip(img)
        return imagenet_tensor()(img)


# ---------------------------------------------------------------------------------------------- detector


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "npr",
    "class": "NPR",
    "summary": (
        "NPR (CVPR 2024): a trimmed ResNet-50 on neighbouring-pixel residuals, trained from scratch; or "
        "released."
    ),
    "paper": "Tan et al., CVPR",
    "year": 2024,
    "weights_key": "weights",
    "released": "NPR.pth, model_epoch_last_3090.pth",
}


class NPR(ClassifierDetector):
    """NPR (Tan et al., CVPR 2024): a truncated ResNet-50 on neighbouring-pixel up-sampling residuals."""

    name = REGISTRATION["name"]
    version = 1
    Config = NPRConfig
    summary = REGISTRATION["summary"]
    tiny_settings: ClassVar[dict[str, Any]] = {
        "load_size": 32, "crop_size": 32, "epochs": 1, "train_batch_size": 8, "checkpoint_every": 0,
    }
    weights_what = "the NPR checkpoint"
    default_holdout = "0"  # train.py trains on all of <dataroot>/train and keeps the last epoch
    weights_fix = ("pass --set weights=/path/to/NPR.pth (or model_epoch_last_3090.pth: both in the root of "
                   "github.com/chuangchuangtan/NPR-DeepfakeDetection)")
    profile_defaults = {
        # "small" (the demo): its 128 px crops keep their size (Resize((128, 128)) is the identity), random
        # 96 crops in training, 5 epochs with the learning rate scaled up for the short run.
        "small": {"load_size": 128, "crop_size": 96, "epochs": 5, "lr_decay_every": 2, "lr": 1e-3,
                  "checkpoint_every": 20},
    }

    def build_network(self) -> nn.Module:
        """The original's trimmed ResNet-50 on the neighbouring-pixel residual.

        Returns:
            The :class:`NPRNet`.
        """
        return NPRNet()

    def resolved_resize(self, ctx: RunContext) -> tuple[str, str]:
        """The evaluation preprocessing and why: the setting, the suite's convention, or the default.

        Args:
            ctx: the run context (its ``eval_convention``).

        Returns:
            ``(mode, reason)``; mode ``square``, ``tile`` or ``native``.
        """
        if self.config.resize != "auto":
            return self.config.resize, "setting"
        convention = ctx.eval_convention
        if convention in CONVENTION_RESIZE:
            return CONVENTION_RESIZE[convention], f"convention {convention}"
        return DEFAULT_RESIZE, f"default (no published NPR protocol for convention {convention})"

    def eval_preprocessing(self, ctx: RunContext) -> EvalPreprocessing:
        """The evaluation transform of :meth:`resolved_resize`'s mode, then ToTensor + ImageNet normalisation.

        Args:
            ctx: the run context.

        Returns:
            The preprocessing (batched by shape in ``native`` mode); its facts name the mode and why.
        """
        c = self.config
        mode, why = self.resolved_resize(ctx)
        self.mode = mode
        if mode == "square":
            steps: list[Any] = [transforms.Resize([c.load_size, c.load_size])]
            size: dict[str, Any] = {"load_size": c.load_size}
        elif mode == "tile":
            steps, size = [TileTo(c.crop_size), transforms.CenterCrop(c.crop_size)], {"crop_size": c.crop_size}
        else:
            steps, size = [], {}
        facts = {"resize": mode, "chosen_by": why, **size, "odd_sizes": "last row/column dropped"}
        transform = transforms.Compose([*steps, imagenet_tensor()])
        return EvalPreprocessing(transform, by_shape=mode == "native", facts=facts)

    def train_setup(self, ctx: RunContext, train: pd.DataFrame) -> TrainSetup:
        """``train.py``'s recipe: Adam, step decay every ``lr_decay_every`` epochs, the last epoch kept.

        Args:
            ctx: the run context.
            train: the training rows.

        Returns:
            The :class:`~detbench.kit.training.TrainSetup` (tiling in ``tile`` mode, else square resize, then crops).
        """
        c = self.config
        optimizer = torch.optim.Adam(self.net.parameters(), lr=c.lr, betas=(c.beta1, 0.999))
        mode = "tile" if self.mode == "tile" else "square"
        first = [TileTo(c.crop_size)] if mode == "tile" else [transforms.Resize([c.load_size, c.load_size])]
        heldout = transforms.Compose([*first, transforms.CenterCrop(c.crop_size), imagenet_tensor()])
        return TrainSetup(
            model=self.net, optimizer=optimizer,
            schedule=StepDecaySchedule(c.lr, every=c.lr_decay_every, factor=c.lr_decay),
            train_transform=TrainAugment(mode, c.load_size, c.crop_size, c.flip), heldout_transform=heldout,
            loss=bce_with_logits, probabilities=self.probabilities, epochs=c.epochs, batch_size=c.train_batch_size,
            keep="last", checkpoint_every=c.checkpoint_every, heldout_batch_size=c.batch_size,
            precision=self.precision, name=self.name)
