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
from detbench.config import ConfigError, apply_overrides, field_paths, to_dict
from detbench.detector import Detector, RunContext
from detbench.index import Index, build_index, load_index
from detbench.paths import home_subdir
from detbench.progress import Phases
from detbench.records import (
    content_hash,
    exclusive_lock,
    read_json,
    sha256_of_file,
    sweep_stale_tmp,
    write_json_atomic,
    write_parquet_atomic,
)
from detbench.registry import DETECTORS, SUITES
from detbench.suites import Protocol, Suite

SCORE_CHUNK_ROWS = 8192
SCORE_SHARD_ALIGN = 64  # the built-in detectors' default scoring batch (see distributed.shard_slice)
SCORE_COLUMNS = ["image_id", "path", "generator", "split", "label", "score", "status"]


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


class ProtocolError(ValueError):
    """The requested protocol cannot run on the data found."""


def resolve(req: RunRequest) -> Resolved:
    """Look up plugins and validate every option; raises RegistryError/ConfigError before any work."""
    suite_cls = SUITES.get(req.suite)
    det_cls = DETECTORS.get(req.detector)
    suite_keys = set(field_paths(suite_cls.Options))
    det_keys = set(field_paths(det_cls.Config))
    suite_over: dict[str, str] = {}
    det_over: dict[str, str] = {}
    for key, value in req.overrides.items():
        bare = key.removeprefix("suite.")
        if key.startswith("suite.") or (key not in det_keys and bare in suite_keys):
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
    if req.n_boot < 0:
        raise ConfigError(f"--bootstrap must be >= 0 (0 disables intervals); got {req.n_boot}")
    settings = {key: _dotted(config, key) for key in sorted(det_over)}
    return Resolved(suite, det_cls, config, perturbation, ThresholdPolicy.parse(req.threshold), settings)


def _dotted(config: Any, key: str) -> Any:
    for part in key.split("."):
        config = getattr(config, part)
    return config


