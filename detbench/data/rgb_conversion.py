"""How every image becomes RGB: the conversion rules of :func:`detbench.data.images.load_rgb` (every model sees images
converted this way).

- EXIF orientation is applied (``ImageOps.exif_transpose``); an unreadable EXIF block is ignored.
- Palette (``P``) images: RGBA if they declare transparency, else RGB. Greyscale and RGB images with a
  transparent colour key are treated the same way.
- Alpha (``RGBA``, ``LA``, ``PA``, premultiplied modes) is composited onto white,
  :data:`ALPHA_BACKGROUND`. Transparent regions of web graphics are meant to be seen on a (white) page,
  and the colour stored under alpha 0 is arbitrary (often black, sometimes leftover content): dropping
  alpha would expose it to the detector as a spurious cue; compositing onto one fixed colour removes it.
- 16-bit greyscale (``I;16``, ``I;16B``, ...) is scaled to 8 bits by the range of the mode
  (``value >> 8``), not clipped as PIL's own ``convert`` does. ``I`` (32-bit integer, in practice
  16-bit data) is clipped to 0..65535 and scaled the same way.
- 32-bit float ``F``: scaled by 255 if its maximum is <= 1 (a 0..1 image), else clipped to 0..255;
  NaN becomes 0.
- ``CMYK``: converted to sRGB with the embedded ICC profile when there is one and LittleCMS is
  available, else with PIL's plain conversion. ICC profiles of RGB images are ignored: pixel values are
  used as stored, as the reference implementations in this field do.
- ``1``, ``L`` and other modes: PIL's ``convert("RGB")``.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps

ALPHA_BACKGROUND: tuple[int, int, int] = (255, 255, 255)

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ORIENTATION_TAG = 0x0112


def apply_orientation(im: Image.Image) -> Image.Image:
    """The image turned upright by its EXIF orientation tag; unchanged without one or with an unreadable EXIF block.

    Args:
        im: a decoded image.

    Returns:
        The transposed image, or ``im`` itself.
    """
    try:
        if im.getexif().get(_ORIENTATION_TAG, 1) in (2, 3, 4, 5, 6, 7, 8):
            return ImageOps.exif_transpose(im)
    except Exception:  # a corrupt EXIF block does not make the pixels unusable
        pass
    return im


def to_rgb(im: Image.Image) -> Image.Image:
    """The image in RGB by the rules of this module (alpha onto :data:`ALPHA_BACKGROUND`, high bit depths scaled,
    CMYK through its ICC profile).

    Args:
        im: a decoded image of any mode.

    Returns:
        An RGB image (``im`` itself when it is RGB already).
    """
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES or mode == "F":
        return _high_depth_to_l(im).convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(im)
    if mode in _ALPHA_MODES or (mode in ("1", "L", "P", "RGB") and "transparency" in im.info):
        return _composite(im.convert("RGBA"))
    return im if mode == "RGB" else im.convert("RGB")


def _composite(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, ALPHA_BACKGROUND)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    import numpy as np

    values = np.asarray(im)
    if im.mode == "F":
        values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and values.max() <= 1.0:
            values = values * 255.0
        eight_bit = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    else:
        eight_bit = (np.clip(values.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
    return Image.fromarray(eight_bit)


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            converted = ImageCms.profileToProfile(
                im, io.BytesIO(icc), ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
            if converted is not None:
                return converted
        except Exception:  # missing LittleCMS or a broken profile: plain conversion below
            pass
    return im.convert("RGB")
