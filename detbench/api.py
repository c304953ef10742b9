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

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detbench.engine.finished_run import PathLike, Run
from detbench.engine.run_options import KINDS, OPTIONS, SWEEP_OPTIONS, check_kind, check_seeds, check_types
from detbench.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from detbench.engine.resolve import RunRequest
    from detbench.engine.sweep import SweepResult
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


def _is_path(value: Any) -> bool:
    return KINDS["path"][1](value)


def _check_types(kind: str, *, optional: bool = False, **values: Any) -> None:
    """Refuse arguments of the wrong type with one :class:`~detbench.errors.ConfigError` naming the argument.

    Args:
        kind: a key of :data:`detbench.engine.run_options.KINDS`.
        optional: None is accepted too.
        **values: the arguments, by name.
    """
    for name, value in values.items():
        check_kind(kind, name, value, optional=optional)


def _run_arguments(args: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The run options among a function's ``locals()``, type-checked (:data:`~detbench.engine.run_options.OPTIONS`)."""
    chosen = {name: args[name] for name in names}
    check_types(chosen)
    return chosen


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

    check_types(locals())
    _check_types("text", optional=True, detector=detector, suite=suite)
    overrides = settings_overrides(settings)
    chosen, preset_record = None, None
    root_path = Path(root).expanduser() if root is not None else None
    if preset:
        from detbench.results.presets import get_preset, prepare_preset_run

        chosen = get_preset(preset)
        detector, suite, protocol, overrides, preset_record, perturb = prepare_preset_run(
            chosen, detector, suite, protocol, overrides, root=root_path, allow_cpu=allow_cpu, device=device,
            perturb=perturb,
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
    seeds: Sequence[int] | None = None,
) -> Run | list[Run]:
    """Train ``detector`` on the protocol's training generator and evaluate it on every generator, or reuse the
    finished run with the same id (``detbench run``).

    Args:
        detector: a registered detector (:func:`list_detectors`); implied by ``preset``.
        suite: a registered suite (:func:`list_suites`); default ``demo``.
        root: where the suite's data lives (the demo builds its own).
        protocol: the suite's protocol (default: its standard one; ``eval`` trains nothing); on any suite also
            ``train-on-A,B`` (a mix) and ``chrono:...`` (chronological windows and series; README, Protocols).
        settings: detector config keys and suite options, as ``--set`` takes them (``{"mask.strategy": "random"}``;
            ``suite.KEY`` or ``train_suite.KEY`` to be explicit), ``train.holdout`` (``0.1``, ``0`` or
            ``val-split``: which training-generator images select the model; default: the detector's original), and
            ``check.near_duplicates`` (``warn``, ``refuse``, ``off``) and ``check.near_duplicates_distance`` (0 to
            16 bits): the check for evaluation images that nearly copy training images (README, Near-duplicates).
        seed: seed of splits, training and sampling.
        perturb: evaluation-time perturbation (``jpeg:75``, ``blur:2+jpeg:90``, ``social:1``; ``jpeg:96@fake``
            perturbs the fakes only).
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
        seeds: run once per seed (``[0, 1, 2]``) instead of once with ``seed``; leaderboards group these runs.

    Returns:
        The finished :class:`Run`; with ``seeds``, one per seed, in order; for a ``chrono:`` series
        (``protocol="chrono:growing:12m"``), one per window (and seed), in time order.

    Raises:
        DetbenchError: any mistake in the arguments, the data or the weights (the message says how to fix it).

    Example::

        run = detbench.run("mpft", "demo", settings={"mask.strategy": "random", "n_train": 12})
        run.metrics.set_index("generator")["acc"]
    """
    _check_types("bool", progress=progress)
    options = _run_arguments(locals(), (o.name for o in OPTIONS.values() if o.name != "seeds"))
    seed_list = _seed_list(seed, seeds)
    planned = request(detector, suite, settings=settings, **options)
    results = carry_out(planned.run, seed_list, _runner(progress))
    from detbench.engine.chrono import is_series

    return results if seeds is not None or is_series(planned.run.protocol) else results[0]


def _seed_list(seed: Any, seeds: Any) -> list[int]:
    """The seeds of a run or sweep, checked (see :func:`~detbench.engine.run_options.check_seeds`)."""
    if seeds is not None and not isinstance(seeds, (list, tuple)):
        seeds = list(seeds) if isinstance(seeds, Iterable) and not isinstance(seeds, str) else seeds
    check_types({"seed": seed, "seeds": seeds})
    return check_seeds(seed, None if seeds is None else list(seeds))


def _runner(progress: bool) -> Any:
    from detbench.engine.runner import Runner
    from detbench.progress import Phases

    return Runner(Phases(enabled=progress))


def carry_out(base: RunRequest, seeds: list[int], runner: Any) -> list[Run]:
    """Carry out ``base`` once per seed and, for a ``chrono:`` series, once per window (what ``detbench run`` and
    :func:`run` do once the request is built). Every window is checked before the first run.

    Args:
        base: the request (its seed is replaced by each of ``seeds``, a series by each of its windows).
        seeds: the seeds, checked.
        runner: the :class:`~detbench.engine.runner.Runner` (the command line watches it for interrupt messages).

    Returns:
        One finished :class:`Run` per seed (and window), in order: seed by seed, each in time order.
    """
    from detbench.engine.chrono import series_protocols

    windows = series_protocols(base, runner.phases)
    return [runner.run(dataclasses.replace(base, seed=s, protocol=w)) for s in seeds for w in windows]


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
    train_suite: str | None = None,
    train_root: PathLike | None = None,
    train_protocol: str | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    fast_index: bool = False,
    progress: bool = False,
    seeds: Sequence[int] | None = None,
) -> list[Run]:
    """A robustness sweep (``detbench sweep``): the clean run, then one run per perturbation value, trained once.

    Args:
        detector: a registered detector (:func:`list_detectors`).
        suite: a registered suite (:func:`list_suites`); default ``demo``.
        perturb: axes of values, e.g. ``["jpeg:95,75,50", "blur:1,2", "noise:4,8", "jpeg:95,75@fake"]``.
        root: where the suite's data lives (the demo builds its own).
        protocol: the suite's protocol (default: its standard one).
        settings: detector config keys and suite options, as :func:`run` takes them.
        seed: seed of splits, training and sampling.
        device: ``cpu``, ``cuda``, ``cuda:1`` (default: CUDA when available).
        threshold: ``0.5``, another number in [0, 1], or ``calibrated``, as :func:`run`.
        bootstrap: resamples of the 95 % intervals (0: none).
        force: recompute runs that exist (the finished ones are kept aside).
        train_suite: cross-suite sweeps: train on this suite's protocol, evaluate on ``suite``.
        train_root: where the training suite's data lives.
        train_protocol: the training suite's protocol.
        workers: decoding workers.
        batch_size: batch size of feature extraction and scoring.
        fast_index: index ids from size, mtime and path instead of content hashes.
        progress: show progress bars and status lines on stderr.
        seeds: sweep once per seed (``[0, 1, 2]``) instead of once with ``seed``.

    Returns:
        The clean :class:`Run` first, then one per value, in sweep order (with ``seeds``: that list for each seed,
        one after the other).

    Example::

        runs = detbench.sweep("linear-probe", "demo", ["jpeg:90,50"], settings={"n_train": 12})
        [(r.perturbation, r.metrics.set_index("generator").loc["mean", "acc"]) for r in runs]
    """
    _check_types("bool", progress=progress)
    axes = _sweep_axes(perturb)
    options = _run_arguments(locals(), (name for name in SWEEP_OPTIONS if name != "seeds"))
    seed_list = _seed_list(seed, seeds)
    planned = request(detector, suite, settings=settings, **options)
    runs: list[Run] = []
    for result in sweep_results(planned.run, axes, seed_list, _runner(progress)):
        runs.extend([result.clean, *(r for _, r in result.perturbed)])
    return runs


