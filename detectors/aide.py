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
- Head: an MLP 2304 -> 1024 (GELU) -> 2 on [semantic 256, low-level 2048]; P(fake) = softmax[:, 1].

Released checkpoints are ``{'model': state_dict, 'optimizer', 'epoch', 'scaler', 'args'}`` with every weight,
the ConvNeXt trunk included; ``--set weights=PATH[#sha256=HEX]`` loads them strictly (weights only; ``args`` is
an ``argparse.Namespace``, the one class :mod:`detbench.weights` allows beyond tensors), and no OpenCLIP weights
are needed then. Training (``detectors/aide_train.py``) follows ``scripts/train.sh`` on the shared loop of
:mod:`detbench.training`; a fit saves everything but the frozen trunk, under the original's key names.

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
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detbench.classifier import ClassifierDetector, EvalPreprocessing
from detbench.detector import RunContext
from detbench.probabilities import softmax_fake

WINDOW, STRIDE, GRADES = 32, 16, 6  # DCT patch side, patch stride, number of frequency bands in the grade
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ORIGINAL_SEMANTIC = ("open_clip", "convnext_xxlarge")
INIT_STREAM = 0x41DE  # the seed stream of the network's random initialisation (with the run seed)
WEIGHTS_FIX = ("pass --set weights=/path/to/checkpoint.pth: an AIDE checkpoint of the authors' format "
               "({'model': state_dict, ...}), e.g. from the Model Zoo linked in the shilinyan99/AIDE README")


# ---------------------------------------------------------------------------------------------- SRM filters


def srm_filters() -> np.ndarray:
    """The 30 SRM high-pass residual filters (Fridrich & Kodovsky 2012) in AIDE's order, as ``[30, 5, 5]``.

    Order and scaling: 8 first-order (/1), 4 second-order (/2), 8 third-order (/3), 4 EDGE3x3 (/4), 4 EDGE5x5
    (/12), SQUARE3x3 (/4), SQUARE5x5 (/12); 3x3 kernels sit in the centre of a zero 5x5.

    Returns:
        ``[30, 5, 5]`` float32.
    """
    def place(k: list[list[float]]) -> np.ndarray:
        a = np.asarray(k, dtype=np.float32)
        return np.pad(a, 1) if a.shape == (3, 3) else a

    ring = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]  # first order: neighbour minus centre
    first = []
    for r, c in ring:
        k = np.zeros((3, 3), np.float32)
        k[1, 1], k[r, c] = -1, 1
        first.append(k)
    second = [[[1, 0, 0], [0, -2, 0], [0, 0, 1]], [[0, 1, 0], [0, -2, 0], [0, 1, 0]],
              [[0, 0, 1], [0, -2, 0], [1, 0, 0]], [[0, 0, 0], [1, -2, 1], [0, 0, 0]]]
    third = []
    for dr, dc in [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]:
        k = np.zeros((5, 5), np.float32)  # -1, 3, -3, 1 along a ray through the centre, ending one step beyond
        for step, value in zip((-2, -1, 0, 1), (1, -3, 3, -1), strict=True):
            k[2 - step * dr, 2 - step * dc] = value
        third.append(-k)
    sq3 = np.array([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]], np.float32)
    sq5 = np.array([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2],
                    [-1, 2, -2, 2, -1]], np.float32)
    edge3 = [sq3 * m for m in _half_masks(3)]
    edge5 = [sq5 * m for m in _half_masks(5)]
    bank = ([place(k) for k in first] + [place(k) / 2 for k in second] + [k / 3 for k in third]
            + [place(k) / 4 for k in edge3] + [k / 12 for k in edge5] + [place(sq3) / 4, sq5 / 12])
    return np.stack(bank).astype(np.float32)


def _half_masks(n: int) -> list[np.ndarray]:
    """EDGE kernels are SQUARE kernels with a half-plane zeroed: bottom rows, left columns, top rows, right
    columns (the centre row/column kept), in this order."""
    c = n // 2
    masks = []
    for keep in (np.s_[: c + 1, :], np.s_[:, c:], np.s_[c:, :], np.s_[:, : c + 1]):
        m = np.zeros((n, n), np.float32)
        m[keep] = 1
        masks.append(m)
    return masks


