"""BLADES (Zou et al., "Bi-Level Optimization for Self-Supervised AI-Generated Face Detection", ICCV 2025).

Faithful to the authors' code (MZMMSEC/AIGFD_BLO, Apache-2.0: ``model.py``, ``BC_MLP.py``, ``OC_GMM.py``,
``dataset/OC_dataset.py``). A face detector: it runs on suites whose ``content`` fact is ``faces`` (the runner
refuses other suites unless ``--set allow_non_faces=true``, which the run identity records).

- **Feature extractor** (``CLIP_EXIF_Net.encode_image``): torchvision's ResNet-50 (keys ``conv1``, ``bn1``,
  ``layer1..4``, ``fc``) whose ``fc`` is ``Linear(2048, 768)``, under ``model.visual``; the 768-d output divided by
  its L2 norm. The network was pre-trained by the bi-level pretext tasks (EXIF tags and face manipulations); the
  checkpoint also holds CLIP RN50's text tower (``token_embedding``, ``positional_embedding``, ``transformer``,
  ``ln_final``, ``text_projection``, ``logit_scale``) and ``text_fc``, which no detection forward reads: they are
  dropped by name (and said so), every other tensor loads strictly.
- **BC-MLP** (``variant=bc``, ``model.BC_MLP``): ``fc2(relu(fc1(f)))`` on the normalised features, 768 -> 1536 ->
  2; P(fake) = ``softmax[:, 1]`` (float32, as ``BC_MLP.py``). Released ``BC.pth``: ``{'model': state_dict}`` with
  the extractor under ``model.model.`` and ``fc1.*``, ``fc2.*``.
- **OC-GMM** (``variant=oc``, ``OC_GMM.py``): scikit-learn's ``GaussianMixture(n_components=10,
  init_params='k-means++', random_state=2024)`` (full covariances) fitted on the normalised features of real
  training faces (the first ``gmm_images``, 25000 in the original); an image's log-likelihood ``log p``. The original
  calls a face real when ``log p`` reaches the threshold at which ``false_alarm`` (5 %) of the real training faces
  fall below it. detbench's score is :func:`detbench.kit.mixture.one_class_probability` of ``(threshold - log p) /
  s``, ``s`` the standard deviation of the real training log-likelihoods: it ranks images exactly as the negative
  log-likelihood does (AUC and AP are the original's) and crosses 0.5 at the original's threshold (its accuracy).
  Released ``OC.pth``: ``{'model': state_dict}`` of ``CLIP_EXIF_Net`` (the extractor under ``model.visual``).
- **Evaluation** (``GatherDataset``'s ``_transform(224)``): ``ToTensor``, then ``Resize((224, 224))`` of the tensor
  (bilinear; the original's torchvision 0.14 had no antialias for tensors, hence ``antialias=false``), then CLIP's
  mean/std; for every test set.

Not in the repository, so detbench's own (recorded): the BC-MLP's training. Without ``weights`` the MLP trains on
the frozen extractor of ``extractor`` (a ``CLIP_EXIF_Net`` checkpoint such as ``OC.pth``, ``random``: a seeded
torchvision initialisation, a stand-in, or ``pretext``): Adam (lr 1e-4), cross-entropy on the two logits, the
evaluation transform, the epoch with the best held-out accuracy kept.

``extractor=pretext`` (either variant) first trains the extractor by the bi-level pretext training (``SSL_training.py``,
``BLO.py``: :mod:`detbench.detectors.blades_pretext`) on the real training faces, their EXIF tags as the index
recorded them, and their manipulated copies from the folder ``manipulated`` (``<name>_0..3.png``, the code's
``face_dataaug_neg``; generating them needs facial landmarks detbench does not have), starting from ``pretext_init``
(``imagenet``, the code's ``resnet50(pretrained=True)``, by default; a checkpoint's image tower under
``model.visual.``; or ``random``, a stand-in); the trained extractor is saved with the fit (``extractor.safetensors``)
and the folder's files are hashed into the run identity (for training only: scoring a finished run takes the digest
from its record). What differs from
the code (the ordinal levels, the EXIF class mapping, two fine-grained regions, no bounding-box crop) is listed in
that module and the README. The prompts are scored by CLIP RN50's text tower and ``text_fc`` as the code's
(``pretext_text``, ``pretext_freeze_text``); the saved extractor holds that trained text side under
``CLIP_EXIF_Net``'s names, so it loads where ``OC.pth`` does (``extractor=FILE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from detbench.config import ConfigError
from detbench.kit.classifier import ClassifierDetector, EvalPreprocessing
from detbench.kit.detector import RunContext
from detbench.kit.exif_pretext import EXTRACTOR_FILE, PRETEXT
from detbench.kit.mixture import RealMixture
from detbench.kit.training import TrainableParts
from detbench.models.backbones.open_clip_adapter import CLIP_MEAN, CLIP_STD
from detbench.probabilities import softmax_fake

PRETEXT_INIT = "imagenet"  # pretext_init's default
FEATURE_DIM = 768  # CLIP_EXIF_Net: the ResNet-50's fc maps 2048 -> 768
# CLIP_EXIF_Net's text side (CLIP RN50's text tower and text_fc): saved with the extractor, read by no detection
TEXT_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection",
             "logit_scale", "text_fc.")


@dataclass(frozen=True)
class BladesConfig:
    """BLADES options: the variant, released files, preprocessing, the GMM and the MLP's training."""

    variant: Literal["bc", "oc"] = "bc"  # bc: BC-MLP (binary head); oc: OC-GMM (one-class, real faces only)
    weights: str = ""  # the released checkpoint of the variant (BC.pth / OC.pth)[#sha256=HEX]
    # without weights: a CLIP_EXIF_Net checkpoint (OC.pth)[#sha256=HEX], "random" (stand-in) or "pretext" (trained
    # first by the bi-level pretext tasks on the real training faces: detbench.detectors.blades_pretext)
    extractor: str = ""
    size: int = 224  # Resize((size, size)) of the tensor
    antialias: bool = False  # that resize's antialias (the original's torchvision 0.14 had none for tensors)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    sigmoid_dtype: Literal["float32", "float64"] = "float32"  # BC: softmax of float32 logits, as BC_MLP.py
    batch_size: int = 64  # evaluation / feature batch
    allow_non_faces: bool = False  # run on a suite that does not declare content "faces"
    # OC-GMM (OC_GMM.py)
    gmm_components: int = 10  # --n_comp_GMM
    gmm_covariance: Literal["full", "tied", "diag", "spherical"] = "full"
    gmm_seed: int = 2024  # GaussianMixture(random_state=2024)
    gmm_images: int = 25000  # the first real training faces fitted (real_num)
    false_alarm: float = 0.05  # the share of real training faces below the decision threshold
    # BC-MLP training (not in the repository): detbench's recipe
    lr: float = 1e-4
    epochs: int = 10
    train_batch_size: int = 64
    checkpoint_every: int = 200
    # extractor=pretext (SSL_training.py / BLO.py; defaults: the README's training command, else the code's own)
    manipulated: str = ""  # folder of each real training face's manipulated copies <name>_0..3.png (face_dataaug_neg)
    # the image tower's start: "imagenet" (the code's resnet50(pretrained=True)), a checkpoint whose image tower under
    # model.visual. replaces it (the code's --resume, EXIF-as-language's wrapper_75_new.pth)[#sha256=HEX], or
    # "random" (a stand-in). See Blades._pretext_start for the default
    pretext_init: str = PRETEXT_INIT
    # CLIP_EXIF_Net's text side: the CLIP whose text tower and logit_scale score the prompts (clip.load("RN50"))
    pretext_text: str = "open_clip:RN50@openai"
    pretext_freeze_text: bool = False  # --freezeText (off in the code): the text tower trains with the image tower
    pretext_epochs: int = 100  # --num_epochs
    pretext_batch_size: int = 48  # --batch_size 48
    pretext_lr: float = 1e-5  # --lr 1e-5 (AdamW)
    pretext_weight_decay: float = 0.001  # AdamW(weight_decay=0.001), also the virtual step's
    pretext_cosine_tmax: int = 20  # --cosineTmax 20: CosineAnnealingLR stepped per epoch
    pretext_meta_lr: float = 3e-4  # --autol_lr 3e-4: Adam on the task weights
    pretext_weight_exif: float = 1.0  # --weights_exif 1.0: the nine EXIF losses' starting weight
    pretext_weight_face: float = 1.0  # --weights_face 1.0: the two face losses' starting weight
    pretext_primary: Literal["iso", "av", "et", "fl", "makes", "mm", "em", "wb", "ep", "face_coarse",
                             "face_grained"] = "face_coarse"  # --task face_coarse: the proxy task of the outer step

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: naming every option out of range.
        """
        checks = [
            (self.size >= 1 and self.batch_size >= 1, "size and batch_size >= 1"),
            (self.gmm_components >= 1 and self.gmm_images >= 1, "gmm_components and gmm_images >= 1"),
            (0 < self.false_alarm < 1, "0 < false_alarm < 1"),
            (self.lr > 0 and self.epochs >= 1 and self.train_batch_size >= 1,
             "lr > 0, epochs and train_batch_size >= 1"),
            (self.checkpoint_every >= 0, "checkpoint_every >= 0 (0: off)"),
            (not (self.weights and self.extractor),
             "extractor only without weights (a released checkpoint holds its own extractor)"),
            (self.pretext_epochs >= 1 and self.pretext_batch_size >= 2 and self.pretext_cosine_tmax >= 1,
             "pretext_epochs >= 1, pretext_batch_size >= 2 (its ranking loss compares pairs), "
             "pretext_cosine_tmax >= 1"),
            (self.pretext_lr > 0 and self.pretext_meta_lr > 0 and self.pretext_weight_decay >= 0,
             "pretext_lr and pretext_meta_lr > 0, pretext_weight_decay >= 0"),
            (self.extractor == PRETEXT or not (self.manipulated or self.pretext_init != PRETEXT_INIT),
             "manipulated and pretext_init only with extractor=pretext"),
            (bool(self.pretext_init), "pretext_init=imagenet, random or a CLIP_EXIF_Net checkpoint file"),
            (bool(self.pretext_text), "pretext_text=open_clip:ARCH@SOURCE (the CLIP of the prompts' text tower)"),
            (self.extractor != PRETEXT or bool(self.manipulated),
             "manipulated=DIR with extractor=pretext (the manipulated copies of the real training faces)"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ConfigError("blades options need " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------- network


class _Towers(nn.Module):
    """``CLIP_EXIF_Net.model``'s image tower: ``visual``, torchvision's ResNet-50 with ``fc`` 2048 -> 768."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        self.visual = resnet50(weights=None)
        self.visual.fc = nn.Linear(2048, FEATURE_DIM)


