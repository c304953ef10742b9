"""Effort (Yan et al., "Orthogonal Subspace Decomposition for Generalizable AI-Generated Image Detection", ICML 2025).

Faithful to the authors' code (YZY-stack/Effort-AIGI-Detection: ``DeepfakeBench/training/detectors/
effort_detector.py``, ``DeepfakeBench/training/test.py`` and ``dataset/abstract_dataset.py`` for the GenImage and
Chameleon checkpoints; ``UniversalFakeDetect_Benchmark/models/clip_models.py`` and ``validate.py`` for the ProGAN
one):

- **Network**: Hugging Face's CLIP ViT-L/14 image tower (``CLIPVisionTransformer``: patch embedding without bias,
  class and position embeddings, ``pre_layrnorm``, 24 pre-norm layers with QuickGELU, ``post_layernorm`` on the
  class token = ``pooler_output``, 1024-d, no projection) whose self-attention ``q/k/v/out_proj`` layers are
  ``SVDResidualLinear``: ``weight = weight_main + U_residual @ diag(S_residual) @ V_residual`` (``weight_main`` the
  frozen top singular components of the CLIP weight, the residual the trained low-rank rest), then a linear head.
- **Checkpoint layouts** (``layout``): ``deepfakebench`` (GenImage SD1.4, Chameleon): ``torch.save`` of the
  detector's ``state_dict()``: ``backbone.<vision tower>``, each SVD layer also holding the frozen ``S_r``, ``U_r``,
  ``V_r`` (saved, never read by the forward), ``head.weight`` [2, 1024]: two logits (real, fake), P(fake) =
  softmax[:, 1]. ``ufd`` (ProGAN): ``{'model': state_dict}`` of ``ClipModel``: the whole ``CLIPModel`` under
  ``model.`` (image tower ``model.vision_model.``, SVD layers without ``S_r/U_r/V_r``) and ``fc.weight`` [1, 1024]:
  one logit, P(fake) = sigmoid. Both are loaded weights-only and strictly; the ``ufd`` checkpoint's text tower
  (``model.text_model.``, ``model.text_projection``, ``model.visual_projection``, ``model.logit_scale``) is dropped
  by name (the forward never reads it), and a ``position_ids`` buffer (saved by older ``transformers``) is accepted
  only when it is ``0..N-1``.
- **Evaluation preprocessing** (``preprocess``; empty: the layout's own): ``stretch-cubic`` (DeepfakeBench's
  ``load_rgb``: ``cv2.resize`` to 224x224 with ``INTER_CUBIC``, aspect ratio not kept, no crop), ``tile-crop``
  (``validate.py``: an image smaller than 256 on a side is tiled to a multiple of its size, then ``CenterCrop(224)``,
  no resize); then ``ToTensor`` and CLIP's mean/std.
- **Training** (``effort.yaml``): the SVD split of the CLIP weights (``residual_rank`` = 1: ``r = 1024 - 1``),
  residuals and head trained, every other weight frozen; Adam (lr 2e-4, betas 0.9/0.999, eps 1e-8, weight decay
  5e-4), cross-entropy on two logits, 10 epochs of 32 images, constant rate.

Departures, recorded in the README: the cubic resize is torch's (``bicubic``, a = -0.75, no antialiasing, rounded
and clamped to 8 bits as OpenCV saturates), not OpenCV's fixed-point one (pixels may differ by one level);
training skips DeepfakeBench's data augmentation and the orthogonality/singular-value regularisers the released
config leaves commented out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision import transforms

from detbench.config import ConfigError
from detbench.kit.classifier import ClassifierDetector, EvalPreprocessing
from detbench.kit.detector import RunContext
from detbench.kit.schedules import StepDecaySchedule
from detbench.kit.seeded_data import TorchDrawn
from detbench.kit.training import TrainSetup, bce_with_logits, cross_entropy
from detbench.models.backbones.open_clip_adapter import CLIP_MEAN, CLIP_STD
from detbench.probabilities import sigmoid, softmax_fake

LAYOUT_PREFIX = {"deepfakebench": "backbone.", "ufd": "model.vision_model."}
UFD_UNUSED = ("model.text_model.", "model.text_projection.", "model.visual_projection.", "model.logit_scale")
LAYOUT_PREPROCESS = {"deepfakebench": "stretch-cubic", "ufd": "tile-crop"}
TILE_TO = 256  # validate.py's translate_duplicate(img, 256)


# ---------------------------------------------------------------------------------------------- network


class SVDResidualLinear(nn.Module):
    """A linear layer whose weight is a frozen main part plus a trained rank-``k`` residual ``U diag(S) V``."""

    def __init__(self, features_in: int, features_out: int, residual_rank: int, keep_main_factors: bool) -> None:
        super().__init__()
        rank = min(features_in, features_out) - residual_rank
        self.weight_main = nn.Parameter(torch.zeros(features_out, features_in), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(features_out), requires_grad=False)
        self.S_residual = nn.Parameter(torch.zeros(residual_rank))
        self.U_residual = nn.Parameter(torch.zeros(features_out, residual_rank))
        self.V_residual = nn.Parameter(torch.zeros(residual_rank, features_in))
        if keep_main_factors:  # DeepfakeBench's module saves the main part's factors too (never read in forward)
            self.S_r = nn.Parameter(torch.zeros(rank), requires_grad=False)
            self.U_r = nn.Parameter(torch.zeros(features_out, rank), requires_grad=False)
            self.V_r = nn.Parameter(torch.zeros(rank, features_in), requires_grad=False)

    @torch.no_grad()
    def split(self, weight: Tensor, bias: Tensor) -> None:
        """Set the layer from a plain linear layer's weight: the top singular components frozen, the rest trained.

        Args:
            weight: ``[out, in]``.
            bias: ``[out]``.
        """
        u, s, vh = torch.linalg.svd(weight, full_matrices=False)
        r = s.numel() - self.S_residual.numel()
        self.weight_main.copy_(u[:, :r] @ torch.diag(s[:r]) @ vh[:r])
        self.bias.copy_(bias)
        self.S_residual.copy_(s[r:])
        self.U_residual.copy_(u[:, r:])
        self.V_residual.copy_(vh[r:])
        if hasattr(self, "S_r"):
            self.S_r.copy_(s[:r])
            self.U_r.copy_(u[:, :r])
            self.V_r.copy_(vh[:r])

    def forward(self, x: Tensor) -> Tensor:
        """``x W^T + b`` with ``W = weight_main + U_residual diag(S_residual) V_residual``."""
        weight = self.weight_main + self.U_residual @ torch.diag(self.S_residual) @ self.V_residual
        return F.linear(x, weight, self.bias)


class Attention(nn.Module):
    """CLIP's multi-head self-attention with SVD-residual projections (``q_proj``, ``k_proj``, ``v_proj``,
    ``out_proj``).
    """

    def __init__(self, width: int, heads: int, residual_rank: int, keep_main_factors: bool) -> None:
        super().__init__()
        self.heads = heads
        for name in ("k_proj", "v_proj", "q_proj", "out_proj"):
            setattr(self, name, SVDResidualLinear(width, width, residual_rank, keep_main_factors))

    def forward(self, x: Tensor) -> Tensor:
        """Scaled dot-product attention over all tokens."""
        b, n, d = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        att = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
        out = (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d)
        return self.out_proj(out)


class Mlp(nn.Module):
    """``fc2(act(fc1(x)))``."""

    def __init__(self, width: int, quick_gelu: bool) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        self.quick_gelu = quick_gelu

    def forward(self, x: Tensor) -> Tensor:
        """The MLP."""
        h = self.fc1(x)
        h = h * torch.sigmoid(1.702 * h) if self.quick_gelu else F.gelu(h)
        return self.fc2(h)


class Layer(nn.Module):
    """One pre-norm encoder layer."""

    def __init__(self, width: int, heads: int, residual_rank: int, keep_main_factors: bool, quick_gelu: bool) -> None:
        super().__init__()
        self.self_attn = Attention(width, heads, residual_rank, keep_main_factors)
        self.layer_norm1 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = Mlp(width, quick_gelu)
        self.layer_norm2 = nn.LayerNorm(width, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        """``x + attn(ln1(x))``, then ``+ mlp(ln2(.))``."""
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class Embeddings(nn.Module):
    """Patch, class and position embeddings (``CLIPVisionEmbeddings``)."""

    def __init__(self, width: int, patch: int, image_size: int) -> None:
        super().__init__()
        self.class_embedding = nn.Parameter(torch.zeros(width), requires_grad=False)
        self.patch_embedding = nn.Conv2d(3, width, patch, stride=patch, bias=False).requires_grad_(False)
        self.position_embedding = nn.Embedding((image_size // patch) ** 2 + 1, width).requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> ``[B, 1 + patches, width]``."""
        patches = self.patch_embedding(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding.weight


class Encoder(nn.Module):
    """The stack of layers (``encoder.layers.N``)."""

    def __init__(self, layers: list[Layer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)


class VisionTower(nn.Module):
    """``CLIPVisionTransformer``: its ``pooler_output`` (``post_layernorm`` of the class token)."""

    def __init__(self, c: EffortConfig, keep_main_factors: bool) -> None:
        super().__init__()
        self.embeddings = Embeddings(c.width, c.patch, c.crop)
        self.pre_layrnorm = nn.LayerNorm(c.width, eps=1e-5)
        self.encoder = Encoder([Layer(c.width, c.heads, c.residual_rank, keep_main_factors, c.act == "quick_gelu")
                                for _ in range(c.layers)])
        self.post_layernorm = nn.LayerNorm(c.width, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 3, crop, crop]`` -> ``[B, width]``."""
        h = self.pre_layrnorm(self.embeddings(x))
        for layer in self.encoder.layers:
            h = layer(h)
        return self.post_layernorm(h[:, 0])


class _Holder(nn.Module):
    """``CLIPModel``'s attribute path to its image tower (``model.vision_model``)."""

    def __init__(self, tower: VisionTower) -> None:
        super().__init__()
        self.vision_model = tower


class EffortNet(nn.Module):
    """The image tower and the linear head, under the names of the configured checkpoint layout."""

    def __init__(self, c: EffortConfig) -> None:
        super().__init__()
        self.layout = c.layout
        tower = VisionTower(c, keep_main_factors=c.layout == "deepfakebench")
        if c.layout == "deepfakebench":
            self.backbone, self.head = tower, nn.Linear(c.width, 2)
        else:
            self.model, self.fc = _Holder(tower), nn.Linear(c.width, 1)
        for name, p in tower.named_parameters():  # only the residuals (and the head) train
            p.requires_grad_(name.endswith(("S_residual", "U_residual", "V_residual")))

    @property
    def tower(self) -> VisionTower:
        """The image tower."""
        return self.backbone if self.layout == "deepfakebench" else self.model.vision_model

    @property
    def classifier(self) -> nn.Linear:
        """The linear head."""
        return self.head if self.layout == "deepfakebench" else self.fc

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 3, crop, crop]`` -> logits (``[B, 2]`` real/fake for ``deepfakebench``, ``[B, 1]`` for ``ufd``)."""
        return self.classifier(self.tower(x))


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class EffortConfig:
    """Effort options: released weights or training, the checkpoint layout, the architecture, the preprocessing."""

    weights: str = ""  # a released checkpoint in `layout`[#sha256=HEX]; empty: train from `backbone`
    layout: Literal["deepfakebench", "ufd"] = "deepfakebench"  # GenImage/Chameleon checkpoints, or ProGAN's
    preprocess: Literal["", "stretch-cubic", "tile-crop"] = ""  # "": the layout's own evaluation
    crop: int = 224  # the network's input size
    width: int = 1024  # ViT-L/14
    layers: int = 24
    heads: int = 16
    patch: int = 14
    act: Literal["quick_gelu", "gelu"] = "quick_gelu"  # OpenAI CLIP's QuickGELU
    residual_rank: int = 1  # trained singular components per attention layer (r = width - 1 frozen)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    # P(fake) from float32 logits as the original's torch softmax/sigmoid; float64 ranks saturated ones
    sigmoid_dtype: Literal["float32", "float64"] = "float32"
    batch_size: int = 32  # evaluation batch (effort.yaml's test_batchSize)
    # training: the SVD split of this backbone's CLIP weights (effort.yaml)
    backbone: str = "open_clip:ViT-L-14@openai"
    epochs: int = 10
    train_batch_size: int = 32
    lr: float = 2e-4
    weight_decay: float = 5e-4
    checkpoint_every: int = 200

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: listing the ranges when any option is out of its range.
        """
        ok = (self.crop >= self.patch >= 1 and self.crop % self.patch == 0 and self.width >= 2 and self.layers >= 1
              and self.heads >= 1 and self.width % self.heads == 0 and 1 <= self.residual_rank < self.width
              and min(self.batch_size, self.epochs, self.train_batch_size) >= 1 and self.lr > 0
              and self.weight_decay >= 0 and self.checkpoint_every >= 0)
        if not ok:
            raise ConfigError("effort options need crop a multiple of patch, width divisible by heads, "
                              "1 <= residual_rank < width, batch_size, epochs and train_batch_size >= 1, lr > 0, "
                              "weight_decay and checkpoint_every >= 0")


# ---------------------------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class StretchCubic:
    """DeepfakeBench's ``cv2.resize(img, (size, size), INTER_CUBIC)`` on 8-bit RGB (torch bicubic, a = -0.75, no
    antialiasing, rounded and clamped to 8 bits).
    """

    size: int

    def __call__(self, img: Image.Image) -> Image.Image:
        """The resized image."""
        x = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)[None]
        y = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False, antialias=False)
        out = y[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(np.ascontiguousarray(out))


@dataclass(frozen=True)
class TileTo:
    """``validate.py``'s ``translate_duplicate``: an image smaller than ``size`` on a side is repeated into a canvas
    of ``ceil(size / side)`` copies along each axis (both axes, as the original does).
    """

    size: int

    def __call__(self, img: Image.Image) -> Image.Image:
        """The tiled image (or ``img`` when no side is smaller than ``size``)."""
        if min(img.size) >= self.size:
            return img
        w, h = img.size
        canvas = Image.new("RGB", (w * math.ceil(self.size / w), h * math.ceil(self.size / h)))
        for left in range(0, canvas.width, w):
            for top in range(0, canvas.height, h):
                canvas.paste(img, (left, top))
        return canvas


def clip_tensor() -> transforms.Compose:
    """``ToTensor`` and CLIP's mean/std.

    Returns:
        The transform.
    """
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)])


