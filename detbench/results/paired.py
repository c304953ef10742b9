"""Paired comparison of finished runs on the same images (``detbench compare``, :func:`detbench.compare`).

The runs' scored evaluation images are matched by generator, content id and path (:func:`align`); every run must
have scored the same images, or, with ``common``, the images every run scored are used. For each generator, the
``mean`` and the ``worst`` row and each metric, the second run is compared with the first (with more runs, each
with the first): ``delta = b - a``, a percentile interval of the delta from a paired, class-stratified bootstrap (the
same resampled images for both runs, seeded per generator as the runs' own intervals), and a p-value: accuracy by
the exact McNemar test, AUC by DeLong's test, every other metric and every summary row by the paired bootstrap
(:mod:`detbench.stats`). ``p_holm`` is Holm's adjustment across the generators of one metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detbench.errors import ConfigError, DataError, InputError
from detbench.metrics import (
    CALIBRATION_DIRECTIONS,
    DIRECTIONS,
    SUMMARY_ROWS,
    binary_metrics,
    calibration_metrics,
    paired_replicates,
    percentile_interval,
    summary_value,
)
from detbench.stats import bootstrap_p_value, delong, holm, mcnemar_exact

COMPARE_COLUMNS = [
    "generator", "metric", "a", "b", "delta", "delta_lo", "delta_hi", "p_value", "p_holm", "test", "n_real", "n_fake"
]  # fmt: skip
COMPARE_METRICS = ("acc", "auc", "ap", *CALIBRATION_DIRECTIONS)
DEFAULT_METRICS = ("acc", "auc", "ap")
TESTS = {"acc": "mcnemar-exact", "auc": "delong"}  # per generator; every other case: the paired bootstrap
BOOTSTRAP_TEST = "paired-bootstrap"
CI = 0.95
ALPHA = 0.05  # rows whose p_holm is below it are marked significant
KEY = ["generator", "image_id", "path"]


@dataclass
class Aligned:
    """The images every compared run scored, one row each: ``generator``, ``image_id``, ``path``, ``label`` and one
    score column per run (``score_0``, ``score_1``, ...), sorted by generator, image id and path.
    """

    images: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)  # run id -> images it scored that were left out


def parse_metrics(metrics: str | Sequence[str] | None) -> list[str]:
    """The metrics to compare, from ``acc,auc,ap`` or a list.

    Args:
        metrics: comma-separated names, a sequence of names, or None for :data:`DEFAULT_METRICS`.

    Returns:
        The names, in the order given, without repeats.

    Raises:
        ConfigError: no metric, or one that cannot be compared.
    """
    if metrics is None:
        return list(DEFAULT_METRICS)
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics)]
    names = list(dict.fromkeys(m for m in names if m))
    unknown = [m for m in names if m not in COMPARE_METRICS]
    if unknown or not names:
        raise ConfigError(
            f"cannot compare metric {', '.join(map(repr, unknown)) or '(none given)'}; choose from "
            f"{', '.join(COMPARE_METRICS)}"
        )
    return names


def check_options(n_runs: int, metrics: str | Sequence[str] | None, bootstrap: int, seed: int) -> list[str]:
    """Refuse a comparison's options before any run is read.

    Args:
        n_runs: how many runs are named.
        metrics: as :func:`parse_metrics`.
        bootstrap: the bootstrap replicates.
        seed: the bootstrap seed.

    Returns:
        The metric names.

    Raises:
        ConfigError: fewer than two runs, an unknown metric, or a bootstrap count or seed that is not an integer >= 0.
    """
    names = parse_metrics(metrics)
    if n_runs < 2:
        raise ConfigError(f"compare needs two or more runs; got {n_runs} (see `detbench ls runs`)")
    for option, value in (("--bootstrap", bootstrap), ("--seed", seed)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{option} must be an integer >= 0; got {value!r}")
    return names


def _scored(scores: pd.DataFrame) -> pd.DataFrame:
    """A run's scored evaluation images, indexed by :data:`KEY` plus a repeat counter (a key listed twice)."""
    rows = scores.loc[np.isfinite(scores["score"].to_numpy(dtype=np.float64)), [*KEY, "label", "score"]].copy()
    rows["repeat"] = rows.groupby(KEY, sort=False).cumcount()
    return rows.set_index([*KEY, "repeat"])


def _examples(index: pd.Index, limit: int = 3) -> str:
    from detbench.data.tables import listing

    return listing([f"{gen}/{path}" for gen, _, path, _ in index[:limit]], limit, total=len(index))


