"""Tiny open_clip ViTs for tests and stand-ins (patch 16 / 14 / 32, width 64, 4 layers): built with seeded random
weights (``open_clip:detbench-tiny-vit@random``) or with weights from a file; never presented as pretrained.
"""

from __future__ import annotations

import json
from typing import Any

from detbench.paths import home_subdir
from detbench.store import write_text_atomic

TINY_MODELS = {"detbench-tiny-vit": 16, "detbench-tiny-vit14": 14, "detbench-tiny-vit32": 32}


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
