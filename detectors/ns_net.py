"""NS-Net (Yan, Wang, Jiang, Li and Fu, "NS-Net: Decoupling CLIP Semantic Information through NULL-Space for
Generalizable AI-Generated Image Detection", arXiv 2508.01248, 2025): a reconstruction.

No official code or weights are public, so this follows the paper's description and makes every choice it leaves
open a setting (``docs/ns-net.md`` gives each default and its reason):

- **Semantic directions**: prompts (``text.source=coco``: the 80 COCO class names in ``text.templates``; or
  ``text.source=file``: one prompt or caption a line) encoded by the CLIP text tower into the joint space, unit
  length.
- **NULL-space projection**: the top right singular vectors ``V_r`` of the ``[N, D]`` text matrix span the semantic
  subspace (``null.rank``, or the fewest holding ``null.energy`` of the squared singular values, never more than the
  numerical rank); the image feature ``f`` (CLIP's projected embedding, unit length with ``renormalize``) becomes
  ``P f`` with ``P = I - V_r V_r^T``: orthogonal to every kept semantic direction, and ``P P = P``.
- **Contrastive learning and classifier**: a trained projector (``Linear``-``ReLU``-``Linear`` to ``proj_dim``) on
  the projected feature; a supervised contrastive loss (real with real, fake with fake) on its unit-length output at
  ``contrastive.temperature``, weighted by ``contrastive.weight``, plus BCE of a linear classifier on the
  projector's output. The CLIP image and text towers stay frozen.
- **Patch selection**: images are never resized (``resize=none``): training reads a random crop at the backbone's
  input size (``patch_train=random``), evaluation the centre crop, so the pixels keep their native resolution.

Training runs on detbench's shared loop (:func:`detbench.kit.training.train_classifier`): seeded, resumable, the
epoch kept by held-out accuracy under a cosine schedule.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from detbench.config import ConfigError
from detbench.kit.classifier import ClassifierDetector, EvalPreprocessing
from detbench.kit.detector import RunContext
from detbench.kit.schedules import CosineSchedule
from detbench.kit.seeded_data import TorchDrawn
from detbench.kit.training import TrainSetup, bce_with_logits

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "dining table", "toilet",
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TextConfig:
    """Where the semantic directions come from."""

    source: Literal["coco", "file"] = "coco"  # coco: the 80 COCO class names in the templates; file: `file`'s lines
    file: str = ""  # text.source=file: UTF-8, one prompt or caption per line (blank lines skipped)
    templates: tuple[str, ...] = ("a photo of a {}.",)  # text.source=coco: each class name in each template

    def validate(self) -> None:
        """Check the text options.

        Raises:
            ConfigError: ``file`` source without a file, or a template without ``{}``.
        """
        if self.source == "file" and not self.file:
            raise ConfigError("text.source=file needs --set text.file=PATH (one prompt or caption per line)")
        if self.source == "coco" and (not self.templates or any("{}" not in t for t in self.templates)):
            raise ConfigError("text.templates must each hold {} (where the class name goes)")


@dataclass(frozen=True)
class NullConfig:
    """How many text directions the null space removes."""

    rank: int = 0  # > 0: exactly the top `rank` directions; 0: chosen by `energy`
    energy: float = 1.0  # rank=0: the fewest top directions holding this share of the squared singular values
    tol: float = 1e-6  # singular values below tol x the largest are numerically zero (never removed)

    def validate(self) -> None:
        """Check the null-space options.

        Raises:
            ConfigError: a negative rank, an energy outside (0, 1] or a tolerance outside [0, 1).
        """
        if self.rank < 0:
            raise ConfigError(f"null.rank must be >= 0 (0: chosen by null.energy); got {self.rank}")
        if not 0 < self.energy <= 1:
            raise ConfigError(f"null.energy must be in (0, 1]; got {self.energy}")
        if not 0 <= self.tol < 1:
            raise ConfigError(f"null.tol must be in [0, 1); got {self.tol}")


@dataclass(frozen=True)
class ContrastiveConfig:
    """The contrastive term of the training loss."""

    loss: Literal["supcon", "none"] = "supcon"  # supervised contrastive (positives: same label); none: BCE alone
    temperature: float = 0.07
    weight: float = 1.0  # loss = BCE + weight x contrastive

    def validate(self) -> None:
        """Check the contrastive options.

        Raises:
            ConfigError: a non-positive temperature or a negative weight.
        """
        if not self.temperature > 0:
            raise ConfigError(f"contrastive.temperature must be > 0; got {self.temperature}")
        if self.weight < 0:
            raise ConfigError(f"contrastive.weight must be >= 0; got {self.weight}")


@dataclass(frozen=True)
class NSNetConfig:
    """NS-Net options: the CLIP model, the semantic directions, the null space, the head and its training."""

    backbone: str = "open_clip:ViT-L-14@openai"  # an open_clip model with both towers (whole-CLIP weights)
    text: TextConfig = field(default_factory=TextConfig)
    null: NullConfig = field(default_factory=NullConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    renormalize: bool = True  # unit-length image feature before the projection (the text directions are unit too)
    hidden: int = 512  # projector: Linear(D, hidden) - ReLU - Linear(hidden, proj_dim)
    proj_dim: int = 128
    patch_train: Literal["random", "center"] = "random"  # the training crop at native resolution
    flip: bool = True  # random horizontal flip of training crops
    weights: str = ""  # a state saved by an ns-net fit (model.safetensors)[#sha256=HEX]; empty: train
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    sigmoid_dtype: Literal["float32", "float64"] = "float32"
    batch_size: int = 64  # evaluation batch
    epochs: int = 10
    train_batch_size: int = 64
    lr: float = 1e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    checkpoint_every: int = 500  # steps; 0: only at the end

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: naming every option out of range.
        """
        problems = []
        if min(self.hidden, self.proj_dim, self.batch_size, self.epochs) < 1:
            problems.append("hidden, proj_dim, batch_size and epochs >= 1")
        if self.train_batch_size < 2:
            problems.append("train_batch_size >= 2 (the contrastive loss compares images within a batch)")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr and self.weight_decay >= 0):
            problems.append("lr > 0, 0 <= min_lr <= lr and weight_decay >= 0")
        if self.warmup_epochs < 0 or self.checkpoint_every < 0:
            problems.append("warmup_epochs >= 0 and checkpoint_every >= 0")
        if problems:
            raise ConfigError("ns-net options need " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------- the method


def prompts(cfg: TextConfig) -> list[str]:
    """The texts whose embeddings are the semantic directions.

    Args:
        cfg: the text settings.

    Returns:
        ``coco``: every class name in every template (template-major); ``file``: the file's non-blank lines.

    Raises:
        ConfigError: the file is missing, unreadable, not UTF-8 or holds no prompt.
    """
    if cfg.source == "coco":
        return [t.format(name) for t in cfg.templates for name in COCO_CLASSES]
    try:
        lines = Path(cfg.file).expanduser().read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"text.file {cfg.file}: cannot read it as UTF-8 text ({exc})") from None
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise ConfigError(f"text.file {cfg.file} holds no prompt (one per line)")
    return texts


