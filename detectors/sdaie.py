"""SDAIE (Zhong et al., "Self-Supervised AI-Generated Image Detection: A Camera Metadata Perspective", TPAMI 2026).

Faithful to the authors' code (Ekko-zn/SDAIE: ``Classifier/``, ``bc_train.py``, ``bc_eval.py``, ``oc_funs.py``,
``utils.py``). The network is in :mod:`detbench.detectors.sdaie_net`: an extractor of 64 x 64 patches (SRM
residuals, LayerNorm convolutions, covariance square root, a small transformer over the patch tokens) pretrained
on camera photographs to predict their EXIF tags. Two detectors use it (``variant``):

- ``binary`` (``bc_train.py`` / ``bc_eval.py``): a classifier of the same architecture (``fc``: two logits,
  real then fake) trained from scratch with cross-entropy plus ``regulariser_weight`` (the original's ``alpha``,
  0.05) times the summed mean squared differences between its intermediate maps (after conv groups 2-5 and the
  covariance layer) and those of the frozen pretext extractor (``--set extractor=FILE``). P(fake) =
  ``softmax(logits)[1]`` in float32, as ``1 - softmax(out)[:, 0]``. Released ``weights``: ``bc_eval.py``'s
  checkpoint ``{'state_net': combonet.state_dict()}`` (``module.`` prefixes from DistributedDataParallel removed),
  both extractors and ``fc``, loaded strictly.
- ``one-class`` (``oc_main.py`` / ``oc_funs.py``): the pretext extractor's 528-d feature (``--set extractor=FILE``,
  the released ``backbone`` checkpoint ``{'state_net': diffextractor.state_dict()}``: ``backbone.*`` and the 14
  EXIF heads ``fc1`` .. ``fc14``, loaded strictly), a scikit-learn ``GaussianMixture`` (5 full-covariance
  components, ``k-means++`` initialisation, ``random_state`` 42) fitted on the features of the real training
  images, and the threshold: the log-likelihood of the training real at index ``int(0.02 N)`` in ascending order
  (``val_GMM_sklearn``). The original calls an image real iff its log-likelihood exceeds the threshold; detbench's
  P(fake) is :func:`detbench.kit.mixture.one_class_probability`, a softsign of ``(threshold - loglik) / scale`` in
  float64 (above 0.5 iff the log-likelihood is below the threshold, so accuracy at 0.5 is the original's; ranks
  kept as the raw log-likelihood's), ``scale`` the standard deviation of the training reals' log-likelihoods unless
  ``score_scale`` is set.

The extractor either loads (``extractor=FILE``) or trains first on the EXIF tags the index recorded for the real
training images (``extractor=pretext``: :mod:`detbench.detectors.sdaie_pretext`).

Evaluation preprocessing (both variants, every test set alike): the image at its own size, a side under 64
resized to 64 x 64, otherwise centre-cropped to multiples of 64 with the original's swapped ``(width, height)``
order (``crop_axes``), CLIP normalisation, all non-overlapping 64 x 64 patches in row order (at most 40000 for
``binary``, 20000 for ``one-class``). Nothing is random at evaluation: no seed enters the scores. Training scrambles:
16 random 64 x 64 crops of the augmented image (resize 30 %, blur 10 %, JPEG 90-99 25 %).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from detbench.config import ConfigError
from detbench.detectors.sdaie_net import AdaptivePatches, BinaryNet, PretextNet, RandomPatches
from detbench.kit.classifier import ClassifierDetector, EvalPreprocessing
from detbench.kit.detector import RunContext
from detbench.kit.exif_pretext import EXTRACTOR_FILE, PRETEXT
from detbench.kit.schedules import StepDecaySchedule
from detbench.kit.training import TrainSetup, cross_entropy
from detbench.probabilities import finite_rows, score_finite_rows, softmax_fake


@dataclass(frozen=True)
class SDAIEConfig:
    """SDAIE options: the variant, released files, evaluation patches, binary training and the one-class mixture."""

    variant: Literal["binary", "one-class"] = "binary"
    weights: str = ""  # binary: released classifier checkpoint (bc_eval.py's)[#sha256=HEX]; empty: train
    extractor: str = ""  # the pretext-trained backbone checkpoint (backbone_train.py's)[#sha256=HEX], or "pretext"
    crop_axes: Literal["swapped", "height-width"] = "swapped"  # swapped: the original's CenterCrop((W', H'))
    max_patches: int = 0  # evaluation patches per image; 0: the variant's (binary 40000, one-class 20000)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"  # fp32: the original
    sigmoid_dtype: Literal["float32", "float64"] = "float32"  # the binary softmax: float32 as bc_eval.py
    batch_size: int = 1  # evaluation images per forward (the original: 1; images of one size batch together)
    # binary training (bc_train.py: 8 processes x 100 images, Adam lr 1e-3, 15 epochs, the last kept)
    regulariser_weight: float = 0.05  # alpha: 0 trains without the pretext extractor
    lr: float = 1e-3
    train_batch_size: int = 800
    epochs: int = 15
    train_patches: int = 16
    resize_prob: float = 0.3
    blur_prob: float = 0.1
    jpeg_prob: float = 0.25
    jpeg_quality_min: int = 90
    jpeg_quality_max: int = 99
    checkpoint_every: int = 500
    # extractor=pretext: the EXIF pretext training on the real training images (backbone_train.py; see sdaie_pretext)
    pretext_ranked: str = ("ExposureTime,FNumber,ISOSpeedRatings,FocalLength,ExposureBiasValue,MaxApertureValue,"
                           "FocalLengthIn35mmFilm")  # the 7 ranked tags (the code's JSON names none of them)
    pretext_steps: int = 10000
    pretext_batch_size: int = 512  # pairs per step (the original: 8 processes x 64)
    pretext_lr: float = 1e-4
    # one-class mixture (oc_funs.py train_GMM_sklearn / val_GMM_sklearn)
    gmm_components: int = 5
    gmm_covariance: Literal["full", "tied", "diag", "spherical"] = "full"
    gmm_init: Literal["k-means++", "kmeans", "random", "random_from_data"] = "k-means++"
    gmm_seed: int = 42  # the original's random_state (fixed, not the run seed)
    gmm_max_iter: int = 100
    gmm_reg_covar: float = 1e-6
    threshold_quantile: float = 0.02  # the threshold is the training reals' log-likelihood at index int(q N)
    score_scale: float = 0.0  # P(fake) = softsign((threshold - loglik) / scale); 0: the training reals' std

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: naming every option out of range.
        """
        checks = [
            (self.variant == "binary" or not self.weights,
             "weights only with variant=binary (one-class loads its backbone with --set extractor=FILE)"),
            (not (self.weights and self.extractor),
             "weights or extractor, not both (the classifier checkpoint holds its own pretext extractor)"),
            (self.max_patches >= 0 and self.batch_size >= 1, "max_patches >= 0 (0: the variant's), batch_size >= 1"),
            (self.regulariser_weight >= 0 and self.lr > 0, "regulariser_weight >= 0 and lr > 0"),
            (self.train_batch_size >= 1 and self.epochs >= 1 and self.train_patches >= 1,
             "train_batch_size, epochs and train_patches >= 1"),
            (all(0 <= p <= 1 for p in (self.resize_prob, self.blur_prob, self.jpeg_prob)),
             "resize_prob, blur_prob and jpeg_prob in [0, 1]"),
            (1 <= self.jpeg_quality_min <= self.jpeg_quality_max <= 100,
             "1 <= jpeg_quality_min <= jpeg_quality_max <= 100"),
            (self.checkpoint_every >= 0, "checkpoint_every >= 0 (0: off)"),
            (_ranked_ok(self.pretext_ranked), "pretext_ranked: 7 distinct tags of detbench.data.images.EXIF_TAGS, "
             "none of the classified ones (Make, Model, Flash, MeteringMode, ExposureMode, WhiteBalance, "
             "SceneCaptureType)"),
            (self.pretext_steps >= 1 and self.pretext_batch_size >= 1 and self.pretext_lr > 0,
             "pretext_steps, pretext_batch_size >= 1 and pretext_lr > 0"),
            (self.gmm_components >= 1 and self.gmm_max_iter >= 1 and self.gmm_reg_covar >= 0,
             "gmm_components >= 1, gmm_max_iter >= 1, gmm_reg_covar >= 0"),
            (0 <= self.threshold_quantile < 1 and self.score_scale >= 0,
             "0 <= threshold_quantile < 1 and score_scale >= 0 (0: the training reals' std)"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ConfigError("sdaie options need " + "; ".join(problems))


def _ranked_ok(spec: str) -> bool:
    """Whether ``spec`` names 7 distinct ranked tags the index records (none of the classified ones)."""
    from detbench.data.images import EXIF_TAGS
    from detbench.detectors.sdaie_pretext import CATEGORICAL, RANKED_POSITIONS

    tags = [t.strip() for t in spec.split(",") if t.strip()]
    classified = {tag for _, tag in CATEGORICAL}
    return (len(tags) == len(RANKED_POSITIONS) and len(set(tags)) == len(tags)
            and all(t in EXIF_TAGS and t not in classified for t in tags))


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "sdaie",
    "class": "SDAIE",
    "summary": (
        "SDAIE (TPAMI 2026): EXIF-pretrained patch-residual extractor; a binary classifier regularised by it, or "
        "a one-class Gaussian mixture on its features of real photos (variant=one-class)."
    ),
    "paper": "Zhong et al., IEEE TPAMI",
    "year": 2026,
    "weights_key": "weights",
    "released": "bc/pretrained.pth (binary), backbone/pretrained.pth (extractor); no licence stated in the repository",
}


class SDAIE(ClassifierDetector):
    """SDAIE (Zhong et al., TPAMI 2026): the binary classifier, or the one-class mixture (``variant``)."""

    name = REGISTRATION["name"]
    version = 1
    Config = SDAIEConfig
    summary = REGISTRATION["summary"]
    follows_eval_profiles = False  # the original scores every test set alike, at native size, in 64 px patches
    file_keys: ClassVar[dict[str, tuple[str, ...]]] = {"weights": (), "extractor": (PRETEXT,)}
    default_holdout = "0"  # bc_train.py trains on the whole training set and keeps the last epoch
    tiny_settings: ClassVar[dict[str, Any]] = {
        "regulariser_weight": 0.0, "epochs": 1, "train_batch_size": 4, "train_patches": 2, "checkpoint_every": 0,
        "batch_size": 4,
    }
    weights_what = "the SDAIE classifier checkpoint"
    weights_fix = ("pass --set weights=/path/to/bc/pretrained.pth (the 'BC classifier checkpoint' linked from the "
                   "README of github.com/Ekko-zn/SDAIE)")
    extractor_what = "the SDAIE pretext backbone checkpoint"
    extractor_fix = ("pass --set extractor=/path/to/backbone/pretrained.pth (the 'backbone checkpoint' linked from "
                     "the README of github.com/Ekko-zn/SDAIE), or --set extractor=pretext to train it on the EXIF "
                     "tags of the real training images")
    profile_defaults = {
        # "small" (the demo): no pretext backbone file is available offline and the demo's PNGs carry no EXIF to
        # pretrain one, so the demo trains the binary classifier without the regulariser, on 2 patches per image,
        # for 4 epochs in batches of 16 images.
        "small": {"regulariser_weight": 0.0, "train_patches": 2, "train_batch_size": 16, "epochs": 4,
                  "checkpoint_every": 20, "batch_size": 8},
    }

    @property
    def one_class(self) -> bool:
        """Whether this is the one-class variant."""
        return self.config.variant == "one-class"

    def patches_cap(self) -> int:
        """The evaluation patch limit: the setting, or the variant's (``bc``: 40000, ``oc``: 20000)."""
        return self.config.max_patches or (20000 if self.one_class else 40000)

    # ---- network and preprocessing

    def build_network(self) -> nn.Module:
        """``combonet`` (binary) or ``diffextractor`` (one-class), PyTorch's default initialisation as the original.

        Returns:
            The :class:`~detbench.detectors.sdaie_net.BinaryNet` or :class:`~detbench.detectors.sdaie_net.PretextNet`.
        """
        return PretextNet() if self.one_class else BinaryNet()

    def prepare_training(self, ctx: RunContext) -> dict[str, Any]:
        """Load the pretext extractor (the one-class variant's features, the binary regulariser's reference), or
        with ``extractor=pretext`` set up the network that :meth:`fit` trains on the EXIF tags first.

        Args:
            ctx: the run context.

        Returns:
            The extractor file's sha256 (part of the identity) and path (recorded with the fit), or ``pretext``.

        Raises:
            WeightsError: no extractor file where one is needed, or one that does not fit ``diffextractor``.
        """
        from detbench.errors import WeightsError
        from detbench.models.weights import load_checkpoint_file, load_into

        c = self.config
        self.pretext: PretextNet | None = None
        if c.extractor == PRETEXT:  # trained in fit, on the training rows
            self.pretext = self.net if self.one_class else PretextNet()
            return {"extractor": PRETEXT}
        if not c.extractor:
            if self.one_class:
                raise WeightsError(f"sdaie variant=one-class needs the pretext backbone: {self.extractor_fix}")
            if c.regulariser_weight > 0:
                raise WeightsError(f"sdaie training regularises with the pretext backbone: {self.extractor_fix}, "
                                   "or --set regulariser_weight=0 to train without it")
            return {}
        loaded = load_checkpoint_file(c.extractor, what=self.extractor_what, fix=self.extractor_fix, key="extractor")
        pretext = self.net if self.one_class else PretextNet()
        load_into(pretext, loaded.state_dict, f"{self.extractor_what} {loaded.path}")
        if not self.one_class:
            self.net.diffusionextractor_pretrained.load_state_dict(pretext.backbone.state_dict())
        return {"extractor_sha256": loaded.sha256, "extractor_path": str(loaded.path)}

    def eval_preprocessing(self, ctx: RunContext) -> EvalPreprocessing:
        """The original's ``_adaptivepatch``: native size, 64 px patches (see :class:`AdaptivePatches`).

        Args:
            ctx: the run context (unused: every test set alike).

        Returns:
            The preprocessing, batched by shape (images with as many patches batch together).
        """
        c = self.config
        transform = AdaptivePatches(self.patches_cap(), swapped_crop=c.crop_axes == "swapped")
        facts = {"patches": "all 64 px, row order", "max_patches": self.patches_cap(), "crop_axes": c.crop_axes,
                 "small_sides": "resized to 64 x 64", "normalisation": "clip"}
        return EvalPreprocessing(transform, by_shape=True, facts=facts)

    def input_size(self, ctx: RunContext, generator: str) -> int | None:
        """None: the network scores every 64 px patch of the image at its own size, not one square input."""
        return None

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """P(fake) = ``softmax(logits)[:, 1]`` in ``sigmoid_dtype``.

        Args:
            logits: ``[N, 2]`` (real, fake).

        Returns:
            P(fake) per image.
        """
        return softmax_fake(logits, self.config.sigmoid_dtype)

    # ---- binary training

    def train_setup(self, ctx: RunContext, train: pd.DataFrame) -> TrainSetup:
        """``bc_train.py``'s recipe: Adam at a constant rate, cross-entropy plus the weighted regulariser, the last
        epoch kept, incomplete batches dropped.

        Args:
            ctx: the run context.
            train: the training rows.

        Returns:
            The :class:`~detbench.kit.training.TrainSetup`.
        """
        c = self.config
        net: BinaryNet = self.net
        weight = c.regulariser_weight
        net.regularise = weight > 0

        def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            value = cross_entropy(logits, labels)
            distance = net.take_distance()
            return value if distance is None or weight == 0 else value + weight * distance

        trainable = [p for p in net.parameters() if p.requires_grad]
        augment = RandomPatches(c.train_patches, c.resize_prob, c.blur_prob, c.jpeg_prob,
                                (c.jpeg_quality_min, c.jpeg_quality_max))
        return TrainSetup(
            model=net, optimizer=torch.optim.Adam(trainable, lr=c.lr),
            schedule=StepDecaySchedule(c.lr, every=0, factor=1.0), train_transform=augment,
            heldout_transform=self.preprocessing.transform, heldout_by_shape=True, loss=loss,
            probabilities=self.probabilities, epochs=c.epochs, batch_size=c.train_batch_size,
            keep="last", drop_last=True, checkpoint_every=c.checkpoint_every, heldout_batch_size=c.batch_size,
            precision=self.precision, name=self.name)

    # ---- the one-class variant

    def needs_training(self) -> bool:
        """Binary: only without released ``weights``; one-class: always (the mixture fits the real training images).

        Returns:
            Whether the run needs training rows.
        """
        return self.one_class or super().needs_training()

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Binary: :meth:`ClassifierDetector.fit`. One-class: the mixture on the real training images' features.

        Args:
            train: the training rows (one-class: its reals are used).
            heldout: unused by the one-class variant.
            ctx: the run context.

        Returns:
            Facts for the run record.
        """
        pretext = self._train_pretext(train, ctx)
        if not self.one_class:
            return {**super().fit(train, heldout, ctx), **pretext}
        from detbench.kit.mixture import RealMixture

        reals = train[train["label"] == 0].sort_values("path", kind="stable")
        feats, failures = self._features(reals, ctx, "fit")
        ok = finite_rows(feats)
        c = self.config
        self.mixture = RealMixture.fit(
            feats[ok], components=c.gmm_components, covariance=c.gmm_covariance, seed=c.gmm_seed,
            false_alarm=c.threshold_quantile, who="sdaie one-class", init=c.gmm_init, max_iter=c.gmm_max_iter,
            reg_covar=c.gmm_reg_covar, scale=c.score_scale)
        return {"weights": "gmm", "trained": True, **self.training_facts, **pretext, "n_real_train": int(ok.sum()),
                "feature_failures": len(failures), "gmm": self.mixture.facts(),
                "eval_preprocessing": self.preprocessing.facts}

    def _train_pretext(self, train: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """With ``extractor=pretext``: the EXIF pretext training on the real training rows, its backbone then the
        one-class features' or the binary regulariser's (:func:`detbench.detectors.sdaie_pretext.train_pretext`).

        Returns:
            ``{"pretext": facts}``, or nothing without pretext training.
        """
        if getattr(self, "pretext", None) is None or self.released is not None:
            return {}
        from detbench.detectors.sdaie_pretext import train_pretext

        reals = train[train["label"] == 0].sort_values("path", kind="stable").reset_index(drop=True)
        facts = train_pretext(self.pretext, reals, ctx, self.config, self.precision)
        if not self.one_class:
            self.net.diffusionextractor_pretrained.load_state_dict(self.pretext.backbone.state_dict())
        return {"pretext": facts}

    def _features(self, rows: pd.DataFrame, ctx: RunContext, stage: str) -> tuple[np.ndarray, dict[int, str]]:
        """The extractor's 528-d features of ``rows`` (NaN rows where an image failed)."""
        from detbench.kit.scoring import score_logits

        self._to(ctx.device)
        self.net.eval()
        return score_logits(self.net, rows, ctx, self.preprocessing.transform, device=ctx.device,
                            precision=self.precision, batch_size=ctx.batch_size or self.config.batch_size,
                            perturb=ctx.perturbation if stage == "eval" else None, by_shape=True,
                            description=f"{stage} {self.name} features")

    def predict(self, rows: pd.DataFrame, ctx: RunContext) -> tuple[np.ndarray, dict[int, str]]:
        """Binary: the classifier's P(fake). One-class: :meth:`detbench.kit.mixture.RealMixture.probability`.

        Args:
            rows: the rows to score.
            ctx: the run context.

        Returns:
            Scores (NaN where an image could not be used) and failure reasons by row position.
        """
        if not self.one_class:
            return super().predict(rows, ctx)
        feats, failures = self._features(rows, ctx, "eval")
        return score_finite_rows(feats, self.mixture.probability), failures

    def save(self, directory: Path) -> None:
        """Binary: :meth:`ClassifierDetector.save`. One-class: the mixture (safetensors) and threshold (JSON).

        Args:
            directory: the state folder.
        """
        if not self.one_class:
            return super().save(directory)
        self.mixture.save(directory)
        if self.config.extractor == PRETEXT:
            from safetensors.torch import save_file as save_tensors

            state = {k: v.detach().to("cpu").contiguous() for k, v in self.net.state_dict().items()}
            save_tensors(state, str(directory / EXTRACTOR_FILE))
        return None

    def load(self, directory: Path) -> None:
        """Restore :meth:`save`'s state (one-class: the mixture, checked against the settings).

        Args:
            directory: the state folder.

        Raises:
            WeightsError: an unreadable state, or one that is not this configuration's mixture.
        """
        if not self.one_class:
            return super().load(directory)
        from detbench.kit.mixture import RealMixture

        c = self.config
        self.mixture = RealMixture.load(directory, components=c.gmm_components, covariance=c.gmm_covariance,
                                        who="SDAIE one-class")
        if self.config.extractor == PRETEXT:
            from detbench.models.weights import load_into, load_state_dict_safely

            saved = load_state_dict_safely(directory / EXTRACTOR_FILE)
            load_into(self.net, saved, f"{self.name} extractor {directory}")
        return None

    def cost_forward(self, ctx: RunContext, generator: str) -> Any:
        """The network on one image's patches (one-class: the extractor, whose heads never run).

        Args:
            ctx: the evaluation's run context.
            generator: the generator of the image counted.

        Returns:
            The :class:`~detbench.kit.cost.CostForward`.
        """
        from detbench.kit.cost import CostForward

        if not self.one_class:
            return super().cost_forward(ctx, generator)
        note = "the Gaussian mixture's log-likelihood (numpy) is not counted"
        return CostForward(self.net, self.preprocessing.transform, (self.net.backbone,), trainable=0,
                           native_size=True, note=note)


