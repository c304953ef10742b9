"""Seeds derived from the run seed, and training images augmented by the seed of their place in the schedule.

Both training loops (:mod:`detbench.kit.training` and MPFT's, ``detectors/mpft_train.py``) draw nothing from RNG state
carried between steps: every random choice is seeded by :func:`derive_seed` from the run seed and where it
happens (step, epoch, position in a batch), and :class:`ScheduledRows` loads each training image with a generator
seeded that way. So a batch is the same whatever the number of decoding workers, and a run resumed from a checkpoint
continues exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from detbench.data.loading import ImageRowsDataset

TrainTransform = Callable[[Any, np.random.Generator], Tensor]  # (PIL image, per-image generator) -> tensor


def derive_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed that depends only on ``(seed, *keys)``.

    Args:
        seed: the run seed.
        *keys: what the seed is for (a stream tag, then e.g. the step, epoch or position).

    Returns:
        The seed, in ``0 .. 2**32 - 1``.
    """
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


class ScheduledRows(ImageRowsDataset):
    """Item ``i`` loads row ``order[i]`` and augments it with a generator seeded by ``seeds[i]``, so a batch
    depends on its position in the schedule alone, not on worker count or on what ran before.

    Args:
        root: the suite root; paths: every training row's path under it.
        transform: ``(PIL image, generator) -> tensor``; torch's global generator is seeded with the same seed
            while it runs (see :class:`TorchDrawn` for transforms that draw from torch only).
        order: the row of each item; seeds: the seed of each item.
    """

    def __init__(self, root: Path, paths: list[str], transform: TrainTransform, order: np.ndarray,
                 seeds: list[int]) -> None:
        super().__init__(root, paths, _Unused())
        self.train_transform, self.order, self.seeds = transform, order, seeds

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> tuple[Tensor | None, int, str | None]:
        self.transform = _Seeded(self.train_transform, self.seeds[i])
        x, _, err = super().__getitem__(int(self.order[i]))
        return x, i, err


@dataclass(frozen=True)
class TorchDrawn:
    """A :data:`TrainTransform` from a transform that draws from torch's global generator alone (torchvision's
    random crops and flips, kornia's augmentations): :class:`ScheduledRows` seeds that generator per image.
    """

    fn: Callable[[Any], Tensor]

    def __call__(self, img: Any, rng: np.random.Generator) -> Tensor:
        """Apply the transform (``rng`` is unused: the loop seeds torch's generator per image)."""
        return self.fn(img)


class _Unused:
    def __call__(self, img: Any) -> Tensor:
        raise AssertionError("replaced per item")


@dataclass
class _Seeded:
    fn: TrainTransform
    seed: int

    def __call__(self, img: Any) -> Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(self.seed)  # the CPU generator only: fork_rng restores only it
            return self.fn(img, np.random.default_rng(self.seed))
