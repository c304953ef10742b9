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

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd

from detbench.errors import WeightsError
from detbench.kit.detector import Detector, RunContext

if TYPE_CHECKING:
    from detbench.kit.cost import CostForward

STATE_FILE = "rigid.json"
ORIGINAL_BACKBONE = ("timm", "vit_large_patch14_dinov2")  # the authors' DINOv2 ViT-L/14 (any source of its weights)


@dataclass(frozen=True)
class RIGIDConfig:
    """RIGID options: the embedding network, its input size and the noise added to the image."""

    backbone: str = "timm:vit_large_patch14_dinov2@lvd142m"  # the embedding network f
    embedding: str = ""  # empty: the backbone's default (timm ViTs: the class token after the final norm)
    input_size: int = 224  # Resize((input_size, input_size)); no crop
    interpolation: Literal["bilinear", "bicubic", "nearest", "lanczos"] = "bilinear"  # of that resize
    noise: float = 0.05  # lambda: the noise's standard deviation in normalised units
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"  # forward pass: see detbench.models.precision
    batch_size: int = 64  # images per forward pass (each image runs twice: clean and noisy)
    # the cosine: float32 as the notebook (cosines that round alike tie); float64 ranks them (a departure)
    cos_dtype: Literal["float32", "float64"] = "float32"

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: ``input_size`` below 8, a negative ``noise`` or ``batch_size`` below 1.
        """
        from detbench.config import ConfigError

        if self.input_size < 8 or self.noise < 0 or self.batch_size < 1:
            raise ConfigError("rigid options need input_size >= 8, noise >= 0 and batch_size >= 1")


def noise_for(image_id: str, seed: int, shape: tuple[int, ...]) -> Any:
    """The N(0, 1) draw of one image: depends only on (run seed, image id), never on batch order or size.

    Args:
        image_id: the index's content id of the image.
        seed: the run seed.
        shape: the normalised image's shape ``(3, H, W)``.

    Returns:
        A float32 tensor of ``shape``.
    """
    import torch

    digest = hashlib.sha256(f"rigid-noise:{seed}:{image_id}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
    return torch.randn(shape, generator=generator, dtype=torch.float32)


def embedding_distance(clean: Any, noisy: Any, dtype: str) -> np.ndarray:
    """RIGID's score ``1 - cos`` of each image's clean and noisy embeddings.

    Args:
        clean: ``[N, D]`` embeddings of the images.
        noisy: ``[N, D]`` embeddings of their noisy copies.
        dtype: ``float32`` (the notebook's ``F.cosine_similarity`` of float32 embeddings) or ``float64``.

    Returns:
        ``[N]`` float64 scores.
    """
    import torch

    kind = {"float32": torch.float32, "float64": torch.float64}[dtype]
    cos = torch.nn.functional.cosine_similarity(clean.to(kind), noisy.to(kind), dim=-1)
    return (1.0 - cos).double().cpu().numpy()


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "rigid",
    "class": "RIGID",
    "summary": "RIGID (He et al. 2024): training-free; 1 - cos of DINOv2 embeddings of an image and its noisy copy.",
    "paper": "He, Chen, Ho (arXiv 2405.20112)",
    "year": 2024,
    "training": "training-free",
}


class RIGID(Detector):
    """RIGID (He et al. 2024), training-free: 1 - cosine similarity of an image's and its noisy copy's embeddings."""

    name = REGISTRATION["name"]
    version = 1
    Config = RIGIDConfig
    summary = REGISTRATION["summary"]
    probability_scores = False  # 1 - cos of two embeddings: in [0, 2], as the original scores
    tiny_settings: ClassVar[dict[str, Any]] = {"backbone": "timm:vit_small_patch14_dinov2@random", "input_size": 28}
    training_free = True
    # The demo: the bundled EfficientNet-Lite0 (the only pretrained backbone offline) at the demo's 128 px.
    profile_defaults = {"small": {"backbone": "timm:efficientnet_lite0@bundled", "input_size": 128}}

    def setup(self, ctx: RunContext) -> None:
        """Load the embedding network at ``input_size`` (square resize, no crop) and note whether it is a stand-in.

        Args:
            ctx: the run context (device and the seed of the noise draws).

        Raises:
            ConfigError: the backbone does not offer the configured embedding.
        """
        from detbench.config import ConfigError
        from detbench.models.backbones import load_backbone
        from detbench.models.precision import resolve_precision

        c = self.config
        self.backbone = load_backbone(c.backbone, device="cpu", crop=c.input_size, resize="stretch")
        self.backbone.preprocess = dataclasses.replace(self.backbone.preprocess, interpolation=c.interpolation)
        self.embedding = c.embedding or self.backbone.default_embedding
        if self.embedding not in self.backbone.embeddings:
            raise ConfigError(f"embedding {self.embedding!r} not offered by {self.backbone.spec}; "
                              f"choose one of {', '.join(self.backbone.embeddings)}")
        self.precision = resolve_precision(c.precision, ctx.device)
        self.seed = ctx.seed  # of the noise draws; a saved fit restores it (detbench predict scores as the run did)
        bb = self.backbone
        self.stand_in = None if (bb.provider, bb.arch) == ORIGINAL_BACKBONE and bb.pretrained else (
            f"{bb.identity_spec} instead of the authors' DINOv2 ViT-L/14")

    def identity(self) -> dict[str, Any]:
        """What enters the run identity beyond the config.

        Returns:
            The backbone identity, embedding, precision, how the noise is drawn, and the stand-in note (None for
            the authors' DINOv2 ViT-L/14).
        """
        return {"backbone": self.backbone.identity(), "embedding": self.embedding, "precision": self.precision,
                "noise_draw": "N(0, 1) per image, seeded by (run seed, image id), added after normalisation",
                "stand_in": self.stand_in}

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Nothing to learn (training-free): the training rows are ignored.

        Args:
            train: the training rows (counted only).
            heldout: the held-out rows (unused).
            ctx: the run context (unused).

        Returns:
            Facts saying nothing was trained, how many training rows were ignored, and the stand-in note.
        """
        return {"trained": False, "training_free": True, "ignored_train_rows": int(len(train)),
                "stand_in": self.stand_in}

    def predict(self, rows: pd.DataFrame, ctx: RunContext) -> tuple[np.ndarray, dict[int, str]]:
        """``1 - cos`` of the embeddings of each image and of its copy with seeded noise added after normalisation.

        Args:
            rows: the rows to score.
            ctx: the run context.

        Returns:
            Scores (higher: more likely fake; NaN where an image failed) and failure reasons by row position.
        """
        import torch

        from detbench.data.loading import HalveOnOom, ImageRowsDataset, iterate_batches, tune_cpu_allocator
        from detbench.models.precision import autocast

        device = ctx.device
        if device == "cpu":
            tune_cpu_allocator()
        self.backbone.model.to(device).eval()
        ids = rows["image_id"].astype(str).tolist()
        dataset = ImageRowsDataset(ctx.suite_root, rows["path"].tolist(), self.backbone.preprocess.eval_transform(),
                                   image_ids=ids, perturb=ctx.perturbation)
        scores = np.full(len(rows), np.nan)
        failures: dict[int, str] = {}
        cuda = device.startswith("cuda")
        embed = HalveOnOom(lambda x: self.backbone.embed(x, self.embedding).float())
        with ctx.phases.phase(f"score rigid ({ctx.stage})", len(rows)) as advance, torch.inference_mode(), \
                autocast(self.precision, device):
            for batch in iterate_batches(dataset, batch_size=ctx.batch_size or self.config.batch_size,
                                         workers=ctx.workers, pin_memory=cuda):
                failures.update({int(i): reason for i, reason in batch.failures})
                if batch.x is not None:
                    x = batch.x
                    eps = torch.stack([noise_for(ids[i], self.seed, tuple(x.shape[1:])) for i in batch.indices])
                    both = torch.cat([x, x + self.config.noise * eps]).to(device, non_blocking=cuda)
                    feats = embed(both)
                    clean, noisy = feats[: len(x)], feats[len(x):]
                    scores[batch.indices] = embedding_distance(clean, noisy, self.config.cos_dtype)
                advance(len(batch.indices) + len(batch.failures))
        return scores, failures

    def cost_forward(self, ctx: RunContext, generator: str) -> CostForward:
        """Both embeddings of one image, clean and noisy, in one batch as :meth:`predict` computes them.

        Args:
            ctx: the evaluation's run context (unused).
            generator: the generator of the image counted (unused: every image is preprocessed alike).

        Returns:
            The two embedding passes; trainable: none (training-free).
        """
        import torch

        from detbench.kit.cost import CostForward

        def both(x: Any) -> Any:
            noisy = x + self.config.noise * torch.zeros_like(x)  # the draw's values change no count
            return self.backbone.embed(torch.cat([x, noisy]), self.embedding)

        return CostForward(both, self.backbone.preprocess.eval_transform(), (self.backbone.model,), trainable=0,
                           note="two forwards per image: the image and its noisy copy")

    def save(self, directory: Path) -> None:
        """Write the noise seed and the stand-in note (JSON); nothing is learnt.

        Args:
            directory: the state folder (created if missing).
        """
        directory.mkdir(parents=True, exist_ok=True)
        facts = {"training_free": True, "noise_seed": self.seed, "stand_in": self.stand_in}
        (directory / STATE_FILE).write_text(json.dumps(facts))

    def load(self, directory: Path) -> None:
        """Nothing is learnt; only the noise seed of the run is restored.

        Args:
            directory: the state folder written by :meth:`save`.

        Raises:
            WeightsError: the file is unreadable or holds no noise seed.
        """
        path = directory / STATE_FILE
        try:
            self.seed = int(json.loads(path.read_text())["noise_seed"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WeightsError(f"{path} is not a RIGID state (its noise seed): {exc}") from None
