"""The open_clip adapter: the visual tower of any open_clip model from a pretrained tag, a weight file (built as
the model of the tag it belongs to), ``local-dir:DIR`` or seeded random weights.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detbench.data.preprocess import INTERPOLATIONS, Preprocess
from detbench.errors import BackboneError
from detbench.models.backbones.backbone import Backbone, DropRandomInitWarning, check_crop, major_minor, seeded
from detbench.models.backbones.timm_adapter import BUNDLED_ARCH
from detbench.models.backbones.tiny import register_tiny_models
from detbench.models.spec import FILE_HINT, path_free_spec, source_kind, unknown_name
from detbench.models.weights import (
    WEIGHT_PATTERNS,
    ResolvedWeights,
    WeightsError,
    check_state_dict,
    load_state_dict_safely,
    resolve_weights,
    weights_dir,
)

if TYPE_CHECKING:
    from torch import Tensor, nn




CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)


CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


OPEN_CLIP_HOME_PATTERNS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                           "open_clip_pytorch_model.bin", *WEIGHT_PATTERNS)


def _open_clip_arch(arch: str) -> dict[str, Any]:
    import open_clip

    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise unknown_name("open_clip architecture", arch, open_clip.list_models())
    return cfg


def _arch_preprocess_defaults(arch: str) -> dict[str, Any]:
    """mean/std/interpolation shared by all of an architecture's pretrained tags (e.g. SigLIP's 0.5/0.5)."""
    import open_clip

    cfgs = [open_clip.get_pretrained_cfg(arch, t) for t in open_clip.list_pretrained_tags_by_model(arch)]
    variants = {
        (tuple(c.get("mean", CLIP_MEAN)), tuple(c.get("std", CLIP_STD)), c.get("interpolation", "bicubic"))
        for c in cfgs
    }
    if len(variants) != 1:
        return {}
    mean, std, interpolation = variants.pop()
    return {"mean": mean, "std": std, "interpolation": interpolation}


def _open_clip_fix(arch: str, tag: str, tag_cfg: dict[str, Any], key: str = "backbone") -> str:
    repo = tag_cfg.get("hf_hub", "").strip("/")
    origin = f" from https://huggingface.co/{repo}" if repo else ""
    return (
        f"Supply the open_clip weights for {arch} tag '{tag}' in one of these ways:\n"
        f"  - put open_clip_pytorch_model.bin or open_clip_model.safetensors{origin} into "
        f"{weights_dir() / 'open_clip' / arch / tag}/\n"
        f"  - pass --set {key}=open_clip:{arch}@/path/to/open_clip_pytorch_model.bin#tag={tag}\n"
        f"  - pass --set {key}=open_clip:{arch}@local-dir:DIR "
        "(DIR holds open_clip_config.json and the weights)\n"
        "  - run once online without --offline to cache it")


def _resolve_open_clip_tag(arch: str, tag: str, sha256: str | None,
                           key: str = "backbone") -> tuple[ResolvedWeights, dict[str, Any]]:
    import open_clip

    tag_cfg = open_clip.get_pretrained_cfg(arch, tag)
    fix = _open_clip_fix(arch, tag, tag_cfg, key)
    what = f"open_clip weights for {arch} tag '{tag}'"
    home = f"open_clip/{arch}/{tag}"
    if not tag_cfg:
        known = open_clip.list_pretrained_tags_by_model(arch)
        fix += f"\n'{tag}' is not an open_clip tag for {arch}; known tags: {', '.join(known) or 'none'}"
        return resolve_weights(what, fix=fix, home_dir=home, home_patterns=OPEN_CLIP_HOME_PATTERNS,
                               expected_sha256=sha256), {}
    from huggingface_hub import constants
    from open_clip.pretrained import download_pretrained

    repo, filename = os.path.split(tag_cfg.get("hf_hub", ""))
    filenames = [filename or "open_clip_pytorch_model.bin"]
    if filenames[0] == "open_clip_pytorch_model.bin":
        filenames.insert(0, "open_clip_model.safetensors")
    elif filenames[0].endswith((".bin", ".pth")):
        filenames.insert(0, filenames[0][:-4] + ".safetensors")
    url = f"{constants.ENDPOINT}/{repo}" if repo else tag_cfg.get("url")
    resolved = resolve_weights(
        what, fix=fix, home_dir=home, home_patterns=OPEN_CLIP_HOME_PATTERNS, hf_repo=repo or None,
        hf_filenames=filenames, download=lambda: download_pretrained(tag_cfg), download_url=url,
        expected_sha256=sha256)
    return resolved, tag_cfg


def _adapt_clip_state_dict(sd: dict[str, Tensor], clip: nn.Module) -> dict[str, Tensor]:
    """open_clip's own checkpoint conversions (not its silent positional-embedding resizing)."""
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict

    sd = convert_state_dict(clip, sd)
    if "positional_embedding" in sd and not hasattr(clip, "positional_embedding"):
        sd = convert_to_custom_text_state_dict(sd)
    for name in ("logit_scale", "logit_bias"):
        param = getattr(clip, name, None)
        if name in sd and param is not None and sd[name].ndim != param.ndim:
            sd[name] = sd[name].reshape(param.shape)
    if "logit_bias" not in sd and getattr(clip, "logit_bias", None) is not None and "logit_scale" in sd:
        sd["logit_bias"] = sd["logit_scale"].new_zeros(clip.logit_bias.shape)
    sd.pop("text.transformer.embeddings.position_ids", None)
    return sd


