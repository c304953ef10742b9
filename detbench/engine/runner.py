"""Execute a run plan: fit (or reuse the fit), score in resumable chunks, measure, record.

:func:`detbench.engine.plan.plan_run` decides everything first (options, root, detector and weights, index, protocol,
rows, identities); the :class:`Runner` then trains or loads the fit, scores the evaluation and held-out rows in
chunks written atomically (a killed run resumes from them), measures (:mod:`detbench.engine.record`) and its cost
(:mod:`detbench.engine.cost`) and writes the outputs and, last, ``run.json``. Finished runs are immutable: the same
run id is reused unless ``force``, which computes beside the finished run and replaces it only once everything
succeeded. Where runs and fits live: :mod:`detbench.engine.layout`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detbench import distributed as dist
from detbench.data.images import NO_SCORE
from detbench.data.tiles import Tiling
from detbench.engine.cost import measure_cost
from detbench.engine.finished_run import Run
from detbench.engine.layout import FIT_FILES, FIT_RECORD, REPLACED, REPLACEMENT, RUN_FILES, RUN_RECORD
from detbench.engine.plan import RunPlan, plan_run
from detbench.engine.record import build_record, load_run_record, measure
from detbench.engine.resolve import RunRequest
from detbench.errors import DamagedRunError
from detbench.kit.cost import peak_memory, reset_peak_memory
from detbench.kit.detector import Detector, RunContext
from detbench.kit.tiling import predict_tiled
from detbench.progress import Phases
from detbench.store import (
    content_hash,
    exclusive_lock,
    read_json,
    seal_record,
    sha256_of_file,
    sweep_stale_tmp,
    write_json_atomic,
    write_parquet_atomic,
)

SCORE_CHUNK_ROWS = 8192
SCORE_SHARD_ALIGN = 64  # the built-in detectors' default scoring batch (see distributed.shard_slice)
SCORE_COLUMNS = ["image_id", "path", "generator", "split", "label", "score", "status"]
PERTURBATION_COLUMN = "perturbation"  # what was applied to each image, where that differs between images
N_TILES_COLUMN = "n_tiles"  # with eval.tiles: how many tiles of each image were scored




class Runner:
    """Carries out a :class:`RunRequest`; ``phase`` says where it is (for interrupt messages)."""

    def __init__(self, phases: Phases | None = None) -> None:
        self.phases = phases or Phases()
        self.phase = "starting"
        self.run_dir: Path | None = None

    def run(self, req: RunRequest) -> Run:
        """Plan ``req``, then execute the plan (or reuse the finished run with its id).

        Under torchrun every rank calls this; rank 0 writes the outputs and every rank gets the same result.

        Args:
            req: the run request.

        Returns:
            The finished run; ``reused`` when an intact run with the same id existed (and ``req.force`` was off).

        Raises:
            DetbenchError: bad options, a missing root or weights, a protocol the data cannot run (planning);
                LockedError when another process is computing the same run; TrainingError when training
                diverges.
        """
        started = time.perf_counter()
        plan = plan_run(req, self.phases, self._set_phase)
        if not dist.is_main():
            self.phases = plan.ctx.phases
        run_dir, run_id, base = plan.run_dir, plan.run_id, plan.base
        self.run_dir = run_dir
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
            result = self._execute(plan, started)
        (run_dir / "run.lock").unlink(missing_ok=True)
        if result is None:  # under torchrun, a rank other than 0: rank 0 measured and recorded
            record, metrics = dist.broadcast(None)
            return Run(run_dir, record, metrics, reused=False)
        dist.broadcast((result.record, result.metrics))
        self.phase = "done"
        return result

    def _set_phase(self, what: str) -> None:
        self.phase = what

    def _execute(self, plan: RunPlan, started: float) -> Run | None:
        """Fit or load, score, measure, write the outputs and the record (under the run lock). None on ranks > 0."""
        req, timings = plan.request, dict(plan.timings)
        # --force computes beside the finished run and replaces it only once everything succeeded
        out_dir = plan.run_dir / REPLACEMENT if req.force else plan.run_dir
        if dist.is_main():
            if req.force:
                shutil.rmtree(out_dir, ignore_errors=True)
            out_dir.mkdir(parents=True, exist_ok=True)
            for directory in (out_dir, out_dir / "scores"):  # temp files of a killed earlier attempt
                if directory.is_dir():
                    sweep_stale_tmp(directory)
        reset_peak_memory(plan.ctx.device)
        self.phase = "training"
        t = time.perf_counter()
        retrain = req.force and not req.keep_fit and plan.trains
        if plan.trains:
            fit_info = self._fit_or_load(plan.detector, plan.train, plan.heldout, plan.train_ctx, plan.fit_dir,
                                         plan.fit_key, retrain=retrain)
        else:  # nothing to learn: the detector states what it uses (released weights, none); no fit folder
            fit_info = {**plan.detector.fit(plan.train, plan.heldout, plan.train_ctx), "reused": False,
                        "stored": False}
        timings["fit"] = time.perf_counter() - t

        self.phase = "scoring"
        t = time.perf_counter()
        tiling = plan.resolved.tiling
        scores, fresh = self._score(plan.detector, plan.evaluation, plan.ctx, out_dir, tiling=tiling)
        scoring_s = time.perf_counter() - t
        peak = peak_memory(plan.ctx.device)
        held_scores, _ = self._score(plan.detector, plan.heldout, plan.train_ctx, out_dir, prefix="heldout",
                                     clean=True, tiling=tiling)
        timings["predict"] = time.perf_counter() - t
        if not dist.is_main():
            return None

        self.phase = "measuring cost"
        cost = measure_cost(plan.detector, plan.ctx, scores, fresh, scoring_s, peak, tiling)

        self.phase = "computing metrics"
        t = time.perf_counter()
        measured = measure(plan, scores, held_scores, self.phases)
        timings["metrics"] = time.perf_counter() - t
        write_parquet_atomic(out_dir / "scores.parquet", scores)
        write_parquet_atomic(out_dir / "heldout_scores.parquet", held_scores)
        write_parquet_atomic(out_dir / "metrics.parquet", measured.metrics)
        shutil.rmtree(out_dir / "scores", ignore_errors=True)
        timings["total"] = time.perf_counter() - started
        record = seal_record(build_record(plan, measured, scores, fit_info, timings, out_dir, cost))
        write_json_atomic(out_dir / RUN_RECORD, record)
        if req.force:
            if retrain:
                self._install(plan.fit_dir / REPLACEMENT, plan.fit_dir, FIT_FILES, plan.fit_base, "fit", lock=True)
            self._install(out_dir, plan.run_dir, RUN_FILES, plan.base, "run")
        return Run(plan.run_dir, record, measured.metrics, reused=False)

    def _reuse(self, run_dir: Path, run_id: str, base: Path, *, locked: bool) -> Run | None:
        """The finished run in ``run_dir`` if it is intact (its outputs match the hashes it recorded). A damaged one
        is reported and, when the caller holds the run lock, moved aside to be recomputed.
        """
        found = None
        if dist.is_main() and (run_dir / RUN_RECORD).exists():
            try:
                record = load_run_record(run_dir)
                found = (record, Run(run_dir, record).metrics)  # with the columns added since it was recorded
            except DamagedRunError as exc:
                if locked:
                    kept = _move_aside(run_dir, RUN_FILES, base, "run")
                    self.phases.warn(f"{exc}; recomputing it (the damaged files are kept in {kept})")
        found = dist.broadcast(found)
        if found is None:
            return None
        self.phases.log(f"[green]Reusing finished run {run_id[:16]}[/] ({run_dir}); pass --force to recompute.")
        return Run(run_dir, found[0], found[1], reused=True)

    def _install(self, staged: Path, target: Path, names: tuple[str, ...], base: Path, what: str,
                 lock: bool = False) -> None:
        """Replace ``target``'s ``names`` by those computed in ``staged`` (the previous ones move to ``replaced/``),
        the record file last; with ``lock``, under ``target``'s lock (a fit is shared by runs).
        """
        held = exclusive_lock(target / f"{what}.lock", f"{what} {target.name}", wait=True) if lock else None
        with held or contextlib.nullcontext():
            if any((target / name).exists() for name in names):
                kept = _move_aside(target, names, base, what)
                self.phases.log(f"[yellow]--force: moved the previous {what} to {kept}[/]")
            shutil.rmtree(target / "scores", ignore_errors=True)  # parts of an unfinished earlier attempt
            for name in reversed(names):
                os.replace(staged / name, target / name)
            shutil.rmtree(staged, ignore_errors=True)

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
        state, which the other ranks then load, so every rank scores with rank 0's model.
        """
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
            info = detector.fit(train, heldout, dataclasses.replace(ctx, run_dir=target))
            if dist.is_main():
                state_dir = target / "state"
                tmp = target / "state.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
                detector.save(tmp)
                shutil.rmtree(state_dir, ignore_errors=True)
                tmp.rename(state_dir)
                files = {p.name: sha256_of_file(p) for p in sorted(state_dir.iterdir()) if p.is_file()}
                write_json_atomic(target / FIT_RECORD, {"key": fit_key, "info": info, "state_sha256": files})
        dist.barrier()
        if not dist.is_main():
            detector.load(target / "state")
        return {**info, "reused": False}

    def _fit_intact(self, fit_dir: Path, *, locked: bool) -> bool:
        """Whether ``fit_dir`` holds a finished fit whose state files match the hashes fit.json recorded. A damaged
        one is reported and, when the caller holds the fit lock, moved aside to be retrained.
        """
        if not (fit_dir / FIT_RECORD).exists():
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
        tiling: Tiling | None = None,
    ) -> tuple[pd.DataFrame, int]:
        """Score ``rows`` in chunks written atomically to ``run_dir/scores``; finished chunks are reused. With
        ``tiling`` each image is scored from its tiles (:func:`detbench.kit.tiling.predict_tiled`), the scores say how
        many.

        Returns:
            The scores, and how many images were scored here (not read back from finished chunks).
        """
        if clean:
            ctx = dataclasses.replace(ctx, perturbation=None, stage=prefix)
        chunk_dir = run_dir / "scores"
        chunk_dir.mkdir(parents=True, exist_ok=True)
        parts, fresh = [], 0
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
            scores, failures, n_tiles = np.empty(0), {}, np.zeros(0, dtype=np.int64)
            if len(mine):
                with dist.local():
                    scores, failures, n_tiles = _predict(detector, chunk.iloc[mine], ctx, tiling)
            gathered = dist.gather((mine, scores, failures, n_tiles))
            if gathered is None:  # rank 0 assembles and writes the chunk
                continue
            out = chunk[["image_id", "path", "generator", "split", "label"]].copy()
            out["score"] = np.nan
            out["status"] = chunk["status"].where(chunk["status"] != "ok", "ok").astype(str)
            out[N_TILES_COLUMN] = np.zeros(len(out), dtype=np.int64)
            for pos, part_scores, part_failures, part_tiles in gathered:
                out.iloc[pos, out.columns.get_loc("score")] = part_scores
                out.iloc[pos, out.columns.get_loc(N_TILES_COLUMN)] = part_tiles
                for local, reason in part_failures.items():
                    out.iloc[pos[local], out.columns.get_loc("status")] = reason
            no_score = (out["status"] == "ok").to_numpy() & ~np.isfinite(out["score"].to_numpy(dtype=float))
            out.loc[no_score, "status"] = f"{NO_SCORE}: the detector returned NaN or infinity"
            columns = SCORE_COLUMNS
            if ctx.perturbation is not None and ctx.perturbation.per_image:
                out[PERTURBATION_COLUMN] = [ctx.perturbation.applied_spec(str(i), int(label)) for i, label
                                            in zip(chunk["image_id"], chunk["label"], strict=True)]
                columns = [*SCORE_COLUMNS, PERTURBATION_COLUMN]
            if tiling is not None:
                columns = [*columns, N_TILES_COLUMN]
            write_parquet_atomic(path, out[columns])
            parts.append(out[columns])
            fresh += int(np.isfinite(out["score"].to_numpy(dtype=float)).sum())
        return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SCORE_COLUMNS)), fresh


