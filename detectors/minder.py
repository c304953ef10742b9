"""MINDER, the MINimum distance DetEctoR (Tsai et al. 2024, arXiv 2411.19117): a training-free detector.

Gaussian noise (RIGID) detects generated images of general objects well and generated faces poorly; Contrastive
Blur the other way round. MINDER scores each image with both and keeps the minimum, so that neither perturbation's
bias decides alone. Its two distances are exactly RIGID's score (``1 - cos(f(x), f(x + noise * eps))``, the same
seeded draws) and Contrastive Blur's (``1 - cos(f(blur(x)), f(sharpen(x)))``), all views of an image in one
forward pass.

No code is published: this is a documented reconstruction (docs/minder.md). The paper's name for it says
"minimum distance"; whether the minimum is taken over the distances or over the cosine similarities (the larger
distance) is the setting ``combine`` (``min_distance``, the default, or ``min_similarity``). Scores are
``1 - cos``, not probabilities: read AP/AUC, or use ``--threshold calibrated`` with a training protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from detbench.kit.sensitivity import (
    BLUR_VIEW,
    NOISE_DRAW,
    BlurConfig,
    EmbeddingSensitivityDetector,
    SensitivityConfig,
    embedding_distance,
    validate_noise,
)


@dataclass(frozen=True)
class MINDERConfig(SensitivityConfig):
    """MINDER options: the network and its input (:class:`SensitivityConfig`), RIGID's noise, the blur, the minimum."""

    noise: float = 0.05  # RIGID's lambda: the noise's standard deviation in normalised units
    blur: BlurConfig = field(default_factory=BlurConfig)  # Contrastive Blur's views (blur.sigma, blur.against ...)
    # min_distance: min(d_noise, d_blur), the paper's name; min_similarity: 1 - min(cos) = max(d_noise, d_blur)
    combine: Literal["min_distance", "min_similarity"] = "min_distance"

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: ``input_size`` below 8, ``batch_size`` below 1 or a negative ``noise``.
        """
        super().validate()
        validate_noise(self.noise)


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "minder",
    "class": "MINDER",
    "summary": "MINDER (Tsai et al. 2024): training-free; per image, the minimum of RIGID's noise distance and "
               "Contrastive Blur's distance of DINOv2 embeddings (reconstructed).",
    "paper": "Tsai, Ko, Chung, Wang, Chen (arXiv 2411.19117)",
    "year": 2024,
    "training": "training-free",
    "weights_key": "backbone",
    "released": "DINOv2 ViT-L/14: timm:vit_large_patch14_dinov2@lvd142m, or @/path/dinov2_vitl14_pretrain.pth",
}


class MINDER(EmbeddingSensitivityDetector):
    """MINDER (Tsai et al. 2024), training-free: per image, the minimum of the noise and Contrastive Blur distances."""

    name = REGISTRATION["name"]
    version = 1
    Config = MINDERConfig
    summary = REGISTRATION["summary"]
    state_file = "minder.json"
    state_label = "MINDER"

    def views(self, x: Any, ids: list[str]) -> dict[str, Any]:
        """The image, its noisy copy (RIGID's) and its blurred and sharpened copies (Contrastive Blur's).

        Args:
            x: ``[B, 3, H, W]`` normalised images.
            ids: their content ids (the seeds of the noise draws).

        Returns:
            The views by name.
        """
        return {"clean": x, "noisy": self.noisy_view(x, ids, self.config.noise),
                **self.blur_views(x, self.config.blur)}

    def score(self, feats: dict[str, Any]) -> np.ndarray:
        """The per-image minimum of the two distances (or of the two similarities: the larger distance).

        Args:
            feats: the views' embeddings.

        Returns:
            ``[B]`` float64 scores.
        """
        c = self.config
        noise = embedding_distance(feats["clean"], feats["noisy"], c.cos_dtype)
        blur = self.blur_distance(feats, c.blur)
        # 1 - cos is monotone, also once rounded: 1 - min(cos) is exactly the larger distance
        return np.minimum(noise, blur) if c.combine == "min_distance" else np.maximum(noise, blur)

    def perturbation_identity(self) -> dict[str, Any]:
        """How the noise is drawn and how the blurred and sharpened copies are made.

        Returns:
            ``{"noise_draw": ..., "blur_view": ...}``.
        """
        return {"noise_draw": NOISE_DRAW, "blur_view": BLUR_VIEW}
