"""MPFT's training loop: class-balanced batches, warm-up + cosine schedule, held-out selection, checkpoints.

:func:`train_mpft` fine-tunes an :class:`~detbench.detectors.mpft.MPFT` detector (its :meth:`fit`); each update is
the detector's :meth:`~detbench.detectors.mpft.MPFT.train_step` (mask, forward, backward, AdamW).

Determinism and resume: everything random in step ``s`` (which rows, their crops/flips, the masks, the
global torch RNG) is derived from ``(seed, s)``, never from RNG state carried between steps. A checkpoint
therefore needs only the trainable weights, the best-so-far weights, the AdamW state and the step; a run
killed at any point and resumed ends bit-identical (on CPU) to an uninterrupted one, whatever the number of
decoding workers.

Under torchrun (``detbench run --nproc N``) training is data-parallel: each rank loads its contiguous slice of
every class-balanced batch and DistributedDataParallel averages the gradients, each rank's loss weighted by
its share of the batch, so a step equals the single-process step on the whole batch up to float rounding.
Random mask draws (strategies ``random``/``stochastic``, ``p_unmasked``) come from a per-rank stream; the
default TAM mask draws nothing. Held-out scoring is sharded and gathered on every rank (all ranks select the
same best step); rank 0 writes the checkpoints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from detbench import distributed as dist
from detbench.config import ConfigError
from detbench.data.images import reason_counts
from detbench.data.loading import iterate_batches
from detbench.errors import DataError, TrainingError
from detbench.kit.detector import Detector, RunContext
from detbench.kit.seeded_data import ScheduledRows, TorchDrawn, derive_seed
from detbench.kit.train_state import (
    gathered_failures,
    load_optimizer_tensors,
    optimizer_tensors,
    read_checkpoint,
    write_checkpoint,
)
from detbench.metrics import binary_metrics
from detbench.probabilities import sigmoid

from .tam import grid_shape, num_masked

CHECKPOINT = "checkpoint.safetensors"
META_KEY = "mpft"  # the checkpoint's metadata entry
# Stream tags of the seeds derived from (run seed, tag, ...); INIT_STREAM seeds the detector's initialisation.
INIT_STREAM, SAMPLE_STREAM, AUGMENT_STREAM, MASK_STREAM, STEP_STREAM = range(5)


# ------------------------------------------------------------------------------------------ schedule and rows


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
        out[sel] = np.random.default_rng([seed, SAMPLE_STREAM, label, int(epoch)]).permutation(n)[offsets[sel]]
    return out


# ------------------------------------------------------------------------------------------ the loop


def train_mpft(det: Detector, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
    """Fine-tune: class-balanced batches, warm-up + cosine schedule, held-out selection, resumable checkpoints.

    Everything random in a step is drawn from (run seed, step), so a run killed and resumed from its
    checkpoint ends as an uninterrupted one (see the module docstring).

    Args:
        det: the detector, set up (its trainable parameters are updated in place and end at the best step).
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
    cfg = det.config
    rows = _training_rows(det, train, ctx.seed)
    labels = rows["label"].to_numpy()
    by_class = [np.flatnonzero(labels == c) for c in (0, 1)]
    if min(len(i) for i in by_class) == 0:
        raise DataError(f"mpft needs real and fake training images; it has {len(by_class[0])} real and "
                        f"{len(by_class[1])} fake")
    if cfg.batch_size < dist.world_size():
        raise ConfigError(f"mpft: batch_size {cfg.batch_size} is smaller than the {dist.world_size()} processes")
    per_pass = max(len(i) for i in by_class) / (cfg.batch_size // 2)
    total = cfg.steps or max(1, math.ceil(cfg.epochs * per_pass))
    det.move_to(ctx.device)
    optimizer, named = det.make_optimizer()

    ckpt_path = ctx.checkpoint_dir() / CHECKPOINT
    run = _Progress()
    if ckpt_path.exists():
        run = _resume(det, ckpt_path, optimizer, named, total)
        ctx.phases.log(f"mpft: resuming from the checkpoint at step {run.step}/{total} ({ckpt_path})")

    started, start_step = time.perf_counter(), run.step
    with ctx.phases.phase("train mpft", total) as advance:
        advance(run.step)
        for step, x, y in _batches(det, rows, by_class, run.step, total, ctx, run.failures):
            factor = lr_factor(step, total, cfg.warmup)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            if x is not None or dist.sharded():  # under torchrun every rank joins every step
                torch.manual_seed(derive_seed(ctx.seed, STEP_STREAM, step))
                rank_key = (dist.rank(),) if dist.sharded() else ()
                gen = torch.Generator(device=det.device).manual_seed(
                    derive_seed(ctx.seed, MASK_STREAM, step, *rank_key))
                loss, n = det.train_step(x, y, optimizer, gen)
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
                _evaluate(det, heldout, ctx, run)
            if cfg.checkpoint_every and run.step % cfg.checkpoint_every == 0 and run.step < total:
                _save_checkpoint(det, ckpt_path, optimizer, named, run, total)
            advance(1)
    seconds = time.perf_counter() - started
    speed = (total - start_step) * cfg.batch_size / seconds if seconds > 0 else None
    det.load_trainable(run.best_state, "the best held-out state")
    if dist.is_main():
        ckpt_path.unlink(missing_ok=True)
    run.failures = gathered_failures(run.failures)
    n_params = sum(p.numel() for p in det.net.parameters())
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
        "mask_grid": {"px": det.patch, **_grid_facts(det)},
        "train_images_per_s": round(speed, 2) if speed else None,
    }


