"""AIDE's input (``data/dct.py``, ``data/datasets.py``): the DCT-graded choice of four patches and the stack of five
resized, ImageNet-normalised views every network input is (see :mod:`detbench.detectors.aide`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from detbench.data.preprocess import IMAGENET_MEAN, IMAGENET_STD

WINDOW, STRIDE, GRADES = 32, 16, 6  # DCT patch side, patch stride, number of frequency bands in the grade


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
    near-ties between patch grades resolve as they do there.
    """

    def __init__(self) -> None:
        self.dct = dct_matrix()
        self.dct_t = self.dct.t()  # a transposed view, as the original's parameter
        self.bands = [_band(WINDOW * 2.0 / GRADES * k, WINDOW * 2.0 / GRADES * (k + 1)) for k in range(GRADES)]
        self.band_sizes = [b.sum() for b in self.bands]

    def __call__(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The four selected patches of ``image`` (``[3, H, W]``, at least 32 px each side), each ``[3, 32, 32]``."""
        c, h, w = image.shape
        if h < WINDOW or w < WINDOW:
            raise ValueError(f"AIDE needs images of at least {WINDOW}x{WINDOW} px (its DCT patches); this one is "
                             f"{w}x{h}")
        patches = F.unfold(image.unsqueeze(0), kernel_size=WINDOW, stride=STRIDE).squeeze(0)
        n = patches.shape[1]
        patches = patches.transpose(0, 1).reshape(n, c, WINDOW, WINDOW)
        coeffs = self.dct @ patches @ self.dct_t
        # log(|DCT| + 1) once, each band's share in one reused buffer: the original's operations in its order (mask,
        # divide by the band size, sum, weighted accumulation), so every grade is its grade to the bit
        logmag = coeffs.abs().add_(1).log_()
        energy = torch.empty_like(logmag)
        grade = torch.zeros(n)
        weight = 1
        for band, size in zip(self.bands, self.band_sizes, strict=True):
            torch.mul(logmag, band, out=energy).div_(size)
            grade += weight * torch.sum(energy, dim=[1, 2, 3])
            weight *= 2
        _, order = torch.sort(grade)
        second = 1 if n > 1 else 0
        chosen = order[[0, n - 1, second, n - 1 - second]]
        rebuilt = self.dct_t @ coeffs[chosen] @ self.dct  # the all-pass band filter's round trip
        return rebuilt[0], rebuilt[1], rebuilt[2], rebuilt[3]


class AIDETransform:
    """PIL image -> ``[5, 3, S, S]``: (lowest, highest, second lowest, second highest patch, whole image), each
    resized as a tensor to ``size`` (bilinear) and ImageNet-normalised. Picklable for DataLoader workers.
    """

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
        """The ``[5, 3, S, S]`` stack of a PIL image."""
        return self.from_tensor(self.to_tensor(img))
