"""``detbench bench --vs-originals``: detbench's scoring against the original repositories' own evaluation loops.

For each detector with a re-derived original loop (:mod:`detbench.perf.originals`), both sides score the same
generated test set (mixed sizes, PNG and JPEG; :func:`~detbench.perf.inputs.write_test_set`) with the same seeded
random weights saved in the original's checkpoint format. Each side runs as a process of its own, the sides
alternating, ``repeats`` times: detbench as ``python -m detbench run DETECTOR --suite folder --protocol eval`` in a
fresh ``$DETBENCH_HOME`` (no cache to reuse), loading the files the normal way (``--set weights=...``), the original
as ``python -m detbench.perf.originals``. Measured per side: images/s of the scoring pass (detbench's ``predict``
timing, the original's loop; model loading excluded and reported apart as ``load_s``) and the process's own peak RSS
(its ``VmHWM``, which each side reports: DataLoader workers apart, and none of this process's memory, which a
child's ``ru_maxrss`` would include). ``ratio`` = detbench images/s / the
original's, per repetition, reported as min/median/max. ``score_std`` is the spread of the scores (the random head is
rescaled so that they spread: equal saturated scores would prove nothing).

Scores are compared in the same call: every image's P(fake) must agree within
:data:`~detbench.perf.originals.SCORE_TOLERANCE` in every repetition, or no speed is reported (a
:class:`~detbench.errors.DataError` naming the difference).
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detbench.errors import ConfigError, DataError
from detbench.perf.originals import ORIGINALS, SCORE_TOLERANCE, original
from detbench.store import write_text_atomic

# images and repetitions per detector by default: a few minutes each on 2 CPU cores at full size (AIDE, a
# ConvNeXt-XXL and four ResNet-50 passes per image: seconds per image)
DEFAULTS = {"cnnspot": (64, 3), "npr": (64, 3), "univfd": (24, 3), "aide": (8, 3)}
SET = "set"  # the generator folder of the generated folder suite

COLUMNS = [
    "detector", "original", "images", "repeats", "detbench_images_per_s", "original_images_per_s", "ratio_min",
    "ratio_median", "ratio_max", "detbench_load_s", "original_load_s", "detbench_peak_rss_mb",
    "original_peak_rss_mb", "max_abs_diff", "tolerance", "score_std", "original_batch", "original_workers",
]  # fmt: skip


@dataclass
class VsOptions:
    """Which detectors, and (when set) how many images and repetitions for each."""

    detectors: tuple[str, ...] = ORIGINALS
    images: int | None = None  # None: DEFAULTS per detector
    repeats: int | None = None
    seed: int = 0

    def validate(self) -> None:
        """Refuse unknown detectors and out-of-range counts before any work.

        Raises:
            ConfigError: naming every problem.
        """
        unknown = [d for d in self.detectors if d not in ORIGINALS]
        if unknown or not self.detectors:
            raise ConfigError(f"--detectors {','.join(self.detectors)}: no original evaluation loop for "
                              f"{', '.join(unknown) or 'an empty list'}; choose from {', '.join(ORIGINALS)}")
        if self.images is not None and self.images < 2:
            raise ConfigError(f"--images {self.images}: the comparison needs at least 2 images (one per class)")
        if self.repeats is not None and self.repeats < 1:
            raise ConfigError(f"--repeats {self.repeats}: must be >= 1")

    def counts(self, detector: str) -> tuple[int, int]:
        """Images and repetitions for ``detector``.

        Args:
            detector: a name of :data:`~detbench.perf.originals.ORIGINALS`.

        Returns:
            ``(images, repeats)``.
        """
        images, repeats = DEFAULTS[detector]
        return self.images or images, self.repeats or repeats


def run_vs_originals(
    opts: VsOptions, out: Path | None, progress: Callable[[str], None] = lambda _: None
) -> list[dict[str, Any]]:
    """Compare every chosen detector with its original loop; write ``vs_originals.csv`` / ``.md`` into ``out``.

    Args:
        opts: the detectors and counts.
        out: the folder for the CSV, the Markdown table and ``vs_originals_machine.json``; None writes nothing.
        progress: called with a line before each process starts.

    Returns:
        One row per detector (:data:`COLUMNS`).

    Raises:
        ConfigError: invalid options.
        DataError: a side's scores differ from the other's beyond the tolerance (no speed is reported).
    """
    opts.validate()
    rows = []
    with tempfile.TemporaryDirectory(prefix="detbench-vs-originals-") as tmp:
        for name in opts.detectors:
            images, repeats = opts.counts(name)
            rows.append(compare(name, images, repeats, Path(tmp) / name, opts.seed, progress))
    if out is not None:
        write_outputs(rows, out)
    return rows


def compare(name: str, images: int, repeats: int, work: Path, seed: int,
            progress: Callable[[str], None]) -> dict[str, Any]:
    """One detector against its original loop (see the module docstring).

    Args:
        name: the detector.
        images: generated test images.
        repeats: repetitions of both sides.
        work: an empty working folder.
        seed: seeds the images and the weights.
        progress: called with a line before each process starts.

    Returns:
        The detector's row.

    Raises:
        DataError: the scores differ beyond :data:`SCORE_TOLERANCE`.
    """
    from detbench.perf.inputs import write_test_set

    module = original(name)
    work.mkdir(parents=True)
    written = write_test_set(work / "data" / SET, images, seed=seed)
    checkpoint = module.write_checkpoint(work, work / "data" / SET, seed)
    files_json = work / "files.json"
    files_json.write_text(json.dumps({role: str(p) for role, p in checkpoint.files.items()}))
    runs: dict[str, list[dict[str, Any]]] = {"detbench": [], "original": []}
    for rep in range(repeats):
        sides = ("original", "detbench") if rep % 2 == 0 else ("detbench", "original")  # alternate the order
        for side in sides:
            progress(f"{name}: {side} loop, repetition {rep + 1}/{repeats}")
            folder = work / f"{side}-{rep}"
            folder.mkdir()
            if side == "detbench":
                runs[side].append(_detbench_side(name, work / "data", checkpoint.settings, folder))
            else:
                runs[side].append(_original_side(name, work / "data" / SET, files_json, folder))
    diff = _max_abs_diff(name, written, runs)
    ratios = [o["score_s"] / d["score_s"] for d, o in zip(runs["detbench"], runs["original"], strict=True)]

    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    return {
        "detector": name, "original": module.SOURCE, "images": images, "repeats": repeats,
        "detbench_images_per_s": round(images / median("detbench", "score_s"), 2),
        "original_images_per_s": round(images / median("original", "score_s"), 2),
        "ratio_min": round(min(ratios), 3), "ratio_median": round(statistics.median(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "detbench_load_s": round(median("detbench", "load_s"), 2),
        "original_load_s": round(median("original", "load_s"), 2),
        "detbench_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["detbench"]), 1),
        "original_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["original"]), 1),
        "max_abs_diff": float(f"{diff:.3g}"), "tolerance": SCORE_TOLERANCE,
        "score_std": round(statistics.pstdev(runs["original"][0]["scores"].values()), 4),
        "original_batch": module.BATCH_SIZE, "original_workers": module.WORKERS,
    }  # fmt: skip


def _max_abs_diff(name: str, written: list[str], runs: dict[str, list[dict[str, Any]]]) -> float:
    """The largest |detbench - original| over every image and repetition pair; refuses missing images or a
    difference beyond the tolerance.
    """
    expected = set(written)
    worst = 0.0
    for side, results in runs.items():
        for result in results:
            if set(result["scores"]) != expected:
                missing = sorted(expected - set(result["scores"]))[:3]
                raise DataError(f"{name}: the {side} loop scored {len(result['scores'])} of {len(expected)} "
                                f"images (missing e.g. {', '.join(missing) or 'none'}): no speed is reported")
    for ours in runs["detbench"]:
        for theirs in runs["original"]:
            worst = max(worst, max(abs(ours["scores"][p] - theirs["scores"][p]) for p in written))
    if not worst <= SCORE_TOLERANCE:
        raise DataError(f"{name}: detbench's scores differ from the original loop's by up to {worst:.3g} "
                        f"(tolerance {SCORE_TOLERANCE}): no speed is reported for unequal scores")
    return worst


def _process(command: list[str], env: dict[str, str], log: Path) -> None:
    """Run ``command`` to its end (its output to ``log``); a failure raises with the log's tail."""
    with open(log, "wb") as fh:
        done = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(command[:6])} ... failed with exit code {done.returncode}:\n{tail}")


