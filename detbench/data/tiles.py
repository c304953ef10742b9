"""Any-resolution evaluation: an image cut into tiles, each scored as an image, the scores fused per image.

``--set eval.tiles=POLICY`` chooses the tiles, ``--set eval.fuse=RULE`` how their P(fake) become the image's:

- ``none``: the whole image (the detector's own preprocessing decides what it sees);
- ``center``: one centre crop of the detector's input size ``S``, taken from the full-resolution image (no resize),
  at torchvision ``CenterCrop``'s offset ``(int(round((W - S) / 2)), int(round((H - S) / 2)))``;
- ``five``: the four corners and the centre, as torchvision ``FiveCrop`` cuts them (top-left, top-right,
  bottom-left, bottom-right, centre);
- ``grid:SIZE``: non-overlapping ``SIZE`` x ``SIZE`` tiles from the top-left corner, row by row; where the image's
  side is not a multiple of ``SIZE`` the last tile of each row (column) is aligned to the right (bottom) edge, so it
  overlaps its neighbour and every tile is a full ``SIZE`` x ``SIZE``: ``ceil(W / SIZE) * ceil(H / SIZE)`` tiles.

A side shorter than the tile size is never padded or resized: the tile spans that whole side (a ``center`` or ``five``
tile of an image smaller than ``S``, every ``grid`` tile of an image smaller than ``SIZE``: one tile, the image), and
the detector's own preprocessing then treats it as it treats any small image.

Fusion rules: ``mean`` of P(fake), ``max`` of P(fake), ``logit-mean`` (the sigmoid of the mean of the logits of
P(fake), :func:`detbench.probabilities.logit` and :func:`~detbench.probabilities.sigmoid`; for detectors whose scores
are probabilities only).

A tile is named by its image's id with a suffix, ``<image_id>#tile=<policy>:<size>:<k>``, the k-th box of the policy:
:class:`detbench.data.loading.ImageRowsDataset` loads the image of ``<image_id>`` (applying any evaluation
perturbation to the whole image first) and crops the box from it, so every detector scores tiles through its own
loading and preprocessing, and feature caches keep tiles apart from whole images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from detbench.errors import ConfigError
from detbench.probabilities import logit, sigmoid

TILES_KEY = "eval.tiles"  # the --set keys
FUSE_KEY = "eval.fuse"
NO_TILES = "none"
TILE_POLICIES = ("none", "center", "five", "grid:SIZE")
FUSIONS = ("mean", "max", "logit-mean")
DEFAULT_FUSE = "mean"
TILES_VERSION = 1  # bump whenever the boxes or the fusion of the same setting change
TILE_MARK = "#tile="  # what separates an image id from its tile reference
Box = tuple[int, int, int, int]  # PIL's (left, upper, right, lower)


@dataclass(frozen=True)
class Tiling:
    """A parsed tile policy and fusion rule.

    Attributes:
        policy: ``center``, ``five`` or ``grid``.
        size: the grid's tile side (``grid`` only; ``center`` and ``five`` take the detector's input size).
        fuse: the fusion rule (:data:`FUSIONS`).
    """

    policy: str
    size: int | None = None
    fuse: str = DEFAULT_FUSE

    @property
    def spec(self) -> str:
        """The policy as users write it: ``center``, ``five`` or ``grid:SIZE``."""
        return f"grid:{self.size}" if self.policy == "grid" else self.policy

    @property
    def needs_input_size(self) -> bool:
        """Whether the tile side is the detector's input size (``center``, ``five``)."""
        return self.policy != "grid"

    def identity(self) -> dict[str, Any]:
        """What enters the run identity.

        Returns:
            The policy spec, the fusion rule and :data:`TILES_VERSION`.
        """
        return {"tiles": self.spec, "fuse": self.fuse, "version": TILES_VERSION}

    def side(self, input_size: int | None) -> int:
        """The tile side for a detector of ``input_size``.

        Args:
            input_size: the detector's input size (ignored by ``grid``).

        Returns:
            The side in pixels.
        """
        if self.policy == "grid":
            assert self.size is not None
            return self.size
        if input_size is None:
            raise ValueError(f"eval.tiles={self.policy} needs the detector's input size")
        return input_size

    def count(self, width: int, height: int) -> int:
        """How many tiles an image of ``width`` x ``height`` gives.

        Args:
            width: the image's width (after any perturbation).
            height: its height.

        Returns:
            1, 5 or the grid's count.
        """
        if self.policy == "center":
            return 1
        if self.policy == "five":
            return 5
        assert self.size is not None
        return len(_starts(width, self.size)) * len(_starts(height, self.size))

    def tile_id(self, image_id: str, side: int, k: int) -> str:
        """The id of the ``k``-th tile of an image.

        Args:
            image_id: the image's id.
            side: the tile side (:meth:`side`).
            k: the tile's position in :func:`tile_boxes`' order.

        Returns:
            ``<image_id>#tile=<policy>:<side>:<k>``.
        """
        return f"{image_id}{TILE_MARK}{self.policy}:{side}:{k}"


