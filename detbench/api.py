"""detbench from Python: the functions behind the command line, returning pandas DataFrames.

Every function does what its command does, through the same code: :func:`request` builds the one
:class:`~detbench.resolve.RunRequest` both use, so a run started here has the id, reuse and records of the same
``detbench run`` command. Mistakes raise the :class:`~detbench.errors.DetbenchError` family (the CLI prints them as
one line and exits 2); warnings about the data or the results are :class:`~detbench.errors.DetbenchWarning`\\ s
(Python's ``warnings``). Nothing here imports torch until a function needs it.

Example (the demo suite builds itself, offline; these small options take seconds on a laptop)::

    import detbench

    small = {"n_train": 12, "n_val": 6, "size": 64}
    run = detbench.run("linear-probe", "demo", settings=small)
    print(run.metrics[["generator", "acc", "ap"]])
    print(detbench.leaderboard("demo", metric="ap"))
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detbench.errors import ConfigError
from detbench.finished_run import PathLike, Run

if TYPE_CHECKING:
    import pandas as pd

    from detbench.presets import Preset
    from detbench.progress import Phases
    from detbench.resolve import RunRequest
    from detbench.runner import RunResult

EXTERNAL = "external"  # the detector that imported scores run as


@dataclass(frozen=True)
class Request:
    """What :func:`request` returns: the run to carry out and the preset it follows (None without one)."""

    run: RunRequest
    preset: Preset | None = None


def settings_overrides(settings: Mapping[str, Any] | None) -> dict[str, str]:
    """``--set`` strings for Python values: ``True`` -> ``true``, ``(0.1, 1)`` -> ``0.1,1``, ``None`` -> ``none``.

    Args:
        settings: detector config keys and suite options (``{"mask.strategy": "random", "n_train": 12}``).

    Returns:
        The same keys with values as the command line takes them (so both build the same run id).
    """
    if settings is not None and not isinstance(settings, Mapping):
        raise ConfigError(f"settings must be a mapping of key to value; got {type(settings).__name__}")
    return {str(key): _as_text(value) for key, value in (settings or {}).items()}


def _as_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(_as_text(v) for v in value)
    return str(value)


def request(
    detector: str | None = None,
    suite: str | None = None,
    root: PathLike | None = None,
    protocol: str | None = None,
    settings: Mapping[str, Any] | None = None,
    seed: int = 0,
    perturb: str | None = None,
    device: str | None = None,
    *,
    threshold: str | float = "0.5",
    bootstrap: int = 1000,
    force: bool = False,
    train_suite: str | None = None,
    train_root: PathLike | None = None,
    train_protocol: str | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    fast_index: bool = False,
    preset: str | None = None,
    allow_cpu: bool = False,
) -> Request:
    """The run that ``detbench run`` and :func:`run` carry out for these arguments (the one place both build it).

    Args:
        detector, suite, root, protocol, settings, seed, perturb, device, threshold, bootstrap, force, train_suite,
            train_root, train_protocol, workers, batch_size, fast_index, preset, allow_cpu: as :func:`run`.

    Returns:
        A :class:`Request`: the :class:`~detbench.resolve.RunRequest` and the preset, if one was named.

    Raises:
        ConfigError: neither a detector nor a preset, or a malformed setting.
        PresetError: the preset is unknown or the environment cannot run it.
    """
    from detbench.resolve import RunRequest

    overrides = settings_overrides(settings)
    chosen, preset_record = None, None
    root_path = Path(root).expanduser() if root is not None else None
    if preset:
        from detbench.presets import get_preset, prepare_preset_run

        chosen = get_preset(preset)
        detector, suite, protocol, overrides, preset_record = prepare_preset_run(
            chosen, detector, suite, protocol, overrides, root=root_path, allow_cpu=allow_cpu, device=device
        )
    elif detector is None:
        raise ConfigError("name a detector (see `detbench ls detectors`) or a preset (`detbench ls presets`)")
    req = RunRequest(
        detector=detector,
        suite=suite or "demo",
        root=root_path,
        protocol=protocol,
        train_suite=train_suite,
        train_root=Path(train_root).expanduser() if train_root is not None else None,
        train_protocol=train_protocol,
        preset=preset_record,
        overrides=overrides,
        seed=seed,
        force=force,
        device=device,
        workers=workers,
        batch_size=batch_size,
        perturb=perturb,
        index_mode="fast" if fast_index else "full",
        n_boot=bootstrap,
        threshold=str(threshold),
    )
    return Request(req, chosen)


def run(
    detector: str | None = None,
    suite: str | None = None,
    root: PathLike | None = None,
    protocol: str | None = None,
    settings: Mapping[str, Any] | None = None,
    seed: int = 0,
    perturb: str | None = None,
    device: str | None = None,
    *,
    threshold: str | float = "0.5",
    bootstrap: int = 1000,
    force: bool = False,
    train_suite: str | None = None,
    train_root: PathLike | None = None,
    train_protocol: str | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    fast_index: bool = False,
    preset: str | None = None,
    allow_cpu: bool = False,
    progress: bool = False,
) -> Run:
    """Train ``detector`` on the protocol's training generator and evaluate it on every generator, or reuse the
    finished run with the same id (``detbench run``).

    Args:
        detector: a registered detector (:func:`list_detectors`); implied by ``preset``.
        suite: a registered suite (:func:`list_suites`); default ``demo``.
        root: where the suite's data lives (the demo builds its own).
        protocol: the suite's protocol (default: its standard one; ``eval`` trains nothing).
        settings: detector config keys and suite options, as ``--set`` takes them (``{"mask.strategy": "random"}``;
            ``suite.KEY`` or ``train_suite.KEY`` to be explicit), and ``train.holdout`` (``0.1``, ``0`` or
            ``val-split``: which training-generator images select the model; default: the detector's original).
        seed: seed of splits, training and sampling.
        perturb: evaluation-time perturbation (``jpeg:75``, ``blur:2+jpeg:90``).
        device: ``cpu``, ``cuda``, ``cuda:1`` (default: CUDA when available).
        threshold: ``0.5``, another number in [0, 1], or ``calibrated`` (on the training generator's held-out split).
        bootstrap: resamples of the 95 % intervals (0: none).
        force: recompute even if the run exists (the finished one is kept aside).
        train_suite: cross-suite runs: train on this suite's protocol, evaluate on ``suite``.
        train_root: where the training suite's data lives.
        train_protocol: the training suite's protocol.
        workers: decoding workers.
        batch_size: batch size of feature extraction and scoring.
        fast_index: index ids from size, mtime and path instead of content hashes.
        preset: reproduce a published table (``detbench ls presets``).
        allow_cpu: let a preset run without a CUDA GPU.
        progress: show progress bars and status lines on stderr (warnings are always issued).

    Returns:
        The finished :class:`Run`.

    Raises:
        DetbenchError: any mistake in the arguments, the data or the weights (the message says how to fix it).

    Example::

        run = detbench.run("mpft", "demo", settings={"mask.strategy": "random", "n_train": 12})
        run.metrics.set_index("generator")["acc"]
    """
    planned = request(
        detector, suite, root, protocol, settings, seed, perturb, device, threshold=threshold, bootstrap=bootstrap,
        force=force, train_suite=train_suite, train_root=train_root, train_protocol=train_protocol, workers=workers,
        batch_size=batch_size, fast_index=fast_index, preset=preset, allow_cpu=allow_cpu,
    )  # fmt: skip
    return _carry_out(planned.run, progress)


def _runner(progress: bool) -> Any:
    from detbench.progress import Phases
    from detbench.runner import Runner

    return Runner(Phases(enabled=progress))


def _carry_out(req: RunRequest, progress: bool) -> Run:
    return _as_run(_runner(progress).run(req))


def _as_run(result: RunResult) -> Run:
    return Run(result.run_dir, result.record, result.metrics, reused=result.reused)


def sweep(
    detector: str,
    suite: str | None = None,
    perturb: Sequence[str] = (),
    root: PathLike | None = None,
    protocol: str | None = None,
    settings: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str | None = None,
    *,
    threshold: str | float = "0.5",
    bootstrap: int = 1000,
    force: bool = False,
    progress: bool = False,
) -> list[Run]:
    """A robustness sweep (``detbench sweep``): the clean run, then one run per perturbation value, trained once.

    Args:
        detector, suite, root, protocol, settings, seed, device, threshold, bootstrap, force, progress: as :func:`run`.
        perturb: axes of values, e.g. ``["jpeg:95,75,50", "blur:1,2"]``.

    Returns:
        The clean :class:`Run` first, then one per value, in sweep order.

    Example::

        runs = detbench.sweep("linear-probe", "demo", ["jpeg:90,50"], settings={"n_train": 12})
        [(r.perturbation, r.metrics.set_index("generator").loc["mean", "acc"]) for r in runs]
    """
    from detbench.sweep import run_sweep

    if isinstance(perturb, str):
        perturb = [perturb]
    if not perturb:
        raise ConfigError("give at least one perturbation axis, e.g. perturb=['jpeg:95,75,50']")
    planned = request(detector, suite, root, protocol, settings, seed, None, device, threshold=threshold,
                      bootstrap=bootstrap, force=force)
    result = run_sweep(planned.run, list(perturb), _runner(progress))
    return [_as_run(result.clean), *(_as_run(r) for _, r in result.perturbed)]


def import_scores(
    suite: str,
    file: PathLike,
    *,
    name: str,
    root: PathLike | None = None,
    protocol: str | None = None,
    logits: bool = False,
    threshold: str | float = "0.5",
    perturb: str | None = None,
    score_column: str = "score",
    key_column: str = "",
    settings: Mapping[str, Any] | None = None,
    seed: int = 0,
    bootstrap: int = 1000,
    force: bool = False,
    fast_index: bool = False,
    progress: bool = False,
) -> Run:
    """Scores computed outside detbench, as a run of detector ``external:NAME`` (``detbench import-scores``): the
    same metrics, bootstrap intervals, thresholds, leaderboard rows, report and robustness views as any run.

    The file (CSV, TSV, JSON or Parquet; see :mod:`detbench.score_files`) has one row per image: ``path`` relative
    to the suite root (or ``filename``, or detbench's ``image_id``) and ``score`` = P(fake) (raw logits with
    ``logits``). Before the run it is checked against the suite's index; scores for images the suite does not have,
    duplicates and values that are not numbers are reported as warnings with counts and examples, and images of the
    protocol without a score are left out of the metrics (status ``no_score``), never counted as real.

    Args:
        suite: the suite the scores are of.
        file: the score file.
        name: what computed the scores (the run shows as ``external:NAME``); imports of the same name share one
            fit, so perturbed imports pair with the clean one in robustness views.
        root: where the suite's data lives (the demo builds its own).
        protocol: the protocol whose evaluation images are scored (default: the suite's standard one; ``eval``).
        logits: the scores are raw logits (P(fake) = sigmoid).
        threshold: as :func:`run`; ``calibrated`` needs scores of the training generator's held-out images.
        perturb: what the scores were computed on (``jpeg:75``): a label, nothing is applied.
        score_column: the column of scores.
        key_column: the column naming the images (default: the first of path, filename, image_id).
        settings: suite options (``{"n_train": 12}``).
        seed, bootstrap, force, fast_index, progress: as :func:`run`.

    Returns:
        The finished :class:`Run`.

    Raises:
        ConfigError: ``name`` is not text, ``logits`` not a bool, or a column name not text.
        InputError: the file is missing, unreadable or lacks its columns.
        DataError: a score outside [0, 1] without ``logits``, or no image of the file is an image of the suite.

    Example::

        run = detbench.import_scores("demo", "scores.csv", name="my-api", settings={"n_train": 12})
    """
    from detbench.errors import warn
    from detbench.index import index_suite
    from detbench.registry import DETECTORS
    from detbench.resolve import ThresholdPolicy, resolve
    from detbench.score_files import match_problems, not_in_file, read_score_file

    _check_reading(name, logits, score_column, key_column)
    file = Path(file).expanduser().absolute()
    if ThresholdPolicy.parse(str(threshold)).policy == "calibrated" and perturb:
        raise ConfigError(
            "a calibrated threshold needs clean held-out scores, and this file holds scores of perturbed images; "
            "import the clean file with threshold='calibrated', or give a fixed threshold"
        )
    reading = {"logits": logits, "score_column": score_column, "key_column": key_column}
    defaults = DETECTORS.get(EXTERNAL).Config()
    chosen = {k: v for k, v in reading.items() if v != getattr(defaults, k)}  # the run's settings: what was chosen
    overrides = {**settings_overrides(settings), **settings_overrides({"file": str(file), "name": name, **chosen})}
    planned = request(EXTERNAL, suite, root, protocol, overrides, seed, perturb, "cpu", threshold=threshold,
                      bootstrap=bootstrap, force=force, fast_index=fast_index)
    scores = read_score_file(file, score_column=score_column, key_column=key_column, logits=logits)
    resolved = resolve(planned.run)
    phases = _phases(progress)
    index = index_suite(resolved.suite, planned.run.root, planned.run.index_mode, phases=phases)
    problems = match_problems(scores, index.rows, index.root, resolved.suite.name)  # raises if nothing matches
    result = _carry_out(planned.run, progress)  # warns of the file's own problems as it reads it
    for problem in problems:
        warn(problem)
    evaluation = result.scores
    missing = evaluation[evaluation["status"] == not_in_file(file)]
    if len(missing):
        from detbench.tables import listing

        warn(
            f"{len(missing)} of the {len(evaluation)} evaluation images of {result.suite}/"
            f"{result.record['protocol']} have no score in {file.name}: they are left out of the metrics (never "
            f"counted as real), e.g. {listing(missing['path'].tolist(), 5)}"
        )
    return result


def _check_reading(name: Any, logits: Any, score_column: Any, key_column: Any) -> None:
    """Refuse Python values the command line cannot give: ``name=None`` would become ``external:none``, and a
    string for ``logits`` would be read one way and recorded another."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name must be text naming what computed the scores (external:NAME); got {name!r}")
    if not isinstance(logits, bool):
        raise ConfigError(f"logits must be True or False; got {logits!r}")
    for option, value in (("score_column", score_column), ("key_column", key_column)):
        if not isinstance(value, str):
            raise ConfigError(f"{option} must be text (a column name); got {value!r}")


def _phases(progress: bool) -> Phases:
    from detbench.progress import Phases

    return Phases(enabled=progress)


def load_run(run_id: str) -> Run:
    """The finished run whose id starts with ``run_id`` (under the current ``$DETBENCH_HOME``).

    Args:
        run_id: a run id or its first characters (as ``detbench ls runs`` shows them).

    Returns:
        The :class:`Run`.

    Raises:
        RunLookupError: no finished run, or several, match.
    """
    from detbench.leaderboard import find_run

    run_dir, record = find_run(run_id)
    return Run(run_dir, record, reused=True)


def runs(suite: str | None = None, detector: str | None = None) -> pd.DataFrame:
    """Finished runs, oldest first (``detbench ls runs``).

    Args:
        suite: only this suite's runs.
        detector: only these detectors (exact label, else every label containing it: ``external`` keeps every
            imported score file).

    Returns:
        One row per run: run_id, suite, detector, external, protocol, backbone, settings, perturbation,
        threshold, mean_acc, mean_ap, fit_id, created, path.
    """
    from detbench.leaderboard import runs_table
    from detbench.registry import SUITES

    return runs_table(SUITES.get(suite).name if suite else None, detector)


def leaderboard(
    suite: str,
    metric: str = "acc",
    *,
    detector: str | None = None,
    backbone: str | None = None,
    perturbation: str | None = None,
    delta: bool = False,
    published: bool = False,
) -> pd.DataFrame:
    """A suite's leaderboard from its finished runs (``detbench leaderboard``), as numbers in [0, 1].

    Args:
        suite: the suite.
        metric: acc, ap, auc, real_acc, fake_acc, balanced_acc, eer, ... (per generator, then mean and worst).
        detector, backbone, perturbation: keep matching runs (exact, case-insensitive, if some run has that value;
            else every value containing it: ``perturbation="jpeg"`` keeps all JPEG runs, ``"clean"`` the others).
        delta: perturbed runs as differences to the clean run of the same fit and threshold.
        published: add the published numbers of the suite's paper presets (run_id ``published``).

    Returns:
        One row per run (detector label, backbone, settings, protocol, perturbation, threshold, config_hash,
        fit_id, run_id), one column per generator, then mean, worst and mean_delta.

    Raises:
        RunLookupError: no finished run of the suite, or none matches the filters.
        ConfigError: an unknown metric.
    """
    from detbench.leaderboard import leaderboard_view, suite_long
    from detbench.registry import SUITES

    long = suite_long(SUITES.get(suite).name, published=published)
    return leaderboard_view(long, metric, delta=delta, detector=detector, backbone=backbone, perturbation=perturbation)


def index(
    suite: str,
    root: PathLike | None = None,
    settings: Mapping[str, Any] | None = None,
    *,
    fast: bool = False,
    workers: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Index a suite on disk (``detbench index``): one row per image, usable or not, with its reason.

    Args:
        suite: the suite.
        root: where its data lives (the demo builds its own).
        settings: suite options (``{"n_train": 12}``).
        fast: ids from size, mtime and path, and header-only checks.
        workers: worker processes probing files.
        progress: show a progress bar.

    Returns:
        Columns image_id, path (relative to the root), suite, generator, family, split, label, format, jpeg_quality,
        width, height, bytes, status, reason, ...; ``.attrs["root"]`` is the root and ``.attrs["manifest"]`` the
        index manifest (counts, index hash).
    """
    from detbench.config import apply_overrides
    from detbench.index import index_suite
    from detbench.registry import SUITES

    cls = SUITES.get(suite)
    obj = cls(apply_overrides(cls.Options(), settings_overrides(settings)))
    if workers is not None and workers < 0:
        raise ConfigError(f"workers must be >= 0; got {workers}")
    found = index_suite(obj, Path(root).expanduser() if root is not None else None, "fast" if fast else "full",
                        workers=workers, phases=_phases(progress))
    rows = found.rows.copy()
    rows.attrs.update(root=str(found.root), manifest=found.manifest)
    return rows


def predict(
    run: Run | str | Sequence[Run | str],
    paths: PathLike | Iterable[PathLike],
    *,
    export: PathLike | None = None,
    logits: bool = False,
    device: str | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Score your own images with finished runs' trained detectors (``detbench predict``).

    Args:
        run: a :class:`Run` or run id (prefix), or several: each scores every image.
        paths: image files, folders (searched recursively for images) or Parquet shards.
        export: also write the grip-unina-style per-image CSV: ``filename`` (relative to the CSV's folder) and one
            column per run, named ``<detector label>@<run id>``, holding P(fake).
        logits: the export holds logits (log-odds of P(fake), finite) instead, as grip-unina's ``main.py`` writes
            them (its ``compute_metrics.py`` calls a score above 0 fake).
        device, workers, batch_size: as :func:`run`.
        progress: show progress bars.

    Returns:
        One row per run and image, in input order: run, file, score = P(fake), decision (``fake`` above the run's
        threshold, else ``real``), error (why an image could not be scored; the others are still scored).

    Raises:
        RunLookupError: a run id matches no finished run (or several).
        InputError: no image file among ``paths``, or ``export`` is a folder.
    """
    from detbench.predict import check_outputs, long_predictions, predict_runs, write_export

    check_outputs(export)  # before any image is scored
    refs = [run] if isinstance(run, (str, Run)) else list(run)
    ids = [r.id if isinstance(r, Run) else str(r) for r in refs]
    path_list = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    results = predict_runs(ids, path_list, device=device, workers=workers, batch_size=batch_size,
                           phases=_phases(progress))
    if export is not None:
        write_export(results, Path(export), logits=logits)
    return long_predictions(results)


DETECTOR_FACTS = ["paper", "year", "training", "weights_key", "released"]  # detbench.registry.DetectorInfo


def list_detectors() -> pd.DataFrame:
    """Registered detectors (built-in and plugins), without importing any (``detbench ls detectors``).

    Returns:
        One row per detector: name, paper, year, training (``trains`` or ``training-free``), weights_key (the
        ``settings`` key taking released weights, empty if none), released (the files it loads), summary, origin
        (built-in, or the package that registered it) and target; the facts are empty for a plugin that states none.
    """
    import dataclasses

    import pandas as pd

    from detbench.registry import DETECTORS

    rows = []
    for name in DETECTORS.names():
        info = DETECTORS.info(name)
        facts = dataclasses.asdict(info) if info is not None else dict.fromkeys(DETECTOR_FACTS)
        rows.append({"name": name, **facts, **{k: v for k, v in DETECTORS.describe(name).items() if k != "name"}})
    frame = pd.DataFrame(rows, columns=["name", *DETECTOR_FACTS, "summary", "origin", "target"])
    return frame.astype({"year": "Int64"})  # a year, or <NA> for baselines and plugins without facts


def list_suites() -> pd.DataFrame:
    """Registered suites (built-in and plugins), without importing any.

    Returns:
        One row per suite: name, summary, origin (built-in or the plugin's distribution), target (its import path).
    """
    from detbench.registry import SUITES

    return _registry_frame(SUITES)


def _registry_frame(registry: Any) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame([registry.describe(name) for name in registry.names()],
                        columns=["name", "summary", "origin", "target"])
