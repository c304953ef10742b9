"""Batches of model-ready tensors from index rows, decoded in DataLoader workers.

A file that fails to load (changed since indexing, corrupt beyond what the index caught) is reported with
its reason and left out of the batch; it never stops the loop.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from detbench.data import images
from detbench.data.shards import Locator, ShardReader, parse_locator
from detbench.data.suites import safe_join
from detbench.data.tiles import crop_tile, split_tile_id

CHANGED = "changed: its size, mtime or bytes differ from the index; run again to re-index it"

Transform = Callable[[Any], torch.Tensor]
Perturb = Callable[[Any, str], Any]


class ImageRowsDataset(Dataset):
    """Loads ``root/paths[i]`` as RGB, applies the optional perturbation, then ``transform``.

    A path may be a Parquet-shard locator (``detbench.data.shards``): the image's bytes are read from the shard.
    ``stats`` (the index's ``(bytes, mtime_ns)`` per path) guards the content id: a file whose size or
    mtime differs from its index row (for a shard image: the shard's mtime or the image's byte count) fails
    as ``changed`` instead of being used (and cached) under the id of other bytes. A shard image's bytes are in
    memory anyway: given ``image_ids`` (content ids, as every index gives shard images), they are hashed and
    compared too, so a shard rewritten under the same size and mtime cannot pass other images off as indexed.

    An id naming a tile (``<image_id>#tile=...``, :mod:`detbench.data.tiles`) loads its image, applies the perturbation
    to the whole image (seeded by the image's id), then crops the tile. The last image decoded for a tile is kept, so
    the tiles of one image, which follow each other, decode it once per batch.
    """

    def __init__(
        self,
        root: Path,
        paths: Sequence[str],
        transform: Transform,
        *,
        image_ids: Sequence[str] | None = None,
        perturb: Perturb | None = None,
        stats: Sequence[tuple[Any, Any]] | None = None,
    ) -> None:
        self.root = Path(root)
        self.paths = list(paths)
        self.image_ids = list(image_ids) if image_ids is not None else self.paths
        self.check_ids = image_ids is not None
        self.transform = transform
        self.perturb = perturb
        self.stats = [(_int_or_none(b), _int_or_none(m)) for b, m in stats] if stats is not None else None
        self.shards = ShardReader(self.root)
        self._last: tuple[tuple[str, str], Any] | None = None  # (path, image id) -> the image, for its next tile

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int, str | None]:
        try:
            image_id, tile = split_tile_id(self.image_ids[i])
            img = self._image(i, image_id) if tile is None else self._tile_image(i, image_id)
            if img is None:
                return None, i, CHANGED
            if tile is not None:
                img = crop_tile(img, tile)
            return self.transform(img), i, None
        except images.ImageError as exc:
            return None, i, f"{exc.status}: {exc.reason}"
        except OSError as exc:  # a shard that cannot be read (a file that cannot is an ImageError)
            return None, i, images.scrub(f"unreadable: {type(exc).__name__}: {exc}")
        except ValueError as exc:
            return None, i, images.scrub(f"invalid: {exc}")

    def _image(self, i: int, image_id: str) -> Any:
        """The decoded, perturbed image of row ``i`` (None: it changed since indexing)."""
        locator = parse_locator(self.paths[i])
        img = self._load_locator(locator, i, image_id) if locator is not None else self._load_file(i)
        if img is not None and self.perturb is not None:
            img = self._perturbed(img, image_id)
        return img

    def _tile_image(self, i: int, image_id: str) -> Any:
        """:meth:`_image` for a tile row, reusing the image of the previous row when it is the same one."""
        key = (self.paths[i], image_id)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        self._last = None
        img = self._image(i, image_id)
        if img is not None:
            self._last = (key, img)
        return img

    def _load_file(self, i: int) -> Any:
        path = safe_join(self.root, self.paths[i])
        if self.stats is not None and _changed(path, *self.stats[i]):
            return None
        return images.load_rgb(path)

    def _load_locator(self, locator: Locator, i: int, image_id: str) -> Any:
        if self.stats is not None and _changed(safe_join(self.root, locator.shard), None, self.stats[i][1]):
            return None
        data = self.shards.read(locator)
        if self.stats is not None and self.stats[i][0] is not None and len(data or b"") != self.stats[i][0]:
            return None
        if self.check_ids and data is not None and images.bytes_digest(data) != image_id:
            return None
        return images.load_rgb_bytes(data)

    def _perturbed(self, img: Any, image_id: str) -> Any:
        """The perturbed image; a perturbation that cannot apply to this image (an encoder's size limit...) skips
        the image with the reason instead of stopping the run.
        """
        try:
            return self.perturb(img, image_id)
        except images.ImageError:
            raise
        except Exception as exc:
            raise images.ImageError("perturbation_failed", images.scrub(f"{type(exc).__name__}: {exc}")) from exc


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):  # None, NaN, pd.NA
        return None


def _changed(path: Path, size: int | None, mtime_ns: int | None) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False  # the loader reports why it cannot be read
    return (size is not None and st.st_size != size) or (mtime_ns is not None and st.st_mtime_ns != mtime_ns)


@dataclass
class Batch:
    """A decoded batch: the image tensor, which input rows it holds, and the rows that failed with why."""

    x: torch.Tensor | None  # [B, 3, H, W], None when every item failed
    indices: np.ndarray  # positions in the input rows of the items in x
    failures: list[tuple[int, str]]


def _collate(items: list[tuple[torch.Tensor | None, int, str | None]]) -> Batch:
    good = [(x, i) for x, i, _ in items if x is not None]
    failures = [(i, err) for x, i, err in items if x is None and err is not None]
    x = torch.stack([g[0] for g in good]) if good else None
    return Batch(x, np.array([g[1] for g in good], dtype=np.int64), failures)


Item = tuple[torch.Tensor | None, int, str | None]


def _collate_items(items: list[Item]) -> list[Item]:
    return items


def _by_shape(items: list[Item]) -> Iterator[Batch]:
    """One :class:`Batch` per tensor shape among ``items`` (in first-seen order); the failures ride on the first."""
    groups: dict[tuple[int, ...], list[Item]] = {}
    failed = []
    for item in items:
        if item[0] is None:
            failed.append(item)
        else:
            groups.setdefault(tuple(item[0].shape), []).append(item)
    batches = [_collate(group) for group in groups.values()] or [_collate([])]
    batches[0].failures.extend(_collate(failed).failures)
    yield from batches


def default_workers(gpu: bool = False) -> int:
    """The number of decode worker processes to use by default.

    Feeding a GPU: half the cores, at most 8. Running the model on the CPU: none up to 4 cores, else a quarter
    of them (at most 8), because worker processes preempt the model's OpenMP threads, which then wait for each
    other (EfficientNet-Lite0 on 2 cores, 128 or 512 px PNGs: about 470 images/s decoded in the main process,
    350-400 with one worker).

    Args:
        gpu: whether the batches feed a GPU.

    Returns:
        The worker count (0: decode in the main process).
    """
    cores = os.cpu_count() or 1
    return min(8, cores // 2) if gpu else (0 if cores <= 4 else min(8, cores // 4))


def iterate_batches(
    dataset: ImageRowsDataset,
    *,
    batch_size: int,
    workers: int | None = None,
    pin_memory: bool = False,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    by_shape: bool = False,
    batches: Sequence[Sequence[int]] | None = None,
) -> Iterator[Batch]:
    """:class:`Batch` objects over ``dataset`` with parallel decoding and prefetching.

    Worker processes are not started for inputs under four batches.

    Args:
        dataset: the rows to decode.
        batch_size: images per batch.
        workers: decode processes; None: :func:`default_workers` (for a GPU when ``pin_memory``).
        pin_memory: pin batches for a fast copy to a GPU (not with ``by_shape``).
        shuffle: shuffle the rows (seeded by ``generator``).
        generator: the torch generator of the shuffle.
        by_shape: the items of a loader batch may differ in size (native-resolution evaluation): each batch is
            split into one :class:`Batch` per tensor shape, so nothing is resized or padded to stack.
        batches: the dataset positions of every batch, explicitly (batches of varying size; ``batch_size`` then
            only decides whether worker processes are worth starting, and ``shuffle`` is ignored).

    Yields:
        Batches of tensors, each with the positions and failure reasons of its rows.
    """
    workers = default_workers(gpu=pin_memory) if workers is None else workers  # pinned: batches go to a GPU
    if len(dataset) < 4 * batch_size:
        workers = 0  # starting worker processes costs more than it saves on tiny inputs
    sizing: dict[str, Any] = (
        {"batch_sampler": [list(b) for b in batches]} if batches is not None
        else {"batch_size": batch_size, "shuffle": shuffle, "generator": generator}
    )
    loader = DataLoader(
        dataset,
        **sizing,
        num_workers=workers,
        collate_fn=_collate_items if by_shape else _collate,
        pin_memory=pin_memory and not by_shape,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    if not by_shape:
        yield from loader
        return
    for items in loader:
        yield from _by_shape(items)


class HalveOnOom:
    """Calls ``fn`` on a batch; on CUDA out-of-memory it runs the batch in halves (down to single images) and
    keeps the smaller size for the batches that follow, so a batch too large for the device costs a retry,
    not the run.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.fn = fn
        self.limit: int | None = None  # the largest sub-batch known to fit; None until an OOM

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``fn(x)``, split into smaller sub-batches whenever the device runs out of memory."""
        while True:
            size = min(len(x), self.limit or len(x))
            try:
                if size == len(x):
                    return self.fn(x)
                return torch.cat([self.fn(x[i : i + size]) for i in range(0, len(x), size)])
            except torch.cuda.OutOfMemoryError:
                if size == 1:
                    raise
                torch.cuda.empty_cache()
                self.limit = size // 2
                warnings.warn(f"CUDA out of memory at batch {size}: now {self.limit}", stacklevel=2)


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt() parameters
_allocator_tuned = False


def tune_cpu_allocator() -> bool:
    """Serve large allocations from the heap and keep freed memory (glibc ``mallopt``) for faster CPU inference.

    CPU inference then stops paying a fresh ``mmap`` and its page faults for every activation tensor
    (EfficientNet-Lite0 on 2 cores: about 3x faster forward). The process keeps its peak heap instead of
    returning it to the OS. Idempotent.

    Returns:
        Whether the allocator is tuned (False where glibc is absent: macOS, musl).
    """
    global _allocator_tuned
    if not _allocator_tuned:
        import ctypes
        import ctypes.util

        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            no_mmap = libc.mallopt(_M_MMAP_MAX, 0)
            _allocator_tuned = bool(no_mmap and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
        except (OSError, AttributeError):
            return False
    return _allocator_tuned