def _load_clip_weights(clip: nn.Module, path: Path) -> bool:
    """Strict load of a whole-CLIP checkpoint (visual.* + text keys) or of a visual-tower-only one.

    Returns whether the text tower was loaded too (a whole-CLIP checkpoint).
    """
    sd = load_state_dict_safely(path)
    whole = any(k.startswith("visual.") for k in sd)
    if whole:
        target, sd = clip, _adapt_clip_state_dict(sd, clip)
    else:
        target = clip.visual
    check_state_dict(target.state_dict(), sd, f"checkpoint {path}")
    target.load_state_dict(sd, strict=True)
    return whole


def _local_dir(source: str) -> tuple[Path, dict[str, Any], Path]:
    folder = Path(source[len("local-dir:"):]).expanduser().resolve()
    config = folder / "open_clip_config.json"
    fix = ("local-dir:DIR needs DIR/open_clip_config.json (with model_cfg and preprocess_cfg) and the "
           "weights (open_clip_model.safetensors or open_clip_pytorch_model.bin) beside it")
    if not config.is_file():
        raise WeightsError(f"{config} not found; {fix}")
    try:
        cfg = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{config} is not readable JSON ({exc}); {fix}") from None
    if not isinstance(cfg, dict) or "model_cfg" not in cfg:
        raise WeightsError(f"{config} has no model_cfg; {fix}")
    for pattern in OPEN_CLIP_HOME_PATTERNS:
        found = sorted(p for p in folder.glob(pattern) if p.is_file())
        if found:
            return folder, cfg, found[0]
    raise WeightsError(f"no weights in {folder} (looked for {', '.join(OPEN_CLIP_HOME_PATTERNS)}); {fix}")


def _tag_variants(arch: str) -> dict[tuple[Any, ...], list[str]]:
    """The architecture's pretrained tags grouped by what changes the backbone built for a file: activation
    (QuickGELU or GELU) and preprocessing (mean, std, interpolation).
    """
    import open_clip

    groups: dict[tuple[Any, ...], list[str]] = {}
    for tag in open_clip.list_pretrained_tags_by_model(arch):
        cfg = open_clip.get_pretrained_cfg(arch, tag)
        key = (bool(cfg.get("quick_gelu")), tuple(cfg.get("mean", CLIP_MEAN)), tuple(cfg.get("std", CLIP_STD)),
               cfg.get("interpolation", "bicubic"))
        groups.setdefault(key, []).append(tag)
    return groups


def _hf_cache_repo(path: Path) -> str | None:
    """``org/name`` when ``path`` lies in a Hugging Face cache (``.../models--org--name/snapshots/...``)."""
    for part in path.parts:
        if part.startswith("models--"):
            return part[len("models--"):].replace("--", "/")
    return None