def _training_rows(det: Detector, train: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The rows trained on: all, or ``train_per_class`` per label drawn with the run seed."""
    rows = train.sort_values("path", kind="stable").reset_index(drop=True)
    n = det.config.train_per_class
    if not n:
        return rows
    keep = []
    for label, group in rows.groupby("label", sort=True):
        rng = np.random.default_rng([seed, SAMPLE_STREAM, 2, int(label)])
        keep.extend(group.index[np.sort(rng.permutation(len(group))[:n])])
    return rows.loc[sorted(keep)].reset_index(drop=True)


def _grid_facts(det: Detector) -> dict[str, int]:
    crop = det.backbone.preprocess.crop
    gh, gw = grid_shape(crop, crop, det.patch)
    masked = num_masked(gh * gw, det.config.mask.ratio) if det.config.mask.active else 0
    return {"patches": gh * gw, "masked": masked}


def _batches(det: Detector, rows: pd.DataFrame, by_class: list[np.ndarray], start: int, total: int,
             ctx: RunContext, failures: dict[int, str]) -> Iterator[tuple[int, Tensor | None, Any]]:
    """``(step, x, y)`` for steps ``start .. total-1``; class-balanced, half from each class stream."""
    half = det.config.batch_size // 2
    part = dist.shard_slice(2 * half)  # under torchrun, this rank's slice of every batch
    order, seeds = [], []
    for step in range(start, total):
        batch_order = np.concatenate([idx[class_stream(len(idx), ctx.seed, label, step * half, half)]
                                      for label, idx in enumerate(by_class)])
        order.extend(batch_order[part])
        seeds.extend(derive_seed(ctx.seed, AUGMENT_STREAM, step, j) for j in range(2 * half)[part])
    transform = det.backbone.preprocess.train_transform(flip=det.config.flip)
    dataset = ScheduledRows(ctx.suite_root, rows["path"].tolist(), TorchDrawn(transform), np.asarray(order), seeds)
    labels = torch.tensor(rows["label"].to_numpy(dtype=np.int64))
    cuda = det.device.startswith("cuda")
    batches = iterate_batches(dataset, batch_size=part.stop - part.start, workers=ctx.workers, pin_memory=cuda)
    for step, batch in zip(range(start, total), batches, strict=True):
        for pos, reason in batch.failures:
            failures[int(order[pos])] = reason
        if batch.x is None:
            yield step, None, None
            continue
        row_idx = torch.as_tensor(np.asarray(order)[batch.indices])
        yield step, batch.x.to(det.device, non_blocking=cuda), labels[row_idx].to(det.device)


# ------------------------------------------------------------------------------- held-out selection and checkpoints


def _evaluate(det: Detector, heldout: pd.DataFrame, ctx: RunContext, run: _Progress) -> None:
    # Each rank scores a block of whole scoring batches; every rank gets all logits.
    rows = heldout.iloc[dist.shard_slice(len(heldout), align=ctx.batch_size or det.config.eval_batch_size)]
    parts = dist.all_gather(det.score_logits(rows, ctx, perturb=False, description=None))
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
    key = _selection_key(det, entry)
    if run.best_key is None or key > run.best_key or not len(z):  # no usable held-out rows: keep the last
        run.best_key, run.best, run.best_state = key, entry, det.trainable_state()
    ctx.phases.log(f"mpft step {run.step}: held-out loss {_shown(loss, 4)}, balanced acc "
                   f"{_shown(entry['heldout_balanced_acc'])}, AP {_shown(entry['heldout_ap'])}"
                   + ("" if len(z) else " (no usable held-out image: keeping the latest state)"))


def _selection_key(det: Detector, entry: dict[str, Any]) -> tuple[float, ...]:
    """Higher is better, NaN worst; ties go to the lower held-out loss, then to the earlier step."""
    loss = entry["heldout_loss"]
    neg_loss = -loss if loss is not None and np.isfinite(loss) else -np.inf
    if det.config.selection_metric == "loss":
        return (neg_loss,)
    value = entry[f"heldout_{det.config.selection_metric}"]
    return (value if value is not None and np.isfinite(value) else -np.inf, neg_loss)


def _save_checkpoint(det: Detector, path: Path, optimizer: torch.optim.Optimizer, named: list[str], run: _Progress,
                     total: int) -> None:
    run.failures = gathered_failures(run.failures)
    if not dist.is_main():
        return
    meta = {"step": run.step, "total_steps": total, "loss_sum": run.loss_sum, "loss_n": run.loss_n,
            "best_key": run.best_key, "best": run.best, "history": run.history,
            "failures": {str(k): v for k, v in run.failures.items()},
            "heldout_failures": run.heldout_failures}
    sections = {"model": det.trainable_state(), "best": run.best_state,
                "optim": optimizer_tensors(optimizer, named)}
    write_checkpoint(path, sections, meta, meta_key=META_KEY)


def _resume(det: Detector, path: Path, optimizer: torch.optim.Optimizer, named: list[str],
            total: int) -> _Progress:
    meta, sections = read_checkpoint(path, meta_key=META_KEY)
    if meta["total_steps"] != total:
        raise TrainingError(f"checkpoint {path} plans {meta['total_steps']} steps, this run {total}; "
                            "delete it to start over")
    det.load_trainable(sections.get("model", {}), f"checkpoint {path}")
    load_optimizer_tensors(optimizer, sections.get("optim", {}), named)
    return _Progress(
        step=meta["step"], loss_sum=meta["loss_sum"], loss_n=meta["loss_n"],
        best_key=tuple(meta["best_key"]) if meta["best_key"] else None, best=meta["best"],
        best_state=sections.get("best", {}), history=meta["history"], heldout_failures=meta["heldout_failures"],
        failures={int(k): v for k, v in meta["failures"].items()})


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


def _shown(value: float | None, digits: int = 3) -> str:
    """A held-out number for the log; ``n/a`` when there is none (no usable held-out image, one class)."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"