def _environment(home: Path) -> dict[str, str]:
    return {**os.environ, "DETBENCH_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _detbench_side(name: str, root: Path, settings: list[str], folder: Path) -> dict[str, Any]:
    """``python -m detbench run`` in a fresh home; its scores (by path in the test set), timings and peak RSS."""
    import pandas as pd

    home = folder / "home"
    command = [sys.executable, "-m", "detbench", "run", name, "--suite", "folder", "--root", str(root),
               "--protocol", "eval", "--bootstrap", "0", "-q"]
    for item in settings:
        command += ["--set", item]
    _process(command, _environment(home), folder / "log.txt")
    [record_path] = (home / "runs" / "folder" / name).glob("*/run.json")
    record = json.loads(record_path.read_text())
    table = pd.read_parquet(record_path.parent / "scores.parquet")
    prefix = f"{SET}/"
    scores = {p[len(prefix):]: float(s) for p, s in zip(table["path"], table["score"], strict=True)}
    timings = record["timings_s"]
    return {"scores": scores, "score_s": timings["predict"], "load_s": timings["setup"] + timings["fit"],
            "peak_rss_mb": round(record["cost"]["peak_memory_bytes"] / 2**20, 1)}


def _original_side(name: str, root: Path, files_json: Path, folder: Path) -> dict[str, Any]:
    """``python -m detbench.perf.originals``: its scores, timings and peak RSS."""
    out = folder / "original.json"
    command = [sys.executable, "-m", "detbench.perf.originals", name, str(root), str(files_json), str(out)]
    _process(command, _environment(folder / "home"), folder / "log.txt")
    return json.loads(out.read_text())


def write_outputs(rows: list[dict[str, Any]], out: Path) -> None:
    """``vs_originals.csv`` (the rows), ``vs_originals.md`` (a table and the machine) and
    ``vs_originals_machine.json`` (:func:`~detbench.perf.bench.machine`), written atomically.

    Args:
        rows: from :func:`run_vs_originals`.
        out: the folder (created if missing).
    """
    from detbench.perf.bench import machine

    out.mkdir(parents=True, exist_ok=True)
    facts = machine("cpu")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["time", *COLUMNS], lineterminator="\n")
    writer.writeheader()
    writer.writerows({"time": stamp, **row} for row in rows)
    write_text_atomic(out / "vs_originals.csv", buffer.getvalue())
    write_text_atomic(out / "vs_originals_machine.json", json.dumps(facts, indent=1, sort_keys=True) + "\n")
    write_text_atomic(out / "vs_originals.md", markdown(rows, facts, stamp))


