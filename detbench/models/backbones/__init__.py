"""Backbones from ``PROVIDER:ARCH@SOURCE`` specs: an image encoder, its preprocessing and its identity.

One module per job: :mod:`.spec` (the spec grammar), :mod:`.backbone` (the :class:`Backbone` facade and
:func:`load_backbone`), :mod:`.open_clip_adapter` and :mod:`.timm_adapter` (the providers), :mod:`.tiny` (tiny test
models). Import what you need from here.
"""

from detbench.errors import BackboneError
from detbench.models.backbones.backbone import Backbone
from detbench.models.backbones.loading import load_backbone, load_text_tower
from detbench.models.backbones.open_clip_adapter import CLIP_MEAN, CLIP_STD, TextTower, clip_tokenize
from detbench.models.backbones.timm_adapter import (
    BUNDLED_SHA256,
    bundled_weights_path,
    load_timm_classifier,
    resample_pos_embed,
)
from detbench.models.backbones.tiny import TINY_MODELS, register_tiny_models
from detbench.models.spec import (
    PROVIDERS,
    parse_spec,
    path_free_spec,
    source_kind,
    split_options,
    split_sha256,
)

__all__ = [
    "BUNDLED_SHA256", "CLIP_MEAN", "CLIP_STD", "PROVIDERS", "TINY_MODELS", "Backbone", "BackboneError", "TextTower",
    "bundled_weights_path", "clip_tokenize", "load_backbone", "load_text_tower", "load_timm_classifier",
    "parse_spec", "path_free_spec",
    "register_tiny_models",
    "resample_pos_embed", "source_kind", "split_options", "split_sha256",
]  # fmt: skip
