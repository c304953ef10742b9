"""Planning a run: everything decided before any training or scoring, and the run's identities.

:func:`plan_run` resolves the request, checks the root, sets the detector up (its weights load first, so that
missing weights fail before any data work), indexes the suite (and a cross-suite run's training suite), chooses
the protocol, splits training, held-out and evaluation rows, checks them, and derives the fit and run identities
and folders. The :class:`Runner` executes a plan; predict and report can recompute one.

Identity: the fit id hashes everything that changes training (detector name, version, config without paths
(:func:`identity_config`) and identity — backbone, weights sha256, preprocessing, precision —, the training suite's
identity, index hash and protocol, whose held-out choice ``train.holdout`` sets, seed, detbench version); the run id
hashes the fit id with what changes evaluation (perturbation, threshold policy, bootstrap count, a cross-suite run's
evaluation data, evaluation profiles, tiles). No path is part of either: files are named by their sha256.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from detbench import distributed as dist
from detbench.config import to_dict
from detbench.data.index import Index, build_index, load_index
from detbench.data.suites import Protocol, Suite, check_root, display_name
from detbench.engine import layout
from detbench.engine.holdout import HOLDOUT_KEY, apply_holdout
from detbench.engine.near_duplicates import check_near_duplicates
from detbench.engine.protocol_checks import (
    check_no_training_images_evaluated,
    check_training_rows,
    generators_without_evaluation,
    select_protocol,
    split_rows,
)
from detbench.engine.resolve import (
    Resolved,
    RunRequest,
    check_content,
    default_device,
    resolve,
    training_suite,
)
from detbench.errors import ConfigError, InputError, ProtocolError
from detbench.kit.detector import Detector, RunContext
from detbench.progress import Phases
from detbench.registry import SUITES
from detbench.store import content_hash
from detbench.version import __version__


@dataclass(frozen=True)
class TrainingSource:
    """Where a cross-suite run's training rows come from: another suite's protocol on its own root."""

    suite: Suite
    index: Index
    protocol: Protocol


@dataclass(frozen=True)
class RunPlan:
    """A run decided but not yet executed: the set-up detector, its contexts, the rows and the identities.

    Built complete by :func:`plan_run` and never changed afterwards (the runner copies what it adds).
    """

    request: RunRequest
    resolved: Resolved
    detector: Detector
    device: str
    ctx: RunContext  # evaluation: this suite's root, perturbation and profiles
    train_ctx: RunContext  # training and held-out scoring: the training suite's root (cross-suite) or ctx
    index: Index
    protocol: Protocol
    source: TrainingSource | None  # a cross-suite run's training data; None: this suite's own
    train: pd.DataFrame
    heldout: pd.DataFrame
    evaluation: pd.DataFrame
    eval_sample: dict[str, Any] | None
    missing_eval: list[str]  # generators the protocol evaluates that have no evaluation rows
    fit_key: dict[str, Any]
    run_key: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    training_copies: dict[str, Any] | None = None  # evaluation images copying training images (None: nothing trained)
    near_duplicates: dict[str, Any] | None = None  # ... and near-duplicates of them (engine.near_duplicates)
    holdout: dict[str, Any] | None = None  # how the held-out rows were chosen (detbench.engine.holdout.apply_holdout)
    bias_probe: bool = False  # the detector cross-validates on the evaluation rows (Detector.bias_probe)
    tile_sides: dict[str, int] | None = None  # with eval.tiles: the tile side per evaluated generator

    @property
    def suite(self) -> Suite:
        """The suite evaluated on."""
        return self.resolved.suite

    @property
    def train_suite(self) -> Suite:
        """The suite trained on: the training source's in a cross-suite run, else the evaluated one."""
        return self.source.suite if self.source else self.suite

    @property
    def train_index(self) -> Index:
        """The index of the training suite."""
        return self.source.index if self.source else self.index

    @property
    def train_protocol(self) -> Protocol:
        """The protocol that picks the training rows."""
        return self.source.protocol if self.source else self.protocol

    @property
    def trains(self) -> bool:
        """Whether the run trains and keeps a fit folder: the detector learns and the protocol has training rows."""
        return self.detector.needs_training() and self.train_protocol.trains

    @property
    def fit_id(self) -> str:
        """The hash of ``fit_key``: runs with the same fit share the trained state."""
        return content_hash(self.fit_key)

    @property
    def run_id(self) -> str:
        """The hash of ``run_key``: the run's id."""
        return content_hash(self.run_key)

    @property
    def base(self) -> Path:
        """The folder of this detector's runs on this suite."""
        return layout.detector_dir(self.suite.name, self.detector.name)

    @property
    def fit_base(self) -> Path:
        """The folder of this detector's runs on the training suite, where the fit lives."""
        return layout.detector_dir(self.train_suite.name, self.detector.name)

    @property
    def run_dir(self) -> Path:
        """Where the finished run is written."""
        return layout.run_dir(self.suite.name, self.detector.name, self.run_id)

    @property
    def fit_dir(self) -> Path:
        """Where the trained state of the fit is kept."""
        return layout.fit_dir(self.train_suite.name, self.detector.name, self.fit_id)


