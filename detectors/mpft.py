"""MPFT: masked partial fine-tuning of an image encoder with Texture-Aware Masking (Niu et al., 2026).

A documented reconstruction (the paper's code is not public; see docs/MPFT.md): the last ``k`` blocks of the
backbone, its final norm/projection and a linear head are fine-tuned with BCE (label 1 = fake) on
class-balanced batches, while TAM (``detectors/tam.py``) masks the most textured patches of real and fake
training images alike. Evaluation sees the full, unmasked image.

Determinism and resume: everything random in step ``s`` (which rows, their crops/flips, the masks, the
global torch RNG) is derived from ``(seed, s)``, never from RNG state carried between steps. A checkpoint
therefore needs only the trainable weights, the best-so-far weights, the AdamW state and the step; a run
killed at any point and resumed ends bit-identical (on CPU) to an uninterrupted one, whatever the number of
decoding workers. The backbone runs in eval mode throughout: no dropout, and BatchNorm running statistics
stay frozen (its affine parameters in trainable blocks do train), so masked training batches never shift
the statistics that unmasked evaluation uses.

Under torchrun (``detbench run --nproc N``) training is data-parallel: each rank loads its contiguous slice of
every class-balanced batch and DistributedDataParallel averages the gradients, each rank's loss weighted by
its share of the batch, so a step equals the single-process step on the whole batch up to float rounding.
Random mask draws (strategies ``random``/``stochastic``, ``p_unmasked``) come from a per-rank stream; the
default TAM mask draws nothing. Held-out scoring is sharded and gathered on every rank (all ranks select the
same best step); rank 0 writes the checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce
from torch.nn.utils import parametrize

from detbench import distributed as dist
from detbench.backbones import Backbone, load_backbone
from detbench.config import ConfigError
from detbench.data import iterate_batches, tune_cpu_allocator
from detbench.detector import Detector, RunContext
from detbench.errors import DataError, TrainingError
from detbench.metrics import binary_metrics
from detbench.precision import autocast, resolve_precision
from detbench.probabilities import sigmoid
from detbench.record import reason_counts
from detbench.train_state import (
    gathered_failures,
    load_optimizer_tensors,
    optimizer_tensors,
    read_checkpoint,
    write_checkpoint,
)
from detbench.training import ScheduledRows, TorchDrawn, derive_seed, score_logits

from .tam import MaskConfig, ViTTokenFill, grid_shape, make_mask, num_masked, zero_fill

CHECKPOINT = "checkpoint.safetensors"
META_KEY = "mpft"  # the checkpoint's metadata entry
STATE_FILE = "mpft.safetensors"
META_FILE = "mpft.json"
# Stream tags for seeds derived from (run seed, tag, ...).
_INIT, _SAMPLE, _AUGMENT, _MASK, _STEP = range(5)


@dataclass(frozen=True)
class MPFTConfig:
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


# --------------------------------------------------------------------------------------------- pieces


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over ``warmup * total`` steps, then cosine decay to 0 (``step`` counts from 0).

    Args:
        step: the step, from 0.
        total: the number of steps.
        warmup: the fraction of the steps that warm up, in [0, 1).

    Returns:
        The factor applied to each group's peak learning rate.
    """
    n_warm = int(math.ceil(warmup * total))
    if step < n_warm:
        return (step + 1) / n_warm
    span = max(1, total - n_warm)
    return 0.5 * (1.0 + math.cos(math.pi * (step - n_warm) / span))


def class_stream(n: int, seed: int, label: int, start: int, count: int) -> np.ndarray:
    """Positions ``start .. start+count-1`` of an endless stream over ``n`` items, reshuffled every pass.

    Args:
        n: the items of the class.
        seed: the run seed (each pass's shuffle is seeded by it, the class and the pass).
        label: the class (0 real, 1 fake).
        start: the first stream position.
        count: how many positions.

    Returns:
        ``count`` item indices in ``0 .. n-1``.
    """
    epochs, offsets = np.divmod(np.arange(start, start + count), n)
    out = np.empty(count, dtype=np.int64)
    for epoch in np.unique(epochs):
        sel = epochs == epoch
        out[sel] = np.random.default_rng([seed, _SAMPLE, label, int(epoch)]).permutation(n)[offsets[sel]]
    return out


