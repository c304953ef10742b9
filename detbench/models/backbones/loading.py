"""Building a backbone from its spec: the provider's adapter, strict weights, the requested input size."""

from __future__ import annotations

from typing import TYPE_CHECKING

from detbench.errors import BackboneError
from detbench.models.backbones.backbone import Backbone
from detbench.models.spec import parse_spec, source_kind, split_options

if TYPE_CHECKING:
    from detbench.models.backbones.open_clip_adapter import TextTower


def load_backbone(
    spec: str,
    *,
    device: str = "cpu",
    crop: int | None = None,
    resize: str = "none",
    sha256: str | None = None,
) -> Backbone:
    """Build the backbone named by ``spec`` (strict weight loading), in eval mode on ``device``.

    Args:
        spec: ``open_clip:ARCH@SOURCE`` or ``timm:ARCH@SOURCE``, optionally with ``#sha256=...`` / ``#tag=...``.
        device: a torch device string.
        crop: the input size, overriding the native one where the architecture allows it; None: native.
        resize: the preprocessing resize policy (``none``, ``shorter`` or ``stretch``).
        sha256: the expected checkpoint hash (also accepted as ``#sha256=`` in ``spec``).

    Returns:
        The loaded :class:`Backbone`.

    Raises:
        BackboneError: a malformed spec, two different sha256 pins, a ``#tag=`` that does not apply, or a crop
            the architecture cannot take.
    """
    from detbench.models.backbones.open_clip_adapter import load_open_clip
    from detbench.models.backbones.timm_adapter import load_timm

    spec, options = split_options(spec)
    pinned = options.get("sha256")
    if pinned and sha256 and pinned != sha256:
        raise BackboneError(f"two different sha256 pins for {spec}: {pinned} and {sha256}")
    sha256 = sha256 or pinned
    provider, arch, source = parse_spec(spec)
    if "tag" in options and (provider != "open_clip" or source_kind(source) != "file"):
        raise BackboneError(f"#tag= names the open_clip tag of a weight file (open_clip:ARCH@FILE#tag=TAG); "
                         f"it does not apply to {spec}")
    if provider == "open_clip":
        backbone = load_open_clip(arch, source, crop=crop, resize=resize, sha256=sha256, tag=options.get("tag"))
    else:
        backbone = load_timm(arch, source, crop=crop, resize=resize, sha256=sha256)
    backbone.model.to(device).eval()
    return backbone


def load_text_tower(spec: str, key: str = "backbone") -> TextTower:
    """The text tower of the open_clip model ``spec`` names (the image tower's partner in the joint space).

    Args:
        spec: ``open_clip:ARCH@SOURCE``, optionally with ``#sha256=...`` / ``#tag=...``; the weights must be a
            whole CLIP's (a pretrained tag, a whole-CLIP file, ``local-dir:``) or ``random``.
        key: the setting that names ``spec`` (what a missing weight file's fix tells to set).

    Returns:
        The loaded :class:`TextTower`, in eval mode on the CPU.

    Raises:
        BackboneError: a malformed spec, a provider other than open_clip (timm models have no text tower), or
            weights holding only an image tower.
    """
    from detbench.models.backbones.open_clip_adapter import load_open_clip_text

    spec, options = split_options(spec)
    provider, arch, source = parse_spec(spec)
    if provider != "open_clip":
        raise BackboneError(f"{spec} has no text tower: text prompts need an open_clip model "
                            "(e.g. open_clip:ViT-L-14@openai)")
    if "tag" in options and source_kind(source) != "file":
        raise BackboneError(f"#tag= names the open_clip tag of a weight file (open_clip:ARCH@FILE#tag=TAG); "
                            f"it does not apply to {spec}")
    return load_open_clip_text(arch, source, sha256=options.get("sha256"), tag=options.get("tag"), key=key)
