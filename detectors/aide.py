"""AIDE (Yan et al., ICLR 2025, "A Sanity Check for AI-generated Image Detection"): a hybrid-feature detector.

Faithful to the authors' code (shilinyan99/AIDE at 6725b71), which a released checkpoint needs:

- Patches (``data/dct.py``): the [0, 1] image at its native size is cut into 32x32 patches with stride 16; each
  is graded by its 2-D DCT (orthonormal DCT-II per channel): grade = sum over k < 6 of 2^k times the mean of
  log(|DCT| + 1) over the coefficients with 64k/6 <= i+j <= 64(k+1)/6 (bounds inclusive, so neighbouring bands
  overlap), summed over the channels. The two lowest-graded and the two highest-graded patches are kept
  (reconstructed through the all-pass DCT round trip, so they are the pixels). Images under 32 px fail.
- Per tensor (``data/datasets.py``): the 4 patches and the whole image are resized to 256x256 as tensors
  (bilinear, no antialias: the torchvision 0.12/0.15 the code ran with had none for tensors; detbench's
  torchvision would antialias by default, hence ``antialias=false``), then ImageNet-normalised.
- Low level (``models/AIDE.py``): 30 fixed SRM high-pass filters (3x3 ones zero-padded to 5x5, each summed over
  R, G, B), then two ResNet-50s with 30-channel stems: ``model_min`` takes the two lowest patches,
  ``model_max`` the two highest; the four 2048-d features are averaged.
- Semantics: a frozen OpenCLIP ConvNeXt-XXL trunk (``convnext_xxlarge``, tag ``laion2b_s34b_b82k_augreg_soup``)
  on the whole image converted to CLIP normalisation; its final LayerNorm is applied at every position before
  the average pool (the original replaces the head's pooling with identities), then ``convnext_proj``
  (Linear 3072 -> 256).
- Head: an MLP 2304 -> 1024 (GELU) -> 2 on [semantic 256, low-level 2048]; P(fake) = softmax[:, 1], computed
  as ``engine_finetune.evaluate`` does: scipy's softmax of the float32 logits, so every margin above about 17.3
  gives exactly 1.0 and such images tie in AP (``softmax_dtype=float64`` ranks them: a recorded departure).

Released checkpoints are ``{'model': state_dict, 'optimizer', 'epoch', 'scaler', 'args'}`` with every weight,
the ConvNeXt trunk included; ``--set weights=PATH[#sha256=HEX]`` loads them strictly (weights only; ``args`` is
an ``argparse.Namespace``, the one class :mod:`detbench.models.weights` allows beyond tensors), and no OpenCLIP weights
are needed then. The patch choice and input stack are ``detectors/aide_patches.py``, the network (SRM bank, ResNet
experts, semantic trunk, head) ``detectors/aide_net.py``. Training (``detectors/aide_train.py``) follows
``scripts/train.sh`` on the shared loop of :mod:`detbench.kit.training`; a fit saves everything but the frozen trunk,
under the original's key names.

Where the code departs from the paper, detbench follows the code: the ResNets are never given ImageNet weights
(the code writes them into a state-dict copy that is never loaded), and ``convnext_proj`` runs under
``torch.no_grad``, so it keeps its random initialisation (``train_proj=true`` trains it instead). The original's
evaluation is data-parallel with a ``DistributedSampler`` that repeats images to fill the last batch; detbench
scores every image once, so its per-image scores are the original's and its metrics count each image once.

``--set backbone=`` swaps the semantic trunk (the demo uses the bundled EfficientNet-Lite0: recorded as a
stand-in, never a reproduction); a ConvNeXt trunk is pooled as the original pools it, any other backbone
gives its pooled embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from detbench.data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from detbench.kit.classifier import ClassifierDetector, EvalPreprocessing
from detbench.kit.detector import RunContext
from detbench.probabilities import softmax_fake

from .aide_net import AIDENet, SRMConv
from .aide_patches import GRADES, STRIDE, WINDOW, AIDETransform

ORIGINAL_SEMANTIC = ("open_clip", "convnext_xxlarge")
INIT_STREAM = 0x41DE  # the seed stream of the network's random initialisation (with the run seed)
WEIGHTS_FIX = ("pass --set weights=/path/to/checkpoint.pth: an AIDE checkpoint of the authors' format "
               "({'model': state_dict, ...}), e.g. from the Model Zoo linked in the shilinyan99/AIDE README")


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class AIDEConfig:
    """AIDE options: the semantic backbone, released weights or training, input size and training schedule."""

    backbone: str = "open_clip:convnext_xxlarge@laion2b_s34b_b82k_augreg_soup"  # the frozen semantic trunk
    weights: str = ""  # a released checkpoint ({'model': ...}), optionally PATH#sha256=HEX; empty: train
    input_size: int = 256  # the tensor Resize([S, S]) of the patches and the whole image
    antialias: bool = False  # that resize's antialias (the original's torchvision had none for tensors)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    batch_size: int = 32  # images per forward pass when scoring (the original: 32 per GPU)
    train_proj: bool = False  # the paper trains convnext_proj; the code never does (it runs under no_grad)
    # P(fake): scipy's softmax of the float32 logits, as engine_finetune.evaluate (saturated margins tie in AP);
    # float64 ranks them (a departure)
    softmax_dtype: Literal["float32", "float64"] = "float32"
    # training (scripts/train.sh, main_finetune.py): 8 GPUs x 32 images, 20 epochs
    epochs: int = 20
    train_batch_size: int = 256  # the effective batch (the original: 32 per GPU on 8 GPUs)
    blr: float = 1e-4  # base learning rate per 256 images: lr = blr * train_batch_size / 256 (the code's rule)
    min_lr: float = 1e-6  # the half-cosine per step ends here
    weight_decay: float = 0.0  # AdamW
    smoothing: float = 0.1  # label smoothing of the cross-entropy
    blur_prob: float = 0.1  # kornia RandomGaussianBlur, 3x3 kernel, sigma ~ U[0.1, 3], on the [0, 1] image
    jpeg_prob: float = 0.1  # then kornia RandomJPEG, quality ~ U[30, 100]
    semantic_train_mode: bool = True  # the original's model.train() also puts the frozen trunk in training mode
    checkpoint_every: int = 200  # optimizer steps between resumable checkpoints (0: only at epoch ends)

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: listing every range (when any option is out of its range).
        """
        from detbench.config import ConfigError

        checks = [self.input_size >= 32, self.batch_size >= 1, self.epochs >= 1, self.train_batch_size >= 1,
                  self.blr > 0, self.min_lr >= 0, self.weight_decay >= 0, 0 <= self.smoothing < 1,
                  0 <= self.blur_prob <= 1, 0 <= self.jpeg_prob <= 1, self.checkpoint_every >= 0]
        if not all(checks):
            raise ConfigError("aide options need input_size >= 32, batch_size, epochs and train_batch_size >= 1, "
                              "blr > 0, min_lr >= 0, weight_decay >= 0, 0 <= smoothing < 1, blur_prob and "
                              "jpeg_prob in [0, 1], checkpoint_every >= 0")


