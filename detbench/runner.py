"""Run one detector on one suite protocol: index, fit (or reuse), score, measure, record.

Layout under ``$DETBENCH_HOME/runs/<suite>/<detector>/``:
- ``fits/<fit_id>/``: the trained detector state, keyed by everything that changes training (so a
  perturbed evaluation reuses the clean fit), plus resumable training checkpoints.
- ``<run_id>/``: ``scores/part-*.parquet`` (written in chunks, atomically; a killed run resumes from them),
  then ``scores.parquet``, ``metrics.parquet`` and ``run.json`` (written last: a run without it is
  unfinished). Finished runs are immutable: the same run id is reused unless ``force``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import difflib
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detbench import __version__
from detbench import distributed as dist
from detbench.config import apply_overrides, field_paths, to_dict
from detbench.detector import Detector, RunContext
from detbench.errors import ConfigError, DamagedRunError, DataError, InputError, ProtocolError
from detbench.index import Index, build_index, load_index
from detbench.metrics import SUMMARY_ROWS
from detbench.paths import home_subdir
from detbench.progress import Phases
from detbench.protocol_checks import (
    check_no_training_images_evaluated,
    check_training_rows,
    generators_without_evaluation,
)
from detbench.records import (
    RUN_OUTPUTS,
    content_hash,
    exclusive_lock,
    load_run_record,
    read_json,
    sha256_of_file,
    sweep_stale_tmp,
    write_json_atomic,
    write_parquet_atomic,
)
from detbench.registry import DETECTORS, SUITES
from detbench.suites import Protocol, Suite, display_name

SCORE_CHUNK_ROWS = 8192
SCORE_SHARD_ALIGN = 64  # the built-in detectors' default scoring batch (see distributed.shard_slice)
SCORE_COLUMNS = ["image_id", "path", "generator", "split", "label", "score", "status"]
REPLACEMENT = "replacement"  # where --force computes a run or fit before it replaces the finished one
RUN_FILES = ("run.json", *RUN_OUTPUTS)  # the record first: without it a run reads as unfinished
FIT_FILES = ("fit.json", "state")


@dataclass
class RunRequest:
    detector: str
    suite: str
    root: Path | None = None
    protocol: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    force: bool = False
    device: str | None = None
    workers: int | None = None
    batch_size: int | None = None
    perturb: str | None = None
    index_mode: str = "full"
    n_boot: int = 1000  # bootstrap resamples for the acc/AP intervals; 0 disables them
    threshold: str = "0.5"  # "calibrated" or a fixed value in [0, 1]
    keep_fit: bool = False  # with force: recompute the run but reuse an existing trained fit
    preset: dict[str, Any] | None = None  # recorded (name, version, whether this run is a faithful reproduction)
    train_suite: str | None = None  # cross-suite: train on this suite's protocol (default: the protocol's own)
    train_root: Path | None = None  # where the training suite's data lives
    train_protocol: str | None = None  # the training suite's protocol (default: the one named, else its default)


@dataclass
class RunResult:
    run_dir: Path
    record: dict[str, Any]
    metrics: pd.DataFrame
    reused: bool


@dataclass
class Resolved:
    """Everything decided before any work starts (so bad input fails fast)."""

    suite: Suite
    detector_cls: type[Detector]
    config: Any
    perturbation: Any | None
    threshold: ThresholdPolicy
    settings: dict[str, Any]  # the detector keys the user set, resolved (shown by leaderboards)
    train_suite_overrides: dict[str, str] = field(default_factory=dict)  # --set train_suite.KEY=VALUE


@dataclass
class TrainingSource:
    """Where a cross-suite run's training rows come from: another suite's protocol on its own root."""

    suite: Suite
    index: Index
    protocol: Protocol


@dataclass(frozen=True)
class ThresholdPolicy:
    """``fixed`` at ``value``, or ``calibrated``: the threshold maximising balanced accuracy on the
    training generator's held-out split (clean images; the deployable choice)."""

    policy: str
    value: float | None = None

    @classmethod
    def parse(cls, text: str) -> ThresholdPolicy:
        if text.strip().lower() == "calibrated":
            return cls("calibrated")
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 <= value <= 1:
            raise ConfigError(f"--threshold must be 'calibrated' or a number in [0, 1]; got {text!r}")
        return cls("fixed", value)

    @property
    def label(self) -> str:
        return "calibrated" if self.policy == "calibrated" else f"{self.value:g}"


