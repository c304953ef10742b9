"""Rich tables for metrics and leaderboards (formatting only; no computation)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.table import Table

from detbench.metrics import SUMMARY_ROWS

# The per-generator metrics tables show (terminal and HTML report alike), in order, with their headers.
METRIC_HEADERS = {
    "n_real": "#real",
    "n_fake": "#fake",
    "acc": "acc",
    "real_acc": "real acc",
    "fake_acc": "fake acc",
    "ap": "AP",
    "auc": "AUC",
    "eer": "EER",
    "oracle_acc": "oracle acc*",
}
METRIC_COLUMNS = list(METRIC_HEADERS)
# Operating points and calibration (the report's second metrics table), with their headers.
CALIBRATION_HEADERS = {
    "tpr_at_fpr_1": "TPR@FPR 1%",
    "tpr_at_fpr_5": "TPR@FPR 5%",
    "tpr_at_fpr_10": "TPR@FPR 10%",
    "ece": "ECE",
    "brier": "Brier",
    "nll": "NLL",
}
PERCENT = {
    "acc", "real_acc", "fake_acc", "balanced_acc", "ap", "auc", "eer", "oracle_acc", "tpr_at_fpr_1", "tpr_at_fpr_5",
    "tpr_at_fpr_10", "ece",
}  # fmt: skip  # shown in %; Brier and NLL are shown as they are


def fmt(value: Any, metric: str = "") -> str:
    """A metric value as table text.

    Args:
        value: the value (None, NaN or ``pd.NA`` for undefined).
        metric: the metric's name: ``n_*`` counts are shown as integers, percentage metrics (and an empty
            name) in % with one decimal, others with 3 significant digits.

    Returns:
        The text; ``n/a`` when undefined.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "n/a"
    if metric.startswith("n_"):
        return str(int(value))
    if metric in PERCENT or metric == "":
        return f"{100 * float(value):.1f}"
    return f"{float(value):.3g}"


def metrics_table(metrics: pd.DataFrame, title: str, threshold: str = "threshold 0.5") -> Table:
    """Per-generator metrics in %, mean and worst rows last; oracle columns are labelled as such.

    Args:
        metrics: one row per generator (and summary rows), the columns of :data:`METRIC_HEADERS` present and
            optional ``<metric>_lo``/``<metric>_hi`` bootstrap bounds (shown as ±half-width).
        title: the table title.
        threshold: describes the decision threshold of acc/real acc/fake acc (shown in the caption).

    Returns:
        The rich table.
    """
    table = Table(title=title, title_justify="left", caption_justify="left")
    table.add_column("generator", style="bold", no_wrap=True)
    for col in METRIC_COLUMNS:
        if col in metrics.columns:
            header = METRIC_HEADERS[col]
            table.add_column(header, justify="right", no_wrap=True)
    for _, row in metrics.iterrows():
        style = "bold cyan" if row["generator"] in SUMMARY_ROWS else None
        cells = [fmt(row[c], c) + _ci(row, c) for c in METRIC_COLUMNS if c in metrics.columns]
        table.add_row(str(row["generator"]), *cells, style=style)
    ci = "; ±: half-width of the 95% bootstrap interval" if "acc_lo" in metrics.columns else ""
    table.caption = (
        f"% ; acc at {threshold}{ci}; n/a: undefined (one class absent);\n"
        "*oracle: best threshold chosen with test labels (an upper bound, not deployable)"
    )
    return table


def _ci(row: pd.Series, metric: str) -> str:
    lo, hi = row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return ""
    return f" ±{100 * (hi - lo) / 2:.1f}"


def frame_table(df: pd.DataFrame, title: str, percent_from: int = 0, whole: tuple[str, ...] = ()) -> Table:
    """A plain DataFrame as a rich table; numeric columns from ``percent_from`` on are shown in %.

    Args:
        df: the frame to show.
        title: the table title.
        percent_from: the position of the first column whose float values are shown in % (right-aligned).
        whole: columns never wrapped or cut in a narrow terminal (the others give way).

    Returns:
        The rich table.
    """
    table = Table(title=title, title_justify="left")
    for col in df.columns:
        table.add_column(str(col), justify="right" if df.columns.get_loc(col) >= percent_from else "left",
                         no_wrap=col in whole, min_width=len(str(col)) if col in whole else None)
    for _, row in df.iterrows():
        cells = []
        for i, value in enumerate(row.tolist()):
            numeric = isinstance(value, float) and i >= percent_from
            cells.append(fmt(value) if numeric else ("" if value is None else str(value)))
        table.add_row(*cells)
    return table


