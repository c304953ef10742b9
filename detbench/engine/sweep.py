"""Robustness sweeps: the clean run plus one run per perturbation value, all scored by one trained fit.

Perturbations apply at evaluation only and the fit is keyed without them, so the detector is trained
(at most) once, by the clean run; every perturbed run loads that state (its record says
``fit.reused``). Runs that already exist are reused, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from detbench.data.perturbations import expand_sweep
from detbench.engine.finished_run import Run
from detbench.engine.resolve import RunRequest, resolve
from detbench.engine.runner import Runner
from detbench.errors import ConfigError


@dataclass
class SweepResult:
    """A robustness sweep's runs (clean, then one per perturbation value) and its robustness table."""

    clean: Run
    perturbed: list[tuple[str, Run]]  # (canonical spec, result), in sweep order
    table: pd.DataFrame  # see robustness_frame


def run_sweep(base: RunRequest, axes: list[str], runner: Runner | None = None) -> SweepResult:
    """Run ``base`` clean, then once per value of each axis (``["jpeg:95,75", "blur:1,2"]``).

    Every spec and option is validated before any work. With ``base.force`` the clean run retrains
    and every perturbed run is recomputed with that new fit (not retrained again).

    Args:
        base: the run request (its ``perturb`` is replaced).
        axes: perturbation axes, see :func:`~detbench.data.perturbations.expand_sweep`.
        runner: the runner to use; None: a new :class:`~detbench.engine.runner.Runner`.

    Returns:
        The clean result, the perturbed results in sweep order, and the :func:`robustness_frame` table.

    Raises:
        ConfigError: an invalid spec or option (see :func:`~detbench.engine.resolve.resolve`).
    """
    runner = runner or Runner()
    specs = expand_sweep(axes)
    clean_req = dataclasses.replace(base, perturb=None, keep_fit=False)
    if resolve(clean_req).detector_cls.external:
        raise ConfigError(
            f"{base.detector} scores come from a file computed outside detbench, which a sweep cannot perturb: import "
            "one file per perturbation with `detbench import-scores ... --perturb SPEC` (they pair with the clean one)"
        )
    clean = runner.run(clean_req)
    perturbed = []
    for spec in specs:
        result = runner.run(dataclasses.replace(base, perturb=spec, keep_fit=True))
        if result.record["fit_id"] != clean.record["fit_id"]:
            raise RuntimeError(f"run {spec} used fit {result.record['fit_id'][:16]}, not the clean run's")
        perturbed.append((spec, result))
    return SweepResult(clean, perturbed, robustness_frame(clean, perturbed))


def robustness_frame(clean: Run, perturbed: list[tuple[str, Run]]) -> pd.DataFrame:
    """One row per run (clean first): mean acc and AP, their deltas vs clean, worst acc, fit and run state.

    Args:
        clean: the clean run's result.
        perturbed: ``(canonical spec, result)`` pairs.

    Returns:
        The table (fractions; deltas NaN on the clean row).
    """
    base = _means(clean)
    rows = []
    for spec, result in [("clean", clean), *perturbed]:
        m = _means(result)
        rows.append(
            {
                "perturbation": spec,
                "mean acc": m["acc"],
                "Δ acc": m["acc"] - base["acc"] if spec != "clean" else float("nan"),
                "mean AP": m["ap"],
                "Δ AP": m["ap"] - base["ap"] if spec != "clean" else float("nan"),
                "worst acc": m["worst_acc"],
                "fit": _fit_state(result.record["fit"]),
                "run": result.record["run_id"][:16] + (" (reused)" if result.reused else ""),
            }
        )
    return pd.DataFrame(rows)


def _fit_state(fit: dict) -> str:
    if fit.get("reused"):
        return "reused"
    return "none" if fit.get("stored") is False else "trained"


def _means(result: Run) -> dict[str, float]:
    rows = result.metrics.set_index("generator")
    return {
        "acc": float(rows.loc["mean", "acc"]),
        "ap": float(rows.loc["mean", "ap"]),
        "worst_acc": float(rows.loc["worst", "acc"]),
    }