def select_protocol(suite: Suite, index: Index, name: str | None, *, needs_training: bool = True) -> Protocol:
    """The protocol ``name`` (default: the suite's), checked against the data by :func:`protocol_problems`."""
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
    if not needs_training:
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
        device = dist.local_device(req.device or default_device())
        dist.init(device)  # under torchrun: join the process group (a no-op in a single process)
        if not dist.is_main():
            self.phases = Phases(self.phases.console, enabled=False)

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
        index = self._index(suite, req) if dist.is_main() else None  # rank 0 indexes; the others load it
        directory = dist.broadcast(index.directory if index is not None else None)
        if index is None:
            index = load_index(directory)
        timings["index"] = time.perf_counter() - t
        usable = index.usable
        self.phases.log(
            f"{suite.name}: {len(usable)} usable of {len(index.rows)} images under {index.root}; generators: "
            + ", ".join(f"{g} ({n})" for g, n in usable.groupby("generator").size().items())
        )
        ignored = suite.ignored
        if ignored:
            self.phases.log(f"[yellow]{len(ignored)} folders are not part of the {suite.name} layout and were "
                            f"skipped:[/] {', '.join(ignored[:10])}{' ...' if len(ignored) > 10 else ''}")
        protocol = select_protocol(suite, index, req.protocol, needs_training=detector.needs_training())
        train, heldout, evaluation = split_rows(index, protocol, req.seed)
        evaluation, eval_sample = suite.sample_eval(evaluation)
        missing_eval = sorted(set(protocol.eval_generators or ()) - set(evaluation["generator"]))
        if missing_eval:
            self.phases.log(
                f"[yellow]warning:[/] protocol {protocol.name} evaluates {', '.join(missing_eval)} but no "
                f"{protocol.eval_split} images were found for them under {index.root}: the mean covers the others only."
            )
        ctx.suite_root = index.root

        fit_key = {
            "detector": {"name": detector.name, "version": detector.version, "config": to_dict(config)},
            "detector_identity": detector.identity(),
            "suite": suite.identity(),
            "index_hash": index.manifest["index_hash"],
            "protocol": protocol.to_dict(),
            "seed": req.seed,
            "detbench_version": __version__,
        }
        fit_id = content_hash(fit_key)
        run_key = {
            "fit_id": fit_id,
            "perturbation": resolved.perturbation.identity() if resolved.perturbation else None,
            "threshold": resolved.threshold.label,
            "n_boot": req.n_boot,
        }
        run_id = content_hash(run_key)
        base = home_subdir("runs") / suite.name / detector.name
        run_dir = base / run_id[:16]
        fit_dir = base / "fits" / fit_id[:16]
        self.run_dir = run_dir
        ctx.run_dir = fit_dir

        if req.force and dist.is_main():
            _set_aside(run_dir, base, self.phases)
            if not req.keep_fit:
                _set_aside(fit_dir, base, self.phases)
        if dist.broadcast((run_dir / "run.json").exists()):
            record = read_json(run_dir / "run.json")
            self.phases.log(f"[green]Reusing finished run {run_id[:16]}[/] ({run_dir}); pass --force to recompute.")
            return RunResult(run_dir, record, pd.read_parquet(run_dir / "metrics.parquet"), reused=True)

        run_dir.mkdir(parents=True, exist_ok=True)
        run_lock = exclusive_lock(run_dir / "run.lock", f"run {run_id[:16]}") if dist.is_main() else None
        with run_lock or contextlib.nullcontext():
            for directory in (run_dir, run_dir / "scores"):  # temp files of a killed earlier attempt
                if directory.is_dir():
                    sweep_stale_tmp(directory)
            self.phase = "training"
            t = time.perf_counter()
            fit_info = self._fit_or_load(detector, train, heldout, ctx, fit_dir, fit_key)
            timings["fit"] = time.perf_counter() - t

            self.phase = "scoring"
            t = time.perf_counter()
            scores = self._score(detector, evaluation, ctx, run_dir)
            held_scores = self._score(detector, heldout, ctx, run_dir, prefix="heldout", clean=True)
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
            metrics = per_group_metrics(
                scored, group="generator", threshold=threshold, n_boot=req.n_boot, seed=req.seed
            )
            timings["metrics"] = time.perf_counter() - t

            write_parquet_atomic(run_dir / "scores.parquet", scores)
            write_parquet_atomic(run_dir / "heldout_scores.parquet", held_scores)
            write_parquet_atomic(run_dir / "metrics.parquet", metrics)
            shutil.rmtree(run_dir / "scores", ignore_errors=True)
            timings["total"] = time.perf_counter() - started
            record = {
                "run_id": run_id,
                "fit_id": fit_id,
                "status": "complete",
                "detector": detector.name,
                "suite": suite.name,
                "protocol": protocol.name,
                "backbone": getattr(config, "backbone", None),
                "config_hash": content_hash(to_dict(config))[:12],
                "settings": resolved.settings,
                "perturbation": run_key["perturbation"],
                "preset": req.preset,
                "missing_eval_generators": missing_eval,
                "eval_sample": eval_sample,
                "key": {**fit_key, "perturbation": run_key["perturbation"]},
                "threshold": {
                    "policy": resolved.threshold.policy,
                    "label": resolved.threshold.label,
                    "value": float(threshold),
                    "calibrated_on_heldout": calibrated,
                    "calibration_objective": "balanced_acc",
                },
                "bootstrap": {"n_boot": req.n_boot, "ci": 0.95, "seed": req.seed, "metrics": ["acc", "ap"]},
                "fit": fit_info,
                "counts": _counts(train, heldout, scores, index.rows, protocol),
                "summary": _summary(metrics),
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "timings_s": {k: round(v, 3) for k, v in timings.items()},
                "paths": {
                    "suite_root": str(index.root),
                    "index": str(index.directory),
                    "run": str(run_dir),
                    "fit": str(fit_dir),
                },
                "outputs": {
                    name: sha256_of_file(run_dir / name)
                    for name in ("scores.parquet", "heldout_scores.parquet", "metrics.parquet")
                },
                "environment": environment(device),
                "source": git_state(),
            }
            write_json_atomic(run_dir / "run.json", record)
        (run_dir / "run.lock").unlink(missing_ok=True)
        dist.broadcast((record, metrics))
        self.phase = "done"
        return RunResult(run_dir, record, metrics, reused=False)

    def _index(self, suite: Suite, req: RunRequest) -> Index:
        self.phase = "locating the suite"
        root = Path(req.root).expanduser() if req.root else suite.default_root(self.phases)
        if root is None:
            raise ConfigError(
                f"suite {suite.name!r} needs its data: pass --root PATH (see README, section {suite.name})"
            )
        self.phase = "indexing"
        with self.phases.phase(f"index {suite.name}", None) as tracker:
            return build_index(suite, root, mode=req.index_mode, progress=tracker.update)

    def _fit_or_load(
        self,
        detector: Detector,
        train: pd.DataFrame,
        heldout: pd.DataFrame,
        ctx: RunContext,
        fit_dir: Path,
        fit_key: dict[str, Any],
    ) -> dict[str, Any]:
        """Under torchrun every rank takes part in ``fit`` (sharded features, DDP); rank 0 holds the lock and
        saves the state, which the other ranks then load, so every rank scores with rank 0's model."""
        state_dir = fit_dir / "state"
        if dist.broadcast((fit_dir / "fit.json").exists()):
            detector.load(state_dir)
            return {**read_json(fit_dir / "fit.json")["info"], "reused": True}
        fit_dir.mkdir(parents=True, exist_ok=True)
        lock_log = self.phases.log if self.phases.enabled else None
        fit_lock = (
            exclusive_lock(fit_dir / "fit.lock", f"training {fit_dir.name}", wait=True, on_wait=lock_log)
            if dist.is_main()
            else None
        )
        with fit_lock or contextlib.nullcontext():
            if dist.broadcast((fit_dir / "fit.json").exists()):  # another run (e.g. another perturbation) trained it
                detector.load(state_dir)
                return {**read_json(fit_dir / "fit.json")["info"], "reused": True}
            sweep_stale_tmp(fit_dir)
            info = detector.fit(train, heldout, ctx)
            if dist.is_main():
                tmp = fit_dir / "state.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                detector.save(tmp)
                shutil.rmtree(state_dir, ignore_errors=True)
                tmp.rename(state_dir)
                files = {p.name: sha256_of_file(p) for p in sorted(state_dir.iterdir()) if p.is_file()}
                write_json_atomic(fit_dir / "fit.json", {"key": fit_key, "info": info, "state_sha256": files})
        dist.barrier()
        if not dist.is_main():
            detector.load(state_dir)
        return {**info, "reused": False}

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
            write_parquet_atomic(path, out[SCORE_COLUMNS])
            parts.append(out[SCORE_COLUMNS])
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SCORE_COLUMNS)


def _set_aside(path: Path, base: Path, phases: Phases) -> None:
    """Move an existing run or fit out of the way (never delete results silently)."""
    if not path.exists():
        return
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = base / "replaced" / f"{path.name}-{stamp}"
    target.parent.mkdir(parents=True, exist_ok=True)
    path.rename(target)
    phases.log(f"[yellow]--force: moved the previous {path.parent.name == 'fits' and 'fit' or 'run'} to {target}[/]")


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
    for row in ("mean", "worst"):
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
