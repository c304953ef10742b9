"""AIDE's training recipe (``scripts/train.sh``, ``main_finetune.py``, ``data/datasets.py``): a seeded, resumable loop.

Recipe: AdamW (weight decay 0, eps 1e-8), learning rate ``blr * batch / 256`` following a per-step half cosine down
to ``min_lr`` (no warm-up), cross-entropy with label smoothing 0.1 on the two logits, training batches without
the last incomplete one (``drop_last``), and after every epoch the accuracy on held-out images; the epoch with
the best accuracy so far (strictly) is kept, as ``checkpoint-best.pth`` is. Each training image is augmented
before the patch choice with kornia, as the original: ``RandomGaussianBlur`` (3x3 kernel, sigma in [0.1, 3],
p=0.1) then ``RandomJPEG`` (quality in [30, 100], p=0.1), on the [0, 1] tensor. What trains: the two ResNets and
the MLP head (``convnext_proj`` too with ``train_proj``); the SRM bank and the semantic trunk stay frozen. The
original's ``model.train()`` also switches the frozen trunk to training mode, so its stochastic depth (0.1 in
open_clip's ConvNeXt-XXL config) is active while training (``semantic_train_mode``); BatchNorm layers of a
stand-in trunk keep their statistics.

Departures: the held-out images are a part of the training generator (the original validates on its
``--eval_data_path``), and this loop does not split batches across processes (the original: 8 GPUs with
DistributedDataParallel, whose gradient average equals one large batch); under torchrun every rank trains the
same seeded model and rank 0 alone writes checkpoints.

Determinism and resume: epoch ``e`` visits the rows in a permutation drawn from ``(seed, e)``; the image at
position ``j`` of epoch ``e`` is augmented with torch's RNG seeded from ``(seed, e, j)``; torch's RNG is reseeded
from ``(seed, step)`` before every step. A checkpoint (safetensors: the trainable state, the kept state, AdamW's
tensors; JSON metadata: position, kept epoch, history) is written atomically every ``checkpoint_every`` steps and
at every epoch end, so a killed run resumes where it stopped and ends as an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from detbench import distributed as dist
from detbench.data import ImageRowsDataset, iterate_batches
from detbench.detector import RunContext
from detbench.precision import autocast
from detbench.records import atomic_path

CHECKPOINT = "aide_train.safetensors"
_ORDER, _AUGMENT, _STEP = range(3)  # seed streams


def derive_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed that depends only on ``(seed, *keys)``."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


class TrainAugment:
    """PIL image -> the AIDE stack of an augmented image: ToTensor, kornia blur then JPEG (each with its own
    probability), then ``stack`` (the patch choice and resizing of evaluation). Draws from torch's global RNG."""

    def __init__(self, stack: Any, blur_prob: float, jpeg_prob: float) -> None:
        import kornia.augmentation as K

        self.stack = stack
        self.perturb = K.container.ImageSequential(
            K.RandomGaussianBlur(kernel_size=(3, 3), sigma=(0.1, 3.0), p=blur_prob),
            K.RandomJPEG(jpeg_quality=(30, 100), p=jpeg_prob))

    def __call__(self, img: Any) -> Tensor:
        x = self.stack.to_tensor(img)
        with torch.no_grad():
            x = self.perturb(x.unsqueeze(0))[0]
        return self.stack.from_tensor(x)


class TrainableAIDE(nn.Module):
    """The parts of an :class:`~detbench.detectors.aide.AIDENet` that training changes, under the original's
    key names (``hpf``, ``model_min``, ``model_max``, ``fc``, ``convnext_proj``): their state dict is what a fit
    saves. The frozen semantic trunk is held outside the module tree (never copied into a checkpoint; its
    weights are recorded by the backbone's identity), and ``train()`` sets its mode as the original does."""

    def __init__(self, net: nn.Module, semantic_train_mode: bool) -> None:
        super().__init__()
        self.hpf, self.model_min, self.model_max = net.hpf, net.model_min, net.model_max
        self.fc, self.convnext_proj = net.fc, net.convnext_proj
        object.__setattr__(self, "net", net)
        self.semantic_train_mode = semantic_train_mode

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def train(self, mode: bool = True) -> TrainableAIDE:
        super().train(mode)
        trunk = self.net.openclip_convnext_xxl
        trunk.train(mode and self.semantic_train_mode)
        for module in trunk.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()  # a stand-in's statistics stay as loaded: the trunk is frozen
        return self


