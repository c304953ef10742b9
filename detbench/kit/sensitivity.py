"""Training-free detectors that perturb an image and compare embeddings (RIGID, Contrastive Blur, MINDER).

A real image's embedding moves little when the image is perturbed slightly; a generated one's moves more. A
detector here builds named copies ("views") of each preprocessed image (the clean image, a noisy copy, a blurred
and a sharpened copy ...), embeds all of them in one forward pass and turns the embeddings into a score: higher
means more likely fake. What is shared, stated once:

- the embedding network, its square resize without crop, its interpolation, precision and embedding
  (:class:`SensitivityConfig`), loaded and recorded the same way (identity, the stand-in note);
- the perturbations, applied to the normalised image: seeded Gaussian noise (:func:`noise_for`), a separable
  Gaussian blur (:func:`gaussian_blur`) and unsharp-mask sharpening (:func:`sharpen`) with their settings
  (:class:`BlurConfig`);
- the score of one pair of views, ``1 - cos`` (:func:`embedding_distance`);
- the scoring loop, the (empty) fit and the saved state: only the noise seed, so ``detbench predict`` scores as
  the run did.

A subclass states its views (:meth:`EmbeddingSensitivityDetector.views`), how their embeddings become a score
(:meth:`EmbeddingSensitivityDetector.score`) and how its perturbations are drawn
(:meth:`EmbeddingSensitivityDetector.perturbation_identity`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd

from detbench.errors import WeightsError
from detbench.kit.detector import Detector, RunContext

if TYPE_CHECKING:
    from detbench.kit.cost import CostForward

# DINOv2 ViT-L/14 (torch.hub ``dinov2_vitl14``; timm's conversion holds the same weights): the embedding network
# of RIGID and of Tsai et al.'s Contrastive Blur and MINDER
DINOV2_BACKBONE = "timm:vit_large_patch14_dinov2@lvd142m"
DINOV2_ARCH = ("timm", "vit_large_patch14_dinov2")  # the authors' network, whichever source its weights come from
NOISE_DRAW = "N(0, 1) per image, seeded by (run seed, image id), added after normalisation"
BLUR_VIEW = ("separable Gaussian of the normalised image at the input size, kernel normalised to sum 1; "
             "sharpened = image + amount * (image - blurred)")


@dataclass(frozen=True)
class SensitivityConfig:
    """The embedding network and how images reach it (shared by every perturb-and-compare detector)."""

    backbone: str = DINOV2_BACKBONE  # the embedding network f
    embedding: str = ""  # empty: the backbone's default (timm ViTs: the class token after the final norm)
    input_size: int = 224  # Resize((input_size, input_size)); no crop
    interpolation: Literal["bilinear", "bicubic", "nearest", "lanczos"] = "bilinear"  # of that resize
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"  # forward pass: see detbench.models.precision
    batch_size: int = 64  # images per forward pass (each image runs once per view)
    # the cosine: float32 as RIGID's notebook (cosines that round alike tie); float64 ranks them (a departure)
    cos_dtype: Literal["float32", "float64"] = "float32"

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: ``input_size`` below 8 or ``batch_size`` below 1.
        """
        from detbench.config import ConfigError

        if self.input_size < 8 or self.batch_size < 1:
            raise ConfigError("input_size must be >= 8 and batch_size >= 1")


def validate_noise(noise: float) -> None:
    """Check a noise level.

    Args:
        noise: the standard deviation of the Gaussian noise, in normalised units.

    Raises:
        ConfigError: a negative or non-finite value.
    """
    from detbench.config import ConfigError

    if not (math.isfinite(noise) and noise >= 0):
        raise ConfigError(f"noise must be a finite number >= 0, got {noise}")


@dataclass(frozen=True)
class BlurConfig:
    """The blurred view and what it is compared with (Contrastive Blur: a sharpened copy)."""

    sigma: float = 1.0  # the Gaussian's standard deviation in pixels of the resized (input_size) image
    kernel: int = 0  # the kernel's side in pixels (odd); 0: 2 * ceil(3 * sigma) + 1
    # border handling: reflect (torchvision's), replicate, or zeros (the normalised zero: the mean colour)
    padding: Literal["reflect", "replicate", "zeros"] = "reflect"
    against: Literal["sharpened", "clean"] = "sharpened"  # sharpened: Contrastive Blur; clean: plain blur
    amount: float = 1.0  # sharpened = image + amount * (image - blurred)
    clip: bool = False  # clamp the blurred and sharpened copies to the valid pixel range [0, 1]

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: a non-positive ``sigma``, an even or negative ``kernel``, or a negative ``amount``.
        """
        from detbench.config import ConfigError

        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ConfigError(f"blur.sigma must be a finite number > 0, got {self.sigma}")
        if self.kernel < 0 or (self.kernel and self.kernel % 2 == 0):
            raise ConfigError(f"blur.kernel must be odd (or 0: from sigma), got {self.kernel}")
        if not (math.isfinite(self.amount) and self.amount >= 0):
            raise ConfigError(f"blur.amount must be a finite number >= 0, got {self.amount}")

    @property
    def kernel_size(self) -> int:
        """The kernel's side: ``kernel``, or ``2 * ceil(3 * sigma) + 1`` when it is 0."""
        return self.kernel or 2 * math.ceil(3 * self.sigma) + 1


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