def fmt_delta(value: Any, metric: str = "") -> str:
    """A difference as table text: of a percentage metric (or with no name) in signed percentage points
    (``+1.2``, ``-3.4``), of another metric signed with 3 significant digits; n/a if undefined.

    Args:
        value: the difference (None or NaN: undefined).
        metric: the metric's name.

    Returns:
        The text.
    """
    if value is None or pd.isna(value):
        return "n/a"
    if metric and metric not in PERCENT:
        return f"{float(value):+.3g}"
    return f"{100 * float(value):+.1f}"


def unit_note(metric: str, delta: bool = False) -> str:
    """The unit of a metric's values (or of their differences) in a table title.

    Args:
        metric: the metric's name.
        delta: the values are differences.

    Returns:
        ``%`` / ``Δ percentage points`` for a percentage metric, else ``value`` / ``Δ``.
    """
    if metric in PERCENT:
        return "Δ percentage points" if delta else "%"
    return "Δ" if delta else "value"


def threshold_note(record: dict[str, Any]) -> str:
    """How acc was thresholded in a run, for table captions and reports.

    Args:
        record: a run record (its ``threshold`` entry: ``policy`` and ``value``).

    Returns:
        ``threshold 0.5``, or ``calibrated threshold V (...)`` for a calibrated policy.
    """
    t = record.get("threshold") or {}
    value = t.get("value", 0.5)
    if t.get("policy") == "calibrated":
        return f"calibrated threshold {value:.3g} (best balanced acc on the training generator's held-out)"
    return f"threshold {value:g}"


# A run's cost (detbench.results.leaderboard.with_cost) as tables show it: the columns shown, with their headers.
COST_HEADERS = {
    "params": "params",
    "params_trainable": "trainable",
    "gflops_per_image": "GFLOPs/image",
    "images_per_s": "images/s",
    "peak_memory_mib": "peak memory",
    "cost_device": "measured on",
}
COST_NOTE = (
    "cost: measured on each run's own machine (not part of the run id): parameters (trainable: those its training "
    "updates); GFLOPs of scoring one image, counted by torch's FLOP counter (matrix products and convolutions); "
    "images/s of the evaluation's scoring phase; peak memory: CUDA allocated during the run, or the peak resident "
    "set (RSS) of the process that ran it"
)


def fmt_count(value: Any) -> str:
    """A parameter count as table text: ``3.37M``, ``1.28k``, ``0``; n/a when undefined.

    Args:
        value: the count (None or NaN: undefined).

    Returns:
        The text, with 3 significant digits above a thousand.
    """
    if value is None or pd.isna(value):
        return "n/a"
    value = float(value)
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"


def fmt_cost(column: str, value: Any, kind: str = "") -> str:
    """One cost cell as table text.

    Args:
        column: a column of :data:`COST_HEADERS`.
        value: its value (None or NaN: n/a).
        kind: for ``peak_memory_mib``, what was measured (``RSS``, ``CUDA allocated``).

    Returns:
        Counts as :func:`fmt_count`, GFLOPs and images/s with 3 significant digits (images/s above 1000 whole),
        peak memory in GiB with its kind, the device as it is.
    """
    if column == "cost_device":
        return "" if value is None or pd.isna(value) else str(value)
    if value is None or pd.isna(value):
        return "n/a"
    if column in ("params", "params_trainable"):
        return fmt_count(value)
    if column == "peak_memory_mib":
        return f"{float(value) / 1024:.2f} GiB {kind}".strip()
    if column == "images_per_s" and float(value) >= 1000:
        return f"{float(value):.0f}"
    return f"{float(value):.3g}"


def cost_note(view: pd.DataFrame) -> str:
    """What a leaderboard's cost columns mean, and why the n/a ones are n/a.

    Args:
        view: a leaderboard with the cost columns (:func:`detbench.results.leaderboard.with_cost`).

    Returns:
        :data:`COST_NOTE`, then each distinct reason with the runs it applies to.
    """
    reasons: dict[str, list[str]] = {}
    for run, why in zip(view["run_id"], view["cost_na"].fillna(""), strict=True):
        if why:
            reasons.setdefault(str(why), []).append(str(run)[:8])
    parts = [f"n/a for {', '.join(runs)}: {why}" for why, runs in reasons.items()]
    return "; ".join([COST_NOTE, *parts])


