"""One resumable, seeded training loop for end-to-end image classifiers (CNNSpot, NPR, AIDE).

A detector describes its recipe in a :class:`TrainSetup` (network, optimizer, :class:`~detbench.kit.schedules.Schedule`,
a seeded per-image training transform, the held-out preprocessing, the loss) and calls :func:`train_classifier`
with the training rows and the held-out rows of the training generator. The loop runs epochs over the training
rows in batches (the last one smaller, as a plain DataLoader gives, or dropped with ``drop_last``), evaluates the
held-out rows after every epoch, lets the schedule decide the learning rate, whether this epoch's state is the one
to keep and whether to stop, and returns the facts a run records. Held-out rows are scored by
:func:`detbench.kit.scoring.score_logits`.

Determinism (seeds from :mod:`detbench.kit.seeded_data`): epoch ``e`` visits the rows in a permutation drawn from
``(seed, e)``; the image at position ``j`` of epoch ``e`` is augmented with a generator seeded from ``(seed, e, j)``
(torch's global generator is seeded from the same number, for transforms that draw from torch); torch's global RNG
is reseeded from ``(seed, step)`` before every step. Nothing random is carried from step to step except the model
and the optimizer, so a run resumed from a checkpoint continues exactly as an uninterrupted one (bit-identical on
CPU up to the last-bit differences oneDNN kernels can show between processes), whatever the number of decoding
workers.

Checkpoints: every ``checkpoint_every`` steps (and at every epoch end with ``checkpoint_each_epoch``), written
atomically to ``ctx.checkpoint_dir()`` (:mod:`detbench.kit.train_state`: the model's state dict, the kept-so-far
state, the optimizer's tensors; JSON metadata: position, schedule state, history, failures). A killed run resumes
from the last one; the file is deleted when training ends. What "the model's state" is, is the model's
``state_dict()``: a network with a large frozen part (AIDE's semantic trunk) hands the loop a module that
registers only the parts training changes, and overrides ``train()`` to set the frozen part's mode.

Under torchrun each rank takes a contiguous slice of every batch and DistributedDataParallel averages the
gradients, each rank's loss weighted by its share of the batch (BatchNorm becomes SyncBatchNorm on CUDA, so a
step equals the one-process step up to rounding; on CPU each rank normalises its own slice). A step in which
some rank has no image (a tiny last batch, unreadable files) is skipped on every rank and counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from detbench import distributed as dist
from detbench.data.images import reason_counts
from detbench.data.loading import iterate_batches, tune_cpu_allocator
from detbench.errors import DataError, TrainingError
from detbench.kit.detector import RunContext
from detbench.kit.schedules import Schedule
from detbench.kit.scoring import score_logits
from detbench.kit.seeded_data import ScheduledRows, TrainTransform, derive_seed
from detbench.kit.train_state import (
    gathered_failures,
    load_optimizer_tensors,
    optimizer_tensors,
    read_checkpoint,
    write_checkpoint,
)
from detbench.metrics import binary_metrics
from detbench.models.precision import autocast
from detbench.probabilities import finite_rows

CHECKPOINT = "train_checkpoint.safetensors"
META_KEY = "detbench_training"  # the checkpoint's metadata entry
_ORDER, _AUGMENT, _STEP = range(3)  # stream tags of the seeds derived from (run seed, tag, ...)


class TrainableParts(nn.Module):
    """The parts of a network that training changes, registered without its frozen rest: their state dict is what
    training checkpoints and a fit hold. The whole network is kept outside the module tree (its frozen weights are
    recorded elsewhere, never copied into a checkpoint); the forward and ``train()`` are the whole network's.

    Subclasses call ``super().__init__(net)`` and then assign the trained submodules as attributes.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "net", net)  # not registered: its state is not this module's

    def forward(self, x: Tensor) -> Tensor:
        """The whole network's output."""
        return self.net(x)

    def train(self, mode: bool = True) -> TrainableParts:
        """Set the mode of the whole network (its own ``train`` decides what a frozen part does).

        Args:
            mode: training or evaluation.

        Returns:
            This module.
        """
        super().train(mode)
        self.net.train(mode)
        return self


