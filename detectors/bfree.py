"""B-Free (Guillaro et al., "A Bias-Free Training Paradigm for More General AI-generated Image Detection", CVPR 2025).

Faithful to the authors' inference code (grip-unina/B-Free: ``code/networks/__init__.py``,
``code/networks/wrapper5crops.py``, ``code/main_bfree.py``, ``code/utils/normalization.py``):

- **Network** (``get_network('timm_c5i504_vit_base_patch14_reg4_dinov2')``): timm's DINOv2 ViT-B/14 with 4 register
  tokens and one logit (``num_classes=1``), its input size set to 504 (a 36 x 36 patch grid, so the position
  embedding holds 1296 patch positions).
- **Five crops on the patch grid** (``Wrapper5crops``): the patch embedding's convolution runs on the whole image
  (``floor(H / 14) x floor(W / 14)`` patches; the rows and columns past the last whole patch are dropped); a grid
  smaller than 36 on a side is repeated periodically and cut to 36 x 36 (``replicate_wrap``, which also cuts a
  longer other side to its first 36 patches); five 36 x 36 windows of the grid
  are cut (centre at ``(gh - 36) // 2``, then top-left, bottom-left, bottom-right, top-right), each is classified
  and the image's logit is the mean of the five logits. P(fake) is its sigmoid (the original reports the logit).
- **Evaluation** (``main_bfree.py``): no resize and no crop in pixels: ``ToTensor`` and the ``norm_type`` of the
  released ``config.yaml`` (ImageNet mean/std by default: ``normalise``), one image at a time (detbench batches
  images of the same size).
- **Released checkpoint** ``BFREE_dino2reg4/model_epoch_best.pth`` (GRIP-UNINA non-commercial licence, from the
  project page): ``{'model': state_dict}`` in timm's ViT key layout (``cls_token``, ``reg_token``, ``pos_embed``,
  ``patch_embed.proj.*``, ``blocks.*``, ``norm.*``, ``head.*``); loaded weights-only and strictly.
- **Training**: the authors released no training code. Without ``weights`` detbench fine-tunes the same network
  from random initialisation with a plain recipe (AdamW, binary cross-entropy, random crops and flips): a
  stand-in so the detector runs under every protocol, not the paper's bias-free data or its augmentations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pandas as pd
import torch
from torch import Tensor, nn
from torchvision import transforms

from detbench.config import ConfigError
from detbench.kit.classifier import ClassifierDetector, EvalPreprocessing
from detbench.kit.detector import RunContext
from detbench.kit.schedules import CosineSchedule
from detbench.kit.seeded_data import TorchDrawn
from detbench.kit.training import TrainSetup, bce_with_logits

# get_list_norm's normalisations: mean, std (None: ToTensor alone)
NORMALISATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "resnet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "xception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "none": None,
}


def replicate_wrap(x: Tensor, height: int, width: int) -> Tensor:
    """A ``[B, C, h, w]`` grid repeated periodically and cut to exactly ``height`` x ``width``.

    As ``replicate_wrap`` does, a side longer than asked is cut too (to its first ``height`` rows or ``width``
    columns): an image smaller than the window on one side only is scored on its top-left window.
    """
    rep_h = max(-(-height // x.shape[-2]), 1)
    rep_w = max(-(-width // x.shape[-1]), 1)
    return x.repeat(1, 1, rep_h, rep_w)[..., :height, :width]


def five_windows(grid: Tensor, side: int) -> Tensor:
    """The five ``side`` x ``side`` windows of a ``[B, C, h, w]`` patch grid, stacked along the batch.

    A grid smaller than ``side`` on either side is wrapped first (:func:`replicate_wrap`); the order is
    ``Wrapper5crops``': centre, top-left, bottom-left, bottom-right, top-right.
    """
    if grid.shape[-2] < side or grid.shape[-1] < side:
        grid = replicate_wrap(grid, side, side)
    hs = (grid.shape[-2] - side) // 2
    ws = (grid.shape[-1] - side) // 2
    return torch.cat((grid[:, :, hs:hs + side, ws:ws + side], grid[:, :, :side, :side], grid[:, :, -side:, :side],
                      grid[:, :, -side:, -side:], grid[:, :, :side, -side:]), 0)


class BFreeNet(nn.Module):
    """timm's DINOv2 ViT with registers (one logit) scoring the mean of five windows of the image's patch grid.

    Its state dict is the timm model's, key for key (the layout of the released checkpoint).
    """

    def __init__(self, crop: int, patch: int, width: int, depth: int, heads: int, registers: int,
                 init_values: float) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        vit = VisionTransformer(img_size=crop, patch_size=patch, embed_dim=width, depth=depth, num_heads=heads,
                                init_values=init_values, reg_tokens=registers, no_embed_class=True, num_classes=1)
        for name, child in vit.named_children():  # the timm modules registered here, under their own names
            self.add_module(name, child)
        for name, param in vit.named_parameters(recurse=False):
            self.register_parameter(name, param)
        self.vit = [vit]  # the timm model's methods, without registering it twice
        self.side = crop // patch

    def forward(self, x: Tensor) -> Tensor:
        """The mean logit of the five windows.

        Args:
            x: ``[B, 3, H, W]`` normalised images (any size).

        Returns:
            ``[B, 1]`` logits.
        """
        vit = self.vit[0]
        grid = self.patch_embed.proj(x)
        tokens = self.patch_embed.norm(five_windows(grid, self.side).flatten(2).transpose(1, 2))
        tokens = self.blocks(vit.norm_pre(vit.patch_drop(vit._pos_embed(tokens))))
        y = vit.forward_head(self.norm(tokens))
        return y.reshape(5, x.shape[0], -1).mean(0)


@dataclass(frozen=True)
class BFreeConfig:
    """B-Free options: released weights or the stand-in training, the architecture and the normalisation."""

    weights: str = ""  # released model_epoch_best.pth ({'model': state_dict})[#sha256=HEX]; empty: train
    crop: int = 504  # the window side in pixels (Wrapper5crops' patch_size; 36 patches of 14)
    patch: int = 14
    width: int = 768  # ViT-B
    depth: int = 12
    heads: int = 12
    registers: int = 4
    init_values: float = 1e-5  # LayerScale
    normalise: Literal["resnet", "clip", "xception", "none"] = "resnet"  # config.yaml's norm_type
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    sigmoid_dtype: Literal["float32", "float64"] = "float32"
    batch_size: int = 16  # evaluation batch (images of one size)
    # the stand-in training (no released recipe)
    epochs: int = 3
    train_batch_size: int = 32
    lr: float = 1e-5
    weight_decay: float = 0.05
    flip: float = 0.5
    checkpoint_every: int = 200

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: listing the ranges when any option is out of its range.
        """
        ok = (self.patch >= 1 and self.crop >= self.patch and self.crop % self.patch == 0 and self.width >= 1
              and self.depth >= 1 and self.heads >= 1 and self.width % self.heads == 0 and self.registers >= 0
              and self.batch_size >= 1 and self.epochs >= 1 and self.train_batch_size >= 1 and self.lr > 0
              and self.weight_decay >= 0 and 0 <= self.flip <= 1 and self.checkpoint_every >= 0)
        if not ok:
            raise ConfigError("bfree options need crop a multiple of patch >= 1, width a multiple of heads, "
                              "registers >= 0, batch_size, epochs and train_batch_size >= 1, lr > 0, "
                              "weight_decay >= 0, flip in [0, 1], checkpoint_every >= 0")


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "bfree",
    "class": "BFree",
    "summary": (
        "B-Free (CVPR 2025): DINOv2 ViT-B/14 with registers, the mean logit of five 504 px windows of the "
        "unresized image's patch grid; released weights (or a stand-in fine-tuning)."
    ),
    "paper": "Guillaro et al., CVPR",
    "year": 2025,
    "training": "trains",
    "weights_key": "weights",
    "released": ("BFREE_dino2reg4/model_epoch_best.pth from grip.unina.it (github.com/grip-unina/B-Free; "
                 "GRIP-UNINA licence, non-commercial use only)"),
}