# ---------------------------------------------------------------------------------------------- DCT patches


def dct_matrix(n: int = WINDOW) -> Tensor:
    """The orthonormal DCT-II matrix of ``data/dct.py`` (float64 formula, stored as float32).

    Args:
        n: the patch side.

    Returns:
        ``[n, n]`` float32, row ``i`` = frequency ``i``; ``D @ P @ D.T`` transforms a patch ``P``.
    """
    i = np.arange(n, dtype=np.float64)[:, None]
    j = np.arange(n, dtype=np.float64)[None, :]
    scale = np.where(i == 0, np.sqrt(1.0 / n), np.sqrt(2.0 / n))
    return torch.tensor(scale * np.cos((j + 0.5) * np.pi * i / n)).float()


def _band(start: float, end: float, n: int = WINDOW) -> Tensor:
    i = np.arange(n)[:, None] + np.arange(n)[None, :]
    return torch.tensor(((i >= start) & (i <= end)).astype(np.float32))


class PatchSelector:
    """The four patches AIDE keeps from a ``[3, H, W]`` image in [0, 1]: (lowest, highest, second lowest,
    second highest) DCT grade, each ``[3, 32, 32]``. The arithmetic follows ``data/dct.py`` step by step so that
    near-ties between patch grades resolve as they do there."""

    def __init__(self) -> None:
        self.dct = dct_matrix()
        self.dct_t = self.dct.t()  # a transposed view, as the original's parameter
        self.bands = [_band(WINDOW * 2.0 / GRADES * k, WINDOW * 2.0 / GRADES * (k + 1)) for k in range(GRADES)]
        self.band_sizes = [b.sum() for b in self.bands]

    def __call__(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c, h, w = image.shape
        if h < WINDOW or w < WINDOW:
            raise ValueError(f"AIDE needs images of at least {WINDOW}x{WINDOW} px (its DCT patches); this one is "
                             f"{w}x{h}")
        patches = F.unfold(image.unsqueeze(0), kernel_size=WINDOW, stride=STRIDE).squeeze(0)
        n = patches.shape[1]
        patches = patches.transpose(0, 1).reshape(n, c, WINDOW, WINDOW)
        coeffs = self.dct @ patches @ self.dct_t
        grade = torch.zeros(n)
        weight = 1
        for band, size in zip(self.bands, self.band_sizes, strict=True):
            energy = torch.log(torch.abs(coeffs) + 1) * band / size
            grade += weight * torch.sum(energy, dim=[1, 2, 3])
            weight *= 2
        _, order = torch.sort(grade)
        second = 1 if n > 1 else 0
        chosen = order[[0, n - 1, second, n - 1 - second]]
        rebuilt = self.dct_t @ coeffs[chosen] @ self.dct  # the all-pass band filter's round trip
        return rebuilt[0], rebuilt[1], rebuilt[2], rebuilt[3]


class AIDETransform:
    """PIL image -> ``[5, 3, S, S]``: (lowest, highest, second lowest, second highest patch, whole image), each
    resized as a tensor to ``size`` (bilinear) and ImageNet-normalised. Picklable for DataLoader workers."""

    def __init__(self, size: int, antialias: bool) -> None:
        self.size, self.antialias = size, antialias
        self.select = PatchSelector()
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def to_tensor(self, img: Any) -> Tensor:
        """``torchvision.transforms.ToTensor`` of a PIL image converted to RGB.

        Args:
            img: a PIL image (any mode).

        Returns:
            ``[3, H, W]`` float32 in [0, 1].
        """
        arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255)

    def finish(self, x: Tensor) -> Tensor:
        """``Resize([S, S])`` on a tensor (bilinear, antialiased only with ``antialias``), then ``Normalize``
        (ImageNet).

        Args:
            x: ``[3, H, W]`` in [0, 1] (a patch or the whole image).

        Returns:
            ``[3, S, S]`` float32, ``S`` = ``size``.
        """
        x = F.interpolate(x.unsqueeze(0), size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=self.antialias).squeeze(0)
        return (x - self.mean) / self.std

    def from_tensor(self, image: Tensor) -> Tensor:
        """The stack of an image already in [0, 1] (after any training augmentation).

        Args:
            image: ``[3, H, W]`` in [0, 1], at least 32 px on each side.

        Returns:
            ``[5, 3, S, S]``: the four selected patches (see :class:`PatchSelector`) then the whole image, each
            resized and normalised by :meth:`finish`.

        Raises:
            ValueError: the image is under 32 px on a side (the data loader records it as that image's failure,
                ``invalid: ...``).
        """
        views = (*self.select(image), image)
        return torch.stack([self.finish(v) for v in views])

    def __call__(self, img: Any) -> Tensor:
        return self.from_tensor(self.to_tensor(img))


