"""Resumable training checkpoints: named sections of tensors plus JSON metadata in one safetensors file.

Both training loops (:mod:`detbench.kit.training` and MPFT's own) keep their state this way: the model's tensors,
the kept-so-far state and the optimizer's tensors as sections (``model/<name>``, ``optim/<param>/<slot>``), the
position, history and failures as JSON in the file's metadata. Files are written atomically, so a kill leaves the
previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from detbench import distributed as dist
from detbench.store import atomic_path


def write_checkpoint(path: Path, sections: dict[str, dict[str, Tensor]], meta: dict[str, Any], *,
                     meta_key: str) -> None:
    """Write ``sections`` (``{section: {name: tensor}}``) and ``meta`` atomically to ``path``.

    Args:
        path: the checkpoint file (replaced as a whole).
        sections: tensors by section; a tensor is stored as ``<section>/<name>`` (CPU copies are made).
        meta: JSON-ready facts (position, history, ...).
        meta_key: the metadata key holding ``meta`` (each loop reads only its own).
    """
    tensors = {f"{section}/{name}": value.detach().to("cpu", copy=True).contiguous()
               for section, named in sections.items() for name, value in named.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={meta_key: json.dumps(meta)})


def read_checkpoint(path: Path, *, meta_key: str) -> tuple[dict[str, Any], dict[str, dict[str, Tensor]]]:
    """A checkpoint written by :func:`write_checkpoint`.

    Args:
        path: the checkpoint file.
        meta_key: the metadata key the writer used.

    Returns:
        ``(meta, sections)``; a section absent from the file is an empty dict when looked up with ``.get``.
    """
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()[meta_key])
        sections: dict[str, dict[str, Tensor]] = {}
        for key in fh.keys():
            section, _, name = key.partition("/")
            sections.setdefault(section, {})[name] = fh.get_tensor(key)
    return meta, sections


def optimizer_tensors(optimizer: torch.optim.Optimizer, names: Sequence[str]) -> dict[str, Tensor]:
    """The optimizer's per-parameter state (e.g. AdamW's moments and step) as ``{"<name>/<slot>": tensor}``.

    Args:
        optimizer: any torch optimizer.
        names: a name for each parameter, in the optimizer's order (its state-dict indices).

    Returns:
        The tensors, CPU copies; scalars become 0-d tensors.
    """
    return {f"{names[index]}/{slot}": torch.as_tensor(value).detach().to("cpu", copy=True)
            for index, state in optimizer.state_dict()["state"].items() for slot, value in state.items()}


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor],
                           names: Sequence[str]) -> None:
    """Restore the per-parameter state saved by :func:`optimizer_tensors` (hyper-parameters stay as they are).

    Args:
        optimizer: the optimizer to restore, built over the same parameters in the same order.
        tensors: ``{"<name>/<slot>": tensor}``.
        names: the parameter names used when saving.
    """
    index = {name: i for i, name in enumerate(names)}
    state = optimizer.state_dict()
    state["state"] = {}
    for key, value in tensors.items():
        name, _, slot = key.rpartition("/")
        state["state"].setdefault(index[name], {})[slot] = value
    optimizer.load_state_dict(state)


def gathered_failures(failures: dict[int, str]) -> dict[int, str]:
    """Every rank's unreadable training images, merged (under torchrun each rank decodes its own rows).

    Args:
        failures: this rank's failures: reason by position in the training rows (0-based).

    Returns:
        Every rank's failures in one dict, the same on every rank (a copy of ``failures`` in a single process).
    """
    return {row: reason for part in dist.all_gather(failures) for row, reason in part.items()}
