"""Evaluation-time robustness perturbations: JPEG re-encoding, Gaussian blur, downscaling, compositions.

Specs are ``name:value`` (``jpeg:75``, ``blur:2``, ``downscale:0.5``, ``resize:0.5``), composed left to right with ``+``
(``blur:2+jpeg:90``: blur, then JPEG-encode the blurred image). They follow the robustness protocol of
CNNDetection / UniversalFakeDetect / NPR:

- ``jpeg:Q``: encode with Pillow (libjpeg) at quality Q (1..100), 4:2:0 chroma subsampling (Pillow's
  default, as those papers use), then decode.
- ``blur:S``: Gaussian blur of standard deviation S pixels (0 < S <= 20) exactly as CNNDetection, UnivFD and
  AIGCDetectBenchmark blur: ``scipy.ndimage.gaussian_filter(channel, output=channel, sigma=S)`` on each uint8
  channel in place (kernel truncated at 4 S, reflected borders). The filter runs one axis after the other and
  writes each pass into the uint8 channel, so the intermediate result is truncated to 8 bits, as theirs is.
- ``downscale:F``: resize by the factor F (0 < F < 1) with Pillow's antialiased bicubic filter, and
  *not* back up: the detector sees the smaller image through its own preprocessing (with the default
  ``resize="none"`` policy a small image is centre-padded, as in UniversalFakeDetect's evaluation).
- ``resize:F``: AIGCDetectBenchmark's ``noise_type=resize`` (``data/datasets.py``, ``custom_augment``):
  ``torchvision.transforms.Resize((int(h*F), int(w*F)))`` on the PIL image, i.e. Pillow's antialiased
  bilinear filter to the floored size (F = 0.5 in that benchmark), not resized back.

Every perturbation is deterministic per image. The ``image_id`` argument is where a randomised
perturbation takes its seed from (so every run perturbs an image identically); the built-ins need none.
Plugins register a :class:`Step` subclass in :data:`detbench.registry.PERTURBATIONS`.
"""

from __future__ import annotations

import io
import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from PIL import Image

if TYPE_CHECKING:
    import numpy as np

from detbench.config import ConfigError
from detbench.registry import PERTURBATIONS, RegistryError


class Perturbation(ABC):
    """A picklable, deterministic image → image function; ``identity()`` keys feature caches and runs."""

    @property
    @abstractmethod
    def steps(self) -> list[Step]:
        """The single steps, in the order they are applied.

        Returns:
            The :class:`Step` objects.
        """

    def identity(self) -> dict[str, Any]:
        """What keys feature caches and runs: the canonical spec and every step's name, version and parameters.

        Returns:
            ``{"spec": "blur:2+jpeg:90", "steps": [...]}``.
        """
        return {
            "spec": "+".join(step.spec for step in self.steps),
            "steps": [{"name": s.name, "version": s.version, **s.params()} for s in self.steps],
        }

    def __call__(self, img: Image.Image, image_id: str) -> Image.Image:
        """Apply every step to ``img`` in order; the result is RGB (``image_id`` is unused: steps are deterministic)."""
        for step in self.steps:
            img = step.apply(img)
        return img.convert("RGB") if img.mode != "RGB" else img

    def __repr__(self) -> str:
        return f"<perturbation {self.identity()['spec']}>"


