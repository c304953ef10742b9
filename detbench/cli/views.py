"""What the ``detbench`` command line prints about results: a run, a preset comparison, the listings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detbench.cli.guard import console


def show_preset_comparison(preset: Any, result: Any) -> None:
    """Print a preset run's measured values beside the published ones, and say when it is not a reproduction.

    Args:
        preset: the :class:`~detbench.results.presets.Preset` run.
        result: the run's :class:`~detbench.engine.finished_run.Run`.
    """
    from detbench.results.display import frame_table
    from detbench.results.presets import compare

    table = compare(preset, result.metrics)
    if table.empty:
        console.print(f"preset {preset.name}: no published per-generator values to compare with")
        return
    shown = preset_table_cells(table)
    confidence = preset.published.get("confidence", "")
    console.print(frame_table(shown, f"{preset.name}: measured vs published (%), {confidence}"))
    console.print(f"source: {preset.published.get('source', 'unknown')}")
    record = result.record.get("preset") or {}
    if record.get("reproduction", False):
        return
    if record.get("departures"):
        console.print("[yellow]Not a reproduction:[/] settings differ from the preset "
                      f"({', '.join(record['departures'])}); never compare it as one.")
    else:
        files = record.get("files", {})
        digests = {k: files.get(k, {}).get("sha256") for k in record.get("unverified", [])}
        named = ", ".join(f"{k} (sha256 {sha})" if sha else f"{k} (a folder)" for k, sha in digests.items())
        console.print(f"[yellow]Unverified reproduction:[/] the preset knows no published sha256 for "
                      f"{named or 'its files'}, so nothing shows these are the released files; it is recorded as "
                      "unverified, never as a reproduction.")


def preset_table_cells(table: Any) -> Any:
    """The :func:`~detbench.results.presets.compare` table as text cells: every number in points, as the
    published values.

    Args:
        table: the comparison table (measured, expected, delta and tolerance in %).

    Returns:
        The same table, its cells strings (no column is rescaled as a fraction would be).
    """
    return table.assign(
        measured=table["measured"].map(lambda v: f"{v:.1f}"),
        delta=table["delta"].map(lambda v: "" if v != v else f"{v:+.1f}"),
        tolerance=table["tolerance"].map(lambda v: f"{v:.1f}"),
        flag=table["flag"].map(lambda f: "beyond tolerance" if f else ""),
        expected=table["expected"].map(str),
    )


def show_result(rec: dict[str, Any], metrics: Any, path: Path, reused: bool) -> None:
    """Print the run's metrics table, what it skipped, and where it is.

    Args:
        rec: the run record (``run.json``).
        metrics: its metrics table.
        path: the run directory.
        reused: whether the finished run was reused rather than computed.
    """
    from detbench.results.display import metrics_table, threshold_note

    title = run_title(rec) + (f", {rec['perturbation'].get('spec')}" if rec.get("perturbation") else "") + ")"
    console.print(metrics_table(metrics, title, threshold_note(rec)))
    counts = rec.get("counts", {})
    for what, n, reasons in (
        ("training", counts.get("train", {}).get("skipped", 0), counts.get("train", {}).get("skipped_reasons", {})),
        ("evaluation", counts.get("eval_skipped", 0), counts.get("skipped_reasons", {})),
    ):
        if n:
            why = ", ".join(f"{v} {k}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
            console.print(f"[yellow]{n} {what} images skipped:[/] {why}")
    console.print(f"run {rec['run_id'][:16]} -> {path}" + (" (reused)" if reused else ""))


def show_seed_spread(results: list[Any]) -> None:
    """Print the mean ± standard deviation over the seeds of acc, AP and AUC per generator.

    Args:
        results: the finished runs, one per seed.
    """
    from rich.table import Table

    from detbench.results.display import fmt
    from detbench.results.seeds import seed_spread

    spread = seed_spread(results)
    seeds = spread["seeds"].iloc[0] if len(spread) else ""
    table = Table(title=f"{run_title(results[0].record)}): mean ± sd over seeds {seeds}")
    table.add_column("generator")
    metrics = list(dict.fromkeys(spread["metric"]))
    for metric in metrics:
        table.add_column(metric, justify="right")
    for generator, rows in spread.groupby("generator", sort=False):
        cells = rows.set_index("metric")
        table.add_row(generator, *(f"{fmt(cells.loc[m, 'mean'], m)} ± {fmt(cells.loc[m, 'sd'], m)}" for m in metrics))
    console.print(table)


def show_chrono_series(results: list[Any]) -> None:
    """Print one line per window of a chronological series: what trained, what was tested, the mean scores.

    Args:
        results: the finished window runs.
    """
    from rich.table import Table

    from detbench.results.chrono import CHRONO_METRICS, chrono_frame
    from detbench.results.display import fmt

    frame = chrono_frame(results)
    if frame.empty:
        return
    table = Table(title=f"{run_title(results[0].record).split(' (protocol')[0]}: past to future, one run per window "
                  "(mean over the later generators)")
    for column in ("window", "train (released)", "test (released)", *(f"mean {m}" for m in CHRONO_METRICS), "run"):
        table.add_column(column, justify="right" if column.startswith("mean") else "left")
    for _, row in frame.iterrows():
        table.add_row(str(row["window"]), str(row["train"]), str(row["test"]),
                      *(fmt(row[f"mean {m}"], m) for m in CHRONO_METRICS), str(row["run"]))
    console.print(table)


def run_title(rec: dict[str, Any]) -> str:
    """A run's title for tables.

    Args:
        rec: the run record.

    Returns:
        ``DETECTOR on SUITE (protocol P[, backbone B]``, left open for more facts.
    """
    from detbench.engine.record import detector_label

    backbone = f", backbone {rec['backbone']}" if rec.get("backbone") else ""
    return f"{detector_label(rec)} on {rec['suite']} (protocol {rec['protocol']}{backbone}"


def list_detectors() -> None:
    """Print the detectors (paper and year, trains or training-free, released weights), importing none."""
    import pandas as pd
    from rich.table import Table

    from detbench import api

    table = Table(title="detectors")
    for col in ("name", "paper", "year", "training", "released weights", "summary", "origin"):
        table.add_column(col, overflow="fold")
    for d in api.list_detectors().to_dict("records"):
        if not isinstance(d["paper"], str):  # a plugin that states no facts
            facts = ["?", "?", "?", "?"]
        else:
            value = "SPEC" if d["weights_key"] == "backbone" else "PATH"  # a backbone key takes PROVIDER:ARCH@SOURCE
            weights = f"--set {d['weights_key']}={value} ({d['released']})" if d["weights_key"] else "none"
            facts = [d["paper"], "-" if pd.isna(d["year"]) else str(d["year"]), d["training"], weights]
        table.add_row(d["name"], *facts, d["summary"] or d["target"], d["origin"])
    console.print(table)


def list_presets() -> None:
    """Print the paper presets: what each runs, the published mean accuracy, confidence and source."""
    import pandas as pd
    from rich.table import Table

    from detbench import api

    table = Table(title="paper presets (detbench run --preset NAME --root PATH)")
    for col in ("name", "runs", "published mean acc", "confidence", "source"):
        table.add_column(col, overflow="fold")
    for p in api.list_presets().to_dict("records"):
        span = p["mean_acc_range"]
        shown = (f"{p['mean_acc']:.2f}" if not pd.isna(p["mean_acc"]) else
                 f"{span[0]}–{span[1]}" if span else "unknown")  # fmt: skip
        table.add_row(f"{p['name']} (v{p['version']})", f"{p['detector']} on {p['suite']}/{p['protocol']}", shown,
                      p["confidence"], p["source"])
    console.print(table)


def list_runs() -> None:
    """Print the finished runs of every suite."""
    from detbench import api
    from detbench.results.display import fmt, frame_table

    runs = api.runs()
    shown = runs.assign(run_id=runs["run_id"].str[:16], mean_acc=runs["mean_acc"].map(fmt),
                        created=runs["created"].astype(str).str[:16].str.replace("T", " "))
    columns = {"run_id": "run id", "suite": "suite", "detector": "detector", "protocol": "protocol",
               "backbone": "backbone", "perturbation": "perturbation", "data": "data", "coverage": "coverage",
               "mean_acc": "mean acc", "created": "created"}
    whole = ("run id", "detector", "data", "coverage", "mean acc")  # what tells runs apart stays whole
    console.print(frame_table(shown[list(columns)].rename(columns=columns), "finished runs", len(columns), whole))



def show_comparison(table: Any, bootstrap: int) -> None:
    """Print a paired comparison: per compared pair, which runs and images, then one table per metric whose
    significant rows (p, Holm-adjusted across generators, below 0.05) are marked.

    Args:
        table: :func:`detbench.results.paired.compare_runs` output.
        bootstrap: its bootstrap resamples (for the caption).
    """
    from rich.table import Table

    from detbench.metrics import SUMMARY_ROWS
    from detbench.results.display import fmt, fmt_delta, unit_note
    from detbench.results.paired import ALPHA

    runs = {r["run_id"]: r for r in table.attrs.get("runs", [])}

    def name(run_id: str) -> str:
        r = runs.get(run_id, {})
        threshold = f"threshold {r.get('threshold', 0.5):.3g}"
        return f"{run_id[:16]} {r.get('detector', '')} ({r.get('perturbation', '')}, {threshold})"

    dropped = {k: v for k, v in table.attrs.get("dropped", {}).items() if v}
    if dropped:
        console.print(
            f"--common: the {table.attrs.get('n_images')} images every run scored are compared; dropped "
            + ", ".join(f"{n} of the images {run_id[:16]} scored" for run_id, n in dropped.items())
        )

    def p_text(p: float) -> str:
        return "n/a" if p != p else ("<0.001" if p < 0.001 else f"{p:.3f}")
    for run_b, pair in table.groupby("run_b", sort=False):
        console.print(f"[bold]A[/] = {name(pair['run_a'].iloc[0])}\n[bold]B[/] = {name(run_b)}")
        for metric, rows in pair.groupby("metric", sort=False):
            grid = Table(title=f"{metric}: B − A ({unit_note(metric, delta=True)})", title_justify="left",
                         caption_justify="left")
            for col in ("generator", "A", "B", "Δ", "95% CI of Δ", "p", "p Holm", "test", "#real", "#fake", ""):
                grid.add_column(col, justify="left" if col in ("generator", "test", "") else "right", no_wrap=True)
            for _, r in rows.iterrows():
                significant = r["p_holm"] == r["p_holm"] and r["p_holm"] < ALPHA
                ci = (f"[{fmt_delta(r['delta_lo'], metric)}, {fmt_delta(r['delta_hi'], metric)}]"
                      if r["delta_lo"] == r["delta_lo"] else "n/a")
                style = "bold cyan" if r["generator"] in SUMMARY_ROWS else None
                where = f"{r['generator']} | {r['slice']}" if "slice" in r else str(r["generator"])
                grid.add_row(where, fmt(r["a"], metric), fmt(r["b"], metric),
                             fmt_delta(r["delta"], metric), ci, p_text(r["p_value"]), p_text(r["p_holm"]), r["test"],
                             str(r["n_real"]), str(r["n_fake"]), "*" if significant else "", style=style)
            grid.caption = (
                f"*: p below {ALPHA} after Holm's adjustment across generators (mean and worst: their own paired "
                f"bootstrap p); CI: paired class-stratified bootstrap, {bootstrap} resamples"
                + ("; lower is better" if metric in ("ece", "brier", "nll") else "")
            )
            console.print(grid)


def show_slices(suite: str, tables: list[Any], metrics: list[str], by: str, csv: Path | None,
                markdown: Path | None) -> None:
    """Print a leaderboard per slice (``detbench leaderboard --by``) and write its CSV and Markdown when asked.

    Args:
        suite: the suite's name.
        tables: the sliced leaderboards (:func:`detbench.api.leaderboard` with ``by``), one per metric.
        metrics: the metric of each view.
        by: the slice (``format``, ``jpeg_quality``, ``size`` or ``meta_COLUMN[:BINS]``).
        csv: a folder for ``<suite>_leaderboard_by_<column>.csv`` (the first metric), or None.
        markdown: a Markdown file for the tables shown, or None.
    """
    from detbench.results.display import frame_table, markdown_table, unit_note
    from detbench.results.slices import parse_by
    from detbench.store import atomic_path

    parts = []
    for name, table in zip(metrics, tables, strict=True):
        title = f"{suite} leaderboard by {by}: {name} ({unit_note(name)}; n/a: the slice lacks real or fake images)"
        shown = table.assign(run_id=table["run_id"].str[:16])
        console.print(frame_table(shown, title, percent_from=len(shown.columns) - 1))
        parts.append(f"**{title}**\n\n" + markdown_table(_slice_cells(shown, name), right_from=len(shown.columns) - 3))
    if csv is not None:
        column = parse_by(by)[0]  # type: ignore[index]
        path = csv / f"{suite}_leaderboard_by_{column}.csv"
        csv.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tables[0].to_csv(tmp, index=False, float_format="%.6g")
        console.print(f"wrote {path}")
    if markdown is not None:
        with atomic_path(markdown) as tmp:
            tmp.write_text("\n".join(parts), encoding="utf-8")
        console.print(f"wrote {markdown}")


def _slice_cells(table: Any, metric: str) -> Any:
    from detbench.results.display import fmt

    out = table.astype(object).copy()
    out[metric] = table[metric].map(lambda v: fmt(v, metric))
    return out
