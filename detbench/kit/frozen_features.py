"""The shared plumbing of detectors that read frozen backbone features from the feature cache (linear probes,
UnivFD's head): load the configured backbone with the configured preprocessing and precision, and extract
features for index rows through :class:`detbench.models.features.FeatureCache`.

A detector built on it has a config with ``backbone``, ``crop``, ``embedding``, ``precision``, ``batch_size``,
``normalize`` and optionally ``resize`` and ``pad``.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from detbench.kit.detector import Detector, RunContext
from detbench.models.precision import resolve_precision

if TYPE_CHECKING:
    from detbench.kit.cost import CostForward


class FrozenFeatureDetector(Detector):
    """Shared plumbing of detectors that read frozen backbone features from the cache and score them with a head
    (:meth:`decision`).
    """

    def setup(self, ctx: RunContext) -> None:
        """Load the configured backbone (with the config's crop, resize and pad) and resolve precision and embedding.

        Args:
            ctx: the run context (its device resolves ``precision``).

        Raises:
            ConfigError: the backbone does not offer the configured embedding.
        """
        from detbench.models.backbones import load_backbone

        self.backbone = load_backbone(self.config.backbone, device="cpu", crop=self.config.crop or None)
        changes = {k: getattr(self.config, k, "") for k in ("resize", "pad")}
        if any(changes.values()):
            changes = {k: v for k, v in changes.items() if v}
            self.backbone.preprocess = dataclasses.replace(self.backbone.preprocess, **changes)
        self.precision = resolve_precision(self.config.precision, ctx.device)
        self.embedding = self.config.embedding or self.backbone.default_embedding
        if self.embedding not in self.backbone.embeddings:
            from detbench.config import ConfigError

            raise ConfigError(
                f"embedding {self.embedding!r} not offered by {self.backbone.spec}; "
                f"choose one of {', '.join(self.backbone.embeddings)}"
            )

    def identity(self) -> dict[str, Any]:
        """What enters the run identity beyond the config.

        Returns:
            The backbone identity, the embedding and the resolved precision.
        """
        return {"backbone": self.backbone.identity(), "embedding": self.embedding, "precision": self.precision}

    def features(
        self, rows: pd.DataFrame, ctx: RunContext, description: str, perturb: bool
    ) -> tuple[np.ndarray, dict[int, str]]:
        """Features of ``rows`` from the feature cache, with a progress phase; L2-normalised when the config says so.

        The cache counts are appended to ``ctx.extra["feature_counts"]``.

        Args:
            rows: index rows.
            ctx: the run context.
            description: the progress phase's name.
            perturb: whether the run's perturbation applies (evaluation rows) or not (training rows).

        Returns:
            Features ``[len(rows), D]`` (NaN rows for failed images) and failure reasons by row position.
        """
        perturbation = ctx.perturbation if perturb else None
        with ctx.phases.phase(description, len(rows)) as advance:
            feats, failures, counts = ctx.feature_cache.extract(
                self.backbone,
                ctx.suite_root,
                rows,
                embedding=self.embedding,
                perturbation=perturbation,
                batch_size=ctx.batch_size or self.config.batch_size,
                workers=ctx.workers,
                device=ctx.device,
                precision=self.precision,
                advance=advance,
            )
        ctx.extra.setdefault("feature_counts", []).append({"phase": description, **counts})
        if self.config.normalize:
            norms = np.linalg.norm(feats, axis=1, keepdims=True)
            feats /= np.where(norms > 0, norms, 1.0)  # in place: a million features are not held twice
        return feats, failures

    @abstractmethod
    def decision(self, feats: np.ndarray) -> np.ndarray:
        """P(fake) of features under the fitted head.

        Args:
            feats: ``[N, D]`` finite features (L2-normalised when the config says so).

        Returns:
            ``[N]`` probabilities.
        """

    def head_parameter_count(self) -> int | None:
        """The number of parameters of the fitted head (:meth:`decision`), for the run's cost.

        Returns:
            The count, or None when the detector does not say (its total is then the backbone's alone).
        """
        return None

    def cost_forward(self, ctx: RunContext, generator: str) -> CostForward:
        """The backbone's embedding of one image, preprocessed as the features are.

        The head runs in numpy on the features: its parameters (:meth:`head_parameter_count`) are added to the total and
        are the trainable ones (the backbone is frozen), its FLOPs (about two per parameter) are not counted.

        Args:
            ctx: the evaluation's run context (unused).
            generator: the generator of the image counted (unused: every image is preprocessed alike).

        Returns:
            The backbone's forward, and the head's parameters.
        """
        from detbench.kit.cost import CostForward

        head = self.head_parameter_count()
        note = ("the backbone's forward; the head runs in numpy and its FLOPs are not counted" if head is not None
                else "the backbone's forward; the head (in numpy) is counted neither in the parameters nor the FLOPs")
        return CostForward(lambda x: self.backbone.embed(x, self.embedding), self.backbone.preprocess.eval_transform(),
                           (self.backbone.model,), trainable=head, outside_torch=head or 0, note=note)

    def predict(self, rows: pd.DataFrame, ctx: RunContext) -> tuple[np.ndarray, dict[int, str]]:
        """P(fake) per row: :meth:`decision` on the (perturbed) features of the images that could be read.

        Args:
            rows: the rows to score.
            ctx: the run context.

        Returns:
            Scores (NaN where an image failed) and failure reasons by row position.
        """
        from detbench.probabilities import score_finite_rows

        feats, failures = self.features(rows, ctx, f"features ({ctx.stage})", perturb=True)
        return score_finite_rows(feats, self.decision), failures
