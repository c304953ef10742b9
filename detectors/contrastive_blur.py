"""Contrastive Blur (Tsai et al. 2024, arXiv 2411.19117): a training-free detector of generated images.

RIGID's observation with another perturbation: a generated image's embedding is more sensitive than a real one's.
Gaussian blur separates facial images better than Gaussian noise; Contrastive Blur widens the gap by comparing a
blurred copy with a sharpened copy of the image instead of with the image. The score is
``1 - cos(f(blur(x)), f(sharpen(x)))``: higher means more likely fake.

No code is published: this is a documented reconstruction (docs/minder.md). The paper fixes the network (DINOv2,
as RIGID), the perturbation (Gaussian blur) and the pair (blurred against sharpened); the blur's sigma and kernel,
the sharpening (unsharp masking, ``x + amount * (x - blur(x))``), the border and clipping are settings
(``blur.*``), with RIGID's preprocessing and cosine. ``blur.against=clean`` gives the plain blur perturbation the
paper analyses (the blurred copy against the image). Scores are ``1 - cos``, not probabilities: read AP/AUC, or
use ``--threshold calibrated`` with a training protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detbench.kit.sensitivity import BLUR_VIEW, BlurConfig, EmbeddingSensitivityDetector, SensitivityConfig


@dataclass(frozen=True)
class ContrastiveBlurConfig(SensitivityConfig):
    """Contrastive Blur options: the embedding network and its input (:class:`SensitivityConfig`) and the blur."""

    blur: BlurConfig = field(default_factory=BlurConfig)  # blur.sigma, blur.kernel, blur.against ...


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "contrastive-blur",
    "class": "ContrastiveBlur",
    "summary": "Contrastive Blur (Tsai et al. 2024): training-free; 1 - cos of DINOv2 embeddings of a blurred and "
               "a sharpened copy of the image (reconstructed).",
    "paper": "Tsai, Ko, Chung, Wang, Chen (arXiv 2411.19117)",
    "year": 2024,
    "training": "training-free",
    "weights_key": "backbone",
    "released": "DINOv2 ViT-L/14: timm:vit_large_patch14_dinov2@lvd142m, or @/path/dinov2_vitl14_pretrain.pth",
}


class ContrastiveBlur(EmbeddingSensitivityDetector):
    """Contrastive Blur (Tsai et al. 2024), training-free: 1 - cos of a blurred and a sharpened copy's embeddings."""

    name = REGISTRATION["name"]
    version = 1
    Config = ContrastiveBlurConfig
    summary = REGISTRATION["summary"]
    state_file = "contrastive_blur.json"
    state_label = "Contrastive Blur"

    def views(self, x: Any, ids: list[str]) -> dict[str, Any]:
        """The blurred and the sharpened copy (``blur.against=clean``: the image and its blurred copy).

        Args:
            x: ``[B, 3, H, W]`` normalised images.
            ids: their content ids (unused: nothing is drawn).

        Returns:
            The views by name.
        """
        blur = self.config.blur
        return {"clean": x, **self.blur_views(x, blur)} if blur.against == "clean" else self.blur_views(x, blur)

    def score(self, feats: dict[str, Any]) -> np.ndarray:
        """``1 - cos`` of the blurred copy's embedding and the sharpened copy's (or the image's).

        Args:
            feats: the views' embeddings.

        Returns:
            ``[B]`` float64 scores.
        """
        return self.blur_distance(feats, self.config.blur)

    def perturbation_identity(self) -> dict[str, Any]:
        """How the blurred and sharpened copies are made.

        Returns:
            ``{"blur_view": ...}``.
        """
        return {"blur_view": BLUR_VIEW}