def markdown(rows: list[dict[str, Any]], facts: dict[str, Any], stamp: str) -> str:
    """The rows as a Markdown table, after a line describing the machine.

    Args:
        rows: from :func:`run_vs_originals`.
        facts: :func:`~detbench.perf.bench.machine`.
        stamp: when the rows were measured.

    Returns:
        The Markdown text.
    """
    lines = [
        "# detbench vs the original evaluation loops", "",
        f"Measured {stamp} on {facts['cpu']} ({facts['cores_usable']} usable cores, {facts['ram_gib']} GiB RAM, "
        f"load {facts['load_avg_1m']:.2f}), torch {facts['torch']}, detbench {facts['detbench']}, CPU, float32.", "",
        "| detector | original | images × repeats | detbench img/s | original img/s | ratio (min / median / max) "
        "| load s (detbench / original) | peak RSS MiB (detbench / original) | max abs score diff |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['detector']} | {r['original']} | {r['images']} × {r['repeats']} | {r['detbench_images_per_s']} "
            f"| {r['original_images_per_s']} | {r['ratio_min']} / **{r['ratio_median']}** / {r['ratio_max']} "
            f"| {r['detbench_load_s']} / {r['original_load_s']} | {r['detbench_peak_rss_mb']:.0f} / "
            f"{r['original_peak_rss_mb']:.0f} | {r['max_abs_diff']:.2g} |"
        )
    return "\n".join(lines) + "\n"