def plan_run(
    req: RunRequest, phases: Phases, on_phase: Callable[[str], None] = lambda what: None
) -> RunPlan:
    """Decide everything about ``req`` before any training or scoring.

    Args:
        req: the run request.
        phases: progress and warnings (indexing bars, data warnings).
        on_phase: told what is being done ("loading the detector", "indexing demo"...), for interrupt messages.

    Returns:
        The plan; the detector is set up (weights loaded) and the suite(s) indexed.

    Raises:
        DetbenchError: bad options, a missing root or weights, a protocol the data cannot run.
    """
    import time

    timings: dict[str, float] = {}
    on_phase("validating options")
    resolved = resolve(req)
    suite = resolved.suite
    check_root(suite, req.root)  # cheap: before any weights load
    check_content(resolved.detector_cls, resolved.config, suite, phases.warn)  # a face detector on faces
    device = dist.local_device(req.device or default_device())
    dist.init(device)  # under torchrun: join the process group (a no-op in a single process)
    if not dist.is_main():
        phases = Phases(phases.console, enabled=False, warnings=False)

    on_phase("loading the detector")
    t = time.perf_counter()
    from detbench.models.features import FeatureCache

    setup_ctx = RunContext(
        suite_root=Path("."),  # the suite is indexed after the detector is set up; the plan's contexts name it
        suite_name=suite.name,
        eval_convention=suite.eval_convention,
        device=device,
        seed=req.seed,
        run_dir=Path("."),
        phases=phases,
        workers=req.workers,
        batch_size=req.batch_size,
        perturbation=resolved.perturbation,
        feature_cache=FeatureCache(),
    )
    detector = resolved.detector_cls(resolved.config)
    detector.setup(setup_ctx)  # first: missing weights fail before any data work
    timings["setup"] = time.perf_counter() - t

    t = time.perf_counter()
    index = shared_index(suite, req.root, req.index_mode, phases, on_phase)
    timings["index"] = time.perf_counter() - t
    report_scan(suite, index, phases)
    needs_training = detector.needs_training()
    protocol = select_protocol(
        suite, index, req.protocol, needs_training=needs_training and not req.train_suite,
        probes=detector.bias_probe and not req.train_suite, options=resolved.protocol_options,
    )  # fmt: skip
    warn_protocol_facts(protocol, phases)
    t = time.perf_counter()
    source = training_source(req, resolved, protocol, needs_training, phases, on_phase)
    if source is not None:
        check_content(resolved.detector_cls, resolved.config, source.suite, phases.warn)
    if source is not None:
        timings["index_training"] = time.perf_counter() - t
    chosen, holdout_facts = choose_holdout(resolved, detector, protocol, source, index, phases)
    if source is None:
        protocol = chosen
    else:
        source = dataclasses.replace(source, protocol=chosen)
    train, heldout, evaluation = split_rows(index, protocol, req.seed)
    if source is not None:  # train on the other suite's protocol; evaluate this suite's protocol
        train, heldout, _ = split_rows(source.index, source.protocol, req.seed)
    train_protocol = source.protocol if source else protocol
    train_index = source.index if source else index
    if needs_training and train_protocol.trains and detector.requires_heldout and heldout.empty:
        raise ProtocolError(
            f"{detector.name} chooses its model on held-out images of the training generator, and this run holds "
            f"none out ({_holdout_words(holdout_facts)}); pass --set train.holdout=0.1 or val-split"
        )
    if resolved.threshold.policy == "calibrated" and heldout.empty:
        fix = ("pass --set train.holdout=0.1 (or val-split) to hold some out" if holdout_facts else
               "choose a protocol with a training generator")
        raise ProtocolError(
            "--threshold calibrated calibrates on held-out images of the training generator, and this run holds "
            f"none out ({_holdout_words(holdout_facts)}); {fix}, or pass a fixed --threshold"
        )
    evaluation, eval_sample = suite.sample_eval(evaluation)
    copies = near = None
    if needs_training and train_protocol.trains:
        check_training_rows(train_protocol, train, heldout, train_index.root)
        copies = check_training_copies(train_protocol, train, heldout, evaluation, train_index, index, bool(source))
        near = check_near_duplicates(resolved.near_duplicates, train, heldout, evaluation, phases.warn,
                                     cross_suite=bool(source))
        if copies["eval"]:
            phases.warn(f"{copies['eval']} of the {len(evaluation)} evaluation images are byte-identical copies of "
                        "training images (other files with the same bytes): their scores measure memory as much as "
                        "detection; the run records them and leaderboards and reports flag it")
    missing = generators_without_evaluation(protocol, index.rows, evaluation)
    if missing:
        found = "; ".join(f"{g} (has {', '.join(splits) or 'no images'})" for g, splits in missing.items())
        phases.warn(f"protocol {protocol.name} evaluates the {protocol.eval_split} split, which these generators "
                    f"lack under {index.root}: {found}. They are left out of the table and the mean.")
    bias_probe = needs_training and detector.bias_probe and source is None and not protocol.trains
    profiles = suite.eval_profiles(index.generators) if detector.follows_eval_profiles else {}
    probe_rows = evaluation[evaluation["status"] == "ok"] if bias_probe else None
    ctx = dataclasses.replace(setup_ctx, suite_root=index.root, eval_profiles=profiles, probe_rows=probe_rows)
    train_profiles = profiles
    if source is not None and detector.follows_eval_profiles:
        train_profiles = source.suite.eval_profiles(source.index.generators)
    sides = None
    if resolved.tiling is not None:  # center and five need an input size: a detector without one fails now
        from detbench.kit.tiling import tile_sides

        sides = tile_sides(detector, resolved.tiling, ctx, evaluation["generator"])
        tile_sides(detector, resolved.tiling, dataclasses.replace(ctx, eval_profiles=train_profiles),
                   heldout["generator"])
    draft = RunPlan(
        request=req, resolved=resolved, detector=detector, device=device, ctx=ctx, train_ctx=ctx, index=index,
        protocol=protocol, source=source, train=train, heldout=heldout, evaluation=evaluation,
        eval_sample=eval_sample, missing_eval=list(missing), fit_key={}, run_key={}, timings=timings,
        training_copies=copies, near_duplicates=near,
        holdout=holdout_facts, bias_probe=bias_probe, tile_sides=sides,
    )  # fmt: skip
    keys = {"fit_key": fit_key(draft)}
    keys["run_key"] = run_key(dataclasses.replace(draft, **keys))
    fit_dir = dataclasses.replace(draft, **keys).fit_dir
    ctx = dataclasses.replace(ctx, run_dir=fit_dir)  # training checkpoints go to the fit's folder
    train_ctx = ctx
    if source is not None:
        train_ctx = dataclasses.replace(ctx, suite_root=source.index.root, eval_profiles=train_profiles)
    return dataclasses.replace(draft, ctx=ctx, train_ctx=train_ctx, **keys)


