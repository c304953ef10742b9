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
    """How the CNNDetection family of originals turns a PIL image into a network input.

    Returns:
        torchvision's ``Compose([ToTensor(), Normalize(IMAGENET_MEAN, IMAGENET_STD)])`` (picklable for
        DataLoader workers).
    """
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
        """The preprocessing as a JSON-ready dict (mean and std as lists), as it enters feature identities.

        Returns:
            The fields.
        """
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        """The preprocessing a :meth:`to_dict` dict describes (resize, interpolation and pad default when absent).

        Args:
            d: the dict.

        Returns:
            The :class:`Preprocess`.
        """
        return cls(crop=int(d["crop"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   resize=d.get("resize", "none"), interpolation=d.get("interpolation", "bicubic"),
                   pad=d.get("pad", "mean"))

    def resized_size(self, w: int, h: int) -> tuple[int, int]:
        """Image size after the resize policy (before cropping).

        Args:
            w: image width in pixels.
            h: image height in pixels.

        Returns:
            ``(width, height)``: unchanged for ``none``, the crop for ``stretch``, shorter side = crop for
            ``shorter`` (torchvision's ``Resize(int)`` convention: the longer side truncated).
        """
        if self.resize == "stretch":
            return self.crop, self.crop
        if self.resize == "shorter":
            # torchvision's Resize(int) convention: shorter side = crop, longer side truncated.
            if w <= h:
                return self.crop, int(self.crop * h / w)
            return int(self.crop * w / h), self.crop
        return w, h

    def was_padded(self, w: int, h: int) -> bool:
        """Whether an image of ``w``×``h`` gets padded (only possible with ``resize="none"``).

        Args:
            w: image width in pixels.
            h: image height in pixels.

        Returns:
            True when a resized side is below the crop.
        """
        rw, rh = self.resized_size(w, h)
        return rw < self.crop or rh < self.crop

    def eval_transform(self) -> _EvalTransform:
        """Deterministic: resize policy, centre crop (pad if small), normalise → float [3, crop, crop].

        Returns:
            A picklable transform of a PIL image.
        """
        return _EvalTransform(self)

    def train_transform(self, flip: bool = True) -> _TrainTransform:
        """Resize policy, random crop (pad if small), random horizontal flip; uses torch's global RNG.

        Args:
            flip: whether to flip half of the images horizontally.

        Returns:
            A picklable transform of a PIL image.
        """
        return _TrainTransform(self, flip)

    def resize_image(self, img: Image.Image) -> Image.Image:
        """``img`` (as RGB) resized by the policy.

        Args:
            img: the image.

        Returns:
            The resized image (``img`` itself, converted to RGB if needed, when the size does not change).

        Raises:
            ImageError: ``too_large`` when the result would exceed the decoder's pixel guard (``resize="shorter"``
                turns a 1 x 1,000,000 strip into 224 x 224,000,000).
        """
        from PIL import Image

        from detbench.data.images import DEFAULT_MAX_PIXELS, ImageError

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
        """Crop the window at (left, top), normalise, centre the result on a canvas of the pad colour.

        The arithmetic is numpy's float32, element by element in torch's order (``(x / 255 - mean) / std``), so the
        values are torch's to the bit; numpy runs it on the calling thread, where torch would start its intra-op
        threads for every image of a loader without workers.
        """
        import torch

        w, h = img.size
        cw, ch = min(w, self.crop), min(h, self.crop)
        arr = np.asarray(img.crop((left, top, left + cw, top + ch)), dtype=np.float32)
        if flip:
            arr = arr[:, ::-1]
        mean = np.asarray(self.mean, dtype=np.float32).reshape(3, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(3, 1, 1)
        x = (arr.transpose(2, 0, 1) / np.float32(255.0) - mean) / std
        if cw == self.crop and ch == self.crop:
            return torch.from_numpy(np.ascontiguousarray(x))
        out = np.zeros((3, self.crop, self.crop), dtype=np.float32)
        if self.pad == "black":
            out += (np.float32(0.0) - mean) / std
        # torchvision's CenterCrop padding placement: the extra pixel goes right/bottom.
        px, py = (self.crop - cw) // 2, (self.crop - ch) // 2
        out[:, py:py + ch, px:px + cw] = x
        return torch.from_numpy(out)


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


# ------------------------------------------------------------------------------------------ eval profiles


@dataclass(frozen=True)
class EvalProfile:
    """A test set's evaluation convention as an original evaluation script applies it, in neutral terms.

    Suites publish these (``Suite.eval_profiles``); a detector whose original evaluates per test set applies
    :meth:`apply` to the RGB image, then its own ``ToTensor`` + normalisation. Steps, in the originals' order:
    ``tile`` (NPR's ``translate_duplicate``: an image smaller than ``tile`` on either side is repeated to cover
    it), ``resize`` by ``resize_policy`` (:data:`RESIZE_POLICIES`): ``stretch`` to ``resize`` x ``resize``
    ignoring the aspect ratio (torchvision ``Resize((s, s))``) or ``shorter``, the shorter side to ``resize``
    and the aspect ratio kept (torchvision ``Resize(s)``: the longer side truncated), either on a PIL image with
    PIL's antialiased filter; then ``crop`` (torchvision ``CenterCrop``: zero padding for smaller images).
    ``native_size`` profiles leave images at their own sizes, so the originals score them one at a time
    (batch 1); a detector batches only images of equal size.
    """

    name: str
    source: str  # which original evaluation uses it (repository file or README)
    resize: int | None = None
    crop: int | None = None
    tile: int | None = None
    interpolation: str = "bilinear"
    resize_policy: str = "stretch"  # how ``resize`` applies: "stretch" (s x s) or "shorter" (shorter side = s)

    def __post_init__(self) -> None:
        if self.resize_policy not in RESIZE_POLICIES or self.resize_policy == "none":
            raise ValueError(f"resize_policy must be stretch or shorter, got {self.resize_policy!r}")

    @property
    def native_size(self) -> bool:
        """Whether output sizes follow the input sizes (no resize and no crop)."""
        return self.resize is None and self.crop is None

    def apply(self, img: Image.Image) -> Image.Image:
        """The profile's tile/resize/crop steps on an RGB PIL image.

        Args:
            img: the image.

        Returns:
            A new image, or ``img`` itself when no step changes it.
        """
        import torchvision.transforms.functional as TF
        from torchvision.transforms import InterpolationMode

        if self.tile is not None:
            img = tile_to(img, self.tile)
        if self.resize is not None:
            size = [self.resize, self.resize] if self.resize_policy == "stretch" else self.resize
            img = TF.resize(img, size, InterpolationMode(self.interpolation))
        if self.crop is not None:
            img = TF.center_crop(img, [self.crop, self.crop])
        return img

    def identity(self) -> dict[str, Any]:
        """What enters the run identity: every field but ``source``.

        Returns:
            The fields.
        """
        return {k: v for k, v in asdict(self).items() if k != "source"}


def tile_to(img: Image.Image, size: int) -> Image.Image:
    """NPR's ``translate_duplicate``: an image with a side below ``size`` is repeated to cover it.

    The image is pasted from the top-left corner onto a black canvas of whole multiples of its width and height
    covering ``size``.

    Args:
        img: the image.
        size: the side to cover, in pixels.

    Returns:
        The tiled image, or ``img`` itself when both sides reach ``size``.
    """
    import math

    from PIL import Image

    if min(img.size) >= size:
        return img
    width, height = img.size
    canvas = Image.new("RGB", (width * math.ceil(size / width), height * math.ceil(size / height)))
    for left in range(0, canvas.width, width):
        for top in range(0, canvas.height, height):
            canvas.paste(img, (left, top))
    return canvas


NO_PROFILE = "detector"  # the suite imposes nothing: every detector evaluates with its own preprocessing
EVAL_PROFILES: dict[str, EvalProfile] = {
    p.name: p
    for p in (
        EvalProfile(
            "native",
            "AIGCDetectBenchmark README (--no_resize --no_crop --batch_size 1), as NPR's README uses it; "
            "NPR/FreqNet test.py for GANGen-Detection (no_resize, no_crop)",
        ),
        EvalProfile("center-crop-224", "CNNDetection eval.py (no_resize forced, CenterCrop 224)", crop=224),
        EvalProfile(
            "resize-256",
            "NPR/FreqNet test.py for ForenSynths, DiffusionForensics and UniversalFakeDetect "
            "(Resize((256, 256)), no_crop)",
            resize=256,
        ),
        EvalProfile(
            "resize-256-center-crop-224",
            "AIGCDetectBenchmark eval_all.py defaults (data/process.py processing(): custom_resize, "
            "TF.resize(img, loadSize 256) bilinear, shorter side to 256; CenterCrop 224)",
            resize=256,
            crop=224,
            resize_policy="shorter",
        ),
        EvalProfile(
            "tile-center-crop-224",
            "NPR README, GenImage protocol (translate_duplicate to 224, CenterCrop 224)",
            tile=224,
            crop=224,
        ),
    )
}


def eval_profile(name: str) -> EvalProfile | None:
    """The profile called ``name``.

    Args:
        name: a key of :data:`EVAL_PROFILES`, or :data:`NO_PROFILE`.

    Returns:
        The :class:`EvalProfile`, or None for :data:`NO_PROFILE`.

    Raises:
        ConfigError: an unknown name (the message lists the choices).
    """
    if name == NO_PROFILE:
        return None
    if name not in EVAL_PROFILES:
        import difflib

        from detbench.config import ConfigError

        close = difflib.get_close_matches(name, [*EVAL_PROFILES, NO_PROFILE], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown eval_profile {name!r}.{hint} Choose {NO_PROFILE} (each detector's own preprocessing) or "
            + ", ".join(EVAL_PROFILES)
        )
    return EVAL_PROFILES[name]
