"""Evaluation-time robustness perturbations: re-encoding, blur, noise, resizing, crops, sharing chains, compositions.

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
- ``webp:Q``: encode with Pillow (libwebp) as lossy WebP at quality Q (1..100; Pillow's default ``method=4``),
  then decode. Sides up to 16,383 px (WebP's limit; a larger image is skipped as ``too_large``).
- ``noise:SIGMA``: additive Gaussian noise of standard deviation SIGMA (0 < SIGMA <= 255, in 0..255 pixel units)
  on the uint8 RGB array, rounded to the nearest integer (``numpy.rint``) and clipped to 0..255. The noise is
  ``numpy.random.default_rng(int(sha256(image_id).hexdigest(), 16)).normal(0, SIGMA, (H, W, 3))`` (the image id's
  UTF-8 bytes hashed), so an image gets the same noise in every run, and the same pattern, scaled, at every SIGMA.
- ``gray``: no value; Pillow's ``convert("L")`` (ITU-R 601-2 luma, ``L = R*299/1000 + G*587/1000 + B*114/1000``)
  copied back to three channels (``convert("RGB")``).
- ``crop:F``: centre crop keeping the fraction F (0 < F <= 1) of each side: the kept sides are ``int(w * F)`` by
  ``int(h * F)`` (floored, at least 1 px), at the offset ``((w - kept_w) // 2, (h - kept_h) // 2)``. Not resized.
- ``resize-jpeg:S/Q``: resize by the factor S (0 < S <= 2) with Pillow's bicubic filter (antialiased when
  shrinking) to the rounded size (at least 1 px), then ``jpeg:Q``. Factor and quality are separated by ``/``,
  not ``,``: a comma separates the values of a sweep (``resize-jpeg:0.5/75,0.25/75`` sweeps two chains).
- ``maxside:L``: a sharing platform's resize: when the longer side exceeds L pixels (an integer >= 1), resize
  with Pillow's bicubic filter so the longer side is L and the other is ``round(side * L / longer)`` (at least
  1 px); a smaller image is left as it is (never enlarged).
- ``social:SEED``: a chain drawn per image, modelled on sharing platforms, from a
  ``numpy.random.default_rng(int(sha256("social:SEED:" + image_id).hexdigest(), 16))`` in this order: the
  longest side ``L = SOCIAL_SIDES[rng.integers(4)]`` (1080, 1280, 1600 or 2048 px); the codec, WebP when
  ``rng.random() < 0.3`` else JPEG; the quality ``rng.integers(65, 96)`` (65..95); a crop when
  ``rng.random() < 0.5``, of fraction ``round(rng.uniform(0.8, 1.0), 2)`` (drawn even when no crop is made).
  The chain applied is ``[crop:F+]maxside:L+jpeg:Q`` (or ``webp:Q``): the user's crop, the platform's resize,
  its re-encoding. Each image's chain is a spec of the steps above, recorded per image in the run's scores
  (column ``perturbation``); passing it to ``--perturb`` replays it.

**Class-targeted perturbations.** ``SPEC@fake`` or ``SPEC@real`` applies the whole (possibly composed) SPEC to the
images of that label only; the others are scored unperturbed. The target is written once, at the end, and applies
to the whole chain: ``blur:1+jpeg:96@fake`` blurs and re-encodes the fakes and leaves the reals as they are
(``jpeg:96@fake+blur:1`` is refused). ``jpeg:96@fake`` gives fakes the reals' JPEG format, which removes a
JPEG-real / PNG-fake shortcut. The engine applies it: images of the target label are scored under SPEC and the
others clean, so their features are cached under SPEC's key and the clean key, shared with those runs. Its
identity is SPEC's with ``"target"`` added (so it is another run); untargeted specs keep theirs.

Every perturbation is deterministic per image. The ``image_id`` argument is where a randomised
perturbation takes its seed from (so every run perturbs an image identically): ``noise`` and ``social`` do.
Plugins register a :class:`Step` subclass in :data:`detbench.registry.PERTURBATIONS`.
"""

from __future__ import annotations

