"""Score your own images with the detector a finished run trained.

The run's trained state (its fit) is loaded with the run's exact configuration (its tiles too); the run's evaluation
perturbation, if any, is *not* applied (your images are scored as they are). A file is called fake
when its P(fake) exceeds the run's threshold (fixed or calibrated, as the run recorded it). Files
that cannot be read or decoded are reported one by one; the others are still scored. A Parquet shard named
directly (``data/test-00000-of-00002.parquet``) is scored row by row, each row shown as its locator.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detbench.data import shards
from detbench.data.images import IMAGE_EXTENSIONS
from detbench.data.suites import BAD_NAME_REASON, display_name, is_valid_utf8
from detbench.engine.finished_run import Run
from detbench.errors import ConfigError, InputError
from detbench.kit.detector import RunContext
from detbench.progress import Phases

COLUMNS = ["file", "score", "decision", "error"]


def collect_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files to score: files named directly and the image files under named folders.

    Args:
        paths: files and folders. A file is kept whatever its extension (a missing one too: it gets its error
            row later); a folder contributes its image files (recursively, by extension, sorted).

    Returns:
        The files in the order given, each once (repeats compared by absolute path).
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            )
        else:
            found.append(path)
    seen: set[str] = set()
    unique = []
    for path in found:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def load_trained(run_ref: str, ctx: RunContext) -> Run:
    """Rebuild the detector of a finished run from its record and load its fit.

    Warns (through ``ctx.phases``) when the installed detector's version or its identity (backbone, preprocessing)
    differs from the run's.

    Args:
        run_ref: the run id or its first characters.
        ctx: the context to set the detector up in; ``eval_convention``, when None, is set to the run's suite's.

    Returns:
        The :class:`~detbench.engine.finished_run.Run`, its ``detector`` set up and its fit loaded.

    Raises:
        RunLookupError: no finished run, or several, match ``run_ref``.
        ConfigError: the run holds imported scores (there is no model).
        RegistryError: the run's detector is not installed.
        WeightsError: the fit's state (or the detector's weights) cannot be loaded.
    """
    from detbench.config import apply_overrides, field_paths
    from detbench.engine.record import detector_label, record_seed
    from detbench.registry import DETECTORS, SUITES
    from detbench.results.leaderboard import find_run
    from detbench.store import canonical_json

    run_dir, record = find_run(run_ref)
    if record.get("external"):
        raise ConfigError(
            f"run {run_dir.name} holds scores imported from a file ({detector_label(record)}): there is no model to "
            "score new images with; choose a run of a detector detbench runs (see `detbench ls runs`)"
        )
    cls = DETECTORS.get(record["detector"])
    if ctx.eval_convention is None and record["suite"] in SUITES:  # score as the run did (e.g. NPR's resize)
        ctx.eval_convention = SUITES.get(record["suite"]).eval_convention
    saved = record["key"]["detector"]
    # the config as run, with its file paths (the key names files by sha256 only); older records: the key's
    settable = field_paths(cls.Config)  # fields the class fixes (init=False, e.g. UnivFD's normalize) are recorded too
    recorded = _dotted(record.get("config") or saved["config"])
    config = apply_overrides(cls.Config(), {k: v for k, v in recorded.items() if k in settable or not _fixed(cls, k)})
    detector = cls(config)
    seed = record_seed(record)
    identity = record["key"].get("detector_identity", {})
    setup_ctx = dataclasses.replace(ctx, recorded_identity=identity, **({} if seed is None else {"seed": seed}))
    detector.setup(setup_ctx)  # seeded draws as the run made them; training-only facts from the record
    if saved.get("version") != cls.version:
        ctx.phases.log(
            f"[yellow]warning:[/] run {run_dir.name} was made by {cls.name} version {saved.get('version')}; "
            f"installed is version {cls.version}, whose outputs may differ"
        )
    if json.loads(canonical_json(detector.identity())) != identity:
        ctx.phases.log(
            f"[yellow]warning:[/] the backbone or preprocessing found now differs from run {run_dir.name}'s "
            "(weights, versions or settings); scores may differ from the run's"
        )
    if (record.get("fit") or {}).get("stored", True):  # an eval-only run has no fit: set up is all it used
        detector.load(fit_dir(run_dir, record) / "state")
    return Run(run_dir, record, detector=detector)


def fit_dir(run_dir: Path, record: dict[str, Any]) -> Path:
    """The run's fit folder, found by the fit id (not by the absolute path the record holds, so a moved home
    still works).

    Args:
        run_dir: the run's folder (``<runs>/<suite>/<detector>/<run id>``).
        record: its run record (``fit_id``, and ``training.suite`` for a cross-suite run).

    Returns:
        ``<runs>/<suite>/<detector>/fits/<fit id>``, where ``<suite>`` is the training suite of a cross-suite run
        and ``<runs>`` the runs folder holding ``run_dir``.
    """
    from detbench.engine import layout

    training = record.get("training") or {}
    suite_dir = run_dir.parent.parent
    train_suite = training.get("suite") or suite_dir.name
    return layout.fit_dir(train_suite, run_dir.parent.name, str(record["fit_id"]), root=suite_dir.parent)


def _fixed(cls: Any, key: str) -> bool:
    """Whether ``key`` names a config field the detector class fixes (``init=False``): recorded, never set."""
    import dataclasses

    names = {f.name: f for f in dataclasses.fields(cls.Config)}
    return "." not in key and key in names and not names[key].init


def _dotted(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def predict_files(
    run_ref: str,
    paths: Sequence[str | Path],
    *,
    device: str | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    phases: Phases | None = None,
) -> tuple[pd.DataFrame, Run]:
    """Score files with the detector a finished run trained, without the run's perturbation.

    Args:
        run_ref: the run id or its first characters.
        paths: files, folders and Parquet shards (see :func:`collect_files`).
        device: the torch device; None: CUDA when available, else the CPU.
        workers: image-decoding worker processes (0: decode in the main process); None: by the CPU count
            (:func:`detbench.data.loading.default_workers`).
        batch_size: the scoring batch; None: the detector's default.
        phases: where progress and warnings go; None: a default :class:`Phases`.

    Returns:
        ``(predictions, trained)``: columns :data:`COLUMNS`, one row per image in input order (``score`` is P(fake),
        NaN with ``error`` set where the image could not be scored; ``decision`` is ``fake`` above the run's
        threshold, else ``real``), and the loaded run.

    Raises:
        ConfigError: ``workers`` < 0 or ``batch_size`` < 1, a device this machine does not have, or the run holds
            imported scores.
        InputError: no file found in ``paths``.
        RunLookupError: no finished run, or several, match ``run_ref``.
    """
    from detbench.data import images
    from detbench.engine.resolve import check_device, default_device
    from detbench.models.features import FeatureCache

    if workers is not None and workers < 0 or batch_size is not None and batch_size < 1:
        raise ConfigError(f"--workers must be >= 0 and --batch-size >= 1; got {workers} and {batch_size}")
    check_device(device)
    files = collect_files(paths)
    if not files:
        raise InputError(
            f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in {', '.join(map(str, paths))}"
        )
    shown: list[str] = []  # per input image: the name shown, where its bytes are, its id or why not
    sources: list[tuple[Path, str]] = []  # (file or shard on disk, locator suffix "#column:row" or "")
    ids: list[str | None] = []
    errors: list[str] = []
    for f in files:
        disk = Path(os.path.abspath(f))
        if not is_valid_utf8(str(disk)):  # as in the index: no record or table can hold the name
            shown.append(display_name(f))
            sources.append((disk, ""))
            ids.append(None)
            errors.append(f"bad_name: {BAD_NAME_REASON}")
            continue
        if shards.is_shard(f):
            for suffix, image_id, error in _shard_images(disk):
                shown.append(f"{display_name(f)}{suffix}")
                sources.append((disk, suffix))
                ids.append(image_id)
                errors.append(error)
            continue
        shown.append(display_name(f))
        sources.append((disk, ""))
        try:
            ids.append(images.file_digest(disk))
            errors.append("")
        except images.ImageError as exc:
            ids.append(None)
            errors.append(f"{exc.status}: {exc.reason}")
    root = Path(os.path.commonpath([str(disk.parent) for disk, _ in sources]))
    out = pd.DataFrame({"file": shown, "score": np.nan, "decision": "", "error": errors})
    usable = [i for i, image_id in enumerate(ids) if image_id is not None]
    phases = phases or Phases()
    ctx = RunContext(
        suite_root=root,
        suite_name="predict",
        device=device or default_device(),
        seed=0,
        run_dir=root,
        phases=phases,
        workers=workers,
        batch_size=batch_size,
        feature_cache=FeatureCache(),
        stage="predict",
    )
    trained = load_trained(run_ref, ctx)
    profiles = set(trained.record.get("eval_profiles", {}).values())
    if len(profiles) == 1:  # the run evaluated under one suite-imposed profile: score these files the same way
        from detbench.data.preprocess import eval_profile

        ctx.eval_profiles = {"predict": eval_profile(profiles.pop())}
    ctx.run_dir = fit_dir(trained.path, trained.record)
    if usable:
        rows = pd.DataFrame(
            {
                "image_id": [ids[i] for i in usable],
                "path": [sources[i][0].relative_to(root).as_posix() + sources[i][1] for i in usable],
                "generator": "predict",
                "split": "predict",
                "label": -1,  # unknown
                "status": "ok",
            }
        )
        if trained.detector.metadata_columns:  # what a run's rows carry from its index
            from detbench.data.index import probe_metadata

            metadata = probe_metadata(root, rows["path"].tolist())
            rows = pd.concat([rows, metadata[list(trained.detector.metadata_columns)]], axis=1)
        tiling = run_tiling(trained.record)
        if tiling is None:
            scores, failures = trained.detector.predict(rows, ctx)
        else:
            from detbench.kit.tiling import predict_tiled

            scores, failures, _ = predict_tiled(trained.detector, rows, ctx, tiling)
        for local, i in enumerate(usable):
            if local in failures:
                out.loc[i, "error"] = failures[local]
            elif np.isfinite(scores[local]):
                out.loc[i, "score"] = float(scores[local])
                out.loc[i, "decision"] = "fake" if scores[local] > trained.threshold else "real"
            else:
                out.loc[i, "error"] = "no score"
    return out, trained


def run_tiling(record: dict[str, Any]) -> Any:
    """The tiles a run scored with (``eval.tiles`` / ``eval.fuse``), so that ``predict`` scores files the same way.

    Args:
        record: the run record.

    Returns:
        The :class:`~detbench.data.tiles.Tiling`, or None (whole images).
    """
    from detbench.data.tiles import parse_tiling

    tiles = record.get("tiles")
    return parse_tiling(tiles["tiles"], tiles["fuse"]) if isinstance(tiles, dict) else None


def predict_runs(
    run_refs: Sequence[str],
    paths: Sequence[str | Path],
    *,
    device: str | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    phases: Phases | None = None,
) -> list[tuple[Run, pd.DataFrame]]:
    """:func:`predict_files` for each run of ``run_refs`` (the same images, in the same order, for each).

    Args:
        run_refs: run ids or their first characters.
        paths: files, folders and Parquet shards (see :func:`collect_files`).
        device: the torch device; None: CUDA when available, else the CPU.
        workers: image-decoding worker processes (0: decode in the main process); None: by the CPU count
            (:func:`detbench.data.loading.default_workers`).
        batch_size: the scoring batch; None: the detector's default.
        phases: where progress and warnings go; None: a default :class:`Phases` per run.

    Returns:
        ``(trained run, predictions)`` per run, in the order of ``run_refs``.

    Raises:
        ConfigError: no run given, one run given twice, or a device this machine does not have.
    """
    if not run_refs:
        raise ConfigError("give at least one run id (see `detbench ls runs`)")
    from detbench.engine.resolve import check_device

    check_device(device)  # before the first run is loaded
    results = []
    for ref in run_refs:
        predictions, trained = predict_files(ref, paths, device=device, workers=workers, batch_size=batch_size,
                                             phases=phases)
        if any(t.record["run_id"] == trained.record["run_id"] for t, _ in results):
            raise ConfigError(f"run {trained.path.name} is named twice")
        results.append((trained, predictions))
    return results


def run_column(record: dict[str, Any]) -> str:
    """The name of a run's score column in exports and tables.

    Args:
        record: the run record.

    Returns:
        ``<detector label>@<first 16 characters of the run id>``.
    """
    from detbench.engine.record import detector_label

    return f"{detector_label(record)}@{record['run_id'][:16]}"


def long_predictions(results: list[tuple[Run, pd.DataFrame]]) -> pd.DataFrame:
    """Every run's predictions in one table.

    Args:
        results: :func:`predict_runs` output.

    Returns:
        Columns ``run`` (see :func:`run_column`) then :data:`COLUMNS`; the runs' rows one after the other.
    """
    frames = [predictions.assign(run=run_column(trained.record)) for trained, predictions in results]
    return pd.concat(frames, ignore_index=True)[["run", *COLUMNS]]


def export_table(results: list[tuple[Run, pd.DataFrame]], folder: Path, logits: bool = False) -> pd.DataFrame:
    """The grip-unina-style per-image table: ``filename`` relative to ``folder`` (where the CSV goes: grip-unina's
    ``main.py`` reads images relative to its CSV) and one score column per run (:func:`run_column`), empty where
    the image could not be scored.

    Args:
        results: :func:`predict_runs` output.
        folder: the folder the table is written into.
        logits: log-odds of P(fake) (:func:`detbench.probabilities.logit`) instead of P(fake).

    Returns:
        The table, one row per image in input order.
    """
    from detbench.probabilities import logit

    first = results[0][1]
    out = pd.DataFrame({"filename": [_relative_name(f, folder) for f in first["file"]]})
    for trained, predictions in results:
        scores = predictions["score"].to_numpy(dtype=float)
        out[run_column(trained.record)] = logit(scores) if logits else scores
    return out


def check_outputs(*paths: str | Path | None) -> None:
    """Refuse output files that cannot be written: a path naming an existing folder, or one file named twice.

    Args:
        paths: the files predictions or exports will be written to (None: not asked for).

    Raises:
        InputError: one of them is a folder, or one file is named twice.
    """
    named = [Path(path) for path in paths if path is not None]
    for path in named:
        if path.is_dir():
            raise InputError(f"{path} is a folder; name the file to write, e.g. {path / 'scores.csv'}")
    resolved = [path.expanduser().resolve() for path in named]
    for i, path in enumerate(resolved):
        if path in resolved[:i]:
            raise InputError(f"{named[i]} is named for two outputs; give each output (--csv, --json, --export) its "
                             "own file")


def write_export(results: list[tuple[Run, pd.DataFrame]], path: Path, logits: bool = False) -> None:
    """Write :func:`export_table` to ``path`` (CSV, atomically; filenames relative to the CSV's folder).

    Args:
        results: :func:`predict_runs` output.
        path: the CSV file to write (replaced if it exists).
        logits: write log-odds of P(fake) instead of P(fake).

    Raises:
        InputError: ``path`` is a folder.
    """
    from detbench.store import atomic_path

    check_outputs(path)
    table = export_table(results, Path(os.path.abspath(path)).parent, logits)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.9g")


def _relative_name(shown: str, folder: Path) -> str:
    """A predicted file's name relative to ``folder`` (POSIX separators), with its shard locator kept."""
    name, hash_, locator = shown.partition("#")
    if not hash_ or not shards.is_shard(name):
        name, locator = shown, ""
    relative = Path(os.path.relpath(os.path.abspath(name), folder)).as_posix()
    return relative + (f"#{locator}" if locator else "")


def _shard_images(shard: Path) -> list[tuple[str, str | None, str]]:
    """``(locator suffix, content id or None, error)`` per row of a Parquet shard's image column (the column
    named ``image``, else its only image-like column); one error row if the shard cannot be read.
    """
    from detbench.data import images

    try:
        column = shards.default_image_column(shards.open_shard(shard), shard)
        out = []
        for start, values in shards.iter_rows(shard, [column]):
            for row, data in enumerate(values[column], start):
                suffix = "#" + str(shards.Locator("", column, row)).split("#", 1)[1]
                if data is None:
                    out.append((suffix, None, f"empty: {images.NO_BYTES}"))
                else:
                    out.append((suffix, images.bytes_digest(data), ""))
        return out
    except (OSError, ValueError) as exc:  # ShardError, pyarrow's errors
        return [("", None, f"unreadable shard: {exc}")]


def predictions_table(predictions: pd.DataFrame, trained: Run) -> Any:
    """A rich table of :func:`predict_files` output, for the terminal.

    Args:
        predictions: one run's predictions (columns :data:`COLUMNS`).
        trained: the run that made them (its detector, suite, protocol and threshold go in the title and caption).

    Returns:
        A :class:`rich.table.Table`: P(fake) in percent, rows coloured by decision (yellow: not scored).
    """
    from rich.table import Table

    from detbench.results.display import threshold_note

    rec = trained.record
    table = Table(
        title=f"{rec['detector']} from run {trained.path.name} ({rec['suite']}/{rec['protocol']})",
        title_justify="left",
        caption=f"P(fake) in %; fake if above the run's {threshold_note(rec)}",
        caption_justify="left",
    )
    for col, justify in (("file", "left"), ("P(fake)", "right"), ("decision", "left"), ("error", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    for row in predictions.itertuples(index=False):
        score = "" if np.isnan(row.score) else f"{100 * row.score:.1f}"
        style = "red" if row.decision == "fake" else "green" if row.decision == "real" else "yellow"
        table.add_row(row.file, score, row.decision, row.error, style=style)
    return table


def write_predictions(
    results: list[tuple[Run, pd.DataFrame]], csv: Path | None = None, json_path: Path | None = None
) -> None:
    """Write the predictions as CSV and/or JSON (with the run and threshold), each atomically. One run: the CSV has
    :data:`COLUMNS` and the JSON is that run's document; several: the CSV starts with a ``run`` column
    (:func:`long_predictions`) and the JSON is ``{"runs": [document, ...]}``.

    Args:
        results: :func:`predict_runs` output.
        csv: the CSV file to write; None: none.
        json_path: the JSON file to write; None: none.

    Raises:
        InputError: ``csv`` or ``json_path`` is a folder (nothing is written).
    """
    from detbench.store import atomic_path

    check_outputs(csv, json_path)
    if csv is not None:
        table = long_predictions(results)
        with atomic_path(csv) as tmp:
            (table if len(results) > 1 else table[COLUMNS]).to_csv(tmp, index=False, float_format="%.6g")
    if json_path is not None:
        docs = [_json_document(trained, predictions) for trained, predictions in results]
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(docs[0] if len(docs) == 1 else {"runs": docs}, indent=2) + "\n")


def _json_document(trained: Run, predictions: pd.DataFrame) -> dict[str, Any]:
    rec = trained.record
    return {
        "run_id": rec["run_id"],
        "detector": rec["detector"],
        "suite": rec["suite"],
        "protocol": rec["protocol"],
        "threshold": rec["threshold"],
        "predictions": [
            {
                "file": row.file,
                "score": None if np.isnan(row.score) else float(row.score),
                "decision": row.decision or None,
                "error": row.error or None,
            }
            for row in predictions.itertuples(index=False)
        ],
    }