def _sweep_axes(perturb: Any) -> list[str]:
    if isinstance(perturb, str):
        perturb = [perturb]
    axes = list(perturb) if isinstance(perturb, Iterable) else None
    if axes is None or not all(isinstance(axis, str) for axis in axes):
        raise ConfigError(f"perturb must be a list of perturbation axes (text, e.g. ['jpeg:95,75,50']); "
                          f"got {perturb!r}")
    if not axes:
        raise ConfigError("give at least one perturbation axis, e.g. perturb=['jpeg:95,75,50']")
    return axes


def sweep_results(base: RunRequest, axes: list[str], seeds: list[int], runner: Any) -> Iterator[SweepResult]:
    """Carry out a sweep once per seed (what ``detbench sweep`` and :func:`sweep` do).

    Args:
        base: the request (its seed is replaced by each of ``seeds``).
        axes: the perturbation axes.
        seeds: the seeds, checked.
        runner: the :class:`~detbench.engine.runner.Runner`.

    Yields:
        One :class:`~detbench.engine.sweep.SweepResult` per seed, in order.
    """
    from detbench.engine.sweep import run_sweep

    for s in seeds:
        yield run_sweep(dataclasses.replace(base, seed=s), axes, runner)


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
    # reading the file warns of its own problems
    result = carry_out(planned.run, [planned.run.seed], _runner(progress))[0]
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
    by: str | None = None,
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
        by: slice the metric by an image property: ``format``, ``jpeg_quality``, ``size`` or ``meta_COLUMN[:BINS]``
            (:mod:`detbench.results.slices`); the result then has one row per run, generator and slice: detector,
            settings, protocol, perturbation, threshold, run_id, generator, slice, n_real, n_fake and the metric
            (NaN where the slice lacks a class).
        cost: add each run's cost, measured on the machine that ran it (``detbench leaderboard --cost``): ``params``,
            ``params_trainable``, ``gflops_per_image``, ``images_per_s``, ``peak_memory_mib`` (NaN where n/a),
            ``peak_memory_kind`` (``CUDA allocated`` or ``RSS``), ``cost_device`` and ``cost_na`` (why values are
            n/a: e.g. a run recorded before detbench measured cost, or imported scores).

    Returns:
        One row per run (detector label, backbone, settings, protocol, perturbation, threshold, data, files,
        coverage, config_hash, fit_id, run_id, flags: e.g. evaluation images that copy training images, seeds,
        seed_group), one column per generator, then mean, worst and mean_delta (and avg_rank, then the cost
        columns); runs that differ only in their seed are one row (their mean values, ``seeds`` listing them,
        ``mean_sd`` the standard deviation of their mean); rows whose mean covers fewer generators than the others
        of their protocol come after them, their coverage ending ``K/N generators`` (see
        :mod:`detbench.results.leaderboard`).

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
    from detbench.results.slices import parse_by, sliced_leaderboard

    parse_by(by)
    if by and cost:
        raise ConfigError("cost is shown per run, not per slice: drop by or cost")
    name = SUITES.get(suite).name
    long = suite_long(name, published=published)
    view = leaderboard_view(long, metric, delta=delta, rank=rank, detector=detector, backbone=backbone,
                            perturbation=perturbation)
    if by:
        return sliced_leaderboard(view, metric, by)
    return with_cost(view, name) if cost else view