# ---------------------------------------------------------------------------------------------- training start


def resample_positions(pos: Tensor, grid: int) -> Tensor:
    """Position embeddings for a ``grid x grid`` patch grid: the patch part resized bicubically, the class one kept.

    Args:
        pos: ``[1 + g * g, D]``.
        grid: the new grid side.

    Returns:
        ``[1 + grid * grid, D]``.
    """
    g = math.isqrt(pos.shape[0] - 1)
    patches = pos[1:].reshape(1, g, g, -1).permute(0, 3, 1, 2).float()
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([pos[:1].float(), patches.permute(0, 2, 3, 1).reshape(grid * grid, -1)])


def open_clip_to_tower(visual_sd: dict[str, Tensor], net: EffortNet) -> None:
    """Copy an open_clip CLIP image tower's weights into ``net``'s tower, SVD-splitting each attention projection.

    Args:
        visual_sd: the open_clip ``visual`` state dict (``conv1``, ``transformer.resblocks.N``, ...).
        net: the network (its tower's width, depth and input size must match).

    Raises:
        ConfigError: the backbone's shapes do not fit the configured architecture.
    """
    tower = net.tower
    d = tower.pre_layrnorm.weight.numel()
    plain = {
        "embeddings.class_embedding": visual_sd["class_embedding"],
        "embeddings.patch_embedding.weight": visual_sd["conv1.weight"],
        "embeddings.position_embedding.weight": visual_sd["positional_embedding"],
        "pre_layrnorm.weight": visual_sd["ln_pre.weight"], "pre_layrnorm.bias": visual_sd["ln_pre.bias"],
        "post_layernorm.weight": visual_sd["ln_post.weight"], "post_layernorm.bias": visual_sd["ln_post.bias"],
    }
    for i, layer in enumerate(tower.encoder.layers):
        src = f"transformer.resblocks.{i}."
        for ours, theirs in (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"),
                             ("mlp.fc2", "mlp.c_proj")):
            for p in ("weight", "bias"):
                plain[f"encoder.layers.{i}.{ours}.{p}"] = visual_sd[f"{src}{theirs}.{p}"]
        w, b = visual_sd[f"{src}attn.in_proj_weight"], visual_sd[f"{src}attn.in_proj_bias"]
        if w.shape != (3 * d, d):
            raise ConfigError(f"the backbone's attention is {tuple(w.shape)}, not a width-{d} tower's")
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            getattr(layer.self_attn, name).split(w[j * d:(j + 1) * d].float(), b[j * d:(j + 1) * d].float())
        layer.self_attn.out_proj.split(visual_sd[f"{src}attn.out_proj.weight"].float(),
                                       visual_sd[f"{src}attn.out_proj.bias"].float())
    own = tower.state_dict()
    bad = [k for k, v in plain.items() if own[k].shape != v.shape]
    if bad or len(tower.encoder.layers) != sum(1 for k in visual_sd if k.endswith("attn.in_proj_weight")):
        raise ConfigError(f"the backbone does not fit the configured Effort tower (width, layers, patch, crop): "
                          f"{', '.join(bad) or 'depth'}")
    tower.load_state_dict(plain, strict=False)


