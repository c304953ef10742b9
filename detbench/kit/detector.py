"""The detector contract every plugin implements, and the context the runner hands it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from detbench.progress import Phases

if TYPE_CHECKING:
    from detbench.kit.cost import CostForward


@dataclass
class RunContext:
    """What a detector may use while fitting and predicting."""

    suite_root: Path
    suite_name: str
    device: str
    seed: int
    run_dir: Path
    phases: Phases
    workers: int | None = None
    batch_size: int | None = None
    perturbation: Any | None = None  # applied at evaluation only
    feature_cache: Any | None = None
    stage: str = "eval"  # what predict() is scoring: "eval" or "heldout" (for progress labels)
    eval_convention: str | None = None  # the suite's test-set convention (detbench.data.suites.EVAL_CONVENTIONS)
    extra: dict[str, Any] = field(default_factory=dict)
    # generator -> the evaluation preprocessing chosen with --set suite.eval_profile=... (an EvalProfile of
    # detbench.data.preprocess); filled only for detectors with follows_eval_profiles; empty: the detector decides
    # (e.g. from eval_convention)
    eval_profiles: dict[str, Any] = field(default_factory=dict)
    # every usable evaluation row of the run (labels included), set only when a detector with ``bias_probe`` runs
    # under a protocol that trains nothing: it then cross-validates on these rows (see Detector.bias_probe)
    probe_rows: pd.DataFrame | None = None
    # the detector identity a finished run recorded, set only while its saved fit is set up for scoring again
    # (detbench.results.predict.load_trained): facts of training-only inputs (a folder the fit read, named by its
    # content) come from it, so scoring never needs the training data
    recorded_identity: dict[str, Any] | None = None

    def eval_profile_for(self, generator: str) -> Any | None:
        """The evaluation preprocessing the user chose for one generator's test set.

        Args:
            generator: the generator name of the rows being scored (the index's ``generator`` column).

        Returns:
            The :class:`~detbench.data.preprocess.EvalProfile` chosen with ``--set suite.eval_profile=...``, or
            None when none was chosen (or the detector does not follow profiles): decide yourself, e.g. from
            :attr:`eval_convention`.
        """
        return self.eval_profiles.get(generator)

    def checkpoint_dir(self) -> Path:
        """The folder for resumable training checkpoints, ``run_dir/checkpoints``, created if missing.

        During :meth:`Detector.fit` ``run_dir`` is the fit's folder, so a killed training resumes from here.

        Returns:
            The folder's path.
        """
        path = self.run_dir / "checkpoints"
        path.mkdir(parents=True, exist_ok=True)
        return path


class Detector(ABC):
    """Base class of detector plugins.

    Subclasses set ``name``, ``version`` (bump whenever outputs change for the same config) and ``Config``
    (a dataclass whose fields are the ``--set`` keys; a ``backbone`` field left empty takes the suite's
    default). ``profile_defaults`` maps a suite's compute profile (:data:`detbench.data.suites.COMPUTE_PROFILES`)
    to config overrides applied before the user's, e.g. a smaller crop and fewer steps on ``small`` suites.
    """

    name: ClassVar[str]
    version: ClassVar[int]
    Config: ClassVar[type]
    summary: ClassVar[str] = ""
    training_free: ClassVar[bool] = False  # never learns from training rows (e.g. RIGID)
    profile_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    # True when predict() applies ctx.eval_profile_for(row generator), a preprocessing override the user (or a
    # preset) chose with --set suite.eval_profile=...; the profile is then part of the run's identity and record
    follows_eval_profiles: ClassVar[bool] = False
    external: ClassVar[bool] = False  # its scores were computed outside detbench and imported (runs are marked so)
    # Top-level config fields that change the scores but never the trained state (e.g. an imported score file): they
    # stay out of the fit key, and score_identity() keys what they change with the run. Runs that differ only in
    # them share one fit, which is how leaderboard deltas and report robustness curves pair runs.
    score_only_keys: ClassVar[tuple[str, ...]] = ()
    # Config keys whose value names a file (released weights, a head), each with the words it may hold that name no
    # file (e.g. ``imagenet``). No path is part of a run's identity: a file's sha256 is (identity() must hold it),
    # and in the identity's config such a key reads ``file``. A ``backbone`` key always enters it without a path
    # (:func:`detbench.models.spec.path_free_spec`).
    file_keys: ClassVar[dict[str, tuple[str, ...]]] = {}
    # Config keys other than ``backbone`` that hold a backbone spec (open_clip:ARCH@SOURCE): they too enter the
    # identity without a path (the weights' sha256 must be in identity())
    spec_keys: ClassVar[tuple[str, ...]] = ()
    # Which training-generator images select the model, as the original does it (a train.holdout value of
    # detbench.engine.holdout: a fraction such as "0.1", "0" or "val-split"); None: the protocol's own heldout_fraction.
    # Users override it with --set train.holdout=...; what is used is part of the fit identity.
    default_holdout: ClassVar[str | None] = None
    requires_heldout: ClassVar[bool] = False  # its training cannot run without held-out images (it selects on them)
    # Settings that make a fit and a scoring pass take seconds on 32-pixel images (stand-in backbones, one epoch):
    # the contract tests (tests/test_contracts.py) run every registered detector with them.
    tiny_settings: ClassVar[dict[str, Any]] = {}
    # False when predict() returns a score that ranks images but is no probability (RIGID's 1 - cos lies in [0, 2]):
    # thresholds and calibration metrics then read it as it is, clipped to [0, 1] where a probability is needed.
    probability_scores: ClassVar[bool] = True
    # Index metadata columns (detbench.data.index.METADATA_COLUMNS: format, jpeg_quality, width, height, bytes, exif)
    # that fit() and predict() read from their rows. Rows of a run always carry them (and the suite's meta_*
    # columns); `detbench predict` probes the files it scores for the ones named here.
    metadata_columns: ClassVar[tuple[str, ...]] = ()
    # True when, under a protocol that trains nothing (--protocol eval), the detector still runs, as a labelled bias
    # probe: fit() gets no rows and ctx.probe_rows holds the evaluation rows, which predict() cross-validates on, each
    # image scored by a model that never saw it. Such runs are recorded (``bias_probe``) and shown as bias probes.
    bias_probe: ClassVar[bool] = False
    # True for a floor that other detectors should beat (a metadata-only shortcut): leaderboards and reports mark the
    # runs that do not beat its run on the same evaluation rows.
    floor: ClassVar[bool] = False
    # False when predict() reads no pixels (file metadata, imported scores): such a detector cannot score tiles
    # (--set eval.tiles=... is refused)
    scores_pixels: ClassVar[bool] = True
    # The tile policy and fusion rule of an original that scores tiles of an image and fuses them (values of
    # --set eval.tiles / eval.fuse, detbench.data.tiles), used when the user sets neither; None: whole images
    default_tiles: ClassVar[str | None] = None
    default_fuse: ClassVar[str | None] = None
    # The suite fact a run needs (a key of detbench.data.suites.CONTENTS, e.g. "faces" for a face detector; the runner
    # refuses a suite whose ``content`` differs) and the boolean setting that runs it there anyway (part of the run
    # identity, as every setting); None: any suite
    requires_content: ClassVar[str | None] = None
    content_override: ClassVar[str] = ""

    def __init__(self, config: Any) -> None:
        self.config = config

    def needs_training(self) -> bool:
        """Whether :meth:`fit` learns from training rows. False for training-free detectors and for detectors
        given released weights: those run under any protocol, ``eval`` included, and need no training rows.

        Decided from the config alone (before any weights load), so pre-flight checks can call it.

        Returns:
            True when the run needs training rows and a fit.
        """
        return not self.training_free

    def setup(self, ctx: RunContext) -> None:
        """Load what :meth:`identity` needs (e.g. the backbone); called once before fit/predict. Default: nothing.

        Args:
            ctx: the run context (device, seed, suite, eval convention).

        Raises:
            DetbenchError: a subclass (e.g. WeightsError, BackboneError) when the weights or backbone cannot be
                loaded.
        """
        return None

    def identity(self) -> dict[str, Any]:
        """Identity beyond the config: e.g. the resolved backbone (weights sha256, preprocessing).

        Called after :meth:`setup`; part of both the fit id and the run id.

        Returns:
            JSON-serialisable facts (empty by default).
        """
        return {}

    def score_identity(self, ctx: RunContext) -> dict[str, Any]:
        """What the scores depend on beyond the trained state (e.g. the sha256 of an imported score file and how it
        is read): part of the run id, not of the fit id. Called after :meth:`setup`.

        Args:
            ctx: the run's evaluation context (its ``suite_root`` is the indexed suite's).

        Returns:
            JSON-serialisable facts (empty by default).
        """
        return {}

    def label(self) -> str:
        """How leaderboards, run lists and reports name this detector's runs (default: its registered name).

        Decided from the config alone, e.g. ``external:NAME`` for imported scores.

        Returns:
            The display label.
        """
        return self.name

    def cost_forward(self, ctx: RunContext, generator: str) -> CostForward | str:
        """The forward pass that scores one image, for the run's cost (parameters, FLOPs per image).

        Called after scoring, with the scored model. The bases of :mod:`detbench.kit` implement it (a network scoring
        whole images; a backbone's features and a head); a detector scoring otherwise overrides it, or says why
        nothing can be counted.

        Args:
            ctx: the evaluation's run context.
            generator: the generator of the image the count is made on (its preprocessing may depend on it).

        Returns:
            A :class:`~detbench.kit.cost.CostForward`, or why there is none (recorded as ``n/a`` with that reason).
        """
        return f"{type(self).__name__} names no scoring forward (Detector.cost_forward), so nothing is counted"

    def input_size(self, ctx: RunContext, generator: str) -> int | None:
        """The side of the square input the detector scores, for ``eval.tiles=center`` and ``five`` tiles.

        Called after :meth:`setup`. By default read from :meth:`cost_forward`'s transform: the side of what it makes of
        a 1031 x 1013 image; None when that is not square (native-size scoring keeps the image's shape) or when there
        is no cost forward. Override it where that is wrong.

        Args:
            ctx: the evaluation's run context.
            generator: the generator of the rows (its preprocessing may depend on it).

        Returns:
            The side in pixels, or None when the detector has none.
        """
        from PIL import Image

        found = self.cost_forward(ctx, generator)
        if isinstance(found, str):
            return None
        probe = Image.new("RGB", (1031, 1013), (128, 128, 128))
        height, width = found.transform(probe).shape[-2:]
        return int(height) if height == width else None

    @abstractmethod
    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Train on ``train``; select hyper-parameters/checkpoints on ``heldout`` (training generator only).

        Called only when no intact fit exists; the runner then calls :meth:`save`. Training-free detectors and
        detectors given released weights fit nothing (both frames may be empty).

        Args:
            train: the index rows to learn from (``path``, ``label`` 1 = fake, ``generator``, ``status`` ...).
            heldout: the held-out rows of the training generator(s), for selection only.
            ctx: the run context; ``ctx.run_dir`` is the fit's folder (see :meth:`RunContext.checkpoint_dir`).

        Returns:
            JSON-serialisable facts for the fit and run records (e.g. the chosen C, steps, skipped images).
        """

    @abstractmethod
    def predict(self, rows: pd.DataFrame, ctx: RunContext) -> tuple[np.ndarray, dict[int, str]]:
        """Score rows: the probability that each image is fake.

        Args:
            rows: index rows whose ``status`` is ``ok`` (the runner passes chunks of at most
                ``detbench.engine.runner.SCORE_CHUNK_ROWS``; ``detbench predict`` passes ``label`` -1, unknown).
            ctx: the run context; apply ``ctx.perturbation`` (None on held-out rows) and, with
                ``follows_eval_profiles``, :meth:`RunContext.eval_profile_for`. Under a class-targeted perturbation
                (``jpeg:96@fake``) the runner calls this once per label group, ``ctx.perturbation`` the inner
                perturbation or None, so an image's score must depend on that image alone.

        Returns:
            ``(scores, failures)``: P(fake) in [0, 1], a float array of ``len(rows)`` (NaN where the image could not
            be used), and the reasons images could not be used, keyed by position in ``rows`` (0-based). The runner
            records a NaN without a reason as ``no_score``.
        """

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the trained state (safetensors/JSON, never pickle) into ``directory``.

        Args:
            directory: a fresh folder (the runner hashes every file written there and renames it into place).
        """

    @abstractmethod
    def load(self, directory: Path) -> None:
        """Restore the state written by :meth:`save`; strict: a mismatch raises.

        Args:
            directory: the folder :meth:`save` wrote (a fit's ``state/``), after :meth:`setup`.

        Raises:
            WeightsError: the saved state is unreadable or does not fit this detector.
        """
