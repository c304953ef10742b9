"""The charts of a report (:mod:`detbench.results.html`), drawn with matplotlib (Agg, no pyplot) into PNG bytes.

Per run: accuracy/AP bars with bootstrap intervals, ROC curves, real-vs-fake score histograms, a reliability diagram
and, when perturbed runs of the same fit exist, robustness curves (metric vs perturbation level). matplotlib is
imported only here.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from detbench.metrics import SUMMARY_ROWS
from detbench.results.display import threshold_note

if TYPE_CHECKING:
    from detbench.engine.finished_run import Run

REAL, FAKE = "#1f77b4", "#d62728"


@dataclass
class Figure:
    """A rendered figure: its file stem, title, caption and PNG bytes."""

    name: str  # file stem
    title: str
    caption: str
    png: bytes



def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def acc_figure(run: Run) -> Figure:
    """Accuracy and AP per generator (and their mean), with 95% bootstrap intervals as error bars.

    Args:
        run: the run (its metrics and record).

    Returns:
        The figure ``<run>_acc``.
    """
    m = run.metrics[run.metrics["generator"] != "worst"].reset_index(drop=True)
    names = [str(g) for g in m["generator"]]
    fig = _new_figure(max(6.0, 0.9 * len(names) + 2), 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    width = 0.38
    for offset, metric, color, label in (
        (-width / 2, "acc", "#4c72b0", "accuracy"),
        (width / 2, "ap", "#dd8452", "AP"),
    ):
        values = m[metric].to_numpy(dtype=float)
        err = None
        if f"{metric}_lo" in m.columns:
            lo, hi = m[f"{metric}_lo"].to_numpy(dtype=float), m[f"{metric}_hi"].to_numpy(dtype=float)
            # a point may sit outside its percentile interval by rounding (AP 0.99999999999999989 with [1, 1])
            err = 100 * np.clip(np.nan_to_num(np.vstack([values - lo, hi - values])), 0, None)
        ax.bar(x + offset, 100 * np.nan_to_num(values), width, yerr=err, capsize=3, color=color, label=label)
    ax.axhline(50, color="grey", linestyle=":", linewidth=1)
    ax.axvline(len(names) - 1.5, color="grey", linewidth=0.8)
    ax.set_xticks(x, names, rotation=30 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    ax.set_title(f"Accuracy and AP per generator ({run.perturbation})", fontsize=10)
    return Figure(
        f"{run.name}_acc",
        "Accuracy and AP per generator",
        f"Bars: accuracy at the {threshold_note(run.record)} and average precision; error bars: 95% "
        "bootstrap intervals; 'mean' is the unweighted mean over generators; dotted line: chance.",
        _png(fig),
    )


def roc_figure(name: str, scores: pd.DataFrame) -> Figure:
    """ROC curves per generator (fake = positive); generators with one class only are named, not drawn.

    Args:
        name: the run's folder name (the figure's file stem starts with it).
        scores: the run's finite scores (``generator``, ``label``, ``score``).

    Returns:
        The figure ``<name>_roc``.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = _new_figure(4.8, 4.2)
    ax = fig.add_subplot()
    skipped = []
    for gen, part in scores.groupby("generator", sort=True):
        if part["label"].nunique() < 2:
            skipped.append(str(gen))
            continue
        fpr, tpr, _ = roc_curve(part["label"], part["score"])
        ax.plot(
            fpr,
            tpr,
            linewidth=1.4,
            label=f"{gen} (AUC {100 * roc_auc_score(part['label'], part['score']):.1f})",
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="false positive rate (reals called fake)",
        ylabel="true positive rate",
    )
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title("ROC per generator (fake = positive)", fontsize=10)
    note = f" Not drawn (one class only): {', '.join(skipped)}." if skipped else ""
    return Figure(f"{name}_roc", "ROC curves", f"Each generator's fakes against its reals.{note}", _png(fig))