def resolve(req: RunRequest) -> Resolved:
    """Look up plugins and validate every option; raises RegistryError/ConfigError before any work."""
    suite_cls = SUITES.get(req.suite)
    det_cls = DETECTORS.get(req.detector)
    suite_keys = set(field_paths(suite_cls.Options))
    det_keys = set(field_paths(det_cls.Config))
    suite_over: dict[str, str] = {}
    det_over: dict[str, str] = {}
    train_over: dict[str, str] = {}
    for key, value in req.overrides.items():
        bare = key.removeprefix("suite.")
        if key.startswith(TRAIN_SUITE_PREFIX):
            train_over[key.removeprefix(TRAIN_SUITE_PREFIX)] = value
        elif key.startswith("suite.") or (key not in det_keys and bare in suite_keys):
            if bare not in suite_keys:
                raise ConfigError(
                    f"unknown suite option {bare!r} for {req.suite}; valid: {', '.join(sorted(suite_keys)) or 'none'}"
                )
            suite_over[bare] = value
        elif key in det_keys:
            det_over[key] = value
        else:
            valid = sorted(det_keys) + [f"suite.{k}" for k in sorted(suite_keys)]
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown --set key {key!r} for {req.detector} on {req.suite}.{hint} Valid keys: {', '.join(valid)}"
            )
    suite = suite_cls(apply_overrides(suite_cls.Options(), suite_over))
    config = apply_overrides(det_cls.Config(), det_cls.profile_defaults.get(suite.compute_profile, {}))
    if "backbone" in det_keys and not config.backbone:
        config = apply_overrides(config, {"backbone": suite.default_backbone})
    config = apply_overrides(config, det_over)
    if getattr(config, "backbone", ""):  # a malformed spec fails now, not after a long index or demo build
        from detbench.backbones import parse_spec

        try:
            parse_spec(config.backbone)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    perturbation = None
    if req.perturb:
        from detbench.perturbations import parse_perturbation

        perturbation = parse_perturbation(req.perturb)
    check_run_options(req)
    settings = {key: _dotted(config, key) for key in sorted(det_over)}
    if req.train_suite:  # else a cross-suite protocol names it: its options are checked once that is known
        training_suite(req.train_suite, train_over)  # an unknown suite or option fails now
    return Resolved(
        suite, det_cls, config, perturbation, ThresholdPolicy.parse(req.threshold), settings, train_over
    )


TRAIN_SUITE_PREFIX = "train_suite."


def training_suite(name: str, overrides: dict[str, str]) -> Suite:
    """The suite a cross-suite run trains on, with its ``--set train_suite.KEY=VALUE`` options."""
    cls = SUITES.get(name)
    try:
        return cls(apply_overrides(cls.Options(), overrides))
    except ConfigError as exc:
        raise ConfigError(f"training suite {name}: {exc} (set them as train_suite.KEY=VALUE)") from None


def check_root(suite: Suite, root: Path | None) -> None:
    """A given ``--root`` must be a folder; a suite that does not build its own data needs one."""
    if root is not None:
        if not Path(root).expanduser().is_dir():
            raise InputError(f"--root {root} is not a directory")
    elif not suite.builds_own_root():
        raise InputError(f"suite {suite.name!r} needs its data: pass --root PATH (see README, section {suite.name})")


MAX_SEED = 2**32 - 1  # scikit-learn's random_state limit


