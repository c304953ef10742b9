"""DiffusionForensics (Wang et al., DIRE, ICCV 2023): diffusion images of LSUN-Bedroom, ImageNet, CelebA-HQ.

Two layouts are accepted (folder names matched case-insensitively)::

    ROOT/[images/]{train,val,test}/<subset>/{real,<generator>}/*   as distributed by the DIRE authors
    ROOT/<generator>/{0_real,1_fake}/*                             NPR's copy of the LSUN-Bedroom test set

``<subset>`` is ``lsun_bedroom``, ``imagenet`` or ``celebahq``. In the DIRE layout each subset's ``real``
folder is the real pool of every generator of that subset and split (listed once per generator, like the
UniversalFakeDetect pools), and ``recons/`` and ``dire/`` beside ``images/`` hold DIRE's reconstructions and
residuals (``--set representation=dire`` indexes those instead). Generators are ``<subset>-<generator>``
(``lsun_bedroom-adm``, ``imagenet-sdv1``); NPR's folders are the LSUN-Bedroom ones (``sdv1_new`` is
``sdv1``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from detbench.data.suites import Entry, EvalProfileOption, Protocol, Suite
from detbench.datasets._layout import (
    SPLIT_NAMES,
    cross_suite_protocols,
    image_paths,
    label_folders,
    labelled_images,
    norm,
    rel,
    subdirs,
    unrecognised_root,
)

SUBSETS = ("lsun_bedroom", "imagenet", "celebahq")
FAMILIES = {
    "adm": "diffusion", "ddpm": "diffusion", "iddpm": "diffusion", "ldm": "diffusion", "pndm": "diffusion",
    "sdv1": "diffusion", "sdv2": "diffusion", "vqdiffusion": "diffusion", "if": "diffusion",
    "dalle2": "commercial", "midjourney": "commercial",
}  # fmt: skip
GENERATOR_ALIASES = {"sdv1new": "sdv1", "sdv1_new": "sdv1", "vq_diffusion": "vqdiffusion"}
NPR_SUBSET = "lsun_bedroom"  # NPR's DiffusionForensics folders are DIRE's LSUN-Bedroom test generators
REPRESENTATIONS = ("images", "recons", "dire")
REAL = "real"
ACCEPTED = (
    "  ROOT/[images/]{train,val,test}/<subset>/{real,<generator>}/*   subsets: lsun_bedroom, imagenet, celebahq\n"
    "  ROOT/<generator>/{0_real,1_fake}/*                             NPR's copy (LSUN-Bedroom test)"
)


def generator_key(subset: str, folder: str) -> str:
    """``<subset>-<generator>`` with DIRE's folder spellings unified (``sdv1_new`` -> ``sdv1``).

    Args:
        subset: the subset (``lsun_bedroom``, ``imagenet``, ``celebahq``).
        folder: the generator's folder name (any case).

    Returns:
        The generator key, e.g. ``lsun_bedroom-adm``.
    """
    name = folder.lower()
    name = GENERATOR_ALIASES.get(name, GENERATOR_ALIASES.get(norm(name), name))
    return f"{subset}-{name}"


@dataclass(frozen=True)
class DiffusionForensicsOptions(EvalProfileOption):
    """DiffusionForensics options: which representation (images, reconstructions or DIRE maps) to index."""

    representation: Literal["images", "recons", "dire"] = "images"  # which DIRE folder to index


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "diffusionforensics",
    "class": "DiffusionForensicsSuite",
    "summary": (
        "DiffusionForensics (DIRE, ICCV 2023): LSUN-Bedroom/ImageNet/CelebA-HQ diffusion images; DIRE or NPR "
        "layout."
    ),
}


class DiffusionForensicsSuite(Suite):
    """The DiffusionForensics suite, in the DIRE or the NPR folder layout."""

    name = REGISTRATION["name"]
    version = 1
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = "eval"
    eval_convention = "diffusionforensics"  # NPR's test.py: Resize((256, 256)), no_crop (profile resize-256)
    Options = DiffusionForensicsOptions

    def __init__(self, options: DiffusionForensicsOptions | None = None) -> None:
        super().__init__(options)
        self.splits: dict[str, set[str]] = {}  # generator -> splits found by the last scan

    def scan(self, root: Path) -> Iterator[Entry]:
        """The images of DIRE's layout under ``root``, or else of NPR's copy (LSUN-Bedroom test generators).

        In DIRE's layout each generator's fakes are paired with its subset's real pool of the same split. The
        splits found per generator are kept for :meth:`protocols`.

        Args:
            root: the collection's root (the ``representation`` option picks ``images``, ``recons`` or ``dire``).

        Yields:
            One entry per image and generator (a real image appears once per generator of its subset).

        Raises:
            SuiteLayoutError: neither layout holds an image.
        """
        root = Path(root)
        self.ignored = []
        base = self._representation_folder(root)
        entries = list(self._scan_dire(root, base)) or list(self._scan_npr(root))
        if not entries:
            raise unrecognised_root(root, "DiffusionForensics", ACCEPTED, several=True, depth=3)
        self.splits = {}
        for e in entries:
            self.splits.setdefault(e.generator, set()).add(e.split)
        yield from entries

    def _representation_folder(self, root: Path) -> Path:
        """``ROOT/images`` (or recons/dire, per the option) when present, else ROOT."""
        wanted = [d for d in subdirs(root) if d.name.lower() == self.options.representation]
        others = [d for d in subdirs(root) if d.name.lower() in REPRESENTATIONS and d not in wanted]
        if wanted:
            self.ignored.extend(rel(root, d) for d in others)
            return wanted[0]
        return root

    def _scan_dire(self, root: Path, base: Path) -> Iterator[Entry]:
        """DIRE's ``{train,val,test}/<subset>/{real,<generator>}``; ``base`` may itself be a split folder."""
        split_dirs = [(SPLIT_NAMES[d.name.lower()], d) for d in subdirs(base) if d.name.lower() in SPLIT_NAMES]
        if not split_dirs and any(d.name.lower() in SUBSETS for d in subdirs(base)):
            split_dirs = [(SPLIT_NAMES.get(base.name.lower(), "test"), base)]
        for split, split_dir in split_dirs:
            for subset_dir in subdirs(split_dir):
                subset = subset_dir.name.lower()
                if subset not in SUBSETS:
                    self.ignored.append(rel(root, subset_dir))
                    continue
                folders = {d.name.lower(): d for d in subdirs(subset_dir)}
                reals = list(image_paths(root, folders[REAL])) if REAL in folders else []
                for name, folder in sorted(folders.items()):
                    if name == REAL:
                        continue
                    key = generator_key(subset, name)
                    family = FAMILIES.get(key.split("-", 1)[1], "unknown")
                    for path in image_paths(root, folder):
                        yield Entry(path=path, generator=key, split=split, label=1, family=family)
                    for path in reals:
                        yield Entry(path=path, generator=key, split=split, label=0, family="real")

    def _scan_npr(self, root: Path) -> Iterator[Entry]:
        """NPR's ``<generator>/{0_real,1_fake}`` (the LSUN-Bedroom test generators)."""
        for folder in subdirs(root):
            if not label_folders(folder):
                self.ignored.append(rel(root, folder))
                continue
            key = generator_key(NPR_SUBSET, folder.name)
            family = FAMILIES.get(key.split("-", 1)[1], "unknown")
            for path, label in labelled_images(root, folder, self.ignored):
                fam = "real" if label == 0 else family
                yield Entry(path=path, generator=key, split="test", label=label, family=fam)

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """``train-on-<generator>`` for generators with a train split, and the ProGAN / SD v1.4 cross-suite setups.

        DIRE trained on lsun_bedroom-adm; every protocol evaluates every generator's test split.

        Args:
            generators: the generators in the index (without a scan in this process, e.g. a torchrun rank > 0,
                every generator gets a ``train-on-`` protocol).

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        out = cross_suite_protocols(None, eval_split="test")
        for gen in generators:  # without a scan in this process (a torchrun rank > 0): every generator
            if not self.splits or "train" in self.splits.get(gen, ()):
                out[f"train-on-{gen}"] = Protocol(
                    name=f"train-on-{gen}",
                    train_generators=(gen,),
                    eval_split="test",
                    description=f"train on {gen} train (with its subset's real pool), evaluate on every "
                    "generator's test split",
                )
        return out
