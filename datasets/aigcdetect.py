"""AIGCDetectBenchmark (Zhong et al., PatchCraft, arXiv 2311.12397): 16 test sets, train on ProGAN.

The test collection of ``Ekko-zn/AIGCDetectBenchmark`` (its ``eval_config.py`` lists the 16 sets), used by
the NPR and AIDE tables. Accepted layout (folder names matched case-insensitively through :data:`ALIASES`)::

    ROOT/[test/]<set>/[<class>/]{0_real,1_fake}/*     the 16 sets; ROOT may be the test folder itself
    ROOT/train/progan/<class>/{0_real,1_fake}/*       optional: the CNNDetection ProGAN training set
    ROOT/train/<class>/{0_real,1_fake}/*              (CNNDetection's own layout; val/ gives split val)

A set without ``0_real``/``1_fake`` of its own is the union of its class folders (progan, stylegan,
cyclegan, stylegan2), as the original ``loadpathslist`` reads it. Test rows get split ``test``; training rows
get generator ``progan-<class>`` so that the 4-class and 20-class protocols can pick their classes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from detbench.data.suites import Entry, EvalProfileOption, Protocol, Suite, SuiteLayoutError, top_levels
from detbench.datasets._layout import (
    TRAIN_FOLDERS,
    labelled_images,
    norm,
    progan_protocols,
    progan_training_entries,
    progan_training_folders,
    rel,
    subdirs,
    unrecognised_root,
)

SETS: dict[str, str] = {  # canonical key -> family, in eval_config.py's order
    "progan": "gan", "stylegan": "gan", "biggan": "gan", "cyclegan": "gan", "stargan": "gan", "gaugan": "gan",
    "stylegan2": "gan", "whichfaceisreal": "gan", "adm": "diffusion", "glide": "diffusion",
    "midjourney": "commercial", "sdv14": "diffusion", "sdv15": "diffusion", "vqdm": "diffusion",
    "wukong": "diffusion", "dalle2": "commercial",
}  # fmt: skip
ALIASES: dict[str, str] = {  # folder spellings (compared after norm()) -> canonical key
    **{key: key for key in SETS},
    "stable_diffusion_v_1_4": "sdv14", "stable_diffusion_v_1_5": "sdv15", "sd14": "sdv14", "sd15": "sdv15",
    "wfir": "whichfaceisreal", "mj": "midjourney",
}  # fmt: skip
_BY_NORM = {norm(spelling): key for spelling, key in ALIASES.items()}
TEST_WRAPPERS = ("test", "aigcdetect_testset", "aigcdetectionbenchmark", "aigcdetectbenchmark")
ACCEPTED = (
    "  ROOT/[test/]<set>/[<class>/]{0_real,1_fake}/*    ROOT may be the test folder itself\n"
    "  ROOT/train/progan/<class>/{0_real,1_fake}/*      optional training set (or train/<class>/...)\n"
    "  sets: progan, stylegan, biggan, cyclegan, stargan, gaugan, stylegan2, whichfaceisreal, ADM, Glide,\n"
    "        Midjourney, stable_diffusion_v_1_4, stable_diffusion_v_1_5, VQDM, wukong, DALLE2 (any case)"
)


def canonical_set(name: str) -> str | None:
    """The canonical key of an AIGCDetectBenchmark set folder (any case and punctuation), or None.

    Args:
        name: a folder name (``stable_diffusion_v_1_4``, ``ADM`` ...).

    Returns:
        A key of :data:`SETS`, or None for a folder that is not one of the 16 sets.
    """
    return _BY_NORM.get(norm(name))


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "aigcdetect",
    "class": "AIGCDetectSuite",
    "summary": (
        "AIGCDetectBenchmark (PatchCraft): 16 GAN/diffusion/commercial test sets; train on ProGAN (4 or 20 "
        "classes)."
    ),
}


class AIGCDetectSuite(Suite):
    """The AIGCDetectBenchmark suite: the 16 test sets, with training on ProGAN (4 or 20 classes)."""

    name = REGISTRATION["name"]
    version = 1
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = "progan-4class"
    eval_convention = "aigcdetect"  # NPR's README: native size, batch of one; eval_all.py: shorter side 256, crop 224
    Options = EvalProfileOption

    def scan(self, root: Path) -> Iterator[Entry]:
        """The 16 test sets (split ``test``) and the optional ProGAN training folders under ``root``.

        Args:
            root: the collection's root or its test folder.

        Yields:
            One entry per image; folders that fit no set go to ``self.ignored``.

        Raises:
            SuiteLayoutError: no set and no training folder, no image in them, or two folders for one set.
        """
        root = Path(root)
        self.ignored = []
        training: list[tuple[str, Path]] = progan_training_folders(root, root, self.ignored)
        sets = self._set_folders(root)
        if not sets and not training:
            raise unrecognised_root(root, "AIGCDetectBenchmark", ACCEPTED)
        entries: list[Entry] = []
        for split, folder in training:
            entries.extend(progan_training_entries(root, split, folder, self.ignored))
        for key in (k for k in SETS if k in sets):
            family = SETS[key]
            for path, label in labelled_images(root, sets[key], self.ignored):
                entries.append(
                    Entry(path=path, generator=key, split="test", label=label, family="real" if label == 0 else family)
                )
        if not entries:
            raise SuiteLayoutError(
                f"no images in 0_real/1_fake folders of the AIGCDetectBenchmark sets under {root}. "
                f"Accepted layout:\n{ACCEPTED}\nFound:\n{top_levels(root, depth=3)}"
            )
        yield from entries

    def _set_folders(self, root: Path) -> dict[str, Path]:
        """Canonical set -> its folder, from the root and from a test wrapper folder under it."""
        containers = [root, *[d for d in subdirs(root) if norm(d.name) in TEST_WRAPPERS]]
        found: dict[str, Path] = {}
        for container in containers:
            for child in subdirs(container):
                key = canonical_set(child.name)
                if key is None:
                    if child not in containers and child.name.lower() not in TRAIN_FOLDERS:
                        self.ignored.append(rel(root, child))
                    continue
                if key in found:
                    raise SuiteLayoutError(
                        f"two folders under {root} are AIGCDetectBenchmark set {key!r}: "
                        f"{rel(root, found[key])} and {rel(root, child)}; keep one"
                    )
                found[key] = child
        return found

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """``progan-4class`` and ``progan-20class``, evaluated on the 16 test sets.

        Args:
            generators: the generators in the index.

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        return progan_protocols(generators, tuple(SETS), eval_split="test")
