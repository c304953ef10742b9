"""CO-SPY (Cheng et al., "CO-SPY: Combining Semantic and Pixel Features to Detect Synthetic Images by AI", CVPR 2025).

Faithful to the authors' code (Megum1/CO-SPY, MIT: ``detectors/{progan,sd-v1_4}/``, ``evaluate.py``), whose
released ``pretrained/{progan,sd-v1_4}`` folders are what ``--set weights=FOLDER`` loads. The two releases are two
architectures (``variant``):

- **Semantic branch**: a frozen image encoder's embedding, then ``fc`` (one logit). ``progan``: OpenAI CLIP
  ViT-L/14, the projected 768-d image embedding (Hugging Face ``CLIPModel.get_image_features``: ``ln_post`` of the
  class token times the projection, the same numbers as open_clip's ``encode_image`` of the same weights), CLIP
  normalisation. ``sd-v1_4``: open_clip ``ViT-SO400M-14-SigLIP-384@webli``, ``encode_image`` (1152-d, the
  attention-pool head), normalisation 0.5/0.5. The code has no further "enhancement" at evaluation: the
  feature-space interpolation of the paper is a training-time mix (``--feat_interp``).
- **Artefact branch**: a ResNet-50 stem cut after ``layer2`` (3x3 stride-2 ``conv1``, Bottleneck layers of 3 and 4
  blocks, global average pool: 512-d), then ``fc`` (one logit), on a residual of the image. ``progan``: NPR's
  residual ``x - up(down(x))`` (nearest, factor 2) of the ImageNet-normalised image, times 2/3; the encoder keeps
  NPR's unused ``fc1`` (its keys are in the checkpoint). ``sd-v1_4``: the [0, 1] image resized as a tensor to 224
  (shorter side, bilinear, ``antialias=False``) minus its reconstruction by the Stable Diffusion v1.4 VAE
  (diffusers' ``AutoencoderKL``, ``decode(encode(x).latent_dist.mean)``), times 100/7.
- **Fusion** ("calibration"): ``fc = Linear(2, 1)`` on the two branch logits; P(fake) = sigmoid, in float32.
- **Evaluation transform** (``test_transform``): ``Resize(load)`` (shorter side, bilinear on the PIL image),
  ``CenterCrop(crop)``, ``ToTensor``; each branch normalises inside the forward. ``progan``: 256 / 224;
  ``sd-v1_4``: 384 / 384. The original evaluates every test set alike.

Released files (``FOLDER/semantic_weights.pth``: ``fc.weight``, ``fc.bias``; ``artifact_weights.pth``: the whole
``ArtifactDetector`` state dict, ``artifact_encoder.*`` and ``fc.*``, for ``sd-v1_4`` possibly with the VAE under
``artifact_encoder.vae.*``; ``fusion_weights.pth``: ``fc.weight``, ``fc.bias``) load weights-only and strictly.
The VAE is a large backbone: when the artefact checkpoint does not hold it, it comes from the diffusers weights of
``CompVis/stable-diffusion-v1-4`` (``vae/diffusion_pytorch_model.safetensors``): ``--set vae=`` (the file, its
diffusers folder or a repository id in the local Hugging Face cache), or found offline in
``$DETBENCH_HOME/weights/co-spy/vae/`` or the Hugging Face cache; otherwise the run fails naming them. The VAE is
diffusers' own class (``pip install 'detbench[diffusion]'``), built from Stable Diffusion v1.4's VAE config.

Training (without ``weights``) is a departure, recorded: the original trains the two branches apart, then the
fusion layer on their frozen logits (lr 1e-1, a bias floor for ``sd-v1_4``); detbench trains the fused network
jointly (AdamW, lr 1e-4, BCE-with-logits, x0.9 every 10 epochs, ``Resize(load)`` - random crop - flip, no
blur/JPEG augmentation, no feature interpolation), the frozen encoder and VAE untouched.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor, nn
from torchvision import transforms
from torchvision.transforms import functional as TF

from detbench.config import ConfigError
from detbench.data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from detbench.kit.classifier import ClassifierDetector, EvalPreprocessing
from detbench.kit.detector import RunContext
from detbench.kit.schedules import StepDecaySchedule
from detbench.kit.training import TrainSetup, bce_with_logits

from .npr import NPRNet, _bottlenecks


@dataclass(frozen=True)
class Variant:
    """What one released CO-SPY architecture fixes."""

    backbone: str  # the frozen semantic encoder
    sem_mean: tuple[float, float, float]
    sem_std: tuple[float, float, float]
    art_mean: tuple[float, float, float]
    art_std: tuple[float, float, float]
    load_size: int  # Resize(load_size), shorter side
    crop_size: int  # CenterCrop(crop_size)
    artifact_size: int  # the artefact branch's tensor Resize (0: none)
    residual: Literal["npr", "vae"]
    encoder_fc1: bool  # the artefact encoder keeps NPR's unused fc1


CLIP_NORM = ((0.48145466, 0.45782750, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
VARIANTS: dict[str, Variant] = {
    "progan": Variant("open_clip:ViT-L-14@openai", *CLIP_NORM, IMAGENET_MEAN, IMAGENET_STD,
                      load_size=256, crop_size=224, artifact_size=0, residual="npr", encoder_fc1=True),
    "sd-v1_4": Variant("open_clip:ViT-SO400M-14-SigLIP-384@webli", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                       (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), load_size=384, crop_size=384, artifact_size=224,
                       residual="vae", encoder_fc1=False),
}
RELEASED_FILES = {"semantic": "semantic_weights.pth", "artifact": "artifact_weights.pth",
                  "fusion": "fusion_weights.pth"}
VAE_PREFIX = "artifact_encoder.vae."  # where the sd-v1_4 ArtifactDetector's state dict holds its VAE
VAE_SCALE = 100.0 / 7.0  # the reconstruction residual's scale (x / 7 * 100)
NPR_SCALE = 2.0 / 3.0
WEIGHTS_FIX = ("pass --set weights=FOLDER: an unzipped release of github.com/Megum1/CO-SPY (pretrained/download.sh: "
               "progan.zip or sd-v1_4.zip), holding " + ", ".join(RELEASED_FILES.values()))
VAE_FIX = ("pass --set vae=/path/to/diffusion_pytorch_model.safetensors (the vae/ folder of "
           "huggingface.co/CompVis/stable-diffusion-v1-4; that folder, or the repository id when it is in the local "
           "Hugging Face cache), or put it into $DETBENCH_HOME/weights/co-spy/vae/")
VAE_REPO = "CompVis/stable-diffusion-v1-4"
# Stable Diffusion v1.4's vae/config.json; its widths and groups are the vae_channels / vae_groups settings
SD14_VAE = {"in_channels": 3, "out_channels": 3, "layers_per_block": 2, "act_fn": "silu", "latent_channels": 4,
            "sample_size": 512, "scaling_factor": 0.18215}


@dataclass(frozen=True)
class CoSpyConfig:
    """CO-SPY options: the released variant and files, the frozen encoders, preprocessing and joint training."""

    variant: Literal["progan", "sd-v1_4"] = "progan"  # the released architecture (its training set)
    weights: str = ""  # the release folder (semantic/artifact/fusion_weights.pth); empty: train
    backbone: str = ""  # empty: the variant's encoder (ViT-L-14@openai / ViT-SO400M-14-SigLIP-384@webli)
    vae: str = ""  # sd-v1_4 without a VAE in its checkpoint: AutoencoderKL weights, folder or cached repo[#sha256=HEX]
    vae_channels: str = "128,256,512,512"  # the VAE's block_out_channels (Stable Diffusion v1.4's)
    vae_groups: int = 32  # the VAE's GroupNorm groups
    load_size: int = 0  # Resize(load_size) of the shorter side; 0: the variant's (256 / 384)
    crop_size: int = 0  # CenterCrop; 0: the variant's (224 / 384)
    artifact_size: int = -1  # the artefact branch's tensor Resize; -1: the variant's (none / 224); 0: none
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    # P(fake) = sigmoid of the float32 logit, as the original's outputs.sigmoid(); float64 ranks saturated logits
    sigmoid_dtype: Literal["float32", "float64"] = "float32"
    batch_size: int = 32  # evaluation batch (evaluate.py's default)
    lr: float = 1e-4
    epochs: int = 10
    train_batch_size: int = 32
    lr_decay: float = 0.9
    lr_decay_every: int = 10
    flip: bool = True
    checkpoint_every: int = 500

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: naming every option out of range.
        """
        checks = [
            (self.load_size >= 0 and self.crop_size >= 0 and self.artifact_size >= -1,
             "load_size, crop_size >= 0 (0: the variant's) and artifact_size >= -1"),
            (self.vae_groups >= 1 and _channels(self.vae_channels) is not None
             and all(c % self.vae_groups == 0 for c in _channels(self.vae_channels) or ()),
             "vae_channels: comma-separated positive widths, each a multiple of vae_groups"),
            (self.batch_size >= 1 and self.train_batch_size >= 1 and self.epochs >= 1,
             "batch_size, train_batch_size and epochs >= 1"),
            (self.lr > 0 and self.lr_decay > 0 and self.lr_decay_every >= 0 and self.checkpoint_every >= 0,
             "lr > 0, lr_decay > 0, lr_decay_every >= 0, checkpoint_every >= 0"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ConfigError("co-spy options need " + "; ".join(problems))


def _channels(text: str) -> tuple[int, ...] | None:
    """``"128,256"`` -> ``(128, 256)``; None when malformed or not positive."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        return None
    return values if values and all(v > 0 for v in values) else None


# ---------------------------------------------------------------------------------------------- network


class ArtifactEncoder(nn.Module):
    """The artefact encoder: conv1 (3x3, stride 2) - bn1 - ReLU - maxpool - layer1 - layer2 - average pool (512-d),
    initialised as the original (Kaiming normal fan-out convolutions, BatchNorm 1/0); ``fc1`` only where the
    original's ``ResNet`` keeps NPR's unused classifier.
    """

    def __init__(self, fc1: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _bottlenecks(64, 64, 3, stride=1)
        self.layer2 = _bottlenecks(256, 128, 4, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        if fc1:
            self.fc1 = nn.Linear(512, 1)  # never used in the forward: kept for the checkpoint's keys
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        """The pooled 512-d features of the residual input ``x``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return torch.flatten(self.avgpool(self.layer2(self.layer1(x))), 1)


class Head(nn.Module):
    """A module holding one ``fc`` (the released semantic and fusion files' ``fc.weight``/``fc.bias``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, 1)


class ArtifactBranch(nn.Module):
    """The original's ``ArtifactDetector`` state (``artifact_encoder.*``, ``fc.*``) without the VAE."""

    def __init__(self, fc1: bool) -> None:
        super().__init__()
        self.artifact_encoder = ArtifactEncoder(fc1)
        self.fc = nn.Linear(512, 1)


class CoSpyNet(nn.Module):
    """The fused detector on ``[0, 1]`` images; ``clip`` and ``vae`` are frozen, the rest is the trained state."""

    def __init__(self, variant: Variant, clip: nn.Module, embed: Any, dim: int, vae: nn.Module | None,
                 artifact_size: int) -> None:
        super().__init__()
        self.clip = clip.requires_grad_(False)
        self.embed = embed
        self.vae = vae.requires_grad_(False) if vae is not None else None
        self.sem = Head(dim)
        self.art = ArtifactBranch(variant.encoder_fc1)
        self.fusion = Head(2)
        self.residual, self.artifact_size = variant.residual, artifact_size
        for name, values in (("sem_mean", variant.sem_mean), ("sem_std", variant.sem_std),
                             ("art_mean", variant.art_mean), ("art_std", variant.art_std)):
            self.register_buffer(name, torch.tensor(values).view(1, 3, 1, 1), persistent=False)

    def branch_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The semantic and artefact logits (``[B, 1]`` each) of ``[0, 1]`` images ``x``."""
        sem = self.sem.fc(self.embed((x - self.sem_mean) / self.sem_std))
        a = x
        if self.artifact_size:
            a = TF.resize(a, self.artifact_size, antialias=False)
        a = (a - self.art_mean) / self.art_std
        if self.residual == "vae":
            with torch.no_grad():  # the original's reconstruction: the frozen VAE's decoded mean latent
                a = (a - self.vae.decode(self.vae.encode(a).latent_dist.mean).sample) * VAE_SCALE
        else:
            a = NPRNet.residual(a) * NPR_SCALE
        return sem, self.art.fc(self.art.artifact_encoder(a))

    def forward(self, x: Tensor) -> Tensor:
        """The fused logit ``[B, 1]``: ``fusion.fc`` on the two branch logits."""
        return self.fusion.fc(torch.cat(self.branch_logits(x), dim=1))

    def train(self, mode: bool = True) -> CoSpyNet:
        """Training mode for the trained parts; the frozen encoder and VAE stay in evaluation mode."""
        super().train(mode)
        self.clip.eval()
        if self.vae is not None:
            self.vae.eval()
        return self


class TrainableCoSpy(nn.Module):
    """A view of a :class:`CoSpyNet` registering only what training changes (``sem``, ``art``, ``fusion``)."""

    def __init__(self, net: CoSpyNet) -> None:
        super().__init__()
        self.sem, self.art, self.fusion = net.sem, net.art, net.fusion
        self._net = [net]  # not a registered submodule: its frozen parts stay out of the state

    def forward(self, x: Tensor) -> Tensor:
        """The whole network's fused logit."""
        return self._net[0](x)

    def train(self, mode: bool = True) -> TrainableCoSpy:
        """The whole network's training mode (frozen parts kept in evaluation mode)."""
        super().train(mode)
        self._net[0].train(mode)
        return self


# ---------------------------------------------------------------------------------------------- transforms


@dataclass(frozen=True)
class TrainAugment:
    """``Resize(load)`` - random ``crop`` window - random horizontal flip - ``ToTensor`` from the image's generator."""

    load_size: int
    crop: int
    flip: bool

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Tensor:
        """The augmented ``[0, 1]`` training tensor of ``img``, drawing from ``rng``."""
        img = TF.resize(img, self.load_size)
        w, h = img.size
        top, left = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
        img = TF.crop(img, top, left, self.crop, self.crop)
        if self.flip and rng.random() < 0.5:
            img = TF.hflip(img)
        return TF.to_tensor(img)


# ---------------------------------------------------------------------------------------------- detector


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "co-spy",
    "class": "CoSpy",
    "summary": (
        "CO-SPY (CVPR 2025): frozen CLIP/SigLIP semantics and an NPR- or VAE-residual ResNet, fused by a "
        "calibration layer; the released ProGAN or SD v1.4 checkpoints (MIT), or trained jointly."
    ),
    "paper": "Cheng et al., CVPR",
    "year": 2025,
    "training": "trains",
    "weights_key": "weights",
    "released": "pretrained/progan, pretrained/sd-v1_4 (semantic/artifact/fusion_weights.pth; MIT)",
}


class CoSpy(ClassifierDetector):
    """CO-SPY: a frozen encoder's semantic logit and an artefact-residual ResNet's logit, fused linearly."""

    name = REGISTRATION["name"]
    version = 1
    Config = CoSpyConfig
    summary = REGISTRATION["summary"]
    tiny_settings: ClassVar[dict[str, Any]] = {
        "backbone": "timm:efficientnet_lite0@bundled", "load_size": 32, "crop_size": 32, "epochs": 1,
        "train_batch_size": 8, "checkpoint_every": 0,
    }
    # The demo: the bundled EfficientNet-Lite0 as the semantic stand-in (recorded as one, never a reproduction), the
    # demo's 128 px images centre-cropped to 96 (never resampled), 2 epochs at a learning rate scaled up for the short
    # run (held-out AP 1.0 after the second epoch at 128 px, measured; 5 epochs took over 15 minutes on 2 cores).
    profile_defaults = {"small": {"backbone": "timm:efficientnet_lite0@bundled", "load_size": 128, "crop_size": 96,
                                  "epochs": 2, "lr": 1e-3, "checkpoint_every": 10}}
    file_keys = {"weights": (), "vae": ()}  # named by their sha256 in the identity
    weights_what = "the CO-SPY release"
    weights_fix = WEIGHTS_FIX
    follows_eval_profiles = True
    default_holdout = "val-split"  # the original selects on its val split

    @property
    def variant(self) -> Variant:
        """The configured :class:`Variant`."""
        return VARIANTS[self.config.variant]

    def sizes(self) -> tuple[int, int, int]:
        """``(load, crop, artifact)`` sizes: the settings, or the variant's where they are left at their default.

        Returns:
            The three sizes (artifact 0: no resize).
        """
        c, v = self.config, self.variant
        return (c.load_size or v.load_size, c.crop_size or v.crop_size,
                v.artifact_size if c.artifact_size < 0 else c.artifact_size)

    def setup(self, ctx: RunContext) -> None:
        """Read the release (all three files, before any network is built), build the network under the seeded
        RNG and load every file strictly in its own key layout; the VAE from the checkpoint or a user file.

        Args:
            ctx: the run context (device and seed).

        Raises:
            WeightsError: a release file or the VAE is missing, unreadable, unsafe or does not fit.
        """
        from detbench.kit.seeded_data import derive_seed
        from detbench.models.precision import resolve_precision
        from detbench.models.weights import LoadedCheckpoint

        self.precision = resolve_precision(self.config.precision, ctx.device)
        self.training_facts: dict[str, Any] = {}
        files = self._read_release() if self.config.weights else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(ctx.seed, self.init_stream))
            self.net = self.build_network()
            if files is None:
                for head in (self.net.sem.fc, self.net.art.fc):  # the original trainer's head initialisation
                    nn.init.normal_(head.weight, 0.0, 0.02)
                nn.init.normal_(self.net.fusion.fc.weight, 0.5, 0.02)
        vae_state = self._load_release(files) if files is not None else None
        self.vae_facts = self._load_vae(vae_state) if self.variant.residual == "vae" else None
        self.released = None
        if files is not None:
            self.release_facts = {part: loaded.sha256 for part, loaded in files.items()}
            combined = hashlib.sha256(json.dumps(self.release_facts, sort_keys=True).encode()).hexdigest()
            self.released = LoadedCheckpoint({}, Path(self.config.weights).expanduser().resolve(), combined)
        self.net.eval()
        self.preprocessing = self.eval_preprocessing(ctx)
        self.device = "cpu"

    def _read_release(self) -> dict[str, Any]:
        """The three release files, weights-only (the folder must hold each)."""
        from detbench.models.weights import WeightsError, load_checkpoint_file

        folder = Path(self.config.weights).expanduser().resolve()
        if not folder.is_dir():
            raise WeightsError(f"--set weights={self.config.weights}: not a folder; {WEIGHTS_FIX}")
        return {part: load_checkpoint_file(str(folder / name), what=f"the CO-SPY {part} checkpoint",
                                           fix=WEIGHTS_FIX)
                for part, name in RELEASED_FILES.items()}

    def _load_release(self, files: dict[str, Any]) -> dict[str, Tensor] | None:
        """Load the release strictly: semantic and fusion ``fc.*``, the artefact branch's whole state.

        Returns:
            The VAE tensors the artefact checkpoint holds (``sd-v1_4``), keys without their prefix; None when none.
        """
        from detbench.models.weights import load_into

        art = dict(files["artifact"].state_dict)
        vae = None
        if self.variant.residual == "vae":
            vae = {k[len(VAE_PREFIX):]: art.pop(k) for k in [k for k in art if k.startswith(VAE_PREFIX)]} or None
        for part, module in (("semantic", self.net.sem), ("artifact", self.net.art), ("fusion", self.net.fusion)):
            state = art if part == "artifact" else files[part].state_dict
            load_into(module, state, f"the CO-SPY {part} checkpoint {files[part].path} ({self.config.variant})")
        return vae

    def _load_vae(self, from_checkpoint: dict[str, Tensor] | None) -> dict[str, Any]:
        """Load the VAE strictly: from the artefact checkpoint, or from ``vae`` / the weights home / the HF cache.

        Returns:
            Facts: where it came from and the file's sha256 (None when it came with the checkpoint).
        """
        from detbench.models.diffusion import WEIGHTS_FILES, find_diffusers_files, load_strictly
        from detbench.models.weights import ResolvedWeights, WeightsError, load_into, resolve_weights

        if from_checkpoint is not None:
            if self.config.vae:
                raise WeightsError(f"the CO-SPY artifact checkpoint holds its own VAE ({VAE_PREFIX}*): drop "
                                   f"--set vae={self.config.vae}")
            load_into(self.net.vae, from_checkpoint, "the VAE in the CO-SPY artifact checkpoint")
            return {"source": "artifact checkpoint", "sha256": None}
        from detbench.models.spec import split_sha256

        try:
            path, pin = split_sha256(self.config.vae) if self.config.vae else (None, None)
        except ValueError as exc:
            raise WeightsError(f"--set vae: {exc}") from None
        what = "the Stable Diffusion v1.4 VAE (--set vae=FILE) of CO-SPY's sd-v1_4 artifact branch"
        if path is not None:
            found = find_diffusers_files(path, what=what, fix=VAE_FIX, subfolder="vae", config=False, sha256=pin)
            resolved = ResolvedWeights(found.weights, found.sha256, found.origin)
        else:
            resolved = resolve_weights(what, fix=VAE_FIX, home_dir="co-spy/vae", hf_repo=VAE_REPO,
                                       hf_filenames=[f"vae/{name}" for name in WEIGHTS_FILES])
        load_strictly(self.net.vae, resolved.path, "the VAE")
        return {"source": resolved.origin, "sha256": resolved.sha256}

    def build_network(self) -> CoSpyNet:
        """Load the frozen semantic encoder and build the VAE (random until loaded) and :class:`CoSpyNet`.

        Returns:
            The network.

        Raises:
            BackboneError: a malformed or unknown ``backbone``, or a crop the encoder cannot take.
        """
        from detbench.models.backbones import load_backbone

        _, crop, artifact = self.sizes()
        with torch.random.fork_rng(devices=[]):  # loading the encoder draws nothing from the seeded stream
            self.backbone = bb = load_backbone(self.config.backbone or self.variant.backbone, device="cpu",
                                               crop=crop)
        embedding = "proj" if "proj" in bb.embed_dims else bb.default_embedding
        self.dim = bb.embed_dims[embedding]
        original = (bb.provider, bb.arch) == tuple(self.variant.backbone.split("@")[0].split(":")) and bb.pretrained
        self.stand_in = None if original else f"semantic encoder {bb.identity_spec} instead of {self.variant.backbone}"
        vae = None
        if self.variant.residual == "vae":
            from detbench.models.diffusion import diffusers_library

            channels = _channels(self.config.vae_channels) or ()
            vae = diffusers_library("co-spy's sd-v1_4 VAE").AutoencoderKL(
                **SD14_VAE, block_out_channels=channels, norm_num_groups=self.config.vae_groups,
                down_block_types=("DownEncoderBlock2D",) * len(channels),
                up_block_types=("UpDecoderBlock2D",) * len(channels))
        return CoSpyNet(self.variant, bb.model, lambda x: bb.embed(x, embedding), self.dim, vae, artifact)

    def to_tensor(self) -> Any:
        """``ToTensor`` alone: each branch normalises inside the forward, as the original's fusion detector.

        Returns:
            The transform.
        """
        return transforms.ToTensor()

    def eval_preprocessing(self, ctx: RunContext) -> EvalPreprocessing:
        """The original's ``test_transform``: ``Resize(load)``, ``CenterCrop(crop)``, ``ToTensor``.

        Args:
            ctx: unused (every test set alike).

        Returns:
            The preprocessing; facts: variant, sizes and normalisations.
        """
        load, crop, artifact = self.sizes()
        v = self.variant
        facts = {"variant": self.config.variant, "load_size": load, "crop_size": crop, "artifact_size": artifact,
                 "semantic_norm": [list(v.sem_mean), list(v.sem_std)],
                 "artifact_norm": [list(v.art_mean), list(v.art_std)], "residual": v.residual}
        transform = transforms.Compose([transforms.Resize(load), transforms.CenterCrop(crop), self.to_tensor()])
        return EvalPreprocessing(transform, by_shape=False, facts=facts)

    def state_module(self) -> nn.Module:
        """The trained parts under the original's names (``sem.fc``, ``art.artifact_encoder``, ``art.fc``,
        ``fusion.fc``); the frozen encoder and VAE are named in the identity.

        Returns:
            A :class:`TrainableCoSpy` view.
        """
        return TrainableCoSpy(self.net)

    def train_setup(self, ctx: RunContext, train: pd.DataFrame) -> TrainSetup:
        """Joint training of the fused network (a recorded departure from the original's three stages).

        Args:
            ctx: unused.
            train: unused.

        Returns:
            The :class:`~detbench.kit.training.TrainSetup`.
        """
        c = self.config
        load, crop, _ = self.sizes()
        model = self.state_module()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=c.lr,
                                      betas=(0.9, 0.999), weight_decay=0.0)
        return TrainSetup(
            model=model, optimizer=optimizer,
            schedule=StepDecaySchedule(c.lr, every=c.lr_decay_every, factor=c.lr_decay),
            train_transform=TrainAugment(load, crop, c.flip), heldout_transform=self.preprocessing.transform,
            loss=bce_with_logits, probabilities=self.probabilities, epochs=c.epochs, batch_size=c.train_batch_size,
            keep="best", checkpoint_every=c.checkpoint_every, heldout_batch_size=c.batch_size,
            precision=self.precision, name=self.name)

    def identity(self) -> dict[str, Any]:
        """:meth:`ClassifierDetector.identity` plus the encoder, the release's files and the VAE.

        Returns:
            Also ``semantic_backbone``, ``release_files`` (each file's sha256), ``vae`` (its origin and sha256) and
            ``stand_in`` (None for the variant's own pretrained encoder).
        """
        release = self.release_facts if self.released is not None else None
        return {**super().identity(), "semantic_backbone": self.backbone.identity(), "release_files": release,
                "vae": self.vae_facts, "stand_in": self.stand_in}

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Take the release, or train jointly (:meth:`ClassifierDetector.fit`).

        Args:
            train: the training rows.
            heldout: the held-out rows.
            ctx: the run context.

        Returns:
            The base facts plus the release's files, the VAE's origin and, when trained, the departure.
        """
        facts = super().fit(train, heldout, ctx)
        if self.released is not None:
            facts["release_files"] = self.release_facts
        else:
            facts["departure"] = "joint training of the fused network (the original trains three stages)"
        return {**facts, "vae": self.vae_facts, "stand_in": self.stand_in}