def align(runs: Sequence[Any], common: bool = False) -> Aligned:
    """Match the runs' scored evaluation images.

    Args:
        runs: :class:`~detbench.engine.finished_run.Run` objects (at least two).
        common: use the images every run scored; otherwise every run must have scored the same images.

    Returns:
        The matched images and, per run, how many of its scored images were dropped.

    Raises:
        DataError: the runs scored different images (without ``common``), no image in common, or an image with
            different labels in two runs.
    """
    first = runs[0]
    tables = [_scored(run.scores) for run in runs]
    base = tables[0]
    if not common:
        for run, table in zip(runs[1:], tables[1:], strict=True):
            only_a, only_b = base.index.difference(table.index), table.index.difference(base.index)
            if len(only_a) or len(only_b):
                raise DataError(_differ_message(first, run, base, only_a, only_b))
    shared = base.index
    for table in tables[1:]:
        shared = shared.intersection(table.index)
    if len(shared) == 0:
        raise DataError(
            f"runs {', '.join(r.id[:16] for r in runs)} scored no image in common (suites "
            f"{', '.join(sorted({r.suite for r in runs}))}); compare runs of the same evaluation images"
        )
    images = base.loc[shared, ["label"]].copy()
    for i, (run, table) in enumerate(zip(runs, tables, strict=True)):
        labels = table.loc[shared, "label"]
        if i and (labels.to_numpy() != images["label"].to_numpy()).any():
            n = int((labels.to_numpy() != images["label"].to_numpy()).sum())
            raise DataError(
                f"runs {first.id[:16]} and {run.id[:16]} label {n} of the same images differently (their indexes "
                "disagree on which images are fake); compare runs of the same suite and data"
            )
        images[f"score_{i}"] = table.loc[shared, "score"].to_numpy(dtype=np.float64)
    images = images.sort_index().reset_index().drop(columns="repeat")
    dropped = {run.id: len(table) - len(images) for run, table in zip(runs, tables, strict=True)}
    return Aligned(images, dropped)


def _differ_message(a: Any, b: Any, base: pd.DataFrame, only_a: pd.Index, only_b: pd.Index) -> str:
    parts = []
    for run, only in ((a, only_a), (b, only_b)):
        if len(only):
            parts.append(f"{len(only)} scored only by {run.id[:16]} ({run.label}), e.g. {_examples(only)}")
    why = []
    if a.suite != b.suite:
        why.append(f"suites {a.suite} and {b.suite}")
    for name, value in (("index", _index_hash), ("protocol", _protocol_name)):
        va, vb = value(a.record), value(b.record)
        if va != vb:
            why.append(f"{name} {va} vs {vb}")
    reason = f" (they differ in {'; '.join(why)})" if why else ""
    n_common = len(base.index) - len(only_a)
    return (
        f"runs {a.id[:16]} and {b.id[:16]} did not score the same evaluation images{reason}: {'; '.join(parts)}. "
        f"Pass --common to compare them on the {n_common} images both scored"
    )


def _index_hash(record: dict[str, Any]) -> str:
    key = record.get("key") or {}
    evaluation = key.get("evaluation") or key
    return str(evaluation.get("index_hash", "?"))[:12]


def _protocol_name(record: dict[str, Any]) -> str:
    return str(record.get("protocol", "?"))


def _point(metric: str, y: np.ndarray, s: np.ndarray, threshold: float) -> float:
    """A run's value of ``metric`` on these images, as its metrics table computes it."""
    if metric in CALIBRATION_DIRECTIONS:
        return calibration_metrics(y, s)[metric]
    return float(binary_metrics(y, s, threshold)[metric])


def _test_p(metric: str, y: np.ndarray, sa: np.ndarray, sb: np.ndarray, ta: float, tb: float,
            deltas: np.ndarray | None) -> tuple[float, str]:
    """The p-value of one generator's difference and the test that gave it."""
    if metric == "acc":
        right_a, right_b = (sa > ta) == (y == 1), (sb > tb) == (y == 1)
        return mcnemar_exact(int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())), TESTS[metric]
    if metric == "auc":
        return delong(y, sa, sb).p_value, TESTS[metric]
    return (bootstrap_p_value(deltas) if deltas is not None else float("nan")), BOOTSTRAP_TEST