# ---------------------------------------------------------------------------------------------- detector


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "aide",
    "class": "AIDE",
    "summary": (
        "AIDE (ICLR 2025): DCT-graded patches through SRM filters and two ResNet-50 experts, plus frozen "
        "OpenCLIP ConvNeXt semantics; trained, or a released checkpoint."
    ),
    "paper": "Yan et al., ICLR",
    "year": 2025,
    "weights_key": "weights",
    "released": "the Model Zoo checkpoints ({'model': ...}), e.g. progan_train.pth",
}


class AIDE(ClassifierDetector):
    """AIDE: DCT-selected high/low-frequency patches plus a frozen CLIP ConvNeXt's semantic features."""

    name = REGISTRATION["name"]
    version = 2  # 2: trains on the shared loop; a fit's state is model.safetensors (the same keys as before)
    Config = AIDEConfig
    summary = REGISTRATION["summary"]
    tiny_settings: ClassVar[dict[str, Any]] = {
        "backbone": "timm:efficientnet_lite0@bundled", "input_size": 32, "epochs": 1, "train_batch_size": 8,
        "checkpoint_every": 0,
    }
    weights_what = "the AIDE checkpoint"
    weights_fix = WEIGHTS_FIX
    init_stream = INIT_STREAM
    follows_eval_profiles = False  # the original evaluates every test set alike (patches at native size)
    default_holdout = "val-split"  # main_finetune.py selects on its separate --eval_data_path set
    # The demo: the bundled EfficientNet-Lite0 as the semantic stand-in and 32 px inputs (the patches' own size:
    # two ResNet-50s on four 256 px patches per image are far too slow for 2 CPU cores); 1 epoch of 32-image steps at
    # a larger base rate (the recipe's effective 1.25e-5 would not move in the demo's dozen steps; one epoch reaches
    # 0.95 held-out accuracy, measured).
    profile_defaults = {"small": {"backbone": "timm:efficientnet_lite0@bundled", "input_size": 32, "epochs": 1,
                                  "train_batch_size": 32, "blr": 2e-3, "checkpoint_every": 10}}

    def setup(self, ctx: RunContext) -> None:
        """Build the network and load the weights (:meth:`ClassifierDetector.setup`), then note whether the
        loaded SRM bank is the fixed one and whether the semantic trunk is a stand-in for the original's.

        Args:
            ctx: the run context (device and seed).

        Raises:
            WeightsError: the checkpoint (or the trunk's pretrained weights) is missing, unreadable, unsafe or does
                not fit the architecture.
            BackboneError: a malformed or unknown ``backbone``.
        """
        super().setup(ctx)
        self.hpf_is_srm = bool(torch.equal(self.net.hpf.hpf.weight, SRMConv().hpf.weight))
        bb = self.backbone
        original = (bb.provider, bb.arch) == ORIGINAL_SEMANTIC and (bb.pretrained or self.released is not None)
        self.stand_in = None if original else f"semantic trunk {bb.identity_spec} instead of OpenCLIP ConvNeXt-XXL"

    def semantic_spec(self) -> str:
        """The semantic trunk to load: the configured one, with random weights when a released checkpoint
        (which carries the trunk's weights) is given.

        Returns:
            A backbone spec (``provider:arch@source``); ``provider:arch@random`` with ``weights``.
        """
        from detbench.models.backbones import parse_spec, split_options

        if not self.config.weights:
            return self.config.backbone
        provider, arch, _ = parse_spec(split_options(self.config.backbone)[0])
        return f"{provider}:{arch}@random"

    def build_network(self) -> AIDENet:
        """Load the semantic trunk (on the CPU, without drawing from the seeded stream) and build :class:`AIDENet`
        around it: the original's ConvNeXt pooling for a ConvNeXt trunk, else the backbone's pooled embedding
        (``pre_proj`` where it has one).

        Returns:
            The network, randomly initialised apart from the trunk.

        Raises:
            BackboneError: a malformed or unknown ``backbone``.
            WeightsError: the trunk's pretrained weights cannot be found or loaded.
        """
        import timm

        from detbench.models.backbones import load_backbone

        with torch.random.fork_rng(devices=[]):  # loading the trunk draws nothing from the network's seeded stream
            self.backbone = load_backbone(self.semantic_spec(), device="cpu")
        bb = self.backbone
        trunk = bb.model.trunk if bb.kind == "openclip-timm" else bb.model
        convnext = isinstance(trunk, timm.models.convnext.ConvNeXt)
        if convnext:
            dim = trunk.num_features
        else:
            embedding = "pre_proj" if "pre_proj" in bb.embed_dims else bb.default_embedding
            dim = bb.embed_dims[embedding]
        return AIDENet(trunk, dim, bb.preprocess.mean, bb.preprocess.std, convnext_pool=convnext,
                       semantic_embed=None if convnext else (lambda x: bb.embed(x, embedding)),
                       train_proj=self.config.train_proj)

    def eval_preprocessing(self, ctx: RunContext) -> EvalPreprocessing:
        """The original's: every test set alike, images at native size (no suite convention applies).

        Args:
            ctx: unused.

        Returns:
            :class:`AIDETransform` with ``input_size`` and ``antialias``; not by shape (every stack is the same
            size); facts: the patch window, stride, grades, size, antialias and normalisation.
        """
        c = self.config
        facts = {"window": WINDOW, "stride": STRIDE, "grades": GRADES, "input_size": c.input_size,
                 "antialias": c.antialias, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
        return EvalPreprocessing(AIDETransform(c.input_size, c.antialias), by_shape=False, facts=facts)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """P(fake) = softmax(logits)[:, 1] of the two logits (real, fake), in ``softmax_dtype``.

        Args:
            logits: ``[N, 2]`` logits.

        Returns:
            ``[N]`` P(fake).
        """
        return softmax_fake(logits, self.config.softmax_dtype)

    def state_module(self) -> nn.Module:
        """Everything but the frozen semantic trunk, under the original's key names (its weights are the
        backbone's, named in the identity).

        Returns:
            A new :class:`~detbench.detectors.aide_train.TrainableAIDE` view sharing this network's parameters.
        """
        from detbench.detectors.aide_train import TrainableAIDE

        return TrainableAIDE(self.net, self.config.semantic_train_mode)

    def train_setup(self, ctx: RunContext, train: pd.DataFrame) -> Any:
        """AIDE's training recipe (:func:`~detbench.detectors.aide_train.training_recipe`).

        Args:
            ctx: unused.
            train: the training rows (a batch never holds more than there are).

        Returns:
            The :class:`~detbench.kit.training.TrainSetup`.
        """
        from detbench.detectors.aide_train import training_recipe

        return training_recipe(self.state_module(), self.config, len(train), self.preprocessing.transform,
                               self.precision)

    def identity(self) -> dict[str, Any]:
        """:meth:`ClassifierDetector.identity` plus the semantic trunk's identity and the stand-in note.

        Returns:
            Also ``semantic_backbone`` (with a released checkpoint its weights are the checkpoint's, so no trunk
            sha256) and ``stand_in`` (None for the original trunk).
        """
        bb = self.backbone.identity()
        if self.released is not None:
            bb = {**bb, "weights_sha256": None, "weights": "from the AIDE checkpoint"}
        return {**super().identity(), "semantic_backbone": bb, "stand_in": self.stand_in}

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Train (or take the released weights) as :meth:`ClassifierDetector.fit` does.

        Args:
            train: the training rows.
            heldout: the held-out rows (the epoch with the best accuracy on them is kept).
            ctx: the run context.

        Returns:
            The base facts plus ``stand_in`` and, for released weights, ``hpf_is_srm`` (whether the checkpoint's
            SRM bank is the fixed one).
        """
        facts = super().fit(train, heldout, ctx)
        if self.released is not None:
            facts["hpf_is_srm"] = self.hpf_is_srm
        return {**facts, "stand_in": self.stand_in}
