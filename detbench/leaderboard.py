"""Leaderboards rebuilt from run records (never edited by hand).

``wide``: one row per run (detector, backbone, config hash, run id), one column per generator plus
``mean`` and ``worst`` for a chosen metric. ``long``: every metric of every run and generator, tidy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from detbench.paths import home_subdir
from detbench.records import read_json

ID_COLUMNS = ["detector", "backbone", "protocol", "perturbation", "config_hash", "run_id"]


def run_records(suite: str | None = None, runs_root: Path | None = None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Finished runs (those with a run.json), optionally of one suite, oldest first."""
    root = runs_root or home_subdir("runs")
    pattern = f"{suite}/*/*/run.json" if suite else "*/*/*/run.json"
    found = []
    for path in root.glob(pattern):
        try:
            record = read_json(path)
        except (OSError, ValueError):
            continue
        if record.get("status") == "complete":
            found.append((path.parent, record))
    yield from sorted(found, key=lambda item: item[1].get("created", ""))


def _perturbation_label(record: dict[str, Any]) -> str:
    p = record.get("perturbation")
    return "clean" if not p else str(p.get("spec", p))


def long_table(suite: str, runs_root: Path | None = None) -> pd.DataFrame:
    frames = []
    for run_dir, record in run_records(suite, runs_root):
        metrics = pd.read_parquet(run_dir / "metrics.parquet")
        metrics = metrics.melt(id_vars=["generator"], var_name="metric", value_name="value")
        for col, value in _id_values(record).items():
            metrics.insert(0, col, value)
        frames.append(metrics)
    if not frames:
        return pd.DataFrame(columns=["suite", *ID_COLUMNS, "generator", "metric", "value"])
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "suite", suite)
    return out


def _id_values(record: dict[str, Any]) -> dict[str, Any]:
    values = {
        "detector": record["detector"],
        "backbone": record.get("backbone") or "",
        "protocol": record.get("protocol", ""),
        "perturbation": _perturbation_label(record),
        "config_hash": record.get("config_hash", ""),
        "run_id": record["run_id"][:16],
    }
    return dict(reversed(list(values.items())))


def wide_table(long: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """One row per run, one column per generator (then mean, worst) for ``metric``."""
    subset = long[long["metric"] == metric]
    if subset.empty:
        return pd.DataFrame(columns=ID_COLUMNS)
    wide = subset.pivot(index=ID_COLUMNS, columns="generator", values="value")
    generators = [g for g in wide.columns if g not in ("mean", "worst")]
    wide = wide[generators + [c for c in ("mean", "worst") if c in wide.columns]]
    wide = wide.reset_index().sort_values(["protocol", "perturbation", "mean"], ascending=[True, True, False])
    wide.columns.name = None
    return wide.reset_index(drop=True)


def write_csvs(suite: str, out_dir: Path, metric: str = "acc", runs_root: Path | None = None) -> tuple[Path, Path]:
    """Write ``<suite>_leaderboard.csv`` (wide, ``metric``) and ``<suite>_leaderboard_long.csv`` atomically."""
    from detbench.records import atomic_path

    long = long_table(suite, runs_root)
    wide = wide_table(long, metric)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / f"{suite}_leaderboard.csv", out_dir / f"{suite}_leaderboard_long.csv")
    for df, path in zip((wide, long), paths, strict=True):
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
    return paths
