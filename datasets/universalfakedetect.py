"""UniversalFakeDetect (Ojha et al., CVPR 2023): train on ProGAN, evaluate on 19 generator domains.

Accepted layout (folder names matched case-insensitively; ``datasets/`` may wrap ``train`` and ``test``)::

    ROOT/train/progan/<class>/{0_real,1_fake}/*          optional: test-only roots are common
    ROOT/val/progan/<class>/{0_real,1_fake}/*            optional, indexed as split val
    ROOT/test/<domain>/[<class>/]{0_real,1_fake}/*       11 ForenSynths domains (ROOT may be this test folder)
    ROOT/diffusion_datasets/<domain>/1_fake/*            the 8 diffusion/autoregressive domains
    ROOT/diffusion_datasets/{imagenet,laion}/0_real/*    their real pools (also accepted under test/)

Training rows get the generator ``progan-<class>`` so that the 4-class and 20-class protocols can pick their
classes; test rows get the domain key. A real pool is listed once per domain that uses it: the same path
appears as a real row of several generators (a domain's own ``0_real`` folder, if present, replaces its pool).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from detbench.config import ConfigError
from detbench.data.suites import Entry, EvalProfileOption, Protocol, Suite, SuiteLayoutError, top_levels
from detbench.datasets._layout import (
    CLASSES_4,
    CLASSES_20,
    TRAIN_FOLDERS,
    cap_per_group,
    did_you_mean,
    image_paths,
    progan_protocols,
    progan_training_entries,
    progan_training_folders,
    rel,
    subdirs,
    unrecognised_root,
)

# Non-GAN CNN generators (face swap, low-light imaging, super-resolution, layout-to-image synthesis): FAMILIES
# has no "other", and "unknown" is the honest choice among gan/diffusion/autoregressive/commercial.
FORENSYNTHS: dict[str, str] = {
    "progan": "gan", "cyclegan": "gan", "biggan": "gan", "stylegan": "gan", "gaugan": "gan", "stargan": "gan",
    "deepfake": "unknown", "sitd": "unknown", "san": "unknown", "crn": "unknown", "imle": "unknown",
}  # fmt: skip
DIFFUSION: dict[str, str] = {  # fake domain -> its real pool
    "guided": "imagenet", "ldm_200": "laion", "ldm_200_cfg": "laion", "ldm_100": "laion",
    "glide_100_27": "laion", "glide_50_27": "laion", "glide_100_10": "laion", "dalle": "laion",
}  # fmt: skip
EXTRAS = {"stylegan2": "gan", "whichfaceisreal": "gan"}  # in the archive, not in the 19
POOLS = ("imagenet", "laion")
DOMAIN_FAMILIES = {**FORENSYNTHS, **{d: "diffusion" for d in DIFFUSION}, "dalle": "autoregressive", **EXTRAS}
DOMAINS: tuple[str, ...] = (*FORENSYNTHS, *DIFFUSION)  # the 19 evaluation domains, in the paper's order
FOLDER_ALIASES = {"seeingdark": "sitd"}
LABELS = {"0_real": 0, "1_fake": 1}
__all__ = ["CLASSES_4", "CLASSES_20", "DOMAINS", "UFDOptions", "UniversalFakeDetectSuite"]
ACCEPTED = (
    "  ROOT/train/progan/<class>/{0_real,1_fake}/*     (optional)\n"
    "  ROOT/test/<domain>/[<class>/]{0_real,1_fake}/*  or ROOT itself being that test folder\n"
    "  ROOT/diffusion_datasets/<domain>/1_fake/* with ROOT/diffusion_datasets/{imagenet,laion}/0_real/*\n"
    f"  domains: {', '.join(DOMAINS)} (sitd may be named seeingdark)"
)


@dataclass(frozen=True)
class UFDOptions(EvalProfileOption):
    """UniversalFakeDetect options: per-class caps of indexing and evaluation, and the extra domains."""

    max_per_class: int = 0  # at most this many images per generator, split and label (0: all)
    cap_seed: int = 0  # seeds which images the cap and the evaluation sample keep
    eval_per_class: int = 0  # evaluate at most this many real + fake per domain, equal counts (0: all)
    eval_per_class_fallback: int = 0  # per class when a domain has fewer than eval_per_class (validate.py: 100)
    extra_domains: tuple[str, ...] = ()  # also index and evaluate stylegan2 and/or whichfaceisreal

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_per_class < 0:
            raise ConfigError("max_per_class must be >= 0 (0 uses every image)")
        if self.eval_per_class < 0 or self.eval_per_class_fallback < 0:
            raise ConfigError("eval_per_class and eval_per_class_fallback must be >= 0 (0: off)")
        for name in self.extra_domains:
            if name not in EXTRAS:
                raise ConfigError(
                    f"unknown extra domain {name!r}.{did_you_mean(name, EXTRAS)} Known: {', '.join(EXTRAS)}"
                )
        object.__setattr__(self, "extra_domains", tuple(sorted(set(self.extra_domains))))


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "universalfakedetect",
    "class": "UniversalFakeDetectSuite",
    "summary": (
        "UniversalFakeDetect (CVPR 2023): train on ProGAN (4 or 20 classes), evaluate on 19 GAN/diffusion "
        "domains."
    ),
    "aliases": ["ufd"],
}


class UniversalFakeDetectSuite(Suite):
    """The UniversalFakeDetect suite: train on ProGAN, evaluate on the GAN and diffusion domains."""

    name = REGISTRATION["name"]
    version = 2
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = "progan-4class"
    eval_convention = "universalfakedetect"
    Options = UFDOptions

    def scan(self, root: Path) -> Iterator[Entry]:
        """The optional ProGAN training folders and the test domains under ``root``, capped by ``max_per_class``.

        A diffusion domain without its own ``0_real`` gets its real pool (imagenet or laion) as real rows.

        Args:
            root: the collection's root (``datasets/`` may wrap ``train`` and ``test``) or the test folder itself.

        Yields:
            One entry per image and generator (a pool image appears once per domain using it).

        Raises:
            SuiteLayoutError: no training folder and no domain, no image, or two folders for one domain.
        """
        root = Path(root)
        self.ignored = []
        train, test = self._containers(root)
        domains = self._domains(root, test)
        if not train and not domains:
            raise unrecognised_root(root, "UniversalFakeDetect", ACCEPTED)
        entries: list[Entry] = []
        for split, folder in train:
            entries.extend(progan_training_entries(root, split, folder, self.ignored))
        for key, folder in sorted(domains.items(), key=lambda kv: _order(kv[0])):
            if key not in POOLS:
                entries.extend(self._scan_domain(root, key, folder, domains))
        if not entries:
            raise SuiteLayoutError(
                f"no images in the UniversalFakeDetect folders under {root}. "
                f"Accepted layout:\n{ACCEPTED}\nFound:\n{top_levels(root, depth=3)}"
            )
        yield from cap_per_group(entries, self.options.max_per_class, self.options.cap_seed)

    def _containers(self, root: Path) -> tuple[list[tuple[str, Path]], list[Path]]:
        """(split, progan folder) pairs for training data, and the folders that may hold test domains.

        Training: ``train/progan/<class>`` (UniversalFakeDetect), ``train/<class>`` (CNNDetection) or
        ``progan_train/<class>``. Test domains: under the root, ``test``, ``diffusion_datasets``, or any folder
        up to two levels down that directly holds known domain folders (``CNN_synth_testset``, ``ForenSynths``).
        """
        train: list[tuple[str, Path]] = []
        test: list[Path] = [root]
        known = {*DOMAINS, *POOLS, *FOLDER_ALIASES, *self.options.extra_domains}
        tops = [root, *[d for d in subdirs(root) if d.name.lower() == "datasets"]]
        for top in tops:
            train.extend(progan_training_folders(root, top, self.ignored))
            for child in subdirs(top):
                name = child.name.lower()
                if name not in TRAIN_FOLDERS and name not in known and name != "datasets":
                    below = [d for d in subdirs(child) if d.name.lower() not in TRAIN_FOLDERS]
                    test.extend(d for d in (child, *below) if _holds_domains(d, known))
        return train, list(dict.fromkeys(test))

    def _domains(self, root: Path, containers: list[Path]) -> dict[str, Path]:
        """Domain key (or real pool name) -> its folder, from every test container."""
        known = {*DOMAINS, *POOLS, *self.options.extra_domains}
        structural = {*TRAIN_FOLDERS, "test", "diffusion_datasets", "datasets"}
        holders = {c.resolve() for c in containers}
        found: dict[str, Path] = {}
        for container in containers:
            for child in subdirs(container):
                name = child.name.lower()
                key = FOLDER_ALIASES.get(name, name)
                if key not in known:
                    if name not in structural and child.resolve() not in holders:
                        self.ignored.append(rel(root, child))
                    continue
                if key in found:
                    raise SuiteLayoutError(
                        f"two folders under {root} are UniversalFakeDetect domain {key!r}: "
                        f"{rel(root, found[key])} and {rel(root, child)}; keep one"
                    )
                found[key] = child
        return found

    def _scan_domain(self, root: Path, key: str, folder: Path, domains: dict[str, Path]) -> Iterator[Entry]:
        family = DOMAIN_FAMILIES[key]
        labelled = {LABELS[d.name.lower()] for d in subdirs(folder) if d.name.lower() in LABELS}
        if labelled:
            yield from self._labelled(root, folder, key, "test", family)
        else:
            for class_dir in subdirs(folder):
                yield from self._labelled(root, class_dir, key, "test", family)
        pool = DIFFUSION.get(key)
        if pool is not None and 0 not in labelled and pool in domains:
            yield from self._labelled(root, domains[pool], key, "test", family, only=0)

    def _labelled(
        self, root: Path, folder: Path, generator: str, split: str, family: str, only: int | None = None
    ) -> Iterator[Entry]:
        """The images of ``folder/{0_real,1_fake}``; other sub-folders are recorded as ignored."""
        for label_dir in subdirs(folder):
            label = LABELS.get(label_dir.name.lower())
            if label is None:
                self.ignored.append(rel(root, label_dir))
                continue
            if only is not None and label != only:
                continue
            fam = "real" if label == 0 else family
            for path in image_paths(root, label_dir):
                yield Entry(path=path, generator=generator, split=split, label=label, family=fam)

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """``progan-4class`` and ``progan-20class``, evaluated on the 19 domains (and the ``extra_domains``).

        Args:
            generators: the generators in the index.

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        return progan_protocols(generators, (*DOMAINS, *self.options.extra_domains), eval_split="test")


def _order(key: str) -> int:
    order = [*DOMAINS, *EXTRAS, *POOLS]
    return order.index(key)


def _holds_domains(folder: Path, known: set[str]) -> bool:
    """Whether ``folder`` directly holds a UniversalFakeDetect domain or real-pool folder."""
    return any(d.name.lower() in known for d in subdirs(folder))