import hashlib
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

    @property
    def target_label(self) -> int | None:
        """The label (0 real, 1 fake) whose images alone are perturbed; None: every image (see :class:`Targeted`)."""
        return None

    @property
    def per_image(self) -> bool:
        """Whether what is applied differs between images, so each image's record names it (:meth:`applied_spec`)."""
        return any(step.draws_per_image for step in self.steps)

    def applied_spec(self, image_id: str, label: int) -> str:
        """What is applied to one image, as a spec: the canonical spec, with each drawn chain as drawn for it.

        Args:
            image_id: the image's content id (the seed of drawn chains).
            label: its label (0 real, 1 fake).

        Returns:
            E.g. ``blur:2+jpeg:90``; ``clean`` for an image a class-targeted perturbation leaves alone.
        """
        return "+".join(step.spec_for(image_id) for step in self.steps)

    def __call__(self, img: Image.Image, image_id: str) -> Image.Image:
        """Apply every step to ``img`` in order, seeded steps with ``image_id``; the result is RGB."""
        for step in self.steps:
            img = step.apply_seeded(img, image_id)
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
    takes_value: ClassVar[bool] = True  # False: the spec is the bare name (``gray``)
    ordered: ClassVar[bool] = True  # the level alone orders runs by severity (robustness curves, sorting)
    draws_per_image: ClassVar[bool] = False  # what it applies is drawn per image (recorded per image)

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

    def apply_seeded(self, img: Image.Image, image_id: str) -> Image.Image:
        """Perturb an RGB image; a randomised step seeds itself from ``image_id`` (the others ignore it).

        Args:
            img: the image.
            image_id: the image's content id.

        Returns:
            The perturbed image.
        """
        return self.apply(img)

    def spec_for(self, image_id: str) -> str:
        """What this step applies to one image, as a spec (a drawn chain as drawn for it).

        Args:
            image_id: the image's content id.

        Returns:
            The spec; for a step that draws nothing, :attr:`spec`.
        """
        return self.spec

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


