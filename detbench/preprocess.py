"""Image → normalised tensor for a backbone: resize policy, centre/random crop, padding, flip.

Detectors of generated images are sensitive to resampling, so the default policy (``resize="none"``) never
resizes: it centre-crops, and pads images smaller than the crop with the mean colour (zero after
normalisation). This is the UnivFD / MPFT evaluation policy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet normalisation (CNNSpot, NPR, ...)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_POLICIES = ("none", "shorter", "stretch")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
PAD_FILLS = ("mean", "black")  # black = torchvision CenterCrop's padding, as in the UnivFD evaluation


def imagenet_tensor() -> Any:
    """torchvision's ``Compose([ToTensor(), Normalize(IMAGENET_MEAN, IMAGENET_STD)])``: how the CNNDetection
    family of originals turns a PIL image into a network input (picklable for DataLoader workers)."""
    from torchvision import transforms

    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


@dataclass(frozen=True)
class Preprocess:
    """Preprocessing that feeds a backbone; part of every feature's identity."""

    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "none"
    interpolation: str = "bicubic"
    pad: str = "mean"  # fill for images smaller than the crop: "mean" colour (0 after normalising) or "black"

    def __post_init__(self) -> None:
        if self.crop <= 0:
            raise ValueError(f"crop must be positive, got {self.crop}")
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        if self.pad not in PAD_FILLS:
            raise ValueError(f"pad must be one of {PAD_FILLS}, got {self.pad!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values (std > 0), got {self.mean}, {self.std}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        return cls(crop=int(d["crop"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   resize=d.get("resize", "none"), interpolation=d.get("interpolation", "bicubic"),
                   pad=d.get("pad", "mean"))

    def resized_size(self, w: int, h: int) -> tuple[int, int]:
        """Image size after the resize policy (before cropping)."""
        if self.resize == "stretch":
            return self.crop, self.crop
        if self.resize == "shorter":
            # torchvision's Resize(int) convention: shorter side = crop, longer side truncated.
            if w <= h:
                return self.crop, int(self.crop * h / w)
            return int(self.crop * w / h), self.crop
        return w, h

    def was_padded(self, w: int, h: int) -> bool:
        """Whether an image of ``w``×``h`` gets padded (only possible with ``resize="none"``)."""
        rw, rh = self.resized_size(w, h)
        return rw < self.crop or rh < self.crop

    def eval_transform(self) -> _EvalTransform:
        """Deterministic: resize policy, centre crop (pad if small), normalise → float [3, crop, crop]."""
        return _EvalTransform(self)

    def train_transform(self, flip: bool = True) -> _TrainTransform:
        """Resize policy, random crop (pad if small), random horizontal flip; uses torch's global RNG."""
        return _TrainTransform(self, flip)

    def resize_image(self, img: Image.Image) -> Image.Image:
        """``img`` (as RGB) resized by the policy. Raises ImageError ``too_large`` when the result would exceed the
        decoder's pixel guard (``resize="shorter"`` turns a 1 x 1,000,000 strip into 224 x 224,000,000)."""
        from PIL import Image

        from detbench.images import DEFAULT_MAX_PIXELS, ImageError

        if img.mode != "RGB":
            img = img.convert("RGB")
        size = self.resized_size(*img.size)
        if size == img.size:
            return img
        if size[0] * size[1] > DEFAULT_MAX_PIXELS:
            raise ImageError("too_large", f"resize={self.resize} would make the {img.width}x{img.height} image "
                                          f"{size[0]}x{size[1]}, over {DEFAULT_MAX_PIXELS} pixels")
        return img.resize(size, resample=getattr(Image.Resampling, self.interpolation.upper()))

    def _finish(self, img: Image.Image, left: int, top: int, flip: bool) -> torch.Tensor:
        """Crop the window at (left, top), normalise, centre the result on a canvas of the pad colour."""
        import torch

        w, h = img.size
        cw, ch = min(w, self.crop), min(h, self.crop)
        arr = np.asarray(img.crop((left, top, left + cw, top + ch)), dtype=np.float32)
        if flip:
            arr = arr[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        x = (x / 255.0 - mean) / std
        if cw == self.crop and ch == self.crop:
            return x
        out = torch.zeros(3, self.crop, self.crop, dtype=torch.float32)
        if self.pad == "black":
            out += ((0.0 - mean) / std).view(3, 1, 1)
        # torchvision's CenterCrop padding placement: the extra pixel goes right/bottom.
        px, py = (self.crop - cw) // 2, (self.crop - ch) // 2
        out[:, py:py + ch, px:px + cw] = x
        return out


class _EvalTransform:
    """Picklable (for DataLoader workers) deterministic transform."""

    def __init__(self, pp: Preprocess) -> None:
        self.pp = pp

    def __call__(self, img: Image.Image) -> torch.Tensor:
        img = self.pp.resize_image(img)
        w, h = img.size
        # torchvision's CenterCrop offset convention.
        left = int(round((w - self.pp.crop) / 2.0)) if w > self.pp.crop else 0
        top = int(round((h - self.pp.crop) / 2.0)) if h > self.pp.crop else 0
        return self.pp._finish(img, left, top, flip=False)


class _TrainTransform:
    """Picklable random-crop + flip transform; seeding torch makes it reproducible."""

    def __init__(self, pp: Preprocess, flip: bool) -> None:
        self.pp, self.flip = pp, flip

    def __call__(self, img: Image.Image) -> torch.Tensor:
        import torch

        img = self.pp.resize_image(img)
        w, h = img.size
        left = int(torch.randint(0, w - self.pp.crop + 1, (1,))) if w > self.pp.crop else 0
        top = int(torch.randint(0, h - self.pp.crop + 1, (1,))) if h > self.pp.crop else 0
        flip = self.flip and bool(torch.randint(0, 2, (1,)))
        return self.pp._finish(img, left, top, flip=flip)
