"""SAFE (Li et al., "Improving Synthetic Image Detection Towards Generalization: An Image Transformation
Perspective", KDD 2025).

Faithful to the authors' code (Ouxiang-Li/SAFE: ``models/resnet.py``, ``data/datasets.py``, ``main_finetune.py``,
``engine_finetune.py``, ``scripts/train.sh``, ``scripts/eval.sh``):

- **Input** (``ResNet._preprocess_dwt``): one level of the 2-D discrete wavelet transform of ``pytorch_wavelets``
  (``DWTForward(J=1, wave='bior1.3', mode='symmetric')``: PyWavelets' ``bior1.3`` analysis filters, half-sample
  symmetric extension, each axis filtered and down-sampled by 2, ``floor((N + 5) / 2)`` outputs per axis), of which
  the diagonal detail ``Yh[0][:, :, 2]`` (high-pass along both axes) is kept, then resized back to the input's size
  (torchvision ``Resize``: bilinear, antialias, which up-sampling leaves as plain bilinear). :func:`dwt_band`
  computes it in torch (PyWavelets and pytorch_wavelets are not needed).
- **Network**: the trimmed ResNet-50 that NPR uses (:class:`~detbench.detectors.npr.NPRNet`: 3x3 stride-2
  ``conv1``, ``layer1``, ``layer2``, ``fc1``) with two logits (real, fake); P(fake) = softmax[:, 1], computed as
  ``engine_finetune.evaluate`` does: scipy's softmax of the float32 logits (``softmax_dtype=float64`` ranks
  saturated margins: a departure).
- **Evaluation** (``--transform_mode crop``, ``scripts/eval.sh``): no resize at any size, ``CenterCrop(256)`` (an
  image smaller than 256 on a side is padded with black first, as torchvision's ``CenterCrop`` pads), then
  ``ToTensor``: pixel values in [0, 1], no mean/std normalisation. The same for every test set (no suite
  convention applies; ``--set suite.eval_profile=...`` replaces the crop, never the [0, 1] input).
- **Released checkpoint** ``checkpoint/checkpoint-best.pth`` in the repository (Apache-2.0, as the code):
  ``{'model': state_dict, 'optimizer', 'epoch', 'scaler', 'args'}`` as ``utils.save_model`` writes it, keys without
  a ``module.`` prefix (``model_without_ddp``); ``--set weights=PATH[#sha256=HEX]`` loads ``model`` weights-only
  and strictly (``args`` is an ``argparse.Namespace``, which :mod:`detbench.models.weights` allows).
- **Training** (``scripts/train.sh`` on ForenSynths ProGAN, 4 GPUs x 32 images): the network from scratch (Kaiming
  initialisation), AdamW (weight decay 0.01 on weights, none on biases and other 1-D parameters, eps 1e-8),
  learning rate ``blr * batch / 256`` with ``blr`` 1e-2, a linear warm-up of one epoch and a per-step half cosine
  down to 1e-6 over 20 epochs, cross-entropy with label smoothing 0.1, incomplete batches dropped; after every
  epoch the accuracy on held-out images, the best epoch (strictly) kept as ``checkpoint-best.pth``; the held-out
  images are the training generators' ``val`` split (``train.holdout=val-split``), as the original validates on
  ``train_ForenSynths/val``. Augmentation (``Get_Transforms``, mode ``crop``): ``RandomCrop(256,
  pad_if_needed=True)``, ``RandomHorizontalFlip(0.5)``, ``RandomRotation(180)``, ``ColorJitter(0.5, 0.5, 0.5)``,
  ``ToTensor`` and ``RandomMask`` (with probability 0.5, a ratio drawn from U[0, 0.75] of the 16 px grid cells
  zeroed): every parameter is a setting (``augment.*``).

Departures, recorded: the original's BatchNorm sees each GPU's 32 images, detbench's the whole batch of
``train_batch_size`` (SyncBatchNorm under torchrun on CUDA); the original does not seed; ``RandomMask`` draws its
cells from torch's generator (the same distribution as the original's ``random`` draws) and never asks for more
cells than the grid has (the original would loop forever).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision import transforms

from detbench.config import ConfigError
from detbench.kit.classifier import ClassifierDetector, EvalPreprocessing
from detbench.kit.detector import RunContext
from detbench.kit.schedules import CosineSchedule
from detbench.kit.seeded_data import TorchDrawn
from detbench.kit.training import TrainSetup, cross_entropy
from detbench.probabilities import softmax_fake

from .npr import NPRNet

# PyWavelets' analysis filters (dec_lo, dec_hi), in the order pywt.Wavelet(name).dec_lo / .dec_hi lists them.
_A, _B = 0.0883883476483184405501055452631, 0.70710678118654752440084436210
WAVELETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "bior1.3": ((-_A, _A, _B, _B, _A, -_A), (0.0, 0.0, -_B, _B, 0.0, 0.0)),
    "haar": ((_B, _B), (-_B, _B)),
}
# pytorch_wavelets' detail sub-bands in the order of Yh[0][:, :, i]: the first letter is the filter along the
# width, the second the filter along the height (L low-pass, H high-pass). SAFE keeps HH (i = 2).
BANDS = ("LH", "HL", "HH")


def _symmetric_indices(n: int, left: int, right: int) -> Tensor:
    """Indices of a half-sample symmetric extension (``np.pad(mode='symmetric')``) of a length-``n`` axis."""
    i = torch.arange(-left, n + right) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def _analysis(x: Tensor, taps: Tensor, dim: int) -> Tensor:
    """One filter of the DWT along ``dim`` (2: height, 3: width): symmetric extension, convolution with ``taps``
    and down-sampling by 2, ``floor((N + L - 1) / 2)`` outputs, output ``o`` being ``sum_k taps[k] x[2o + 1 - k]``
    (PyWavelets' and pytorch_wavelets' convention).
    """
    n, length = x.shape[dim], taps.numel()
    out = (n + length - 1) // 2
    pad = 2 * (out - 1) - n + length
    x = x.index_select(dim, _symmetric_indices(n, pad // 2, (pad + 1) // 2).to(x.device))
    c = x.shape[1]
    kernel = taps.flip(0).to(x.dtype).reshape((length, 1) if dim == 2 else (1, length))  # convolution
    return F.conv2d(x, kernel.expand(c, 1, *kernel.shape).contiguous(), stride=(2, 1) if dim == 2 else (1, 2),
                    groups=c)


def dwt_band(x: Tensor, wavelet: str, band: str) -> Tensor:
    """One detail sub-band of a single-level 2-D DWT (``pytorch_wavelets.DWTForward(J=1, mode='symmetric')``).

    Args:
        x: ``[B, C, H, W]`` images.
        wavelet: a name of :data:`WAVELETS` (its taps are taken in ``x``'s dtype, as pytorch_wavelets takes
            PyWavelets' float64 taps in torch's default float32).
        band: one of :data:`BANDS` (first letter: the filter along the width; second: along the height).

    Returns:
        ``[B, C, floor((H + L - 1) / 2), floor((W + L - 1) / 2)]`` coefficients, ``L`` the filter length.
    """
    lo, hi = (torch.tensor(taps, dtype=x.dtype, device=x.device) for taps in WAVELETS[wavelet])
    x = _analysis(x, hi if band[0] == "H" else lo, dim=3)
    return _analysis(x, hi if band[1] == "H" else lo, dim=2)


class SAFENet(NPRNet):
    """The original's ``resnet50(num_classes=2)`` of ``models/resnet.py`` on the DWT sub-band resized to the
    input's size; its parameters and their initialisation are NPR's network's (the wavelet taps are no state).
    """

    def __init__(self, wavelet: str = "bior1.3", band: str = "HH") -> None:
        super().__init__(num_classes=2)
        self.wavelet, self.band = wavelet, band

    def high_band(self, x: Tensor) -> Tensor:
        """The network's input: the sub-band of ``x`` resized (bilinear) back to ``x``'s height and width.

        Args:
            x: ``[B, 3, H, W]`` images in [0, 1].

        Returns:
            ``[B, 3, H, W]``.
        """
        y = dwt_band(x, self.wavelet, self.band)
        return F.interpolate(y, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False, antialias=True)

    def forward(self, x: Tensor) -> Tensor:
        """The two logits (real, fake) of each image.

        Args:
            x: ``[B, 3, H, W]`` images in [0, 1].

        Returns:
            ``[B, 2]`` logits.
        """
        return self.classify(self.high_band(x))


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class AugmentConfig:
    """The training augmentations of ``Get_Transforms`` (mode ``crop``), in their order, with its defaults."""

    flip: float = 0.5  # RandomHorizontalFlip probability
    rotation: float = 180.0  # RandomRotation(degrees): angle ~ U[-rotation, rotation], nearest, black corners
    brightness: float = 0.5  # ColorJitter
    contrast: float = 0.5
    saturation: float = 0.5
    mask_prob: float = 0.5  # RandomMask: probability that an image is masked at all
    mask_ratio: float = 0.75  # the masked fraction is drawn from U[0, mask_ratio]
    mask_patch: int = 16  # the mask's grid cell, in pixels

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: listing the ranges when any option is out of its range.
        """
        ok = (0 <= self.flip <= 1 and 0 <= self.rotation <= 180 and min(self.brightness, self.contrast,
              self.saturation) >= 0 and 0 <= self.mask_prob <= 1 and 0 <= self.mask_ratio <= 1 and self.mask_patch >= 1)
        if not ok:
            raise ConfigError("safe augment options need flip, mask_prob and mask_ratio in [0, 1], rotation in "
                              "[0, 180], brightness, contrast and saturation >= 0, mask_patch >= 1")