class EncoderQuality(Step):
    """What the lossy re-encodings share: a quality in 1..100 (``NAME:Q``) and the largest side their codec takes."""

    codec: ClassVar[str]  # the codec's name in messages
    MAX_SIDE: ClassVar[int]
    clean_level = 100.0
    severe_when_low = True

    def __init__(self, quality: int) -> None:
        if not 1 <= quality <= 100:
            raise ConfigError(f"{self.name} quality must be an integer in 1..100 (e.g. {self.example}); got {quality}")
        self.quality = int(quality)

    @classmethod
    def from_arg(cls, text: str) -> EncoderQuality:
        """A step from the quality after ``NAME:``.

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
        """The quality, as a float."""
        return float(self.quality)

    def check_side(self, img: Image.Image) -> None:
        """Refuse an image the codec cannot encode.

        Args:
            img: the image.

        Raises:
            ImageError: status ``too_large`` for a side over :data:`MAX_SIDE`.
        """
        from detbench.data.images import ImageError

        if max(img.size) > self.MAX_SIDE:
            raise ImageError("too_large", f"{self.codec} cannot encode a {img.width}x{img.height} image (sides up "
                                          f"to {self.MAX_SIDE} px), so {self.spec} cannot apply")


class JpegQuality(EncoderQuality):
    """JPEG re-encoding at a quality (``jpeg:Q``), with Pillow, 4:2:0 chroma subsampling."""

    name = "jpeg"
    axis_label = "JPEG quality"
    example = "jpeg:75"
    codec = "JPEG"
    MAX_SIDE: ClassVar[int] = 65_500

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
        self.check_side(img)
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
        return resize_by(img, self.factor, self.resample, floor=self.floor_sides)


def resize_by(img: Image.Image, factor: float, resample: str, *, floor: bool = False) -> Image.Image:
    """Resize by a factor with a Pillow filter (antialiased when shrinking), each side at least 1 px.

    Args:
        img: the image.
        factor: the scale factor.
        resample: Pillow's filter, by name (``bicubic``, ``bilinear``).
        floor: sides ``int(side * factor)`` instead of ``round(side * factor)``.

    Returns:
        The resized image.
    """
    side = int if floor else round
    w, h = img.size
    size = (max(1, side(w * factor)), max(1, side(h * factor)))
    return img.resize(size, resample=Image.Resampling[resample.upper()])


class BilinearResize(Downscale):
    """AIGCDetectBenchmark's resize perturbation: torchvision's ``Resize((int(h * F), int(w * F)))`` on a PIL
    image, i.e. Pillow's bilinear filter to the floored size, not resized back.
    """

    name = "resize"
    axis_label = "resize factor (bilinear)"
    example = "resize:0.5"
    resample = "bilinear"
    floor_sides = True


class WebpQuality(EncoderQuality):
    """Lossy WebP re-encoding at a quality (``webp:Q``), with Pillow."""

    name = "webp"
    axis_label = "WebP quality"
    example = "webp:75"
    codec = "WebP"
    MAX_SIDE: ClassVar[int] = 16_383

    def params(self) -> dict[str, Any]:
        """What changes the output: quality, lossy coding, Pillow's default method, the Pillow encoder.

        Returns:
            The parameters.
        """
        return {"quality": self.quality, "lossless": False, "method": 4, "encoder": "pillow"}

    def apply(self, img: Image.Image) -> Image.Image:
        """Encode as lossy WebP at the quality with Pillow, then decode.

        Args:
            img: the image.

        Returns:
            The decoded WebP as RGB.

        Raises:
            ImageError: status ``too_large`` for a side over :data:`MAX_SIDE` (WebP's limit).
        """
        from detbench.data.images import load_rgb_bytes

        self.check_side(img)
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="WEBP", quality=self.quality, lossless=False, method=4)
        return load_rgb_bytes(buf.getvalue(), max_pixels=None)


def seeded_rng(text: str) -> np.random.Generator:
    """The random generator a randomised perturbation draws from: ``default_rng(int(sha256(text).hexdigest(), 16))``.

    Args:
        text: what seeds it (the image id, with the step's own prefix where it has one), UTF-8 encoded.

    Returns:
        A fresh generator.
    """
    import numpy as np

    return np.random.default_rng(int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16))


class GaussianNoise(Step):
    """Additive Gaussian noise of standard deviation SIGMA in 0..255 units (``noise:SIGMA``), seeded per image."""

    name = "noise"
    axis_label = "Gaussian noise σ (0..255)"
    clean_level = 0.0
    example = "noise:8"
    MAX_SIGMA: ClassVar[float] = 255.0

    def __init__(self, sigma: float) -> None:
        if not 0 < sigma <= self.MAX_SIGMA:
            raise ConfigError(f"noise sigma must be in (0, {self.MAX_SIGMA:g}] (0..255 pixel units, e.g. "
                              f"{self.example}); got {sigma:g}")
        self.sigma = float(sigma)

    @classmethod
    def from_arg(cls, text: str) -> GaussianNoise:
        """A noise step from the sigma after ``noise:``.

        Args:
            text: the standard deviation, in (0, 255].

        Returns:
            The step.

        Raises:
            ConfigError: not a number in range.
        """
        return cls(_number(text, float, cls, f"a sigma in (0, {cls.MAX_SIGMA:g}]"))

    @property
    def level(self) -> float:
        """The noise's standard deviation."""
        return self.sigma

    def params(self) -> dict[str, Any]:
        """What changes the output: sigma, the seed, rounding and clipping.

        Returns:
            The parameters.
        """
        return {"sigma": self.sigma, "seed": "sha256(image_id)", "generator": "numpy default_rng normal",
                "rounding": "rint, clip 0..255"}

    def apply(self, img: Image.Image) -> Image.Image:
        """Refused: the noise is seeded by the image id (use :meth:`apply_seeded`).

        Args:
            img: the image.

        Raises:
            TypeError: always.
        """
        raise TypeError(f"{self.spec} is seeded per image: call it with the image id")

    def apply_seeded(self, img: Image.Image, image_id: str) -> Image.Image:
        """Add the image's noise, round and clip.

        Args:
            img: the image.
            image_id: the image's content id (the seed).

        Returns:
            The noisy RGB image.
        """
        import numpy as np

        arr = np.asarray(img.convert("RGB"), dtype=np.float64)
        noisy = arr + seeded_rng(image_id).normal(0.0, self.sigma, arr.shape)
        return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), "RGB")