def _file_tag(arch: str, path: Path, tag: str | None) -> str | None:
    """The open_clip tag whose model a weight file must build: ``#tag=`` if given, else the tag whose Hugging
    Face repo holds the file (cache paths), else None. Raises if the tags of ``arch`` build different models
    and nothing says which one the file belongs to (OpenAI weights need QuickGELU; a GELU model would run
    on them silently about 1 % off).
    """
    import open_clip

    known = open_clip.list_pretrained_tags_by_model(arch)
    if tag is not None:
        if tag not in known:
            raise BackboneError(f"#tag={tag}: not an open_clip tag of {arch}; known: {', '.join(known) or 'none'}")
        return tag
    repo = _hf_cache_repo(path)
    if repo:
        for candidate in known:
            if open_clip.get_pretrained_cfg(arch, candidate).get("hf_hub", "").strip("/") == repo:
                return candidate
    variants = _tag_variants(arch)
    if len(variants) > 1:
        listing = "; ".join(
            f"{'QuickGELU' if key[0] else 'GELU'}, mean {list(key[1])}, {key[3]}: {', '.join(tags[:4])}"
            + (" ..." if len(tags) > 4 else "")
            for key, tags in variants.items()
        )
        raise BackboneError(
            f"open_clip:{arch}@{path}: the pretrained tags of {arch} build different models ({listing}) and "
            f"nothing says which one this file holds. Name it: open_clip:{arch}@{path}#tag=TAG (e.g. #tag=openai "
            "for OpenAI CLIP weights), or use local-dir:DIR with the repository's open_clip_config.json"
        )
    return None


@dataclass
class _BuiltClip:
    """A whole open_clip model built from a spec's parts, with what the backbone and text tower record."""

    clip: nn.Module
    source: str
    resolved: ResolvedWeights | None
    text_loaded: bool  # the weights held the text tower (a whole-CLIP checkpoint) or the model is seeded random
    model_cfg: dict[str, Any]
    pp_cfg: dict[str, Any]
    tag_cfg: dict[str, Any]
    quick_gelu: bool


def _build_clip(arch: str, source: str, *, sha256: str | None, tag: str | None, key: str = "backbone") -> _BuiltClip:
    """The whole open_clip model (both towers) of ``arch`` with the weights ``source`` names, strictly loaded (a
    missing file's fix names the setting ``key``).
    """
    import open_clip

    kind = source_kind(source)
    if kind == "bundled":
        raise BackboneError(f"'bundled' weights exist only for timm:{BUNDLED_ARCH}, not open_clip:{arch}")
    if arch.startswith("detbench-tiny"):
        register_tiny_models()
    tag_cfg: dict[str, Any] = {}
    resolved: ResolvedWeights | None = None
    model_name = arch
    if kind == "local-dir":
        folder, dir_cfg, ckpt = _local_dir(source)
        model_cfg, pp_cfg = dir_cfg["model_cfg"], dir_cfg.get("preprocess_cfg", {})
        builtin = open_clip.get_model_config(arch)
        if builtin is not None and builtin.get("vision_cfg") != model_cfg.get("vision_cfg"):
            raise WeightsError(f"local-dir:{folder} holds a different vision tower than open_clip's {arch}; "
                               "name the architecture its open_clip_config.json describes")
        model_name = source = f"local-dir:{folder}"
        resolved = resolve_weights(f"weights in {folder}", fix="", local=ckpt, expected_sha256=sha256)
    else:
        model_cfg = _open_clip_arch(arch)
        pp_cfg = _arch_preprocess_defaults(arch)
        if kind == "file":
            fix = f"pass --set {key}=open_clip:{arch}@/path/to/an/existing/file{FILE_HINT}"
            resolved = resolve_weights(f"open_clip checkpoint for {arch}", fix=fix, local=source,
                                       expected_sha256=sha256)
            source = str(resolved.path)
            file_tag = _file_tag(arch, resolved.path, tag)
            if file_tag is not None:  # build exactly the model (activation, preprocessing) the tag builds
                tag_cfg = dict(open_clip.get_pretrained_cfg(arch, file_tag), tag=file_tag)
                pp_cfg = tag_cfg
        elif kind == "tag":
            resolved, tag_cfg = _resolve_open_clip_tag(arch, source, sha256, key)
            pp_cfg = tag_cfg or pp_cfg
    quick_gelu = bool(model_cfg.get("quick_gelu") or tag_cfg.get("quick_gelu"))
    quiet = DropRandomInitWarning()  # open_clip warns about random init; our weights load right after
    logging.getLogger().addFilter(quiet)
    try:
        with seeded():
            clip = open_clip.create_model(model_name, pretrained=None, load_weights=False,
                                          pretrained_text=False, force_quick_gelu=quick_gelu)
    finally:
        logging.getLogger().removeFilter(quiet)
    text_loaded = resolved is None or _load_clip_weights(clip, resolved.path)
    return _BuiltClip(clip, source, resolved, text_loaded, model_cfg, pp_cfg, tag_cfg, quick_gelu)


