"""Self-contained HTML reports of runs: charts as embedded PNGs (no network, no JavaScript), plus the PNGs.

``build_report("61b3dc4b")`` reports one run; ``build_report("demo")`` reports every clean run of a suite.
Each run section holds its facts and per-generator metrics, accuracy/AP bars with bootstrap intervals,
ROC curves, real-vs-fake score histograms, operating points and calibration with a reliability diagram and, when
perturbed runs of the same fit exist, robustness curves (metric vs perturbation level) and their table; the suite's
leaderboard closes the report.
This module assembles the page; the charts are drawn by :mod:`detbench.results.figures`, the only module that
imports matplotlib (Agg, no pyplot).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detbench.engine import layout
from detbench.engine.finished_run import Run
from detbench.engine.record import detector_label, load_run_record
from detbench.metrics import SUMMARY_ROWS
from detbench.paths import home_subdir, keep_matplotlib_in_home
from detbench.results.chrono import chrono_facts, chrono_frame, chrono_series, series_key
from detbench.results.display import (
    CALIBRATION_HEADERS,
    METRIC_HEADERS,
    cost_note,
    fmt,
    fmt_delta,
    leaderboard_cells,
    threshold_note,
)
from detbench.results.figures import (
    Figure,
    acc_figure,
    chrono_figure,
    histogram_figure,
    reliability_figure,
    robustness_figure,
    roc_figure,
)
from detbench.results.leaderboard import (
    FLAGS_NOTE,
    FLOOR_COLUMN,
    FLOOR_NOTE,
    ID_COLUMNS,
    VIEW_ID_COLUMNS,
    RunLookupError,
    find_run,
    floor_facts,
    long_table,
    perturbation_rank,
    run_records,
    threshold_label,
    wide_table,
    with_cost,
    with_floor,
)
from detbench.store import atomic_path
from detbench.version import __version__

REPORTED_OUTPUTS = layout.RUN_OUTPUTS  # checked before a run is reported: the same runs as the leaderboard's




def build_report(target: str, out_dir: Path | None = None, by: str | None = None) -> Path:
    """Write ``report.html`` and its PNGs for a run (id prefix) or a suite (name).

    Args:
        target: a run id (or a unique prefix of one), or a suite name (its latest clean run per fit), or the folder
            of a run or of a suite's runs under ``$DETBENCH_HOME/runs``.
        out_dir: where to write; None: ``$DETBENCH_HOME/reports/<run or suite>``.
        by: add each reported run's metrics per generator and slice of its index (``format``, ``jpeg_quality``,
            ``size`` or ``meta_COLUMN[:BINS]``, :mod:`detbench.results.slices`).

    Returns:
        The path of ``report.html``.

    Raises:
        RunLookupError: no finished run matches ``target``, or it names another folder.
        DamagedRunError: the run's record or outputs no longer match what it recorded.
    """
    from detbench.results.slices import parse_by

    parse_by(by)
    keep_matplotlib_in_home()
    kind, target = _target(target)
    if kind == "suite":
        suite = name = target
        records = list(run_records(suite, verify=REPORTED_OUTPUTS))
        if not records:
            raise RunLookupError(
                f"no finished runs for suite {suite!r}; run `detbench run DETECTOR --suite {suite}`"
            )
        shown = [Run(d, r) for d, r in _latest_clean(records)]
        title = f"detbench report: suite {suite}"
    else:
        run_dir, record = find_run(target)
        load_run_record(run_dir, verify=REPORTED_OUTPUTS)  # a damaged run fails here, naming what is wrong
        suite, name = record["suite"], run_dir.name
        records = list(run_records(suite, verify=REPORTED_OUTPUTS))
        shown = [Run(run_dir, record)]
        title = f"detbench report: {detector_label(record)} on {suite}, run {name}"
    out_dir = Path(out_dir) if out_dir is not None else home_subdir("reports") / name
    out_dir.mkdir(parents=True, exist_ok=True)
    sections, figures = [], []
    for run in shown:
        related = [Run(d, r) for d, r in _same_fit(run.record, records)]
        section, figs = _run_section(run, related)
        sections.append(section + (_slices_html(run, by) if by else ""))
        figures.extend(figs)
    window_runs = [Run(d, r) for d, r in records if chrono_facts(r) is not None]
    if kind == "run":  # the series of the run reported, if it is a window of one
        window_runs = [r for r in window_runs if chrono_facts(record) and series_key(r.record) == series_key(record)]
    if window_runs:
        section, figs = _chrono_section(name, window_runs)
        sections.append(section)
        figures.extend(figs)
    board, board_figures = _leaderboard_section(suite)
    sections.append(board)
    figures.extend(board_figures)
    for fig in figures:
        with atomic_path(out_dir / f"{fig.name}.png") as tmp:
            tmp.write_bytes(fig.png)
    page = _page(title, _suite_summary(suite), sections)
    path = out_dir / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def _target(target: str) -> tuple[str, str]:
    """``("suite", name)`` or ``("run", id prefix)`` for what ``build_report`` was given: a suite name, a run id, or
    the folder of a suite's or a run's results under the runs folder.
    """
    from detbench.registry import SUITES

    text = str(target).strip()
    if not text:
        raise RunLookupError("give a run id (or its first characters) or a suite name; see `detbench ls runs`")
    if text in SUITES:
        return "suite", text
    runs = layout.runs_root()
    if "/" in text or os.sep in text or text in (".", "..") or text.startswith("~"):  # a path
        folder = Path(text).expanduser()
        if folder.is_dir():
            folder = folder.resolve()
            if (folder / layout.RUN_RECORD).is_file() and folder.parent.parent.parent == runs.resolve():
                return "run", folder.name
            if folder.parent == runs.resolve():
                return "suite", folder.name
        raise RunLookupError(
            f"{text} is neither a run id nor a suite name, nor the folder of a run or a suite under {runs}; give a "
            "run id (see `detbench ls runs`) or a suite name, and the folder to write into with --out"
        )
    if (runs / text).is_dir():  # a suite whose plugin is not installed: its runs are still there
        return "suite", text
    return "run", text


def _latest_clean(records: list[tuple[Path, dict[str, Any]]]) -> list[tuple[Path, dict[str, Any]]]:
    """The latest clean run per (fit, threshold policy), in creation order."""
    latest: dict[tuple[str, str], tuple[Path, dict[str, Any]]] = {}
    for run_dir, record in records:
        if not record.get("perturbation"):
            latest[(record.get("fit_id", ""), threshold_label(record))] = (run_dir, record)
    return list(latest.values())


def _same_fit(record: dict[str, Any], records: list[tuple[Path, dict[str, Any]]]) -> list[tuple[Path, dict]]:
    """Runs scored by the same trained fit with the same threshold policy (latest per perturbation)."""
    key = (record.get("fit_id"), threshold_label(record))
    by_spec: dict[str, tuple[Path, dict[str, Any]]] = {}
    for run_dir, other in records:
        if (other.get("fit_id"), threshold_label(other)) == key:
            by_spec[(other.get("perturbation") or {}).get("spec", "clean")] = (run_dir, other)
    return list(by_spec.values())


def _suite_summary(suite: str) -> str:
    from detbench.registry import SUITES

    return SUITES.describe(suite)["summary"] if suite in SUITES else ""


# ------------------------------------------------------------------------------------------- sections


def _run_section(run: Run, related: list[Run]) -> tuple[str, list[Figure]]:
    scores = pd.read_parquet(run.path / "scores.parquet")
    scores = scores[np.isfinite(scores["score"])]
    threshold = float(run.record["threshold"]["value"])
    figures = [
        acc_figure(run),
        roc_figure(run.name, scores),
        histogram_figure(run.name, scores, threshold, run.record),
        reliability_figure(run.name, scores, run.metrics),
    ]
    clean = next((r for r in related if r.perturbation == "clean"), None)
    perturbed = [r for r in related if r.perturbation != "clean"]
    robustness = ""
    if clean is not None and perturbed:
        figure = robustness_figure(run.name, clean, perturbed)
        if figure is not None:
            figures.append(figure)
        robustness = (
            "<h3>Robustness (same trained fit, evaluation-time perturbations)</h3>"
            + _robustness_table(clean, perturbed)
        )
    rec = run.record
    heading = f"{detector_label(rec)} · {rec['protocol']} · {run.perturbation} · run {run.name}"
    n_boot = (rec.get("bootstrap") or {}).get("n_boot", 0)
    ci = (
        f"± is the half-width of the 95% bootstrap interval ({n_boot} class-stratified resamples)"
        if n_boot
        else "no bootstrap intervals (--bootstrap 0)"
    )
    body = [
        f'<section id="run-{run.name}"><h2>{_e(heading)}</h2>',
        _facts(rec),
        "<h3>Metrics per generator (%)</h3>",
        _metrics_html(run.metrics),
        f'<p class="note">acc, real acc and fake acc at the {_e(threshold_note(rec))}; {ci}; '
        "*oracle: threshold chosen with test labels (an upper bound, not deployable).</p>",
    ]
    body.append('<div class="row">' + "".join(_figure_html(f) for f in figures[:2]) + "</div>")
    body.append(_figure_html(figures[2]))
    body += [
        "<h3>Operating points and calibration per generator</h3>",
        _metrics_html(run.metrics, CALIBRATION_HEADERS),
        '<p class="note">TPR@FPR x%: the largest share of fakes caught while at most x% of reals are called fake '
        "(over every threshold of the ROC, no interpolation); ECE (15 equal-width bins of P(fake)), Brier score and "
        "NLL (P(fake) clipped to [1e-7, 1 - 1e-7]): lower is better; n/a: one class absent.</p>",
        _figure_html(figures[3]),
    ]
    if robustness:
        body.append(robustness)
        body += [_figure_html(f) for f in figures[4:]]
    body.append("</section>")
    return "\n".join(body), figures


def _facts(rec: dict[str, Any]) -> str:
    counts = rec.get("counts", {})
    fit = rec.get("fit", {})
    trained = "reused" if fit.get("reused") else "trained by this run"
    source = rec.get("source", {})
    env = rec.get("environment", {})
    facts = {
        "detector": detector_label(rec),
        "backbone": rec.get("backbone") or "",
        "suite / protocol": f"{rec['suite']} / {rec['protocol']}",
        "trained on": ", ".join(rec.get("key", {}).get("protocol", {}).get("train_generators", [])),
        "perturbation": (rec.get("perturbation") or {}).get("spec", "none (clean)"),
        "acc computed at": threshold_note(rec),
        "images": f"train {counts.get('train', {}).get('used', '?')}, held-out {counts.get('heldout', '?')}, "
        f"evaluation skipped {counts.get('eval_skipped', 0)}",
        "fit": f"{str(rec.get('fit_id', ''))[:16]} ({trained})",
        "run id": rec["run_id"],
        "created": rec.get("created", ""),
        "source": f"detbench {rec.get('key', {}).get('detbench_version', '?')}, commit "
        f"{str(source.get('commit'))[:12]}{' (dirty)' if source.get('dirty') else ''}",
        "device": f"{env.get('device', '?')} {env.get('gpu', '')}".strip(),
        "cost": _cost_fact(rec),
    }
    if rec.get("settings"):
        facts["settings"] = ", ".join(f"{k}={v}" for k, v in rec["settings"].items())
    copies = counts.get("copies_of_training") or {}
    if copies.get("eval"):
        facts["copies of training images"] = (
            f"{copies['eval']} evaluation images are byte-identical copies of training images (other files, same "
            "bytes): their scores measure memory as much as detection"
        )
    near = counts.get("near_duplicates_of_training") or {}
    if near.get("eval"):
        shown = "; ".join(f"{x['eval']} ~ {x['train']} ({x['distance']} bits)" for x in near.get("examples", []))
        facts["near-duplicates of training images"] = (
            f"{near['eval']} evaluation images are near-duplicates of training images (perceptual hash within "
            f"{near['distance']} of 64 bits; byte-identical copies apart): {shown}"
        )
    if rec.get("external"):
        facts["trained on"] = "nothing: scores computed outside detbench and imported"
    if rec.get("key", {}).get("scores"):  # what the scores were read from, beyond the fit (an imported file)
        facts["scores"] = ", ".join(f"{k} {v}" for k, v in rec["key"]["scores"].items())
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(str(v))}</td></tr>" for k, v in facts.items())
    return f'<table class="facts">{rows}</table>'


def _metrics_html(metrics: pd.DataFrame, headers: dict[str, str] = METRIC_HEADERS) -> str:
    cols = [c for c in headers if c in metrics.columns]
    head = "".join(f"<th>{_e(headers[c])}</th>" for c in cols)
    rows = []
    for _, row in metrics.iterrows():
        cells = []
        for c in cols:
            text = fmt(row[c], c)
            lo, hi = row.get(f"{c}_lo"), row.get(f"{c}_hi")
            if lo is not None and hi is not None and not (pd.isna(lo) or pd.isna(hi)):
                text += f" ± {100 * (hi - lo) / 2:.1f}"
            cells.append(f"<td>{_e(text)}</td>")
        cls = ' class="summary"' if row["generator"] in SUMMARY_ROWS else ""
        rows.append(f"<tr{cls}><th>{_e(str(row['generator']))}</th>{''.join(cells)}</tr>")
    return f'<table class="metrics"><tr><th>generator</th>{head}</tr>{"".join(rows)}</table>'


def _slices_html(run: Run, by: str) -> str:
    from detbench.results.slices import SLICE_COLUMN, run_slices

    table = run_slices(run, by)
    table = table.assign(generator=table["generator"].astype(str) + " | " + table[SLICE_COLUMN].astype(str))
    return (f"<h3>{_e(detector_label(run.record))}, run {_e(run.id[:16])}: metrics by {_e(by)}</h3>"
            + _metrics_html(table) + '<p class="note">generator | slice; %; n/a: the slice lacks real or fake '
            "images.</p>")


def _robustness_table(clean: Run, perturbed: list[Run]) -> str:
    base = clean.metrics.set_index("generator")
    rows = []
    for run in [clean, *_ordered(perturbed)]:
        m = run.metrics.set_index("generator")
        cells = [run.perturbation]
        for metric in ("acc", "ap"):
            value = m.loc["mean", metric]
            delta = "" if run is clean else fmt_delta(value - base.loc["mean", metric])
            cells += [fmt(value, metric), delta]
        cells += [fmt(m.loc["worst", "acc"], "acc"), run.name]
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>" for h in ("perturbation", "mean acc", "Δ acc", "mean AP", "Δ AP", "worst acc", "run")
    )
    return (
        f'<table class="metrics robustness"><tr>{head}</tr>{"".join(rows)}</table>'
        '<p class="note">%; Δ: percentage points vs the clean run.</p>'
    )


def _chrono_section(name: str, runs: list[Run]) -> tuple[str, list[Figure]]:
    """Accuracy over time of the chronological series among ``runs``, and one table row per window run."""
    series = chrono_series(runs)
    if not series:
        return "", []
    fig = chrono_figure(name, series)
    parts = []
    for label, members in series.items():
        frame = chrono_frame(members)
        head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
        rows = "".join(
            "<tr>" + "".join(f"<td>{_e(fmt(v, c.split()[-1]) if c.startswith('mean') else v)}</td>"
                             for c, v in row.items()) + "</tr>"
            for _, row in frame.iterrows()
        )
        parts.append(f"<h3>{_e(label)}</h3><table class=\"metrics\"><tr>{head}</tr>{rows}</table>")
    html_text = (
        '<section id="chrono"><h2>Past to future (chronological windows)</h2>'
        + _figure_html(fig) + "".join(parts)
        + '<p class="note">%; mean over the generators released after each cut; release dates and their sources are '
        "in each run's record (protocol_facts).</p></section>"
    )
    return html_text, [fig]


def _leaderboard_section(suite: str) -> tuple[str, list[Figure]]:
    wide = wide_table(long_table(suite), "acc")
    if len(wide):
        wide = with_floor(wide, "acc", floor_facts(suite))
    cells = leaderboard_cells(wide, VIEW_ID_COLUMNS)
    floored = FLOOR_COLUMN in wide and wide[FLOOR_COLUMN].isin(["beats", "below"]).any()
    ranking, figures = _ranking(suite, wide)
    costed = with_cost(wide[[*ID_COLUMNS, *(["mean"] if "mean" in wide else [])]], suite)
    html_text = (
        f'<section id="leaderboard"><h2>Leaderboard: {_e(suite)}, accuracy (%)</h2>{_cells_table(cells)}'
        '<p class="note">One row per finished run; Δ mean: vs the clean run of the same fit and threshold.'
        + (f" {_e(FLAGS_NOTE)}." if "flags" in cells else "")
        + (f" {_e(FLOOR_NOTE)}." if floored else "")
        + f"</p>{ranking}"
        f"<h3>Cost of each run (mean accuracy, %)</h3>{_cells_table(leaderboard_cells(costed, ID_COLUMNS), 'cost')}"
        f'<p class="note">{_e(cost_note(costed))}.</p>'
        "</section>"
    )
    return html_text, figures


def _cells_table(cells: pd.DataFrame, kind: str = "") -> str:
    """A leaderboard's display strings (:func:`leaderboard_cells`) as an HTML table (of class ``leaderboard`` and
    ``kind``).
    """
    n_ids = sum(c in VIEW_ID_COLUMNS or c == "run" for c in cells.columns)
    head = "".join(
        f'<th class="{"num" if i >= n_ids else "text"}">{_e(c)}</th>' for i, c in enumerate(cells.columns)
    )
    rows = "".join(
        "<tr>"
        + "".join(f'<td class="{"num" if i >= n_ids else "text"}">{_e(v)}</td>' for i, v in enumerate(row))
        + "</tr>"
        for row in cells.itertuples(index=False)
    )
    classes = f"leaderboard {kind}".strip()
    return f'<div class="scroll"><table class="{classes}"><tr>{head}</tr>{rows}</table></div>'


def _cost_fact(rec: dict[str, Any]) -> str:
    """A run's cost in one line of its facts (n/a values say why in the cost table's note)."""
    from detbench.engine.cost import COST_FIELDS, run_cost
    from detbench.results.display import COST_HEADERS, fmt_cost

    cost = run_cost(rec)
    if all(cost[f] is None for f in COST_FIELDS):
        return f"n/a: {next(iter(cost['na'].values()))}"
    memory = cost["peak_memory_bytes"]
    values = {f: cost[f] for f in COST_FIELDS[:4]}
    values["peak_memory_mib"] = None if memory is None else memory / 2**20
    parts = [f"{COST_HEADERS[f]} {fmt_cost(f, v)}" for f, v in values.items()]
    return "; ".join(parts) + f" (on {cost['device']}; peak memory: {cost['peak_memory']})"


def _ranking(suite: str, wide: pd.DataFrame) -> tuple[str, list[Figure]]:
    """The critical-difference diagram of the clean runs' accuracy, when two or more of them can be ranked over two
    or more generators (else nothing).
    """
    from detbench.errors import DataError
    from detbench.results.display import friedman_note
    from detbench.results.figures import critical_difference_figure
    from detbench.results.leaderboard import ranked_view

    clean = wide[wide["perturbation"] == "clean"].reset_index(drop=True)
    try:
        ranked = ranked_view(clean, "acc")
    except DataError:
        return "", []
    test = ranked.attrs["friedman"]
    by_id = clean.set_index("run_id")
    labels = []
    for run_id in test["run_ids"]:
        row = by_id.loc[run_id]
        settings = "" if row["settings"] == "defaults" else f" {row['settings']}"
        threshold = "" if row["threshold"] == "0.5" else f" (threshold {row['threshold']})"
        labels.append(f"{row['detector']}{settings}{threshold} {run_id[:8]}")
    figure = critical_difference_figure(suite, labels, test)
    note = friedman_note(test, int(ranked["avg_rank"].isna().sum()))
    return f"<h3>Ranking of the clean runs by accuracy</h3>{_figure_html(figure)}<p class=\"note\">{_e(note)}</p>", [
        figure
    ]


def _ordered(runs: list[Run]) -> list[Run]:
    return sorted(runs, key=lambda r: perturbation_rank(r.perturbation))


# ------------------------------------------------------------------------------------------- page


def _figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(fig.title)}">'
        f"<figcaption><b>{_e(fig.title)}.</b> {_e(fig.caption)}</figcaption></figure>"
    )


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1180px;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:2em}h3{font-size:1em;margin-top:1.5em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{padding:.25em .6em;border-bottom:1px solid #e3e3e3;text-align:right;white-space:nowrap}
tr th:first-child,tr td:first-child{text-align:left}
table.facts th{text-align:left;color:#555;font-weight:600}table.facts td{text-align:left;white-space:normal}
tr.summary{font-weight:600;background:#f4f6fa}
figure{margin:1.2em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption,.note,.subtitle{font-size:.85em;color:#555}
.row{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.row figure{margin:1.2em 0 0;flex:1 1 0;min-width:360px}
.scroll{overflow-x:auto}table.leaderboard .text{text-align:left}table.leaderboard .num{text-align:right}
table.robustness td:last-child{text-align:left;font-family:monospace}
"""


def _page(title: str, subtitle: str, sections: list[str]) -> str:
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n"
        f'<h1>{_e(title)}</h1>\n<p class="subtitle">{_e(subtitle)}</p>\n'
        + "\n".join(sections)
        + f'\n<footer class="note"><p>Generated by detbench {_e(__version__)} on {_e(created)} from the run '
        "records; self-contained (no network, no scripts).</p></footer>\n</body></html>\n"
    )