class ExifExtractor(nn.Module):
    """``CLIP_EXIF_Net``'s image side: ``encode_image`` divided by its L2 norm (``[B, 768]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = _Towers()

    def forward(self, x: Tensor) -> Tensor:
        """Normalised features."""
        f = self.model.visual(x)
        return f / f.norm(dim=1, keepdim=True)


class BCMLP(nn.Module):
    """``model.BC_MLP``: the extractor under ``model``, then ``fc2(relu(fc1(f)))`` (768 -> 1536 -> 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = ExifExtractor()
        self.fc1 = nn.Linear(FEATURE_DIM, FEATURE_DIM * 2)
        self.fc2 = nn.Linear(FEATURE_DIM * 2, 2)

    def forward(self, x: Tensor) -> Tensor:
        """(real, fake) logits."""
        return self.fc2(torch.relu(self.fc1(self.model(x))))

    def train(self, mode: bool = True) -> BCMLP:
        """The frozen extractor stays in evaluation mode (its BatchNorm statistics are the extractor's).

        Args:
            mode: the head's mode.

        Returns:
            This module.
        """
        super().train(mode)
        self.model.eval()
        return self


class MLPHead(TrainableParts):
    """What BC training changes (``fc1``, ``fc2``), registered without the frozen extractor; the forward is the
    whole network's.
    """

    def __init__(self, net: BCMLP) -> None:
        super().__init__(net)
        self.fc1, self.fc2 = net.fc1, net.fc2


def drop_text_tower(state_dict: dict[str, Any], prefix: str) -> tuple[dict[str, Any], list[str]]:
    """Drop the text side of ``CLIP_EXIF_Net`` (:data:`TEXT_KEYS` under ``prefix``) by name.

    Args:
        state_dict: the unwrapped checkpoint.
        prefix: where ``CLIP_EXIF_Net.model`` sits (``model.model.`` in BC.pth, ``model.`` in OC.pth).

    Returns:
        The remaining tensors and the dropped keys.
    """
    names = tuple(prefix + k for k in TEXT_KEYS)
    dropped = [k for k in state_dict if k.startswith(names)]
    return {k: v for k, v in state_dict.items() if not k.startswith(names)}, dropped


@dataclass(frozen=True)
class TensorResize:
    """``GatherDataset``'s transform: ``ToTensor``, ``Resize((size, size))`` of the tensor (bilinear), CLIP's
    ``Normalize`` (picklable for DataLoader workers).
    """

    size: int
    antialias: bool

    def __call__(self, img: Any) -> Tensor:
        """PIL image -> ``[3, size, size]``."""
        from torchvision.transforms import functional as TF

        x = TF.to_tensor(img)
        x = TF.resize(x, [self.size, self.size], interpolation=TF.InterpolationMode.BILINEAR,
                      antialias=self.antialias)
        return TF.normalize(x, CLIP_MEAN, CLIP_STD)


# ---------------------------------------------------------------------------------------------- OC-GMM


# ---------------------------------------------------------------------------------------------- detector


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "blades",
    "class": "Blades",
    "summary": ("BLADES (ICCV 2025): AI-generated face detection on a ResNet-50 pre-trained by bi-level EXIF/face "
                "pretext tasks; an MLP head (BC-MLP) or a GMM of real faces (OC-GMM, variant=oc)."),
    "paper": "Zou et al., ICCV",
    "year": 2025,
    "training": "trains",
    "weights_key": "weights",
    "released": ("BC.pth (BC-MLP) and OC.pth (OC-GMM's extractor) on Baidu Disk, linked from "
                 "github.com/MZMMSEC/AIGFD_BLO (Apache-2.0), loaded from a file the user provides"),
}


