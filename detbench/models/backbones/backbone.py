"""The backbone facade: :class:`Backbone` (an image encoder with its preprocessing, embeddings, trainable
structure and identity) and :func:`load_backbone`, which builds one from a spec through the provider adapters.
Loading is always strict.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from detbench.data.preprocess import Preprocess
from detbench.errors import BackboneError
from detbench.models.spec import parse_spec, path_free_spec, source_kind, split_options

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


RANDOM_SEED = 0


class DropRandomInitWarning(logging.Filter):
    """Silences open_clip's/timm's "no pretrained weights loaded" warning: detbench loads its weights right after."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether a log record passes (everything but the "No pretrained weights loaded" warning).

        Args:
            record: the log record.

        Returns:
            False for the warning, True otherwise.
        """
        return not record.getMessage().startswith("No pretrained weights loaded")


@contextmanager
def seeded(seed: int = RANDOM_SEED) -> Iterator[None]:
    """Deterministic initialisation without disturbing the caller's RNG stream.

    Args:
        seed: the torch CPU seed inside the context.

    Yields:
        Nothing; on exit the torch RNG state is restored.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def major_minor(version: str) -> str:
    """``"2.14.1+cu130"`` → ``"2.14"``: the library version part that enters a backbone's identity.

    Args:
        version: a library's version string.

    Returns:
        Its major and minor parts, joined by a dot.
    """
    return ".".join(version.split("+")[0].split(".")[:2])


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
        open_clip's visual tower, ``model.trunk``) or ``timm``.
        """
        return self._kind

    @property
    def embed_dim(self) -> int:
        """Dimension of the default embedding (see ``embed_dims`` for the others)."""
        return self.embed_dims[self.default_embedding]

    @property
    def patch_grid(self) -> tuple[int, int] | None:
        """ViT token grid at the preprocessing crop; None for CNNs.

        Returns:
            ``(rows, columns)`` of patches, or None when the model has no patch size.
        """
        if self.patch_size is None:
            return None
        side = self.preprocess.crop // self.patch_size
        return side, side

    @property
    def device(self) -> torch.device:
        """The device the model's parameters are on."""
        return next(self.model.parameters()).device

    @property
    def identity_spec(self) -> str:
        """The spec without any path (a file or ``local-dir:`` source reads ``file`` / ``local-dir``): what the
        identity and anything keyed by it name; the weights are named by their sha256.
        """
        return path_free_spec(self.spec)

    @property
    def pretrained_tag(self) -> str | None:
        """The pretrained tag the weights belong to.

        Returns:
            The source when it is a tag, else the tag a weight file was resolved to (``#tag=`` or its Hugging Face
            repository), else None.
        """
        if source_kind(self.source) == "tag":
            return self.source
        return self.model_cfg.get("tag")

    def identity(self) -> dict[str, Any]:
        """Everything that changes a feature (JSON-serialisable), and no path: a weight file is named by its sha256.

        Returns:
            Spec and source without paths (:attr:`identity_spec`), provider, arch, weights sha256, pretrained flag,
            init seed (None when pretrained), preprocessing, model config and library versions.
        """
        spec = self.identity_spec
        return {
            "spec": spec,
            "provider": self.provider,
            "arch": self.arch,
            "source": self.source if spec == self.spec else parse_spec(split_options(spec)[0])[2],
            "weights_sha256": self.weights_sha256,
            "pretrained": self.pretrained,
            "init_seed": None if self.pretrained else RANDOM_SEED,
            "preprocess": self.preprocess.to_dict(),
            "model_cfg": self.model_cfg,
            "versions": self.versions,
        }

    def embed(self, x: Tensor, embedding: str | None = None) -> Tensor:
        """``[B, 3, H, W]`` normalised images → ``[B, D]``; gradient mode is the caller's business.

        Args:
            x: a batch of preprocessed images.
            embedding: a name from :attr:`embeddings` (open_clip: ``proj`` or ``pre_proj``; timm: ``pooled``);
                None uses :attr:`default_embedding`.

        Returns:
            The embeddings, ``D = embed_dims[embedding]``.

        Raises:
            BackboneError: an embedding this backbone does not have.
        """
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
        """The sequential deep blocks, deepest last (what partial fine-tuning unfreezes from the end).

        Returns:
            The block modules.

        Raises:
            BackboneError: a timm model whose blocks cannot be told apart.
        """
        m = self.model
        if self._kind == "openclip-vit":
            return list(m.transformer.resblocks)
        if self._kind == "openclip-resnet":
            return [m.layer1, m.layer2, m.layer3, m.layer4]
        return _timm_blocks(m.trunk if self._kind == "openclip-timm" else m)

    def head_modules(self) -> list[nn.Module]:
        """Modules after the last block: final norm / pooling head.

        open_clip's ``proj`` is a bare Parameter, see :meth:`head_parameters`.

        Returns:
            open_clip ViT: ``ln_post`` and its attention pools; ResNet: ``attnpool``; timm trunks: the final
            norm/head layers that have parameters (plus open_clip's ``head`` when it has any).
        """
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
        """Parameters of :meth:`head_modules` plus open_clip's projection matrix.

        Returns:
            The parameters, each once.
        """
        params = {id(p): p for mod in self.head_modules() for p in mod.parameters()}
        proj = getattr(self.model, "proj", None) if self._kind == "openclip-vit" else None
        if proj is not None:
            params[id(proj)] = proj
        return list(params.values())

    def to(self, device: str | torch.device) -> Backbone:
        """Move the model to ``device``.

        Args:
            device: a torch device or device string.

        Returns:
            This backbone.
        """
        self.model.to(device)
        return self

    def train(self, mode: bool = True) -> Backbone:
        """Set the model's training mode.

        Args:
            mode: True for training mode, False for eval mode.

        Returns:
            This backbone.
        """
        self.model.train(mode)
        return self

    def eval(self) -> Backbone:
        """Put the model in eval mode.

        Returns:
            This backbone.
        """
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




def check_crop(spec: str, crop: int | None, native: int, fixed: bool) -> int:
    """The crop a backbone uses, refusing a change of a fixed input size.

    Args:
        spec: the backbone spec (for the message).
        crop: the requested crop, or None.
        native: the architecture's native input size in pixels.
        fixed: whether the architecture only takes ``native``.

    Returns:
        ``crop``, or ``native`` when ``crop`` is None.

    Raises:
        BackboneError: ``crop`` differs from ``native`` and the size is fixed.
    """
    if crop is not None and crop != native and fixed:
        raise BackboneError(
            f"{spec} has a fixed input size of {native} px, so crop={crop} (from --set crop or the suite's default "
            f"for its detector) is not possible: pass --set crop={native}"
        )
    return crop or native