def semantic_basis(text: Tensor, cfg: NullConfig) -> tuple[Tensor, dict[str, Any]]:
    """An orthonormal basis of the semantic subspace: the top right singular vectors of the text matrix.

    Args:
        text: ``[N, D]`` text embeddings (float64).
        cfg: the null-space settings.

    Returns:
        ``[D, r]`` orthonormal columns and facts (``rank``, ``numerical_rank``, ``energy`` kept, ``dim``).

    Raises:
        ConfigError: ``null.rank`` above the numerical rank, or a subspace that fills the whole space (the
            projection would leave nothing).
    """
    _, s, vh = torch.linalg.svd(text.double(), full_matrices=False)
    numerical = int((s > cfg.tol * s[0]).sum()) if len(s) and s[0] > 0 else 0
    if cfg.rank:
        if cfg.rank > numerical:
            raise ConfigError(f"null.rank={cfg.rank} exceeds the {numerical} independent text directions "
                              f"({text.shape[0]} prompts in {text.shape[1]} dimensions)")
        rank = cfg.rank
    else:
        share = torch.cumsum(s[:numerical] ** 2, 0) / (s[:numerical] ** 2).sum()
        rank = min(numerical, int((share < cfg.energy - 1e-12).sum()) + 1)
    dim = text.shape[1]
    if rank >= dim:
        raise ConfigError(f"the {rank} text directions span the whole {dim}-d space: the null space is empty; "
                          "lower null.rank or null.energy, or use fewer prompts")
    energy = float((s[:rank] ** 2).sum() / (s**2).sum()) if rank else 0.0
    return vh[:rank].T.contiguous(), {"rank": rank, "numerical_rank": numerical, "energy": energy, "dim": dim}


