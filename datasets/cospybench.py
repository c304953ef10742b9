"""Co-Spy-Bench (Cheng et al., "CO-SPY: Combining Semantic and Pixel Features to Detect Synthetic Images by AI",
CVPR 2025, arXiv 2503.18286): images of 22 text-to-image generators, prompted with the captions of five real data
sets (MSCOCO 2017, Flickr30k, CC3M, TextCaps, SBU), each set of fakes evaluated against the real images of its
caption source.

The layout is taken from ``github.com/Megum1/CO-SPY`` at commit 310d048387edaf11f236ed1c7180d0e1e823250f:
``data/test/Co-Spy-Bench/download.py`` (it fetches ``<source>/<organisation>@<model>/images_with_metadata.tar.gz``
of Hugging Face ``ruojiruoli/Co-Spy-Bench`` for the 22 models of ``dataSets/__init__.py`` and extracts each into
``synthetic/<source>/``, then unzips ``real_image_examples.zip`` of ``ruojiruoli/Co-Spy-Misc`` beside it),
``CoSpyBenchTestDataset`` in ``dataSets/dataset.py`` (reads ``synthetic/<source>/<model>/*.png``) and ``OtherReal``
in ``dataSets/cospy_real.py`` (reads ``real_image_examples/{CC3M,SBU,TextCaps}/*.jpg``); the Hugging Face file
trees themselves were not available to check. detbench reads the extracted tree::

    ROOT/synthetic/<source>/<organisation>@<model>/*.png    source: mscoco, flickr, cc3m, textcaps, sbu
    ROOT/real_image_examples/{CC3M,SBU,TextCaps}/*.jpg      2,000 real images each (and their caption .json)
    ROOT/real_image_examples/{MSCOCO,Flickr}/*              not distributed: the original reads MSCOCO 2017 val
                                                           and Hugging Face nlphuji/flickr30k; put (or link) them here

Archives left packed are not read: a root holding ``images_with_metadata.tar.gz`` files but no extracted images
(a plain download of the Hugging Face data set) fails naming the first and saying where to extract them, one
beside extracted models is reported, and a ``real_image_examples.zip`` not unzipped is named in the message about
missing real images.

The generator is the model (``CompVis@stable-diffusion-v1-4`` -> ``stable-diffusion-v1-4``); every row carries its
caption source as ``meta_source``, so ``--by meta_source`` gives the paper's per-source tables. The real images
of a source are listed under every generator with fakes of that source. The original's evaluation
(``CoSpyBenchTestDataset``) scores, per source and generator, the first ``min(2000, reals, fakes)`` real and fake
images in file-name order: :meth:`CoSpyBenchSuite.sample_eval` draws the same (``eval_per_class``, 0: all). A
source without real images is not indexed (its fakes could only be scored against other sources' reals); the
scan says so. ``sources`` indexes only the caption sources named (one column of the paper's tables); left empty it
indexes all and stays out of the suite identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detbench.config import ConfigError
from detbench.data.index import META_PREFIX
from detbench.data.suites import Entry, EvalProfileOption, Protocol, Suite
from detbench.datasets._layout import (
    cross_suite_protocols,
    image_paths,
    norm,
    rel,
    slug,
    subdirs,
    unrecognised_root,
)

# caption source key -> (its real folder as the release spells it, the folder names accepted for it under
# synthetic/ and real_image_examples/, normalised by ``norm``), in the order of the paper's tables
SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "cc3m": ("CC3M", ("cc3m",)),
    "flickr": ("Flickr", ("flickr", "flickr30k")),
    "mscoco": ("MSCOCO", ("mscoco", "mscoco2017", "coco", "val2017")),
    "textcaps": ("TextCaps", ("textcaps",)),
    "sbu": ("SBU", ("sbu",)),
}
SOURCE_COLUMN = "source"  # the index column meta_source
SYNTHETIC = "synthetic"
REALS = "real_image_examples"
ARCHIVE = "images_with_metadata.tar.gz"  # Hugging Face ruojiruoli/Co-Spy-Bench: one per <source>/<org>@<model>/
REALS_ZIP = f"{REALS}.zip"  # Hugging Face ruojiruoli/Co-Spy-Misc
ACCEPTED = (
    "  ROOT/synthetic/<source>/<organisation>@<model>/*.png   source: mscoco, flickr, cc3m, textcaps, sbu\n"
    "  ROOT/real_image_examples/<Source>/*.jpg                CC3M, SBU, TextCaps (and MSCOCO, Flickr: yours)"
)


@dataclass(frozen=True)
class CoSpyBenchOptions(EvalProfileOption):
    """Co-Spy-Bench options: the per-cell evaluation cap (the original: 2,000 real and 2,000) and the sources."""

    eval_per_class: int = 2000  # per source and generator: the first N real and N fake images by name (0: all)
    sources: tuple[str, ...] = ()  # index only these caption sources (any spelling _source reads; empty: all)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eval_per_class < 0:
            raise ConfigError("eval_per_class must be >= 0 (0: every image)")
        keys = []
        for name in self.sources:
            key = _source(name)
            if key is None:
                raise ConfigError(f"unknown caption source {name!r}; known: {', '.join(SOURCES)}")
            keys.append(key)
        object.__setattr__(self, "sources", tuple(source for source in SOURCES if source in keys))


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "cospybench",
    "class": "CoSpyBenchSuite",
    "summary": "Co-Spy-Bench (CVPR 2025): 22 text-to-image generators x 5 caption sources; test only, per-source "
    "tables with --by meta_source.",
    "aliases": ["co-spy-bench"],
    "paper": "Cheng et al., CO-SPY: Combining Semantic and Pixel Features to Detect Synthetic Images by AI, CVPR 2025, "
    "arXiv 2503.18286",
    "year": 2025,
    "download": "https://huggingface.co/datasets/ruojiruoli/Co-Spy-Bench (synthetic) and "
    "https://huggingface.co/datasets/ruojiruoli/Co-Spy-Misc (real_image_examples.zip), with "
    "data/test/Co-Spy-Bench/download.py of github.com/Megum1/CO-SPY",
    "licence": "MIT (the CO-SPY repository); the real images keep their data sets' licences",
}


class CoSpyBenchSuite(Suite):
    """The Co-Spy-Bench suite: each generator's fakes against the real images of the same caption source."""

    name = REGISTRATION["name"]
    version = 1
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = "eval"
    eval_convention = None
    Options = CoSpyBenchOptions

    def scan(self, root: Path) -> Iterator[Entry]:
        """The synthetic images of every source with real images, and those reals under each of its generators.

        Args:
            root: the ``Co-Spy-Bench`` folder (holding ``synthetic`` and ``real_image_examples``).

        Yields:
            One entry per fake and one per real image and generator of its source, split ``test``, with
            ``extra={"source": ...}``.

        Raises:
            SuiteLayoutError: no ``synthetic/<source>/<model>`` image, or no source with real images.
        """
        root = Path(root)
        self.ignored, self.notes = [], []
        top = {norm(d.name): d for d in subdirs(root)}
        fakes = self._fakes(root, top.get(SYNTHETIC))
        packed = _archives(root, top.get(SYNTHETIC))
        if not fakes:
            packed = sorted({*packed, *_archives(root, root)})
            raise unrecognised_root(root, "Co-Spy-Bench", ACCEPTED, several=False, depth=3,
                                    missing=f"synthetic/<source>/<model> images{_unextracted(packed, ' (', ')')}")
        if packed:
            self.notes.append(_unextracted(packed, "", ": their images are not indexed"))
        zipped = _unzipped(root)
        reals = self._reals(root, top.get(norm(REALS)))
        self.ignored.extend(rel(root, d) for key, d in top.items() if key not in (SYNTHETIC, norm(REALS)))
        entries: list[Entry] = []
        for source in SOURCES:
            if source not in fakes or self.options.sources and source not in self.options.sources:
                continue
            if not reals.get(source):
                self.notes.append(f"no real images for caption source {source} (put them in {REALS}/"
                                  f"{SOURCES[source][0]}): its {len(fakes[source])} synthetic images are not "
                                  f"indexed{zipped}")
                continue
            generators = sorted({g for g, _p in fakes[source]})
            entries += [Entry(path=p, generator=g, split="test", label=1, family="diffusion",
                              extra={SOURCE_COLUMN: source}) for g, p in fakes[source]]
            entries += [Entry(path=p, generator=g, split="test", label=0, family="real",
                              extra={SOURCE_COLUMN: source}) for g in generators for p in reals[source]]
        if not entries:
            raise unrecognised_root(root, "Co-Spy-Bench", ACCEPTED, several=False, depth=3,
                                    missing=f"{REALS}/<Source> real images for any source with synthetic "
                                    f"images{zipped}")
        yield from entries

    def _fakes(self, root: Path, synthetic: Path | None) -> dict[str, list[tuple[str, str]]]:
        """Source -> ``(generator, path)`` of every image under ``synthetic/<source>/<model>``."""
        out: dict[str, list[tuple[str, str]]] = {}
        if synthetic is None:
            return out
        for folder in subdirs(synthetic):
            source = _source(folder.name)
            if source is None:
                self.ignored.append(rel(root, folder))
                continue
            for model in subdirs(folder):
                out.setdefault(source, []).extend((model_key(model.name), p) for p in image_paths(root, model))
        return out

    def _reals(self, root: Path, reals: Path | None) -> dict[str, list[str]]:
        """Source -> the paths of its real images under ``real_image_examples/<Source>``."""
        out: dict[str, list[str]] = {}
        for folder in subdirs(reals) if reals is not None else []:
            source = _source(folder.name)
            if source is None:
                self.ignored.append(rel(root, folder))
                continue
            out.setdefault(source, []).extend(image_paths(root, folder))
        return out

    def identity(self) -> dict[str, Any]:
        """As every suite's, less ``sources`` while it is empty (every source), so runs of all sources keep their ids.

        Returns:
            ``{"suite", "adapter_version", "options"}``.
        """
        identity = super().identity()
        if not self.options.sources:
            del identity["options"]["sources"]
        return identity

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """Test only: the cross-suite training setups, evaluated on every generator.

        Args:
            generators: the generators in the index.

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        return cross_suite_protocols(None, eval_split="test")

    def sample_eval(self, evaluation: Any) -> tuple[Any, dict[str, Any] | None]:
        """Per caption source and generator, the first ``eval_per_class`` usable real and fake images by path.

        ``CoSpyBenchTestDataset`` of the original takes ``min(2000, reals, fakes)`` of each class, the sorted file
        names' first; unusable rows are never drawn (the original would stop on them).

        Args:
            evaluation: the evaluation rows (``generator``, ``label``, ``path``, ``status``, ``meta_source``).

        Returns:
            The rows to score and, per ``generator/source``, the usable images available and the count per class
            used; ``(evaluation, None)`` when ``eval_per_class`` is 0.
        """
        cap = self.options.eval_per_class
        column = META_PREFIX + SOURCE_COLUMN
        if cap <= 0 or evaluation.empty:
            return evaluation, None
        usable = evaluation[evaluation["status"] == "ok"]
        keep: set[Any] = set()
        facts: dict[str, Any] = {}
        for (generator, source), group in usable.groupby(["generator", column], sort=True):
            by_label = {label: group[group["label"] == label].sort_values("path") for label in (0, 1)}
            n = min(cap, *(len(part) for part in by_label.values()))
            for part in by_label.values():
                keep.update(part.index[:n])
            facts[f"{generator}/{source}"] = {"available_real": len(by_label[0]), "available_fake": len(by_label[1]),
                                              "per_class": n}
        sampled = evaluation.loc[[i for i in evaluation.index if i in keep]]
        return sampled, {"per_class": cap, "order": "file name (the original's sorted listing)", "cells": facts}


def _archives(root: Path, folder: Path | None) -> list[str]:
    """The release's per-model archives left unextracted in ``folder/<source>/`` or ``folder/<source>/<model>/``."""
    if folder is None:
        return []
    return [rel(root, d / ARCHIVE) for s in subdirs(folder) for d in (s, *subdirs(s)) if (d / ARCHIVE).is_file()]


