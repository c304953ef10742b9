"""RIGID (He, Chen, Ho 2024, arXiv 2405.20112): a training-free detector of generated images.

A real image's embedding barely moves under a small input perturbation; a generated one's moves more. The
score is ``1 - cos(f(x), f(x + noise * eps))``: higher means more likely fake.

Faithful to the authors' notebook (``RIGID.ipynb``, code commit 55af3cc of the IBM release):

- ``f`` is DINOv2 ViT-L/14 (torch.hub ``dinov2_vitl14``, no registers); its output is the class token after
  the final norm (1024-d). detbench's default backbone ``timm:vit_large_patch14_dinov2@lvd142m`` holds the same
  weights (timm's conversion of ``dinov2_vitl14_pretrain.pth``; that file itself loads too:
  ``--set backbone=timm:vit_large_patch14_dinov2@/path/dinov2_vitl14_pretrain.pth``). torch.hub builds the
  model for 518 px and interpolates its 37x37 position embeddings to the input's 16x16 grid at every forward
  pass (bicubic, scale factor 16.1/37, no antialias); detbench builds the timm model for the input size and
  resamples the embeddings the same way once at load time, so the class token is the hub model's.
- Preprocessing: ``Resize((224, 224))`` (square, aspect ratio ignored, PIL bilinear: torchvision's default),
  no crop, ``ToTensor``, ImageNet normalisation.
- ``eps`` ~ N(0, 1) of the normalised image's shape, added after normalisation (so ``noise`` = 0.05 is in
  normalised units, about 0.011 in [0, 1] pixel units), not clipped, one draw per image.
- The cosine is ``F.cosine_similarity`` of the float32 embeddings, as the notebook computes it; ``1 - cos`` is
  then exact in float32, so images whose cosines round alike tie in AP/AUC as there (``cos_dtype=float64``
  ranks them: a recorded departure).

Departures, all deliberate: the notebook draws the noise from the global RNG of a shuffled loader, so its
scores change with batch order; detbench seeds each image's draw from (run seed, image id), so a score is the
same in every run, batch size and order. The notebook reports AP with *real* images as the positive class;
detbench's AP is fake-positive everywhere (its AUC equals the notebook's). The score is ``1 - cos``, not a
probability: accuracy at the 0.5 threshold says little; read AP/AUC, or pass ``--threshold calibrated`` with
a protocol that has a training generator (RIGID never trains; the held-out rows only calibrate).

Any detbench backbone works (``--set backbone=open_clip:ViT-L-14@openai`` ...); its own normalisation applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from detbench.kit.sensitivity import (
    NOISE_DRAW,
    EmbeddingSensitivityDetector,
    SensitivityConfig,
    embedding_distance,
    noise_for,
    validate_noise,
)

__all__ = ["RIGID", "RIGIDConfig", "embedding_distance", "noise_for"]


@dataclass(frozen=True)
class RIGIDConfig(SensitivityConfig):
    """RIGID options: the embedding network and its input (:class:`SensitivityConfig`), and the noise added."""

    noise: float = 0.05  # lambda: the noise's standard deviation in normalised units

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: ``input_size`` below 8, ``batch_size`` below 1 or a negative ``noise``.
        """
        super().validate()
        validate_noise(self.noise)


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "rigid",
    "class": "RIGID",
    "summary": "RIGID (He et al. 2024): training-free; 1 - cos of DINOv2 embeddings of an image and its noisy copy.",
    "paper": "He, Chen, Ho (arXiv 2405.20112)",
    "year": 2024,
    "training": "training-free",
}


class RIGID(EmbeddingSensitivityDetector):
    """RIGID (He et al. 2024), training-free: 1 - cosine similarity of an image's and its noisy copy's embeddings."""

    name = REGISTRATION["name"]
    version = 1
    Config = RIGIDConfig
    summary = REGISTRATION["summary"]
    state_file = "rigid.json"
    state_label = "RIGID"

    def views(self, x: Any, ids: list[str]) -> dict[str, Any]:
        """The image and its copy with seeded noise added after normalisation.

        Args:
            x: ``[B, 3, H, W]`` normalised images.
            ids: their content ids (the seeds of the noise draws).

        Returns:
            ``{"clean": x, "noisy": x + noise * eps}``.
        """
        return {"clean": x, "noisy": self.noisy_view(x, ids, self.config.noise)}

    def score(self, feats: dict[str, Any]) -> np.ndarray:
        """``1 - cos`` of the clean and noisy embeddings.

        Args:
            feats: ``clean`` and ``noisy`` embeddings.

        Returns:
            ``[B]`` float64 scores.
        """
        return embedding_distance(feats["clean"], feats["noisy"], self.config.cos_dtype)

    def perturbation_identity(self) -> dict[str, Any]:
        """How the noise is drawn.

        Returns:
            ``{"noise_draw": ...}``.
        """
        return {"noise_draw": NOISE_DRAW}