class Blades(ClassifierDetector):
    """BLADES: a pretext-trained ResNet-50 with an MLP head (BC-MLP) or a GMM of real faces (OC-GMM)."""

    name = REGISTRATION["name"]
    version = 1
    Config = BladesConfig
    summary = REGISTRATION["summary"]
    requires_content = "faces"  # the suite fact this detector needs
    content_override = "allow_non_faces"  # the setting that runs it elsewhere (recorded in the identity)
    file_keys: ClassVar[dict[str, tuple[str, ...]]] = {"weights": (), "extractor": ("random", PRETEXT),
                                                      "manipulated": (),
                                                      "pretext_init": (PRETEXT_INIT, "random")}
    spec_keys = ("pretext_text",)  # enters the identity without a path (the tower's sha256 is in identity())
    tiny_settings: ClassVar[dict[str, Any]] = {
        "extractor": "random", "size": 32, "epochs": 1, "train_batch_size": 8, "checkpoint_every": 0,
        "gmm_components": 1, "gmm_covariance": "diag", "allow_non_faces": True,
    }
    profile_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        # "small" (the demo): the pretext-trained extractor is not available offline, so torchvision's seeded
        # random ResNet-50 stands in (recorded); 96 px inputs, three short epochs. The demo's images are not faces:
        # its run goes on with allow_non_faces=true, which the run warns about and records
        "small": {"extractor": "random", "size": 96, "epochs": 3, "train_batch_size": 32, "checkpoint_every": 20,
                  "allow_non_faces": True},
    }
    weights_what = "the BLADES checkpoint"
    weights_fix = ("pass --set weights=/path/to/BC.pth (variant bc) or OC.pth (variant oc), the checkpoints linked "
                   "from github.com/MZMMSEC/AIGFD_BLO")
    extractor_fix = ("pass --set extractor=/path/to/OC.pth (the pretext-trained CLIP_EXIF_Net linked from "
                     "github.com/MZMMSEC/AIGFD_BLO), extractor=pretext with manipulated=DIR (train it here) or "
                     "extractor=random (a stand-in)")

    def needs_training(self) -> bool:
        """Whether :meth:`fit` learns: OC-GMM always fits its mixture; BC-MLP without ``weights``.

        Returns:
            True unless a released BC-MLP checkpoint is given.
        """
        return self.config.variant == "oc" or not self.config.weights

    def _prefix(self) -> str:
        return "model." if self.config.variant == "oc" else "model.model."

    def build_network(self) -> nn.Module:
        """The variant's network under the original's module names.

        Returns:
            :class:`BCMLP` or :class:`ExifExtractor`.
        """
        return BCMLP() if self.config.variant == "bc" else ExifExtractor()

    def released_state_dict(self, state_dict: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        """The checkpoint without ``CLIP_EXIF_Net``'s text side (dropped by name, and said so).

        Args:
            state_dict: the unwrapped checkpoint.
            ctx: the run context (for the warning).

        Returns:
            The tensors to load strictly.
        """
        kept, dropped = drop_text_tower(state_dict, self._prefix())
        if dropped:
            ctx.phases.warn(f"{self.weights_what}: {len(dropped)} tensors of CLIP_EXIF_Net's text side "
                            f"({self._prefix()}{{token_embedding, transformer, ln_final, text_fc, ...}}) are not "
                            "read by detection and are ignored")
        return kept

    def prepare_training(self, ctx: RunContext) -> dict[str, Any]:
        """The frozen extractor: a ``CLIP_EXIF_Net`` checkpoint's image tower (strictly), the seeded random
        ResNet-50 (``extractor=random``, a stand-in), or with ``extractor=pretext`` the start of the pretext training
        that :meth:`fit` runs (``pretext_init``: :meth:`_pretext_start`; the text tower of ``pretext_text``), the
        ``manipulated`` folder checked and hashed
        (when a finished run is scored again, ``ctx.recorded_identity``, its digest comes from the run's record: the
        folder is read only for training).

        Args:
            ctx: the run context (for the text-side warning).

        Returns:
            The extractor's facts (its sha256, or the stand-in).

        Raises:
            ConfigError: no ``extractor`` given.
            InputError: ``manipulated`` is not a folder of images.
            WeightsError: the file is missing, unsafe or not a ``CLIP_EXIF_Net``.
        """
        spec = self.config.extractor
        extractor = self.extractor()
        if not spec:
            raise ConfigError(f"{self.name} variant {self.config.variant} needs the pretext-trained extractor: "
                              f"{self.extractor_fix}")
        if spec == "random":
            facts = {"extractor": "random", "stand_in": "seeded random ResNet-50 instead of the pretext-trained one"}
        elif spec == PRETEXT:  # trained in fit; the folder's content enters the identity now
            from detbench.detectors.blades_pretext import MANIPULATED_FACTS, manipulated_identity

            recorded = ctx.recorded_identity
            if recorded is not None:  # a finished run scored again: the fit's record names its inputs, none is read
                facts = {"extractor": PRETEXT, **{k: v for k, v in recorded.items() if k in MANIPULATED_FACTS
                                                  or k.startswith(("pretext_text", "pretext_init"))}}
            else:
                facts = {"extractor": PRETEXT, **manipulated_identity(self.config.manipulated),
                         "pretext_text": self._load_text_tower(), **self._pretext_start(ctx, extractor)}
        else:
            facts = self._load_extractor(spec, "extractor", ctx, extractor)
        extractor.requires_grad_(False)
        return facts

    def _pretext_start(self, ctx: RunContext, extractor: ExifExtractor) -> dict[str, Any]:
        """The image tower's start for the pretext training (``pretext_init``), loaded into ``extractor``.

        ``CLIP_EXIF_Net`` builds torchvision's ``resnet50(pretrained=True)`` (IMAGENET1K_V1), replaces ``fc`` by a
        new ``Linear(2048, 768)``, then (``--resume``) loads the ``visual`` tensors of EXIF-as-language's
        ``wrapper_75_new.pth``. ``imagenet`` (the default) is that start without a file: the code's own behaviour
        when none is given, and the only one obtainable offline as other detbench ImageNet starts are (a file in
        ``$DETBENCH_HOME/weights/torchvision/`` or torch hub's cache); the README's run's file is a path on the
        authors' machine, so it cannot be a default. A checkpoint file gives the image tower under ``model.visual.``
        as the code reads it (loaded strictly: every tensor of the tower, nothing partial; its other tensors are
        not read, and said so). ``random`` keeps the seeded torchvision initialisation, a stand-in recorded as one.

        Returns:
            ``pretext_init`` facts: the kind, the file's sha256 and path, or the stand-in note.

        Raises:
            WeightsError: the file is missing, unsafe, holds no image tower or one that does not fit.
        """
        from detbench.errors import WeightsError
        from detbench.models.weights import load_checkpoint_file, load_into

        spec, visual = self.config.pretext_init, extractor.model.visual
        if spec == "random":
            return {"pretext_init": "random", "pretext_init_note": "stand-in: a seeded random ResNet-50; the code "
                    "starts from torchvision's ImageNet weights (pretext_init=imagenet) or an EXIF-pretrained tower"}
        if spec == PRETEXT_INIT:
            from detbench.detectors.cnnspot import imagenet_resnet50

            imagenet, path, sha256 = imagenet_resnet50(spec, key="pretext_init")
            trunk = {k: v for k, v in imagenet.state_dict().items() if not k.startswith("fc.")}
            new_fc = {f"fc.{k}": v for k, v in visual.fc.state_dict().items()}  # Linear(2048, 768) keeps its start
            load_into(visual, {**trunk, **new_fc}, f"ImageNet ResNet-50 weights {path}")
            return {"pretext_init": PRETEXT_INIT, "pretext_init_path": path, "pretext_init_sha256": sha256}
        fix = ("pass --set pretext_init=/path/to/a checkpoint with the image tower under model.visual. (CLIP_EXIF_Net, "
               "EXIF-as-language's wrapper_75_new.pth), pretext_init=imagenet or pretext_init=random (a stand-in)")
        loaded = load_checkpoint_file(spec, what="the BLADES pretext start", fix=fix, key="pretext_init")
        prefix = "model.visual."
        tower = {k[len(prefix):]: v for k, v in loaded.state_dict.items() if k.startswith(prefix)}
        if not tower:
            raise WeightsError(f"pretext_init={loaded.path} holds no image tower under {prefix} (CLIP_EXIF_Net's and "
                               "EXIF-as-language's layout); pass pretext_init=imagenet, random or such a checkpoint")
        if len(tower) < len(loaded.state_dict):
            ctx.phases.warn(f"the BLADES pretext start {loaded.path}: {len(loaded.state_dict) - len(tower)} tensors "
                            f"outside {prefix} are not read (the code reads only the image tower from it)")
        load_into(visual, tower, f"the image tower of {loaded.path}")
        return {"pretext_init_sha256": loaded.sha256, "pretext_init_path": str(loaded.path)}

    def _load_text_tower(self) -> dict[str, Any]:
        """``pretext_text``'s CLIP (its text tower and ``logit_scale``), kept for :meth:`fit`.

        Returns:
            Its identity (weights sha256, text config, versions), with a stand-in note for random weights.

        Raises:
            BackboneError: a malformed spec, or weights without a text tower.
            WeightsError: the weights are missing offline (one line naming the file or tag to get).
        """
        from detbench.models.backbones import load_text_tower

        tower = load_text_tower(self.config.pretext_text, key="pretext_text")
        self.text_clip = tower.clip
        facts = tower.identity()
        if not facts.get("pretrained"):
            facts["stand_in"] = "random text tower instead of CLIP RN50's (pretext_text=open_clip:RN50@openai)"
        return facts

    def extractor(self) -> ExifExtractor:
        """The extractor inside the variant's network (``BCMLP.model``, or the OC network itself)."""
        return self.net.model if self.config.variant == "bc" else self.net

    def _load_extractor(self, spec: str, key: str, ctx: RunContext, extractor: nn.Module) -> dict[str, Any]:
        """A ``CLIP_EXIF_Net`` checkpoint's image tower into ``extractor``, strictly (its text side dropped).

        Returns:
            ``{key}_sha256`` and ``{key}_path``.
        """
        from detbench.models.weights import load_checkpoint_file, load_into

        loaded = load_checkpoint_file(spec, what="the BLADES extractor", fix=self.extractor_fix, key=key)
        kept, dropped = drop_text_tower(loaded.state_dict, "model.")
        if dropped:
            ctx.phases.warn(f"the BLADES extractor {loaded.path}: {len(dropped)} tensors of CLIP_EXIF_Net's text "
                            "side are not read by detection and are ignored")
        load_into(extractor, kept, f"the BLADES extractor {loaded.path}")
        return {f"{key}_sha256": loaded.sha256, f"{key}_path": str(loaded.path)}

    def to_tensor(self) -> Any:
        """PIL image -> input after a suite profile's resize/crop: ``ToTensor`` and CLIP's mean/std.

        Returns:
            The transform.
        """
        from torchvision import transforms

        return transforms.Compose([transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)])

    def eval_preprocessing(self, ctx: RunContext) -> EvalPreprocessing:
        """``ToTensor``, ``Resize((size, size))`` of the tensor, CLIP normalisation, for every test set.

        Args:
            ctx: unused (the original evaluates every test set alike).

        Returns:
            The preprocessing; facts: size, antialias, normalisation.
        """
        c = self.config
        facts = {"resize": f"tensor bilinear ({c.size}, {c.size})", "antialias": c.antialias, "normalise": "clip"}
        return EvalPreprocessing(TensorResize(c.size, c.antialias), by_shape=False, facts=facts)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """P(fake): BC-MLP ``softmax[:, 1]``; OC-GMM :meth:`detbench.kit.mixture.RealMixture.probability`.

        Args:
            logits: ``[N, 2]`` logits (bc) or ``[N, 768]`` normalised features (oc).

        Returns:
            ``[N]`` P(fake).
        """
        if self.config.variant == "bc":
            return softmax_fake(logits, self.config.sigmoid_dtype)
        return self.mixture.probability(logits)

    def state_module(self) -> nn.Module:
        """What training changes: BC-MLP's ``fc1``/``fc2``; nothing of OC-GMM's network (its state is the GMM).

        Returns:
            The module saved and loaded.
        """
        return MLPHead(self.net) if self.config.variant == "bc" else nn.Module()

    def train_setup(self, ctx: RunContext, train: pd.DataFrame) -> Any:
        """BC-MLP training (detbench's recipe): Adam on ``fc1``/``fc2``, cross-entropy, best held-out accuracy.

        Args:
            ctx: unused.
            train: the training rows (a batch never holds more than there are).

        Returns:
            The :class:`~detbench.kit.training.TrainSetup`.
        """
        from detbench.kit.schedules import StepDecaySchedule
        from detbench.kit.seeded_data import TorchDrawn
        from detbench.kit.training import TrainSetup, cross_entropy

        c = self.config
        view = MLPHead(self.net)
        optimizer = torch.optim.Adam(view.parameters(), lr=c.lr)
        return TrainSetup(
            model=view, optimizer=optimizer, schedule=StepDecaySchedule(c.lr, every=c.epochs + 1, factor=1.0),
            train_transform=TorchDrawn(self.preprocessing.transform), heldout_transform=self.preprocessing.transform,
            loss=cross_entropy, probabilities=self.probabilities, epochs=c.epochs,
            batch_size=min(c.train_batch_size, len(train)), keep="best", checkpoint_every=c.checkpoint_every,
            heldout_batch_size=c.batch_size, precision=self.precision, name=self.name)

    # ---- OC-GMM: the mixture is the fitted state

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """BC-MLP: the base's training (or nothing for released weights). OC-GMM: the mixture on the first
        ``gmm_images`` real training faces, the threshold at ``false_alarm`` of their log-likelihoods.

        Args:
            train: the training rows.
            heldout: the held-out rows (BC training selects on them; OC-GMM does not use them).
            ctx: the run context.

        Returns:
            Facts for the run record.

        Raises:
            DataError: fewer usable real training faces than mixture components (plus one).
        """
        pretext = self._train_pretext(train, ctx)
        if self.config.variant == "bc":
            return {**super().fit(train, heldout, ctx), **pretext}
        from detbench.kit.scoring import score_logits

        c = self.config
        real = train[train["label"] == 0].iloc[:c.gmm_images]
        self._to(ctx.device)
        feats, _ = score_logits(self.net, real, ctx, self.preprocessing.transform, device=ctx.device,
                                precision=self.precision, batch_size=ctx.batch_size or c.batch_size,
                                description=f"features {self.name} (real training faces)")
        feats = feats[np.isfinite(feats).all(axis=1)].astype(np.float32)
        with ctx.phases.phase("fit GMM", 1) as advance:
            self.mixture = RealMixture.fit(feats, components=c.gmm_components, covariance=c.gmm_covariance,
                                           seed=c.gmm_seed, false_alarm=c.false_alarm, who="blades variant oc")
            advance(1)
        base = {"weights": "released", **self.released.facts()} if self.released is not None else {
            "weights": "extractor", **self.training_facts}
        return {**base, **pretext, "trained": True, "gmm": self.mixture.facts(),
                "eval_preprocessing": self.preprocessing.facts}

    def _train_pretext(self, train: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """With ``extractor=pretext``: the bi-level pretext training of the extractor on the real training faces
        (:func:`detbench.detectors.blades_pretext.train_pretext`), before the MLP or the mixture uses it.

        Returns:
            ``{"pretext": facts}``, or nothing without pretext training.
        """
        if self.config.extractor != PRETEXT or self.released is not None:
            return {}
        from detbench.detectors.blades_pretext import train_pretext

        reals = train[train["label"] == 0].sort_values("path", kind="stable").reset_index(drop=True)
        self._to(ctx.device)
        facts, self.text_state = train_pretext(self.extractor().model.visual, self.text_clip, FEATURE_DIM, reals, ctx,
                                               self.config, Path(self.config.manipulated).expanduser(),
                                               self.preprocessing.transform)
        del self.text_clip  # trained: its tensors now live in text_state
        return {"pretext": facts}

    def save(self, directory: Path) -> None:
        """BC-MLP: the base's state. OC-GMM: which released extractor was used (when one was), the mixture's arrays
        (safetensors) and its threshold (JSON); a file or random extractor is rebuilt from the settings.

        Args:
            directory: the state folder.
        """
        if self.config.variant == "bc" or self.released is not None:
            super().save(directory)
        if self.config.variant == "oc":
            self.mixture.save(directory)
        if self.config.extractor == PRETEXT:  # the pretext-trained CLIP_EXIF_Net is part of the fitted state
            from safetensors.torch import save_file as save_tensors

            state = {k: v.detach().to("cpu").contiguous() for k, v in self.extractor().state_dict().items()}
            save_tensors({**state, **self.text_state}, str(directory / EXTRACTOR_FILE))

    def load(self, directory: Path) -> None:
        """Restore :meth:`save`'s state.

        Args:
            directory: the state folder.

        Raises:
            WeightsError: the state is unreadable, or the saved mixture does not fit this configuration.
        """
        if self.config.variant == "bc" or self.released is not None:
            super().load(directory)
        if self.config.variant == "oc":
            c = self.config
            self.mixture = RealMixture.load(directory, components=c.gmm_components, covariance=c.gmm_covariance,
                                            who="BLADES OC-GMM", dim=FEATURE_DIM)
        if self.config.extractor == PRETEXT:
            from detbench.models.weights import load_into, load_state_dict_safely

            saved = load_state_dict_safely(directory / EXTRACTOR_FILE)
            image, text = drop_text_tower(saved, "model.")  # the text side is kept (saved again), never scored
            self.text_state = {k: saved[k] for k in text}
            load_into(self.extractor(), image, f"{self.name} pretext-trained extractor {directory}")
