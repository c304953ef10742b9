"""CNNSpot (Wang et al., "CNN-generated images are surprisingly easy to spot... for now", CVPR 2020).

Faithful to PeterWang512/CNNDetection:

- **Network**: torchvision's ResNet-50 (the original's ``networks/resnet.py`` has the same layout: stride on
  the 3x3 conv of each bottleneck, keys ``conv1``, ``bn1``, ``layer1..4``, ``fc``) with ``fc = Linear(2048, 1)``;
  P(fake) = sigmoid(logit), in float32 as ``validate.py``'s ``model(x).sigmoid()``: logits above about 16.6
  all give exactly 1.0 and tie in AP, as in the original (``sigmoid_dtype=float64`` ranks them: a departure).
- **Released checkpoints** ``blur_jpg_prob0.5.pth`` / ``blur_jpg_prob0.1.pth`` (``{'model': state_dict,
  'optimizer': ..., 'total_steps': ...}``): ``--set weights=PATH[#sha256=HEX]`` loads ``['model']``
  weights-only and strictly; nothing trains and no training rows are needed (``--protocol eval`` works).
- **Evaluation** as ``eval.py``: no resize, ``CenterCrop(224)`` (images smaller than 224 are padded black, as
  torchvision pads), ImageNet normalisation. ``eval_crop=0`` is the README's no-crop variant (``eval.py
  --no_crop --batch_size 1``): every image at its own size (detbench batches images of equal size together,
  which gives the same scores as batch 1).
- **Training** as ``train.py``: ImageNet-initialised ResNet-50 (``init=imagenet``: torchvision's
  ``resnet50-19c8e357.pth``, or its re-saved twin ``resnet50-0676ba61.pth``), ``fc`` re-initialised N(0, 0.02);
  BCE-with-logits, Adam (lr 1e-4, betas 0.9/0.999), batch 64. Each training image: shorter side resized to
  256 (bilinear), Gaussian blur with probability ``blur_prob`` (sigma ~ U[0, 3], scipy in place on uint8, as
  the original), JPEG with probability ``jpeg_prob`` (quality ~ U{30..100}), random 224 crop, random flip.
  After every epoch the held-out images are scored as the original validates (shorter side 256, centre crop
  224, blur sigma 1.5 and PIL JPEG quality 65 each with the training probabilities, drawn per image from the
  run seed). They are the training generators' separate ``val`` split, as ``train.py`` validates on
  ``<dataroot>/val`` (``train.holdout=val-split``; every training image trains); where the suite has no val
  split apart from its evaluation data (GenImage, the demo), 10 % of the training split is held out instead,
  recorded in ``run.json`` ``holdout`` and warned about. The schedule: accuracy below ``best + 0.001`` for 5
  epochs divides the learning rate by 10 (then a fresh stopper with delta 0.002) until it would fall below 1e-6.
  The kept model is the last one the stopper saved, which is the best of the last learning-rate phase (the
  original overwrites ``model_epoch_best.pth`` with the first epoch after each drop).

Departures, all recorded: the original draws the JPEG encoder from {cv2, PIL}; cv2 is not a dependency, so
both draws encode with Pillow (libjpeg, 4:2:0, as cv2's default). The original sets no seed; detbench seeds
everything from the run seed. Offline, no ImageNet weights exist: ``init=random`` trains from torchvision's
random initialisation and the record says it is a stand-in (the demo's ``small`` profile does this).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn
from torchvision import transforms
from torchvision.transforms import functional as TF

from detbench.config import ConfigError
from detbench.data.perturbations import JpegQuality, gaussian_blur_uint8
from detbench.data.preprocess import imagenet_tensor
from detbench.kit.classifier import ClassifierDetector, EvalPreprocessing
from detbench.kit.detector import RunContext
from detbench.kit.schedules import PlateauSchedule
from detbench.kit.training import TrainSetup, bce_with_logits

IMAGENET_FILES = ("resnet50-19c8e357.pth", "resnet50-0676ba61.pth")  # torchvision's IMAGENET1K_V1 ResNet-50
IMAGENET_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
JPEG_METHODS = ("cv2", "pil")  # the original's draw; both encode with Pillow here


@dataclass(frozen=True)
class CNNSpotConfig:
    """CNNSpot options: released weights or training, evaluation crop, precision and training augmentation."""

    weights: str = ""  # released checkpoint (blur_jpg_prob0.5.pth / 0.1.pth)[#sha256=HEX]; empty: train
    eval_crop: int = 224  # centre crop at evaluation (the paper); 0: no crop (the README's no-crop variant)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"  # fp32: the original
    # P(fake) = sigmoid of the logit in float32, as the original (saturated logits tie in AP); float64: ranked
    sigmoid_dtype: Literal["float32", "float64"] = "float32"
    batch_size: int = 64  # evaluation batch
    init: str = "imagenet"  # training start: imagenet, random (a stand-in), or a ResNet-50 file[#sha256=HEX]
    load_size: int = 256  # training/held-out: shorter side resized to this (bilinear)
    crop: int = 224  # training random crop / held-out centre crop
    blur_prob: float = 0.5  # the released blur_jpg_prob0.5 recipe; 0.1 for the other
    blur_sigma_max: float = 3.0  # sigma ~ U[0, blur_sigma_max]
    jpeg_prob: float = 0.5
    jpeg_quality_min: int = 30  # quality ~ U{min..max}
    jpeg_quality_max: int = 100
    flip: bool = True
    lr: float = 1e-4
    beta1: float = 0.9
    init_gain: float = 0.02  # std of the new fc weights
    train_batch_size: int = 64
    max_epochs: int = 10000  # the original's niter: an upper bound; early stopping ends training
    patience: int = 5
    delta: float = 0.001  # smallest held-out accuracy gain that counts, first learning-rate phase
    delta_after: float = 0.002  # the same after each drop
    min_lr: float = 1e-6
    checkpoint_every: int = 500  # steps between resumable checkpoints; 0: none

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: naming every option out of range.
        """
        checks = [
            (self.eval_crop >= 0, "eval_crop >= 0 (0: no crop)"),
            (self.batch_size >= 1 and self.train_batch_size >= 1, "batch_size and train_batch_size >= 1"),
            (self.crop >= 1 and self.load_size >= self.crop, "1 <= crop <= load_size"),
            (0 <= self.blur_prob <= 1 and 0 <= self.jpeg_prob <= 1, "blur_prob and jpeg_prob in [0, 1]"),
            (self.blur_sigma_max >= 0, "blur_sigma_max >= 0"),
            (1 <= self.jpeg_quality_min <= self.jpeg_quality_max <= 100,
             "1 <= jpeg_quality_min <= jpeg_quality_max <= 100"),
            (self.lr > 0 and self.min_lr > 0 and 0 <= self.beta1 < 1, "lr > 0, min_lr > 0, 0 <= beta1 < 1"),
            (self.max_epochs >= 1 and self.patience >= 1, "max_epochs and patience >= 1"),
            (self.checkpoint_every >= 0, "checkpoint_every >= 0 (0: off)"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ConfigError("cnnspot options need " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------- network


def build_resnet50(num_classes: int = 1) -> nn.Module:
    """Torchvision's ResNet-50 (CNNDetection's ``resnet50(num_classes=...)`` has the same keys and init).

    Args:
        num_classes: outputs of the final ``fc`` layer.

    Returns:
        The randomly initialised network (initialise under a seeded RNG for reproducibility).
    """
    from torchvision.models import resnet50

    return resnet50(weights=None, num_classes=num_classes)


def imagenet_start(spec: str, gain: float) -> tuple[nn.Module, dict[str, Any]]:
    """The training start of ``train.py``: ImageNet ResNet-50 weights, ``fc`` replaced by ``Linear(2048, 1)``.

    Args:
        spec: ``imagenet`` (torchvision's file, found offline-first), ``random`` (a stand-in, recorded as one)
            or a file path with an optional ``#sha256=`` pin.
        gain: the standard deviation of the new ``fc`` weights, drawn from N(0, gain).

    Returns:
        The network and the facts recorded about its start (``init`` and the file's path and sha256).

    Raises:
        WeightsError: the ImageNet weights are missing, unreadable or do not match.
    """
    facts: dict[str, Any]
    if spec == "random":
        model = build_resnet50(1000)
        facts = {"init": "random", "init_note": "stand-in: the original starts from ImageNet weights "
                 "(--set init=imagenet or init=/path/to/resnet50-19c8e357.pth)"}
    else:
        model, path, sha256 = imagenet_resnet50(spec)
        facts = {"init": "imagenet", "init_path": path, "init_sha256": sha256}
    model.fc = nn.Linear(2048, 1)
    nn.init.normal_(model.fc.weight.data, 0.0, gain)
    return model, facts


def imagenet_resnet50(spec: str, key: str = "init") -> tuple[nn.Module, str, str]:
    """Torchvision's IMAGENET1K_V1 ResNet-50 (1000 classes), strictly loaded.

    Args:
        spec: ``imagenet`` (torchvision's file, found offline-first: :func:`find_imagenet_file`) or a file path
            with an optional ``#sha256=`` pin.
        key: the setting that names it (for the messages).

    Returns:
        The network, the file's path and its sha256.

    Raises:
        WeightsError: the weights are missing, unreadable or do not match.
    """
    from detbench.models.weights import load_checkpoint_file, load_into

    path = find_imagenet_file(key) if spec == "imagenet" else spec
    loaded = load_checkpoint_file(path, what="ImageNet ResNet-50 weights", key=key, hub_name_check=True,
                                  fix=imagenet_fix(key))
    model = build_resnet50(1000)
    load_into(model, loaded.state_dict, f"ImageNet ResNet-50 weights {loaded.path}")
    return model, str(loaded.path), loaded.sha256


def imagenet_fix(key: str) -> str:
    """How to supply torchvision's ImageNet ResNet-50 to the setting ``key``."""
    return (f"pass --set {key}=/path/to/resnet50-19c8e357.pth (torchvision's ImageNet ResNet-50, as the original), "
            f"put it in $DETBENCH_HOME/weights/torchvision/, or --set {key}=random to train from random weights "
            "(recorded as a stand-in)")


def find_imagenet_file(key: str = "init") -> str:
    """Torchvision's ImageNet ResNet-50: ``$DETBENCH_HOME/weights/torchvision/``, torch hub's cache, or a
    download (online only). Returns the path; WeightsError naming the fixes (for the setting ``key``) when none is
    found.
    """
    from detbench.models.weights import resolve_weights

    hub = _torch_hub_checkpoints()
    for name in IMAGENET_FILES:
        if (hub / name).is_file():
            return str(hub / name)

    def download() -> str:
        torch.hub.load_state_dict_from_url(IMAGENET_URL, check_hash=True, map_location="cpu")
        return str(hub / IMAGENET_URL.rsplit("/", 1)[1])

    resolved = resolve_weights("ImageNet ResNet-50 weights (torchvision resnet50-19c8e357.pth)", fix=imagenet_fix(key),
                               home_dir="torchvision", home_patterns=IMAGENET_FILES, download=download,
                               download_url=IMAGENET_URL)
    return str(resolved.path)


def _torch_hub_checkpoints() -> Any:
    from pathlib import Path

    return Path(torch.hub.get_dir()) / "checkpoints"


# ---------------------------------------------------------------------------------------------- transforms


@dataclass(frozen=True)
class TrainAugment:
    """``train.py``'s per-image training transform, drawing from the image's own generator: shorter side to
    ``load_size`` (bilinear), blur, JPEG, random crop, random horizontal flip, ToTensor, normalise.
    """

    load_size: int
    crop: int
    blur_prob: float
    blur_sigma_max: float
    jpeg_prob: float
    jpeg_quality: tuple[int, int]
    flip: bool

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        """The augmented, normalised training tensor of ``img``, drawing from ``rng``."""
        img = TF.resize(img, self.load_size, interpolation=transforms.InterpolationMode.BILINEAR)
        if rng.random() < self.blur_prob:
            img = Image.fromarray(gaussian_blur_uint8(img, float(rng.random() * self.blur_sigma_max)))
        if rng.random() < self.jpeg_prob:
            rng.integers(len(JPEG_METHODS))  # the original's encoder draw (Pillow encodes both)
            img = JpegQuality(int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))).apply(img)
        w, h = img.size
        top, left = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
        img = TF.crop(img, top, left, self.crop, self.crop)
        if self.flip and rng.random() < 0.5:
            img = TF.hflip(img)
        return imagenet_tensor()(img)


@dataclass(frozen=True)
class ValidationAugment:
    """``train.py``'s validation perturbation: blur at the middle sigma and PIL JPEG at the middle quality,
    each with the training probability, drawn per image from (run seed, image id).
    """

    seed: int
    blur_prob: float
    sigma: float
    jpeg_prob: float
    quality: int

    def __call__(self, img: Image.Image, image_id: str) -> Image.Image:
        """``img`` blurred and/or JPEG-compressed as drawn from (seed, ``image_id``)."""
        digest = hashlib.sha256(f"cnnspot-val:{self.seed}:{image_id}".encode()).digest()
        u_blur, u_jpeg = np.random.default_rng(int.from_bytes(digest[:8], "little")).random(2)
        if u_blur < self.blur_prob:
            img = Image.fromarray(gaussian_blur_uint8(img, self.sigma))
        if u_jpeg < self.jpeg_prob:
            img = JpegQuality(self.quality).apply(img)
        return img


# ---------------------------------------------------------------------------------------------- detector


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "cnnspot",
    "class": "CNNSpot",
    "summary": "CNNSpot (CVPR 2020): ResNet-50 with one logit, blur+JPEG augmented training; or a released checkpoint.",
    "paper": "Wang et al., CVPR",
    "year": 2020,
    "weights_key": "weights",
    "released": "blur_jpg_prob0.5.pth, blur_jpg_prob0.1.pth",
}