@dataclass(frozen=True)
class SAFEConfig:
    """SAFE options: released weights or training, the wavelet input, the crop and the training recipe."""

    weights: str = ""  # released checkpoint-best.pth ({'model': ...})[#sha256=HEX]; empty: train
    crop: int = 256  # --input_size: CenterCrop in evaluation, RandomCrop(pad_if_needed) in training
    wavelet: Literal["bior1.3", "haar"] = "bior1.3"
    band: Literal["LH", "HL", "HH"] = "HH"  # the kept detail sub-band (Yh[0][:, :, 2] = HH)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    # P(fake): scipy's softmax of the float32 logits, as engine_finetune.evaluate (saturated margins tie in AP);
    # float64 ranks them (a departure)
    softmax_dtype: Literal["float32", "float64"] = "float32"
    batch_size: int = 64  # evaluation batch
    # training (scripts/train.sh: 4 GPUs x 32 images, 20 epochs)
    epochs: int = 20
    train_batch_size: int = 128  # the effective batch (the original: 32 per GPU on 4 GPUs)
    blr: float = 1e-2  # lr = blr * train_batch_size / 256 (main_finetune.py's rule)
    min_lr: float = 1e-6
    warmup_epochs: float = 1.0
    weight_decay: float = 0.01  # AdamW, on weights only (biases and 1-D parameters: none)
    smoothing: float = 0.1  # label smoothing of the cross-entropy (LabelSmoothingCrossEntropy)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    checkpoint_every: int = 200  # optimizer steps between resumable checkpoints (0: only at epoch ends)

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: listing the ranges when any option is out of its range.
        """
        ok = (self.crop >= 8 and self.batch_size >= 1 and self.epochs >= 1 and self.train_batch_size >= 1
              and self.blr > 0 and self.min_lr >= 0 and self.warmup_epochs >= 0 and self.weight_decay >= 0
              and 0 <= self.smoothing < 1 and self.checkpoint_every >= 0)
        if not ok:
            raise ConfigError("safe options need crop >= 8, batch_size, epochs and train_batch_size >= 1, blr > 0, "
                              "min_lr, warmup_epochs and weight_decay >= 0, 0 <= smoothing < 1, "
                              "checkpoint_every >= 0")


# ---------------------------------------------------------------------------------------------- transforms


@dataclass(frozen=True)
class RandomPatchMask:
    """``RandomMask(ratio=(0, max_ratio), patch_size=patch, p=prob)`` on a ``[C, H, W]`` tensor, drawing from torch:
    with probability ``prob``, ``int(H * W * r / patch**2)`` distinct cells of the ``patch`` grid (r ~ U[0,
    max_ratio]) are zeroed.
    """

    prob: float
    max_ratio: float
    patch: int

    def __call__(self, x: Tensor) -> Tensor:
        """``x`` with the drawn cells zeroed (or unchanged)."""
        if float(torch.rand(())) > self.prob:
            return x
        h, w = x.shape[-2:]
        rows, cols = h // self.patch, w // self.patch
        ratio = float(torch.rand(())) * self.max_ratio
        n = min(int(h * w * ratio / self.patch**2), rows * cols)
        if n == 0:
            return x
        mask = torch.ones(h, w, dtype=x.dtype)
        for cell in torch.randperm(rows * cols)[:n].tolist():
            top, left = (cell // cols) * self.patch, (cell % cols) * self.patch
            mask[top:top + self.patch, left:left + self.patch] = 0
        return x * mask


def train_augment(crop: int, a: AugmentConfig) -> transforms.Compose:
    """``Get_Transforms``' training transform (mode ``crop``), every random draw from torch's generator.

    Args:
        crop: the random crop's size (images smaller are padded with black on both sides first).
        a: the augmentation settings.

    Returns:
        PIL image -> ``[3, crop, crop]`` tensor in [0, 1] (masked cells 0).
    """
    return transforms.Compose([
        transforms.RandomCrop([crop, crop], pad_if_needed=True),
        transforms.RandomHorizontalFlip(p=a.flip),
        transforms.RandomRotation(a.rotation),
        transforms.ColorJitter(brightness=a.brightness, contrast=a.contrast, saturation=a.saturation),
        transforms.ToTensor(),
        RandomPatchMask(a.mask_prob, a.mask_ratio, a.mask_patch),
    ])


# ---------------------------------------------------------------------------------------------- detector


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "safe",
    "class": "SAFE",
    "summary": (
        "SAFE (KDD 2025): a trimmed ResNet-50 on the wavelet diagonal detail of unresized 256 px crops, trained "
        "with crop, flip, rotation, colour jitter and patch masking; or released."
    ),
    "paper": "Li et al., KDD",
    "year": 2025,
    "training": "trains",
    "weights_key": "weights",
    "released": "checkpoint/checkpoint-best.pth in github.com/Ouxiang-Li/SAFE (Apache-2.0)",
}


class SAFE(ClassifierDetector):
    """SAFE: a trimmed ResNet-50 on the DWT high-frequency band of crops that are never resized."""

    name = REGISTRATION["name"]
    version = 1
    Config = SAFEConfig
    summary = REGISTRATION["summary"]
    tiny_settings: ClassVar[dict[str, Any]] = {
        "crop": 32, "epochs": 1, "train_batch_size": 8, "checkpoint_every": 0,
    }
    weights_what = "the SAFE checkpoint"
    weights_fix = ("pass --set weights=/path/to/checkpoint-best.pth (checkpoint/ in github.com/Ouxiang-Li/SAFE; "
                   "the format utils.save_model writes: {'model': state_dict, ...})")
    default_holdout = "val-split"  # main_finetune.py selects on its separate --eval_data_path set
    profile_defaults = {
        # "small" (the demo): centre and random 64 px crops of its 128 px images (never padded or resized; a
        # quarter of the work of 128 px on 2 CPU cores), 3 epochs of 32-image steps with a half-epoch warm-up; the
        # original's augmentations unchanged.
        "small": {"crop": 64, "epochs": 3, "train_batch_size": 32, "warmup_epochs": 0.5, "checkpoint_every": 20},
    }

    def build_network(self) -> nn.Module:
        """The original's network on the configured wavelet sub-band.

        Returns:
            The :class:`SAFENet`.
        """
        return SAFENet(self.config.wavelet, self.config.band)

    def to_tensor(self) -> Any:
        """PIL image -> network input: ``ToTensor`` alone (values in [0, 1]; the original normalises nothing).

        Returns:
            The transform.
        """
        return transforms.ToTensor()

    def eval_preprocessing(self, ctx: RunContext) -> EvalPreprocessing:
        """``CenterCrop(crop)`` (black padding for smaller images) and ``ToTensor``, for every test set.

        Args:
            ctx: unused (the original evaluates every test set alike).

        Returns:
            The preprocessing (every tensor the crop's size); facts: the crop, the padding, no normalisation.
        """
        c = self.config
        facts = {"crop": c.crop, "resize": "none", "pad": "black", "normalise": "none"}
        return EvalPreprocessing(transforms.Compose([transforms.CenterCrop([c.crop, c.crop]), self.to_tensor()]),
                                 by_shape=False, facts=facts)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """P(fake) = softmax(logits)[:, 1] of the two logits (real, fake), in ``softmax_dtype``.

        Args:
            logits: ``[N, 2]`` logits.

        Returns:
            ``[N]`` P(fake).
        """
        return softmax_fake(logits, self.config.softmax_dtype)

    def train_setup(self, ctx: RunContext, train: pd.DataFrame) -> TrainSetup:
        """``scripts/train.sh``'s recipe on the shared loop.

        Args:
            ctx: unused.
            train: the training rows (a batch never holds more than there are).

        Returns:
            The recipe: batch ``min(train_batch_size, rows)``, learning rate ``blr * batch / 256``.
        """
        c = self.config
        batch = min(c.train_batch_size, len(train))
        lr = c.blr * batch / 256
        decay = [p for n, p in self.net.named_parameters() if p.ndim > 1 and not n.endswith(".bias")]
        no_decay = [p for n, p in self.net.named_parameters() if p.ndim <= 1 or n.endswith(".bias")]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=lr, eps=1e-8)
        return TrainSetup(
            model=self.net, optimizer=optimizer,
            schedule=CosineSchedule(lr, epochs=c.epochs, min_lr=c.min_lr, warmup_epochs=c.warmup_epochs),
            train_transform=TorchDrawn(train_augment(c.crop, c.augment)),
            heldout_transform=self.preprocessing.transform, loss=partial(cross_entropy, smoothing=c.smoothing),
            probabilities=self.probabilities, epochs=c.epochs, batch_size=batch, keep="best", drop_last=True,
            checkpoint_every=c.checkpoint_every, checkpoint_each_epoch=True, heldout_batch_size=c.batch_size,
            precision=self.precision, name=self.name)