def load_open_clip(
    arch: str, source: str, *, crop: int | None, resize: str, sha256: str | None, tag: str | None = None
) -> Backbone:
    """An open_clip vision tower as a :class:`Backbone` (embeddings ``proj`` and, for ViTs, ``pre_proj``).

    Args:
        arch: an open_clip architecture name.
        source: a pretrained tag, a weight file, ``local-dir:DIR`` (with ``open_clip_config.json``) or ``random``.
        crop: the input size; must equal the native one (open_clip's sizes are fixed); None: native.
        resize: the preprocessing resize policy.
        sha256: the expected checkpoint hash, or None.
        tag: the open_clip tag a weight file belongs to (builds that tag's model and preprocessing), or None.

    Returns:
        The backbone, strictly loaded, on the CPU.

    Raises:
        BackboneError: ``bundled``, a crop other than the native size, or a weight file whose tag is ambiguous.
        WeightsError: weights missing, unreadable, not matching ``sha256``, or a local dir of another tower.
    """
    import open_clip
    import torch

    built = _build_clip(arch, source, sha256=sha256, tag=tag)
    source, resolved, pp_cfg, tag_cfg, model_cfg = built.source, built.resolved, built.pp_cfg, built.tag_cfg, \
        built.model_cfg
    quick_gelu, visual = built.quick_gelu, built.clip.visual
    del built

    spec = f"open_clip:{arch}@{source}"
    native = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
    interpolation = pp_cfg.get("interpolation", "bicubic")
    preprocess = Preprocess(
        crop=check_crop(spec, crop, native, fixed=True),
        mean=tuple(pp_cfg.get("mean", CLIP_MEAN)), std=tuple(pp_cfg.get("std", CLIP_STD)), resize=resize,
        interpolation=interpolation if interpolation in INTERPOLATIONS else "bicubic")
    kind_name, dims, patch = _open_clip_tower(visual)
    versions = {"torch": major_minor(torch.__version__), "open_clip": major_minor(open_clip.__version__)}
    if kind_name == "openclip-timm":
        import timm

        versions["timm"] = major_minor(timm.__version__)
    return Backbone(
        spec=spec, provider="open_clip", arch=arch, source=source, model=visual, kind=kind_name,
        preprocess=preprocess, pretrained=resolved is not None,
        weights_path=str(resolved.path) if resolved else None,
        weights_sha256=resolved.sha256 if resolved else None,
        embed_dims=dims, default_embedding="proj", patch_size=patch,
        model_cfg={"embed_dim": model_cfg.get("embed_dim"), "vision_cfg": model_cfg.get("vision_cfg"),
                   "quick_gelu": quick_gelu, **({"tag": tag_cfg["tag"]} if "tag" in tag_cfg else {})},
        versions=versions)


