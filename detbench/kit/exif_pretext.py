"""What EXIF pretext training shares across detectors (SDAIE's and BLADES' ``extractor=pretext``): the camera tags the
index recorded per file (``exif_tags``, :data:`detbench.data.images.EXIF_TAGS`), which rows carry the tags a
recipe needs (and what is missing, counted), and where a pretext-trained extractor is saved with a run's state.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

PRETEXT = "pretext"  # extractor=pretext: train the extractor on the EXIF tags of the real training images first
EXTRACTOR_FILE = "extractor.safetensors"  # the pretext-trained extractor, saved with the fit's state


def read_tags(rows: pd.DataFrame) -> list[dict[str, Any] | None]:
    """Each row's ``exif_tags`` (the index's JSON), or None where the index recorded none.

    Args:
        rows: index rows.

    Returns:
        One dict (or None) per row.
    """
    if "exif_tags" not in rows.columns:
        return [None] * len(rows)
    return [json.loads(v) if isinstance(v, str) and v else None for v in rows["exif_tags"]]


@dataclass(frozen=True)
class TagCoverage:
    """Which rows carry every needed tag: their positions, and for the others what is missing."""

    usable: list[int]
    images: int
    without_exif_tags: int  # rows whose index recorded no tag at all
    missing_tag: dict[str, int] = field(default_factory=dict)  # rows with tags but not this one

    def facts(self) -> dict[str, Any]:
        """The counts for a fit record."""
        return {"images": self.images, "used": len(self.usable), "without_exif_tags": self.without_exif_tags,
                "missing_tag": dict(sorted(self.missing_tag.items()))}


def tag_coverage(tags: list[dict[str, Any] | None], needed: Iterable[str]) -> TagCoverage:
    """The rows whose tags hold every ``needed`` tag, and counts of what the others lack.

    Args:
        tags: :func:`read_tags` of the rows.
        needed: the tags every usable row must carry.

    Returns:
        The :class:`TagCoverage`.
    """
    needed = list(needed)
    missing = Counter(tag for t in tags for tag in needed if t is not None and tag not in t)
    usable = [i for i, t in enumerate(tags) if t is not None and all(tag in t for tag in needed)]
    return TagCoverage(usable, len(tags), sum(t is None for t in tags), dict(missing))


def most_missing(missing_tag: dict[str, int], n: int = 4) -> str:
    """The ``n`` most often missing tags with their counts (``"Make 3, FNumber 1"``), for a message.

    Args:
        missing_tag: rows missing each tag (:attr:`TagCoverage.missing_tag`).
        n: how many to name.

    Returns:
        The list as text (empty when nothing is missing).
    """
    return ", ".join(f"{tag} {k}" for tag, k in sorted(missing_tag.items(), key=lambda kv: -kv[1])[:n])
