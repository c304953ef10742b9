"""Scoring an image as tiles: each row expanded into tile rows, scored by the detector's ordinary predict(), fused.

The tiles (:mod:`detbench.data.tiles`) of a chunk of images are scored together, in the detector's usual batches,
through :meth:`~detbench.kit.detector.Detector.predict`: a tile row is its image's row with the tile's id
(``<image_id>#tile=...``), which the loader turns into the crop of the decoded (and perturbed) image. An image is
scored only when every one of its tiles is: a tile that fails (or gets no score) fails the image, with that tile's
reason and its position, so a fused score is always over all of an image's tiles.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from detbench.data.images import NO_SCORE
from detbench.data.tiles import Tiling, fuse
from detbench.errors import ConfigError
from detbench.kit.detector import Detector, RunContext

TILE_ROWS_PER_CALL = 8192  # tiles handed to one predict() call (the images of a chunk split to stay near it)
MEASURE_BATCH = 64


def tile_sides(detector: Detector, tiling: Tiling, ctx: RunContext, generators: Any) -> dict[str, int]:
    """The tile side per generator: the grid's size, or the detector's input size (``center``, ``five``).

    Args:
        detector: the set-up detector.
        tiling: the tile policy.
        ctx: the evaluation context (its profiles may change the input size).
        generators: the generators of the rows to tile.

    Returns:
        Generator -> side in pixels.

    Raises:
        ConfigError: ``center`` or ``five`` for a detector without an input size.
    """
    sides = {}
    for generator in sorted({str(g) for g in generators}):
        size = detector.input_size(ctx, generator) if tiling.needs_input_size else tiling.size
        if size is None:
            raise ConfigError(f"--set eval.tiles={tiling.spec}: {detector.name} scores images at their own size "
                              f"(it has no input size to cut{f' for {generator}' if ctx.eval_profiles else ''}); "
                              "use eval.tiles=grid:SIZE")
        sides[generator] = int(size)
    return sides


class _Size:
    """A picklable transform: an image's (width, height), for counting its tiles."""

    def __call__(self, img: Any) -> Any:
        import torch

        return torch.tensor(img.size, dtype=torch.int64)


def _tile_counts(tiling: Tiling, rows: pd.DataFrame, ctx: RunContext) -> tuple[np.ndarray, dict[int, str]]:
    """How many tiles each row's image gives, and the rows whose image could not be read (by position).

    ``center`` and ``five`` give 1 and 5. A grid counts the image as the detector sees it: from the index's width and
    height when nothing changes them (EXIF orientation may swap them, which keeps the count), else decoded and
    perturbed through the loader.
    """
    counts = np.zeros(len(rows), dtype=np.int64)
    if tiling.policy != "grid":
        counts[:] = tiling.count(1, 1)
        return counts, {}
    if ctx.perturbation is None and {"width", "height"} <= set(rows.columns):
        w = pd.to_numeric(rows["width"], errors="coerce").to_numpy(dtype=float)
        h = pd.to_numeric(rows["height"], errors="coerce").to_numpy(dtype=float)
        if np.isfinite(w).all() and np.isfinite(h).all() and (w >= 1).all() and (h >= 1).all():
            return np.array([tiling.count(int(a), int(b)) for a, b in zip(w, h, strict=True)], dtype=np.int64), {}
    from detbench.data.loading import ImageRowsDataset, iterate_batches

    dataset = ImageRowsDataset(ctx.suite_root, rows["path"].tolist(), _Size(),
                               image_ids=rows["image_id"].astype(str).tolist(), perturb=ctx.perturbation)
    failures: dict[int, str] = {}
    with ctx.phases.phase(f"count tiles ({ctx.stage})", len(rows)) as advance:
        for batch in iterate_batches(dataset, batch_size=MEASURE_BATCH, workers=ctx.workers):
            failures.update({int(i): reason for i, reason in batch.failures})
            if batch.x is not None:
                counts[batch.indices] = [tiling.count(int(w), int(h)) for w, h in batch.x.tolist()]
            if advance is not None:
                advance(len(batch.indices) + len(batch.failures))
    return counts, failures


def predict_tiled(detector: Detector, rows: pd.DataFrame, ctx: RunContext,
                  tiling: Tiling) -> tuple[np.ndarray, dict[int, str], np.ndarray]:
    """Scores of ``rows``' images fused from their tiles' scores.

    Args:
        detector: the set-up (and fitted) detector.
        rows: index rows (``image_id``, ``path``, ``generator`` ...).
        ctx: the run context (its perturbation applies to each whole image before it is cut).
        tiling: the tile policy and fusion rule.

    Returns:
        ``(scores, failures, n_tiles)``: the fused P(fake) per row (NaN where the image failed), failure reasons by
        row position, and how many tiles of each image were scored.
    """
    rows = rows.reset_index(drop=True)
    sides = tile_sides(detector, tiling, ctx, rows["generator"])
    counts, failures = _tile_counts(tiling, rows, ctx)
    counts[list(failures)] = 0
    scores = np.full(len(rows), np.nan)
    n_tiles = np.zeros(len(rows), dtype=np.int64)
    start = 0
    while start < len(rows):  # images whose tiles add up to about TILE_ROWS_PER_CALL (at least one image)
        ends = np.cumsum(counts[start:])
        stop = start + max(1, int(np.searchsorted(ends, TILE_ROWS_PER_CALL, side="right")))
        _score_images(detector, rows, ctx, tiling, sides, counts, range(start, stop), scores, failures, n_tiles)
        start = stop
    return scores, failures, n_tiles


def _score_images(detector: Detector, rows: pd.DataFrame, ctx: RunContext, tiling: Tiling, sides: dict[str, int],
                  counts: np.ndarray, images: range, scores: np.ndarray, failures: dict[int, str],
                  n_tiles: np.ndarray) -> None:
    """Score the tiles of ``images`` (row positions) in one predict() call; fuse into ``scores``."""
    part_counts = counts[images.start:images.stop]
    owner = np.repeat(np.arange(images.start, images.stop), part_counts)
    if not len(owner):
        return
    k = np.concatenate([np.arange(n) for n in part_counts])
    tile_rows = rows.iloc[owner].reset_index(drop=True)
    tile_rows["image_id"] = [tiling.tile_id(str(i), sides[str(g)], int(j)) for i, g, j in
                             zip(tile_rows["image_id"], tile_rows["generator"], k, strict=True)]
    tile_scores, tile_failures = detector.predict(tile_rows, ctx)
    tile_scores = np.asarray(tile_scores, dtype=float)
    good = np.isfinite(tile_scores)
    good[list(tile_failures)] = False
    first = 0
    for image in images:
        n = int(counts[image])
        if n == 0:
            continue
        part = slice(first, first + n)
        n_tiles[image] = int(good[part].sum())
        if n_tiles[image] == n:
            scores[image] = fuse(tile_scores[part], tiling.fuse)
        else:
            bad = first + int(np.flatnonzero(~good[part])[0])
            reason = tile_failures.get(bad, f"{NO_SCORE}: the detector returned NaN or infinity")
            failures[image] = f"{reason} (tile {bad - first + 1} of {n})"
        first += n
