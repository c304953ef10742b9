"""Leaderboards rebuilt from run records (never edited by hand).

``wide``: one row per run (detector, backbone, config hash, run id), one column per generator plus
``mean`` and ``worst`` for a chosen metric. ``long``: every metric of every run and generator, tidy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detbench import layout
from detbench.errors import DamagedRunError, RunLookupError, warn
from detbench.metrics import SUMMARY_ROWS
from detbench.records import load_run_record

ID_COLUMNS = [
    "detector", "backbone", "settings", "protocol", "perturbation", "threshold", "config_hash", "fit_id", "run_id"
]  # fmt: skip
FILTER_COLUMNS = ("detector", "backbone", "perturbation")


def find_run(prefix: str, runs_root: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The finished run whose id (or its 16-character directory name) starts with ``prefix``.

    Args:
        prefix: the run id or its first characters (case and surrounding spaces ignored).
        runs_root: where the runs are; None: ``$DETBENCH_HOME/runs``.

    Returns:
        ``(run folder, run record)``.

    Raises:
        RunLookupError: ``prefix`` is empty, matches no finished run (close ids are suggested) or several.
    """
    prefix = prefix.strip().lower()
    if not prefix:
        raise RunLookupError("give a run id (or its first characters); see `detbench ls runs`")
    runs = list(run_records(runs_root=runs_root))
    matches = [(d, r) for d, r in runs if d.name.startswith(prefix) or r.get("run_id", "").startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        listing = ", ".join(f"{d.name} ({detector_label(r)}, {_perturbation_label(r)})" for d, r in matches[:8])
        raise RunLookupError(f"run id {prefix!r} is ambiguous: {listing}; give more characters")
    import difflib

    names = [d.name for d, _ in runs]
    heads = {n[: len(prefix)]: n for n in names}  # compare like with like: prefixes of the same length
    close = difflib.get_close_matches(prefix, list(heads), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(heads[c] for c in close)}?" if close else ""
    raise RunLookupError(
        f"no finished run with id {prefix!r}.{hint} See `detbench ls runs` ({len(names)} finished runs)."
    )


def run_records(
    suite: str | None = None, runs_root: Path | None = None, verify: tuple[str, ...] = ("metrics.parquet",)
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Finished runs (those with a run.json), optionally of one suite, oldest first.

    A damaged run (its record unreadable or of the wrong shape, or an output in ``verify`` not matching the sha256
    it recorded) is left out with a :class:`~detbench.errors.DetbenchWarning`; running it again recomputes it.

    Args:
        suite: only this suite's runs; None: every suite's.
        runs_root: where the runs are; None: ``$DETBENCH_HOME/runs``.
        verify: output files whose recorded sha256 is checked.

    Yields:
        ``(run folder, run record)``, by the record's ``created`` time.
    """
    root = runs_root or layout.runs_root()
    found = []
    for path in root.glob(layout.run_record_glob(suite)):
        try:
            record = load_run_record(path.parent, verify)
        except FileNotFoundError:  # moved away meanwhile
            continue
        except DamagedRunError as exc:
            warn(f"{exc}; it is left out (run the same command again to recompute it)")
            continue
        found.append((path.parent, record))
    yield from sorted(found, key=lambda item: str(item[1].get("created", "")))


def detector_label(record: dict[str, Any]) -> str:
    """How tables name a run's detector.

    Args:
        record: the run record.

    Returns:
        Its ``label`` (``external:NAME`` for imported scores), else its detector name.
    """
    return str(record.get("label") or record["detector"])


def runs_table(suite: str | None = None, detector: str | None = None, runs_root: Path | None = None) -> pd.DataFrame:
    """One row per finished run, oldest first (what ``detbench ls runs`` lists).

    Args:
        suite: only this suite's runs (an alias names its suite's runs).
        detector: only these detectors: exact (case-insensitive) if some run has that label, else every label
            containing it (``external`` keeps every imported score file).
        runs_root: where the runs are (default: ``$DETBENCH_HOME/runs``).

    Returns:
        Columns :data:`RUN_COLUMNS`; ``run_id`` is the full id, ``path`` the run's folder.
    """
    rows = []
    for run_dir, rec in run_records(suite, runs_root):
        summary = (rec.get("summary") or {}).get("mean", {})
        rows.append(
            {
                "run_id": rec["run_id"],
                "suite": rec["suite"],
                "detector": detector_label(rec),
                "external": bool(rec.get("external", False)),
                "protocol": rec.get("protocol", ""),
                "backbone": rec.get("backbone") or "",
                "settings": _settings_label(rec),
                "perturbation": _perturbation_label(rec),
                "threshold": threshold_label(rec),
                "mean_acc": summary.get("acc"),
                "mean_ap": summary.get("ap"),
                "fit_id": str(rec.get("fit_id", "")),
                "created": rec.get("created", ""),
                "path": str(run_dir),
            }
        )
    table = pd.DataFrame(rows, columns=RUN_COLUMNS)
    return filter_runs(table, detector=detector).reset_index(drop=True)


RUN_COLUMNS = [
    "run_id", "suite", "detector", "external", "protocol", "backbone", "settings", "perturbation", "threshold",
    "mean_acc", "mean_ap", "fit_id", "created", "path",
]  # fmt: skip


def _settings_label(record: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in (record.get("settings") or {}).items()) or "defaults"


def _perturbation_label(record: dict[str, Any]) -> str:
    p = record.get("perturbation")
    return "clean" if not p else str(p.get("spec", p))


def long_table(suite: str, runs_root: Path | None = None) -> pd.DataFrame:
    """Every metric of every finished run of a suite, tidy.

    Args:
        suite: the suite's name.
        runs_root: where the runs are; None: ``$DETBENCH_HOME/runs``.

    Returns:
        Columns ``suite``, :data:`ID_COLUMNS`, ``generator`` (summary rows such as ``mean`` and ``worst``
        included), ``metric``, ``value``; empty (with these columns) when the suite has no finished run.
    """
    frames = []
    for run_dir, record in run_records(suite, runs_root):
        metrics = with_real_positive_metrics(pd.read_parquet(run_dir / "metrics.parquet"), run_dir, record)
        metrics = metrics.melt(id_vars=["generator"], var_name="metric", value_name="value")
        for col, value in _id_values(record).items():
            metrics.insert(0, col, value)
        frames.append(metrics)
    if not frames:
        return pd.DataFrame(columns=["suite", *ID_COLUMNS, "generator", "metric", "value"])
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "suite", suite)
    return out


def with_real_positive_metrics(metrics: pd.DataFrame, run_dir: Path, record: dict[str, Any]) -> pd.DataFrame:
    """``metrics`` with ``ap_real`` and ``fpr95_real`` (:data:`detbench.metrics.REAL_POSITIVE_METRICS`), computed
    from the run's ``scores.parquet`` for a run recorded before detbench computed them.

    Args:
        metrics: the run's ``metrics.parquet``.
        run_dir: the run's folder.
        record: its ``run.json``.

    Returns:
        ``metrics`` unchanged when it has both columns; else with them added per generator (NaN where the scores
        cannot be read or differ from the sha256 the record holds, with a warning).
    """
    from detbench.metrics import REAL_POSITIVE_METRICS, per_group_metrics
    from detbench.records import sha256_of_file

    missing = [m for m in REAL_POSITIVE_METRICS if m not in metrics.columns]
    if not missing:
        return metrics
    path = run_dir / "scores.parquet"
    try:
        intact = sha256_of_file(path) == (record.get("outputs") or {}).get("scores.parquet")
    except OSError:
        intact = False
    if not intact:
        warn(f"run {run_dir.name}: scores.parquet is missing or differs from its record, so "
             f"{' and '.join(missing)} (computed from the scores for runs made before detbench recorded them) are n/a")
        return metrics.assign(**dict.fromkeys(missing, float("nan")))
    scores = pd.read_parquet(path, columns=["generator", "label", "score"])
    generators = set(metrics["generator"]) - set(SUMMARY_ROWS)
    scored = scores[np.isfinite(scores["score"].to_numpy(dtype=float)) & scores["generator"].isin(generators)]
    if scored.empty:
        return metrics.assign(**dict.fromkeys(missing, float("nan")))
    derived = per_group_metrics(scored, group="generator")[["generator", *missing]]
    return metrics.merge(derived, on="generator", how="left")


def _id_values(record: dict[str, Any]) -> dict[str, Any]:
    preset = record.get("preset") or {}
    detector = detector_label(record) + (f" (reproduces {preset['name']})" if preset.get("reproduction") else "")
    values = {
        "detector": detector,
        "backbone": record.get("backbone") or "",
        "settings": _settings_label(record),
        "protocol": record.get("protocol", ""),
        "perturbation": _perturbation_label(record),
        "threshold": threshold_label(record),
        "config_hash": record.get("config_hash", ""),
        "fit_id": str(record.get("fit_id", ""))[:16],
        "run_id": record["run_id"][:16],
    }
    return dict(reversed(list(values.items())))


def suite_long(suite: str, published: bool = False, runs_root: Path | None = None) -> pd.DataFrame:
    """:func:`long_table` of ``suite``, with the published numbers of its paper presets when ``published``.

    Args:
        suite: the suite's name.
        published: append the rows of the papers' published numbers (:func:`detbench.presets.published_rows`).
        runs_root: where the runs are; None: ``$DETBENCH_HOME/runs``.

    Returns:
        The long table.

    Raises:
        RunLookupError: the suite has no finished run (and no published row).
    """
    long = long_table(suite, runs_root)
    if published:
        from detbench.presets import published_rows

        long = pd.concat([long, published_rows(suite)], ignore_index=True)
    if long.empty:
        raise RunLookupError(f"no finished runs for suite {suite!r}; try `detbench run linear-probe --suite {suite}`")
    return long


def leaderboard_view(
    long: pd.DataFrame, metric: str = "acc", *, delta: bool = False, **filters: str | None
) -> pd.DataFrame:
    """The wide leaderboard of ``metric`` (one row per run), as deltas to the clean run of the same fit with
    ``delta``, keeping the runs :func:`filter_runs` selects with ``filters`` (``detector``, ``backbone``,
    ``perturbation``; deltas still use every run).

    Args:
        long: :func:`suite_long` output.
        metric: the metric shown (a value of ``long``'s ``metric`` column, e.g. ``acc`` or ``ap``).
        delta: show each perturbed run's difference to its clean run instead of its values (clean rows dropped).
        **filters: patterns for ``detector``, ``backbone`` and ``perturbation`` (see :func:`filter_runs`); None or
            empty: no filter.

    Returns:
        The wide table (see :func:`wide_table` and :func:`delta_table`), index reset.

    Raises:
        ConfigError: ``metric`` is not a metric of these runs.
        RunLookupError: the filters select no run.
    """
    from detbench.errors import ConfigError

    known = set(long["metric"])
    if metric not in known:
        raise ConfigError(f"unknown metric {metric!r}; choose from {', '.join(sorted(known))}")
    view = delta_table(wide_table(long, metric)) if delta else wide_table(long, metric)
    if filter_runs(long, **filters).empty:
        suite = long["suite"].iloc[0] if "suite" in long and len(long) else "this suite"
        raise RunLookupError(f"no run of {suite} matches the filters; see `detbench leaderboard {suite}`")
    return filter_runs(view, **filters).reset_index(drop=True)


def threshold_label(record: dict[str, Any]) -> str:
    """How tables name a run's decision threshold.

    Args:
        record: the run record.

    Returns:
        The record's threshold label if it has one, else ``calibrated`` or the fixed value, e.g. ``0.5``.
    """
    t = record.get("threshold") or {}
    return t.get("label") or ("calibrated" if t.get("policy") == "calibrated" else f"{t.get('value', 0.5):g}")


def filter_runs(long: pd.DataFrame, **patterns: str | None) -> pd.DataFrame:
    """Keep the rows whose ``detector``/``backbone``/``perturbation`` match the given patterns.

    A pattern equal to some value of its column (case-insensitive) selects exactly that value; otherwise
    it selects every value containing it (``--perturbation jpeg`` keeps all JPEG runs, ``clean`` only
    the unperturbed ones, ``--backbone efficientnet`` any EfficientNet backbone).

    Args:
        long: a table with the filtered columns (long or wide).
        **patterns: ``detector``, ``backbone`` and/or ``perturbation`` patterns; None or empty: no filter.

    Returns:
        The matching rows (index kept).

    Raises:
        ValueError: a pattern names another column (a caller's bug, not the user's).
    """
    for column, pattern in patterns.items():
        if column not in FILTER_COLUMNS:
            raise ValueError(f"cannot filter on {column!r}; choose from {FILTER_COLUMNS}")
        if not pattern:
            continue
        values = long[column].astype(str).str.lower()
        pattern = pattern.lower()
        exact = values == pattern
        long = long[exact if exact.any() else values.str.contains(pattern, regex=False)]
    return long


def perturbation_rank(label: str) -> tuple[int, str, float]:
    """Sort key: clean first, then single perturbations by kind and rising severity, then compositions.

    Args:
        label: a perturbation label as run tables show it (``clean``, a spec such as ``jpeg:75``, or a
            composition such as ``blur:2+jpeg:90``); one that does not parse sorts with the compositions.

    Returns:
        ``(group, kind, severity)``: group 0 clean, 1 single, 2 composed or unparsed.
    """
    from detbench.config import ConfigError
    from detbench.perturbations import parse_perturbation

    if label == "clean":
        return (0, "", 0.0)
    try:
        steps = parse_perturbation(label).steps
    except ConfigError:
        return (2, label, 0.0)
    if len(steps) > 1:
        return (2, label, 0.0)
    return (1, steps[0].name, -steps[0].level if steps[0].severe_when_low else steps[0].level)


def wide_table(long: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """One row per run, one column per generator (then mean, worst) for ``metric``, and ``mean_delta``:
    a perturbed run's mean minus that of the clean run of the same fit and threshold (NaN without one).

    Args:
        long: :func:`long_table` output (rows of other metrics are ignored).
        metric: the metric to show.

    Returns:
        :data:`ID_COLUMNS`, the generator columns, the summary columns and ``mean_delta``; sorted by protocol,
        then perturbation (:func:`perturbation_rank`), then falling mean. Only :data:`ID_COLUMNS` when no run
        has ``metric``.
    """
    subset = long[long["metric"] == metric]
    if subset.empty:
        return pd.DataFrame(columns=ID_COLUMNS)
    wide = subset.pivot(index=ID_COLUMNS, columns="generator", values="value")
    generators = [g for g in wide.columns if g not in SUMMARY_ROWS]
    wide = wide[generators + [c for c in SUMMARY_ROWS if c in wide.columns]].reset_index()
    wide.columns.name = None
    if "mean" in wide.columns:
        wide["mean_delta"] = delta_table(wide, keep_clean=True)["mean"]
    rank = wide["perturbation"].map(perturbation_rank)
    wide = wide.assign(_p=rank.str[0], _k=rank.str[1], _s=rank.str[2], _m=-wide.get("mean", 0.0))
    wide = wide.sort_values(["protocol", "_p", "_k", "_s", "_m"], kind="stable")  # ranked per perturbation
    return wide.drop(columns=["_p", "_k", "_s", "_m"]).reset_index(drop=True)


def delta_table(wide: pd.DataFrame, keep_clean: bool = False) -> pd.DataFrame:
    """``wide`` with every value column replaced by its difference to the clean run of the same fit and
    threshold policy (NaN where none exists; several such runs, e.g. with other bootstrap counts, share
    their point values). Clean rows are dropped unless ``keep_clean`` (their deltas are NaN).

    Args:
        wide: :func:`wide_table` output.
        keep_clean: keep the clean rows (with NaN deltas).

    Returns:
        The same columns (``mean_delta`` dropped) holding differences.
    """
    values = [c for c in wide.columns if c not in ID_COLUMNS and c != "mean_delta"]
    clean = wide[wide["perturbation"] == "clean"].drop_duplicates(["fit_id", "threshold"], keep="last")
    reference = wide[["fit_id", "threshold"]].merge(clean[["fit_id", "threshold", *values]], how="left")
    out = wide.drop(columns=["mean_delta"], errors="ignore").copy()
    is_clean = (out["perturbation"] == "clean").to_numpy()
    for col in values:
        delta = out[col].to_numpy(dtype=float) - reference[col].to_numpy(dtype=float)
        out[col] = pd.Series(delta, index=out.index).where(~is_clean)
    return out if keep_clean else out[~is_clean].reset_index(drop=True)


def write_csvs(
    suite: str,
    out_dir: Path,
    metric: str = "acc",
    runs_root: Path | None = None,
    filters: dict[str, str | None] | None = None,
) -> tuple[Path, Path]:
    """Write ``<suite>_leaderboard.csv`` (wide, ``metric``) and ``<suite>_leaderboard_long.csv`` atomically,
    keeping the runs :func:`filter_runs` selects with ``filters`` (``mean_delta`` still uses every run).

    Args:
        suite: the suite's name.
        out_dir: the folder to write into (created if missing; existing files of these names are replaced).
        metric: the metric of the wide table.
        runs_root: where the runs are; None: ``$DETBENCH_HOME/runs``.
        filters: ``detector``/``backbone``/``perturbation`` patterns; None: every run.

    Returns:
        The paths of the wide and the long CSV.
    """
    from detbench.records import atomic_path

    long = long_table(suite, runs_root)
    wide = filter_runs(wide_table(long, metric), **(filters or {}))
    long = filter_runs(long, **(filters or {}))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / f"{suite}_leaderboard.csv", out_dir / f"{suite}_leaderboard_long.csv")
    for df, path in zip((wide, long), paths, strict=True):
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
    return paths