def compare(
    runs: Sequence[Run | str],
    metric: str | Sequence[str] | None = None,
    *,
    bootstrap: int = 1000,
    common: bool = False,
    seed: int = 0,
    by: str | None = None,
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
        by: compare within each slice of the first run's index: ``format``, ``jpeg_quality``, ``size`` or
            ``meta_COLUMN[:BINS]`` (a ``slice`` column follows ``generator``; n/a where a slice lacks a class).

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
    from detbench.results.slices import parse_by

    check_options(len(runs), metric, bootstrap, seed)  # before any run is read
    parse_by(by)
    loaded = [r if isinstance(r, Run) else load_run(str(r)) for r in runs]
    return compare_runs(loaded, metric, bootstrap=bootstrap, common=common, seed=seed, by=by)


def report(target: str, out: PathLike | None = None, *, by: str | None = None) -> Path:
    """Write the self-contained HTML report of a run or a suite (``detbench report``).

    Args:
        target: a run id (or its first characters), a suite name, or the folder of either under
            ``$DETBENCH_HOME/runs``.
        out: the output folder; None: ``$DETBENCH_HOME/reports/<run or suite>``.
        by: add each reported run's metrics per generator and slice: ``format``, ``jpeg_quality``, ``size`` or
            ``meta_COLUMN[:BINS]``.

    Returns:
        The path of ``report.html`` (its PNG charts beside it).

    Raises:
        RunLookupError: no finished run matches ``target``.
        ConfigError: an unknown slice column, or an argument of the wrong type.
    """
    from detbench.results.html import build_report

    _check_types("text", target=target)
    _check_types("text", optional=True, by=by)
    _check_types("path", optional=True, out=out)
    return build_report(target, Path(out).expanduser() if out is not None else None, by=by)


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
        width, height, bytes, exif (the file carries an EXIF block), status, reason, ...; ``.attrs["root"]`` is
        the root, ``.attrs["manifest"]`` the index manifest (counts, index hash) and ``.attrs["directory"]`` where
        the index is stored. Folders outside the suite's layout and the suite's notes are issued as warnings.

    Raises:
        ConfigError: an argument of the wrong type, a bad suite option, or ``workers`` < 0.
    """
    from detbench.config import apply_overrides
    from detbench.data.index import index_suite
    from detbench.data.suites import display_name
    from detbench.registry import SUITES

    _check_types("text", suite=suite)
    _check_types("path", optional=True, root=root)
    _check_types("int", optional=True, workers=workers)
    _check_types("bool", fast=fast, progress=progress)
    cls = SUITES.get(suite)
    obj = cls(apply_overrides(cls.Options(), settings_overrides(settings)))
    if workers is not None and workers < 0:
        raise ConfigError(f"workers must be >= 0; got {workers}")
    phases = _phases(progress)
    found = index_suite(obj, Path(root).expanduser() if root is not None else None, "fast" if fast else "full",
                        workers=workers, phases=phases)
    if obj.ignored:
        more = f" and {len(obj.ignored) - 10} more" if len(obj.ignored) > 10 else ""
        shown = ", ".join(map(display_name, obj.ignored[:10])) + more
        phases.warn(f"{len(obj.ignored)} folders are not part of the {suite} layout and were skipped: {shown}")
    for note in obj.notes:
        phases.warn(note)
    rows = found.rows.copy()
    rows.attrs.update(root=str(found.root), manifest=found.manifest, directory=str(found.directory))
    return rows


def predict(
    run: Run | str | Sequence[Run | str],
    paths: PathLike | Iterable[PathLike],
    *,
    export: PathLike | None = None,
    logits: bool = False,
    csv: PathLike | None = None,
    json_path: PathLike | None = None,
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
        csv: also write the predictions to this CSV file (one run: file, score, decision, error; several: a ``run``
            column first).
        json_path: also write them, with each run's threshold and facts, as JSON.
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
    from detbench.results.predict import check_outputs, long_predictions, predict_runs, write_export, write_predictions

    refs = [run] if isinstance(run, (str, Run)) else list(run) if isinstance(run, Iterable) else [run]
    if not all(isinstance(r, (str, Run)) for r in refs):
        raise ConfigError(f"run must be a Run, a run id (text) or a list of them; got {run!r}")
    path_list = [paths] if _is_path(paths) else list(paths) if isinstance(paths, Iterable) else [paths]
    if not all(_is_path(p) for p in path_list):
        raise ConfigError(f"paths must be a path (str or os.PathLike) or a list of them; got {paths!r}")
    _check_types("path", optional=True, export=export, csv=csv, json_path=json_path)
    _check_types("text", optional=True, device=device)
    _check_types("int", optional=True, workers=workers, batch_size=batch_size)
    _check_types("bool", logits=logits, progress=progress)
    outputs = [None if p is None else Path(p) for p in (csv, json_path, export)]
    check_outputs(*outputs)  # before any image is scored
    ids = [r.id if isinstance(r, Run) else r for r in refs]
    results = predict_runs(ids, path_list, device=device, workers=workers, batch_size=batch_size,
                           phases=_phases(progress))
    write_predictions(results, outputs[0], outputs[1])
    if export is not None:
        write_export(results, Path(export), logits=logits)
    table = long_predictions(results)
    table.attrs["runs"] = results  # (Run with its loaded detector, its predictions) per run, for display
    return table


def bench(
    out: PathLike | None = None,
    *,
    vs_originals: bool = False,
    detectors: Sequence[str] | None = None,
    images: int | None = None,
    repeats: int | None = None,
    only: Sequence[str] | None = None,
    progress: bool = False,
    **options: Any,
) -> pd.DataFrame:
    """Measure detbench's throughput and memory (``detbench bench``), or its scoring against the original
    repositories' own evaluation loops (``vs_originals``).

    Args:
        out: the folder to append ``pipeline.csv`` rows (or write ``vs_originals.csv``/``.md``) and the machine
            description into; None: write nothing.
        vs_originals: compare with the originals' loops (same images and weights; scores checked equal).
        detectors: with ``vs_originals``, the detectors compared (default: every supported one).
        images: generated images per measure (or per compared detector).
        repeats: timed repetitions (the median is reported).
        only: the measures (:data:`detbench.perf.options.ALL`; default all but ``rss``, which ``rss_images`` adds).
        progress: say on stderr what is being measured.
        **options: the other fields of :class:`detbench.perf.options.Options` (``backbone``, ``device``,
            ``precision``, ``crop``, ``size``, ``batch_size``, ``workers``, ``index_files``, ``rss_images``,
            ``rss_crop``).

    Returns:
        One row per measure (or per compared detector).

    Raises:
        ConfigError: an unknown measure, detector or option, or an out-of-range count.
    """
    import dataclasses

    import pandas as pd

    from detbench.perf.options import ALL, Options

    _check_types("path", optional=True, out=out)
    _check_types("int", optional=True, images=images, repeats=repeats)
    _check_types("bool", vs_originals=vs_originals, progress=progress)
    target = None if out is None else Path(out).expanduser()
    say = _say(progress)
    counts = {k: v for k, v in {"images": images, "repeats": repeats}.items() if v is not None}
    if vs_originals:
        from detbench.perf.vs_originals import VsOptions, run_vs_originals

        if only is not None or options:
            raise ConfigError("vs_originals takes only detectors, images and repeats")
        opts = VsOptions(images=images, repeats=repeats)
        if detectors is not None:
            opts.detectors = tuple(detectors)
        return pd.DataFrame(run_vs_originals(opts, target, progress=say))
    if detectors is not None:
        raise ConfigError("detectors applies to vs_originals only")
    from detbench.engine.resolve import check_device, default_device
    from detbench.perf.bench import run_bench

    known = {f.name for f in dataclasses.fields(Options)} - {"only", "images", "repeats"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown bench options {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    check_device(options.get("device"))
    chosen = tuple(only) if only else tuple(w for w in ALL if w != "rss")
    if options.get("rss_images") and "rss" not in chosen:
        chosen = (*chosen, "rss")
    opts = Options(**{**options, "device": options.get("device") or default_device()}, only=chosen, **counts)
    return pd.DataFrame(run_bench(opts, target, progress=say))


def _say(progress: bool) -> Any:
    if not progress:
        return lambda what: None
    from rich.console import Console

    console = Console(stderr=True)
    return lambda what: console.print(f"bench: {what} ...")


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


SUITE_FACTS = ["paper", "year", "download", "licence"]  # detbench.registry.SuiteInfo


def list_suites() -> pd.DataFrame:
    """Registered suites (built-in and plugins), without importing any.

    Returns:
        One row per suite: name, paper, year, download, licence (empty where the suite states none), summary, origin
        (built-in or the plugin's distribution), target (its import path).
    """
    import dataclasses

    import pandas as pd

    from detbench.registry import SUITES

    rows = []
    for name in SUITES.names():
        info = SUITES.info(name)
        facts = dataclasses.asdict(info) if info is not None else dict.fromkeys(SUITE_FACTS)
        rows.append({"name": name, **facts, **{k: v for k, v in SUITES.describe(name).items() if k != "name"}})
    frame = pd.DataFrame(rows, columns=["name", *SUITE_FACTS, "summary", "origin", "target"])
    return frame.astype({"year": "Int64"})


def list_perturbations() -> pd.DataFrame:
    """Registered perturbation steps (built-in and plugins), without importing any.

    Returns:
        One row per step: name, summary, origin, target.
    """
    from detbench.registry import PERTURBATIONS

    return _registry_frame(PERTURBATIONS)


def list_presets() -> pd.DataFrame:
    """The paper presets (``detbench ls presets``): what each runs and the published mean accuracy.

    Returns:
        One row per preset: name, version, detector, suite, protocol, mean_acc (published, in %; NaN when the paper
        gives none), mean_acc_range (a published span, or None), confidence, source.
    """
    import pandas as pd

    from detbench.results.presets import load_presets

    rows = [{
        "name": p.name, "version": p.version, "detector": p.detector, "suite": p.suite, "protocol": p.protocol,
        "mean_acc": p.expected("acc").get("mean", float("nan")), "mean_acc_range": p.expected_range("acc").get("mean"),
        "confidence": str(p.published.get("confidence", "")), "source": str(p.published.get("source", "")),
    } for p in load_presets().values()]  # fmt: skip
    return pd.DataFrame(rows, columns=["name", "version", "detector", "suite", "protocol", "mean_acc",
                                       "mean_acc_range", "confidence", "source"])


def _registry_frame(registry: Any) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame([registry.describe(name) for name in registry.names()],
                        columns=["name", "summary", "origin", "target"])