class Grayscale(Step):
    """Pillow's ``L`` conversion, back to three channels (``gray``)."""

    name = "gray"
    axis_label = "grayscale"
    example = "gray"
    takes_value = False
    ordered = False

    @classmethod
    def from_arg(cls, text: str) -> Grayscale:
        """The grayscale step (it takes no value).

        Args:
            text: empty.

        Returns:
            The step.

        Raises:
            ConfigError: a value was given.
        """
        if text:
            raise ConfigError(f"gray takes no value (write gray); got gray:{text}")
        return cls()

    @property
    def level(self) -> float:
        """None (NaN): the step has no value."""
        return math.nan

    @property
    def spec(self) -> str:
        """``gray``."""
        return self.name

    def params(self) -> dict[str, Any]:
        """What changes the output: Pillow's luma conversion.

        Returns:
            The parameters.
        """
        return {"conversion": "pillow L (ITU-R 601-2 luma) to RGB"}

    def apply(self, img: Image.Image) -> Image.Image:
        """Convert to Pillow's ``L`` and back to RGB.

        Args:
            img: the image.

        Returns:
            The gray RGB image.
        """
        return img.convert("L").convert("RGB")


class CentreCrop(Step):
    """Centre crop keeping the fraction F of each side, floored (``crop:F``); not resized."""

    name = "crop"
    axis_label = "centre crop (fraction of each side)"
    clean_level = 1.0
    severe_when_low = True
    example = "crop:0.8"

    def __init__(self, fraction: float) -> None:
        if not 0 < fraction <= 1:
            raise ConfigError(f"crop fraction must be in (0, 1] (e.g. {self.example}); got {fraction:g}")
        self.fraction = float(fraction)

    @classmethod
    def from_arg(cls, text: str) -> CentreCrop:
        """A crop step from the fraction after ``crop:``.

        Args:
            text: the fraction of each side kept, in (0, 1].

        Returns:
            The step.

        Raises:
            ConfigError: not a number in range.
        """
        return cls(_number(text, float, cls, "a fraction in (0, 1]"))

    @property
    def level(self) -> float:
        """The fraction of each side kept."""
        return self.fraction

    def params(self) -> dict[str, Any]:
        """What changes the output: the fraction, floored sides, centred offset.

        Returns:
            The parameters.
        """
        return {"fraction": self.fraction, "rounding": "floor", "offset": "(side - kept) // 2"}

    def apply(self, img: Image.Image) -> Image.Image:
        """Keep the centre ``int(w * F)`` x ``int(h * F)`` pixels (at least 1).

        Args:
            img: the image.

        Returns:
            The cropped image.
        """
        w, h = img.size
        kw, kh = max(1, int(w * self.fraction)), max(1, int(h * self.fraction))
        left, top = (w - kw) // 2, (h - kh) // 2
        return img.crop((left, top, left + kw, top + kh))


