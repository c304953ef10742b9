"""Batches of model-ready tensors from index rows, decoded in DataLoader workers.

A file that fails to load (changed since indexing, corrupt beyond what the index caught) is reported with
its reason and left out of the batch; it never stops the loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from detbench import images
from detbench.suites import safe_join

Transform = Callable[[Any], torch.Tensor]
Perturb = Callable[[Any, str], Any]


class ImageRowsDataset(Dataset):
    """Loads ``root/paths[i]`` as RGB, applies the optional perturbation, then ``transform``."""

    def __init__(
        self,
        root: Path,
        paths: Sequence[str],
        transform: Transform,
        *,
        image_ids: Sequence[str] | None = None,
        perturb: Perturb | None = None,
    ) -> None:
        self.root = Path(root)
        self.paths = list(paths)
        self.image_ids = list(image_ids) if image_ids is not None else self.paths
        self.transform = transform
        self.perturb = perturb

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int, str | None]:
        try:
            img = images.load_rgb(safe_join(self.root, self.paths[i]))
            if self.perturb is not None:
                img = self.perturb(img, self.image_ids[i])
            return self.transform(img), i, None
        except images.ImageError as exc:
            return None, i, f"{exc.status}: {exc.reason}"
        except ValueError as exc:
            return None, i, f"invalid: {exc}"


@dataclass
class Batch:
    x: torch.Tensor | None  # [B, 3, H, W], None when every item failed
    indices: np.ndarray  # positions in the input rows of the items in x
    failures: list[tuple[int, str]]


def _collate(items: list[tuple[torch.Tensor | None, int, str | None]]) -> Batch:
    good = [(x, i) for x, i, _ in items if x is not None]
    failures = [(i, err) for x, i, err in items if x is None and err is not None]
    x = torch.stack([g[0] for g in good]) if good else None
    return Batch(x, np.array([g[1] for g in good], dtype=np.int64), failures)


def default_workers() -> int:
    """Decode workers: half the cores (the other half runs the model on CPU), at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) // 2))


def iterate_batches(
    dataset: ImageRowsDataset,
    *,
    batch_size: int,
    workers: int | None = None,
    pin_memory: bool = False,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[Batch]:
    """Yield :class:`Batch` objects over ``dataset`` with parallel decoding and prefetching."""
    workers = default_workers() if workers is None else workers
    if len(dataset) < 4 * batch_size:
        workers = 0  # starting worker processes costs more than it saves on tiny inputs
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    yield from loader
