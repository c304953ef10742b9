"""SDAIE's EXIF pretext training (``backbone_train.py``) for :mod:`detbench.detectors.sdaie`, on the camera tags the
index recorded for the real training images (``exif_tags``).

What the code fixes (``docs/sdaie.md``): fourteen heads on the extractor's feature; seven classify a tag of the
first image of a pair (positions 1, 5, 6, 9, 10, 11, 13: Make, Model, Flash, metering mode, exposure mode, white
balance, scene capture type, with 7, 6, 4, 6, 4, 2 and 5 classes; cross-entropy); seven rank the pair by a tag
(the other positions): ``P(x1 >= x2) = Phi(s1 - s2)``, binary cross-entropy against ``x1 >= x2``; each image gives
16 random 64 px crops, not augmented; Adam at 1e-4. What the authors' data fixes and detbench chooses (settings):
the ranked tags (``pretext_ranked``) and the classes of a categorical tag: its most frequent values among the usable
images, one class each, and every other value the last class (the table is recorded with the fit).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from detbench.detectors.sdaie_net import PRETEXT_HEADS, PretextNet, RandomPatches
from detbench.errors import DataError
from detbench.kit.detector import RunContext
from detbench.kit.exif_pretext import most_missing, read_tags, tag_coverage

# (head position, EXIF tag) of the classified tags, as backbone_train.py's labels; their class counts are the heads'
CATEGORICAL = ((1, "Make"), (5, "Model"), (6, "Flash"), (9, "MeteringMode"), (10, "ExposureMode"),
               (11, "WhiteBalance"), (13, "SceneCaptureType"))
RANKED_POSITIONS = (0, 2, 3, 4, 7, 8, 12)
STREAM = 0x5DA1E  # seed stream of the pair draws and crops: derive_seed(run seed, STREAM, ...)


@dataclass(frozen=True)
class ItemSeeds:
    """Item ``i``'s crop seed, ``derive_seed(seed, STREAM, i)``, computed when asked (picklable for workers)."""

    seed: int

    def __getitem__(self, i: int) -> int:
        """The seed of item ``i``."""
        from detbench.kit.seeded_data import derive_seed

        return derive_seed(self.seed, STREAM, i)