def parse_tiling(tiles: Any, fuse: Any = None) -> Tiling | None:
    """Read ``eval.tiles`` and ``eval.fuse``.

    Args:
        tiles: ``none``, ``center``, ``five`` or ``grid:SIZE`` (SIZE a whole number of pixels >= 1).
        fuse: ``mean``, ``max`` or ``logit-mean``; None: ``mean``.

    Returns:
        The :class:`Tiling`, or None for ``none``.

    Raises:
        ConfigError: any other value, or a fusion rule given with ``none``.
    """
    text = str(tiles).strip().lower()
    rule = DEFAULT_FUSE if fuse is None else str(fuse).strip().lower()
    if rule not in FUSIONS:
        raise ConfigError(f"{FUSE_KEY} must be one of {', '.join(FUSIONS)}; got {fuse!r}")
    if text == NO_TILES:
        if fuse is not None:
            raise ConfigError(f"{FUSE_KEY} fuses the scores of tiles: it needs {TILES_KEY} (center, five or "
                              f"grid:SIZE); {TILES_KEY} is none")
        return None
    if text in ("center", "five"):
        return Tiling(text, None, rule)
    name, _, value = text.partition(":")
    if name == "grid" and value.isdigit() and int(value) >= 1:
        return Tiling("grid", int(value), rule)
    raise ConfigError(f"{TILES_KEY} must be one of {', '.join(TILE_POLICIES)} (SIZE: a whole number of pixels >= 1, "
                      f"e.g. grid:224); got {tiles!r}")


def _starts(length: int, side: int) -> list[int]:
    """Offsets of the tiles along one side: every ``side`` pixels, the last aligned to the far edge."""
    if length <= side:
        return [0]
    return [min(k * side, length - side) for k in range(math.ceil(length / side))]


def tile_boxes(policy: str, side: int, width: int, height: int) -> list[Box]:
    """The crop boxes of a policy on an image of ``width`` x ``height`` (see the module docstring).

    Args:
        policy: ``center``, ``five`` or ``grid``.
        side: the tile side.
        width: the image's width.
        height: its height.

    Returns:
        PIL boxes ``(left, upper, right, lower)``, each within the image.
    """
    tw, th = min(side, width), min(side, height)
    if policy == "grid":
        return [(x, y, x + tw, y + th) for y in _starts(height, side) for x in _starts(width, side)]
    cx, cy = int(round((width - tw) / 2.0)), int(round((height - th) / 2.0))
    center = (cx, cy, cx + tw, cy + th)
    if policy == "center":
        return [center]
    if policy == "five":
        return [(0, 0, tw, th), (width - tw, 0, width, th), (0, height - th, tw, height),
                (width - tw, height - th, width, height), center]
    raise ValueError(f"unknown tile policy {policy!r}")


def split_tile_id(image_id: str) -> tuple[str, str | None]:
    """An id's image id and tile reference.

    Args:
        image_id: an image id, or a tile's (:meth:`Tiling.tile_id`).

    Returns:
        ``(image id, reference)``; the reference is None for a whole image.
    """
    base, mark, ref = image_id.partition(TILE_MARK)
    return (base, ref) if mark else (image_id, None)


def crop_tile(img: Any, ref: str) -> Any:
    """The tile ``ref`` (``policy:side:k``) of a PIL image.

    Args:
        img: the (perturbed) image.
        ref: the reference :func:`split_tile_id` returned.

    Returns:
        The cropped image.

    Raises:
        ValueError: a malformed reference, or a tile the image does not have (it changed size since it was counted).
    """
    policy, side, k = ref.split(":")
    boxes = tile_boxes(policy, int(side), *img.size)
    if int(k) >= len(boxes):
        raise ValueError(f"the {img.width}x{img.height} image has {len(boxes)} tiles ({policy}:{side}), not tile "
                         f"{int(k) + 1}: it changed since its tiles were counted")
    return img.crop(boxes[int(k)])


def fuse(scores: np.ndarray, rule: str) -> float:
    """One image's score from its tiles' P(fake).

    Args:
        scores: the tiles' scores (finite).
        rule: ``mean``, ``max`` or ``logit-mean``.

    Returns:
        The fused score.
    """
    if rule == "mean":
        return float(np.mean(scores))
    if rule == "max":
        return float(np.max(scores))
    if rule == "logit-mean":
        return float(sigmoid(np.array([np.mean(logit(scores))]))[0])
    raise ValueError(f"unknown fusion rule {rule!r}")