def leaderboard_cells(
    wide: pd.DataFrame, id_columns: list[str], deltas: bool = False, metric: str = "acc"
) -> pd.DataFrame:
    """A wide leaderboard as display strings: internal ids dropped, values in the metric's unit, deltas signed.

    Args:
        wide: the wide leaderboard (id columns first, then one column per value).
        id_columns: the columns shown as text.
        deltas: every value column holds differences (the delta view); otherwise only ``mean_delta`` is signed.
        metric: the metric the values are of (percentage metrics in %, Brier and NLL as they are; see :func:`fmt`).

    Returns:
        The frame of strings (``run_id`` renamed ``run``, ``mean_delta`` renamed ``Δ mean``; ``flags`` only when
        some run has one); the ``mean`` and ``worst`` of a row covering fewer generators than the rows beside it say
        so: ``82.1 (3 of 24)``; a value that does not beat the shortcut floor's (``wide.attrs["below_floor"]``)
        ends ``↓``. Cost columns, when present, are shown under :data:`COST_HEADERS` (:func:`fmt_cost`; the reasons
        for n/a are :func:`cost_note`'s).
    """
    from detbench.results.leaderboard import BELOW_FLOOR, partial_generators

    below = wide.attrs.get(BELOW_FLOOR) or {}
    marks = [set(below.get(r, ())) for r in wide["run_id"]] if "run_id" in wide else [set()] * len(wide)
    hidden = ["config_hash", "fit_id", "seed_group"]
    shown = wide.drop(columns=hidden, errors="ignore").rename(columns={"run_id": "run"})
    if "flags" in shown and not shown["flags"].fillna("").astype(str).str.len().any():
        shown = shown.drop(columns=["flags"])  # shown only when some run is flagged
    if "seeds" in shown and set(shown["seeds"].astype(str)) <= {"0", ""}:
        shown = shown.drop(columns=["seeds"])  # shown only when some run has another seed or rows group seeds
    ids = [c for c in shown.columns if c in id_columns or c == "run"]
    out = shown[ids].astype(str)
    partial = shown["coverage"].map(partial_generators) if "coverage" in shown else pd.Series(None, shown.index)
    for col in shown.columns[len(ids) :]:
        if col in COST_HEADERS:
            kinds = shown.get("peak_memory_kind", pd.Series("", shown.index)).fillna("").astype(str)
            out[col] = [fmt_cost(col, v, k) for v, k in zip(shown[col], kinds, strict=True)]
            continue
        if col in ("peak_memory_kind", "cost_na"):  # said in the memory cells and the cost note
            continue
        signed = deltas or col == "mean_delta"
        if col == "mean_sd":
            out[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"±{fmt(v, metric)}")
            continue
        if col == "avg_rank":
            out[col] = shown[col].map(lambda v: "n/a" if pd.isna(v) else f"{v:.2f}")
            continue
        out[col] = shown[col].map(lambda v, s=signed: fmt_delta(v, metric) if s else fmt(v, metric))
        if col in SUMMARY_ROWS:
            out[col] = [v if part is None or v == "n/a" else f"{v} ({part[0]} of {part[1]})"
                        for v, part in zip(out[col], partial, strict=True)]
        out[col] = [f"{v} ↓" if col in m else v for v, m in zip(out[col], marks, strict=True)]
    return out.rename(columns={"mean_delta": "Δ mean", "avg_rank": "avg rank", "mean_sd": "sd (seeds)",
                               **COST_HEADERS})


def friedman_note(test: dict[str, Any], n_unranked: int = 0) -> str:
    """One line about a ranking (:func:`detbench.results.leaderboard.ranked_view`'s ``attrs["friedman"]``).

    Args:
        test: the Friedman test as a dict (n, k, chi2, p_value, f, p_f, cd, alpha).
        n_unranked: runs left out of the ranking (no value for some generator).

    Returns:
        The text.
    """
    left_out = f"; {n_unranked} runs without a value for every generator are not ranked" if n_unranked else ""
    f_form = (
        f"Iman–Davenport F = {test['f']:.2f}, p = {test['p_f']:.3g}"
        if math.isfinite(test["f"])
        else "every generator ranks the runs alike"
    )
    return (
        f"Average rank over {test['n']} generators (1 = best) of {test['k']} runs: Friedman χ² = {test['chi2']:.2f}, "
        f"p = {test['p_value']:.3g} ({f_form}); Nemenyi critical "
        f"difference at α = {test['alpha']:g}: {test['cd']:.2f} (two runs whose average ranks differ by more differ "
        f"significantly){left_out}"
    )