def compare_aligned(
    aligned: Aligned, thresholds: Sequence[float], metrics: Sequence[str], n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Compare each run with the first on aligned images (see the module's description).

    Args:
        aligned: :func:`align` output for ``k`` runs.
        thresholds: each run's decision threshold (its accuracy's).
        metrics: the metrics (:data:`COMPARE_METRICS`).
        n_boot: bootstrap replicates (0: no intervals, and no bootstrap p-values).
        seed: the bootstrap seed.

    Returns:
        ``pair`` (1 to k - 1: the run compared with run 0), then :data:`COMPARE_COLUMNS`; per pair and metric the
        generators in order, then ``mean`` and ``worst``. Values are fractions (as metrics.parquet holds them).
    """
    images = aligned.images
    k = len(thresholds)
    generators = sorted(images["generator"].unique())
    point: dict[str, np.ndarray] = {m: np.full((k, len(generators)), np.nan) for m in metrics}
    reps: dict[str, np.ndarray] = {m: np.full((k, len(generators), n_boot), np.nan) for m in metrics}
    tests: dict[tuple[int, str, int], tuple[float, str]] = {}
    counts = []
    for g, (name, part) in enumerate(images.groupby("generator", sort=True)):
        y = part["label"].to_numpy()
        scores = [part[f"score_{i}"].to_numpy() for i in range(k)]
        counts.append((int((y == 0).sum()), int((y == 1).sum())))
        for m in metrics:
            for i in range(k):
                point[m][i, g] = _point(m, y, scores[i], thresholds[i])
        if n_boot > 0:
            for m, values in paired_replicates(y, scores, list(thresholds), list(metrics), n_boot, seed, name).items():
                reps[m][:, g, :] = values
        for m in metrics:
            for j in range(1, k):
                deltas = reps[m][j, g] - reps[m][0, g] if n_boot > 0 else None
                tests[(j, m, g)] = _test_p(m, y, scores[0], scores[j], thresholds[0], thresholds[j], deltas)
    n_real, n_fake = (np.array([c[i] for c in counts], dtype=int) for i in (0, 1))
    rows = []
    for j in range(1, k):
        for m in metrics:
            block = []
            for g, name in enumerate(generators):
                delta_reps = reps[m][j, g] - reps[m][0, g]
                p, test = tests[(j, m, g)]
                block.append(_row(j, name, m, point[m][0, g], point[m][j, g], delta_reps, n_boot, p, test,
                                  n_real[g], n_fake[g]))
            adjusted = holm([r["p_value"] for r in block])
            for r, p_holm in zip(block, adjusted, strict=True):
                r["p_holm"] = p_holm
            for label in SUMMARY_ROWS:
                a = summary_value(point[m][0], label, DIRECTIONS[m])
                b = summary_value(point[m][j], label, DIRECTIONS[m])
                delta_reps = summary_value(reps[m][j], label, DIRECTIONS[m], axis=0) - summary_value(
                    reps[m][0], label, DIRECTIONS[m], axis=0
                )
                p = bootstrap_p_value(delta_reps) if n_boot > 0 else float("nan")
                row = _row(j, label, m, a, b, delta_reps, n_boot, p, BOOTSTRAP_TEST, n_real.sum(), n_fake.sum())
                row["p_holm"] = p  # one summary test each, not part of the generators' family
                block.append(row)
            rows.extend(block)
    return pd.DataFrame(rows, columns=["pair", *COMPARE_COLUMNS])


def _row(pair: int, generator: str, metric: str, a: float, b: float, delta_reps: np.ndarray, n_boot: int,
         p: float, test: str, n_real: int, n_fake: int) -> dict[str, Any]:
    lo, hi = percentile_interval(delta_reps, CI) if n_boot > 0 else (float("nan"), float("nan"))
    return {
        "pair": pair, "generator": generator, "metric": metric, "a": float(a), "b": float(b), "delta": float(b - a),
        "delta_lo": lo, "delta_hi": hi, "p_value": float(p), "p_holm": float("nan"), "test": test,
        "n_real": int(n_real), "n_fake": int(n_fake),
    }  # fmt: skip


def compare_runs(
    runs: Sequence[Any], metrics: str | Sequence[str] | None = None, *, bootstrap: int = 1000, common: bool = False,
    seed: int = 0, by: str | None = None,
) -> pd.DataFrame:
    """Compare finished runs on the same images: each run after the first against the first.

    Args:
        runs: :class:`~detbench.engine.finished_run.Run` objects (two or more, all different).
        metrics: as :func:`parse_metrics`.
        bootstrap: paired bootstrap replicates (0: no intervals and no bootstrap p-values).
        common: compare on the images every run scored (otherwise they must all have scored the same images).
        seed: the bootstrap seed.
        by: compare within each slice of the first run's index (:mod:`detbench.results.slices`): a ``slice``
            column follows ``generator``, every slice compared on its own (its ``mean`` and ``worst`` over the
            generators); a generator's slice without real or without fake images is n/a.

    Returns:
        ``run_a``, ``run_b`` (full run ids), then :data:`COMPARE_COLUMNS`. ``.attrs``: ``runs`` (id, detector label,
        perturbation, threshold of each run), ``n_images`` (compared), ``dropped`` ({run id: its scored images
        left out}).

    Raises:
        ConfigError: fewer than two runs, a run named twice, an unknown metric or a negative bootstrap count.
        DataError: see :func:`align`.
    """
    names = check_options(len(runs), metrics, bootstrap, seed)
    ids = [run.id for run in runs]
    if len(set(ids)) < len(ids):
        twice = sorted({i[:16] for i in ids if ids.count(i) > 1})
        raise ConfigError(f"run {', '.join(twice)} is named more than once; compare different runs")
    aligned = align(runs, common)
    thresholds = [float((run.record.get("threshold") or {}).get("value", 0.5)) for run in runs]
    table = (compare_aligned(aligned, thresholds, names, bootstrap, seed) if not by
             else _compare_slices(runs[0], aligned, thresholds, names, bootstrap, seed, by))
    table.insert(0, "run_b", table.pop("pair").map(lambda j: ids[j]))
    table.insert(0, "run_a", ids[0])
    table.attrs.update(
        runs=[{"run_id": run.id, "detector": run.label, "perturbation": run.perturbation, "threshold": t}
              for run, t in zip(runs, thresholds, strict=True)],
        n_images=len(aligned.images),
        dropped=aligned.dropped,
    )
    return table


def _compare_slices(first: Any, aligned: Aligned, thresholds: Sequence[float], metrics: Sequence[str], n_boot: int,
                    seed: int, by: str) -> pd.DataFrame:
    """:func:`compare_aligned` within each slice (``slice`` after ``generator``); n/a where a class is absent."""
    from detbench.results.slices import SLICE_COLUMN, run_index_rows, slice_values

    rows = run_index_rows(first.record).drop_duplicates("path").set_index("path")
    images = aligned.images
    meta = rows.reindex(images["path"].to_numpy()).reset_index(drop=True)
    values = slice_values(meta, by).to_numpy()
    frames = []
    for value in sorted(set(values.tolist())):
        part = Aligned(images[values == value].reset_index(drop=True), aligned.dropped)
        table = compare_aligned(part, thresholds, metrics, n_boot, seed)
        table.insert(table.columns.get_loc("generator") + 1, SLICE_COLUMN, value)
        one_class = (table["n_real"] == 0) | (table["n_fake"] == 0)
        undefined = table["generator"].isin(table.loc[one_class, "generator"]) | (
            table["generator"].isin(SUMMARY_ROWS) & one_class.groupby([table["pair"], table["metric"]])
            .transform("any"))
        table.loc[undefined, ["a", "b", "delta", "delta_lo", "delta_hi", "p_value", "p_holm"]] = np.nan
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def csv_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The CSV of a comparison: exactly :data:`COMPARE_COLUMNS` (with ``slice`` after ``generator`` when compared per
    slice), preceded by ``run_b`` when more than two runs were compared (which run each row compares with the first).

    Args:
        table: :func:`compare_runs` output.

    Returns:
        The frame to write.
    """
    several = table["run_b"].nunique() > 1
    columns = [*COMPARE_COLUMNS]
    if "slice" in table:  # compared per slice (--by)
        columns.insert(columns.index("generator") + 1, "slice")
    return table[(["run_b"] if several else []) + columns]


def check_csv_path(path: str | Path | None) -> None:
    """Refuse a CSV path that names a folder (before any work).

    Args:
        path: the file to write, or None.

    Raises:
        InputError: ``path`` is an existing folder.
    """
    if path is not None and Path(path).is_dir():
        raise InputError(f"{path} is a folder; name the file to write, e.g. {Path(path) / 'compare.csv'}")


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    """Write :func:`csv_frame` of ``table`` to ``path`` atomically (values as fractions, 6 significant digits).

    Args:
        table: :func:`compare_runs` output.
        path: the CSV file (replaced if it exists).
    """
    from detbench.store import atomic_path

    check_csv_path(path)
    with atomic_path(Path(path)) as tmp:
        csv_frame(table).to_csv(tmp, index=False, float_format="%.6g")