def warn_protocol_facts(protocol: Protocol, phases: Phases) -> None:
    """Say what a built protocol leaves out: undated generators (chronological), trained generators not evaluated.

    Args:
        protocol: the protocol chosen.
        phases: where the warnings go.
    """
    facts = protocol.facts or {}
    if facts.get("undated"):
        phases.warn(f"protocol {protocol.name}: no release date for {', '.join(facts['undated'])}; left out of "
                    "training and testing (never guessed; give dates with --set chrono.dates=FILE)")
    if facts.get("synthetic_dates"):
        phases.warn(f"protocol {protocol.name}: the dates of {', '.join(facts['synthetic_dates'])} are synthetic "
                    "(stand-in families, not real generators)")
    if facts.get("not_evaluated"):
        phases.log(f"protocol {protocol.name}: {', '.join(facts['not_evaluated'])} train on a seeded part of their "
                   f"{facts['training_split']} images and are not evaluated (recorded)")


def check_training_copies(
    protocol: Protocol,
    train: pd.DataFrame,
    heldout: pd.DataFrame,
    evaluation: pd.DataFrame,
    train_index: Index,
    index: Index,
    cross_suite: bool,
) -> dict[str, Any]:
    """Refuse evaluating the training files; count the evaluation images that copy training images, for the record.

    Args:
        protocol: the training protocol.
        train: the training rows.
        heldout: the held-out rows.
        evaluation: the evaluation rows (as sampled).
        train_index: the index of the training rows (the evaluation suite's own, or the training suite's).
        index: the evaluation suite's index.
        cross_suite: the training rows are another suite's.

    Returns:
        ``eval`` (how many evaluation images have the bytes of a training image) and ``by`` (what was compared:
        content ids, or the fast index's per-path ids, which find no copy under another name).

    Raises:
        ProtocolError: evaluation files are training files (the same absolute paths, links resolved).
    """
    n = check_no_training_images_evaluated(
        protocol, train, heldout, evaluation, train_root=train_index.root, eval_root=index.root,
        cross_suite=cross_suite,
    )  # fmt: skip
    fast = any(ix.manifest.get("id_mode") == "fast" for ix in (train_index, index))
    by = "fast ids (size, mtime, path): copies under other names are not found" if fast else "content id"
    return {"eval": n, "by": by}


