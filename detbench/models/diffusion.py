"""diffusers models, found offline and loaded strictly: the one loader of the detectors built on a diffusers model.

A model is named by a file (its weights), a diffusers folder (``config.json`` and
``diffusion_pytorch_model.safetensors``/``.bin``; a pipeline folder's sub-folder, e.g. ``vae/``, is looked into
too) or a Hugging Face repository id found in the local Hugging Face cache only (at its top level or in the
pipeline's sub-folder). The weights are verified against their sha256 (a pin, or a cached blob's name) and loaded
strictly into a model built by the caller or from the folder's ``config.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from detbench.errors import WeightsError

INSTALL_HINT = "pip install 'detbench[diffusion]'"
CONFIG_FILE = "config.json"
WEIGHTS_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def diffusers_library(user: str) -> Any:
    """The diffusers library, imported on first use.

    Args:
        user: what needs it (``"tsg ... its diffusion UNet"``), named in the message.

    Returns:
        The ``diffusers`` module.

    Raises:
        WeightsError: diffusers is not installed (the message names the extra to install).
    """
    try:
        import diffusers
    except ImportError:
        raise WeightsError(f"{user} needs the diffusers library: {INSTALL_HINT}") from None
    return diffusers


@dataclass(frozen=True)
class DiffusersFiles:
    """A diffusers model's files: its config (None when not asked for), weights, their sha256 and origin."""

    config: Path | None
    weights: Path
    sha256: str
    origin: str  # "file" (a file or folder given) or "hf:<repo id>" (the local Hugging Face cache)


def _folder_files(folder: Path, subfolder: str) -> tuple[Path, Path | None] | None:
    """The folder (or its ``subfolder``) holding the weights, and its weights file; None when neither does."""
    for where in (folder, folder / subfolder) if subfolder else (folder,):
        weights = next((where / name for name in WEIGHTS_FILES if (where / name).is_file()), None)
        if weights is not None:
            return where, weights
    return None


def find_diffusers_files(spec: str, *, what: str, fix: str, subfolder: str = "", config: bool = True,
                         sha256: str | None = None) -> DiffusersFiles:
    """Resolve ``spec`` offline: a weights file (when ``config`` is False), a folder or a cached repository id.

    Args:
        spec: the file, folder or ``owner/name`` repository id.
        what: names the model in messages.
        fix: how a user supplies it (appended to every error).
        subfolder: a pipeline's sub-folder holding the model (``unet``, ``vae``), also looked into.
        config: whether ``config.json`` is needed beside the weights.
        sha256: the expected sha256 (hex or prefix) of the weights; a cached blob's name is used when None.

    Returns:
        The files.

    Raises:
        WeightsError: nothing found (the message says what is missing and ``fix``), or a sha256 mismatch.
    """
    from detbench.models.weights import resolve_weights

    path = Path(spec).expanduser()
    if path.is_file() and not config:
        resolved = resolve_weights(what, fix=fix, local=path, expected_sha256=sha256)
        return DiffusersFiles(None, resolved.path, resolved.sha256, "file")
    if path.is_dir():
        found = _folder_files(path, subfolder)
        where = found[0] if found is not None else path
        if found is None or (config and not (where / CONFIG_FILE).is_file()):
            needs = f"{CONFIG_FILE} and one of " if config else "one of "
            inside = f" (or its {subfolder}/)" if subfolder else ""
            raise WeightsError(f"{what}: the folder{inside} needs {needs}{', '.join(WEIGHTS_FILES)}\n{fix}")
        resolved = resolve_weights(what, fix=fix, local=found[1], expected_sha256=sha256)
        return DiffusersFiles(where / CONFIG_FILE if config else None, resolved.path, resolved.sha256, "file")
    if spec.count("/") != 1 or path.exists():
        raise WeightsError(f"{what}: no such {'folder' if config else 'file or folder'}\n{fix}")
    prefix = ""  # a model repository keeps its files at the top, a pipeline repository in its sub-folder
    try:
        resolved = resolve_weights(what, fix=fix, hf_repo=spec, hf_filenames=WEIGHTS_FILES, expected_sha256=sha256)
    except WeightsError:
        if not subfolder:
            raise
        prefix = subfolder + "/"
        resolved = resolve_weights(what, fix=fix, hf_repo=spec, hf_filenames=[prefix + n for n in WEIGHTS_FILES],
                                   expected_sha256=sha256)
    config_path = None
    if config:
        config_path = resolve_weights(f"{what} ({CONFIG_FILE})", fix=fix, hf_repo=spec,
                                      hf_filenames=[prefix + CONFIG_FILE]).path
    return DiffusersFiles(config_path, resolved.path, resolved.sha256, f"hf:{spec}")


def build_from_config(cls: Any, config_path: Path, *, what: str, fix: str) -> nn.Module:
    """A diffusers model class built (randomly initialised) from a ``config.json``.

    Args:
        cls: the diffusers model class (``UNet2DModel``, ``AutoencoderKL``).
        config_path: its ``config.json``.
        what: names the model in messages.
        fix: how a user supplies a good one.

    Returns:
        The model.

    Raises:
        WeightsError: the file is unreadable or no config of ``cls``.
    """
    try:
        config = json.loads(config_path.read_text())
        return cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    except (OSError, ValueError, TypeError) as exc:
        raise WeightsError(f"{what}: {config_path} is no {cls.__name__} config ({exc})\n{fix}") from None


def load_strictly(model: nn.Module, weights: Path, what: str) -> nn.Module:
    """Load a weights file (safetensors, or a weights-only torch file) into ``model``, every key and shape matching.

    Args:
        model: the built model.
        weights: the file.
        what: names the weights in messages.

    Returns:
        ``model``, loaded.

    Raises:
        WeightsError: the file is unreadable or unsafe, or its keys or shapes do not fit.
    """
    from detbench.models.weights import load_into, load_state_dict_safely

    load_into(model, load_state_dict_safely(weights), f"{what} {weights}")
    return model