def null_project(feats: Tensor, basis: Tensor) -> Tensor:
    """``P f`` with ``P = I - B B^T``: the component of each row orthogonal to the basis' span.

    Args:
        feats: ``[N, D]``.
        basis: ``[D, r]`` orthonormal columns.

    Returns:
        ``[N, D]``.
    """
    return feats - (feats @ basis) @ basis.T


def supcon_loss(z: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Supervised contrastive loss (Khosla et al., 2020, the "L_out" form) of unit-length embeddings.

    For anchor ``i`` with positives ``P(i)`` (the other images of its label) and ``A(i)`` every other image:
    ``-1/|P(i)| sum_{p in P(i)} log(exp(z_i.z_p / t) / sum_{a in A(i)} exp(z_i.z_a / t))``, averaged over the
    anchors that have a positive (0 when none has).

    Args:
        z: ``[B, E]`` unit-length embeddings.
        labels: ``[B]`` labels.
        temperature: ``t``.

    Returns:
        The scalar loss.
    """
    n = len(z)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    count = positive.sum(1)
    has = count > 0
    if not has.any():
        return z.sum() * 0.0
    per_anchor = log_prob.masked_fill(~positive, 0.0).sum(1)[has] / count[has]
    return -per_anchor.mean()


def ns_net_loss(outputs: Tensor, labels: Tensor, *, loss: str, temperature: float, weight: float) -> Tensor:
    """BCE of the logit (column 0) plus ``weight`` x the contrastive loss of the embedding (the other columns).

    Evaluation-mode outputs have the logit alone: their loss is the BCE.

    Args:
        outputs: ``[B, 1 + E]`` (training) or ``[B, 1]`` / ``[B]``.
        labels: ``[B]`` float labels (1 = fake).
        loss: ``supcon`` or ``none``.
        temperature: the contrastive temperature.
        weight: the contrastive weight.

    Returns:
        The scalar loss.
    """
    outputs = outputs.reshape(len(labels), -1)
    bce = bce_with_logits(outputs[:, 0], labels)
    if outputs.shape[1] == 1 or loss == "none" or weight == 0:
        return bce
    return bce + weight * supcon_loss(outputs[:, 1:], labels, temperature)


class NSHead(nn.Module):
    """What trains: the projector and the classifier on the null-space feature."""

    def __init__(self, dim: int, hidden: int, proj_dim: int) -> None:
        super().__init__()
        self.projector = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, proj_dim))
        self.classifier = nn.Linear(proj_dim, 1)


class NSNetNet(nn.Module):
    """The frozen CLIP image tower, the null-space projection and the trained head.

    The backbone is held outside the module tree (it moves with the network but is neither in its state dict nor
    among its parameters): the state and a ``weights`` file hold the head alone.
    """

    def __init__(self, backbone: Any, basis: Tensor, cfg: NSNetConfig) -> None:
        super().__init__()
        object.__setattr__(self, "backbone", backbone)
        self.renormalize = cfg.renormalize
        self.register_buffer("basis", basis.float(), persistent=False)
        self.head = NSHead(backbone.embed_dims["proj"], cfg.hidden, cfg.proj_dim)

    def _apply(self, fn: Any, recurse: bool = True) -> NSNetNet:
        self.backbone.model._apply(fn)
        return super()._apply(fn, recurse)

    def features(self, x: Tensor) -> Tensor:
        """The null-space feature of normalised images.

        Args:
            x: ``[B, 3, H, W]``.

        Returns:
            ``[B, D]`` float32: the projected CLIP embedding (unit length with ``renormalize``) times ``P``.
        """
        with torch.no_grad():
            f = self.backbone.embed(x, "proj").float()
        if self.renormalize:
            f = f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return null_project(f, self.basis)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 1]`` logits in eval mode; in training mode ``[B, 1 + proj_dim]``: the logit and the unit-length
        contrastive embedding.
        """
        h = self.head.projector(self.features(x))
        logit = self.head.classifier(h)
        if not self.training:
            return logit
        return torch.cat([logit, F.normalize(h, dim=-1)], dim=1)


# ---------------------------------------------------------------------------------------------- detector


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "ns-net",
    "class": "NSNet",
    "summary": ("NS-Net (2025), reconstructed: frozen CLIP features projected onto the null space of text "
                "directions, a contrastively trained projector and a linear classifier."),
    "paper": "Yan et al., arXiv 2508.01248",
    "year": 2025,
    "training": "trains",
    "weights_key": "weights",
    "released": "none known (no official code or weights); weights= reloads a state saved by an ns-net fit",
}