# ---------------------------------------------------------------------------------------------- networks


def expert_resnet() -> nn.Module:
    """A ResNet-50 (torchvision layout, zero-initialised residual ends) whose stem takes the 30 SRM residuals and
    whose forward returns the 2048-d pooled feature; its 1000-class ``fc`` exists, unused, as in the original
    (frozen: no gradient ever reaches it, so the original's AdamW never changes it either).

    Returns:
        The module, randomly initialised as the original initialises it (Kaiming normal, fan-out).
    """
    from torchvision.models.resnet import Bottleneck, ResNet

    class ExpertResNet(ResNet):
        def forward(self, x: Tensor) -> Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return torch.flatten(self.avgpool(x), 1)

    net = ExpertResNet(Bottleneck, [3, 4, 6, 3], zero_init_residual=True)
    net.conv1 = nn.Conv2d(30, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.fc.requires_grad_(False)  # unused: DistributedDataParallel needs every trainable parameter to get a gradient
    return net


class SRMConv(nn.Module):
    """The fixed filter bank as a frozen convolution (``hpf.hpf.weight`` in the checkpoints)."""

    def __init__(self) -> None:
        super().__init__()
        self.hpf = nn.Conv2d(3, 30, kernel_size=5, padding=2, bias=False)
        bank = torch.from_numpy(srm_filters()).view(30, 1, 5, 5).repeat(1, 3, 1, 1)
        self.hpf.weight = nn.Parameter(bank, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        """The 30 SRM residuals of a batch, each filter summed over R, G and B.

        Args:
            x: ``[B, 3, H, W]`` (ImageNet-normalised patches, as the original feeds them).

        Returns:
            ``[B, 30, H, W]`` (zero padding keeps the size).
        """
        return self.hpf(x)


class AIDENet(nn.Module):
    """AIDE with the original's module names, so released state dicts load strictly.

    Args:
        semantic: the semantic trunk (registered as ``openclip_convnext_xxl``).
        semantic_dim: its pooled feature size (3072 for ConvNeXt-XXL).
        semantic_mean, semantic_std: the normalisation the trunk expects (CLIP's for the original).
        convnext_pool: pool the trunk's feature map as the original does for a ConvNeXt (head norm at every
            position, then the average); otherwise ``semantic_embed`` gives the pooled feature.
        semantic_embed: the trunk's pooled embedding for non-ConvNeXt stand-ins.
    """

    def __init__(self, semantic: nn.Module, semantic_dim: int, semantic_mean: tuple[float, ...],
                 semantic_std: tuple[float, ...], *, convnext_pool: bool, semantic_embed: Any = None,
                 train_proj: bool = False) -> None:
        from timm.layers import Mlp

        super().__init__()
        self.hpf = SRMConv()
        self.model_min = expert_resnet()
        self.model_max = expert_resnet()
        self.fc = Mlp(2048 + 256, 1024, 2)
        self.openclip_convnext_xxl = semantic
        if convnext_pool:
            semantic.head.global_pool = nn.Identity()
            semantic.head.flatten = nn.Identity()
        self.convnext_pool, self.semantic_embed, self.train_proj = convnext_pool, semantic_embed, train_proj
        self.semantic_mean, self.semantic_std = semantic_mean, semantic_std
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.convnext_proj = nn.Sequential(nn.Linear(semantic_dim, 256))
        semantic.requires_grad_(False)
        if not train_proj:
            self.convnext_proj.requires_grad_(False)

    def semantic_features(self, tokens: Tensor) -> Tensor:
        """The pooled semantic feature of ImageNet-normalised images (re-normalised for the trunk first).

        Args:
            tokens: ``[B, 3, S, S]`` whole images, ImageNet-normalised (the last view of :class:`AIDETransform`).

        Returns:
            ``[B, semantic_dim]`` (3072 for ConvNeXt-XXL), before ``convnext_proj``.
        """
        in_mean = torch.tensor(IMAGENET_MEAN).to(tokens).view(3, 1, 1)
        in_std = torch.tensor(IMAGENET_STD).to(tokens).view(3, 1, 1)
        mean = torch.tensor(self.semantic_mean).to(tokens).view(3, 1, 1)
        std = torch.tensor(self.semantic_std).to(tokens).view(3, 1, 1)
        x = tokens * (in_std / std) + (in_mean - mean) / std
        if not self.convnext_pool:
            return self.semantic_embed(x)
        return self.avgpool(self.openclip_convnext_xxl(x)).view(tokens.size(0), -1)

    def forward(self, x: Tensor) -> Tensor:
        """AIDE's forward: semantic feature (no gradient; ``convnext_proj`` too unless ``train_proj``) and the
        average of the four expert features, through the MLP head.

        Args:
            x: ``[B, 5, 3, S, S]`` stacks (see :class:`AIDETransform`).

        Returns:
            ``[B, 2]`` logits (real, fake).
        """
        minmin, maxmax, minmin1, maxmax1, tokens = x.unbind(1)
        with torch.no_grad():
            feats = self.semantic_features(tokens)
            if not self.train_proj:
                feats = self.convnext_proj(feats)
        x_0 = self.convnext_proj(feats) if self.train_proj else feats
        x_min = self.model_min(self.hpf(minmin))
        x_max = self.model_max(self.hpf(maxmax))
        x_min1 = self.model_min(self.hpf(minmin1))
        x_max1 = self.model_max(self.hpf(maxmax1))
        x_1 = (x_min + x_max + x_min1 + x_max1) / 4
        return self.fc(torch.cat([x_0, x_1], dim=1))


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class AIDEConfig:
    backbone: str = "open_clip:convnext_xxlarge@laion2b_s34b_b82k_augreg_soup"  # the frozen semantic trunk
    weights: str = ""  # a released checkpoint ({'model': ...}), optionally PATH#sha256=HEX; empty: train
    input_size: int = 256  # the tensor Resize([S, S]) of the patches and the whole image
    antialias: bool = False  # that resize's antialias (the original's torchvision had none for tensors)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    batch_size: int = 32  # images per forward pass when scoring (the original: 32 per GPU)
    train_proj: bool = False  # the paper trains convnext_proj; the code never does (it runs under no_grad)
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


class AIDE(ClassifierDetector):
    name = "aide"
    version = 2  # 2: trains on the shared loop; a fit's state is model.safetensors (the same keys as before)
    Config = AIDEConfig
    summary = ("AIDE (ICLR 2025): DCT-graded patches through SRM filters and two ResNet-50 experts, plus frozen "
               "OpenCLIP ConvNeXt semantics; trained, or a released checkpoint.")
    weights_what = "the AIDE checkpoint"
    weights_fix = WEIGHTS_FIX
    init_stream = INIT_STREAM
    follows_eval_profiles = False  # the original evaluates every test set alike (patches at native size)
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
        self.stand_in = None if original else f"semantic trunk {bb.spec} instead of OpenCLIP ConvNeXt-XXL"

    def semantic_spec(self) -> str:
        """The semantic trunk to load: the configured one, with random weights when a released checkpoint
        (which carries the trunk's weights) is given.

        Returns:
            A backbone spec (``provider:arch@source``); ``provider:arch@random`` with ``weights``.
        """
        from detbench.backbones import parse_spec, split_options

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

        from detbench.backbones import load_backbone

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
        """P(fake) = softmax(logits)[:, 1] of the two logits (real, fake).

        Args:
            logits: ``[N, 2]`` logits.

        Returns:
            ``[N]`` P(fake).
        """
        return softmax_fake(logits)

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
            The :class:`~detbench.training.TrainSetup`.
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