def choose_holdout(
    resolved: Resolved,
    detector: Detector,
    protocol: Protocol,
    source: TrainingSource | None,
    index: Index,
    phases: Phases,
) -> tuple[Protocol, dict[str, Any] | None]:
    """The training protocol with its held-out images chosen (``--set train.holdout``, else the detector's
    original: :attr:`~detbench.kit.detector.Detector.default_holdout`), and the facts the run records; a ``val-split``
    that the data cannot give falls back to the protocol's fraction with a warning.

    Args:
        resolved: the resolved request (its ``holdout``).
        detector: the detector (its ``default_holdout``).
        protocol: the evaluation protocol (the training protocol too, unless ``source`` is given).
        source: a cross-suite run's training suite, or None.
        index: this suite's index.
        phases: where the fallback warning goes.

    Returns:
        ``(training protocol, facts)`` (see :func:`detbench.engine.holdout.apply_holdout`).
    """
    train_protocol, rows = (source.protocol, source.index.rows) if source else (protocol, index.rows)
    setting, chosen_by = resolved.holdout, f"--set {HOLDOUT_KEY}"
    if setting is None and detector.default_holdout is not None:
        setting, chosen_by = detector.default_holdout, f"{detector.name}'s original"
    chosen, facts = apply_holdout(train_protocol, rows, setting, chosen_by)
    if facts and facts.get("fallback"):
        phases.warn(f"{HOLDOUT_KEY}={facts['setting']} ({facts['chosen_by']}): {facts['fallback']} (recorded)")
    return chosen, facts


def _holdout_words(facts: dict[str, Any] | None) -> str:
    if not facts:
        return "its protocol has no training generator"
    return f"{HOLDOUT_KEY}={facts['used']}, {facts['chosen_by']}"


def fit_key(plan: RunPlan) -> dict[str, Any]:
    """Everything that changes training (hashed into the fit id).

    Args:
        plan: the plan, its detector set up (its :meth:`~detbench.kit.detector.Detector.identity` is read).

    Returns:
        The detector's name, version and config (without its ``score_only_keys``), its identity, the training
        suite's identity, index hash and protocol, the seed and the detbench version.
    """
    detector = plan.detector
    config = {k: v for k, v in identity_config(detector, plan.resolved.config).items()
              if k not in detector.score_only_keys}
    return {
        "detector": {"name": detector.name, "version": detector.version, "config": config},
        "detector_identity": detector.identity(),
        "suite": plan.train_suite.identity(),
        "index_hash": plan.train_index.manifest["index_hash"],
        "protocol": plan.train_protocol.to_dict(),
        "seed": plan.request.seed,
        "detbench_version": __version__,
    }