class LowRankDelta(nn.Module):
    """LoRA as a parametrization: ``W + (alpha / rank) * (B @ A)`` reshaped to W (linear weights, attention
    in-projections, conv kernels); B starts at zero, so training starts exactly from W."""

    def __init__(self, shape: torch.Size, rank: int, alpha: float, device: torch.device) -> None:
        super().__init__()
        rows, cols = shape[0], int(np.prod(shape[1:]))
        r = min(rank, rows, cols)
        self.lora_a = nn.Parameter(torch.empty(r, cols, device=device))
        self.lora_b = nn.Parameter(torch.zeros(rows, r, device=device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, w: Tensor) -> Tensor:
        """The adapted weight.

        Args:
            w: the original weight.

        Returns:
            ``w + (alpha / rank) * (B @ A)`` reshaped to ``w`` (in ``w``'s dtype).
        """
        return w + (self.lora_b @ self.lora_a).view_as(w).to(w.dtype) * self.scale


def add_lora(block: nn.Module, rank: int, alpha: float) -> int:
    """Give every weight with ndim >= 2 directly owned by a module of ``block`` a trainable low-rank delta.

    Args:
        block: the block to adapt.
        rank: the LoRA rank (capped by each weight's shape).
        alpha: the LoRA scale numerator (the delta is scaled by ``alpha / rank``).

    Returns:
        How many weights were adapted.
    """
    targets = [(mod, name, p) for mod in block.modules()
               for name, p in list(mod.named_parameters(recurse=False)) if p.ndim >= 2]
    for mod, name, p in targets:
        parametrize.register_parametrization(mod, name, LowRankDelta(p.shape, rank, alpha, p.device))
    return len(targets)


# ------------------------------------------------------------------------------------------- detector


class MPFT(Detector):
    name = "mpft"
    version = 1
    Config = MPFTConfig
    summary = ("Masked partial fine-tuning with Texture-Aware Masking (Niu et al. 2026, reconstructed): "
               "last blocks + head fine-tuned while the most textured patches are masked.")
    profile_defaults = {
        # "small" (the demo): its EfficientNet-Lite0 (a CNN, so TAM masks a 16 px grid of the 128 px
        # crop), its last 2 stages + conv_head/bn2 trainable, 60 steps of 32 (about 5 passes over 180
        # images per class). Learning rates are raised because 60 steps at the ViT defaults barely move.
        "small": {"crop": 128, "k": 2, "steps": 60, "train_per_class": 0, "eval_every": 10,
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
            torch.manual_seed(derive_seed(ctx.seed, _INIT))
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
        """Fine-tune: class-balanced batches, warm-up + cosine schedule, held-out selection, resumable checkpoints.

        Everything random in a step is drawn from (run seed, step), so a run killed and resumed from its
        checkpoint ends as an uninterrupted one (see the module docstring).

        Args:
            train: the training rows (``train_per_class`` per label are drawn with the run seed).
            heldout: the held-out rows (selection by ``selection_metric`` every ``eval_every`` steps).
            ctx: the run context.

        Returns:
            Facts for the run record: steps, best step and its held-out metrics, history, counts, failures,
            parameter counts, mask grid and training speed.

        Raises:
            DataError: no real or no fake training image.
            ConfigError: a batch smaller than the number of processes.
            TrainingError: the loss diverged.
        """
        cfg = self.config
        rows = self._training_rows(train, ctx.seed)
        labels = rows["label"].to_numpy()
        by_class = [np.flatnonzero(labels == c) for c in (0, 1)]
        if min(len(i) for i in by_class) == 0:
            raise DataError(f"mpft needs real and fake training images; it has {len(by_class[0])} real and "
                            f"{len(by_class[1])} fake")
        if cfg.batch_size < dist.world_size():
            raise ConfigError(f"mpft: batch_size {cfg.batch_size} is smaller than the {dist.world_size()} processes")
        per_pass = max(len(i) for i in by_class) / (cfg.batch_size // 2)
        total = cfg.steps or max(1, math.ceil(cfg.epochs * per_pass))
        self.move_to(ctx.device)
        optimizer, named = self.make_optimizer()

        ckpt_path = ctx.checkpoint_dir() / CHECKPOINT
        run = _Progress()
        if ckpt_path.exists():
            run = self._resume(ckpt_path, optimizer, named, total)
            ctx.phases.log(f"mpft: resuming from the checkpoint at step {run.step}/{total} ({ckpt_path})")

        started, start_step = time.perf_counter(), run.step
        with ctx.phases.phase("train mpft", total) as advance:
            advance(run.step)
            for step, x, y in self._batches(rows, by_class, run.step, total, ctx, run.failures):
                factor = lr_factor(step, total, cfg.warmup)
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * factor
                if x is not None or dist.sharded():  # under torchrun every rank joins every step
                    torch.manual_seed(derive_seed(ctx.seed, _STEP, step))
                    rank_key = (dist.rank(),) if dist.sharded() else ()
                    gen = torch.Generator(device=self.device).manual_seed(
                        derive_seed(ctx.seed, _MASK, step, *rank_key))
                    loss, n = self.train_step(x, y, optimizer, gen)
                    if n and not math.isfinite(loss):
                        raise TrainingError(
                            f"mpft: the training loss became {loss} at step {step + 1}/{total} (lr_backbone="
                            f"{cfg.lr_backbone:g}, lr_head={cfg.lr_head:g}, grad_clip={cfg.grad_clip:g}): training "
                            "diverged; lower the learning rates or set grad_clip > 0"
                        )
                    if n:
                        run.loss_sum += loss * n
                        run.loss_n += n
                run.step = step + 1
                if run.step % cfg.eval_every == 0 or run.step == total:
                    self._evaluate(heldout, ctx, run)
                if cfg.checkpoint_every and run.step % cfg.checkpoint_every == 0 and run.step < total:
                    self._save_checkpoint(ckpt_path, optimizer, named, run, total)
                advance(1)
        seconds = time.perf_counter() - started
        speed = (total - start_step) * cfg.batch_size / seconds if seconds > 0 else None
        self.load_trainable(run.best_state, "the best held-out state")
        if dist.is_main():
            ckpt_path.unlink(missing_ok=True)
        run.failures = gathered_failures(run.failures)
        n_params = sum(p.numel() for p in self.net.parameters())
        return {
            "steps": total,
            "batch_size": cfg.batch_size,
            "resumed_from_step": start_step or None,
            "best_step": run.best["step"],
            "best_heldout": run.best,
            "selection_metric": cfg.selection_metric,
            "history": run.history,
            "n_train_used": {"real": len(by_class[0]), "fake": len(by_class[1])},
            "n_heldout": int(len(heldout)),
            "train_failures": len(run.failures),
            "train_failure_reasons": reason_counts(run.failures.values()),
            "heldout_failures": run.heldout_failures,
            "trainable_params": int(sum(p.numel() for g in optimizer.param_groups for p in g["params"])),
            "total_params": int(n_params),
            "mask_grid": {"px": self.patch, **self._grid_facts()},
            "train_images_per_s": round(speed, 2) if speed else None,
        }

    def _training_rows(self, train: pd.DataFrame, seed: int) -> pd.DataFrame:
        """The rows trained on: all, or ``train_per_class`` per label drawn with the run seed."""
        rows = train.sort_values("path", kind="stable").reset_index(drop=True)
        n = self.config.train_per_class
        if not n:
            return rows
        keep = []
        for label, group in rows.groupby("label", sort=True):
            rng = np.random.default_rng([seed, _SAMPLE, 2, int(label)])
            keep.extend(group.index[np.sort(rng.permutation(len(group))[:n])])
        return rows.loc[sorted(keep)].reset_index(drop=True)

    def _grid_facts(self) -> dict[str, int]:
        crop = self.backbone.preprocess.crop
        gh, gw = grid_shape(crop, crop, self.patch)
        masked = num_masked(gh * gw, self.config.mask.ratio) if self.config.mask.active else 0
        return {"patches": gh * gw, "masked": masked}

    def _param_groups(self) -> list[tuple[list[tuple[str, nn.Parameter]], float]]:
        """(pretrained backbone weights, lr_backbone) and (parameters MPFT created, lr_head)."""
        params = dict(self.net.named_parameters())
        is_new = {n: not n.startswith("backbone.") or ".lora_" in n for n in self.trainable_names}
        new = [(n, params[n]) for n in self.trainable_names if is_new[n]]
        pretrained = [(n, params[n]) for n in self.trainable_names if not is_new[n]]
        return [(pretrained, self.config.lr_backbone), (new, self.config.lr_head)]

    def _batches(self, rows: pd.DataFrame, by_class: list[np.ndarray], start: int, total: int,
                 ctx: RunContext, failures: dict[int, str]) -> Iterator[tuple[int, Tensor | None, Any]]:
        """``(step, x, y)`` for steps ``start .. total-1``; class-balanced, half from each class stream."""
        half = self.config.batch_size // 2
        part = dist.shard_slice(2 * half)  # under torchrun, this rank's slice of every batch
        order, seeds = [], []
        for step in range(start, total):
            batch_order = np.concatenate([idx[class_stream(len(idx), ctx.seed, label, step * half, half)]
                                          for label, idx in enumerate(by_class)])
            order.extend(batch_order[part])
            seeds.extend(derive_seed(ctx.seed, _AUGMENT, step, j) for j in range(2 * half)[part])
        transform = self.backbone.preprocess.train_transform(flip=self.config.flip)
        dataset = ScheduledRows(ctx.suite_root, rows["path"].tolist(), TorchDrawn(transform), np.asarray(order), seeds)
        labels = torch.tensor(rows["label"].to_numpy(dtype=np.int64))
        cuda = self.device.startswith("cuda")
        batches = iterate_batches(dataset, batch_size=part.stop - part.start, workers=ctx.workers, pin_memory=cuda)
        for step, batch in zip(range(start, total), batches, strict=True):
            for pos, reason in batch.failures:
                failures[int(order[pos])] = reason
            if batch.x is None:
                yield step, None, None
                continue
            row_idx = torch.as_tensor(np.asarray(order)[batch.indices])
            yield step, batch.x.to(self.device, non_blocking=cuda), labels[row_idx].to(self.device)

    # ---- held-out selection and checkpoints

    def _evaluate(self, heldout: pd.DataFrame, ctx: RunContext, run: _Progress) -> None:
        # Each rank scores a block of whole scoring batches; every rank gets all logits.
        rows = heldout.iloc[dist.shard_slice(len(heldout), align=ctx.batch_size or self.config.eval_batch_size)]
        parts = dist.all_gather(self.score_logits(rows, ctx, perturb=False, description=None))
        logits = np.concatenate([part[0] for part in parts])
        run.heldout_failures = sum(len(part[1]) for part in parts)
        ok = np.isfinite(logits)
        y = heldout["label"].to_numpy()[ok]
        z = logits[ok]
        loss = float(np.mean(np.logaddexp(0.0, z) - y * z)) if len(z) else float("nan")
        metrics = binary_metrics(y, sigmoid(z)) if len(z) else {}
        entry = {"step": run.step, "train_loss": run.loss_sum / run.loss_n if run.loss_n else None,
                 "heldout_loss": loss, "heldout_ap": metrics.get("ap"),
                 "heldout_balanced_acc": metrics.get("balanced_acc")}
        run.history.append(entry)
        run.loss_sum, run.loss_n = 0.0, 0
        key = self._selection_key(entry)
        if run.best_key is None or key > run.best_key or not len(z):  # no usable held-out rows: keep the last
            run.best_key, run.best, run.best_state = key, entry, self.trainable_state()
        ctx.phases.log(f"mpft step {run.step}: held-out loss {_shown(loss, 4)}, balanced acc "
                       f"{_shown(entry['heldout_balanced_acc'])}, AP {_shown(entry['heldout_ap'])}"
                       + ("" if len(z) else " (no usable held-out image: keeping the latest state)"))

    def _selection_key(self, entry: dict[str, Any]) -> tuple[float, ...]:
        """Higher is better, NaN worst; ties go to the lower held-out loss, then to the earlier step."""
        loss = entry["heldout_loss"]
        neg_loss = -loss if loss is not None and np.isfinite(loss) else -np.inf
        if self.config.selection_metric == "loss":
            return (neg_loss,)
        value = entry[f"heldout_{self.config.selection_metric}"]
        return (value if value is not None and np.isfinite(value) else -np.inf, neg_loss)

    def _save_checkpoint(self, path: Path, optimizer: torch.optim.Optimizer, named: list[str], run: _Progress,
                         total: int) -> None:
        run.failures = gathered_failures(run.failures)
        if not dist.is_main():
            return
        meta = {"step": run.step, "total_steps": total, "loss_sum": run.loss_sum, "loss_n": run.loss_n,
                "best_key": run.best_key, "best": run.best, "history": run.history,
                "failures": {str(k): v for k, v in run.failures.items()},
                "heldout_failures": run.heldout_failures}
        sections = {"model": self.trainable_state(), "best": run.best_state,
                    "optim": optimizer_tensors(optimizer, named)}
        write_checkpoint(path, sections, meta, meta_key=META_KEY)

    def _resume(self, path: Path, optimizer: torch.optim.Optimizer, named: list[str],
                total: int) -> _Progress:
        meta, sections = read_checkpoint(path, meta_key=META_KEY)
        if meta["total_steps"] != total:
            raise TrainingError(f"checkpoint {path} plans {meta['total_steps']} steps, this run {total}; "
                                "delete it to start over")
        self.load_trainable(sections.get("model", {}), f"checkpoint {path}")
        load_optimizer_tensors(optimizer, sections.get("optim", {}), named)
        return _Progress(
            step=meta["step"], loss_sum=meta["loss_sum"], loss_n=meta["loss_n"],
            best_key=tuple(meta["best_key"]) if meta["best_key"] else None, best=meta["best"],
            best_state=sections.get("best", {}), history=meta["history"], heldout_failures=meta["heldout_failures"],
            failures={int(k): v for k, v in meta["failures"].items()})

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
            RuntimeError: the state does not match this configuration.
        """
        self.load_trainable(load_file(str(directory / STATE_FILE)), f"MPFT state {directory / STATE_FILE}")


@dataclass
class _Progress:
    """Training progress that a checkpoint carries."""

    step: int = 0
    loss_sum: float = 0.0
    loss_n: int = 0
    best_key: tuple[float, ...] | None = None
    best: dict[str, Any] = field(default_factory=dict)
    best_state: dict[str, Tensor] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)
    heldout_failures: int = 0


class _BatchLoss(nn.Module):
    """The training forward of an MPFT detector as a module, for DistributedDataParallel to wrap."""

    def __init__(self, detector: MPFT) -> None:
        super().__init__()
        self.net = detector.net
        self.detector = detector

    def forward(self, x: Tensor, y: Tensor, generator: torch.Generator | None) -> Tensor:
        return self.detector.batch_loss(x, y, generator)


def _shown(value: float | None, digits: int = 3) -> str:
    """A held-out number for the log; ``n/a`` when there is none (no usable held-out image, one class)."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"