def histogram_figure(name: str, scores: pd.DataFrame, threshold: float, record: dict[str, Any]) -> Figure:
    """Real-vs-fake score histograms per generator, with the decision threshold.

    Args:
        name: the run's folder name.
        scores: the run's finite scores (``generator``, ``label``, ``score``).
        threshold: the threshold ``acc`` uses (drawn as a dashed line).
        record: the run record (its threshold policy is named in the caption).

    Returns:
        The figure ``<name>_scores``.
    """
    from matplotlib.ticker import MaxNLocator

    gens = sorted(scores["generator"].unique())
    ncols = min(4, max(1, len(gens)))
    nrows = math.ceil(len(gens) / ncols)
    fig = _new_figure(3.0 * ncols, 2.3 * nrows + 0.3)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    bins = np.linspace(0, 1, 26)
    for ax, gen in zip(axes.flat, gens, strict=False):
        part = scores[scores["generator"] == gen]
        for label, color, text in ((0, REAL, "real"), (1, FAKE, "fake")):
            values = part.loc[part["label"] == label, "score"]
            ax.hist(
                values,
                bins=bins,
                color=color,
                alpha=0.4,
                histtype="stepfilled",
                label=f"{text} ({len(values)})",
            )
            ax.hist(values, bins=bins, color=color, histtype="step", linewidth=1.2)
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(str(gen), fontsize=9)
        ax.legend(fontsize=7, loc="best")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(gens) :]:
        ax.set_visible(False)
    fig.supxlabel("P(fake)", fontsize=9)
    fig.supylabel("images", fontsize=9)
    return Figure(
        f"{name}_scores",
        "Score distributions",
        f"P(fake) of real (blue) and fake (red) evaluation images per generator; dashed line: the "
        f"{threshold_note(record)}.",
        _png(fig),
    )


