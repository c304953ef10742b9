"""Synthbuster (Bammey, IEEE OJSP 2023): 9 text-to-image generators re-creating the RAISE-1k photographs.

As distributed on Zenodo (record 10066460), ``synthbuster.zip`` holds only the fakes, 1,000 PNGs per
generator. The released evaluation pairs them with ``real_RAISE_1k.zip`` (GRIP, grip.unina.it
``download/prog/DMimageDetection/real_RAISE_1k.zip``): the 1,000 RAISE-1k photographs as PNG files named like the
fakes (``r05839451t.png``), unzipped into ``synthbuster/real_RAISE_1k/`` beside the generator folders
(grip-unina/ClipBased-SyntheticImageDetection ``data/synthbuster_download.sh`` and its ``commercial_tools.csv``,
whose real rows are ``synthbuster/real_RAISE_1k/*.png``). That is the real pool to use for published numbers;
the RAISE site's own TIFFs (or NEF raw files, which detbench does not read) are other files of the same photographs.
Accepted layout::

    ROOT/[synthbuster/]<generator>/*     dalle2, dalle3, firefly, glide, midjourney-v5, stable-diffusion-1-3,
                                         stable-diffusion-1-4, stable-diffusion-2, stable-diffusion-xl
    ROOT/[synthbuster/]real_RAISE_1k/*   the real pool: a folder whose name contains "raise" (real_RAISE_1k,
                                         RAISE-1k ...) or is "real" (or --set real_folder=PATH, relative to ROOT)

Each generator is evaluated against the whole shared real pool (its rows are listed once per generator).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from detbench.config import ConfigError
from detbench.data.suites import Entry, EvalProfileOption, Protocol, Suite, SuiteLayoutError, safe_join
from detbench.datasets._layout import cross_suite_protocols, image_paths, norm, rel, subdirs, unrecognised_root

GENERATORS: dict[str, str] = {  # folder as distributed -> family
    "dalle2": "commercial", "dalle3": "commercial", "firefly": "commercial", "glide": "diffusion",
    "midjourney-v5": "commercial", "stable-diffusion-1-3": "diffusion", "stable-diffusion-1-4": "diffusion",
    "stable-diffusion-2": "diffusion", "stable-diffusion-xl": "diffusion",
}  # fmt: skip
_BY_NORM = {norm(g): g for g in GENERATORS}
ACCEPTED = (
    "  ROOT/[synthbuster/]<generator>/*   generators: " + ", ".join(GENERATORS) + "\n"
    "  ROOT/[synthbuster/]real_RAISE_1k/* real pool: a folder named like *RAISE* or real (or --set real_folder=)"
)


@dataclass(frozen=True)
class SynthbusterOptions(EvalProfileOption):
    """Synthbuster options: where the real (RAISE) pool is."""

    real_folder: str = ""  # the real pool relative to ROOT; empty: the folder named like *RAISE* or real

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.real_folder.startswith("/") or ".." in Path(self.real_folder).parts:
            raise ConfigError(f"real_folder must be a folder inside the suite root; got {self.real_folder!r}")


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "synthbuster",
    "class": "SynthbusterSuite",
    "summary": "Synthbuster (Bammey 2023): 9 text-to-image generators, each against the RAISE-1k real pool; test only.",
}


class SynthbusterSuite(Suite):
    """The Synthbuster suite: nine text-to-image generators, each against the RAISE-1k real pool."""

    name = REGISTRATION["name"]
    version = 1
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = "eval"
    eval_convention = "synthbuster"
    Options = SynthbusterOptions

    def scan(self, root: Path) -> Iterator[Entry]:
        """Each generator's fakes and, for each generator, the whole shared RAISE-1k real pool (split ``test``).

        Args:
            root: the Synthbuster root (fakes under it or under its ``synthbuster`` folder, the real pool beside).

        Yields:
            One entry per fake image, and one per real image and generator.

        Raises:
            SuiteLayoutError: no generator folder, or no (or more than one candidate) real pool.
        """
        root = Path(root)
        self.ignored = []
        containers = [root, *[d for d in subdirs(root) if norm(d.name) == "synthbuster"]]
        fakes: dict[str, Path] = {}
        for container in containers:
            for child in subdirs(container):
                key = _BY_NORM.get(norm(child.name))
                if key is not None and key not in fakes:
                    fakes[key] = child
        if not fakes:
            raise unrecognised_root(root, "Synthbuster", ACCEPTED)
        real = self._real_pool(root, containers)
        used = {*fakes.values(), real, *containers}
        self.ignored.extend(rel(root, d) for c in containers for d in subdirs(c) if d not in used)
        reals = list(image_paths(root, real))
        for gen in (g for g in GENERATORS if g in fakes):
            for path in image_paths(root, fakes[gen]):
                yield Entry(path=path, generator=gen, split="test", label=1, family=GENERATORS[gen])
            for path in reals:
                yield Entry(path=path, generator=gen, split="test", label=0, family="real")

    def _real_pool(self, root: Path, containers: list[Path]) -> Path:
        if self.options.real_folder:
            folder = safe_join(root, self.options.real_folder)
            if not folder.is_dir():
                raise SuiteLayoutError(f"real_folder={self.options.real_folder}: no such folder under {root}")
            return folder
        candidates = [
            d for c in containers for d in subdirs(c) if "raise" in norm(d.name) or norm(d.name) in ("real", "0real")
        ]
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            raise SuiteLayoutError(
                f"several folders could be the RAISE-1k real pool under {root}: "
                f"{', '.join(rel(root, d) for d in candidates)}; choose one with --set real_folder=PATH (the "
                "released evaluation uses real_RAISE_1k, the PNGs of real_RAISE_1k.zip)"
            )
        raise SuiteLayoutError(
            f"no real pool under {root}: synthbuster.zip holds only the fakes. The released evaluation's reals are "
            "real_RAISE_1k.zip (https://www.grip.unina.it/download/prog/DMimageDetection/real_RAISE_1k.zip, 1,000 "
            "PNGs): unzip it into the synthbuster folder (giving synthbuster/real_RAISE_1k/), or point --set "
            "real_folder=PATH at your real images (relative to ROOT)"
        )

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """The cross-suite training setups (Synthbuster is a test set only), evaluated on the nine generators.

        Args:
            generators: the generators in the index (unused: the evaluated set is the nine generators).

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        return cross_suite_protocols(tuple(GENERATORS), eval_split="test")