def pretext_targets(rows: pd.DataFrame, ranked: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The 14 targets of every row that carries all the tags, and what was left out.

    Args:
        rows: the real training rows.
        ranked: the seven ranked tags, in head order (positions 0, 2, 3, 4, 7, 8, 12).

    Returns:
        ``(targets [n, 14] float64, positions of the usable rows, facts)``; categorical targets are class indices;
        facts: images used, images without any EXIF tag, images missing each tag, the class table.
    """
    tags = read_tags(rows)
    coverage = tag_coverage(tags, [tag for _, tag in CATEGORICAL] + list(ranked))
    usable = coverage.usable
    classes: dict[str, list[str]] = {}
    targets = np.zeros((len(usable), len(PRETEXT_HEADS)))
    for position, tag in CATEGORICAL:
        values = [str(tags[i][tag]) for i in usable]  # type: ignore[index]
        k = PRETEXT_HEADS[position]
        ranked_values = sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0]))
        own = [v for v, _ in ranked_values][: k - 1]
        classes[tag] = own
        targets[:, position] = [own.index(v) if v in own else k - 1 for v in values]
    for position, tag in zip(RANKED_POSITIONS, ranked, strict=True):
        targets[:, position] = [float(tags[i][tag]) for i in usable]  # type: ignore[index]
    facts = {**coverage.facts(), "classes": classes, "ranked": list(ranked)}
    return targets, np.asarray(usable, dtype=np.int64), facts


def pretext_loss(net: PretextNet, first: torch.Tensor, second: torch.Tensor, t1: torch.Tensor,
                 t2: torch.Tensor) -> torch.Tensor:
    """``backbone_train.py``'s loss of a batch of pairs: the categorical heads' cross-entropy on the first images,
    and for the ranked heads the binary cross-entropy of ``Phi(s1 - s2)`` against ``x1 >= x2``, summed over heads.

    Args:
        net: the pretext network.
        first: ``[B, n, 3, 64, 64]`` crops of the first image of each pair.
        second: the same of the second image.
        t1: ``[B, 14]`` the first images' targets.
        t2: the second images'.

    Returns:
        The scalar loss.
    """
    f1, f2 = net.backbone(first), net.backbone(second)
    total = first.new_zeros((), dtype=torch.float32)
    categorical = {p for p, _ in CATEGORICAL}
    with torch.autocast(first.device.type, enabled=False):  # heads and losses in float32 (BCE refuses autocast)
        f1, f2 = f1.float(), f2.float()
        for position in range(len(PRETEXT_HEADS)):
            head: nn.Linear = getattr(net, f"fc{position + 1}")
            if position in categorical:
                total = total + nn.functional.cross_entropy(head(f1), t1[:, position].long())
            else:
                p = 0.5 * (1 + torch.erf((head(f1) - head(f2))[:, 0] / math.sqrt(2.0)))
                total = total + nn.functional.binary_cross_entropy(p, (t1[:, position] >= t2[:, position]).float())
    return total


def train_pretext(net: PretextNet, rows: pd.DataFrame, ctx: RunContext, config: Any, precision: str) -> dict[str, Any]:
    """Train ``net`` on pairs of the real training images that carry every tag the heads need.

    Args:
        net: the pretext network (trained in place).
        rows: the real training rows (index rows with ``exif_tags``).
        ctx: the run context (seed, device, workers).
        config: the detector's settings (``pretext_*``, ``train_patches``).
        precision: the resolved precision of the forward passes.

    Returns:
        Facts for the fit record.

    Raises:
        DataError: fewer than two images carry every tag (one line naming what is missing).
    """
    from detbench.data.loading import iterate_batches
    from detbench.kit.seeded_data import ScheduledRows, derive_seed
    from detbench.models.precision import autocast

    ranked = tuple(t.strip() for t in config.pretext_ranked.split(",") if t.strip())
    targets, usable, facts = pretext_targets(rows, ranked)
    if len(usable) < 2:  # before anything is trained or written
        worst = most_missing(facts["missing_tag"])
        raise DataError(
            f"sdaie pretext training: {len(usable)} of {len(rows)} real training images carry every EXIF tag its "
            f"heads need ({facts['without_exif_tags']} carry none{'; missing: ' + worst if worst else ''}); it needs "
            "at least 2. Train on photographs with camera EXIF, or pass --set extractor=FILE (a pretrained backbone)")
    if len(usable) < len(rows):
        ctx.phases.log(f"sdaie pretext training: {len(usable)} of {len(rows)} real training images carry every "
                       f"EXIF tag it needs; left out: {facts['without_exif_tags']} without any, missing per tag "
                       f"{facts['missing_tag']}")
    b, steps = config.pretext_batch_size, config.pretext_steps
    draws = np.random.default_rng([ctx.seed, STREAM]).integers(len(usable), size=(steps, 2, b))
    order = usable[draws.reshape(-1)]
    seeds = ItemSeeds(ctx.seed)  # drawn when an item loads: millions of items need no list
    augment = RandomPatches(config.train_patches, 0.0, 0.0, 0.0, (100, 100))  # _fixpatch: crops only
    dataset = ScheduledRows(ctx.suite_root, rows["path"].tolist(), augment, order, seeds)
    targets_t = torch.as_tensor(targets, dtype=torch.float32)
    where = {int(r): k for k, r in enumerate(usable)}
    net.to(ctx.device).train()
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=config.pretext_lr)
    losses, skipped = [], 0
    batches = [list(range(s * 2 * b, (s + 1) * 2 * b)) for s in range(steps)]
    for s, batch in enumerate(iterate_batches(dataset, batch_size=2 * b, workers=ctx.workers, batches=batches)):
        loaded = {int(i) - s * 2 * b: k for k, i in enumerate(batch.indices)}
        pairs = [j for j in range(b) if j in loaded and j + b in loaded]
        if batch.x is None or not pairs:
            skipped += 1
            continue
        x = batch.x.to(ctx.device)
        first, second = x[[loaded[j] for j in pairs]], x[[loaded[j + b] for j in pairs]]
        rows_1 = [where[int(order[s * 2 * b + j])] for j in pairs]
        rows_2 = [where[int(order[s * 2 * b + j + b])] for j in pairs]
        torch.manual_seed(derive_seed(ctx.seed, STREAM, s, 1))
        with autocast(precision, ctx.device):
            loss = pretext_loss(net, first, second, targets_t[rows_1].to(ctx.device), targets_t[rows_2].to(ctx.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    net.eval()
    return {**facts, "steps": steps, "skipped_steps": skipped, "batch_pairs": b,
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}