# ---------------------------------------------------------------------------------------------- detector


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "effort",
    "class": "Effort",
    "summary": ("Effort (ICML 2025): CLIP ViT-L/14 whose attention weights keep their top singular components "
                "and train a rank-1 residual, plus a linear head; released GenImage/Chameleon/ProGAN weights."),
    "paper": "Yan et al., ICML",
    "year": 2025,
    "training": "trains",
    "weights_key": "weights",
    "released": ("GenImage SD1.4 and Chameleon checkpoints (Google Drive, linked from "
                 "github.com/YZY-stack/Effort-AIGI-Detection; CC BY-NC 4.0), or a ProGAN one in the "
                 "UniversalFakeDetect_Benchmark format (layout=ufd)"),
}


class Effort(ClassifierDetector):
    """Effort: CLIP ViT-L/14 with SVD-residual attention weights and a linear head."""

    name = REGISTRATION["name"]
    version = 1
    Config = EffortConfig
    summary = REGISTRATION["summary"]
    tiny_settings: ClassVar[dict[str, Any]] = {
        "backbone": "open_clip:detbench-tiny-vit@random", "crop": 32, "width": 64, "layers": 4, "heads": 2,
        "patch": 16, "act": "gelu", "epochs": 1, "train_batch_size": 8, "checkpoint_every": 0,
    }
    profile_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        # "small" (the demo): no CLIP ViT-L/14 runs offline, so the tiny seeded random CLIP of the family stands in
        # (recorded as random), 3 epochs of 32 images
        "small": {**{k: v for k, v in tiny_settings.items() if k not in ("epochs", "train_batch_size",
                                                                         "checkpoint_every")},
                  "epochs": 3, "train_batch_size": 32, "checkpoint_every": 20},
    }
    weights_what = "the Effort checkpoint"
    weights_fix = ("pass --set weights=/path/to/effort_checkpoint.pth (the GenImage or Chameleon checkpoint linked "
                   "from github.com/YZY-stack/Effort-AIGI-Detection; --set layout=ufd for a "
                   "UniversalFakeDetect_Benchmark checkpoint)")

    def build_network(self) -> nn.Module:
        """The tower and head under the configured layout's names.

        Returns:
            The :class:`EffortNet`.
        """
        return EffortNet(self.config)

    def released_state_dict(self, state_dict: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        """Drop the ``ufd`` layout's text tower and a ``0..N-1`` ``position_ids`` buffer; nothing else.

        Args:
            state_dict: the unwrapped checkpoint.
            ctx: the run context (warnings).

        Returns:
            The tensors to load strictly.
        """
        keep, dropped = {}, []
        prefix = LAYOUT_PREFIX[self.config.layout]
        for key, value in state_dict.items():
            unused_text = self.config.layout == "ufd" and key.startswith(UFD_UNUSED)
            counter = (key.endswith("embeddings.position_ids") and key.startswith(prefix)
                       and torch.equal(value.flatten().long(), torch.arange(value.numel())))
            if unused_text or counter:
                dropped.append(key)
            else:
                keep[key] = value
        if dropped:
            ctx.phases.warn(f"Effort checkpoint: {len(dropped)} tensors its forward never reads are not loaded "
                            f"(the text tower and position_ids counters)")
        return keep

    def to_tensor(self) -> Any:
        """PIL image -> network input: ``ToTensor`` and CLIP's mean/std.

        Returns:
            The transform.
        """
        return clip_tensor()

    def eval_preprocessing(self, ctx: RunContext) -> EvalPreprocessing:
        """The layout's original evaluation (or ``preprocess``), for every test set.

        Args:
            ctx: unused (the originals evaluate every test set alike).

        Returns:
            The preprocessing; facts: its name and size.
        """
        c = self.config
        kind = c.preprocess or LAYOUT_PREPROCESS[c.layout]
        if kind == "stretch-cubic":
            steps = [StretchCubic(c.crop)]
        else:
            steps = [TileTo(max(TILE_TO, c.crop)), transforms.CenterCrop([c.crop, c.crop])]
        facts = {"preprocess": kind, "crop": c.crop, "normalise": "clip"}
        return EvalPreprocessing(transforms.Compose([*steps, self.to_tensor()]), by_shape=False, facts=facts)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """P(fake): softmax[:, 1] of two logits (``deepfakebench``) or the sigmoid of one (``ufd``).

        Args:
            logits: ``[N, 2]``, or ``[N]`` / ``[N, 1]``.

        Returns:
            ``[N]`` P(fake).
        """
        if logits.ndim == 2 and logits.shape[1] == 2:
            return softmax_fake(logits, self.config.sigmoid_dtype)
        return sigmoid(logits.reshape(len(logits)), self.config.sigmoid_dtype)

    def prepare_training(self, ctx: RunContext) -> dict[str, Any]:
        """Start from the ``backbone``'s CLIP weights, SVD-split, with only the residuals and the head trainable.

        Args:
            ctx: unused.

        Returns:
            The backbone's identity.
        """
        from detbench.models.backbones import load_backbone

        bb = load_backbone(self.config.backbone)
        sd = dict(bb.model.visual.state_dict() if hasattr(bb.model, "visual") else bb.model.state_dict())
        grid = self.config.crop // self.config.patch
        resampled = (sd["positional_embedding"].shape[0] - 1) != grid**2
        if resampled:
            sd["positional_embedding"] = resample_positions(sd["positional_embedding"], grid)
        open_clip_to_tower(sd, self.net)
        return {"backbone": bb.identity_spec, "positions_resampled": resampled}

    def train_setup(self, ctx: RunContext, train: pd.DataFrame) -> TrainSetup:
        """``effort.yaml``'s recipe on the shared loop.

        Args:
            ctx: unused.
            train: the training rows (a batch never holds more than there are).

        Returns:
            The recipe.
        """
        c = self.config
        batch = min(c.train_batch_size, len(train))
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=c.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=c.weight_decay)
        train_transform = transforms.Compose([*self.preprocessing.transform.transforms[:-1], self.to_tensor()])
        loss = cross_entropy if c.layout == "deepfakebench" else bce_with_logits
        return TrainSetup(
            model=self.net, optimizer=optimizer, schedule=StepDecaySchedule(c.lr, every=c.epochs + 1, factor=1.0),
            train_transform=TorchDrawn(train_transform), heldout_transform=self.preprocessing.transform, loss=loss,
            probabilities=self.probabilities, epochs=c.epochs, batch_size=batch, keep="best",
            checkpoint_every=c.checkpoint_every, heldout_batch_size=c.batch_size, precision=self.precision,
            name=self.name)