class _SeededRows(ImageRowsDataset):
    """Item ``i`` loads row ``order[i]`` with torch's RNG seeded by ``seeds[i]`` (the augmentation's draws)."""

    def __init__(self, root: Path, paths: list[str], transform: Any, order: np.ndarray, seeds: list[int]) -> None:
        super().__init__(root, paths, transform)
        self.order, self.seeds = order, seeds

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> tuple[Tensor | None, int, str | None]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seeds[i])
            x, _, err = super().__getitem__(int(self.order[i]))
        return x, i, err


def cosine_lr(step: int, steps_per_epoch: int, epochs: int, lr: float, min_lr: float) -> float:
    """``utils.adjust_learning_rate`` without warm-up: the epoch is fractional (``step / steps_per_epoch``).

    Args:
        step: the 0-based optimizer step; steps_per_epoch, epochs: the schedule's length.
        lr, min_lr: the rate at step 0 and at the end.

    Returns:
        The learning rate of ``step``.
    """
    t = step / steps_per_epoch
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t / epochs))


def train_aide(model: TrainableAIDE, cfg: Any, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext, *,
               augment: TrainAugment, heldout_scores: Any, precision: str = "fp32") -> dict[str, Any]:
    """Train ``model`` in place with the recipe; ``heldout_scores(rows, ctx)`` gives P(fake) of held-out rows.

    Args:
        model: the trainable view of the network (moved to ``ctx.device`` by the caller).
        cfg: the AIDE config (epochs, train_batch_size, blr, min_lr, weight_decay, smoothing, checkpoint_every).
        train: training rows; heldout: held-out rows of the training generator (may be empty).
        ctx: the run context (seed, device, workers, phases, checkpoint directory).
        augment: the per-image training transform.
        heldout_scores: scores held-out rows with the current weights (evaluation mode).
        precision: the resolved precision of the forward pass (the original trains in fp32).

    Returns:
        Facts for the run record: epochs, steps, learning rate, kept epoch, history, images used and skipped.
    """
    rows = train.sort_values("path", kind="stable").reset_index(drop=True)
    if rows.empty or rows["label"].nunique() < 2:
        raise ValueError(f"aide: training needs real and fake images; got {len(rows)} rows")
    n, bs = len(rows), min(cfg.train_batch_size, len(rows))
    steps_per_epoch = max(1, n // bs)  # drop_last, as the original's training loader
    lr = cfg.blr * bs / 256
    params = [p for p in model.parameters() if p.requires_grad]
    names = [k for k, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay, eps=1e-8, foreach=True)
    labels = torch.tensor(rows["label"].to_numpy(dtype=np.int64))
    path = ctx.checkpoint_dir() / CHECKPOINT
    progress: dict[str, Any] = {"epoch": 0, "batch": 0, "step": 0, "best_acc": None, "kept_epoch": None,
                                "history": [], "failures": {}, "loss_sum": 0.0, "loss_n": 0}
    kept: dict[str, Tensor] = {}
    if path.exists():
        progress, kept = _resume(path, model, optimizer, names, n, bs)
        ctx.phases.log(f"aide: resuming from the checkpoint at step {progress['step']} in {path}")
    device, started, start_step = ctx.device, time.perf_counter(), progress["step"]
    cuda = device.startswith("cuda")
    with ctx.phases.phase("train aide", cfg.epochs * steps_per_epoch) as advance:
        advance(progress["step"])
        while progress["epoch"] < cfg.epochs:
            epoch, first = progress["epoch"], progress["batch"]
            order = np.random.default_rng([ctx.seed, _ORDER, epoch]).permutation(n)[first * bs: steps_per_epoch * bs]
            seeds = [derive_seed(ctx.seed, _AUGMENT, epoch, first * bs + j) for j in range(len(order))]
            dataset = _SeededRows(ctx.suite_root, rows["path"].tolist(), augment, order, seeds)
            for batch in iterate_batches(dataset, batch_size=bs, workers=ctx.workers, pin_memory=cuda):
                for pos, reason in batch.failures:
                    progress["failures"][str(int(order[pos]))] = reason
                step = progress["step"]
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(step, steps_per_epoch, cfg.epochs, lr, cfg.min_lr)
                if batch.x is not None:
                    torch.manual_seed(derive_seed(ctx.seed, _STEP, step))
                    model.train()
                    with autocast(precision, device):
                        logits = model(batch.x.to(device, non_blocking=cuda))
                    y = labels[torch.as_tensor(order[batch.indices])].to(device)
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.smoothing)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    progress["loss_sum"] += float(loss.detach()) * len(y)
                    progress["loss_n"] += len(y)
                progress["step"], progress["batch"] = step + 1, progress["batch"] + 1
                if progress["batch"] == steps_per_epoch:
                    kept = _end_epoch(model, heldout, ctx, progress, kept, heldout_scores, optimizer)
                epoch_done = progress["batch"] == 0
                if dist.is_main() and progress["epoch"] < cfg.epochs and (epoch_done or (
                        cfg.checkpoint_every and progress["step"] % cfg.checkpoint_every == 0)):
                    _save(path, model, optimizer, names, progress, kept, n, bs)
                advance(1)
    if kept:
        model.load_state_dict(kept)
    model.eval()
    if dist.is_main():
        path.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    done = progress["step"] - start_step
    failures = progress["failures"]
    return {"epochs": cfg.epochs, "steps": progress["step"], "steps_per_epoch": steps_per_epoch, "batch_size": bs,
            "lr": lr, "min_lr": cfg.min_lr, "kept_epoch": progress["kept_epoch"], "history": progress["history"],
            "resumed_from_step": start_step or None, "n_heldout": int(len(heldout)),
            "n_train": {"real": int((rows["label"] == 0).sum()), "fake": int((rows["label"] == 1).sum())},
            "train_failures": len(failures),
            "train_failure_reasons": _reason_counts(failures.values()),
            "train_images_per_s": round(done * bs / seconds, 2) if seconds > 0 and done else None}


