"""What a run measured and the one writer of its record (``run.json``).

:func:`measure` turns the scores into the threshold and per-generator metrics; :func:`build_record` assembles the
record: the resolved key and the run key (whose sha256 is the run id), counts used and skipped (with reasons) and
of evaluation images that copy training images, the threshold, timings, output hashes, environment and source
state. Recorded but not keyed: everything here except ``key`` and ``run_key``. The runner seals it with the sha256 of
its own content (:func:`detbench.store.seal_record`), so a hand edit shows as a damaged run.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from detbench import distributed as dist
from detbench.config import to_dict
from detbench.data.images import reason_counts
from detbench.data.suites import Protocol
from detbench.engine.layout import ID_CHARS, RUN_OUTPUTS, RUN_RECORD
from detbench.engine.protocol_checks import training_generators_record
from detbench.errors import DamagedRunError, DataError, ProtocolError
from detbench.metrics import SUMMARY_ROWS
from detbench.store import RECORD_HASH, content_hash, record_digest, sha256_of_file

if TYPE_CHECKING:
    from detbench.engine.plan import RunPlan, TrainingSource
    from detbench.progress import Phases


@dataclass
class Measurement:
    """The decision threshold and the per-generator metrics of a run's scores."""

    threshold: float
    calibrated: float  # the threshold calibrated on the held-out rows (NaN when they lack a class)
    metrics: pd.DataFrame
    unscored: list[str]  # generators with evaluation rows but no scored image


def measure(plan: RunPlan, scores: pd.DataFrame, held_scores: pd.DataFrame, phases: Phases) -> Measurement:
    """The threshold (fixed, or calibrated on the held-out scores) and per-generator metrics with intervals.

    Args:
        plan: the run's plan (threshold policy, bootstrap count, seed).
        scores: evaluation scores (NaN where an image could not be scored).
        held_scores: clean scores of the training generator's held-out rows.
        phases: where warnings about unscored generators go.

    Returns:
        The measurement.

    Raises:
        ProtocolError: a calibrated threshold without both classes held out.
        DataError: no evaluation image could be scored.
    """
    from detbench.metrics import best_threshold, per_group_metrics

    policy = plan.resolved.threshold
    held_ok = held_scores[np.isfinite(held_scores["score"])]
    calibrated = (
        best_threshold(held_ok["label"].to_numpy(), held_ok["score"].to_numpy(), "balanced_acc")[0]
        if held_ok["label"].nunique() == 2
        else float("nan")
    )
    threshold = calibrated if policy.policy == "calibrated" else policy.value
    if not np.isfinite(threshold):
        unscored = held_scores.loc[~np.isfinite(held_scores["score"]), "status"] if "status" in held_scores else []
        why = ", ".join(f"{n} {kind}" for kind, n in reason_counts(unscored).items())
        raise ProtocolError(
            "--threshold calibrated needs scored real and fake images in the training generator's held-out "
            f"split; it has {len(held_ok)} scored images with labels {sorted(held_ok['label'].unique())}"
            + (f" ({len(unscored)} not scored: {why})" if len(unscored) else "")
        )
    scored = scores[np.isfinite(scores["score"])]
    unscored = _unscored_generators(scores, scored)
    if len(scored) == 0:
        raise DataError(_nothing_scored(scores))
    for generator, why in unscored.items():
        phases.warn(f"generator {generator}: {why}; its metrics are n/a, and so are the mean and worst")
    for generator, why in _one_class_generators(scores, scored).items():
        phases.warn(f"generator {generator}: {why}; its acc and balanced acc are n/a (an accuracy over one class), "
                    "and so are the mean and worst acc")
    req = plan.request
    metrics = per_group_metrics(scored, group="generator", threshold=threshold, n_boot=req.n_boot, seed=req.seed,
                                groups=scores["generator"].unique())
    return Measurement(float(threshold), calibrated, metrics, list(unscored))


