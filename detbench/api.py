r"""detbench from Python: the functions behind the command line, returning pandas DataFrames.

Every function does what its command does, through the same code: :func:`request` builds the one
:class:`~detbench.engine.resolve.RunRequest` both use, so a run started here has the id, reuse and records of the same
``detbench run`` command. Mistakes raise the :class:`~detbench.errors.DetbenchError` family (the CLI prints them as
one line and exits 2); warnings about the data or the results are :class:`~detbench.errors.DetbenchWarning`\ s
(Python's ``warnings``). Nothing here imports torch until a function needs it.

Example (the demo suite builds itself, offline; these small options take seconds on a laptop)::

    import detbench

    small = {"n_train": 12, "n_val": 6, "size": 64}
    run = detbench.run("linear-probe", "demo", settings=small)
    print(run.metrics[["generator", "acc", "ap"]])
    print(detbench.leaderboard("demo", metric="ap"))
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detbench.engine.finished_run import PathLike, Run
from detbench.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from detbench.engine.resolve import RunRequest
    from detbench.progress import Phases
    from detbench.results.presets import Preset

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


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # True is an int to Python, not here


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "text": ("text (a str)", lambda v: isinstance(v, str)),
    "path": ("a path (str or os.PathLike)", _is_path),
    "int": ("an integer (not a bool)", _is_int),
    "bool": ("True or False", lambda v: isinstance(v, bool)),
    "threshold": ("'calibrated' or a number in [0, 1] (not a bool)",
                  lambda v: isinstance(v, str) or (isinstance(v, numbers.Real) and not isinstance(v, bool))),
}


def _check_types(kind: str, *, optional: bool = False, **values: Any) -> None:
    """Refuse arguments of the wrong type with one :class:`~detbench.errors.ConfigError` naming the argument (Python
    would otherwise fail later with a bare TypeError, or accept ``seed=True`` as 1).

    Args:
        kind: a key of :data:`_KINDS`.
        optional: None is accepted too.
        **values: the arguments, by name.

    Raises:
        ConfigError: the first argument of another type.
    """
    what, test = _KINDS[kind]
    for name, value in values.items():
        if value is None and optional:
            continue
        if not test(value):
            none = " or None" if optional else ""
            raise ConfigError(f"{name} must be {what}{none}; got {value!r} ({type(value).__name__})")


def _check_run_arguments(args: dict[str, Any]) -> None:
    """The types of the arguments :func:`request` (and so :func:`run`, :func:`sweep`) takes."""
    _check_types("text", optional=True, **{k: args[k] for k in (
        "detector", "suite", "protocol", "perturb", "device", "train_suite", "train_protocol", "preset")})
    _check_types("path", optional=True, root=args["root"], train_root=args["train_root"])
    _check_types("int", seed=args["seed"], bootstrap=args["bootstrap"])
    _check_types("int", optional=True, workers=args["workers"], batch_size=args["batch_size"])
    _check_types("bool", force=args["force"], fast_index=args["fast_index"], allow_cpu=args["allow_cpu"])
    _check_types("threshold", threshold=args["threshold"])


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

    It takes :func:`run`'s arguments, ``progress`` aside, with the same meanings.

    Returns:
        A :class:`Request`: the :class:`~detbench.engine.resolve.RunRequest` and the preset, if one was named.

    Raises:
        ConfigError: neither a detector nor a preset, an argument of the wrong type, or a malformed setting.
        PresetError: the preset is unknown or the environment cannot run it.
    """
    from detbench.engine.resolve import RunRequest

    _check_run_arguments(locals())
    overrides = settings_overrides(settings)
    chosen, preset_record = None, None
    root_path = Path(root).expanduser() if root is not None else None
    if preset:
        from detbench.results.presets import get_preset, prepare_preset_run

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
        seed=int(seed),
        force=force,
        device=device,
        workers=None if workers is None else int(workers),
        batch_size=None if batch_size is None else int(batch_size),
        perturb=perturb,
        index_mode="fast" if fast_index else "full",
        n_boot=int(bootstrap),
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
    _check_types("bool", progress=progress)
    planned = request(
        detector, suite, root, protocol, settings, seed, perturb, device, threshold=threshold, bootstrap=bootstrap,
        force=force, train_suite=train_suite, train_root=train_root, train_protocol=train_protocol, workers=workers,
        batch_size=batch_size, fast_index=fast_index, preset=preset, allow_cpu=allow_cpu,
    )  # fmt: skip
    return _carry_out(planned.run, progress)