class CNNSpot(ClassifierDetector):
    """CNNSpot (Wang et al., CVPR 2020): a ResNet-50 with one logit, trained with blur and JPEG augmentation."""

    name = REGISTRATION["name"]
    default_holdout = "val-split"  # train.py validates on <dataroot>/val
    version = 1
    Config = CNNSpotConfig
    summary = REGISTRATION["summary"]
    tiny_settings: ClassVar[dict[str, Any]] = {
        "init": "random", "load_size": 32, "crop": 32, "eval_crop": 32, "max_epochs": 1, "train_batch_size": 8,
        "checkpoint_every": 0,
    }
    weights_what = "the CNNSpot checkpoint"
    file_keys = {"weights": (), "init": ("imagenet", "random")}  # files named by their sha256 in the identity
    weights_fix = ("pass --set weights=/path/to/blur_jpg_prob0.5.pth (or blur_jpg_prob0.1.pth: "
                   "weights/download_weights.sh in github.com/PeterWang512/CNNDetection)")
    profile_defaults = {
        # "small" (the demo): no ImageNet weights offline, so random init (recorded as a stand-in); the 128 px
        # demo crops are neither upsampled to 256 nor padded to 224: random 96 crops in training, centre 96 crops
        # in evaluation (a ResNet-50 on 2 CPU cores), three short epochs with a quick plateau.
        "small": {"init": "random", "load_size": 128, "crop": 96, "eval_crop": 96, "train_batch_size": 32,
                  "max_epochs": 3, "patience": 1, "lr": 1e-3, "checkpoint_every": 10},
    }

    def build_network(self) -> nn.Module:
        """CNNDetection's ResNet-50 with one logit.

        Returns:
            The network.
        """
        return build_resnet50(1)

    def prepare_training(self, ctx: RunContext) -> dict[str, Any]:
        """Replace the network by :func:`imagenet_start` (the ``init`` option).

        Args:
            ctx: the run context.

        Returns:
            The start's facts.
        """
        self.net, facts = imagenet_start(self.config.init, self.config.init_gain)
        return facts

    def eval_preprocessing(self, ctx: RunContext) -> EvalPreprocessing:
        """No resize; a centre crop of ``eval_crop`` (smaller images padded black), or native size when 0.

        Args:
            ctx: the run context (its test-set convention is not used: CNNSpot's evaluation is one transform).

        Returns:
            The preprocessing (batched by shape at native size).
        """
        crop = self.config.eval_crop
        if crop:
            transform = transforms.Compose([transforms.CenterCrop(crop), imagenet_tensor()])
            facts = {"resize": "none", "crop": f"center {crop} (smaller images padded black)"}
        else:
            transform = imagenet_tensor()
            facts = {"resize": "none", "crop": "none (native size)"}
        return EvalPreprocessing(transform, by_shape=not crop, facts=facts)

    def train_setup(self, ctx: RunContext, train: pd.DataFrame) -> TrainSetup:
        """``train.py``'s recipe: Adam, plateau schedule on held-out accuracy, blur/JPEG augmentation, early stopping.

        Args:
            ctx: the run context (its seed draws the validation perturbations).
            train: the training rows.

        Returns:
            The :class:`~detbench.kit.training.TrainSetup`.
        """
        c = self.config
        optimizer = torch.optim.Adam(self.net.parameters(), lr=c.lr, betas=(c.beta1, 0.999))
        schedule = PlateauSchedule(c.lr, patience=c.patience, delta=c.delta, delta_after=c.delta_after,
                                   factor=10.0, min_lr=c.min_lr, metric="acc")
        augment = TrainAugment(c.load_size, c.crop, c.blur_prob, c.blur_sigma_max, c.jpeg_prob,
                               (c.jpeg_quality_min, c.jpeg_quality_max), c.flip)
        validation = ValidationAugment(ctx.seed, c.blur_prob, c.blur_sigma_max / 2, c.jpeg_prob,
                                       int((c.jpeg_quality_min + c.jpeg_quality_max) / 2))
        heldout = transforms.Compose([transforms.Resize(c.load_size), transforms.CenterCrop(c.crop), imagenet_tensor()])
        return TrainSetup(
            model=self.net, optimizer=optimizer, schedule=schedule, train_transform=augment,
            heldout_transform=heldout, heldout_perturb=validation, loss=bce_with_logits,
            probabilities=self.probabilities, epochs=c.max_epochs, batch_size=c.train_batch_size, keep="best",
            checkpoint_every=c.checkpoint_every, heldout_batch_size=c.batch_size, precision=self.precision,
            name=self.name)