def robustness_figure(name: str, clean: Run, perturbed: list[Run]) -> Figure | None:
    """Mean (bold, with its 95% band) and per-generator (thin) acc and AP vs the level of each perturbation kind.

    Args:
        name: the run's folder name.
        clean: the clean run of the fit.
        perturbed: runs of the same fit under single-step perturbations whose value is a severity (others, and
            class-targeted runs, are left out).

    Returns:
        The figure ``<name>_robustness``, or None when no perturbed run has a single step.
    """
    from detbench.config import ConfigError
    from detbench.data.perturbations import Step, parse_perturbation

    kinds: dict[str, list[tuple[Any, Run]]] = {}
    for run in perturbed:
        try:
            step = parse_perturbation(run.perturbation)
        except ConfigError:
            continue
        if isinstance(step, Step) and step.ordered:  # not composed, class-targeted, or without a severity
            kinds.setdefault(step.name, []).append((step, run))
    if not kinds:
        return None
    generators = [g for g in clean.metrics["generator"] if g not in SUMMARY_ROWS]
    colors = {g: f"C{i % 10}" for i, g in enumerate(generators)}
    fig = _new_figure(4.2 * len(kinds) + 1.8, 6.0)
    axes = fig.subplots(2, len(kinds), squeeze=False)
    for col, (kind, points) in enumerate(kinds.items()):
        step_cls = type(points[0][0])
        points = sorted(points, key=lambda p: p[0].level)
        levels = [step_cls.clean_level] + [p[0].level for p in points]
        runs = [clean] + [p[1] for p in points]
        order = np.argsort(levels)
        levels = [levels[i] for i in order]
        runs = [runs[i] for i in order]
        for row, metric in enumerate(("acc", "ap")):
            ax = axes[row][col]
            tables = [r.metrics.set_index("generator") for r in runs]
            for gen in generators:
                ys = [100 * t.loc[gen, metric] if gen in t.index else np.nan for t in tables]
                ax.plot(levels, ys, color=colors[gen], linewidth=0.9, alpha=0.6, marker=".", label=gen)
            mean = [100 * t.loc["mean", metric] for t in tables]
            ax.plot(levels, mean, color="black", linewidth=2.2, marker="o", label="mean")
            if all(f"{metric}_lo" in t.columns for t in tables):
                lo = [100 * t.loc["mean", f"{metric}_lo"] for t in tables]
                hi = [100 * t.loc["mean", f"{metric}_hi"] for t in tables]
                ax.fill_between(levels, lo, hi, color="black", alpha=0.12, linewidth=0)
            ax.axhline(50, color="grey", linestyle=":", linewidth=1)
            ax.set_xticks(levels, ["clean" if lv == step_cls.clean_level else f"{lv:g}" for lv in levels])
            if step_cls.severe_when_low:
                ax.invert_xaxis()
            ax.set_ylim(0, 102)
            ax.set_ylabel(f"{'accuracy' if metric == 'acc' else 'AP'} (%)")
            ax.set_xlabel(step_cls.axis_label or kind)
            ax.tick_params(labelsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    fig.suptitle("Robustness: severity increases to the right", fontsize=10)
    return Figure(
        f"{name}_robustness",
        "Robustness curves",
        "Accuracy (top) and AP (bottom) as each perturbation grows; bold: mean over generators with its 95% "
        "bootstrap band; thin: each generator; all runs share the clean run's trained fit and threshold.",
        _png(fig),
    )


def reliability_figure(name: str, scores: pd.DataFrame, metrics: pd.DataFrame) -> Figure:
    """The reliability diagram: fraction fake against mean P(fake) per bin, pooled and per generator.

    Args:
        name: the run's folder name.
        scores: the run's finite scores (``generator``, ``label``, ``score``).
        metrics: its metrics (the ECE of each generator and of the mean, for the legend and caption).

    Returns:
        The figure ``<name>_reliability``.
    """
    from detbench.metrics import ECE_BINS, reliability_bins

    ece = metrics.set_index("generator")["ece"] if "ece" in metrics.columns else pd.Series(dtype=float)
    fig = _new_figure(4.8, 5.4)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfectly calibrated")
    for gen, part in scores.groupby("generator", sort=True):
        bins = reliability_bins(part["label"], part["score"])
        value = ece.get(gen, np.nan)
        label = f"{gen} (ECE {100 * value:.1f})" if value == value else f"{gen} (ECE n/a)"
        top.plot(bins["mean_score"], bins["frac_fake"], linewidth=0.9, alpha=0.7, marker=".", label=label)
    pooled = reliability_bins(scores["label"], scores["score"])
    top.plot(pooled["mean_score"], pooled["frac_fake"], color="black", linewidth=2, marker="o", label="all images")
    top.set(xlim=(0, 1), ylim=(-0.02, 1.02), ylabel="fraction fake")
    top.legend(loc="upper left", fontsize=7)
    top.set_title("Reliability: P(fake) as a probability", fontsize=10)
    width = 1 / ECE_BINS
    bottom.bar(pooled["bin_lo"] + width / 2, pooled["n"] / pooled["n"].sum(), width=width * 0.9, color="#4c72b0")
    bottom.set(xlabel=f"mean P(fake) in each of {ECE_BINS} equal-width bins", ylabel="share")
    bottom.tick_params(labelsize=8)
    mean = ece.get("mean", np.nan)
    summary = f"mean ECE over generators {100 * mean:.1f}%" if mean == mean else "mean ECE n/a"
    return Figure(
        f"{name}_reliability",
        "Reliability diagram",
        f"Per bin of P(fake): the fraction of fake images against the mean score; on the diagonal, a score of p "
        f"means a fake with probability p. Bold: all evaluation images pooled; thin: each generator; bars: the share "
        f"of images in each bin. ECE: the bins' share-weighted gap to the diagonal ({summary}).",
        _png(fig),
    )


def critical_difference_figure(name: str, labels: list[str], test: dict[str, Any]) -> Figure:
    """Demšar's critical-difference diagram: runs on an axis of average rank, runs closer than the Nemenyi critical
    difference joined by a bar.

    Args:
        name: the figure's file stem prefix (the suite).
        labels: the ranked runs' names, in the order of ``test["ranks"]``.
        test: :func:`detbench.results.leaderboard.ranked_view`'s ``attrs["friedman"]`` (ranks, k, n, cd, alpha,
            p_value).

    Returns:
        The figure ``<name>_critical_difference``.
    """
    ranks = np.asarray(test["ranks"], dtype=float)
    k, cd = len(ranks), float(test["cd"])
    order = np.argsort(ranks, kind="stable")
    half = math.ceil(k / 2)
    fig = _new_figure(7.5, 1.6 + 0.28 * half)
    ax = fig.add_subplot()
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-(half + 1.5), 2.2)
    ax.axis("off")
    ax.plot([1, k], [0, 0], color="black", linewidth=1)
    for tick in range(1, k + 1):
        ax.plot([tick, tick], [0, 0.15], color="black", linewidth=1)
        ax.text(tick, 0.3, str(tick), ha="center", va="bottom", fontsize=8)
    ax.plot([1, 1 + cd], [1.5, 1.5], color="black", linewidth=1.5)
    ax.text(1 + cd / 2, 1.65, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8)
    for slot, index in enumerate(order):
        left = slot < half
        row = -(slot + 1) if left else -(k - slot)
        x_text = 0.55 if left else k + 0.45
        ax.plot([ranks[index], ranks[index], x_text], [0, row, row], color="#444444", linewidth=0.8)
        ax.text(x_text, row + 0.08, f"{labels[index]} ({ranks[index]:.2f})", ha="left" if left else "right",
                va="bottom", fontsize=7)
    sorted_ranks = ranks[order]
    groups, last_end = [], -1
    for i in range(k):  # maximal runs of consecutive ranks within the critical difference
        j = i
        while j + 1 < k and sorted_ranks[j + 1] - sorted_ranks[i] <= cd:
            j += 1
        if j > i and j > last_end:
            groups.append((sorted_ranks[i], sorted_ranks[j]))
            last_end = j
    for level, (lo, hi) in enumerate(groups):
        y = -0.35 - 0.22 * level
        ax.plot([lo - 0.03, hi + 0.03], [y, y], color="black", linewidth=3, solid_capstyle="butt")
    return Figure(
        f"{name}_critical_difference",
        "Critical-difference diagram",
        f"Average rank over {test['n']} generators of {k} runs (1 = best, left). Runs joined by a bar are not "
        f"significantly different by the Nemenyi test at α = {test['alpha']:g} (their average ranks differ by at most "
        f"the critical difference CD); Friedman test across all runs: p = {test['p_value']:.3g} (Demšar 2006).",
        _png(fig),
    )