def _predict(detector: Detector, rows: pd.DataFrame, ctx: RunContext,
             tiling: Tiling | None = None) -> tuple[np.ndarray, dict[int, str], np.ndarray]:
    """The detector's scores and failures for ``rows``, and how many tiles of each image were scored (1 without
    ``tiling``); under a class-targeted perturbation the target label's rows are scored under its inner perturbation
    and the others clean (so each part's cached features are shared with the runs of that perturbation and of the
    clean images).
    """
    target = ctx.perturbation.target_label if ctx.perturbation is not None else None
    if target is None:
        return _predict_part(detector, rows, ctx, tiling)
    scores = np.full(len(rows), np.nan)
    n_tiles = np.zeros(len(rows), dtype=np.int64)
    failures: dict[int, str] = {}
    hit = rows["label"].to_numpy() == target
    for mask, perturbation in ((hit, ctx.perturbation.inner), (~hit, None)):
        pos = np.flatnonzero(mask)
        if len(pos):
            part, part_failures, part_tiles = _predict_part(
                detector, rows.iloc[pos], dataclasses.replace(ctx, perturbation=perturbation), tiling)
            scores[pos], n_tiles[pos] = part, part_tiles
            failures.update({int(pos[k]): reason for k, reason in part_failures.items()})
    return scores, failures, n_tiles