def _tiles_record(plan: RunPlan) -> dict[str, Any] | None:
    """What ``eval.tiles`` / ``eval.fuse`` did: the policy, the fusion, who chose them, the tile side per generator."""
    tiling = plan.resolved.tiling
    if tiling is None:
        return None
    return {"tiles": tiling.spec, "fuse": tiling.fuse, "chosen_by": plan.resolved.tiling_chosen_by,
            "sides": plan.tile_sides}


def build_record(
    plan: RunPlan,
    measured: Measurement,
    scores: pd.DataFrame,
    fit_info: dict[str, Any],
    timings: dict[str, float],
    out_dir: Path,
    cost: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run record (``run.json``) of a finished run whose outputs are in ``out_dir``.

    Args:
        plan: the executed plan.
        measured: its measurement.
        scores: its evaluation scores.
        fit_info: the facts the detector's fit returned (or the reused fit's).
        timings: seconds per phase.
        out_dir: where scores.parquet, heldout_scores.parquet and metrics.parquet were written (hashed here).
        cost: the run's cost (:func:`detbench.engine.cost.measure_cost`; not keyed: it depends on the machine).

    Returns:
        The record, JSON-ready.
    """
    from detbench.engine.plan import identity_config

    resolved, req = plan.resolved, plan.request
    config = resolved.config
    threshold = resolved.threshold
    return {
        "run_id": plan.run_id,
        "fit_id": plan.fit_id,
        "status": "complete",
        "detector": plan.detector.name,
        "label": plan.detector.label(),
        "external": plan.detector.external,
        "bias_probe": plan.bias_probe,  # scored by cross-validation on the evaluation rows, not a trained model
        "floor": plan.detector.floor,
        "suite": plan.suite.name,
        "protocol": plan.protocol.name,
        "backbone": getattr(config, "backbone", None),
        "config_hash": content_hash(identity_config(plan.detector, config))[:12],
        "settings": resolved.settings,
        "config": to_dict(config),  # as run, file paths included (the key names files by their sha256 only)
        "perturbation": plan.run_key["perturbation"],
        "preset": req.preset,
        "missing_eval_generators": sorted(plan.missing_eval + measured.unscored),
        "eval_sample": plan.eval_sample,
        "data": {"index_hash": plan.index.manifest["index_hash"]},  # what was evaluated (tables show it short)
        "training": _training_record(plan.source),
        "training_generators": training_generators_record(
            plan.train_protocol, plan.train, plan.heldout, plan.train_index.rows
        ),
        "protocol_facts": plan.protocol.facts,
        "holdout": plan.holdout,
        "eval_profiles": {g: p.name for g, p in sorted(plan.ctx.eval_profiles.items())},
        "tiles": _tiles_record(plan),
        "key": {**plan.fit_key, **{k: plan.run_key[k] for k in ("perturbation", "scores") if k in plan.run_key}},
        "run_key": plan.run_key,  # the run id is its sha256 (checked whenever the run is read)
        "threshold": {
            "policy": threshold.policy,
            "label": threshold.label,
            "value": measured.threshold,
            "calibrated_on_heldout": measured.calibrated,
            "calibration_objective": "balanced_acc",
        },
        "bootstrap": {"n_boot": req.n_boot, "ci": 0.95, "seed": req.seed, "metrics": ["acc", "ap"]},
        "fit": fit_info,
        "counts": {
            **_counts(plan.train, plan.heldout, scores, plan.train_index.rows, plan.train_protocol),
            "copies_of_training": plan.training_copies,
            "near_duplicates_of_training": plan.near_duplicates,
        },
        "summary": _summary(measured.metrics),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "cost": cost,
        "paths": {
            "suite_root": str(plan.index.root),
            "train_root": str(plan.train_index.root),
            "index": str(plan.index.directory),
            "run": str(plan.run_dir),
            "fit": str(plan.fit_dir) if plan.trains else None,
        },
        "outputs": {name: sha256_of_file(out_dir / name) for name in RUN_OUTPUTS},
        "environment": environment(plan.device),
        "source": git_state(),
    }


def _nothing_scored(scores: pd.DataFrame, shown: int = 10) -> str:
    """The error of a run that scored no evaluation image: per generator, how many images and why (counts per
    reason), with one full reason as an example.
    """
    if scores.empty:
        return "no evaluation image could be scored: the protocol's evaluation has no image"
    statuses = scores["status"].astype(str) if "status" in scores else pd.Series(["unknown"] * len(scores))
    parts = []
    for generator, group in statuses.groupby(scores["generator"].astype(str), sort=True):
        parts.append(f"{generator} ({len(group)}: {', '.join(f'{n} {k}' for k, n in reason_counts(group).items())})")
    more = f" and {len(parts) - shown} more" if len(parts) > shown else ""
    example = next((s for s in statuses if ":" in s), "")
    return (
        f"no evaluation image could be scored: {len(scores)} images of {len(parts)} "
        f"generator{'s' if len(parts) != 1 else ''}, {', '.join(parts[:shown])}{more}"
        + (f"; e.g. {example}" if example else "")
    )


def _unscored_generators(scores: pd.DataFrame, scored: pd.DataFrame) -> dict[str, str]:
    """Generators with evaluation rows but no scored image, with why (the skip reasons)."""
    out = {}
    for generator, group in scores.groupby("generator"):
        if generator not in set(scored["generator"]):
            reasons = ", ".join(f"{n} {k}" for k, n in reason_counts(group["status"]).items())
            out[str(generator)] = f"none of its {len(group)} evaluation images could be scored ({reasons})"
    return out


def _one_class_generators(scores: pd.DataFrame, scored: pd.DataFrame) -> dict[str, str]:
    """Generators with scored images of one class only, with why (none evaluated, or none of them scored)."""
    out = {}
    for generator, used in scored.groupby("generator"):
        rows = scores[scores["generator"] == generator]
        for label, name in ((0, "real"), (1, "fake")):
            if (used["label"] == label).any():
                continue
            wanted = rows[rows["label"] == label]
            if wanted.empty:
                out[str(generator)] = f"it has no {name} evaluation image"
            else:
                reasons = ", ".join(f"{n} {k}" for k, n in reason_counts(wanted["status"]).items())
                out[str(generator)] = f"no {name} image could be scored (of {len(wanted)}: {reasons})"
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
        "train": {"used": int(len(train)), "skipped": int(len(train_bad)), "skipped_reasons": reason_counts(train_bad)},
        "heldout": int(len(heldout)),
        "eval": per_gen,
        "eval_skipped": int(len(skipped)),
        "skipped_reasons": reason_counts(skipped["status"]),
    }




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
    """Where the run ran, for its record.

    Args:
        device: the torch device the run used (``cpu``, ``cuda``, ``cuda:1`` ...).

    Returns:
        ``python``, ``platform``, ``torch``, ``cuda`` (the CUDA version torch was built with; None for a CPU
        build), ``device`` and ``world_size``; on a CUDA device also ``gpu`` (its name) and ``gpu_count``.
    """
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
    """The git state of the detbench source that ran, for the run record.

    Returns:
        ``commit`` (the HEAD hash) and ``dirty`` (whether tracked files differ from it). Outside a git checkout (an
        installed package), or where git is missing or too slow, both are None and ``python_executable`` says
        which installation ran.
    """
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


RUN_RECORD_FIELDS = {"run_id": str, "fit_id": str, "detector": str, "suite": str, "protocol": str,
                     "outputs": dict, "threshold": dict, "key": dict, "run_key": dict, "counts": dict,
                     "record_sha256": str}


RUN_RECORD_OPTIONAL = {"perturbation": dict, "settings": dict, "preset": dict, "summary": dict, "created": str,
                       "backbone": str, "fit": dict, "bootstrap": dict, "label": str,
                       "external": bool, "data": dict, "training": dict, "training_generators": dict,
                       "protocol_facts": dict, "cost": dict, "tiles": dict}  # None is allowed too


def load_run_record(run_dir: str | Path, verify: tuple[str, ...] = RUN_OUTPUTS) -> dict[str, Any]:
    """The ``run.json`` of a finished run, checked: a JSON object with the fields readers use, status complete,
    unedited (the sha256 it holds of itself matches), its run id the sha256 of its run key and its folder named
    by it, and the outputs named in ``verify`` matching the sha256 it recorded.

    Args:
        run_dir: the run's folder.
        verify: output file names (in ``run_dir``) whose sha256 is checked against the record's ``outputs``.

    Returns:
        The record.

    Raises:
        DamagedRunError: saying what is wrong.
        FileNotFoundError: there is no ``run.json`` (the run is unfinished, or was moved away).
    """
    run_dir = Path(run_dir)
    path = run_dir / RUN_RECORD
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise DamagedRunError(f"run {run_dir.name} is damaged: {path} is unreadable ({exc})") from None
    if not isinstance(record, dict):
        raise DamagedRunError(f"run {run_dir.name} is damaged: {path} is not a JSON object")
    wrong = [f for f, kind in RUN_RECORD_FIELDS.items() if not isinstance(record.get(f), kind)]
    wrong += [f for f, kind in RUN_RECORD_OPTIONAL.items() if record.get(f) is not None
              and not isinstance(record[f], kind)]
    if wrong and set(wrong) <= {"run_key", RECORD_HASH} and RECORD_HASH not in record:
        raise DamagedRunError(f"run {run_dir.name} is damaged: {path} was written by an older detbench, without the "
                              "sha256 of its content and its run key, so it cannot be checked")
    if wrong or record.get("status") != "complete":
        what = f"lacks or mistypes {', '.join(wrong)}" if wrong else f"has status {record.get('status')!r}"
        raise DamagedRunError(f"run {run_dir.name} is damaged: {path} {what}")
    problem = _identity_problem(run_dir, record)
    if problem:
        raise DamagedRunError(f"run {run_dir.name} is damaged: {path} {problem}")
    for name in verify:
        expected = record["outputs"].get(name)
        try:
            actual = sha256_of_file(run_dir / name)
        except OSError as exc:
            raise DamagedRunError(f"run {run_dir.name} is damaged: {name} is unreadable ({exc})") from None
        if actual != expected:
            raise DamagedRunError(f"run {run_dir.name} is damaged: {name} differs from the sha256 its run.json "
                                  "recorded (truncated or edited)")
    return record


def _identity_problem(run_dir: Path, record: dict[str, Any]) -> str | None:
    """What contradicts a run record's own hashes (None: nothing): an edit by hand, a copied or renamed folder."""
    if record_digest(record) != record[RECORD_HASH]:
        return "was edited after the run wrote it (its content differs from the sha256 it recorded of itself)"
    if content_hash(record["run_key"]) != record["run_id"]:
        return "holds a run id that is not the sha256 of its run key"
    if record["run_key"].get("fit_id") != record["fit_id"]:
        return "holds a fit id that differs from its run key's"
    if run_dir.name != record["run_id"][:ID_CHARS]:
        return f"names run {record['run_id'][:ID_CHARS]}, not the folder it is in"
    return None


def record_seed(record: dict[str, Any]) -> int | None:
    """The seed a run was made with (its fit key's; None for a record without one).

    Args:
        record: the run record.

    Returns:
        The seed.
    """
    return (record.get("key") or {}).get("seed")


def detector_label(record: dict[str, Any]) -> str:
    """How tables name a run's detector.

    Args:
        record: the run record.

    Returns:
        Its ``label`` (``external:NAME`` for imported scores), else its detector name; ``(bias probe)`` follows the
        label of a run that cross-validated on its evaluation rows.
    """
    label = str(record.get("label") or record["detector"])
    return f"{label} {BIAS_PROBE}" if record.get("bias_probe") else label


BIAS_PROBE = "(bias probe)"


def evaluated_generators(record: dict[str, Any]) -> list[str]:
    """The generators a run had evaluation images of (scored or not).

    Args:
        record: the run record.

    Returns:
        Their names, from the record's evaluation counts.
    """
    return [str(g) for g in ((record.get("counts") or {}).get("eval") or {})]