class ResizeJpeg(Step):
    """Resize by a factor (bicubic, rounded sides), then JPEG at a quality (``resize-jpeg:S/Q``)."""

    name = "resize-jpeg"
    axis_label = "resize factor, then JPEG"
    clean_level = 1.0
    example = "resize-jpeg:0.5/75"
    ordered = False  # two values: the factor alone does not order runs
    MAX_FACTOR: ClassVar[float] = 2.0

    def __init__(self, factor: float, quality: int) -> None:
        if not 0 < factor <= self.MAX_FACTOR:
            raise ConfigError(f"resize-jpeg factor must be in (0, {self.MAX_FACTOR:g}] (e.g. {self.example}); "
                              f"got {factor:g}")
        self.factor = float(factor)
        self.jpeg = JpegQuality(quality)

    @classmethod
    def from_arg(cls, text: str) -> ResizeJpeg:
        """The step from ``S/Q`` after ``resize-jpeg:``.

        Args:
            text: the factor in (0, 2] and the JPEG quality in 1..100, separated by ``/``.

        Returns:
            The step.

        Raises:
            ConfigError: not two values separated by ``/``, or either out of range.
        """
        factor, sep, quality = text.partition("/")
        if not sep or "/" in quality:
            raise ConfigError(f"resize-jpeg needs a factor and a JPEG quality separated by '/' (e.g. {cls.example}); "
                              f"got {text!r}")
        return cls(_number(factor, float, cls, f"a factor in (0, {cls.MAX_FACTOR:g}]"),
                   int(_number(quality, int, cls, "a JPEG quality: an integer in 1..100")))

    @property
    def level(self) -> float:
        """The scale factor."""
        return self.factor

    @property
    def spec(self) -> str:
        """``resize-jpeg:S/Q``."""
        return f"{self.name}:{self.factor:g}/{self.jpeg.quality}"

    def params(self) -> dict[str, Any]:
        """What changes the output: the factor, filter and rounding, then the JPEG step's parameters.

        Returns:
            The parameters.
        """
        return {"factor": self.factor, "resample": "bicubic", "rounding": "round", **self.jpeg.params()}

    def apply(self, img: Image.Image) -> Image.Image:
        """Resize by the factor (bicubic, sides rounded, at least 1 px), then JPEG-encode and decode.

        Args:
            img: the image.

        Returns:
            The decoded JPEG as RGB.
        """
        return self.jpeg.apply(resize_by(img, self.factor, "bicubic"))


class MaxSide(Step):
    """A platform's resize: the longer side brought down to L pixels (bicubic), never enlarged (``maxside:L``)."""

    name = "maxside"
    axis_label = "longest side (pixels)"
    example = "maxside:1080"
    ordered = False  # what it does depends on each image's size

    def __init__(self, side: int) -> None:
        if side < 1:
            raise ConfigError(f"maxside needs a side of at least 1 pixel (e.g. {self.example}); got {side}")
        self.side = int(side)

    @classmethod
    def from_arg(cls, text: str) -> MaxSide:
        """The step from the side after ``maxside:``.

        Args:
            text: an integer >= 1.

        Returns:
            The step.

        Raises:
            ConfigError: not an integer >= 1.
        """
        return cls(int(_number(text, int, cls, "a side in pixels: an integer >= 1")))

    @property
    def level(self) -> float:
        """The longest side allowed."""
        return float(self.side)

    def params(self) -> dict[str, Any]:
        """What changes the output: the side, filter, rounding and no enlarging.

        Returns:
            The parameters.
        """
        return {"side": self.side, "resample": "bicubic", "rounding": "round", "enlarge": False}

    def apply(self, img: Image.Image) -> Image.Image:
        """Resize so the longer side is L when it is longer (bicubic), else return the image as it is.

        Args:
            img: the image.

        Returns:
            The image, its longer side at most L.
        """
        w, h = img.size
        longer = max(w, h)
        if longer <= self.side:
            return img
        if w >= h:
            size = (self.side, max(1, round(h * self.side / w)))
        else:
            size = (max(1, round(w * self.side / h)), self.side)
        return img.resize(size, resample=Image.Resampling.BICUBIC)


SOCIAL_SIDES = (1080, 1280, 1600, 2048)  # longest sides sharing platforms resize to
SOCIAL_WEBP_CHANCE = 0.3
SOCIAL_QUALITIES = (65, 95)  # inclusive
SOCIAL_CROP_CHANCE = 0.5
SOCIAL_CROP_RANGE = (0.8, 1.0)