def gaussian_kernel(sigma: float, size: int) -> Any:
    """The 1-D Gaussian of ``size`` taps at integer offsets from the centre, normalised to sum 1 (torchvision's).

    Args:
        sigma: its standard deviation in pixels.
        size: the number of taps (odd).

    Returns:
        A float32 tensor ``[size]``.
    """
    import torch

    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).float()


def gaussian_blur(x: Any, blur: BlurConfig) -> Any:
    """Blur a batch channel by channel with a separable Gaussian.

    Blurring commutes with the per-channel normalisation (the kernel sums to 1 and the border copies the image's
    own pixels), so blurring the normalised image is blurring the pixels; ``zeros`` pads with the mean colour.
    A reflected border needs a pad smaller than the image: on a smaller image it is replicated.

    Args:
        x: ``[B, C, H, W]`` images.
        blur: the kernel and the border handling.

    Returns:
        The blurred batch, same shape and dtype.
    """
    import torch.nn.functional as F

    size = blur.kernel_size
    half = size // 2
    k = gaussian_kernel(blur.sigma, size).to(device=x.device, dtype=x.dtype)
    c = x.shape[1]
    mode = {"reflect": "reflect", "replicate": "replicate", "zeros": "constant"}[blur.padding]
    if mode == "reflect" and half >= min(x.shape[-2:]):  # reflection needs a pad smaller than the image
        mode = "replicate"
    padded = F.pad(x, (half, half, half, half), mode=mode)
    out = F.conv2d(padded, k.view(1, 1, 1, size).expand(c, 1, 1, size), groups=c)
    return F.conv2d(out, k.view(1, 1, size, 1).expand(c, 1, size, 1), groups=c)


def sharpen(x: Any, blurred: Any, amount: float) -> Any:
    """Unsharp masking: ``x + amount * (x - blurred)`` (amount 1: as far from ``x`` as the blurred copy, opposite).

    Args:
        x: the images.
        blurred: their blurred copies.
        amount: how much of the detail ``x - blurred`` is added.

    Returns:
        The sharpened images.
    """
    return x + amount * (x - blurred)


def embedding_distance(a: Any, b: Any, dtype: str) -> np.ndarray:
    """``1 - cos`` of each image's two embeddings (RIGID's score).

    Args:
        a: ``[N, D]`` embeddings of one view of the images.
        b: ``[N, D]`` embeddings of another view.
        dtype: ``float32`` (RIGID's notebook: ``F.cosine_similarity`` of float32 embeddings) or ``float64``.

    Returns:
        ``[N]`` float64 scores.
    """
    import torch

    kind = {"float32": torch.float32, "float64": torch.float64}[dtype]
    cos = torch.nn.functional.cosine_similarity(a.to(kind), b.to(kind), dim=-1)
    return (1.0 - cos).double().cpu().numpy()