def _end_epoch(model: TrainableAIDE, heldout: pd.DataFrame, ctx: RunContext, progress: dict[str, Any],
               kept: dict[str, Tensor], heldout_scores: Any, optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """Held-out accuracy of the epoch; keep the state when it beats the best so far (the first epoch always)."""
    model.eval()
    acc = float("nan")
    if not heldout.empty:
        scores, _ = heldout_scores(heldout, dataclasses.replace(ctx, perturbation=None, stage="heldout"))
        ok = np.isfinite(scores)
        if ok.any():
            acc = float(np.mean((scores[ok] > 0.5) == (heldout["label"].to_numpy()[ok] == 1)))
    epoch = progress["epoch"]
    better = progress["best_acc"] is None or (math.isfinite(acc) and acc > progress["best_acc"])
    entry = {"epoch": epoch + 1, "step": progress["step"], "lr": optimizer.param_groups[0]["lr"],
             "train_loss": progress["loss_sum"] / progress["loss_n"] if progress["loss_n"] else None,
             "heldout_acc": acc, "kept": bool(better)}
    progress["history"].append(entry)
    ctx.phases.log(f"aide epoch {epoch + 1}: train loss {entry['train_loss'] or float('nan'):.4f}, "
                   f"held-out acc {acc:.3f}{' (kept)' if better else ''}")
    if better:
        progress["best_acc"] = acc if math.isfinite(acc) else None
        progress["kept_epoch"] = epoch + 1
        kept = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    progress.update(epoch=epoch + 1, batch=0, loss_sum=0.0, loss_n=0)
    return kept


def _save(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, names: list[str], progress: dict[str, Any],
          kept: dict[str, Tensor], n_rows: int, batch_size: int) -> None:
    tensors = {f"model/{k}": v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"kept/{k}": v.contiguous() for k, v in kept.items()})
    for index, state in optimizer.state_dict()["state"].items():
        for slot, value in state.items():
            tensors[f"optim/{names[index]}/{slot}"] = torch.as_tensor(value).detach().to("cpu", copy=True)
    meta = {**progress, "n_rows": n_rows, "batch_size": batch_size}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"aide_training": json.dumps(meta)})


def _resume(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, names: list[str], n_rows: int,
            batch_size: int) -> tuple[dict[str, Any], dict[str, Tensor]]:
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["aide_training"])
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # safe_open is not a dict
    if (meta.pop("n_rows"), meta.pop("batch_size")) != (n_rows, batch_size):
        raise RuntimeError(f"checkpoint {path} was written for other training rows or batch size; delete it to "
                           "start over")

    def section(prefix: str) -> dict[str, Tensor]:
        return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}

    model.load_state_dict(section("model"))
    state = optimizer.state_dict()
    index = {name: i for i, name in enumerate(names)}
    state["state"] = {}
    for key, value in section("optim").items():
        name, _, slot = key.rpartition("/")
        state["state"].setdefault(index[name], {})[slot] = value
    optimizer.load_state_dict(state)
    return meta, section("kept")


def _reason_counts(reasons: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason in reasons:
        kind = str(reason).split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
    return counts
