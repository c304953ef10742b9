"""Chronological series read back: one row per window run (what trained, what was tested, the mean scores), and
the grouping of a suite's window runs into series for the report's accuracy-over-time chart.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from detbench.engine.record import detector_label, record_seed
from detbench.results.leaderboard import threshold_label

CHRONO_METRICS = ("acc", "ap", "auc")


def chrono_facts(record: dict[str, Any]) -> dict[str, Any] | None:
    """The chronological window a run evaluated, or None for a run of another protocol.

    Args:
        record: a run record.

    Returns:
        Its ``protocol_facts`` when they describe a ``chrono`` window.
    """
    facts = record.get("protocol_facts") or {}
    return facts if facts.get("kind") == "chrono" else None


def chrono_frame(runs: Sequence[Any]) -> pd.DataFrame:
    """One row per window run, in time order: window, cut, the training and tested generators with their release
    months, the mean acc, AP and AUC over the tested (later) generators, and the run id.

    Args:
        runs: finished runs (:class:`~detbench.engine.finished_run.Run`) of chronological windows; others are
            left out.

    Returns:
        The table (fractions).
    """
    rows = []
    for run in runs:
        facts = chrono_facts(run.record)
        if facts is None:
            continue
        mean = run.metrics.set_index("generator").loc["mean"]
        rows.append({
            "window": facts["window"],
            "cut": facts["cut"],
            "train": _by_release(facts["train"]),
            "test": _by_release(facts["test"]),
            **{f"mean {m}": float(mean[m]) for m in CHRONO_METRICS},
            "run": run.record["run_id"][:16],
        })
    frame = pd.DataFrame(rows)
    return frame.sort_values(["cut", "window"], kind="stable").reset_index(drop=True) if len(frame) else frame


def _by_release(months: dict[str, str]) -> str:
    """``gen (YYYY-MM), ...`` in release order (records store their keys sorted by name)."""
    return ", ".join(f"{g} ({m})" for g, m in sorted(months.items(), key=lambda item: (item[1], item[0])))


def series_key(record: dict[str, Any]) -> str:
    """The series a chronological window run belongs to: runs that differ only in their window share it.

    Args:
        record: a run record of a chronological window.

    Returns:
        A label: the detector, its settings, seed, threshold and whether the windows slide or grow.
    """
    facts = chrono_facts(record) or {}
    settings = json.dumps(record.get("settings") or {}, sort_keys=True)
    kind = "sliding" if facts.get("start") else "growing"
    return (f"{detector_label(record)} {record.get('config_hash', '')} {settings if settings != '{}' else ''} "
            f"seed {record_seed(record)} thr {threshold_label(record)} {kind}").replace("  ", " ")


def chrono_series(runs: Sequence[Any]) -> dict[str, list[Any]]:
    """Clean window runs grouped by :func:`series_key`, each group in time order.

    Args:
        runs: finished runs.

    Returns:
        Series label -> its runs.
    """
    groups: dict[str, list[Any]] = {}
    for run in runs:
        if chrono_facts(run.record) is not None and not run.record.get("perturbation"):
            groups.setdefault(series_key(run.record), []).append(run)
    return {k: sorted(v, key=lambda r: chrono_facts(r.record)["cut"]) for k, v in groups.items()}
