"""Where runs and fits live under ``$DETBENCH_HOME/runs``: the one description of the run directory layout.

``runs/<suite>/<detector>/<run id[:16]>/`` holds a run: ``scores/part-*.parquet`` while it is scored (written in
chunks, atomically; a killed run resumes from them), then ``scores.parquet``, ``heldout_scores.parquet``,
``metrics.parquet`` and ``run.json`` (written last: a run without it is unfinished). ``runs/<training suite>/
<detector>/fits/<fit id[:16]>/`` holds the trained state (``state/``, ``fit.json``) and resumable checkpoints,
keyed by everything that changes training, so a perturbed evaluation reuses the clean fit. ``--force`` computes
in ``<dir>/replacement`` and moves what it replaces to ``runs/<suite>/<detector>/replaced/``.
"""

from __future__ import annotations

from pathlib import Path

from detbench.paths import home_subdir

ID_CHARS = 16  # run and fit folders are named by this many hex characters of their ids
REPLACEMENT = "replacement"  # where --force computes a run or fit before it replaces the finished one
REPLACED = "replaced"
FITS = "fits"
RUN_RECORD = "run.json"
RUN_OUTPUTS = ("scores.parquet", "heldout_scores.parquet", "metrics.parquet")
FIT_RECORD = "fit.json"
RUN_FILES = (RUN_RECORD, *RUN_OUTPUTS)  # the record first: without it a run reads as unfinished
FIT_FILES = (FIT_RECORD, "state")


def runs_root() -> Path:
    """``$DETBENCH_HOME/runs``, created on demand.

    Returns:
        The folder.
    """
    return home_subdir("runs")


def detector_dir(suite: str, detector: str, root: Path | None = None) -> Path:
    """The folder of ``detector``'s runs on ``suite`` (and of its fits trained on ``suite``).

    Args:
        suite: the suite's name.
        detector: the detector's name.
        root: the runs folder; None: :func:`runs_root`.

    Returns:
        ``<root>/<suite>/<detector>``.
    """
    return (root or runs_root()) / suite / detector


def run_dir(suite: str, detector: str, run_id: str) -> Path:
    """Where the run ``run_id`` of ``detector`` on ``suite`` lives.

    Args:
        suite: the evaluation suite's name.
        detector: the detector's name.
        run_id: the run id (hex; its first :data:`ID_CHARS` characters name the folder).

    Returns:
        The run's folder.
    """
    return detector_dir(suite, detector) / run_id[:ID_CHARS]


def fit_dir(train_suite: str, detector: str, fit_id: str, root: Path | None = None) -> Path:
    """Where the fit ``fit_id`` lives: with its training suite (the evaluation suite of a cross-suite run differs).

    Args:
        train_suite: the training suite's name.
        detector: the detector's name.
        fit_id: the fit id (hex; its first :data:`ID_CHARS` characters name the folder).
        root: the runs folder; None: :func:`runs_root`.

    Returns:
        The fit's folder.
    """
    return detector_dir(train_suite, detector, root) / FITS / fit_id[:ID_CHARS]


def run_record_glob(suite: str | None = None) -> str:
    """The glob, relative to :func:`runs_root`, of the records of every run (of one suite).

    Args:
        suite: the suite's name; None: every suite.

    Returns:
        ``<suite or *>/*/*/run.json``.
    """
    return f"{suite or '*'}/*/*/{RUN_RECORD}"