def chrono_figure(name: str, series: dict[str, list[Run]]) -> Figure:
    """Accuracy over time: per chronological series, the mean accuracy and AP on the generators released after each
    window's cut, against the cut.

    Args:
        name: the file stem's prefix.
        series: series label -> its window runs in time order (:func:`detbench.results.chrono.chrono_series`).

    Returns:
        The figure ``<name>_chrono``.
    """
    from detbench.data.release_dates import parse_month

    fig = _new_figure(9.0, 3.6)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    ticks: dict[float, str] = {}
    for i, (label, runs) in enumerate(series.items()):
        cuts = [run.record["protocol_facts"]["cut"] for run in runs]
        xs = [parse_month(c) / 12 for c in cuts]
        ticks.update(zip(xs, cuts, strict=True))
        for ax, metric in zip(axes, ("acc", "ap"), strict=True):
            ys = [100 * run.metrics.set_index("generator").loc["mean", metric] for run in runs]
            ax.plot(xs, ys, color=f"C{i % 10}", marker="o", linewidth=1.6, label=label)
    for ax, metric in zip(axes, ("accuracy", "AP"), strict=True):
        ax.axhline(50, color="grey", linestyle=":", linewidth=1)
        ax.set_ylim(0, 102)
        ax.set_ylabel(f"mean {metric} on later generators (%)")
        ax.set_xlabel("training releases up to")
        ax.set_xticks(list(ticks), list(ticks.values()), rotation=30, fontsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", fontsize=7)
    return Figure(
        f"{name}_chrono",
        "Past to future",
        "Each point is one run: trained on the generators released up to the cut, scored on those released after "
        "it (mean over them); one line per series (detector, settings, seed, growing or sliding windows).",
        _png(fig),
    )