def identity_config(detector: Detector, config: Any) -> dict[str, Any]:
    """A detector's config as run identities hold it: without any path.

    A key of ``detector.file_keys`` (dotted for a nested setting) that names a file reads ``file`` (the file's
    sha256 is in the detector's identity), and a ``backbone`` spec with a file or ``local-dir:`` source reads
    ``...@file`` / ``...@local-dir`` (its weights' sha256 is in the backbone's identity; likewise the keys of
    ``detector.spec_keys``); a ``#sha256=`` pin is
    dropped (it changes no number).
    Empty values, keywords and other specs stay as they are, so runs that name no file keep their ids.

    Args:
        detector: the detector (its ``file_keys``).
        config: its config dataclass.

    Returns:
        The config as a dict, paths replaced.
    """
    from detbench.models.spec import path_free_spec

    values = to_dict(config)
    for key, words in detector.file_keys.items():
        *parents, leaf = key.split(".")  # a dotted key names a nested setting (text.file)
        holder: Any = values
        for part in parents:
            holder = holder.get(part) if isinstance(holder, dict) else None
        value = holder.get(leaf) if isinstance(holder, dict) else None
        if isinstance(value, str) and value and value not in words:
            holder[leaf] = "file"
    for key in ("backbone", *detector.spec_keys):
        if isinstance(values.get(key), str):
            values[key] = path_free_spec(values[key])
    return values


def run_key(plan: RunPlan) -> dict[str, Any]:
    """The fit id and everything that changes evaluation (hashed into the run id).

    Args:
        plan: the plan, its ``fit_key`` and its context (suite root, evaluation profiles) already set.

    Returns:
        The fit id, perturbation identity (None: clean), threshold label and bootstrap count; plus, where they
        apply, the detector's score identity, a cross-suite run's evaluation data, the evaluation profiles and the
        tiling (``eval.tiles`` / ``eval.fuse``).
    """
    resolved = plan.resolved
    key: dict[str, Any] = {
        "fit_id": plan.fit_id,
        "perturbation": resolved.perturbation.identity() if resolved.perturbation else None,
        "threshold": resolved.threshold.label,
        "n_boot": plan.request.n_boot,
    }
    scores = plan.detector.score_identity(plan.ctx)
    if scores:  # e.g. an imported score file: keyed with the run, so runs differing only in it share one fit
        key["scores"] = scores
    if plan.source is not None:  # the fit key names the training data; the evaluation data is keyed here
        key["evaluation"] = {
            "suite": plan.suite.identity(),
            "index_hash": plan.index.manifest["index_hash"],
            "protocol": plan.protocol.to_dict(),
        }
    if plan.ctx.eval_profiles:
        key["eval_profiles"] = {g: p.identity() for g, p in sorted(plan.ctx.eval_profiles.items())}
    if resolved.tiling is not None:
        key["tiles"] = resolved.tiling.identity()
    return key


def shared_index(
    suite: Suite, root: Path | None, mode: str, phases: Phases, on_phase: Callable[[str], None] = lambda w: None
) -> Index:
    """Rank 0 indexes ``suite`` (on ``root``, or its default root); under torchrun the others load it.

    Args:
        suite: the suite adapter.
        root: the suite root; None: the data the suite supplies itself (e.g. the demo's).
        mode: the id mode, ``full`` or ``fast``.
        phases: where the progress bar goes.
        on_phase: told what is happening (``locating ...``, ``indexing ...``), for interrupt messages.

    Returns:
        The index, on every rank.

    Raises:
        InputError: ``root`` is None and the suite supplies no data, or it is not a folder.
        SuiteLayoutError: no image of the suite found.
    """
    index = _index(suite, root, mode, phases, on_phase) if dist.is_main() else None
    directory = dist.broadcast(index.directory if index is not None else None)
    return index if index is not None else load_index(directory)