def _unextracted(archives: list[str], before: str, after: str) -> str:
    """What to do with unextracted ``archives`` (paths under the root), between ``before`` and ``after``.

    Empty when there are none.
    """
    if not archives:
        return ""
    return (f"{before}{len(archives)} {ARCHIVE} not extracted, first: {archives[0]}; extract each into "
            f"{SYNTHETIC}/<source>/, as CO-SPY's data/test/Co-Spy-Bench/download.py does{after}")


def _unzipped(root: Path) -> str:
    """What to do with the release's zip of real images left zipped in ``root`` (empty when there is none)."""
    if not (root / REALS_ZIP).is_file():
        return ""
    return f" ({REALS_ZIP} is not unzipped: unzip it in {root}, giving {REALS}/CC3M, SBU and TextCaps)"


def _source(folder: str) -> str | None:
    """The caption source a folder name stands for (``MSCOCO``, ``mscoco2017``, ``Flickr30k`` ...), or None."""
    key = norm(folder)
    return next((source for source, (_folder, names) in SOURCES.items() if key in names), None)


def model_key(folder: str) -> str:
    """A model folder's generator key: the model after ``<organisation>@`` as a :func:`slug`.

    Args:
        folder: the folder name, e.g. ``black-forest-labs@FLUX.1-dev`` (or the model alone).

    Returns:
        The key, e.g. ``flux-1-dev``.
    """
    return slug(folder.split("@", 1)[-1])