class EmbeddingSensitivityDetector(Detector):
    """Training-free: scores how far an image's embedding moves between views of it (higher: more likely fake).

    Subclasses set ``state_label`` (how a damaged state is named) and implement :meth:`views`, :meth:`score` and
    :meth:`perturbation_identity`; their ``Config`` extends :class:`SensitivityConfig`.
    """

    training_free = True
    probability_scores = False  # 1 - cos of two embeddings: in [0, 2]
    tiny_settings: ClassVar[dict[str, Any]] = {"backbone": "timm:vit_small_patch14_dinov2@random", "input_size": 28}
    # The demo: the bundled EfficientNet-Lite0 (the only pretrained backbone offline) at the demo's 128 px.
    profile_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "small": {"backbone": "timm:efficientnet_lite0@bundled", "input_size": 128}}
    state_file: ClassVar[str]
    state_label: ClassVar[str]

    @abstractmethod
    def views(self, x: Any, ids: list[str]) -> dict[str, Any]:
        """The copies of a batch to embed, by name.

        Args:
            x: ``[B, 3, H, W]`` normalised images.
            ids: their content ids (the seeds of per-image draws).

        Returns:
            Name -> ``[B, 3, H, W]`` tensor (the clean batch itself where a view is the image).
        """

    @abstractmethod
    def score(self, feats: dict[str, Any]) -> np.ndarray:
        """Turn the embeddings of the views into scores.

        Args:
            feats: view name -> ``[B, D]`` float32 embeddings.

        Returns:
            ``[B]`` float64 scores, higher: more likely fake.
        """

    @abstractmethod
    def perturbation_identity(self) -> dict[str, Any]:
        """How the perturbations are made, beyond the config (part of the run identity).

        Returns:
            JSON-serialisable facts.
        """

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
        self.stand_in = None if (bb.provider, bb.arch) == DINOV2_ARCH and bb.pretrained else (
            f"{bb.identity_spec} instead of the authors' DINOv2 ViT-L/14")

    def identity(self) -> dict[str, Any]:
        """What enters the run identity beyond the config.

        Returns:
            The backbone identity, embedding, precision, how the perturbations are made, and the stand-in note
            (None for the authors' DINOv2 ViT-L/14).
        """
        return {"backbone": self.backbone.identity(), "embedding": self.embedding, "precision": self.precision,
                **self.perturbation_identity(), "stand_in": self.stand_in}

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

    def pixel_range(self) -> tuple[Any, Any]:
        """Where pixel values 0 and 1 lie after the backbone's normalisation.

        Returns:
            ``(low, high)``, each ``[1, 3, 1, 1]`` float32.
        """
        import torch

        pre = self.backbone.preprocess
        mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1)
        return (0 - mean) / std, (1 - mean) / std

    def blur_views(self, x: Any, blur: BlurConfig) -> dict[str, Any]:
        """The blurred copy of a batch and, for Contrastive Blur, its sharpened copy.

        Args:
            x: ``[B, 3, H, W]`` normalised images.
            blur: the blur settings.

        Returns:
            ``{"blurred": ..., "sharpened": ...}`` (``against=sharpened``) or ``{"blurred": ...}``
            (``against=clean``), clamped to the valid pixel range with ``clip``.
        """
        blurred = gaussian_blur(x, blur)
        out = {"blurred": blurred}
        if blur.against == "sharpened":
            out["sharpened"] = sharpen(x, blurred, blur.amount)
        if blur.clip:
            low, high = self.pixel_range()
            out = {k: v.clamp(min=low, max=high) for k, v in out.items()}
        return out

    def blur_distance(self, feats: dict[str, Any], blur: BlurConfig) -> np.ndarray:
        """``1 - cos`` of the blurred copy and what ``blur.against`` names (the sharpened copy or the image).

        Args:
            feats: view name -> embeddings (``blurred`` and ``sharpened`` or ``clean``).
            blur: the blur settings.

        Returns:
            ``[B]`` float64 distances.
        """
        return embedding_distance(feats["blurred"], feats[blur.against], self.config.cos_dtype)

    def noisy_view(self, x: Any, ids: list[str], noise: float) -> Any:
        """The batch with each image's seeded noise times ``noise`` added after normalisation (not clipped).

        Args:
            x: ``[B, 3, H, W]`` normalised images.
            ids: their content ids.
            noise: the noise's standard deviation in normalised units.

        Returns:
            The noisy batch.
        """
        import torch

        eps = torch.stack([noise_for(i, self.seed, tuple(x.shape[1:])) for i in ids])
        return x + noise * eps

    def predict(self, rows: pd.DataFrame, ctx: RunContext) -> tuple[np.ndarray, dict[int, str]]:
        """Embed every view of each image in one forward pass and score the embeddings.

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
        with ctx.phases.phase(f"score {self.name} ({ctx.stage})", len(rows)) as advance, torch.inference_mode(), \
                autocast(self.precision, device):
            for batch in iterate_batches(dataset, batch_size=ctx.batch_size or self.config.batch_size,
                                         workers=ctx.workers, pin_memory=cuda):
                failures.update({int(i): reason for i, reason in batch.failures})
                if batch.x is not None:
                    views = self.views(batch.x, [ids[i] for i in batch.indices])
                    n = len(batch.x)
                    feats = embed(torch.cat(list(views.values())).to(device, non_blocking=cuda))
                    scores[batch.indices] = self.score(
                        {name: feats[k * n:(k + 1) * n] for k, name in enumerate(views)})
                advance(len(batch.indices) + len(batch.failures))
        return scores, failures

    def cost_forward(self, ctx: RunContext, generator: str) -> CostForward:
        """Every view of one image embedded in one batch, as :meth:`predict` computes them.

        Args:
            ctx: the evaluation's run context (unused).
            generator: the generator of the image counted (unused: every image is preprocessed alike).

        Returns:
            The views' copies (blurs included) and their embedding passes; trainable: none (training-free).
        """
        import torch

        from detbench.kit.cost import CostForward

        def every_view(x: Any) -> Any:
            views = self.views(x, ["cost"] * len(x))  # the draws' values change no count
            return self.backbone.embed(torch.cat(list(views.values())), self.embedding)

        return CostForward(every_view, self.backbone.preprocess.eval_transform(), (self.backbone.model,),
                           trainable=0, note="one embedding pass per view of each image (e.g. clean and noisy)")

    def save(self, directory: Path) -> None:
        """Write the noise seed and the stand-in note (JSON); nothing is learnt.

        Args:
            directory: the state folder (created if missing).
        """
        directory.mkdir(parents=True, exist_ok=True)
        facts = {"training_free": True, "noise_seed": self.seed, "stand_in": self.stand_in}
        (directory / self.state_file).write_text(json.dumps(facts))

    def load(self, directory: Path) -> None:
        """Nothing is learnt; only the noise seed of the run is restored.

        Args:
            directory: the state folder written by :meth:`save`.

        Raises:
            WeightsError: the file is unreadable or holds no noise seed.
        """
        path = directory / self.state_file
        try:
            self.seed = int(json.loads(path.read_text())["noise_seed"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WeightsError(f"{path} is not a {self.state_label} state (its noise seed): {exc}") from None