def bce_with_logits(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean BCE-with-logits of one-logit outputs against float labels (1 = fake), the loss of CNNSpot and NPR
    (``BCEWithLogitsLoss()(output.squeeze(1), label)``).

    Args:
        logits: ``[B, 1]`` or ``[B]`` logits.
        labels: ``[B]`` float labels.

    Returns:
        The scalar loss.
    """
    return nn.functional.binary_cross_entropy_with_logits(logits.reshape(labels.shape), labels)


def cross_entropy(logits: Tensor, labels: Tensor, smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy of K-logit outputs against class labels, with label smoothing.

    timm's ``LabelSmoothingCrossEntropy(smoothing)`` (AIDE's loss) equals torch's ``label_smoothing`` (``(1 - s)``
    times the NLL plus ``s`` times the mean over classes of ``-log p``).

    Args:
        logits: ``[B, K]`` logits.
        labels: ``[B]`` class labels (float or integer, 1 = fake).
        smoothing: the label smoothing ``s``.

    Returns:
        The scalar loss.
    """
    return nn.functional.cross_entropy(logits, labels.long(), label_smoothing=smoothing)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which an epoch visits the training rows.

    Args:
        n: the number of training rows.
        seed: the run seed.
        epoch: the epoch (0-based).

    Returns:
        A permutation of ``0 .. n-1`` drawn from ``(seed, epoch)`` alone.
    """
    return np.random.default_rng([seed, _ORDER, epoch]).permutation(n)


# ---------------------------------------------------------------------------------------------- setup


@dataclass
class TrainSetup:
    """A detector's training recipe, handed to :func:`train_classifier`.

    ``model`` maps a normalised image batch to logits; its ``state_dict()`` is what checkpoints and the kept
    state hold, and the loop calls its ``train()``/``eval()`` (a model with frozen parts overrides ``train()``
    to keep their mode). ``loss(logits, labels)`` is the mean loss of a batch (labels: float tensor, 1 = fake);
    ``probabilities(logits)`` turns held-out logits into P(fake). ``train_transform(img, rng)`` augments one
    PIL image with its own generator; ``heldout_transform(img)`` is deterministic, after the optional
    ``heldout_perturb(img, image_id)`` (seeded by image id, e.g. CNNDetection's validation blur/JPEG).
    ``keep``: ``best`` restores the state of the last epoch the schedule kept, ``last`` the final state.
    ``drop_last``: every epoch drops its last incomplete batch (``DataLoader(drop_last=True)``).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    train_transform: TrainTransform
    heldout_transform: Callable[[Any], Tensor]
    loss: Callable[[Tensor, Tensor], Tensor]
    probabilities: Callable[[np.ndarray], np.ndarray]
    epochs: int
    batch_size: int
    keep: Literal["best", "last"] = "best"
    drop_last: bool = False
    checkpoint_every: int = 500  # steps; 0: none between epoch ends
    checkpoint_each_epoch: bool = False  # also write a checkpoint at every epoch end (after the held-out scoring)
    heldout_perturb: Callable[[Any, str], Any] | None = None
    heldout_by_shape: bool = False
    heldout_batch_size: int = 64
    precision: str = "fp32"
    name: str = "classifier"  # progress and log label
    scaler: Any = None  # set by train_classifier: fp16 loss scaling

    def steps_per_epoch(self, n_rows: int) -> int:
        """Optimizer steps in an epoch.

        Args:
            n_rows: the number of training rows.

        Returns:
            Batches per epoch (the last one smaller, or dropped with ``drop_last``).

        Raises:
            DataError: ``drop_last`` and fewer rows than one batch.
        """
        if not self.drop_last:
            return math.ceil(n_rows / self.batch_size)
        if n_rows < self.batch_size:
            raise DataError(f"{self.name}: {n_rows} training images do not fill one batch of {self.batch_size} "
                            "(the recipe drops incomplete batches); use a smaller training batch size")
        return n_rows // self.batch_size


@dataclass
class _Progress:
    """Training progress that a checkpoint carries (the model and optimizer travel as tensors)."""

    epoch: int = 0  # the epoch in progress (0-based)
    batch: int = 0  # the next batch of that epoch
    step: int = 0  # optimizer steps taken (skipped steps included)
    stopped: str = ""  # why training ended early, once it has
    loss_sum: float = 0.0
    loss_n: int = 0
    kept_epoch: int | None = None
    kept_state: dict[str, Tensor] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)
    skipped_steps: int = 0
    scaler: dict[str, Any] = field(default_factory=dict)  # GradScaler state (fp16 only)


# ---------------------------------------------------------------------------------------------- the loop


def train_classifier(setup: TrainSetup, train: pd.DataFrame, heldout: pd.DataFrame,
                     ctx: RunContext) -> dict[str, Any]:
    """Train ``setup.model`` on ``train`` with the recipe, selecting on ``heldout``; resumable after a kill.

    Args:
        setup: the recipe (see :class:`TrainSetup`); its model and optimizer are updated in place.
        train: training rows (``path``, ``label``; any order: they are sorted by path first).
        heldout: held-out rows of the training generator, scored after every epoch (may be empty: nothing is
            held out, as NPR's original; the schedule then sees NaN metrics and the history has no held-out
            columns).
        ctx: the run context (seed, device, workers, phases, checkpoint directory).

    Returns:
        Facts for the run record: epochs and steps run, why training stopped, the kept epoch, the per-epoch
        history (learning rate, train loss, held-out acc/AP/loss), images used and skipped, speed.
    """
    rows = train.sort_values("path", kind="stable").reset_index(drop=True)
    if rows.empty or rows["label"].nunique() < 2:
        raise DataError(f"{setup.name}: training needs real and fake images; got {len(rows)} rows with labels "
                        f"{sorted(int(v) for v in rows['label'].unique())}")
    n, device = len(rows), ctx.device
    steps_per_epoch = setup.steps_per_epoch(n)
    model = setup.model.to(device)
    if device == "cpu":
        tune_cpu_allocator()
    path = ctx.checkpoint_dir() / CHECKPOINT
    run = _Progress()
    if path.exists():
        run = _resume(path, setup, n)
        ctx.phases.log(f"{setup.name}: resuming from the checkpoint at step {run.step} (epoch {run.epoch + 1}, "
                       f"batch {run.batch}) in {path}")
    start_step, started = run.step, time.perf_counter()
    forward = _training_forward(model, device)
    setup_scaler(setup, device, run)
    labels = torch.tensor(rows["label"].to_numpy(dtype=np.float32))
    total = setup.epochs * steps_per_epoch if setup.epochs <= 1000 else None
    with ctx.phases.phase(f"train {setup.name}", total) as advance:
        advance(run.step)
        while run.epoch < setup.epochs and not run.stopped:
            for x, y in _epoch_batches(setup, rows, labels, run, steps_per_epoch, ctx):
                _step(setup, forward, x, y, run, steps_per_epoch, ctx)
                run.batch += 1
                epoch_ended = run.batch == steps_per_epoch
                if epoch_ended:
                    _end_epoch(setup, heldout, run, ctx)
                due = (setup.checkpoint_every and run.step % setup.checkpoint_every == 0) or (
                    epoch_ended and setup.checkpoint_each_epoch)
                if due and run.epoch < setup.epochs and not run.stopped:  # a finished run needs none
                    _save(path, setup, run, n)
                advance(1)
    seconds = time.perf_counter() - started
    if setup.keep == "best" and run.kept_state:
        model.load_state_dict(run.kept_state)
    if dist.is_main():
        path.unlink(missing_ok=True)
    failures = gathered_failures(run.failures)
    speed = (run.step - start_step) * setup.batch_size / seconds if seconds > 0 and run.step > start_step else None
    return {
        "epochs_run": len(run.history),
        "steps": run.step,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": setup.batch_size,
        "stopped": run.stopped or "max_epochs",
        "kept": setup.keep,
        "kept_epoch": (run.kept_epoch + 1 if run.kept_epoch is not None else None) if setup.keep == "best"
        else len(run.history),
        "schedule": setup.schedule.describe(),
        "history": run.history,
        "resumed_from_step": start_step or None,
        "n_train": {"real": int((rows["label"] == 0).sum()), "fake": int((rows["label"] == 1).sum())},
        "n_heldout": int(len(heldout)),
        "train_failures": len(failures),
        "train_failure_reasons": reason_counts(failures.values()),
        "skipped_steps": run.skipped_steps,
        "train_images_per_s": round(speed, 2) if speed else None,
    }


def setup_scaler(setup: TrainSetup, device: str, run: _Progress) -> None:
    """Give ``setup`` its loss scaler: fp16 training scales the loss (``torch.amp.GradScaler``); other precisions
    pass through it unchanged.

    Args:
        setup: the recipe (its ``scaler`` is set).
        device: the torch device string training runs on.
        run: the training progress (a resumed run restores the scaler's state from it).
    """
    setup.scaler = torch.amp.GradScaler(torch.device(device).type, enabled=setup.precision == "fp16")
    if run.scaler:
        setup.scaler.load_state_dict(run.scaler)


def _training_forward(model: nn.Module, device: str) -> nn.Module:
    """The module the steps call: ``model``, or under torchrun its DDP wrapper (SyncBatchNorm on CUDA)."""
    if not dist.sharded():
        return model
    if device.startswith("cuda"):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return dist.data_parallel(model, device)


def _epoch_batches(setup: TrainSetup, rows: pd.DataFrame, labels: Tensor, run: _Progress, steps_per_epoch: int,
                   ctx: RunContext) -> Iterator[tuple[Tensor | None, Tensor | None]]:
    """This rank's slice ``(x, y)`` of every remaining batch of epoch ``run.epoch`` (None when none loaded)."""
    bs, n = setup.batch_size, len(rows)
    order = epoch_order(n, ctx.seed, run.epoch)
    positions, batches, seeds = [], [], []
    for b in range(run.batch, steps_per_epoch):
        batch = range(b * bs, min(n, (b + 1) * bs))
        mine = list(batch)[dist.shard_slice(len(batch))]
        batches.append(list(range(len(positions), len(positions) + len(mine))))
        positions.extend(mine)
        seeds.extend(derive_seed(ctx.seed, _AUGMENT, run.epoch, j) for j in mine)
    order_here = order[np.asarray(positions, dtype=np.int64)]
    dataset = ScheduledRows(ctx.suite_root, rows["path"].tolist(), setup.train_transform, order_here, seeds)
    cuda = ctx.device.startswith("cuda")
    for batch in iterate_batches(dataset, batch_size=max(1, bs // max(1, dist.world_size())), workers=ctx.workers,
                                 pin_memory=cuda, batches=batches):
        for pos, reason in batch.failures:
            run.failures[int(order_here[pos])] = reason
        if batch.x is None:
            yield None, None
            continue
        row_idx = torch.as_tensor(order_here[batch.indices])
        yield batch.x.to(ctx.device, non_blocking=cuda), labels[row_idx].to(ctx.device)


def _step(setup: TrainSetup, forward: nn.Module, x: Tensor | None, y: Tensor | None, run: _Progress,
          steps_per_epoch: int, ctx: RunContext) -> None:
    """One optimizer step on a batch (every rank joins; skipped on all ranks when one has no image)."""
    step = run.step
    run.step += 1
    n_local = 0 if x is None else len(x)
    if dist.sharded():
        counts = dist.all_gather(n_local)
        n, empty = sum(counts), min(counts) == 0
    else:
        n, empty = n_local, n_local == 0
    if empty:
        run.skipped_steps += 1
        return
    assert x is not None and y is not None
    lr = setup.schedule.lr(step, run.epoch, steps_per_epoch)
    for group in setup.optimizer.param_groups:
        group["lr"] = lr
    torch.manual_seed(derive_seed(ctx.seed, _STEP, step))
    setup.model.train()
    with autocast(setup.precision, ctx.device):
        logits = forward(x)
    loss = setup.loss(logits.float(), y)
    scaler = setup.scaler
    scaler.scale(loss * (n_local * dist.world_size() / n) if dist.sharded() else loss).backward()
    scaler.step(setup.optimizer)
    scaler.update()
    setup.optimizer.zero_grad(set_to_none=True)
    value = float(loss.detach())
    if dist.sharded():
        value = dist.all_reduce_sum(value * n_local) / n
    if not math.isfinite(value):
        raise TrainingError(f"{setup.name}: the training loss became {value} at step {step + 1} (epoch "
                            f"{run.epoch + 1}, learning rate {lr:g}): training diverged; lower the learning rate")
    run.loss_sum += value * n
    run.loss_n += n


def _end_epoch(setup: TrainSetup, heldout: pd.DataFrame, run: _Progress, ctx: RunContext) -> None:
    """Score the held-out rows, let the schedule decide, keep the state if it says so, move to the next epoch."""
    setup.model.eval()
    metrics = _heldout_metrics(setup, heldout, ctx)
    lr = setup.optimizer.param_groups[0]["lr"]
    outcome = setup.schedule.end_epoch(run.epoch, metrics)
    held = {f"heldout_{k}": v for k, v in metrics.items()} if len(heldout) else {}  # none held out: no NaN columns
    entry = {"epoch": run.epoch + 1, "step": run.step, "lr": lr,
             "train_loss": run.loss_sum / run.loss_n if run.loss_n else None, **held, "kept": outcome.keep}
    if outcome.note:
        entry["note"] = outcome.note
    run.history.append(entry)
    run.loss_sum, run.loss_n = 0.0, 0
    if outcome.keep and setup.keep == "best":
        run.kept_epoch = run.epoch
        run.kept_state = {k: v.detach().to("cpu", copy=True) for k, v in setup.model.state_dict().items()}
    if outcome.stop:
        run.stopped = outcome.note or "the schedule stopped"
    run.epoch, run.batch = run.epoch + 1, 0
    acc, ap = metrics.get("acc"), metrics.get("ap")
    scored = (f"held-out acc {acc if acc is not None else float('nan'):.3f}, "
              f"AP {ap if ap is not None else float('nan'):.3f}") if len(heldout) else "nothing held out"
    ctx.phases.log(f"{setup.name} epoch {run.epoch}: lr {lr:g}, train loss {entry['train_loss'] or float('nan'):.4f}, "
                   f"{scored}{'  ' + outcome.note if outcome.note else ''}")


def _heldout_metrics(setup: TrainSetup, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, float]:
    """acc, AP and loss of the held-out rows (sharded across ranks, gathered on all); NaN when none scored."""
    nan = {"acc": float("nan"), "ap": float("nan"), "loss": float("nan")}
    if heldout.empty:
        return nan
    part = heldout.iloc[dist.shard_slice(len(heldout), align=setup.heldout_batch_size)]
    with dist.local():
        logits, _ = score_logits(setup.model, part, ctx, setup.heldout_transform, device=ctx.device,
                                 precision=setup.precision, batch_size=setup.heldout_batch_size,
                                 perturb=setup.heldout_perturb, by_shape=setup.heldout_by_shape)
    logits = np.concatenate(dist.all_gather(logits))
    ok = finite_rows(logits)
    if not ok.any():
        return nan
    y = heldout["label"].to_numpy()[ok]
    probs = setup.probabilities(logits[ok])
    with torch.no_grad():
        loss = float(setup.loss(torch.as_tensor(logits[ok]).float(), torch.as_tensor(y).float()))
    metrics = binary_metrics(y, probs)
    return {"acc": metrics["acc"], "ap": metrics["ap"], "loss": loss}


# ---------------------------------------------------------------------------------------------- checkpoints


def _save(path: Path, setup: TrainSetup, run: _Progress, n_rows: int) -> None:
    run.failures = gathered_failures(run.failures)
    if not dist.is_main():
        return
    optimizer = setup.optimizer
    meta = {"epoch": run.epoch, "batch": run.batch, "step": run.step, "stopped": run.stopped,
            "loss_sum": run.loss_sum, "loss_n": run.loss_n, "kept_epoch": run.kept_epoch, "history": run.history,
            "failures": {str(k): v for k, v in run.failures.items()}, "skipped_steps": run.skipped_steps,
            "schedule": setup.schedule.state_dict(), "n_rows": n_rows, "batch_size": setup.batch_size,
            "param_groups": [{"lr": g["lr"]} for g in optimizer.param_groups],
            "scaler": setup.scaler.state_dict() if setup.scaler is not None and setup.scaler.is_enabled() else {}}
    sections = {"model": setup.model.state_dict(), "kept": run.kept_state,
                "optim": optimizer_tensors(optimizer, _optimizer_names(optimizer))}
    write_checkpoint(path, sections, meta, meta_key=META_KEY)


def _resume(path: Path, setup: TrainSetup, n_rows: int) -> _Progress:
    meta, sections = read_checkpoint(path, meta_key=META_KEY)
    if (meta["n_rows"], meta["batch_size"]) != (n_rows, setup.batch_size):
        raise TrainingError(f"checkpoint {path} was written for {meta['n_rows']} training rows in batches of "
                           f"{meta['batch_size']}, this run has {n_rows} in batches of {setup.batch_size}; "
                           "delete it to start over")
    setup.model.load_state_dict(sections.get("model", {}))
    optimizer = setup.optimizer
    load_optimizer_tensors(optimizer, sections.get("optim", {}), _optimizer_names(optimizer))
    for group, saved in zip(optimizer.param_groups, meta["param_groups"], strict=True):
        group["lr"] = saved["lr"]
    setup.schedule.load_state_dict(meta["schedule"])
    return _Progress(epoch=meta["epoch"], batch=meta["batch"], step=meta["step"], stopped=meta["stopped"],
                     loss_sum=meta["loss_sum"], loss_n=meta["loss_n"], kept_epoch=meta["kept_epoch"],
                     kept_state=sections.get("kept", {}), history=meta["history"], skipped_steps=meta["skipped_steps"],
                     failures={int(k): v for k, v in meta["failures"].items()}, scaler=meta["scaler"])


def _optimizer_names(optimizer: torch.optim.Optimizer) -> list[str]:
    """The checkpoint's names of the optimizer's parameters: their positions."""
    return [str(i) for i in range(sum(len(g["params"]) for g in optimizer.param_groups))]
