"""Rich tables for metrics and leaderboards (formatting only; no computation)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.table import Table

METRIC_COLUMNS = ["n_real", "n_fake", "acc", "real_acc", "fake_acc", "ap", "auc", "eer", "oracle_acc"]
HEADERS = {
    "n_real": "#real",
    "n_fake": "#fake",
    "real_acc": "real acc",
    "fake_acc": "fake acc",
    "oracle_acc": "oracle*",
}
PERCENT = {"acc", "real_acc", "fake_acc", "balanced_acc", "ap", "auc", "eer", "oracle_acc"}


def fmt(value: Any, metric: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "n/a"
    if metric.startswith("n_"):
        return str(int(value))
    if metric in PERCENT or metric == "":
        return f"{100 * float(value):.1f}"
    return f"{float(value):.3g}"


def metrics_table(metrics: pd.DataFrame, title: str) -> Table:
    """Per-generator metrics in %, mean and worst rows last; oracle columns are labelled as such."""
    table = Table(title=title, title_justify="left")
    table.add_column("generator", style="bold", no_wrap=True)
    for col in METRIC_COLUMNS:
        if col in metrics.columns:
            header = HEADERS.get(col, col)
            table.add_column(header, justify="right", no_wrap=True)
    for _, row in metrics.iterrows():
        style = "bold cyan" if row["generator"] in ("mean", "worst") else None
        cells = [fmt(row[c], c) + _ci(row, c) for c in METRIC_COLUMNS if c in metrics.columns]
        table.add_row(str(row["generator"]), *cells, style=style)
    table.caption = (
        "% ; acc at threshold 0.5; n/a: undefined (one class absent);\n"
        "*oracle: best threshold chosen with test labels (an upper bound, not deployable)"
    )
    return table


def _ci(row: pd.Series, metric: str) -> str:
    lo, hi = row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return ""
    return f" ±{100 * (hi - lo) / 2:.1f}"


def frame_table(df: pd.DataFrame, title: str, percent_from: int = 0) -> Table:
    """A plain DataFrame as a rich table; numeric columns from ``percent_from`` on are shown in %."""
    table = Table(title=title, title_justify="left")
    for col in df.columns:
        table.add_column(str(col), justify="right" if df.columns.get_loc(col) >= percent_from else "left")
    for _, row in df.iterrows():
        cells = []
        for i, value in enumerate(row.tolist()):
            numeric = isinstance(value, float) and i >= percent_from
            cells.append(fmt(value) if numeric else ("" if value is None else str(value)))
        table.add_row(*cells)
    return table


def index_summary(idx: Any) -> list[Table]:
    """Counts per generator/split/label, formats, size ranges and problems of an :class:`Index`."""
    df = idx.rows
    counts = Table(
        title=f"{idx.manifest['suite']['suite']} index: {len(df)} files under {idx.root}", title_justify="left"
    )
    for col in ("generator", "split", "real", "fake", "formats", "sizes (w×h)", "problems"):
        counts.add_column(col, justify="right" if col in ("real", "fake", "problems") else "left")
    for (gen, split), group in df.groupby(["generator", "split"], sort=True):
        ok = group[group["status"] == "ok"]
        formats = ", ".join(f"{k} {v}" for k, v in ok["format"].value_counts().items())
        sizes = (
            "" if ok.empty else (f"{ok['width'].min()}–{ok['width'].max()} × {ok['height'].min()}–{ok['height'].max()}")
        )
        counts.add_row(
            gen,
            split,
            str(int((ok["label"] == 0).sum())),
            str(int((ok["label"] == 1).sum())),
            formats,
            sizes,
            str(int((group["status"] != "ok").sum())),
        )
    tables = [counts]
    bad = df[df["status"] != "ok"]
    if not bad.empty:
        problems = Table(title=f"{len(bad)} unusable files (kept in the index, skipped by runs)", title_justify="left")
        for col in ("status", "count", "example", "reason"):
            problems.add_column(col)
        for status, group in bad.groupby("status"):
            first = group.iloc[0]
            problems.add_row(str(status), str(len(group)), str(first["path"]), str(first["reason"]))
        tables.append(problems)
    return tables