def markdown_table(df: pd.DataFrame, right_from: int = 0) -> str:
    """A GitHub-flavoured Markdown table of ``df`` as given (format the values first).

    Args:
        df: the frame; cells are written with ``str`` (``|`` escaped, newlines as spaces).
        right_from: the position of the first right-aligned column.

    Returns:
        The table, ending in a newline.
    """

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---:" if i >= right_from else ":---" for i in range(len(df.columns))) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def robustness_table(frame: pd.DataFrame, title: str) -> Table:
    """A sweep's rows (perturbation, mean acc/AP and their deltas vs clean, fit reuse, run id).

    Args:
        frame: one row per perturbation; ``Δ`` columns hold differences, the ``clean`` row is shown in bold.
        title: the table title.

    Returns:
        The rich table.
    """
    table = Table(title=title, title_justify="left", caption_justify="left")
    for col in frame.columns:
        table.add_column(col, justify="left" if col in ("perturbation", "fit", "run") else "right")
    for _, row in frame.iterrows():
        cells = [
            fmt_delta(v) if c.startswith("Δ") else fmt(v) if isinstance(v, float) else str(v)
            for c, v in row.items()
        ]
        table.add_row(*cells, style="bold" if row["perturbation"] == "clean" else None)
    table.caption = "% ; Δ: percentage points vs the clean run of the same trained fit"
    return table


def _median_quality(rows: pd.DataFrame) -> str:
    q = pd.to_numeric(rows["jpeg_quality"], errors="coerce").dropna()
    return "–" if q.empty else f"{q.median():g}"


def index_summary(df: pd.DataFrame) -> list[Table]:
    """Counts per generator/split/label, formats, size ranges and problems of an index.

    Args:
        df: the index rows as :func:`detbench.api.index` returns them (``attrs``: ``root`` and ``manifest``).

    Returns:
        The counts table, and a table of unusable files by status when there are any.
    """
    counts = Table(
        title=f"{df.attrs['manifest']['suite']['suite']} index: {len(df)} files under {df.attrs['root']}",
        title_justify="left",
    )
    columns = ("generator", "split", "real", "fake", "formats", "JPEG Q real/fake", "sizes (w×h)", "problems")
    for col in columns:
        counts.add_column(col, justify="right" if col in ("real", "fake", "problems") else "left")
    counts.caption = (
        "JPEG Q: median estimated JPEG quality of the JPEG files (– none). To compare real and fake on equal "
        "format, evaluate with --perturb jpeg:Q at the reals' Q (re-encodes both classes) or jpeg:Q@fake "
        "(re-encodes the fakes only)."
    )
    counts.caption_justify = "left"
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
            " / ".join(_median_quality(ok[ok["label"] == label]) for label in (0, 1)),
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


def leaderboard_tables(
    shown: pd.DataFrame, n_ids: int, title: str, max_value_columns: int = 6, width: int | None = None
) -> list[Table]:
    """The leaderboard for a terminal, readable with many generators.

    As is when narrow; else a legend of runs (r1, r2, ...) and a transposed table (one row per generator, one
    column per run) that stays readable with 19 domains.

    Args:
        shown: the leaderboard as display strings (:func:`leaderboard_cells`).
        n_ids: how many leading columns identify a run.
        title: the tables' title.
        max_value_columns: the most value columns shown untransposed.
        width: the terminal's width: a table wider than that is shown as legend and values (None: no limit).

    Returns:
        One table, or the legend and the transposed values. Identifying columns empty in every row are left out,
        and those with one value in every row (of several) are named once, in the title.
    """
    empty = [c for c in shown.columns[:n_ids] if not shown[c].astype(str).str.strip().any()]
    same = [c for c in shown.columns[:n_ids] if len(shown) > 1 and c not in (*empty, "detector", "run")
            and shown[c].nunique() == 1]  # said once, in the title
    note = "\nevery row: " + "; ".join(f"{c} {shown[c].iloc[0]}" for c in same) if same else ""
    shown, n_ids = shown.drop(columns=empty + same), n_ids - len(empty) - len(same)
    natural = 1 + sum(3 + max([len(str(c)), *(len(str(v)) for v in shown[c])]) for c in shown.columns)
    if len(shown.columns) - n_ids <= max_value_columns and (width is None or natural <= width):
        return [frame_table(shown, title + note, percent_from=n_ids)]
    keys = [f"r{i + 1}" for i in range(len(shown))]
    legend = Table(title=f"{title}: runs{note}", title_justify="left")
    legend.add_column("key", style="bold")
    for col in shown.columns[:n_ids]:
        legend.add_column(str(col), overflow="fold")
    for key, (_, row) in zip(keys, shown.iterrows(), strict=True):
        legend.add_row(key, *[str(v) for v in row.iloc[:n_ids]])
    values = Table(title=f"{title}: values", title_justify="left")
    values.add_column("generator", style="bold", no_wrap=True)
    for key in keys:
        values.add_column(key, justify="right", no_wrap=True)
    for col in shown.columns[n_ids:]:
        style = "bold cyan" if col in (*SUMMARY_ROWS, "Δ mean") else None
        values.add_row(str(col), *[str(v) for v in shown[col]], style=style)
    return [legend, values]
