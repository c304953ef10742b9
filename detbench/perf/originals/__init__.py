"""The original repositories' evaluation loops, re-derived from their public code for ``detbench bench
--vs-originals``: one module per original, each citing the file and function it re-derives.

Every module holds the same four things:

- ``SOURCE``: the repository, file and function re-derived;
- ``write_checkpoint(folder, seed)``: seeded random weights saved in the original's checkpoint format, and the
  ``--set`` items with which ``detbench run`` loads the same files the normal way;
- ``load(files)``: the original's model built and loaded as its script does (the timed "load");
- ``score(model, root)``: the original's loop over a test set folder (``0_real``/``1_fake``): its dataset class,
  transforms, batch size, DataLoader workers, dtype, per-image PIL decode, forward and sigmoid (or softmax); it
  returns P(fake) per image path relative to ``root``.

Nothing here is imported by detbench's own scoring path: the loops are the yardstick it is measured against.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ORIGINALS = ("univfd", "npr", "cnnspot", "aide")

# Scores of both sides must agree within this (max abs difference of P(fake)): the bound the equivalence tests'
# float32 rounding allowance must stay under; a wrong layer, crop or normalisation differs by far more.
SCORE_TOLERANCE = 1e-4


@dataclass
class Checkpoint:
    """Weight files in an original's format and how ``detbench run`` is pointed at them."""

    files: dict[str, Path]
    settings: list[str] = field(default_factory=list)  # detbench ``--set key=value`` items


def original(name: str) -> ModuleType:
    """The module of an original loop.

    Args:
        name: a detector name of :data:`ORIGINALS`.

    Returns:
        ``detbench.perf.originals.<name>``.

    Raises:
        ConfigError: no original loop is re-derived for ``name``.
    """
    from detbench.errors import ConfigError

    if name not in ORIGINALS:
        raise ConfigError(f"no original evaluation loop for detector {name!r}; choose from {', '.join(ORIGINALS)}")
    return importlib.import_module(f"{__name__}.{name}")


def label_folder_files(root: Path, extensions: tuple[str, ...]) -> list[tuple[str, int]]:
    """``(path relative to root, label)`` of ``root/0_real`` (0) then ``root/1_fake`` (1), sorted by name within
    each, keeping names ending in one of ``extensions`` (case-sensitive, as the originals compare them).

    Args:
        root: a test set folder.
        extensions: file name endings kept.

    Returns:
        The samples in order.
    """
    return [(f"{label}/{p.name}", y) for y, label in enumerate(("0_real", "1_fake"))
            for p in sorted((root / label).iterdir()) if p.name.endswith(extensions)]


def calibrate_head(model: Any, head: Any, inputs: Any) -> None:
    """Rescale a random linear ``head`` of ``model`` (its direction stays random) so that the logits of ``inputs``
    spread around 0 with standard deviation 2: a random deep network maps every image to nearly the same saturated
    score, and a comparison of saturated scores would prove nothing. A 2-logit head (softmax, P(fake) from the
    second) gets a zero first row, so that the margin is the second logit.

    Args:
        model: the network, in evaluation mode; ``model(inputs)`` runs ``head``.
        head: its ``nn.Linear`` with one output (sigmoid) or two (softmax).
        inputs: a batch the original's transforms made.
    """
    import torch

    seen = []
    hook = head.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        hook.remove()
    with torch.no_grad():
        row = head.weight.shape[0] - 1
        z = seen[0].flatten(1) @ head.weight[row]
        scale = 2.0 / max(float(z.std()), 1e-12)
        head.weight[:row].zero_()
        head.bias.zero_()
        head.weight[row].mul_(scale)
        head.bias[row] = -float(z.mean()) * scale


def image_folder_sigmoid(model: Any, root: Path, transform: Any, batch_size: int, workers: int) -> dict[str, float]:
    """The ``validate`` loop CNNDetection and NPR share: torchvision's ``ImageFolder`` over ``root`` with
    ``transform``, a DataLoader in file order, and the sigmoid of every logit.

    Args:
        model: the network (evaluation mode).
        root: the test set folder (``0_real``, ``1_fake``).
        transform: the original's test transform.
        batch_size: its batch size.
        workers: its DataLoader workers.

    Returns:
        P(fake) per image path relative to ``root``.
    """
    import torch
    import torchvision.datasets as datasets

    dataset = datasets.ImageFolder(str(root), transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    y_pred: list[float] = []
    with torch.no_grad():
        for img, _label in loader:
            y_pred.extend(model(img).sigmoid().flatten().tolist())
    return {Path(path).relative_to(root).as_posix(): p for (path, _), p in zip(dataset.samples, y_pred, strict=True)}
