"""AIDE's evaluation loop (shilinyan99/AIDE): ``main_finetune.py`` in ``--eval`` mode (``scripts/eval.sh``) with
``engine_finetune.py`` ``evaluate``, ``data/datasets.py`` ``TestDataset``, ``data/dct.py`` ``DCT_base_Rec_Module``
and ``models/AIDE.py`` ``AIDE_Model``, re-derived from their semantics.

- Model: ``AIDE(resnet_path, convnext_path)``: the 30 SRM filters as a 3 -> 30 5x5 convolution (``hpf``), two
  ResNet-50s (v1.5 bottlenecks) with 30-channel 7x7 stems whose forward ends at the pooled 2048-d feature
  (``model_min``, ``model_max``; their ``fc`` is kept but unused), ``open_clip.create_model_and_transforms(
  'convnext_xxlarge', pretrained=convnext_path)`` of which the visual ``trunk`` is kept with its head's
  ``global_pool`` and ``flatten`` replaced by identities (the head's LayerNorm then runs at every position),
  ``convnext_proj = Linear(3072, 256)`` and the MLP ``fc`` (2304 -> 1024, GELU, -> 2). ``utils.auto_load_model``
  loads ``torch.load(resume)['model']`` strictly. Here ``pretrained=None``: the checkpoint carries every weight.
- Forward: ``hpf`` on each of the four patches; under ``no_grad`` the trunk on the whole image converted from
  ImageNet to CLIP normalisation, the assertion that its map is ``(3072, 8, 8)``, the average pool and
  ``convnext_proj``; ``model_min`` on patches 0 and 2, ``model_max`` on 1 and 3, their features averaged;
  ``fc`` on [semantic 256, low-level 2048].
- Data: ``TestDataset(root)``: ``os.listdir`` of ``root/0_real`` then ``root/1_fake`` (every file, in listing
  order); per image PIL open + ``convert('RGB')``, ``ToTensor``; ``DCT_base_Rec_Module`` (32 px patches every
  16 px, each through the orthonormal DCT; graded by the sum over 6 bands k of 2^k times the band-normalised sum
  of log(|DCT| + 1); ``torch.sort`` of the grades picks the lowest, highest, second lowest and second highest; the
  patches are the all-pass inverse DCT of the coefficients); the four patches and the image each ``Resize([256,
  256])`` as tensors (bilinear, no antialias: the torchvision the code ran with had none for tensors) and ImageNet
  ``Normalize``, stacked as ``[minmin, maxmax, minmin1, maxmax1, image]``.
- Loader: ``batch_size`` 32 (``scripts/eval.sh``), ``num_workers`` 16 (``--num_workers``' default), no shuffling
  (one process: the ``DistributedSampler`` of one replica is the sequential order); ``pin_memory`` has no effect
  without a GPU and is left off.
- Loop: ``evaluate`` under ``torch.no_grad()``, float32 (``use_amp`` False): per batch the forward, the
  cross-entropy loss and top-1/top-2 accuracy it logs; the logits concatenated, then scipy's ``softmax`` of the
  float32 logits, column 1.

``TRUNK`` and ``INPUT_SIZE`` are the original's (``convnext_xxlarge``, 256); the equivalence test sets a small open_clip
ConvNeXt and size in their place (the assertion then reads the trunk's width and ``INPUT_SIZE / 32``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from detbench.perf.originals import Checkpoint, calibrate_head

SOURCE = "shilinyan99/AIDE main_finetune.py --eval + engine_finetune.py evaluate"
BATCH_SIZE = 32
WORKERS = 16
TRUNK = "convnext_xxlarge"
INPUT_SIZE = 256
WINDOW, STRIDE, GRADES = 32, 16, 6
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _dct_matrix(n: int) -> Any:
    import numpy as np
    import torch

    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    scale = np.where(i == 0, np.sqrt(1.0 / n), np.sqrt(2.0 / n))
    return torch.tensor(scale * np.cos((j + 0.5) * np.pi * i / n)).float()


def _band(start: float, end: float, n: int) -> Any:
    import torch

    ij = torch.arange(n)[:, None] + torch.arange(n)[None, :]
    return ((ij >= start) & (ij <= end)).float()


class _Patches:
    """``DCT_base_Rec_Module``: ``[C, H, W]`` -> the four patches ``[C, 32, 32]`` (minmin, maxmax, minmin1, maxmax1)."""

    def __init__(self) -> None:
        self.d = _dct_matrix(WINDOW)
        self.d_t = self.d.t()
        self.all_pass = _band(0, WINDOW * 2, WINDOW)
        self.grades = [_band(WINDOW * 2.0 / GRADES * k, WINDOW * 2.0 / GRADES * (k + 1), WINDOW) for k in range(GRADES)]

    def __call__(self, x: Any) -> tuple[Any, Any, Any, Any]:
        import torch
        import torch.nn.functional as F

        c = x.shape[0]
        cols = F.unfold(x.unsqueeze(0), kernel_size=WINDOW, stride=STRIDE).squeeze(0)
        patches = cols.transpose(0, 1).reshape(cols.shape[1], c, WINDOW, WINDOW)
        coeffs = self.d @ patches @ self.d_t
        rebuilt = self.d_t @ (coeffs * self.all_pass) @ self.d
        grade = torch.zeros(cols.shape[1])
        weight = 1
        for band in self.grades:
            grade += weight * torch.sum(torch.log(torch.abs(coeffs) + 1) * band / torch.sum(band), dim=[1, 2, 3])
            weight *= 2
        _, idx = torch.sort(grade)
        high = torch.flip(idx, dims=[0])
        picks = (idx[0], high[0], idx[1] if len(idx) > 1 else idx[0], high[1] if len(idx) > 1 else high[0])
        return tuple(rebuilt[int(i)] for i in picks)


class _TestDataset:
    """``TestDataset`` over one folder holding ``0_real`` and ``1_fake``."""

    def __init__(self, root: Path) -> None:
        import torchvision.transforms as T

        self.samples = [(os.path.join(root, label, name), y) for y, label in enumerate(("0_real", "1_fake"))
                        for name in os.listdir(os.path.join(root, label))]
        self.patches = _Patches()
        self.to_tensor = T.ToTensor()
        self.resize_normalize = T.Compose([T.Resize([INPUT_SIZE, INPUT_SIZE], antialias=False),
                                           T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        import torch
        from PIL import Image

        path, label = self.samples[index]
        image = self.to_tensor(Image.open(path).convert("RGB"))
        views = [*self.patches(image), image]
        return torch.stack([self.resize_normalize(v) for v in views], dim=0), torch.tensor(label)


def _network() -> Any:
    """``AIDE_Model(None, None)`` with ``TRUNK`` as its semantic trunk (random weights: the checkpoint has them)."""
    import open_clip
    import torch
    from torch import nn
    from torchvision.models.resnet import Bottleneck, ResNet

    class Expert(ResNet):
        """``models/AIDE.py`` ``ResNet``: a 30-channel stem; the forward stops at the pooled feature."""

        def __init__(self) -> None:
            super().__init__(Bottleneck, [3, 4, 6, 3], zero_init_residual=True)
            self.conv1 = nn.Conv2d(30, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.avgpool(self.layer4(self.layer3(self.layer2(self.layer1(x)))))
            return x.view(x.size(0), -1)

    class Mlp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(2048 + 256, 1024), nn.GELU(), nn.Linear(1024, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.act(self.fc1(x)))

    class HPF(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hpf = nn.Conv2d(3, 30, kernel_size=5, padding=2, bias=False).requires_grad_(False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.hpf(x)

    class AIDEModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hpf = HPF()
            self.model_min, self.model_max = Expert(), Expert()
            self.fc = Mlp()
            clip, _, _ = open_clip.create_model_and_transforms(TRUNK, pretrained=None)
            self.openclip_convnext_xxl = clip.visual.trunk
            self.openclip_convnext_xxl.head.global_pool = nn.Identity()
            self.openclip_convnext_xxl.head.flatten = nn.Identity()
            self.openclip_convnext_xxl.eval()
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.convnext_proj = nn.Sequential(nn.Linear(self.openclip_convnext_xxl.num_features, 256))
            self.openclip_convnext_xxl.requires_grad_(False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            minmin, maxmax, minmin1, maxmax1 = (self.hpf(x[:, i]) for i in range(4))
            tokens = x[:, 4]
            with torch.no_grad():
                clip_mean = torch.tensor(CLIP_MEAN).to(tokens).view(3, 1, 1)
                clip_std = torch.tensor(CLIP_STD).to(tokens).view(3, 1, 1)
                mean = torch.tensor(IMAGENET_MEAN).to(tokens).view(3, 1, 1)
                std = torch.tensor(IMAGENET_STD).to(tokens).view(3, 1, 1)
                feats = self.openclip_convnext_xxl(tokens * (std / clip_std) + (mean - clip_mean) / clip_std)
                side = INPUT_SIZE // 32
                assert feats.size()[1:] == (self.openclip_convnext_xxl.num_features, side, side)
                x_0 = self.convnext_proj(self.avgpool(feats).view(tokens.size(0), -1))
            x_1 = (self.model_min(minmin) + self.model_max(maxmax) + self.model_min(minmin1)
                   + self.model_max(maxmax1)) / 4
            return self.fc(torch.cat([x_0, x_1], dim=1))

    return AIDEModel()


def write_checkpoint(folder: Path, root: Path, seed: int = 0) -> Checkpoint:
    """Seeded random weights as the authors' checkpoint (``{'model': state_dict}``, every weight, the trunk's
    included); the BatchNorm layers get random affine parameters and statistics (a fresh network's are the identity,
    and its zero-initialised residual branches would leave the ResNets' blocks unused).

    Args:
        folder: where to write ``checkpoint-best.pth``.
        root: a test set folder; the head is rescaled so that its first images' scores spread
            (:func:`~detbench.perf.originals.calibrate_head`).
        seed: seeds the initialisation.

    Returns:
        The file and ``weights=FILE`` (detbench then builds the trunk with random weights and loads the checkpoint's).
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = _network().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.3, 0.7)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    dataset = _TestDataset(root)
    # 4 images: a full-size forward costs seconds per image on a CPU
    calibrate_head(model, model.fc.fc2, torch.stack([dataset[i][0] for i in range(min(4, len(dataset)))]))
    path = folder / "checkpoint-best.pth"
    torch.save({"model": model.state_dict()}, path)
    return Checkpoint({"weights": path}, [f"weights={path}"])


def load(files: dict[str, Path]) -> Any:
    """``main_finetune.py``: ``AIDE(None, None)`` then ``utils.auto_load_model``'s strict ``load_state_dict`` of the
    checkpoint's ``model``.

    Args:
        files: ``weights``: the checkpoint.

    Returns:
        The model in evaluation mode (``evaluate`` calls ``model.eval()``).
    """
    import torch

    model = _network()
    # the torch of the code unpickled whole checkpoints (``args`` is an argparse.Namespace); the bench writes its own
    model.load_state_dict(torch.load(files["weights"], map_location="cpu", weights_only=False)["model"])
    return model.eval()


def score(model: Any, root: Path) -> dict[str, float]:
    """``evaluate`` over ``TestDataset(root)``.

    Args:
        model: from :func:`load`.
        root: the test set folder (``0_real``, ``1_fake``).

    Returns:
        P(fake) per image path relative to ``root``.
    """
    import torch
    from PIL import ImageFile
    from scipy.special import softmax
    from timm.utils import accuracy

    # data/datasets.py sets PIL's process-wide flag on import; here only while the loop runs, so that this process's
    # later image decoding keeps refusing truncated files.
    truncated, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, True
    try:
        dataset = _TestDataset(root)
        loader = torch.utils.data.DataLoader(dataset, sampler=torch.utils.data.SequentialSampler(dataset),
                                             batch_size=BATCH_SIZE, num_workers=WORKERS, drop_last=False)
        criterion = torch.nn.CrossEntropyLoss()
        outputs, logged = [], []
        with torch.no_grad():
            model.eval()
            for images, target in loader:
                output = model(images)
                acc1, acc5 = accuracy(output, target, topk=(1, 2))
                logged.append((criterion(output, target).item(), acc1.item(), acc5.item()))  # the MetricLogger's
                outputs.append(output)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated
    y_pred = softmax(torch.cat(outputs).numpy(), axis=1)[:, 1]
    return {Path(p).relative_to(root).as_posix(): float(s) for (p, _), s in zip(dataset.samples, y_pred, strict=True)}
