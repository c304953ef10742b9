"""Metrics per slice of the index: the same metrics, per generator and per value of an image property.

``--by`` names the property: ``format``; ``jpeg_quality`` in the bands of :data:`QUALITY_BANDS` (``none`` for
images without a JPEG quality); ``size`` in the pixel-count bands of :data:`SIZE_BANDS`; or a file list's own
column ``meta_COLUMN[:BINS]``: a numeric column in ``BINS`` quantile bins (default :data:`DEFAULT_BINS`, equal
counts over the run's evaluation images, edges rounded to 4 significant digits), a categorical one by its values.
A row whose property is missing is in slice ``missing``. A slice without scored real or without scored fake images
gets counts and ``n/a`` (NaN): never a number computed on one class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from detbench.config import ConfigError
from detbench.data.index import META_PREFIX
from detbench.errors import DataError

FIXED_SLICES = ("format", "jpeg_quality", "size")
# (upper bound exclusive, label) of the estimated JPEG quality
QUALITY_BANDS = ((50, "<50"), (70, "50-69"), (80, "70-79"), (90, "80-89"), (95, "90-94"), (101, "95-100"))
# (upper bound exclusive, label) of width x height
SIZE_BANDS = ((256**2, "<256²"), (512**2, "256²-512²"), (1024**2, "512²-1024²"), (float("inf"), "≥1024²"))
DEFAULT_BINS = 4
MISSING = "missing"
SLICE_COLUMN = "slice"


def parse_by(by: str | None) -> tuple[str, int | None] | None:
    """``--by``'s column and bin count.

    Args:
        by: ``format``, ``jpeg_quality``, ``size`` or ``meta_COLUMN[:BINS]``; None or empty: no slicing.

    Returns:
        ``(column, bins)`` (bins None unless given), or None.

    Raises:
        ConfigError: bins that are not an integer >= 2, or bins on a fixed slice.
    """
    if by is None or not str(by).strip():
        return None
    if not isinstance(by, str):
        raise ConfigError(f"by must be a column name, got {type(by).__name__}")
    column, _, bins = by.strip().partition(":")
    if not bins:
        return column, None
    if column in FIXED_SLICES:
        raise ConfigError(f"--by {column} has fixed bands; bins (:N) apply to meta_ columns only")
    if not bins.isdigit() or int(bins) < 2:
        raise ConfigError(f"--by {by}: bins must be an integer >= 2")
    return column, int(bins)


def _bands(values: pd.Series, bands: tuple[tuple[float, str], ...]) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    out = pd.Series(MISSING, index=values.index, dtype=object)
    for upper, label in reversed(bands):
        out[numbers < upper] = label
    return out


def _quantile_bins(values: pd.Series, bins: int) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    out = pd.Series(MISSING, index=values.index, dtype=object)
    present = numbers.dropna()
    if present.empty:
        return out
    edges = np.unique(np.quantile(present.to_numpy(), np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        out[present.index] = f"{edges[0]:.4g}"
        return out
    codes = np.clip(np.searchsorted(edges, present.to_numpy(), side="right") - 1, 0, len(edges) - 2)
    labels = [f"[{lo:.4g}, {hi:.4g}{']' if i == len(edges) - 2 else ')'}" for i, (lo, hi) in
              enumerate(zip(edges[:-1], edges[1:], strict=True))]
    out[present.index] = [labels[c] for c in codes]
    return out


def slice_values(rows: pd.DataFrame, by: str) -> pd.Series:
    """The slice of each index row.

    Args:
        rows: index rows (those to slice: a run's evaluation images, for quantile bins).
        by: as :func:`parse_by`.

    Returns:
        One label per row (same index).

    Raises:
        ConfigError: the column is not in the index (naming the available ones) or ``by`` is malformed.
    """
    parsed = parse_by(by)
    assert parsed is not None
    column, bins = parsed
    available = [*FIXED_SLICES, *sorted(c for c in rows.columns if c.startswith(META_PREFIX))]
    if column not in available:
        raise ConfigError(f"unknown slice column {column!r}; available: {', '.join(available)}")
    if column == "format":
        return rows["format"].astype("string").fillna(MISSING).astype(object)
    if column == "jpeg_quality":
        out = _bands(rows["jpeg_quality"], QUALITY_BANDS)
        return out.where(out != MISSING, "none")
    if column == "size":
        pixels = pd.to_numeric(rows["width"], errors="coerce") * pd.to_numeric(rows["height"], errors="coerce")
        return _bands(pixels, SIZE_BANDS)
    values = rows[column]
    numeric = pd.to_numeric(values.dropna(), errors="coerce").notna().all() and values.notna().any()
    if numeric and not pd.api.types.is_bool_dtype(values):
        return _quantile_bins(values, bins or DEFAULT_BINS)
    return values.astype("string").fillna(MISSING).astype(object)


def run_index_rows(record: dict[str, Any]) -> pd.DataFrame:
    """The index rows of the data a run evaluated.

    Args:
        record: the run record (its ``paths.index``).

    Returns:
        The index rows.

    Raises:
        DataError: the index is gone or no longer the one the run evaluated.
    """
    from pathlib import Path

    from detbench.data.index import load_index

    directory = Path((record.get("paths") or {}).get("index", ""))
    try:
        index = load_index(directory)
    except (OSError, ValueError):
        raise DataError(f"run {record['run_id'][:16]}: its index {directory} is gone; index its data again "
                        f"(`detbench index {record['suite']} --root ...`)") from None
    expected = (record.get("data") or {}).get("index_hash")
    if expected and index.manifest.get("index_hash") != expected:
        raise DataError(f"run {record['run_id'][:16]}: its index {directory} has changed since it ran; slices "
                        "would describe other images (run it again on this data)")
    return index.rows


def sliced_scores(scores: pd.DataFrame, record: dict[str, Any], by: str) -> pd.DataFrame:
    """A run's scored evaluation images with their slice.

    Args:
        scores: the run's ``scores.parquet`` rows.
        record: its record.
        by: as :func:`parse_by`.

    Returns:
        The scored rows (status ``ok``, finite score) with a ``slice`` column.
    """
    rows = run_index_rows(record).drop_duplicates("path").set_index("path")
    scored = scores[(scores["status"] == "ok") & np.isfinite(scores["score"].astype(float))].copy()
    meta = rows.reindex(scored["path"].to_numpy())
    scored[SLICE_COLUMN] = slice_values(meta.reset_index(drop=True), by).to_numpy()
    return scored


def slice_metrics(scores: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Every metric per generator and slice of :func:`sliced_scores` output.

    Args:
        scores: sliced scores.
        threshold: the run's decision threshold.

    Returns:
        ``generator``, ``slice``, then the columns of ``metrics.parquet`` (no intervals); every metric NaN where
        the slice lacks a class.
    """
    from detbench.metrics import binary_metrics, calibration_metrics

    rows = []
    for (generator, value), part in scores.groupby(["generator", SLICE_COLUMN], sort=True):
        y, s = part["label"].to_numpy(), part["score"].to_numpy(dtype=float)
        row = {"generator": generator, SLICE_COLUMN: value, **binary_metrics(y, s, threshold),
               **calibration_metrics(y, s)}
        if row["n_real"] == 0 or row["n_fake"] == 0:
            row = {k: (v if k in ("generator", SLICE_COLUMN, "n_real", "n_fake") else np.nan) for k, v in row.items()}
        rows.append(row)
    return pd.DataFrame(rows)


def run_slices(run: Any, by: str) -> pd.DataFrame:
    """:func:`slice_metrics` of one finished run.

    Args:
        run: a :class:`~detbench.engine.finished_run.Run`.
        by: as :func:`parse_by`.

    Returns:
        Its metrics per generator and slice.
    """
    threshold = float((run.record.get("threshold") or {}).get("value", 0.5))
    return slice_metrics(sliced_scores(run.scores, run.record, by), threshold)


def sliced_leaderboard(view: pd.DataFrame, metric: str, by: str, runs_root: Any = None) -> pd.DataFrame:
    """A leaderboard's runs, one row per run, generator and slice, with ``metric``.

    Args:
        view: a wide leaderboard (:func:`~detbench.results.leaderboard.leaderboard_view`), its runs in order.
        metric: the metric (a column of ``metrics.parquet``).
        by: as :func:`parse_by`.
        runs_root: where the runs are; None: ``$DETBENCH_HOME/runs``.

    Returns:
        ``detector``, ``settings``, ``protocol``, ``perturbation``, ``threshold``, ``run_id``, ``generator``,
        ``slice``, ``n_real``, ``n_fake`` and the metric.

    Raises:
        ConfigError: an unknown slice column or metric.
    """
    from detbench.engine.finished_run import Run
    from detbench.results.leaderboard import run_records

    ids = ["detector", "settings", "protocol", "perturbation", "threshold", "run_id"]
    wanted = set(view["run_id"])
    runs = {r["run_id"][:16]: Run(d, r) for d, r in run_records(runs_root=runs_root) if r["run_id"][:16] in wanted}
    frames = []
    for _, row in view.iterrows():
        if row["run_id"] not in runs:  # published numbers: no scores to slice
            continue
        table = run_slices(runs[row["run_id"]], by)
        if metric not in table.columns:
            raise ConfigError(f"--by shows metrics of metrics.parquet; {metric!r} is not one")
        for col in reversed(ids):
            table.insert(0, col, row[col])
        frames.append(table[[*ids, "generator", SLICE_COLUMN, "n_real", "n_fake", metric]])
    if not frames:
        return pd.DataFrame(columns=[*ids, "generator", SLICE_COLUMN, "n_real", "n_fake", metric])
    return pd.concat(frames, ignore_index=True)