class TextTower:
    """An open_clip model's text tower and tokenizer: prompts to embeddings in the joint image-text space (the
    space of the image tower's ``proj`` embedding), L2-normalised as CLIP compares them.
    """

    def __init__(self, spec: str, clip: nn.Module, tokenizer: Any, identity: dict[str, Any]) -> None:
        self.spec, self.clip, self.tokenizer, self._identity = spec, clip, tokenizer, identity

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint embedding."""
        return int(self.clip.text_projection.shape[-1]) if self.clip.text_projection is not None else \
            int(self.clip.ln_final.normalized_shape[0])

    def identity(self) -> dict[str, Any]:
        """Everything that changes a text embedding: the weights (by sha256), the text config, library versions.

        Returns:
            A JSON-serialisable dict.
        """
        return dict(self._identity)

    def encode(self, prompts: list[str]) -> Tensor:
        """Unit-length joint-space embeddings of ``prompts``, in float64 on the CPU.

        Args:
            prompts: the texts (truncated to the tower's context length by the tokenizer).

        Returns:
            ``[len(prompts), D]``.
        """
        import torch

        with torch.no_grad():
            tokens = self.tokenizer(prompts)
            feats = self.clip.encode_text(tokens).double()
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def load_open_clip_text(arch: str, source: str, *, sha256: str | None, tag: str | None = None,
                        key: str = "backbone") -> TextTower:
    """The text tower of the open_clip model ``source`` names, built and loaded as :func:`load_open_clip` builds
    its image tower (seeded random weights for ``random``, strict loading otherwise).

    Args:
        arch: an open_clip architecture name.
        source: a pretrained tag, a whole-CLIP weight file, ``local-dir:DIR`` or ``random``.
        sha256: the expected checkpoint hash, or None.
        tag: the open_clip tag a weight file belongs to, or None.
        key: the setting that names the model (what a missing file's fix tells to set).

    Returns:
        The :class:`TextTower` on the CPU, in eval mode.

    Raises:
        BackboneError: the weights hold only an image tower (no text tower to encode prompts with).
    """
    import open_clip
    import torch

    built = _build_clip(arch, source, sha256=sha256, tag=tag, key=key)
    spec = f"open_clip:{arch}@{built.source}"
    if not built.text_loaded:
        raise BackboneError(f"{spec} holds only an image tower (no text.* / transformer.* keys); text prompts need "
                            "a whole-CLIP checkpoint (image and text towers), e.g. the pretrained tag's file")
    clip = built.clip
    clip.visual = None  # the image tower is the Backbone's; only the text tower is kept here
    clip.eval()
    text_cfg = built.model_cfg.get("text_cfg", {})
    identity = {"spec": path_free_spec(spec), "weights_sha256": built.resolved.sha256 if built.resolved else None,
                "pretrained": built.resolved is not None, "text_cfg": text_cfg, "quick_gelu": built.quick_gelu,
                "versions": {"torch": major_minor(torch.__version__), "open_clip": major_minor(open_clip.__version__)}}
    tokenizer = open_clip.get_tokenizer(arch if not built.source.startswith("local-dir:") else built.source)
    return TextTower(spec, clip, tokenizer, identity)


def clip_tokenize(texts: list[str], context_length: int = 77) -> Tensor:
    """CLIP's byte-pair tokens of ``texts`` (start and end tokens added, zero-padded), as open_clip and OpenAI's
    ``clip.tokenize`` compute them.

    Args:
        texts: the texts.
        context_length: the padded length.

    Returns:
        ``[len(texts), context_length]`` token ids.
    """
    import open_clip

    return open_clip.tokenize(texts, context_length=context_length)


def _open_clip_tower(visual: nn.Module) -> tuple[str, dict[str, int], int | None]:
    """(kind, embedding dims, patch size) for open_clip's three vision tower families."""
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer
    from torch import nn

    if isinstance(visual, VisionTransformer):
        width = visual.ln_post.normalized_shape[0]
        proj = visual.proj.shape[1] if visual.proj is not None else width
        return "openclip-vit", {"proj": proj, "pre_proj": width}, visual.patch_size[0]
    if isinstance(visual, ModifiedResNet):
        return "openclip-resnet", {"proj": visual.output_dim}, None
    trunk = visual.trunk
    pre = getattr(trunk, "head_hidden_size", None) or trunk.num_features
    linears = [m for m in visual.head.modules() if isinstance(m, nn.Linear)]
    patch_embed = getattr(trunk, "patch_embed", None)
    patch = patch_embed.patch_size[0] if patch_embed is not None else None
    return "openclip-timm", {"proj": linears[-1].out_features if linears else pre, "pre_proj": pre}, patch