class SocialChain(Step):
    """A sharing platform's chain drawn per image from a seed and the image id (``social:SEED``)."""

    name = "social"
    axis_label = "social-network chain (seed)"
    example = "social:1"
    ordered = False
    draws_per_image = True

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ConfigError(f"social needs a seed: an integer >= 0 (e.g. {self.example}); got {seed}")
        self.seed = int(seed)

    @classmethod
    def from_arg(cls, text: str) -> SocialChain:
        """The step from the seed after ``social:``.

        Args:
            text: an integer >= 0.

        Returns:
            The step.

        Raises:
            ConfigError: not an integer >= 0.
        """
        return cls(int(_number(text, int, cls, "a seed: an integer >= 0")))

    @property
    def level(self) -> float:
        """The seed."""
        return float(self.seed)

    def params(self) -> dict[str, Any]:
        """What changes the output: the seed and every distribution the chain is drawn from.

        Returns:
            The parameters.
        """
        return {"seed": self.seed, "sides": list(SOCIAL_SIDES), "webp_chance": SOCIAL_WEBP_CHANCE,
                "qualities": list(SOCIAL_QUALITIES), "crop_chance": SOCIAL_CROP_CHANCE,
                "crop_range": list(SOCIAL_CROP_RANGE), "order": "crop, maxside, jpeg|webp"}

    def chain(self, image_id: str) -> Perturbation:
        """The chain drawn for one image (see the module docstring for the draws).

        Args:
            image_id: the image's content id.

        Returns:
            ``[crop:F+]maxside:L+jpeg:Q`` or ``...+webp:Q``.
        """
        rng = seeded_rng(f"social:{self.seed}:{image_id}")
        side = SOCIAL_SIDES[int(rng.integers(len(SOCIAL_SIDES)))]
        codec = WebpQuality if rng.random() < SOCIAL_WEBP_CHANCE else JpegQuality
        quality = int(rng.integers(SOCIAL_QUALITIES[0], SOCIAL_QUALITIES[1] + 1))
        crop = rng.random() < SOCIAL_CROP_CHANCE
        fraction = round(float(rng.uniform(*SOCIAL_CROP_RANGE)), 2)
        steps: list[Step] = [CentreCrop(fraction)] if crop else []
        return Compose([*steps, MaxSide(side), codec(quality)])

    def apply(self, img: Image.Image) -> Image.Image:
        """Refused: the chain is drawn per image (use :meth:`apply_seeded`).

        Args:
            img: the image.

        Raises:
            TypeError: always.
        """
        raise TypeError(f"{self.spec} is drawn per image: call it with the image id")

    def apply_seeded(self, img: Image.Image, image_id: str) -> Image.Image:
        """Apply the chain drawn for this image.

        Args:
            img: the image.
            image_id: the image's content id.

        Returns:
            The perturbed RGB image.
        """
        return self.chain(image_id)(img, image_id)

    def spec_for(self, image_id: str) -> str:
        """The chain drawn for one image, as a spec.

        Args:
            image_id: the image's content id.

        Returns:
            E.g. ``crop:0.87+maxside:1080+webp:80``.
        """
        return str(self.chain(image_id).identity()["spec"])


TARGETS = {"real": 0, "fake": 1}  # the class a targeted perturbation applies to -> the index's label


class Targeted(Perturbation):
    """A perturbation applied to the images of one label only (``SPEC@fake``, ``SPEC@real``).

    The engine applies it (the data loaders do not know labels): it scores the target label's images under
    :attr:`inner` and the others clean. Calling it on an image is refused.
    """

    def __init__(self, inner: Perturbation, target: str) -> None:
        if target not in TARGETS:
            raise ConfigError(f"a class target is @fake or @real; got @{target}")
        self.inner = inner
        self.target = target

    @property
    def steps(self) -> list[Step]:
        """The inner perturbation's steps."""
        return self.inner.steps

    @property
    def target_label(self) -> int:
        """The label whose images are perturbed (0 real, 1 fake)."""
        return TARGETS[self.target]

    @property
    def per_image(self) -> bool:
        """Always: the images of the other label are left clean."""
        return True

    def identity(self) -> dict[str, Any]:
        """The inner identity with ``@target`` on its spec and ``target`` added.

        Returns:
            ``{"spec": "jpeg:96@fake", "steps": [...], "target": "fake"}``.
        """
        inner = self.inner.identity()
        return {**inner, "spec": f"{inner['spec']}@{self.target}", "target": self.target}

    def applied_spec(self, image_id: str, label: int) -> str:
        """The inner spec for an image of the target label, ``clean`` for the others.

        Args:
            image_id: the image's content id.
            label: its label (0 real, 1 fake).

        Returns:
            The spec applied to it.
        """
        return self.inner.applied_spec(image_id, label) if int(label) == self.target_label else "clean"

    def __call__(self, img: Image.Image, image_id: str) -> Image.Image:
        """Refused: which images it applies to depends on their labels, which only the engine knows.

        Args:
            img: the image.
            image_id: its id.

        Raises:
            TypeError: always (apply :attr:`inner` to the target label's images).
        """
        raise TypeError(f"{self.identity()['spec']} applies by label: apply .inner to the {self.target} images")