def _runner(progress: bool) -> Any:
    from detbench.engine.runner import Runner
    from detbench.progress import Phases

    return Runner(Phases(enabled=progress))


def _carry_out(req: RunRequest, progress: bool) -> Run:
    return _runner(progress).run(req)



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
        detector: a registered detector (:func:`list_detectors`).
        suite: a registered suite (:func:`list_suites`); default ``demo``.
        perturb: axes of values, e.g. ``["jpeg:95,75,50", "blur:1,2"]``.
        root: where the suite's data lives (the demo builds its own).
        protocol: the suite's protocol (default: its standard one).
        settings: detector config keys and suite options, as :func:`run` takes them.
        seed: seed of splits, training and sampling.
        device: ``cpu``, ``cuda``, ``cuda:1`` (default: CUDA when available).
        threshold: ``0.5``, another number in [0, 1], or ``calibrated``, as :func:`run`.
        bootstrap: resamples of the 95 % intervals (0: none).
        force: recompute runs that exist (the finished ones are kept aside).
        progress: show progress bars and status lines on stderr.

    Returns:
        The clean :class:`Run` first, then one per value, in sweep order.

    Example::

        runs = detbench.sweep("linear-probe", "demo", ["jpeg:90,50"], settings={"n_train": 12})
        [(r.perturbation, r.metrics.set_index("generator").loc["mean", "acc"]) for r in runs]
    """
    from detbench.engine.sweep import run_sweep

    _check_types("bool", progress=progress)
    if isinstance(perturb, str):
        perturb = [perturb]
    axes = list(perturb) if isinstance(perturb, Iterable) else None
    if axes is None or not all(isinstance(axis, str) for axis in axes):
        raise ConfigError(f"perturb must be a list of perturbation axes (text, e.g. ['jpeg:95,75,50']); "
                          f"got {perturb!r}")
    perturb = axes
    if not perturb:
        raise ConfigError("give at least one perturbation axis, e.g. perturb=['jpeg:95,75,50']")
    planned = request(detector, suite, root, protocol, settings, seed, None, device, threshold=threshold,
                      bootstrap=bootstrap, force=force)
    result = run_sweep(planned.run, list(perturb), _runner(progress))
    return [result.clean, *(r for _, r in result.perturbed)]


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
    paths_relative_to: str | None = None,
) -> Run:
    """Scores computed outside detbench, as a run of detector ``external:NAME`` (``detbench import-scores``): the
    same metrics, bootstrap intervals, thresholds, leaderboard rows, report and robustness views as any run.

    The file (CSV, TSV, JSON or Parquet; see :mod:`detbench.data.score_files`) has one row per image: ``path`` relative
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
        settings: suite options (``{"n_train": 12}``; ``suite.KEY`` too): only the suite's, so a key the detector
            has too (the ``list`` suite's ``file``) is the suite's; the detector's are the arguments above.
        seed: seed of the suite's splits and sampling.
        bootstrap: resamples of the 95 % intervals (0: none).
        force: recompute even if the run exists (the finished one is kept aside).
        fast_index: index ids from size, mtime and path instead of content hashes.
        progress: show progress bars and status lines on stderr.
        paths_relative_to: what relative paths in the file are relative to: ``"root"`` (the suite root), ``"file"``
            (the file's folder, as ``predict(..., export=...)``, grip-unina's ``main.py`` and ForensicHub's lists
            write them), or None: the root, unless no path of the file names an image there but they do relative
            to the file's folder (then ``file``, recorded in the run's settings and identity).

    Returns:
        The finished :class:`Run`.

    Raises:
        ConfigError: ``suite`` is not a suite's name, ``name`` is not text, ``logits`` not a bool, a column name not
            text, a setting that is not an option of the suite, or another argument of the wrong type.
        InputError: the file is missing, unreadable or lacks its columns.
        DataError: a score outside [0, 1] without ``logits``, or no image of the file is an image of the suite.

    Example::

        run = detbench.import_scores("demo", "scores.csv", name="my-api", settings={"n_train": 12})
    """
    from detbench.data.index import index_suite
    from detbench.data.score_files import match_problems, not_in_file, read_score_file
    from detbench.engine.resolve import DETECTOR_PREFIX, ThresholdPolicy, resolve
    from detbench.errors import warn
    from detbench.registry import DETECTORS

    if not isinstance(suite, str) or not suite.strip():
        raise ConfigError(f"suite must name the suite the scores are of (see `detbench ls suites`); got {suite!r}")
    _check_types("path", file=file)
    _check_types("bool", progress=progress)
    if paths_relative_to not in (None, "root", "file"):
        raise ConfigError(f"paths_relative_to must be 'root', 'file' or None (the root, else the file's folder if "
                          f"only there its paths name images); got {paths_relative_to!r}")
    _check_reading(name, logits, score_column, key_column)
    file = Path(file).expanduser().absolute()
    if ThresholdPolicy.parse(str(threshold)).policy == "calibrated" and perturb:
        raise ConfigError(
            "a calibrated threshold needs clean held-out scores, and this file holds scores of perturbed images; "
            "import the clean file with threshold='calibrated', or give a fixed threshold"
        )
    reading = {"logits": logits, "score_column": score_column, "key_column": key_column,
               "paths_relative_to": paths_relative_to or "root"}
    suite_overrides = _suite_settings(suite, settings)

    def planned_run(reading: dict[str, Any]) -> Request:
        defaults = DETECTORS.get(EXTERNAL).Config()
        chosen = {k: v for k, v in reading.items() if v != getattr(defaults, k)}  # the run's settings: what was chosen
        detector = {"file": str(file), "name": name, **chosen}  # the detector's: the positional file and the options
        overrides = {**suite_overrides,
                     **{f"{DETECTOR_PREFIX}{k}": v for k, v in settings_overrides(detector).items()}}
        return request(EXTERNAL, suite, root, protocol, overrides, seed, perturb, "cpu", threshold=threshold,
                       bootstrap=bootstrap, force=force, fast_index=fast_index)

    planned = planned_run(reading)
    read = {"score_column": score_column, "key_column": key_column, "logits": logits}
    scores = read_score_file(file, **read, relative_to_file=paths_relative_to == "file")
    resolved = resolve(planned.run)
    phases = _phases(progress)
    index = index_suite(resolved.suite, planned.run.root, planned.run.index_mode, phases=phases)
    try:
        problems = match_problems(scores, index.rows, index.root, resolved.suite.name)  # raises if nothing matches
    except DataError as relative_to_root:
        if paths_relative_to is not None or scores.by_id or file.parent.resolve() == Path(index.root).resolve():
            raise
        beside = read_score_file(file, **read, relative_to_file=True)  # e.g. written by predict(export=...)
        try:
            problems = match_problems(beside, index.rows, index.root, resolved.suite.name)
        except DataError:
            raise relative_to_root from None  # neither way: the message names both
        phases.log(f"the paths in {file.name} are relative to its folder ({file.parent}), not to the suite root: "
                   "read so (recorded as paths_relative_to=file)")
        planned = planned_run({**reading, "paths_relative_to": "file"})
    result = _carry_out(planned.run, progress)  # warns of the file's own problems as it reads it
    for problem in problems:
        warn(problem)
    evaluation = result.scores
    missing = evaluation[evaluation["status"] == not_in_file(file)]
    if len(missing):
        from detbench.data.tables import listing

        warn(
            f"{len(missing)} of the {len(evaluation)} evaluation images of {result.suite}/"
            f"{result.record['protocol']} have no score in {file.name}: they are left out of the metrics (never "
            f"counted as real), e.g. {listing(missing['path'].tolist(), 5)}"
        )
    return result


_READING_ARGUMENTS = {"file": "the positional FILE", "name": "--name", "logits": "--logits",
                      "score_column": "--score-column", "key_column": "--key-column"}  # import-scores' own


def _suite_settings(suite: str | None, settings: Mapping[str, Any] | None) -> dict[str, str]:
    """An import's ``settings`` as suite options (``suite.KEY``): in an import every one of them is the suite's.

    Raises:
        ConfigError: a key that is not an option of the suite (the message names the argument that sets the score
            file's reading when the key is one of those).
    """
    from detbench.config import field_paths
    from detbench.engine.resolve import SUITE_PREFIX, TRAIN_SUITE_PREFIX
    from detbench.registry import SUITES

    suite_cls = SUITES.get(suite or "demo")
    options = set(field_paths(suite_cls.Options))
    out = {}
    for key, value in settings_overrides(settings).items():
        bare = key.removeprefix(SUITE_PREFIX)
        if key.startswith(TRAIN_SUITE_PREFIX):
            out[key] = value
        elif bare in options:
            out[SUITE_PREFIX + bare] = value
        else:
            own = _READING_ARGUMENTS.get(bare)
            hint = f"; the score file's {bare} is given with {own} ({bare}= in Python)" if own else ""
            raise ConfigError(
                f"import-scores --set takes suite options, and {bare!r} is not an option of suite {suite_cls.name} "
                f"(valid: {', '.join(sorted(options)) or 'none'}){hint}"
            )
    return out


def _check_reading(name: Any, logits: Any, score_column: Any, key_column: Any) -> None:
    """Refuse Python values the command line cannot give: ``name=None`` would become ``external:none``, and a
    string for ``logits`` would be read one way and recorded another.
    """
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
        RunLookupError: no finished run, or several, match (a damaged one is left out with a warning).
        ConfigError: ``run_id`` is not text.
    """
    from detbench.results.leaderboard import find_run

    _check_types("text", run_id=run_id)
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
        threshold, data (short index hash), files (short sha256 of the files read), coverage (evaluation images
        scored/expected), mean_acc, mean_ap (NaN unless every generator has scored images of both classes),
        fit_id, flags (e.g. evaluation images that copy training images), created, path. A damaged run (an output
        or its record edited) is left out with a warning.

    Raises:
        ConfigError: an argument that is not text.
    """
    from detbench.registry import SUITES
    from detbench.results.leaderboard import runs_table

    _check_types("text", optional=True, suite=suite, detector=detector)
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
    rank: bool = False,
    cost: bool = False,
) -> pd.DataFrame:
    """A suite's leaderboard from its finished runs (``detbench leaderboard``), as numbers in [0, 1].

    Args:
        suite: the suite.
        metric: acc, ap, auc, real_acc, fake_acc, balanced_acc, eer, ... (per generator, then mean and worst).
        detector: keep the runs of this detector (exact, case-insensitive, if some run has that value; else every
            value containing it).
        backbone: keep the runs of this backbone, matched the same way.
        perturbation: keep the runs of this perturbation, matched the same way: ``"jpeg"`` keeps all JPEG runs,
            ``"clean"`` the unperturbed ones.
        delta: perturbed runs as differences to the clean run of the same fit and threshold.
        published: add the published numbers of the suite's paper presets (run_id ``published``).
        rank: add ``avg_rank``, each run's average rank over the generators (1 = best), sorted by it; ``.attrs[
            "friedman"]`` holds the Friedman test across the runs and the Nemenyi critical difference (``cd``).
        cost: add each run's cost, measured on the machine that ran it (``detbench leaderboard --cost``): ``params``,
            ``params_trainable``, ``gflops_per_image``, ``images_per_s``, ``peak_memory_mib`` (NaN where n/a),
            ``peak_memory_kind`` (``CUDA allocated`` or ``RSS``), ``cost_device`` and ``cost_na`` (why values are
            n/a: e.g. a run recorded before detbench measured cost, or imported scores).

    Returns:
        One row per run (detector label, backbone, settings, protocol, perturbation, threshold, data, files,
        coverage, config_hash, fit_id, run_id, flags: e.g. evaluation images that copy training images), one column
        per generator, then mean, worst and mean_delta (and avg_rank, then the cost columns); rows whose mean covers
        fewer generators than the others of their protocol come after them, their coverage ending ``K/N generators``
        (see :mod:`detbench.results.leaderboard`).

    Raises:
        RunLookupError: no finished run of the suite, or none matches the filters.
        ConfigError: an unknown metric, ``rank`` with ``delta``, or an argument of the wrong type.
        DataError: ``rank`` without two generators and two runs with a value for each.
    """
    from detbench.registry import SUITES
    from detbench.results.leaderboard import leaderboard_view, suite_long, with_cost

    _check_types("text", suite=suite, metric=metric)
    _check_types("text", optional=True, detector=detector, backbone=backbone, perturbation=perturbation)
    _check_types("bool", delta=delta, published=published, cost=cost)
    name = SUITES.get(suite).name
    long = suite_long(name, published=published)
    view = leaderboard_view(long, metric, delta=delta, rank=rank, detector=detector, backbone=backbone,
                            perturbation=perturbation)
    return with_cost(view, name) if cost else view


def compare(
    runs: Sequence[Run | str],
    metric: str | Sequence[str] | None = None,
    *,
    bootstrap: int = 1000,
    common: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired comparison of finished runs on the same images (``detbench compare``): each run after the first
    against the first, per generator, ``mean`` and ``worst``, with significance tests.

    ``delta = b - a`` (``a`` the first run's value); ``delta_lo``/``delta_hi``: its 95 % interval from a paired,
    class-stratified bootstrap (the same resampled images for both runs, seeded); ``p_value`` and ``test``:
    accuracy (each run at its own threshold) by the exact McNemar test, AUC by DeLong's test, the other metrics and
    the ``mean``/``worst`` rows by the paired bootstrap; ``p_holm``: Holm's adjustment across the generators of one
    metric (a summary row keeps its own p-value).

    Args:
        runs: two or more :class:`Run` objects or run ids (prefixes, as ``detbench ls runs`` shows them).
        metric: ``acc``, ``auc``, ``ap``, ``tpr_at_fpr_1``, ``tpr_at_fpr_5``, ``tpr_at_fpr_10``, ``ece``, ``brier``,
            ``nll``: a list or a comma-separated string (default ``acc,auc,ap``).
        bootstrap: paired bootstrap replicates (0: no intervals and no bootstrap p-values).
        common: compare on the images every run scored; otherwise the runs must have scored the same images.
        seed: the bootstrap seed.

    Returns:
        One row per compared pair, metric and generator (then ``mean`` and ``worst``): run_a, run_b, generator,
        metric, a, b, delta, delta_lo, delta_hi, p_value, p_holm, test, n_real, n_fake (values as fractions).
        ``.attrs``: ``runs`` (id, detector, perturbation and threshold of each), ``n_images`` (compared) and
        ``dropped`` ({run id: its scored images left out by ``common``}).

    Raises:
        RunLookupError: a run id matches no finished run (or several).
        ConfigError: fewer than two runs, a run named twice, or an unknown metric.
        DataError: the runs did not score the same images (without ``common``), or scored none in common.

    Example::

        table = detbench.compare(["1f2e3d4c", "5a6b7c8d"], metric="acc,auc")
        table[table["generator"] == "mean"]
    """
    from detbench.results.paired import check_options, compare_runs

    if isinstance(runs, (str, Run)):
        raise ConfigError("compare needs two or more runs: pass a list, e.g. compare([run_a, run_b])")
    check_options(len(runs), metric, bootstrap, seed)  # before any run is read
    loaded = [r if isinstance(r, Run) else load_run(str(r)) for r in runs]
    return compare_runs(loaded, metric, bootstrap=bootstrap, common=common, seed=seed)


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

    Raises:
        ConfigError: an argument of the wrong type, a bad suite option, or ``workers`` < 0.
    """
    from detbench.config import apply_overrides
    from detbench.data.index import index_suite
    from detbench.registry import SUITES

    _check_types("text", suite=suite)
    _check_types("path", optional=True, root=root)
    _check_types("int", optional=True, workers=workers)
    _check_types("bool", fast=fast, progress=progress)
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
        device: ``cpu``, ``cuda``, ``cuda:1`` (default: CUDA when available).
        workers: decoding workers.
        batch_size: batch size of scoring.
        progress: show progress bars.

    Returns:
        One row per run and image, in input order: run, file, score = P(fake), decision (``fake`` above the run's
        threshold, else ``real``), error (why an image could not be scored; the others are still scored).

    Raises:
        RunLookupError: a run id matches no finished run (or several).
        InputError: no image file among ``paths``, or ``export`` is a folder.
        ConfigError: an argument of the wrong type.
    """
    from detbench.results.predict import check_outputs, long_predictions, predict_runs, write_export

    refs = [run] if isinstance(run, (str, Run)) else list(run) if isinstance(run, Iterable) else [run]
    if not all(isinstance(r, (str, Run)) for r in refs):
        raise ConfigError(f"run must be a Run, a run id (text) or a list of them; got {run!r}")
    path_list = [paths] if _is_path(paths) else list(paths) if isinstance(paths, Iterable) else [paths]
    if not all(_is_path(p) for p in path_list):
        raise ConfigError(f"paths must be a path (str or os.PathLike) or a list of them; got {paths!r}")
    _check_types("path", optional=True, export=export)
    _check_types("text", optional=True, device=device)
    _check_types("int", optional=True, workers=workers, batch_size=batch_size)
    _check_types("bool", logits=logits, progress=progress)
    check_outputs(export)  # before any image is scored
    ids = [r.id if isinstance(r, Run) else r for r in refs]
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
