"""Leaderboards rebuilt from run records (never edited by hand).

``wide``: one row per run (detector, backbone, settings, ..., the data it was evaluated on, the files it read, its
coverage, run id), one column per generator plus ``mean`` and ``worst`` for a chosen metric. ``long``: every metric
of every run and generator, tidy.

Rows are told apart and never ranked as if comparable when they are not: ``data`` is the short hash of the index
evaluated (other roots, list files or shards under one suite name differ), ``files`` the short sha256 of every
file the detector read (weights, heads, score files), ``coverage`` the evaluation images scored of those expected;
a run whose mean covers fewer generators than the table's is marked and ranked after the complete ones, and an
accuracy over one class is never shown (n/a; see :func:`detbench.metrics.as_defined`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detbench.engine import layout
from detbench.engine.near_duplicates import flag as near_duplicate_flag
from detbench.engine.record import detector_label, load_run_record, record_seed
from detbench.errors import DamagedRunError, RunLookupError, warn
from detbench.metrics import SUMMARY_ROWS

ID_COLUMNS = [
    "detector", "backbone", "settings", "protocol", "perturbation", "threshold", "data", "files", "coverage",
    "config_hash", "fit_id", "run_id", "flags", "seeds", "seed_group",
]  # fmt: skip
SD_COLUMN = "mean_sd"  # the standard deviation over seeds of a row grouping runs that differ only in seed
VALUE_EXTRAS = ("mean_delta", SD_COLUMN)  # value columns that are neither a generator nor a summary row
SHORT = 8  # hex characters of a hash shown in tables
GENERATORS = "generators"  # how coverage names a row's generators of its protocol's in the table
FILTER_COLUMNS = ("detector", "backbone", "perturbation")
FLOOR_COLUMN = "floor"  # a wide view's comparison with the shortcut floor run on the same evaluation rows
FLOOR_VALUES = ("floor", "beats", "below", "n/a")  # the floor run itself, then the other runs' verdicts
VIEW_ID_COLUMNS = [*ID_COLUMNS, FLOOR_COLUMN]  # the text columns of a wide view
BELOW_FLOOR = "below_floor"  # a view's attrs: {run_id: [generator columns and summaries not beating the floor]}
FLOOR_NOTE = (
    "floor: beats / below = the run's mean beats / does not beat that of the shortcut floor (metadata only: format, "
    "JPEG quality, size, EXIF) on the same evaluation rows; n/a: no floor run on them; ↓ marks a value that does not "
    "beat the floor's"
)


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
    suite: str | None = None, runs_root: Path | None = None, verify: tuple[str, ...] = layout.RUN_OUTPUTS
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Finished runs (those with a run.json), optionally of one suite, oldest first.

    A damaged run (its record unreadable, of the wrong shape or edited by hand, its run id not the sha256 of its run
    key, or an output in ``verify`` not matching the sha256 it recorded) is left out with a
    :class:`~detbench.errors.DetbenchWarning`, never used; running it again recomputes it.

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




FLAGS_NOTE = (
    "flags: N train copies = N evaluation images are byte-identical copies of training images (other files, same "
    "bytes); N near-dups (d<=D) = N other evaluation images whose perceptual hash is within D of 64 bits of a "
    "training image's (resized or re-encoded copies): those scores measure memory as much as detection"
)


def run_flags(record: dict[str, Any]) -> str:
    """What a table must say beside a run's numbers (explained by :data:`FLAGS_NOTE`): its evaluation images that
    copy its training images, byte for byte or nearly (:mod:`detbench.engine.near_duplicates`).

    Args:
        record: the run record.

    Returns:
        E.g. ``3 train copies``, ``2 near-dups (d<=4)`` or both; empty when nothing is to be said.
    """
    counts = record.get("counts") or {}
    copies = (counts.get("copies_of_training") or {}).get("eval")
    flags = [f"{copies} train copies" if copies else "", near_duplicate_flag(counts.get("near_duplicates_of_training"))]
    return ", ".join(f for f in flags if f)


def runs_table(suite: str | None = None, detector: str | None = None, runs_root: Path | None = None) -> pd.DataFrame:
    """One row per finished run, oldest first (what ``detbench ls runs`` lists).

    Args:
        suite: only this suite's runs (an alias names its suite's runs).
        detector: only these detectors: exact (case-insensitive) if some run has that label, else every label
            containing it (``external`` keeps every imported score file).
        runs_root: where the runs are (default: ``$DETBENCH_HOME/runs``).

    Returns:
        Columns :data:`RUN_COLUMNS`; ``run_id`` is the full id, ``path`` the run's folder, ``coverage`` the evaluation
        images scored of those expected; ``mean_acc`` and ``mean_ap`` are NaN unless every generator evaluated has
        scored images of both classes (a mean over fewer generators, or an accuracy over one class, is no mean).
    """
    rows = []
    for run_dir, rec in run_records(suite, runs_root):
        summary = (rec.get("summary") or {}).get("mean", {}) if complete(rec) else {}
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
                "data": data_label(rec),
                "files": files_label(rec),
                "coverage": coverage_label(rec),
                "mean_acc": summary.get("acc"),
                "mean_ap": summary.get("ap"),
                "fit_id": str(rec.get("fit_id", "")),
                "flags": run_flags(rec),
                "created": rec.get("created", ""),
                "path": str(run_dir),
            }
        )
    table = pd.DataFrame(rows, columns=RUN_COLUMNS).astype({"mean_acc": float, "mean_ap": float})
    return filter_runs(table, detector=detector).reset_index(drop=True)


RUN_COLUMNS = [
    "run_id", "suite", "detector", "external", "protocol", "backbone", "settings", "perturbation", "threshold",
    "data", "files", "coverage", "mean_acc", "mean_ap", "fit_id", "flags", "created", "path",
]  # fmt: skip




def complete(record: dict[str, Any]) -> bool:
    """Whether every generator a run evaluated has scored real and scored fake images (else its mean is n/a).

    Args:
        record: the run record.

    Returns:
        True when its mean covers every generator it evaluated, each with both classes.
    """
    counts = ((record.get("counts") or {}).get("eval") or {}).values()
    return all(c.get("real", 0) > 0 and c.get("fake", 0) > 0 for c in counts)


def coverage_label(record: dict[str, Any]) -> str:
    """How much of its evaluation a run scored.

    Args:
        record: the run record.

    Returns:
        ``scored/expected`` evaluation images, e.g. ``24/48`` (images that could not be decoded, or that an
        imported file gives no score for, are expected and not scored).
    """
    counts = ((record.get("counts") or {}).get("eval") or {}).values()
    scored = sum(c.get("real", 0) + c.get("fake", 0) for c in counts)
    return f"{scored}/{scored + sum(c.get('skipped', 0) for c in counts)}"


def data_label(record: dict[str, Any]) -> str:
    """The short identity of the data a run evaluated (and, across suites, trained on).

    Args:
        record: the run record.

    Returns:
        The first characters of its evaluation index hash, then ``(train HASH)`` when it trained on another index;
        empty when the record does not say.
    """
    training = record.get("training") or {}
    evaluated = (record.get("data") or {}).get("index_hash")
    if evaluated is None and not training:  # a record before "data": its fit's index is the one evaluated
        evaluated = (record.get("key") or {}).get("index_hash")
    trained = training.get("index_hash")
    parts = [str(evaluated or "")[:SHORT], f"(train {trained[:SHORT]})" if trained and trained != evaluated else ""]
    return " ".join(p for p in parts if p)


def files_label(record: dict[str, Any]) -> str:
    """The short sha256 of every file a run's detector read: weights, heads, initialisations, score files.

    Args:
        record: the run record (the sha256 values of its key's detector identity and score file).

    Returns:
        ``NAME HASH`` items (``weights``, ``head``, ``init``, ``backbone``, ``scores``...), comma-separated; empty
        when it read none.
    """
    key = record.get("key") or {}
    found: list[str] = []

    def walk(node: Any, where: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            return
        for name, value in node.items():
            if isinstance(value, dict):
                walk(value, (*where, str(name)))
            elif str(name).endswith("sha256") and isinstance(value, str) and value:
                what = str(name).removesuffix("sha256").rstrip("_") or (where[-1] if where else "file")
                if what == "weights" and where:  # a backbone's weights: named after the backbone
                    what = where[-1]
                item = f"{what} {value[:SHORT]}"
                if item not in found:
                    found.append(item)

    walk(key.get("detector_identity"), ())
    walk(key.get("scores"), ("scores",))
    return ", ".join(found)


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
    from detbench.engine.finished_run import Run

    frames = []
    for run_dir, record in run_records(suite, runs_root):
        try:
            metrics = Run(run_dir, record).metrics  # with the columns added since the run was recorded
        except DamagedRunError as exc:
            warn(f"{exc}; it is left out (run the same command again to recompute it)")
            continue
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
    preset = record.get("preset") or {}
    if preset.get("reproduction"):
        detector = f"{detector_label(record)} (reproduces {preset['name']})"
    elif preset.get("unverified") and not preset.get("departures"):  # the release's sha256 is unknown
        detector = f"{detector_label(record)} (unverified reproduction of {preset['name']})"
    else:
        detector = detector_label(record)
    values = {
        "detector": detector,
        "backbone": record.get("backbone") or "",
        "settings": _settings_label(record),
        "protocol": record.get("protocol", ""),
        "perturbation": _perturbation_label(record),
        "threshold": threshold_label(record),
        "data": data_label(record),
        "files": files_label(record),
        "coverage": coverage_label(record),
        "config_hash": record.get("config_hash", ""),
        "fit_id": str(record.get("fit_id", ""))[:16],
        "run_id": record["run_id"][:16],
        "flags": run_flags(record),
        "seeds": "" if record_seed(record) is None else str(record_seed(record)),
        "seed_group": seed_group(record),
    }
    return dict(reversed(list(values.items())))


def seed_group(record: dict[str, Any]) -> str:
    """What runs differing only in their seed share: the hash of the run's keys without the seed.

    Args:
        record: the run record (its ``key``: the fit key with the perturbation; its ``run_key``).

    Returns:
        16 hex characters.
    """
    from detbench.store import content_hash

    fit = {k: v for k, v in (record.get("key") or {}).items() if k != "seed"}
    run = {k: v for k, v in (record.get("run_key") or {}).items() if k != "fit_id"}
    return content_hash({"fit": fit, "run": run})[:16]


def group_seeds(wide: pd.DataFrame) -> pd.DataFrame:
    """Runs that differ only in their seed as one row: each value their mean, ``seeds`` the seeds (``0,1,2``),
    :data:`SD_COLUMN` the sample standard deviation of their ``mean`` (NaN for a row of one run).

    Args:
        wide: a wide leaderboard with the :data:`ID_COLUMNS`.

    Returns:
        The grouped table (one row per seed group, in first-appearance order); the id columns of a group's first
        run, its ``run_id`` followed by ``+K`` for the K other runs. Rows without a ``seed_group`` (published
        numbers) are never grouped.
    """
    values = [c for c in wide.columns if c not in ID_COLUMNS and c != SD_COLUMN]
    rows = []
    groups = wide["seed_group"].where(wide["seed_group"].astype(str) != "", "row " + wide.index.astype(str))
    for _, group in wide.groupby(groups, sort=False):  # rows without a group (published numbers) stay apart
        row = group.iloc[0].copy()
        if len(group) > 1:
            row[values] = group[values].astype(float).mean(skipna=False)
            seeds = sorted(group["seeds"], key=lambda s: int(s) if s.lstrip("-").isdigit() else 0)
            row["seeds"] = ",".join(seeds)
            row["run_id"] = f"{row['run_id']} +{len(group) - 1}"
            if "mean" in group:
                row[SD_COLUMN] = float(group["mean"].astype(float).std(ddof=1))
        rows.append(row)
    out = pd.DataFrame(rows, columns=[*wide.columns, *([SD_COLUMN] if SD_COLUMN not in wide else [])])
    if out[SD_COLUMN].isna().all():
        out = out.drop(columns=[SD_COLUMN])
    return out.reset_index(drop=True)


def suite_long(suite: str, published: bool = False, runs_root: Path | None = None) -> pd.DataFrame:
    """:func:`long_table` of ``suite``, with the published numbers of its paper presets when ``published``.

    Args:
        suite: the suite's name.
        published: append the rows of the papers' published numbers (:func:`detbench.results.presets.published_rows`).
        runs_root: where the runs are; None: ``$DETBENCH_HOME/runs``.

    Returns:
        The long table.

    Raises:
        RunLookupError: the suite has no finished run (and no published row).
    """
    long = long_table(suite, runs_root)
    if published:
        from detbench.results.presets import published_rows

        long = pd.concat([long, published_rows(suite)], ignore_index=True)
        long[ID_COLUMNS] = long[ID_COLUMNS].fillna("")  # published numbers: no data, files or coverage of ours
    if long.empty:
        raise RunLookupError(f"no finished runs for suite {suite!r}; try `detbench run linear-probe --suite {suite}`")
    return long


def leaderboard_view(
    long: pd.DataFrame, metric: str = "acc", *, delta: bool = False, rank: bool = False, **filters: str | None
) -> pd.DataFrame:
    """The wide leaderboard of ``metric`` (one row per run), as deltas to the clean run of the same fit with
    ``delta``, keeping the runs :func:`filter_runs` selects with ``filters`` (``detector``, ``backbone``,
    ``perturbation``; deltas still use every run).

    Args:
        long: :func:`suite_long` output.
        metric: the metric shown (a value of ``long``'s ``metric`` column, e.g. ``acc`` or ``ap``).
        delta: show each perturbed run's difference to its clean run instead of its values (clean rows dropped).
        rank: add each run's average rank over the generators, sorted by it, and the Friedman test across the runs
            (:func:`ranked_view`).
        **filters: patterns for ``detector``, ``backbone`` and ``perturbation`` (see :func:`filter_runs`); None or
            empty: no filter.

    Returns:
        The wide table (see :func:`wide_table` and :func:`delta_table`), index reset.

    Raises:
        ConfigError: ``metric`` is not a metric of these runs, or ``rank`` with ``delta``.
        RunLookupError: the filters select no run.
        DataError: ``rank`` without two generators and two runs to rank.
    """
    from detbench.errors import ConfigError

    known = set(long["metric"])
    if metric not in known:
        raise ConfigError(f"unknown metric {metric!r}; choose from {', '.join(sorted(known))}")
    if rank and delta:
        raise ConfigError("--rank ranks the runs' values, not differences to clean runs; drop --delta or --rank")
    view = group_seeds(delta_table(wide_table(long, metric, group=False))) if delta else wide_table(long, metric)
    suite = long["suite"].iloc[0] if "suite" in long and len(long) else "this suite"
    if filter_runs(long, **filters).empty:
        raise RunLookupError(f"no run of {suite} matches the filters; see `detbench leaderboard {suite}`")
    below = {}
    if not delta and len(view):  # the floor compares values, not differences to clean runs
        view = with_floor(view, metric, floor_facts(suite))
        below = view.attrs[BELOW_FLOOR]
    view = filter_runs(view, **filters).reset_index(drop=True)
    view = ranked_view(view, metric) if rank else view
    if below:
        view.attrs[BELOW_FLOOR] = {r: below[r] for r in view["run_id"] if r in below}
    return view


RANK_COLUMN = "avg_rank"


def _direction(metric: str) -> str:
    """``higher``, ``lower`` (better) or ``none`` (counts, thresholds, metrics it does not know)."""
    from detbench.metrics import DIRECTIONS

    return DIRECTIONS.get(metric, "none")


def ranked_view(view: pd.DataFrame, metric: str, alpha: float = 0.05) -> pd.DataFrame:
    """``view`` with each run's average rank over the generators (1 = best for ``metric``), sorted by it, and the
    Friedman test and Nemenyi critical difference across the runs (Demšar 2006) in ``.attrs["friedman"]``.

    Only runs with a value for every generator are ranked (the others get NaN and sort last): Friedman's test needs
    complete blocks.

    Args:
        view: a wide leaderboard (:func:`leaderboard_view`, not of deltas).
        metric: the metric its values are of (its direction says what rank 1 is).
        alpha: the level of the critical difference.

    Returns:
        The view with :data:`RANK_COLUMN`; ``.attrs["friedman"]``: :class:`detbench.stats.Friedman` as a dict, with
        ``run_ids`` of the ranked rows in their order.

    Raises:
        ConfigError: ``metric`` has no direction (a count or a threshold).
        DataError: fewer than two generators, or fewer than two runs with a value for each.
    """
    import dataclasses

    from detbench.errors import ConfigError, DataError
    from detbench.stats import friedman

    direction = _direction(metric)
    if direction == "none":
        raise ConfigError(f"--rank needs a metric where higher or lower is better; {metric!r} is neither")
    generators = [c for c in view.columns
                  if c not in (*ID_COLUMNS, FLOOR_COLUMN, *SUMMARY_ROWS, *VALUE_EXTRAS, RANK_COLUMN)]
    complete = view[generators].notna().all(axis=1).to_numpy() if generators else np.zeros(len(view), bool)
    if len(generators) < 2 or complete.sum() < 2:
        raise DataError(
            f"--rank ranks runs over generators: it needs two or more generators and two or more runs with a "
            f"{metric} value for each; these runs have {len(generators)} generators and {int(complete.sum())} such runs"
        )
    values = view.loc[complete, generators].to_numpy(dtype=float).T  # (generators, runs)
    result = friedman(values, higher_is_better=direction == "higher", alpha=alpha)
    out = view.copy()
    out[RANK_COLUMN] = np.nan
    out.loc[complete, RANK_COLUMN] = result.ranks
    out = out.sort_values(RANK_COLUMN, kind="stable", na_position="last").reset_index(drop=True)
    out.attrs["friedman"] = {**dataclasses.asdict(result), "run_ids": list(view.loc[complete, "run_id"])}
    return out


def evaluation_key(record: dict[str, Any]) -> str:
    """What identifies the rows a run evaluated: the index, the evaluated split and generators, the sample.

    Args:
        record: the run record.

    Returns:
        A content hash; equal for runs that evaluated the same rows.
    """
    from detbench.store import content_hash

    key = record.get("run_key") or record.get("key") or {}
    protocol = key.get("protocol") or {}
    evaluated = (record.get("data") or {}).get("index_hash") or key.get("index_hash")
    return content_hash({"index": evaluated, "evaluation": key.get("evaluation"),
                         "split": protocol.get("eval_split"), "generators": protocol.get("eval_generators"),
                         "sample": record.get("eval_sample")})


def floor_facts(suite: str, runs_root: Path | None = None) -> dict[str, tuple[str, bool]]:
    """For every finished run of ``suite``: its evaluation rows (:func:`evaluation_key`) and whether it is a floor.

    Args:
        suite: the suite's name.
        runs_root: where the runs are; None: ``$DETBENCH_HOME/runs``.

    Returns:
        ``{run id (16 characters, as tables show it): (evaluation key, is a floor run)}``.
    """
    return {record["run_id"][:16]: (evaluation_key(record), bool(record.get("floor")))
            for _, record in run_records(suite, runs_root)}


def with_floor(wide: pd.DataFrame, metric: str, facts: dict[str, tuple[str, bool]]) -> pd.DataFrame:
    """``wide`` with :data:`FLOOR_COLUMN` (after ``flags``): ``floor`` for a floor run, else whether the run's mean
    beats (strictly, in the metric's direction) that of the floor run on the same evaluation rows (one of the same
    protocol first, then a clean one), ``below`` when not, ``n/a`` without such a floor run or a value to compare;
    ``.attrs[BELOW_FLOOR]`` names each run's generator and summary columns that do not beat the floor's.

    Args:
        wide: :func:`wide_table` output (not deltas).
        metric: the metric of its values.
        facts: :func:`floor_facts` of its runs.

    Returns:
        A copy with the column.
    """
    out = wide.copy()
    direction = _direction(metric)
    values = [c for c in out.columns if c not in (*ID_COLUMNS, "mean_delta", RANK_COLUMN)]
    keys = out["run_id"].map(lambda r: facts.get(r, ("", False))[0])
    is_floor = out["run_id"].map(lambda r: facts.get(r, ("", False))[1]).astype(bool)
    floors = out[is_floor].assign(_k=keys[is_floor], _c=out.loc[is_floor, "perturbation"] != "clean")
    verdicts, below = [], {}
    for i, row in out.iterrows():
        match = floors[floors["_k"] == keys[i]]
        match = match.assign(_p=match["protocol"] != row["protocol"]).sort_values(["_p", "_c"], kind="stable")
        if is_floor[i]:
            verdicts.append("floor")
            continue
        if match.empty or direction == "none":
            verdicts.append("n/a")
            continue
        ref = match.iloc[0]
        better = (lambda a, b: a > b) if direction == "higher" else (lambda a, b: a < b)
        worse = [c for c in values if pd.notna(row[c]) and pd.notna(ref.get(c)) and not better(row[c], ref[c])]
        below[row["run_id"]] = worse
        mean, floor_mean = row.get("mean"), ref.get("mean")
        verdicts.append("n/a" if pd.isna(mean) or pd.isna(floor_mean) else "below" if "mean" in worse else "beats")
    out.insert(out.columns.get_loc("flags") + 1, FLOOR_COLUMN, verdicts)
    out.attrs[BELOW_FLOOR] = below
    return out


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
            composition such as ``blur:2+jpeg:90``); one that does not parse, a class-targeted one and a step
            whose value is no severity (``gray``, ``social:1``) sort with the compositions.

    Returns:
        ``(group, kind, severity)``: group 0 clean, 1 single, 2 composed, targeted, unordered or unparsed.
    """
    from detbench.config import ConfigError
    from detbench.data.perturbations import Step, parse_perturbation

    if label == "clean":
        return (0, "", 0.0)
    try:
        step = parse_perturbation(label)
    except ConfigError:
        return (2, label, 0.0)
    if not isinstance(step, Step) or not step.ordered:  # composed, class-targeted, or no single severity
        return (2, label, 0.0)
    return (1, step.name, -step.level if step.severe_when_low else step.level)


def wide_table(long: pd.DataFrame, metric: str = "acc", group: bool = True) -> pd.DataFrame:
    """One row per run, one column per generator (then mean, worst) for ``metric``, and ``mean_delta``:
    a perturbed run's mean minus that of the clean run of the same fit and threshold (NaN without one).

    Args:
        long: :func:`long_table` output (rows of other metrics are ignored).
        metric: the metric to show.
        group: runs that differ only in their seed become one row (:func:`group_seeds`).

    Returns:
        :data:`ID_COLUMNS`, the generator columns, the summary columns and ``mean_delta``; sorted by protocol,
        then perturbation (:func:`perturbation_rank`), then mean (best first), rows whose mean covers fewer generators
        than the other rows of their protocol after the rest (their ``coverage`` ends ``, K/N generators``; see
        :func:`partial_generators`). Only :data:`ID_COLUMNS` when no run has ``metric``.
    """
    subset = long[long["metric"] == metric]
    if subset.empty:
        return pd.DataFrame(columns=ID_COLUMNS)
    missing = [c for c in ID_COLUMNS if c not in subset.columns]  # tables built before these columns existed
    subset = subset.assign(**dict.fromkeys(missing, "")) if missing else subset
    wide = subset.pivot(index=ID_COLUMNS, columns="generator", values="value")
    generators = [g for g in wide.columns if g not in SUMMARY_ROWS]
    wide = wide[generators + [c for c in SUMMARY_ROWS if c in wide.columns]].reset_index()
    wide.columns.name = None
    if "mean" in wide.columns:
        wide["mean_delta"] = delta_table(wide, keep_clean=True)["mean"]
    per_run = subset[~subset["generator"].isin(SUMMARY_ROWS)].groupby(ID_COLUMNS)["generator"].nunique()
    has = wide.set_index(ID_COLUMNS).index.map(per_run).fillna(0).astype(int).to_numpy()
    of = wide["protocol"].map(  # the generators of the rows beside it: its protocol's in this table
        subset[~subset["generator"].isin(SUMMARY_ROWS)].groupby("protocol")["generator"].nunique()
    ).fillna(0).astype(int).to_numpy()
    partial = has < of
    wide.loc[partial, "coverage"] = [
        f"{c}, {h}/{o} {GENERATORS}" if c else f"{h}/{o} {GENERATORS}"
        for c, h, o in zip(wide.loc[partial, "coverage"], has[partial], of[partial], strict=True)
    ]
    if group:
        wide = group_seeds(wide.assign(_c=partial))
        partial = wide.pop("_c").to_numpy(dtype=float) > 0
    rank = wide["perturbation"].map(perturbation_rank)
    best_first = -1 if _direction(metric) != "lower" else 1
    wide = wide.assign(_p=rank.str[0], _k=rank.str[1], _s=rank.str[2], _c=partial,
                       _m=best_first * wide.get("mean", 0.0))
    wide = wide.sort_values(["protocol", "_p", "_k", "_s", "_c", "_m"], kind="stable")  # ranked per perturbation,
    return wide.drop(columns=["_p", "_k", "_s", "_c", "_m"]).reset_index(drop=True)  # incomplete rows after


def partial_generators(coverage: str) -> tuple[int, int] | None:
    """How many of the table's generators a row's mean covers, when fewer than all (:func:`wide_table`).

    Args:
        coverage: a wide table's ``coverage`` cell.

    Returns:
        ``(K, N)``, or None when the row covers them all.
    """
    import re

    found = re.search(rf"(\d+)/(\d+) {GENERATORS}$", str(coverage))
    return (int(found.group(1)), int(found.group(2))) if found else None


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
    wide = wide.drop(columns=[SD_COLUMN], errors="ignore")
    values = [c for c in wide.columns if c not in (*ID_COLUMNS, *VALUE_EXTRAS)]
    clean = wide[wide["perturbation"] == "clean"].drop_duplicates(["fit_id", "threshold"], keep="last")
    reference = wide[["fit_id", "threshold"]].merge(clean[["fit_id", "threshold", *values]], how="left")
    out = wide.drop(columns=["mean_delta"], errors="ignore").copy()
    is_clean = (out["perturbation"] == "clean").to_numpy()
    for col in values:
        delta = out[col].to_numpy(dtype=float) - reference[col].to_numpy(dtype=float)
        out[col] = pd.Series(delta, index=out.index).where(~is_clean)
    return out if keep_clean else out[~is_clean].reset_index(drop=True)


COST_COLUMNS = [
    "params", "params_trainable", "gflops_per_image", "images_per_s", "peak_memory_mib", "peak_memory_kind",
    "cost_device", "cost_na",
]  # fmt: skip  # what with_cost adds: numbers (NaN when n/a), then what they were measured as and on, and why n/a
PUBLISHED_COST = "published numbers: no run of ours"


def cost_table(suite: str, runs_root: Path | None = None) -> pd.DataFrame:
    """The cost of every finished run of a suite (:func:`detbench.engine.cost.run_cost`), one row per run.

    Args:
        suite: the suite's name.
        runs_root: where the runs are; None: ``$DETBENCH_HOME/runs``.

    Returns:
        ``run_id`` (16 characters, as the leaderboards show it) and :data:`COST_COLUMNS`: parameters (total and
        trainable), GFLOPs per image, images per second of the scoring phase, peak memory in MiB and what it is
        (``CUDA allocated`` or ``RSS``), the device it was measured on, and why values are n/a (empty when none is).
    """
    from detbench.engine.cost import run_cost

    rows = []
    for _, record in run_records(suite, runs_root, verify=()):  # the record's own sha256 is still checked
        cost = run_cost(record)
        memory = cost["peak_memory_bytes"]
        device = str((record.get("cost") or {}).get("machine", {}).get("device", ""))
        kind = "CUDA allocated" if device.startswith("cuda") else "RSS" if memory is not None else ""
        rows.append({
            "run_id": record["run_id"][:16],
            "params": cost["params"],
            "params_trainable": cost["params_trainable"],
            "gflops_per_image": cost["gflops_per_image"],
            "images_per_s": cost["images_per_s"],
            "peak_memory_mib": None if memory is None else memory / 2**20,
            "peak_memory_kind": kind,
            "cost_device": cost["device"],
            "cost_na": _na_text(cost["na"]),
        })
    numeric = {c: float for c in COST_COLUMNS[:5]}
    return pd.DataFrame(rows, columns=["run_id", *COST_COLUMNS]).astype(numeric)


def _na_text(na: dict[str, str]) -> str:
    """Why a run's cost values are n/a: one reason when they share it, else ``field: reason`` items."""
    reasons = list(dict.fromkeys(na.values()))
    if len(reasons) <= 1:
        return reasons[0] if reasons else ""
    return "; ".join(f"{field}: {why}" for field, why in na.items())


def with_cost(view: pd.DataFrame, suite: str, runs_root: Path | None = None) -> pd.DataFrame:
    """A leaderboard with each run's cost (:func:`cost_table`) after its values; rows and their order unchanged.

    Args:
        view: a wide leaderboard (:func:`leaderboard_view`), with its ``run_id`` column.
        suite: the suite its runs are of.
        runs_root: where the runs are; None: ``$DETBENCH_HOME/runs``.

    Returns:
        ``view`` with :data:`COST_COLUMNS` appended (NaN where n/a, the reason in ``cost_na``; published rows say
        they are no run of ours); its ``attrs`` kept.
    """
    import warnings

    from detbench.errors import DetbenchWarning

    with warnings.catch_warnings():  # a damaged run was reported (and left out of the view) when the view was built
        warnings.simplefilter("ignore", DetbenchWarning)
        costs = cost_table(suite, runs_root).drop_duplicates("run_id").set_index("run_id")
    out = view.copy()
    run = out["run_id"].astype(str).str.split(" ").str[0]  # a row grouping seeds: its first run ("ID +K")
    for column in COST_COLUMNS:
        out[column] = run.map(costs[column]) if len(costs) else np.nan
    missing = ~run.isin(costs.index)
    out.loc[missing, ["peak_memory_kind", "cost_device"]] = ""
    out.loc[missing, "cost_na"] = np.where(run[missing] == "published", PUBLISHED_COST, "")
    out[COST_COLUMNS[:5]] = out[COST_COLUMNS[:5]].astype(float)
    out.attrs = dict(view.attrs)
    return out


def write_csvs(
    suite: str,
    out_dir: Path,
    metric: str = "acc",
    runs_root: Path | None = None,
    filters: dict[str, str | None] | None = None,
    rank: bool = False,
    cost: bool = False,
) -> tuple[Path, Path]:
    """Write ``<suite>_leaderboard.csv`` (wide, ``metric``) and ``<suite>_leaderboard_long.csv`` atomically,
    keeping the runs :func:`filter_runs` selects with ``filters`` (``mean_delta`` still uses every run).

    Args:
        suite: the suite's name.
        out_dir: the folder to write into (created if missing; existing files of these names are replaced).
        metric: the metric of the wide table.
        runs_root: where the runs are; None: ``$DETBENCH_HOME/runs``.
        filters: ``detector``/``backbone``/``perturbation`` patterns; None: every run.
        rank: the wide CSV gets each run's average rank over the generators (:func:`ranked_view`), sorted by it.
        cost: the wide CSV gets each run's cost (:func:`with_cost`).

    Returns:
        The paths of the wide and the long CSV.
    """
    from detbench.store import atomic_path

    long = long_table(suite, runs_root)
    wide = wide_table(long, metric)
    wide = filter_runs(with_floor(wide, metric, floor_facts(suite, runs_root)) if len(wide) else wide,
                       **(filters or {}))
    wide = ranked_view(wide.reset_index(drop=True), metric) if rank else wide
    wide = with_cost(wide, suite, runs_root) if cost else wide
    long = filter_runs(long, **(filters or {}))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / f"{suite}_leaderboard.csv", out_dir / f"{suite}_leaderboard_long.csv")
    for df, path in zip((wide, long), paths, strict=True):
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
    return paths