def check_run_options(req: RunRequest) -> None:
    """Range checks of the run's own options (the detector's and suite's are their configs' validate())."""
    checks = [
        (0 <= req.seed <= MAX_SEED, f"--seed must be in 0..{MAX_SEED}; got {req.seed}"),
        (req.n_boot >= 0, f"--bootstrap must be >= 0 (0 disables intervals); got {req.n_boot}"),
        (req.workers is None or req.workers >= 0, f"--workers must be >= 0 (0: decode in-process); got {req.workers}"),
        (req.batch_size is None or req.batch_size >= 1, f"--batch-size must be >= 1; got {req.batch_size}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _dotted(config: Any, key: str) -> Any:
    for part in key.split("."):
        config = getattr(config, part)
    return config


def select_protocol(suite: Suite, index: Index, name: str | None, *, needs_training: bool = True) -> Protocol:
    """The protocol ``name`` (default: the suite's), checked against the data by :func:`protocol_problems`.
    ``needs_training=False`` also serves cross-suite runs, whose training rows are checked on their own suite."""
    protocols = suite.all_protocols(index.generators)
    name = name or suite.default_protocol
    if name not in protocols:
        close = difflib.get_close_matches(name, list(protocols), n=2)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ProtocolError(
            f"unknown protocol {name!r} for suite {suite.name}.{hint} Available: {', '.join(protocols)}"
        )
    protocol = protocols[name]
    problems = protocol_problems(protocol, index.usable, needs_training=needs_training, root=index.root)
    if problems:
        raise ProtocolError(problems[0])
    return protocol


def protocol_problems(
    protocol: Protocol, usable: pd.DataFrame, *, needs_training: bool, root: Path | str
) -> list[str]:
    """What stops ``protocol`` on the usable index rows: the one check shared by the runner and preset pre-flight.

    A detector that needs training needs real and fake rows of the training generators' train split, and a
    protocol that trains (``eval`` does not); a detector that needs none (released weights, training-free) runs
    under any protocol and ignores the training rows.
    """
    if not needs_training or protocol.train_suite:  # a cross-suite protocol's rows are in its training suite
        return []
    if not protocol.trains:
        return [
            f"protocol {protocol.name!r} trains nothing, but this detector needs training: give it released "
            "weights (see `detbench ls detectors`) or choose a training protocol"
        ]
    train = usable[usable["generator"].isin(protocol.train_generators) & (usable["split"] == protocol.train_split)]
    if train.empty or train["label"].nunique() < 2:
        found = usable.groupby(["generator", "split"]).size()
        listing = ", ".join(f"{g}/{s} ({n})" for (g, s), n in found.items()) or "no usable images"
        return [
            f"protocol {protocol.name!r} trains on {'+'.join(protocol.train_generators)}/{protocol.train_split} "
            f"with both real and fake images, but the index under {root} has: {listing}. Detectors with "
            "released weights or none to train run under --protocol eval"
        ]
    return []


def split_rows(index: Index, protocol: Protocol, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Training rows, the held-out selection rows carved from them (seeded, per label), and eval rows."""
    rows = index.rows.sort_values("path", kind="stable")
    train_all = rows[rows["generator"].isin(protocol.train_generators) & (rows["split"] == protocol.train_split)]
    train_ok = train_all[train_all["status"] == "ok"]
    rng = np.random.default_rng(seed)
    held_idx: list[Any] = []
    for _, group in train_ok.groupby("label", sort=True):
        n = int(round(protocol.heldout_fraction * len(group)))
        if protocol.heldout_fraction > 0:
            n = max(1, min(n, len(group) - 1))
        held_idx.extend(group.index[rng.permutation(len(group))[:n]])
    heldout = train_ok.loc[sorted(held_idx, key=lambda i: train_ok.index.get_loc(i))]
    train = train_ok.drop(index=held_idx)
    eval_mask = rows["split"] == protocol.eval_split
    if protocol.eval_generators is not None:
        eval_mask &= rows["generator"].isin(protocol.eval_generators)
    evaluation = rows[eval_mask].sort_values(["generator", "path"], kind="stable")
    return train, heldout, evaluation


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Runner:
    """Carries out a :class:`RunRequest`; ``phase`` says where it is (for interrupt messages)."""

    def __init__(self, phases: Phases | None = None) -> None:
        self.phases = phases or Phases()
        self.phase = "starting"
        self.run_dir: Path | None = None

    def run(self, req: RunRequest) -> RunResult:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        self.phase = "validating options"
        resolved = resolve(req)
        suite, config = resolved.suite, resolved.config
        check_root(suite, req.root)  # cheap: before any weights load
        device = dist.local_device(req.device or default_device())
        dist.init(device)  # under torchrun: join the process group (a no-op in a single process)
        if not dist.is_main():
            self.phases = Phases(self.phases.console, enabled=False, warnings=False)

        self.phase = "loading the detector"
        t = time.perf_counter()
        from detbench.features import FeatureCache

        ctx = RunContext(
            suite_root=Path("."),  # set once the suite is indexed
            suite_name=suite.name,
            eval_convention=suite.eval_convention,
            device=device,
            seed=req.seed,
            run_dir=Path("."),
            phases=self.phases,
            workers=req.workers,
            batch_size=req.batch_size,
            perturbation=resolved.perturbation,
            feature_cache=FeatureCache(),
        )
        detector = resolved.detector_cls(config)
        detector.setup(ctx)  # first: missing weights fail before any data work
        timings["setup"] = time.perf_counter() - t

        t = time.perf_counter()
        index = self._shared_index(suite, req.root, req.index_mode)
        timings["index"] = time.perf_counter() - t
        self._report_scan(suite, index)
        needs_training = detector.needs_training()
        protocol = select_protocol(suite, index, req.protocol, needs_training=needs_training and not req.train_suite)
        t = time.perf_counter()
        source = self._training_source(req, resolved, protocol, needs_training)
        if source is not None:
            timings["index_training"] = time.perf_counter() - t
        train_suite, train_index, train_protocol = (
            (source.suite, source.index, source.protocol) if source else (suite, index, protocol)
        )
        train, heldout, evaluation = split_rows(index, protocol, req.seed)
        if source is not None:  # train on the other suite's protocol; evaluate this suite's protocol
            train, heldout, _ = split_rows(train_index, train_protocol, req.seed)
        if needs_training and train_protocol.trains:
            check_training_rows(train_protocol, train, heldout, train_index.root)
            copies = check_no_training_images_evaluated(
                train_protocol, train, heldout, evaluation, same_root=source is None
            )
            if copies:
                self.phases.warn(f"{copies} evaluation images are byte-identical copies of training images (under "
                                 "other names): their scores measure memory as much as detection")
        evaluation, eval_sample = suite.sample_eval(evaluation)
        missing = generators_without_evaluation(protocol, index.rows, evaluation)
        if missing:
            found = "; ".join(f"{g} (has {', '.join(splits) or 'no images'})" for g, splits in missing.items())
            self.phases.warn(f"protocol {protocol.name} evaluates the {protocol.eval_split} split, which these "
                             f"generators lack under {index.root}: {found}. They are left out of the table and the "
                             "mean.")
        missing_eval = list(missing)
        ctx.suite_root = index.root

        fit_config = {k: v for k, v in to_dict(config).items() if k not in detector.score_only_keys}
        fit_key = {
            "detector": {"name": detector.name, "version": detector.version, "config": fit_config},
            "detector_identity": detector.identity(),
            "suite": train_suite.identity(),
            "index_hash": train_index.manifest["index_hash"],
            "protocol": train_protocol.to_dict(),
            "seed": req.seed,
            "detbench_version": __version__,
        }
        fit_id = content_hash(fit_key)
        run_key: dict[str, Any] = {
            "fit_id": fit_id,
            "perturbation": resolved.perturbation.identity() if resolved.perturbation else None,
            "threshold": resolved.threshold.label,
            "n_boot": req.n_boot,
        }
        score_identity = detector.score_identity()
        if score_identity:  # e.g. an imported score file: keyed with the run, so its fit is shared
            run_key["scores"] = score_identity
        if source is not None:  # the fit key names the training data; the evaluation data is keyed here
            run_key["evaluation"] = {
                "suite": suite.identity(),
                "index_hash": index.manifest["index_hash"],
                "protocol": protocol.to_dict(),
            }
        if detector.follows_eval_profiles:
            ctx.eval_profiles = suite.eval_profiles(index.generators)
            if ctx.eval_profiles:
                run_key["eval_profiles"] = {g: p.identity() for g, p in sorted(ctx.eval_profiles.items())}
        run_id = content_hash(run_key)
        base = home_subdir("runs") / suite.name / detector.name
        fit_base = home_subdir("runs") / train_suite.name / detector.name  # a fit is stored with its training data
        run_dir = base / run_id[:16]
        fit_dir = fit_base / "fits" / fit_id[:16]
        self.run_dir = run_dir
        ctx.run_dir = fit_dir
        train_ctx = ctx
        if source is not None:
            profiles = train_suite.eval_profiles(train_index.generators) if detector.follows_eval_profiles else {}
            train_ctx = dataclasses.replace(ctx, suite_root=train_index.root, eval_profiles=profiles)

        if not req.force:
            reused = self._reuse(run_dir, run_id, base, locked=False)
            if reused is not None:
                return reused
        run_dir.mkdir(parents=True, exist_ok=True)
        run_lock = exclusive_lock(run_dir / "run.lock", f"run {run_id[:16]}") if dist.is_main() else None
        with run_lock or contextlib.nullcontext():
            if not req.force:  # again under the lock: another process may have finished it meanwhile
                reused = self._reuse(run_dir, run_id, base, locked=True)
                if reused is not None:
                    return reused
            # --force computes beside the finished run and replaces it only once everything succeeded
            out_dir = run_dir / REPLACEMENT if req.force else run_dir
            if dist.is_main():
                if req.force:
                    shutil.rmtree(out_dir, ignore_errors=True)
                out_dir.mkdir(parents=True, exist_ok=True)
                for directory in (out_dir, out_dir / "scores"):  # temp files of a killed earlier attempt
                    if directory.is_dir():
                        sweep_stale_tmp(directory)
            self.phase = "training"
            t = time.perf_counter()
            retrain = req.force and not req.keep_fit
            fit_info = self._fit_or_load(detector, train, heldout, train_ctx, fit_dir, fit_key, retrain=retrain)
            timings["fit"] = time.perf_counter() - t

            self.phase = "scoring"
            t = time.perf_counter()
            scores = self._score(detector, evaluation, ctx, out_dir)
            held_scores = self._score(detector, heldout, train_ctx, out_dir, prefix="heldout", clean=True)
            timings["predict"] = time.perf_counter() - t
            if not dist.is_main():  # rank 0 measures and records; the other ranks return its result
                record, metrics = dist.broadcast(None)
                return RunResult(run_dir, record, metrics, reused=False)

            self.phase = "computing metrics"
            t = time.perf_counter()
            from detbench.metrics import best_threshold, per_group_metrics

            held_ok = held_scores[np.isfinite(held_scores["score"])]
            calibrated = (
                best_threshold(held_ok["label"].to_numpy(), held_ok["score"].to_numpy(), "balanced_acc")[0]
                if held_ok["label"].nunique() == 2
                else float("nan")
            )
            threshold = calibrated if resolved.threshold.policy == "calibrated" else resolved.threshold.value
            if not np.isfinite(threshold):
                raise ProtocolError(
                    "--threshold calibrated needs real and fake images in the training generator's held-out "
                    f"split; it has {len(held_ok)} usable images with labels {sorted(held_ok['label'].unique())}"
                )
            scored = scores[np.isfinite(scores["score"])]
            unscored = _unscored_generators(scores, scored)
            if len(scored) == 0:
                raise DataError(f"no evaluation image could be scored: {'; '.join(unscored.values())}")
            for generator, why in unscored.items():
                self.phases.warn(f"generator {generator}: {why}; it is left out of the table and the mean")
            missing_eval += list(unscored)
            metrics = per_group_metrics(
                scored, group="generator", threshold=threshold, n_boot=req.n_boot, seed=req.seed
            )
            timings["metrics"] = time.perf_counter() - t

            write_parquet_atomic(out_dir / "scores.parquet", scores)
            write_parquet_atomic(out_dir / "heldout_scores.parquet", held_scores)
            write_parquet_atomic(out_dir / "metrics.parquet", metrics)
            shutil.rmtree(out_dir / "scores", ignore_errors=True)
            timings["total"] = time.perf_counter() - started
            record = {
                "run_id": run_id,
                "fit_id": fit_id,
                "status": "complete",
                "detector": detector.name,
                "label": detector.label(),
                "external": detector.external,
                "suite": suite.name,
                "protocol": protocol.name,
                "backbone": getattr(config, "backbone", None),
                "config_hash": content_hash(to_dict(config))[:12],
                "settings": resolved.settings,
                "perturbation": run_key["perturbation"],
                "preset": req.preset,
                "missing_eval_generators": sorted(missing_eval),
                "eval_sample": eval_sample,
                "training": _training_record(source),
                "eval_profiles": {g: p.name for g, p in sorted(ctx.eval_profiles.items())},
                "key": {**fit_key, **{k: run_key[k] for k in ("perturbation", "scores") if k in run_key}},
                "threshold": {
                    "policy": resolved.threshold.policy,
                    "label": resolved.threshold.label,
                    "value": float(threshold),
                    "calibrated_on_heldout": calibrated,
                    "calibration_objective": "balanced_acc",
                },
                "bootstrap": {"n_boot": req.n_boot, "ci": 0.95, "seed": req.seed, "metrics": ["acc", "ap"]},
                "fit": fit_info,
                "counts": _counts(train, heldout, scores, train_index.rows, train_protocol),
                "summary": _summary(metrics),
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "timings_s": {k: round(v, 3) for k, v in timings.items()},
                "paths": {
                    "suite_root": str(index.root),
                    "train_root": str(train_index.root),
                    "index": str(index.directory),
                    "run": str(run_dir),
                    "fit": str(fit_dir),
                },
                "outputs": {name: sha256_of_file(out_dir / name) for name in RUN_OUTPUTS},
                "environment": environment(device),
                "source": git_state(),
            }
            write_json_atomic(out_dir / "run.json", record)
            if req.force:
                if retrain:
                    self._install(fit_dir / REPLACEMENT, fit_dir, FIT_FILES, fit_base, "fit", lock=True)
                self._install(out_dir, run_dir, RUN_FILES, base, "run")
        (run_dir / "run.lock").unlink(missing_ok=True)
        dist.broadcast((record, metrics))
        self.phase = "done"
        return RunResult(run_dir, record, metrics, reused=False)

    def _reuse(self, run_dir: Path, run_id: str, base: Path, *, locked: bool) -> RunResult | None:
        """The finished run in ``run_dir`` if it is intact (its outputs match the hashes it recorded). A damaged one
        is reported and, when the caller holds the run lock, moved aside to be recomputed."""
        found = None
        if dist.is_main() and (run_dir / "run.json").exists():
            try:
                found = (load_run_record(run_dir), pd.read_parquet(run_dir / "metrics.parquet"))
            except DamagedRunError as exc:
                if locked:
                    kept = _move_aside(run_dir, RUN_FILES, base, "run")
                    self.phases.warn(f"{exc}; recomputing it (the damaged files are kept in {kept})")
        found = dist.broadcast(found)
        if found is None:
            return None
        self.phases.log(f"[green]Reusing finished run {run_id[:16]}[/] ({run_dir}); pass --force to recompute.")
        return RunResult(run_dir, found[0], found[1], reused=True)

    def _install(self, staged: Path, target: Path, names: tuple[str, ...], base: Path, what: str,
                 lock: bool = False) -> None:
        """Replace ``target``'s ``names`` by those computed in ``staged`` (the previous ones move to ``replaced/``),
        the record file last; with ``lock``, under ``target``'s lock (a fit is shared by runs)."""
        held = exclusive_lock(target / f"{what}.lock", f"{what} {target.name}", wait=True) if lock else None
        with held or contextlib.nullcontext():
            if any((target / name).exists() for name in names):
                kept = _move_aside(target, names, base, what)
                self.phases.log(f"[yellow]--force: moved the previous {what} to {kept}[/]")
            shutil.rmtree(target / "scores", ignore_errors=True)  # parts of an unfinished earlier attempt
            for name in reversed(names):
                os.replace(staged / name, target / name)
            shutil.rmtree(staged, ignore_errors=True)

    def _shared_index(self, suite: Suite, root: Path | None, mode: str) -> Index:
        """Rank 0 indexes ``suite`` (on ``root``, or its default root); under torchrun the others load it."""
        index = self._index(suite, root, mode) if dist.is_main() else None
        directory = dist.broadcast(index.directory if index is not None else None)
        return index if index is not None else load_index(directory)

    def _index(self, suite: Suite, root: Path | None, mode: str) -> Index:
        self.phase = f"locating the {suite.name} data"
        root = Path(root).expanduser() if root else suite.default_root(self.phases)
        if root is None:
            raise InputError(
                f"suite {suite.name!r} needs its data: pass --root PATH (see README, section {suite.name})"
            )
        self.phase = f"indexing {suite.name}"
        with self.phases.phase(f"index {suite.name}", None) as tracker:
            return build_index(suite, root, mode=mode, progress=tracker.update)

    def _report_scan(self, suite: Suite, index: Index) -> None:
        """Log what was found (usable images per generator); warn of folders skipped and the adapter's notes."""
        usable = index.usable
        self.phases.log(
            f"{suite.name}: {len(usable)} usable of {len(index.rows)} images under {index.root}; generators: "
            + ", ".join(f"{g} ({n})" for g, n in usable.groupby("generator").size().items())
        )
        ignored = suite.ignored
        if ignored:
            self.phases.warn(f"{len(ignored)} folders are not part of the {suite.name} layout and were skipped: "
                             f"{', '.join(map(display_name, ignored[:10]))}{' ...' if len(ignored) > 10 else ''}")
        for note in suite.notes:
            self.phases.warn(note)

    def _training_source(
        self, req: RunRequest, resolved: Resolved, protocol: Protocol, needs_training: bool
    ) -> TrainingSource | None:
        """The other suite a cross-suite run trains on (``--train-suite``, or the protocol's), indexed; None when
        the protocol trains on this suite."""
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
        index = self._shared_index(train_suite, req.train_root, req.index_mode)
        self._report_scan(train_suite, index)
        train_protocol = select_protocol(
            train_suite, index, req.train_protocol or protocol.train_protocol, needs_training=needs_training
        )
        if train_protocol.train_suite:
            raise ProtocolError(
                f"protocol {train_protocol.name} of {train_suite.name} itself trains on another suite; choose one "
                f"that trains on {train_suite.name} (--train-protocol)"
            )
        self.phases.log(
            f"training on {train_suite.name} ({index.root}), protocol {train_protocol.name}; evaluating on "
            f"{protocol.eval_split} of {', '.join(protocol.eval_generators or ['every generator'])}"
        )
        return TrainingSource(train_suite, index, train_protocol)

    def _fit_or_load(
        self,
        detector: Detector,
        train: pd.DataFrame,
        heldout: pd.DataFrame,
        ctx: RunContext,
        fit_dir: Path,
        fit_key: dict[str, Any],
        retrain: bool = False,
    ) -> dict[str, Any]:
        """Load the fit in ``fit_dir`` if it is intact, else train and save it there. With ``retrain`` (--force)
        train into ``fit_dir/replacement``, which the run installs once it has finished.

        Under torchrun every rank takes part in ``fit`` (sharded features, DDP); rank 0 holds the lock and saves the
        state, which the other ranks then load, so every rank scores with rank 0's model."""
        if not retrain and dist.broadcast(dist.is_main() and self._fit_intact(fit_dir, locked=False)):
            return _load_fit(detector, fit_dir)
        fit_dir.mkdir(parents=True, exist_ok=True)
        lock_log = self.phases.log if self.phases.enabled else None
        fit_lock = (
            exclusive_lock(fit_dir / "fit.lock", f"training {fit_dir.name}", wait=True, on_wait=lock_log)
            if dist.is_main()
            else None
        )
        target = fit_dir / REPLACEMENT if retrain else fit_dir
        with fit_lock or contextlib.nullcontext():
            # another run (e.g. another perturbation) may have trained it meanwhile
            if not retrain and dist.broadcast(dist.is_main() and self._fit_intact(fit_dir, locked=True)):
                return _load_fit(detector, fit_dir)
            if dist.is_main():
                if retrain:
                    shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True, exist_ok=True)
                sweep_stale_tmp(target)
            dist.barrier()  # every rank sees the same (possibly emptied) checkpoint folder
            ctx.run_dir = target
            info = detector.fit(train, heldout, ctx)
            if dist.is_main():
                state_dir = target / "state"
                tmp = target / "state.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                detector.save(tmp)
                shutil.rmtree(state_dir, ignore_errors=True)
                tmp.rename(state_dir)
                files = {p.name: sha256_of_file(p) for p in sorted(state_dir.iterdir()) if p.is_file()}
                write_json_atomic(target / "fit.json", {"key": fit_key, "info": info, "state_sha256": files})
        dist.barrier()
        if not dist.is_main():
            detector.load(target / "state")
        ctx.run_dir = fit_dir
        return {**info, "reused": False}

    def _fit_intact(self, fit_dir: Path, *, locked: bool) -> bool:
        """Whether ``fit_dir`` holds a finished fit whose state files match the hashes fit.json recorded. A damaged
        one is reported and, when the caller holds the fit lock, moved aside to be retrained."""
        if not (fit_dir / "fit.json").exists():
            return False
        problem = _fit_problem(fit_dir)
        if problem is None:
            return True
        if locked:
            kept = _move_aside(fit_dir, FIT_FILES, fit_dir.parent.parent, "fit")
            self.phases.warn(f"fit {fit_dir.name} is damaged ({problem}); retraining it (the damaged files are kept "
                             f"in {kept})")
        return False

    def _score(
        self,
        detector: Detector,
        rows: pd.DataFrame,
        ctx: RunContext,
        run_dir: Path,
        prefix: str = "part",
        clean: bool = False,
    ) -> pd.DataFrame:
        """Score ``rows`` in chunks written atomically to ``run_dir/scores``; finished chunks are reused."""
        if clean:
            ctx = dataclasses.replace(ctx, perturbation=None, stage=prefix)
        chunk_dir = run_dir / "scores"
        chunk_dir.mkdir(parents=True, exist_ok=True)
        parts = []
        for start in range(0, max(len(rows), 1), SCORE_CHUNK_ROWS):
            chunk = rows.iloc[start : start + SCORE_CHUNK_ROWS]
            path = (
                chunk_dir
                / f"{prefix}-{start // SCORE_CHUNK_ROWS:05d}-{content_hash(chunk['path'].tolist())[:8]}.parquet"
            )
            if dist.broadcast(path.exists()):
                if dist.is_main():
                    parts.append(pd.read_parquet(path))
                continue
            ok_pos = np.flatnonzero((chunk["status"] == "ok").to_numpy())
            # Under torchrun each rank scores a block of the usable rows, aligned to the scoring batch.
            mine = ok_pos[dist.shard_slice(len(ok_pos), align=ctx.batch_size or SCORE_SHARD_ALIGN)]
            scores, failures = np.empty(0), {}
            if len(mine):
                with dist.local():
                    scores, failures = detector.predict(chunk.iloc[mine], ctx)
            gathered = dist.gather((mine, scores, failures))
            if gathered is None:  # rank 0 assembles and writes the chunk
                continue
            out = chunk[["image_id", "path", "generator", "split", "label"]].copy()
            out["score"] = np.nan
            out["status"] = chunk["status"].where(chunk["status"] != "ok", "ok").astype(str)
            for pos, part_scores, part_failures in gathered:
                out.iloc[pos, out.columns.get_loc("score")] = part_scores
                for local, reason in part_failures.items():
                    out.iloc[pos[local], out.columns.get_loc("status")] = reason
            no_score = (out["status"] == "ok").to_numpy() & ~np.isfinite(out["score"].to_numpy(dtype=float))
            out.loc[no_score, "status"] = "no_score: the detector returned NaN or infinity"
            write_parquet_atomic(path, out[SCORE_COLUMNS])
            parts.append(out[SCORE_COLUMNS])
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SCORE_COLUMNS)


def _move_aside(directory: Path, names: tuple[str, ...], base: Path, what: str) -> Path:
    """Move ``names`` (those that exist, in order) from ``directory`` to a new ``base/replaced/`` folder, which is
    returned: results are never deleted silently."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    prefix = "fit-" if what == "fit" else ""
    target = base / "replaced" / f"{prefix}{directory.name}-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = base / "replaced" / f"{prefix}{directory.name}-{stamp}-{n}"
    target.mkdir(parents=True)
    for name in names:
        if (directory / name).exists():
            os.replace(directory / name, target / name)
    return target


def _fit_problem(fit_dir: Path) -> str | None:
    """What is wrong with a finished fit's files, or None when fit.json and the state files it hashed are intact."""
    try:
        meta = read_json(fit_dir / "fit.json")
        expected = meta["state_sha256"]
        if not isinstance(meta["info"], dict) or not isinstance(expected, dict) or not expected:
            return "fit.json has the wrong shape"
        for name, sha in expected.items():
            if sha256_of_file(fit_dir / "state" / name) != sha:
                return f"state/{name} differs from the sha256 fit.json recorded"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _load_fit(detector: Detector, fit_dir: Path) -> dict[str, Any]:
    detector.load(fit_dir / "state")
    return {**read_json(fit_dir / "fit.json")["info"], "reused": True}


def _unscored_generators(scores: pd.DataFrame, scored: pd.DataFrame) -> dict[str, str]:
    """Generators with evaluation rows but no scored image, with why (the skip reasons)."""
    out = {}
    for generator, group in scores.groupby("generator"):
        if generator not in set(scored["generator"]):
            reasons = ", ".join(f"{n} {k}" for k, n in _reasons(group["status"]).items())
            out[str(generator)] = f"none of its {len(group)} evaluation images could be scored ({reasons})"
    return out


def _training_record(source: TrainingSource | None) -> dict[str, Any] | None:
    """Where a cross-suite run trained (None when it trained on its own suite)."""
    if source is None:
        return None
    return {
        "suite": source.suite.name,
        "protocol": source.protocol.name,
        "root": str(source.index.root),
        "index": str(source.index.directory),
        "index_hash": source.index.manifest["index_hash"],
    }


def _counts(
    train: pd.DataFrame, heldout: pd.DataFrame, scores: pd.DataFrame, rows: pd.DataFrame, protocol: Protocol
) -> dict[str, Any]:
    skipped = scores[~np.isfinite(scores["score"])]
    in_train = rows["generator"].isin(protocol.train_generators) & (rows["split"] == protocol.train_split)
    train_bad = rows.loc[in_train & (rows["status"] != "ok"), "status"]
    per_gen = {}
    for gen, group in scores.groupby("generator"):
        used = group[np.isfinite(group["score"])]
        per_gen[gen] = {
            "real": int((used["label"] == 0).sum()),
            "fake": int((used["label"] == 1).sum()),
            "skipped": int(len(group) - len(used)),
        }
    return {
        "train": {"used": int(len(train)), "skipped": int(len(train_bad)), "skipped_reasons": _reasons(train_bad)},
        "heldout": int(len(heldout)),
        "eval": per_gen,
        "eval_skipped": int(len(skipped)),
        "skipped_reasons": _reasons(skipped["status"]),
    }


def _reasons(statuses: pd.Series) -> dict[str, int]:
    """Counts per status (``"not_a_file: dangling symlink"`` counts as ``not_a_file``)."""
    return {str(k): int(v) for k, v in statuses.str.split(":").str[0].value_counts().items()}


def _summary(metrics: pd.DataFrame) -> dict[str, Any]:
    rows = metrics.set_index("generator")
    out = {}
    for row in SUMMARY_ROWS:
        if row in rows.index:
            out[row] = {
                m: (None if pd.isna(v) else round(float(v), 6))
                for m, v in rows.loc[row].items()
                if m in ("acc", "real_acc", "fake_acc", "ap", "auc")
            }
    return out


def environment(device: str) -> dict[str, Any]:
    import torch

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": device,
        "world_size": dist.world_size(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        env["gpu_count"] = torch.cuda.device_count()
    return env


def git_state() -> dict[str, Any]:
    """The detbench source's git commit and dirty flag (None outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
        )
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "python_executable": sys.executable}