class Step(Perturbation):
    """One registered kind of perturbation at one value (the base class of plugins)."""

    name: ClassVar[str]
    version: ClassVar[int] = 1  # bump whenever the output for the same value changes
    axis_label: ClassVar[str] = ""  # what the value measures, for robustness plots
    clean_level: ClassVar[float] = math.nan  # the value that means "unperturbed", for plots
    severe_when_low: ClassVar[bool] = False  # lower values degrade more (JPEG quality, scale factor)
    example: ClassVar[str] = ""  # a valid spec, for error messages

    @classmethod
    @abstractmethod
    def from_arg(cls, text: str) -> Step:
        """Parse the value after ``name:``.

        Args:
            text: the value as given (``75`` in ``jpeg:75``).

        Returns:
            The step at that value.

        Raises:
            ConfigError: a value that is not a number in the valid range (the message names it).
        """

    @property
    @abstractmethod
    def level(self) -> float:
        """The value as a number (for plots).

        Returns:
            The value.
        """

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Everything that changes the output, JSON-ready.

        Returns:
            Parameter name -> value.
        """

    @abstractmethod
    def apply(self, img: Image.Image) -> Image.Image:
        """Perturb an RGB image.

        Args:
            img: the image.

        Returns:
            The perturbed image.
        """

    @property
    def spec(self) -> str:
        """The canonical spec of this step, e.g. ``jpeg:75``."""
        return f"{self.name}:{self.level:g}"

    @property
    def steps(self) -> list[Step]:
        """This step alone."""
        return [self]


class Compose(Perturbation):
    """Steps applied left to right."""

    def __init__(self, steps: list[Step]) -> None:
        self._steps = list(steps)

    @property
    def steps(self) -> list[Step]:
        """The composed steps, in the order they are applied."""
        return list(self._steps)


def _number(text: str, kind: type[int] | type[float], step: type[Step], valid: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"{step.name} needs {valid} (e.g. {step.example}); got {text!r}")
    return value


class JpegQuality(Step):
    """JPEG re-encoding at a quality (``jpeg:Q``), with Pillow, 4:2:0 chroma subsampling."""

    name = "jpeg"
    axis_label = "JPEG quality"
    clean_level = 100.0
    severe_when_low = True
    example = "jpeg:75"
    MAX_SIDE: ClassVar[int] = 65_500

    def __init__(self, quality: int) -> None:
        if not 1 <= quality <= 100:
            raise ConfigError(f"jpeg quality must be an integer in 1..100 (e.g. jpeg:75); got {quality}")
        self.quality = int(quality)

    @classmethod
    def from_arg(cls, text: str) -> JpegQuality:
        """A JPEG step from the quality after ``jpeg:``.

        Args:
            text: an integer in 1..100.

        Returns:
            The step.

        Raises:
            ConfigError: not an integer in 1..100.
        """
        return cls(int(_number(text, int, cls, "a quality: an integer in 1..100")))

    @property
    def level(self) -> float:
        """The JPEG quality, as a float."""
        return float(self.quality)

    def params(self) -> dict[str, Any]:
        """What changes the output: quality, 4:2:0 subsampling, the Pillow encoder.

        Returns:
            The parameters.
        """
        return {"quality": self.quality, "subsampling": "4:2:0", "encoder": "pillow"}

    def encode(self, img: Image.Image) -> bytes:
        """The JPEG bytes this perturbation decodes (exposed so the quality can be checked).

        Args:
            img: the image (converted to RGB).

        Returns:
            The encoded bytes.

        Raises:
            ImageError: status ``too_large`` for a side over :data:`MAX_SIDE` (libjpeg's limit).
        """
        from detbench.data.images import ImageError

        if max(img.size) > self.MAX_SIDE:
            raise ImageError("too_large", f"JPEG cannot encode a {img.width}x{img.height} image (sides up to "
                                          f"{self.MAX_SIDE} px), so {self.spec} cannot apply")
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=self.quality, subsampling="4:2:0")
        return buf.getvalue()

    def apply(self, img: Image.Image) -> Image.Image:
        """Encode at the quality with Pillow (4:2:0), then decode.

        Args:
            img: the image.

        Returns:
            The decoded JPEG as RGB.
        """
        from detbench.data.images import load_rgb_bytes

        return load_rgb_bytes(self.encode(img), max_pixels=None)


class GaussianBlur(Step):
    """Gaussian blur of standard deviation sigma pixels (``blur:S``)."""

    name = "blur"
    version = 2  # 1 rounded a float result once; 2 is the originals' in-place uint8 filtering
    axis_label = "Gaussian blur σ (pixels)"
    clean_level = 0.0
    example = "blur:2"
    MAX_SIGMA: ClassVar[float] = 20.0

    def __init__(self, sigma: float) -> None:
        if not 0 < sigma <= self.MAX_SIGMA:
            raise ConfigError(
                f"blur sigma must be in (0, {self.MAX_SIGMA:g}] pixels (e.g. {self.example}); got {sigma:g}"
            )
        self.sigma = float(sigma)

    @classmethod
    def from_arg(cls, text: str) -> GaussianBlur:
        """A blur step from the sigma after ``blur:``.

        Args:
            text: the standard deviation in pixels, in (0, 20].

        Returns:
            The step.

        Raises:
            ConfigError: not a number in range.
        """
        return cls(_number(text, float, cls, f"a sigma in (0, {cls.MAX_SIGMA:g}] pixels"))

    @property
    def level(self) -> float:
        """The blur's sigma, in pixels."""
        return self.sigma

    def params(self) -> dict[str, Any]:
        """What changes the output: sigma, kernel truncation, border mode and the uint8 in-place arithmetic.

        Returns:
            The parameters.
        """
        return {"sigma": self.sigma, "truncate": 4.0, "mode": "reflect", "arithmetic": "uint8 in place per channel"}

    def apply(self, img: Image.Image) -> Image.Image:
        """Blur as the originals do (see :func:`gaussian_blur_uint8`).

        Args:
            img: the image.

        Returns:
            The blurred RGB image.
        """
        return Image.fromarray(gaussian_blur_uint8(img, self.sigma), "RGB")


def gaussian_blur_uint8(img: Image.Image, sigma: float) -> np.ndarray:
    """The originals' Gaussian blur of an image, as a new uint8 ``[H, W, 3]`` array.

    Args:
        img: any PIL image (converted to RGB).
        sigma: the standard deviation in pixels.

    Returns:
        Each channel filtered by ``scipy.ndimage.gaussian_filter(channel, output=channel, sigma=sigma)``
        in place on the uint8 array (CNNDetection ``data/datasets.py``), intermediate truncation included.
    """
    import numpy as np
    from scipy.ndimage import gaussian_filter

    arr = np.array(img.convert("RGB"), dtype=np.uint8)
    for channel in range(3):
        gaussian_filter(arr[:, :, channel], output=arr[:, :, channel], sigma=sigma)
    return arr


class Downscale(Step):
    """Resize by a factor with Pillow's antialiased bicubic filter to the rounded size, not back up."""

    name = "downscale"
    axis_label = "downscale factor"
    clean_level = 1.0
    severe_when_low = True
    example = "downscale:0.5"
    resample: ClassVar[str] = "bicubic"  # Pillow's filter, by name
    floor_sides: ClassVar[bool] = False  # int(side * F) instead of round(side * F)

    def __init__(self, factor: float) -> None:
        if not 0 < factor < 1:
            raise ConfigError(f"{self.name} factor must be in (0, 1) (e.g. {self.example}); got {factor:g}")
        self.factor = float(factor)

    @classmethod
    def from_arg(cls, text: str) -> Downscale:
        """The step from the factor after ``name:``.

        Args:
            text: the factor, in (0, 1).

        Returns:
            The step.

        Raises:
            ConfigError: not a number in range.
        """
        return cls(_number(text, float, cls, "a factor in (0, 1)"))

    @property
    def level(self) -> float:
        """The scale factor."""
        return self.factor

    def params(self) -> dict[str, Any]:
        """What changes the output: factor, resampling filter, rounding of the sides, no resize back.

        Returns:
            The parameters.
        """
        params = {"factor": self.factor, "resample": self.resample, "resize_back": False}
        return {**params, "rounding": "floor"} if self.floor_sides else params

    def apply(self, img: Image.Image) -> Image.Image:
        """Resize by the factor with the step's filter (each side at least 1 px), not back up.

        Args:
            img: the image.

        Returns:
            The smaller image.
        """
        side = int if self.floor_sides else round
        w, h = img.size
        size = (max(1, side(w * self.factor)), max(1, side(h * self.factor)))
        return img.resize(size, resample=Image.Resampling[self.resample.upper()])


class BilinearResize(Downscale):
    """AIGCDetectBenchmark's resize perturbation: torchvision's ``Resize((int(h * F), int(w * F)))`` on a PIL
    image, i.e. Pillow's bilinear filter to the floored size, not resized back.
    """

    name = "resize"
    axis_label = "resize factor (bilinear)"
    example = "resize:0.5"
    resample = "bilinear"
    floor_sides = True


def parse_perturbation(spec: str) -> Perturbation:
    """``"blur:2+jpeg:90"`` → a :class:`Perturbation`.

    Args:
        spec: one or more ``name:value`` steps joined by ``+``, applied left to right.

    Returns:
        A single :class:`Step`, or a :class:`Compose` of several.

    Raises:
        ConfigError: a malformed spec, an unknown name (with did-you-mean), a missing or out-of-range value, or
            a value list.
    """
    parts = [p.strip() for p in str(spec).split("+")]
    if not spec or not all(parts):
        raise ConfigError(
            f"bad perturbation spec {spec!r}: expected name:value[+name:value...], "
            "e.g. jpeg:75 or blur:2+jpeg:90"
        )
    steps = []
    for part in parts:
        name, sep, value = part.partition(":")
        name, value = name.strip().lower(), value.strip()
        try:
            cls = PERTURBATIONS.get(name)
        except RegistryError as exc:
            raise ConfigError(f"in --perturb {spec!r}: {exc}") from None
        if not sep or not value:
            example = cls.example or f"{name}:VALUE"
            raise ConfigError(f"perturbation {name!r} needs a value after ':', e.g. {example}")
        if "," in value:
            raise ConfigError(
                f"{part!r}: one value per run; value lists (jpeg:95,75) are for `detbench sweep`"
            )
        steps.append(cls.from_arg(value))
    return steps[0] if len(steps) == 1 else Compose(steps)


def expand_sweep(axes: list[str]) -> list[str]:
    """Canonical specs, one per value: ``["jpeg:95,75", "blur:1"]`` → ``["jpeg:95", "jpeg:75", "blur:1"]``.

    Values run one at a time (no cartesian product); write a composition explicitly (``blur:1+jpeg:75``) to
    combine them. Duplicates are dropped, order is kept, and every spec is validated before anything runs.

    Args:
        axes: each item one axis: ``name:v1,v2,...`` or a single (possibly composed) spec.

    Returns:
        The canonical specs.

    Raises:
        ConfigError: an invalid spec, a value list in a composition, or no spec at all.
    """
    specs: list[str] = []
    for axis in axes:
        axis = axis.strip()
        name, _, values = axis.partition(":")
        if "," in values and "+" in axis:
            raise ConfigError(
                f"{axis!r}: a composed spec takes single values; list compositions separately, "
                "e.g. --perturb blur:1+jpeg:75 --perturb blur:2+jpeg:75"
            )
        items = [f"{name}:{v.strip()}" for v in values.split(",")] if "," in values else [axis]
        for item in items:
            canonical = parse_perturbation(item).identity()["spec"]
            if canonical not in specs:
                specs.append(canonical)
    if not specs:
        raise ConfigError("no perturbation given: pass e.g. --perturb jpeg:95,75,50")
    return specs