class BFree(ClassifierDetector):
    """B-Free: the mean logit of five windows of a DINOv2 ViT's patch grid on the unresized image."""

    name = REGISTRATION["name"]
    version = 1
    Config = BFreeConfig
    summary = REGISTRATION["summary"]
    tiny_settings: ClassVar[dict[str, Any]] = {
        "crop": 32, "patch": 4, "width": 32, "depth": 2, "heads": 2, "epochs": 1, "train_batch_size": 8,
        "checkpoint_every": 0,
    }
    profile_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        # "small" (the demo): a tiny random ViT of the family (32 px windows, 4 px patches, width 32, 2 blocks)
        # instead of DINOv2 ViT-B/14 at 504 px, 3 epochs of 32 images
        "small": {**{k: v for k, v in tiny_settings.items() if k not in ("epochs", "train_batch_size",
                                                                         "checkpoint_every")},
                  "epochs": 3, "train_batch_size": 32, "lr": 1e-3, "checkpoint_every": 20},
    }
    weights_what = "the B-Free checkpoint"
    weights_fix = ("pass --set weights=/path/to/model_epoch_best.pth (BFREE_dino2reg4 from the B-Free project; "
                   "the format networks.load_weights reads: {'model': state_dict})")

    def build_network(self) -> nn.Module:
        """The original's network for the configured architecture.

        Returns:
            The :class:`BFreeNet`.
        """
        c = self.config
        return BFreeNet(c.crop, c.patch, c.width, c.depth, c.heads, c.registers, c.init_values)

    def to_tensor(self) -> Any:
        """PIL image -> network input: ``ToTensor`` and the configured normalisation.

        Returns:
            The transform.
        """
        norm = NORMALISATIONS[self.config.normalise]
        steps: list[Any] = [transforms.ToTensor()]
        if norm is not None:
            steps.append(transforms.Normalize(*norm))
        return transforms.Compose(steps)

    def eval_preprocessing(self, ctx: RunContext) -> EvalPreprocessing:
        """The whole image, unresized and uncropped (the network cuts its windows), for every test set.

        Args:
            ctx: unused (the original evaluates every test set alike).

        Returns:
            The preprocessing (native sizes, batched by shape).
        """
        c = self.config
        facts = {"resize": "none", "windows": f"five {c.crop} px on the patch grid, mean logit",
                 "normalise": c.normalise}
        return EvalPreprocessing(self.to_tensor(), by_shape=True, facts=facts)

    def input_size(self, ctx: RunContext, generator: str) -> int | None:
        """The window side, the tile side of ``eval.tiles=center|five`` (the network takes any size).

        Args:
            ctx: unused.
            generator: unused.

        Returns:
            ``crop``.
        """
        return self.config.crop

    def train_setup(self, ctx: RunContext, train: pd.DataFrame) -> TrainSetup:
        """The stand-in recipe: AdamW with a cosine schedule on random crops and flips, binary cross-entropy.

        Args:
            ctx: unused.
            train: the training rows (a batch never holds more than there are).

        Returns:
            The recipe.
        """
        c = self.config
        augment = transforms.Compose([transforms.RandomCrop(c.crop, pad_if_needed=True),
                                      transforms.RandomHorizontalFlip(c.flip), self.to_tensor()])
        heldout = transforms.Compose([transforms.CenterCrop(c.crop), self.to_tensor()])
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        return TrainSetup(
            model=self.net, optimizer=optimizer, schedule=CosineSchedule(c.lr, epochs=c.epochs),
            train_transform=TorchDrawn(augment), heldout_transform=heldout, loss=bce_with_logits,
            probabilities=self.probabilities, epochs=c.epochs, batch_size=min(c.train_batch_size, len(train)),
            keep="last", checkpoint_every=c.checkpoint_every, heldout_batch_size=c.batch_size,
            precision=self.precision, name=self.name)
