"""MPFT: masked partial fine-tuning of an image encoder with Texture-Aware Masking (Niu et al., 2026).

A documented reconstruction (the paper's code is not public; see docs/MPFT.md): the last ``k`` blocks of the
backbone, its final norm/projection and a linear head are fine-tuned with BCE (label 1 = fake) on
class-balanced batches, while TAM (``detectors/tam.py``) masks the most textured patches of real and fake
training images alike. Evaluation sees the full, unmasked image.

This module holds the detector: its network (trainable set, LoRA from ``detectors/lora.py``, head), the masked
forward and loss, one update step, its state and scoring. The training loop (schedule, batches, held-out
selection, resumable checkpoints) is ``detectors/mpft_train.py``. The backbone runs in eval mode throughout: no
dropout, and BatchNorm running statistics stay frozen (its affine parameters in trainable blocks do train), so
masked training batches never shift the statistics that unmasked evaluation uses.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce

from detbench import distributed as dist
from detbench.config import ConfigError
from detbench.data.loading import tune_cpu_allocator
from detbench.errors import WeightsError
from detbench.kit.cost import CostForward
from detbench.kit.detector import Detector, RunContext
from detbench.kit.scoring import score_logits
from detbench.kit.seeded_data import derive_seed
from detbench.models.backbones import Backbone, load_backbone
from detbench.models.precision import autocast, resolve_precision
from detbench.models.weights import not_floating
from detbench.probabilities import sigmoid

from .lora import add_lora
from .mpft_train import INIT_STREAM, train_mpft
from .tam import MaskConfig, ViTTokenFill, make_mask, zero_fill

STATE_FILE = "mpft.safetensors"
META_FILE = "mpft.json"


@dataclass(frozen=True)
class MPFTConfig:
    """MPFT options: backbone, masking, which parameters train and the training schedule."""

    backbone: str = ""  # empty: the suite's default backbone
    crop: int = 0  # 0: the backbone's default input size
    mask: MaskConfig = field(default_factory=MaskConfig)
    trainable: Literal["last_k", "full", "lora"] = "last_k"
    k: int = 4  # last_k: blocks fine-tuned; lora: blocks adapted (the final norm/projection always train)
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lr_backbone: float = 1e-5  # pretrained weights
    lr_head: float = 1e-4  # parameters MPFT creates: linear head, mask token, LoRA factors
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of the steps with linear warm-up, then cosine decay to 0
    epochs: float = 3.0  # passes over the (larger) class; ignored when steps > 0
    steps: int = 0
    batch_size: int = 32  # class-balanced: half real, half fake
    grad_clip: float = 1.0  # max gradient norm; 0: off
    train_per_class: int = 5000  # images per class drawn from the training rows; 0: all
    eval_every: int = 100  # steps between held-out evaluations (and at the last step)
    checkpoint_every: int = 200  # steps between resumable checkpoints; 0: none
    selection_metric: Literal["balanced_acc", "ap", "loss"] = "balanced_acc"  # on held-out rows
    flip: bool = True  # random horizontal flips in training
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere
    eval_batch_size: int = 64

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: the first option out of range.
        """
        checks = [
            (self.k >= 1, "k must be >= 1"),
            (self.lora_rank >= 1 and self.lora_alpha > 0, "lora_rank must be >= 1 and lora_alpha > 0"),
            (self.lr_backbone >= 0 and self.lr_head > 0, "lr_backbone must be >= 0 and lr_head > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0 <= self.warmup < 1, "warmup must be in [0, 1)"),
            (self.steps > 0 or self.epochs > 0, "set steps > 0 or epochs > 0"),
            (self.steps >= 0, "steps must be >= 0"),
            (self.batch_size >= 2 and self.batch_size % 2 == 0, "batch_size must be even (class-balanced)"),
            (self.grad_clip >= 0, "grad_clip must be >= 0"),
            (self.train_per_class >= 0, "train_per_class must be >= 0 (0: all)"),
            (self.eval_every >= 1, "eval_every must be >= 1"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0 (0: off)"),
            (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
            (self.crop >= 0, "crop must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"mpft: {message}")


# ------------------------------------------------------------------------------------------- detector


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "mpft",
    "class": "MPFT",
    "summary": "Masked partial fine-tuning with Texture-Aware Masking (Niu et al. 2026, reconstructed).",
    "paper": "Niu et al., AAAI (arXiv 2601.03586)",
    "year": 2026,
}


class MPFT(Detector):
    """Masked partial fine-tuning: fine-tune part of a backbone while masking patches (by default the most textured)."""

    name = REGISTRATION["name"]
    version = 2  # 2: CNN backbones run channels-last (other float rounding)
    Config = MPFTConfig
    summary = REGISTRATION["summary"]
    tiny_settings: ClassVar[dict[str, Any]] = {
        "backbone": "open_clip:detbench-tiny-vit@random", "k": 1, "batch_size": 4, "steps": 2, "eval_every": 2,
        "checkpoint_every": 0, "train_per_class": 0, "warmup": 0.0,
    }
    profile_defaults = {
        # "small" (the demo): its EfficientNet-Lite0 (a CNN, so TAM masks a 16 px grid of the 128 px
        # crop), its last 2 stages + conv_head/bn2 trainable, 30 steps of 32 (about 2.7 passes over 180
        # images per class: trained on the composite family for 60 steps, the held-out balanced accuracy
        # peaked at step 20 and stayed below it after). Learning rates are raised because so few steps at
        # the ViT defaults barely move.
        "small": {"crop": 128, "k": 2, "steps": 30, "train_per_class": 0, "eval_every": 10,
                 "checkpoint_every": 20, "lr_backbone": 1e-4, "lr_head": 1e-3, "mask.grid": 16},
    }

    # ---- setup: backbone, trainable set, head

    def setup(self, ctx: RunContext) -> None:
        """Load the backbone, mark the trainable set (last k blocks, all, or LoRA on the last k) and add the head.

        Initialisation (head, LoRA factors, token fill) is seeded from the run seed.

        Args:
            ctx: the run context.

        Raises:
            ConfigError: a crop smaller than the mask grid, ``k`` over the backbone's blocks, or a token fill on a
                backbone that is not an open_clip ViT.
        """
        cfg = self.config
        self.precision = resolve_precision(cfg.precision, ctx.device)
        self.backbone: Backbone = load_backbone(cfg.backbone, device="cpu", crop=cfg.crop or None)
        bb = self.backbone
        self.patch = bb.patch_size or cfg.mask.grid
        if bb.preprocess.crop < self.patch:
            raise ConfigError(f"mpft: the {bb.preprocess.crop} px crop is smaller than the {self.patch} px "
                              "mask grid")
        blocks = bb.blocks()
        if cfg.trainable != "full" and cfg.k > len(blocks):
            raise ConfigError(f"mpft: k={cfg.k} but {bb.spec} has only {len(blocks)} blocks")
        model = bb.model
        model.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(ctx.seed, INIT_STREAM))
            if cfg.trainable == "full":
                model.requires_grad_(True)
            else:
                for block in blocks[-cfg.k:]:
                    if cfg.trainable == "last_k":
                        block.requires_grad_(True)
                    else:
                        add_lora(block, cfg.lora_rank, cfg.lora_alpha)
            for mod in bb.head_modules():
                mod.requires_grad_(True)
            for p in bb.head_parameters():
                p.requires_grad_(True)
            modules: dict[str, nn.Module] = {"backbone": model, "head": nn.Linear(bb.embed_dim, 1)}
            self.token_fill = None
            if cfg.mask.fill != "zero" and cfg.mask.active:
                try:
                    self.token_fill = ViTTokenFill(model, cfg.mask.fill)
                except TypeError as exc:
                    raise ConfigError(f"mpft: mask.fill={cfg.mask.fill} works on open_clip ViTs only "
                                      f"({bb.spec} is not one); use mask.fill=zero") from exc
                modules["fill"] = self.token_fill
        self.net = nn.ModuleDict(modules)
        self.net.eval()
        self.channels_last = bb.patch_size is None  # a CNN: channels-last, as the feature cache runs it
        if self.channels_last:  # (oneDNN on CPUs: a training step 1.6x, scoring up to 2x faster)
            self.net.to(memory_format=torch.channels_last)
        self.trainable_names = [n for n, p in self.net.named_parameters() if p.requires_grad]
        self.device = "cpu"
        self._ddp: nn.Module | None = None  # the DistributedDataParallel training forward, made at the first step

    def identity(self) -> dict[str, Any]:
        """What enters the run identity beyond the config.

        Returns:
            The backbone identity, the mask grid in pixels and the resolved precision.
        """
        return {"backbone": self.backbone.identity(), "mask_grid_px": self.patch, "precision": self.precision}

    def move_to(self, device: str) -> None:
        """Move the network to ``device`` (tuning the CPU allocator on the CPU).

        Args:
            device: a torch device string.
        """
        if device == "cpu":
            tune_cpu_allocator()
        if device != self.device:
            self.net.to(device)
            self.device = device

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.precision, self.device)

    # ---- forward and loss

    def logits(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Head logits of normalised images, under a mask when given.

        Args:
            x: ``[B, 3, H, W]`` preprocessed images.
            mask: bool ``[B, gh, gw]`` patches to mask (zero-filled pixels, or the ViT token fill); None: no mask.

        Returns:
            ``[B]`` logits (float32).
        """
        if mask is not None and self.token_fill is None:
            x = zero_fill(x, mask, self.patch)
        elif mask is not None:
            self.token_fill.mask = mask
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        try:
            emb = self.backbone.embed(x)
        finally:
            if self.token_fill is not None:
                self.token_fill.mask = None
        return self.net["head"](emb.float()).squeeze(1)

    def make_mask(self, x: Tensor, generator: torch.Generator | None) -> Tensor | None:
        """The training mask of a batch (None when masking is off).

        Args:
            x: ``[B, 3, H, W]`` preprocessed images.
            generator: the random generator of random masking.

        Returns:
            Bool ``[B, gh, gw]``, or None.
        """
        if not self.config.mask.active:
            return None
        pp = self.backbone.preprocess
        return make_mask(x, self.config.mask, self.patch, mean=pp.mean, std=pp.std, generator=generator)

    def batch_loss(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Mean BCE-with-logits of a training batch under the configured masking (label 1 = fake).

        Args:
            x: ``[B, 3, H, W]`` preprocessed images.
            y: ``[B]`` labels.
            generator: the random generator of random masking.

        Returns:
            The scalar loss.
        """
        mask = self.make_mask(x, generator)
        y = y.float()
        if mask is None or self.config.mask.fill != "drop":
            return bce(self.logits(x, mask), y)
        # Dropping tokens needs one token count per forward: images left unmasked go through separately.
        has = mask.flatten(1).any(dim=1)
        total = x.new_zeros((), dtype=torch.float32)
        for group, group_mask in ((has, mask[has]), (~has, None)):
            if bool(group.any()):
                total = total + bce(self.logits(x[group], group_mask), y[group], reduction="sum")
        return total / len(y)

    # ---- trainable state

    def trainable_state(self) -> dict[str, Tensor]:
        """Detached CPU copies of every trainable tensor, by name.

        Returns:
            Parameter name -> tensor.
        """
        params = dict(self.net.named_parameters())
        return {n: params[n].detach().to("cpu", copy=True).contiguous() for n in self.trainable_names}

    def load_trainable(self, tensors: dict[str, Tensor], what: str) -> None:
        """Copy ``tensors`` onto the trainable parameters; the names and shapes must match exactly.

        Args:
            tensors: parameter name -> tensor, as :meth:`trainable_state` returns.
            what: names the source in the message.

        Raises:
            RuntimeError: missing, unexpected or mis-shaped tensors.
        """
        expected, got = set(self.trainable_names), set(tensors)
        if expected != got:
            missing, unexpected = sorted(expected - got), sorted(got - expected)
            raise RuntimeError(f"{what} does not match this MPFT configuration: missing {missing[:5]} "
                               f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})")
        params = dict(self.net.named_parameters())
        wrong = not_floating({n: params[n] for n in self.trainable_names}, tensors)
        if wrong:
            raise RuntimeError(f"{what}: tensors not floating point where the model holds floating point: "
                               f"{', '.join(wrong[:5])}")
        with torch.no_grad():
            for name in self.trainable_names:
                if params[name].shape != tensors[name].shape:
                    raise RuntimeError(f"{what}: {name} has shape {tuple(tensors[name].shape)}, "
                                       f"expected {tuple(params[name].shape)}")
                params[name].copy_(tensors[name])

    # ---- fit

    def make_optimizer(self) -> tuple[torch.optim.AdamW, list[str]]:
        """AdamW over (pretrained weights, lr_backbone) and (new parameters, lr_head).

        Each group keeps its peak rate as ``base_lr``.

        Returns:
            The optimizer and the names of its parameters in order.
        """
        groups = self._param_groups()
        optimizer = torch.optim.AdamW(
            [{"params": [p for _, p in g], "lr": lr, "base_lr": lr} for g, lr in groups],
            weight_decay=self.config.weight_decay)
        return optimizer, [n for g, _ in groups for n, _ in g]

    def train_step(self, x: Tensor | None, y: Tensor | None, optimizer: torch.optim.Optimizer,
                   generator: torch.Generator | None) -> tuple[float, int]:
        """One masked update on a batch (mask, forward, backward, clipping, AdamW).

        Under torchrun each rank passes its slice of the batch (None when none of it loaded) and gets the whole
        batch's loss and count: DDP averages the gradients of the rank losses weighted by ``n_rank * world / n``,
        which is the gradient of the whole batch's mean loss.

        Args:
            x: ``[B, 3, H, W]`` preprocessed images, or None when none loaded.
            y: ``[B]`` labels, or None.
            optimizer: the optimizer of :meth:`make_optimizer`.
            generator: the random generator of random masking.

        Returns:
            The batch's mean loss and its number of images (NaN and 0, and no update, when none loaded).
        """
        n_local = 0 if x is None else len(x)
        n = int(dist.all_reduce_sum(n_local))
        if n == 0:
            return float("nan"), 0
        forward: Any = self.batch_loss
        if dist.sharded():
            if self._ddp is None:
                self._ddp = dist.data_parallel(_BatchLoss(self), self.device, forward_sync_buffers=False)
            forward = self._ddp
        if x is None or y is None:  # this rank's slice failed to load: join the step with a blank of weight 0
            crop = self.backbone.preprocess.crop
            x = torch.zeros(1, 3, crop, crop, device=self.device)
            y = torch.zeros(1, dtype=torch.long, device=self.device)
        with self._autocast():
            loss = forward(x, y, generator)
        (loss * (n_local * dist.world_size() / n) if dist.sharded() else loss).backward()
        if self.config.grad_clip > 0:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if not dist.sharded():
            return float(loss.detach()), n
        return dist.all_reduce_sum(float(loss.detach()) * n_local) / n, n

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Fine-tune with MPFT's training loop (:func:`~detbench.detectors.mpft_train.train_mpft`).

        Args:
            train: the training rows.
            heldout: the held-out rows of the training generator (step selection).
            ctx: the run context.

        Returns:
            Facts for the run record (see :func:`~detbench.detectors.mpft_train.train_mpft`).
        """
        return train_mpft(self, train, heldout, ctx)

    def _param_groups(self) -> list[tuple[list[tuple[str, nn.Parameter]], float]]:
        """(pretrained backbone weights, lr_backbone) and (parameters MPFT created, lr_head)."""
        params = dict(self.net.named_parameters())
        is_new = {n: not n.startswith("backbone.") or ".lora_" in n for n in self.trainable_names}
        new = [(n, params[n]) for n in self.trainable_names if is_new[n]]
        pretrained = [(n, params[n]) for n in self.trainable_names if not is_new[n]]
        return [(pretrained, self.config.lr_backbone), (new, self.config.lr_head)]

    # ---- scoring

    def score_logits(self, rows: pd.DataFrame, ctx: RunContext, *, perturb: bool,
                     description: str | None) -> tuple[np.ndarray, dict[int, str]]:
        """Head logits of full, unmasked images (NaN where an image failed) and failures by row position.

        Args:
            rows: the rows to score.
            ctx: the run context.
            perturb: whether the run's perturbation applies.
            description: the progress phase's name; None shows no progress.

        Returns:
            ``[len(rows)]`` logits and failure reasons by row position.
        """
        self.move_to(ctx.device)
        return score_logits(self.logits, rows, ctx, self.backbone.preprocess.eval_transform(), device=self.device,
                            precision=self.precision, batch_size=ctx.batch_size or self.config.eval_batch_size,
                            perturb=ctx.perturbation if perturb else None, description=description)

    def predict(self, rows: pd.DataFrame, ctx: RunContext) -> tuple[np.ndarray, dict[int, str]]:
        """P(fake) per row: the sigmoid of :meth:`score_logits` on the (perturbed) images.

        Args:
            rows: the rows to score.
            ctx: the run context.

        Returns:
            Scores (NaN where an image failed) and failure reasons by row position.
        """
        logits, failures = self.score_logits(rows, ctx, perturb=True, description="score mpft")
        return sigmoid(logits), failures

    def cost_forward(self, ctx: RunContext, generator: str) -> CostForward:
        """The head's logit of one full, unmasked image (the scoring forward).

        Args:
            ctx: the evaluation's run context (unused).
            generator: the generator of the image counted (unused: every image is preprocessed alike).

        Returns:
            The forward of :meth:`logits`; trainable: the fine-tuned tensors (blocks, head, LoRA factors, token fill).
        """
        params = dict(self.net.named_parameters())
        return CostForward(self.logits, self.backbone.preprocess.eval_transform(), (self.net,),
                           trainable=sum(params[n].numel() for n in self.trainable_names))

    # ---- state

    def save(self, directory: Path) -> None:
        """Write the trainable tensors (safetensors) and a short description (JSON).

        Args:
            directory: the state folder (created if missing).
        """
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.trainable_state(), str(directory / STATE_FILE))
        meta = {"backbone": self.backbone.spec, "trainable": self.config.trainable,
                "tensors": len(self.trainable_names)}
        (directory / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))

    def load(self, directory: Path) -> None:
        """Restore the trainable tensors written by :meth:`save`.

        Args:
            directory: the state folder.

        Raises:
            WeightsError: the state is unreadable or does not match this configuration.
        """
        from safetensors import SafetensorError

        path = directory / STATE_FILE
        try:
            state = load_file(str(path))
        except (OSError, SafetensorError) as exc:
            raise WeightsError(f"{path} is not a readable MPFT state ({exc})") from None
        try:
            self.load_trainable(state, f"MPFT state {path}")
        except RuntimeError as exc:
            raise WeightsError(f"{path} does not fit this MPFT configuration: {exc}") from None


class _BatchLoss(nn.Module):
    """The training forward of an MPFT detector as a module, for DistributedDataParallel to wrap."""

    def __init__(self, detector: MPFT) -> None:
        super().__init__()
        self.net = detector.net
        self.detector = detector

    def forward(self, x: Tensor, y: Tensor, generator: torch.Generator | None) -> Tensor:
        return self.detector.batch_loss(x, y, generator)