def parse_perturbation(spec: str) -> Perturbation:
    """``"blur:2+jpeg:90"`` → a :class:`Perturbation`; ``"jpeg:96@fake"`` → a :class:`Targeted` one.

    Args:
        spec: one or more ``name:value`` steps (or bare names, ``gray``) joined by ``+``, applied left to right,
            optionally followed by one ``@fake`` or ``@real`` that targets the whole chain at that label.

    Returns:
        A single :class:`Step`, a :class:`Compose` of several, or a :class:`Targeted` of either.

    Raises:
        ConfigError: a malformed spec, an unknown name (with did-you-mean), a missing or out-of-range value, a
            value list, or a class target that is not one ``@fake`` / ``@real`` at the end.
    """
    text = str(spec)
    body, at, target = text.partition("@")
    if not at:
        return _parse_chain(text, text)
    target = target.strip().lower()
    if target not in TARGETS:
        raise ConfigError(
            f"bad class target in {text!r}: write @fake or @real once, at the end, where it applies to the whole "
            "chain (e.g. jpeg:96@fake or blur:1+jpeg:96@fake)"
        )
    return Targeted(_parse_chain(body, text), target)


def _parse_chain(chain: str, spec: str) -> Perturbation:
    parts = [p.strip() for p in chain.split("+")]
    if not chain.strip() or not all(parts):
        raise ConfigError(
            f"bad perturbation spec {spec!r}: expected name:value[+name:value...][@fake|@real], "
            "e.g. jpeg:75, blur:2+jpeg:90 or jpeg:96@fake"
        )
    steps = []
    for part in parts:
        name, sep, value = part.partition(":")
        name, value = name.strip().lower(), value.strip()
        try:
            cls = PERTURBATIONS.get(name)
        except RegistryError as exc:
            raise ConfigError(f"in --perturb {spec!r}: {exc}") from None
        if cls.takes_value and (not sep or not value):
            example = cls.example or f"{name}:VALUE"
            raise ConfigError(f"perturbation {name!r} needs a value after ':', e.g. {example}")
        if "," in value:
            raise ConfigError(
                f"{part!r}: one value per run (e.g. {cls.example}); value lists (jpeg:95,75) are for `detbench sweep`"
            )
        steps.append(cls.from_arg(value if sep else ""))
    return steps[0] if len(steps) == 1 else Compose(steps)


def expand_sweep(axes: list[str]) -> list[str]:
    """Canonical specs, one per value: ``["jpeg:95,75", "blur:1"]`` → ``["jpeg:95", "jpeg:75", "blur:1"]``.

    Values run one at a time (no cartesian product); write a composition explicitly (``blur:1+jpeg:75``) to
    combine them. A class target applies to every value of its axis (``jpeg:95,75@fake`` → ``jpeg:95@fake``,
    ``jpeg:75@fake``). Duplicates are dropped, order is kept, and every spec is validated before anything runs.

    Args:
        axes: each item one axis: ``name:v1,v2,...[@fake|@real]`` or a single (possibly composed) spec.

    Returns:
        The canonical specs.

    Raises:
        ConfigError: an invalid spec, a value list in a composition, or no spec at all.
    """
    specs: list[str] = []
    for axis in axes:
        axis = axis.strip()
        body, at, target = axis.partition("@")
        name, _, values = body.partition(":")
        if "," in values and "+" in body:
            raise ConfigError(
                f"{axis!r}: a composed spec takes single values; list compositions separately, "
                "e.g. --perturb blur:1+jpeg:75 --perturb blur:2+jpeg:75"
            )
        items = [f"{name}:{v.strip()}{at}{target}" for v in values.split(",")] if "," in values else [axis]
        for item in items:
            canonical = parse_perturbation(item).identity()["spec"]
            if canonical not in specs:
                specs.append(canonical)
    if not specs:
        raise ConfigError("no perturbation given: pass e.g. --perturb jpeg:95,75,50")
    return specs