class NSNet(ClassifierDetector):
    """NS-Net, reconstructed: CLIP features in the null space of text directions, a contrastive head."""

    name = REGISTRATION["name"]
    version = 1
    Config = NSNetConfig
    summary = REGISTRATION["summary"]
    tiny_settings: ClassVar[dict[str, Any]] = {
        "backbone": "open_clip:detbench-tiny-vit@random", "null.rank": 8, "hidden": 16, "proj_dim": 8,
        "epochs": 1, "train_batch_size": 8, "checkpoint_every": 0, "warmup_epochs": 0.0,
    }
    profile_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        # "small" (the demo): no whole CLIP runs offline, so the tiny seeded random CLIP stands in (recorded as
        # random; 8 text directions removed of its 64), 3 epochs of 32 images
        "small": {**{k: v for k, v in tiny_settings.items() if k not in ("epochs", "train_batch_size",
                                                                         "checkpoint_every", "hidden", "proj_dim")},
                  "hidden": 64, "proj_dim": 16, "epochs": 3, "train_batch_size": 32, "lr": 1e-3,
                  "checkpoint_every": 20},
    }
    file_keys: ClassVar[dict[str, tuple[str, ...]]] = {"weights": (), "text.file": ()}  # named by content
    weights_what = "the NS-Net state"
    weights_fix = ("pass --set weights=/path/to/model.safetensors, the state an ns-net fit saved with the same "
                   "backbone, text and head settings (no weights were released with the paper)")

    def build_network(self) -> NSNetNet:
        """Load the CLIP towers, build the semantic basis from the prompts and the network on it.

        Returns:
            The :class:`NSNetNet`.

        Raises:
            ConfigError: unreadable prompts, or a null space that is empty or asks for too many directions.
            BackboneError: a backbone without a text tower.
        """
        from detbench.models.backbones import load_backbone, load_text_tower

        c = self.config
        self.backbone = load_backbone(c.backbone)
        if "proj" not in self.backbone.embed_dims:
            raise ConfigError(f"{c.backbone} has no joint image-text embedding; NS-Net needs an open_clip model")
        tower = load_text_tower(c.backbone)
        texts = prompts(c.text)
        text = tower.encode(texts)
        if text.shape[1] != self.backbone.embed_dims["proj"]:
            raise ConfigError(f"{c.backbone}: text embeddings ({text.shape[1]}-d) and image embeddings "
                              f"({self.backbone.embed_dims['proj']}-d) are not in one space")
        basis, facts = semantic_basis(text, c.null)
        digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
        self.null_facts = {**facts, "n_prompts": len(texts), "prompts_sha256": digest}
        self.text_identity = tower.identity()
        del tower
        return NSNetNet(self.backbone, basis, c)

    def identity(self) -> dict[str, Any]:
        """What enters the run identity beyond the config.

        Returns:
            The kit's facts plus the backbone and text tower identities and the null space (the prompts' digest, which
            names a ``text.file`` by its content; the ranks and dimension).
        """
        null = {k: v for k, v in self.null_facts.items() if k != "energy"}  # a float: recorded with the fit only
        return {**super().identity(), "backbone": self.backbone.identity(), "text_tower": self.text_identity,
                "null_space": null}

    def to_tensor(self) -> Any:
        """PIL image -> network input: ``ToTensor`` and the backbone's mean/std.

        Returns:
            The transform.
        """
        from torchvision import transforms

        pp = self.backbone.preprocess
        return transforms.Compose([transforms.ToTensor(), transforms.Normalize(pp.mean, pp.std)])

    def eval_preprocessing(self, ctx: RunContext) -> EvalPreprocessing:
        """The centre crop at the backbone's input size, no resize (padded when smaller), for every test set.

        Args:
            ctx: unused.

        Returns:
            The preprocessing.
        """
        pp = self.backbone.preprocess
        return EvalPreprocessing(pp.eval_transform(), by_shape=False,
                                 facts={"crop": pp.crop, "resize": pp.resize, "patch": "center"})

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Train the head (or load ``weights``); the null-space facts join the record.

        Args:
            train: the training rows.
            heldout: the held-out rows (epoch selection).
            ctx: the run context.

        Returns:
            The kit's facts plus ``null_space``.
        """
        return {**super().fit(train, heldout, ctx), "null_space": self.null_facts}

    def train_setup(self, ctx: RunContext, train: pd.DataFrame) -> TrainSetup:
        """AdamW on the head, cosine schedule with warm-up, the epoch kept by held-out accuracy.

        Args:
            ctx: unused.
            train: the training rows (a batch never holds more than there are).

        Returns:
            The recipe.
        """
        c = self.config
        pp = self.backbone.preprocess
        optimizer = torch.optim.AdamW(self.net.head.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        crop = pp.train_transform(flip=c.flip) if c.patch_train == "random" else pp.eval_transform()
        loss = functools.partial(ns_net_loss, loss=c.contrastive.loss, temperature=c.contrastive.temperature,
                                 weight=c.contrastive.weight)
        schedule = CosineSchedule(c.lr, epochs=c.epochs, min_lr=c.min_lr, warmup_epochs=c.warmup_epochs,
                                  metric="acc")
        return TrainSetup(
            model=self.net, optimizer=optimizer, schedule=schedule, train_transform=TorchDrawn(crop),
            heldout_transform=self.preprocessing.transform, loss=loss, probabilities=self.probabilities,
            epochs=c.epochs, batch_size=min(c.train_batch_size, len(train)), keep="best",
            checkpoint_every=c.checkpoint_every, heldout_batch_size=c.batch_size, precision=self.precision,
            name=self.name)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """P(fake): the sigmoid of the logit (column 0), in ``sigmoid_dtype``.

        Args:
            logits: ``[N, 1]`` (or ``[N, 1 + E]``).

        Returns:
            ``[N]`` P(fake).
        """
        return super().probabilities(np.asarray(logits).reshape(len(logits), -1)[:, 0])

    def cost_forward(self, ctx: RunContext, generator: str) -> Any:
        """The network on one image; the frozen CLIP image tower's parameters count too.

        Args:
            ctx: the evaluation's run context.
            generator: the generator of the image counted.

        Returns:
            The kit's forward with the backbone among the modules holding parameters.
        """
        import dataclasses

        forward = super().cost_forward(ctx, generator)
        return dataclasses.replace(forward, modules=(self.net, self.backbone.model))