def _index(suite: Suite, root: Path | None, mode: str, phases: Phases, on_phase: Callable[[str], None]) -> Index:
    on_phase(f"locating the {suite.name} data")
    root = Path(root).expanduser() if root else suite.default_root(phases)
    if root is None:
        raise InputError(f"suite {suite.name!r} needs its data: pass --root PATH (see README, section {suite.name})")
    on_phase(f"indexing {suite.name}")
    with phases.phase(f"index {suite.name}", None) as tracker:
        return build_index(suite, root, mode=mode, progress=tracker.update)


def report_scan(suite: Suite, index: Index, phases: Phases) -> None:
    """Log what was found (usable images per generator); warn of folders skipped and the adapter's notes.

    Args:
        suite: the suite adapter that scanned the data (its ``ignored`` folders and ``notes``).
        index: its index.
        phases: where the lines go.
    """
    usable = index.usable
    phases.log(
        f"{suite.name}: {len(usable)} usable of {len(index.rows)} images under {index.root}; generators: "
        + ", ".join(f"{g} ({n})" for g, n in usable.groupby("generator").size().items())
    )
    ignored = suite.ignored
    if ignored:
        phases.warn(f"{len(ignored)} folders are not part of the {suite.name} layout and were skipped: "
                    f"{', '.join(map(display_name, ignored[:10]))}{' ...' if len(ignored) > 10 else ''}")
    for note in suite.notes:
        phases.warn(note)


def training_source(
    req: RunRequest,
    resolved: Resolved,
    protocol: Protocol,
    needs_training: bool,
    phases: Phases,
    on_phase: Callable[[str], None] = lambda what: None,
) -> TrainingSource | None:
    """The other suite a cross-suite run trains on (``--train-suite``, or the protocol's), indexed.

    Args:
        req: the run request (``train_suite``, ``train_root``, ``train_protocol``, ``index_mode``).
        resolved: its resolved options (the training suite's ``--set`` overrides).
        protocol: the evaluation protocol chosen.
        needs_training: whether the detector learns from training rows (decides which protocols are possible).
        phases: where progress and the scan report go.
        on_phase: told what is happening, for interrupt messages.

    Returns:
        The training suite, its index and protocol; None when the protocol trains on this suite.

    Raises:
        ConfigError: ``--train-root``/``--train-protocol`` given to a run that trains on its own suite.
        ProtocolError: ``--train-suite`` contradicts the protocol, no protocol of the training suite fits its data,
            or the training protocol is itself cross-suite.
        InputError: no ``--train-root``, or it is not a folder.
    """
    name = req.train_suite or protocol.train_suite
    if name is None:
        for given, flag in ((req.train_root, "--train-root"), (req.train_protocol, "--train-protocol")):
            if given is not None:
                raise ConfigError(
                    f"{flag} applies to cross-suite runs: protocol {protocol.name} trains on this suite's own "
                    "data; pass --train-suite SUITE or a cross-suite protocol"
                )
        return None
    if req.train_suite and protocol.train_suite and SUITES.get(req.train_suite) is not SUITES.get(
        protocol.train_suite
    ):
        raise ProtocolError(
            f"protocol {protocol.name} trains on suite {protocol.train_suite}, not {req.train_suite}; "
            "drop --train-suite or choose another protocol"
        )
    if req.train_root is None:
        raise InputError(
            f"protocol {protocol.name} trains on suite {name}: pass --train-root PATH, where the {name} data "
            f"lives (see README, section {name})"
        )
    train_suite = training_suite(name, resolved.train_suite_overrides)
    check_root(train_suite, req.train_root)
    index = shared_index(train_suite, req.train_root, req.index_mode, phases, on_phase)
    report_scan(train_suite, index, phases)
    train_protocol = select_protocol(
        train_suite, index, req.train_protocol or protocol.train_protocol, needs_training=needs_training,
        options=resolved.protocol_options,
    )  # fmt: skip
    warn_protocol_facts(train_protocol, phases)
    if train_protocol.train_suite:
        raise ProtocolError(
            f"protocol {train_protocol.name} of {train_suite.name} itself trains on another suite; choose one "
            f"that trains on {train_suite.name} (--train-protocol)"
        )
    phases.log(
        f"training on {train_suite.name} ({index.root}), protocol {train_protocol.name}; evaluating on "
        f"{protocol.eval_split} of {', '.join(protocol.eval_generators or ['every generator'])}"
    )
    return TrainingSource(train_suite, index, train_protocol)