def _predict_part(detector: Detector, rows: pd.DataFrame, ctx: RunContext,
                  tiling: Tiling | None) -> tuple[np.ndarray, dict[int, str], np.ndarray]:
    if tiling is not None:
        return predict_tiled(detector, rows, ctx, tiling)
    scores, failures = detector.predict(rows, ctx)
    return scores, failures, np.ones(len(rows), dtype=np.int64)


def _move_aside(directory: Path, names: tuple[str, ...], base: Path, what: str) -> Path:
    """Move ``names`` (those that exist, in order) from ``directory`` to a new ``base/replaced/`` folder, which is
    returned: results are never deleted silently.
    """
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    prefix = "fit-" if what == "fit" else ""
    target = base / REPLACED / f"{prefix}{directory.name}-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = base / REPLACED / f"{prefix}{directory.name}-{stamp}-{n}"
    target.mkdir(parents=True)
    for name in names:
        if (directory / name).exists():
            os.replace(directory / name, target / name)
    return target


def _fit_problem(fit_dir: Path) -> str | None:
    """What is wrong with a finished fit's files, or None when fit.json and the state files it hashed are intact."""
    try:
        meta = read_json(fit_dir / FIT_RECORD)
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
    return {**read_json(fit_dir / FIT_RECORD)["info"], "reused": True}
