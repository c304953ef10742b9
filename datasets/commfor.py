"""Community Forensics evaluation set (Park and Owens, "Community Forensics: Using Thousands of Generators to Train
Fake Image Detectors", CVPR 2025, arXiv 2411.04125).

As downloaded from Hugging Face (``huggingface-cli download OwensLab/CommunityForensics --repo-type dataset
--include "data/publicEval/*" --local-dir ROOT``)::

    ROOT/data/publicEval/*.parquet      the evaluation split: one row per image

Each row holds the encoded image (``image_data``, plain bytes), its ``label``, the generator that made it
(``model_name``, a Hugging Face id such as ``stabilityai/stable-diffusion-2`` or a commercial service) and its
``format`` and ``resolution`` (kept as ``meta_format``, ``meta_resolution``). A generator's key is its
``model_name`` with ``/`` written ``--`` (``stabilityai--stable-diffusion-2``). Every row is test data. The real
images have no generator: they are one shared pool, listed under each generator. Column names and the shards read
are the ``parquet`` suite's options, with these defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from detbench.data.suites import Entry, Protocol, SuiteLayoutError
from detbench.datasets._layout import cross_suite_protocols
from detbench.datasets.hfparquet import ParquetOptions, ParquetSuite

REAL_POOL = "real"  # the generator real rows carry before they are listed under each generator


@dataclass(frozen=True)
class CommForOptions(ParquetOptions):
    """The evaluation split's shards and columns (the ``parquet`` suite's options with Community Forensics' names)."""

    files: str = "data/publicEval/*.parquet"
    image_column: str = "image_data"
    generator_column: str = "model_name"
    generator_default: str = REAL_POOL
    keep_columns: tuple[str, ...] = ("format", "resolution")


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "commfor",
    "class": "CommForSuite",
    "summary": "Community Forensics eval set (CVPR 2025): Parquet shards of many generators' images; test only.",
    "aliases": ["community-forensics"],
    "paper": "Park and Owens, Community Forensics: Using Thousands of Generators to Train Fake Image Detectors, "
    "CVPR 2025, arXiv 2411.04125",
    "year": 2025,
    "download": "https://huggingface.co/datasets/OwensLab/CommunityForensics (data/publicEval/*.parquet)",
    "licence": "CC BY 4.0 (dataset card)",
}


class CommForSuite(ParquetSuite):
    """The Community Forensics evaluation split: each generator's images against the shared real pool."""

    name = REGISTRATION["name"]
    version = 1
    default_protocol = "eval"
    Options = CommForOptions

    def scan(self, root: Path) -> Iterator[Entry]:
        """The evaluation shards' rows: fakes under their generator, the real pool under every generator.

        Args:
            root: the download folder (holding ``data/publicEval``).

        Yields:
            One entry per generated image and one per real image and generator, all split ``test``.

        Raises:
            SuiteLayoutError: no shard, a missing column, or no generated image with a generator.
        """
        rows = [replace(e, split="test") for e in super().scan(root)]
        fakes = [replace(e, generator=e.generator.replace("/", "--"))
                 for e in rows if e.label == 1 and e.generator != REAL_POOL]
        generators = sorted({e.generator for e in fakes})
        if not generators:
            raise SuiteLayoutError(
                f"Community Forensics under {root}: no generated image names a {self.options.generator_column!r}; "
                "name the column with --set generator_column=..."
            )
        unnamed = sum(e.label == 1 and e.generator == REAL_POOL for e in rows)
        if unnamed:
            self.notes.append(f"{unnamed} generated images name no {self.options.generator_column!r}: skipped")
        reals = [e for e in rows if e.label == 0]
        out = fakes + [replace(e, generator=g, family="real") for g in generators for e in reals]
        self.keep_splits(out)
        yield from out

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """Test only: the cross-suite training setups, evaluated on every generator.

        Args:
            generators: the generators in the index.

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        return cross_suite_protocols(None, eval_split="test")
