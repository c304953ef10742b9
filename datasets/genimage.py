"""GenImage (Zhu et al., NeurIPS 2023): 8 ImageNet-conditioned generators, ``ai`` (fake) vs ``nature`` (real).

Accepted layouts (folder names matched case-insensitively through :data:`ALIASES`)::

    ROOT/<generator>/<inner>/{train,val}/{ai,nature}/*   nested, as extracted from the public archives
    ROOT/<generator>/{train,val}/{ai,nature}/*           flat, as documented
    ROOT/{train,val}/{ai,nature}/*                       ROOT is one generator's folder (named after it)

``imagenet_ai/{train,val}/{ai,nature}`` (every generator merged) is indexed as generator ``all``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from detbench.config import ConfigError
from detbench.data.suites import Entry, EvalProfileOption, Protocol, Suite, SuiteLayoutError
from detbench.datasets._layout import did_you_mean, image_paths, norm, rel, subdirs, unrecognised_root

GENERATORS: dict[str, str] = {  # canonical key -> family, in the order of the paper's tables
    "midjourney": "commercial",
    "sdv14": "diffusion",
    "sdv15": "diffusion",
    "adm": "diffusion",
    "glide": "diffusion",
    "wukong": "diffusion",
    "vqdm": "diffusion",  # VQ-Diffusion: a discrete diffusion model over VQ-VAE image tokens
    "biggan": "gan",
}
ALL = "all"  # the merged "train on all" tree; its fakes mix every family
ALIASES: dict[str, str] = {
    "Midjourney": "midjourney", "imagenet_midjourney": "midjourney", "midjourney_v5": "midjourney",
    "mj": "midjourney",
    "stable_diffusion_v_1_4": "sdv14", "imagenet_ai_0419_sdv4": "sdv14", "SDv1.4": "sdv14", "sdv14": "sdv14",
    "sd14": "sdv14", "sd_v1_4": "sdv14", "stable-diffusion-v1-4": "sdv14",
    "stable_diffusion_v_1_5": "sdv15", "imagenet_ai_0424_sdv5": "sdv15", "SDv1.5": "sdv15", "sdv15": "sdv15",
    "sd15": "sdv15", "sd_v1_5": "sdv15", "stable-diffusion-v1-5": "sdv15",
    "ADM": "adm", "imagenet_ai_0508_adm": "adm",
    "glide": "glide", "imagenet_glide": "glide",
    "wukong": "wukong", "imagenet_ai_0424_wukong": "wukong",
    "VQDM": "vqdm", "imagenet_ai_0419_vqdm": "vqdm",
    "BigGAN": "biggan", "imagenet_ai_0419_biggan": "biggan",
    "imagenet_ai": ALL, "all": ALL,
}  # fmt: skip
LABELS = {"ai": 1, "nature": 0}
SPLITS = ("train", "val")
_BY_NORM = {norm(spelling): key for spelling, key in ALIASES.items()}
ACCEPTED = (
    "  ROOT/<generator>/<inner>/{train,val}/{ai,nature}/*   e.g. ADM/imagenet_ai_0508_adm/train/ai/\n"
    "  ROOT/<generator>/{train,val}/{ai,nature}/*           e.g. SDv1.4/val/nature/\n"
    "  ROOT/{train,val}/{ai,nature}/*                       ROOT named after its generator, e.g. .../BigGAN\n"
    f"  generators: {', '.join(GENERATORS)} (or {ALL} for imagenet_ai/, the merged tree)"
)


def canonical_generator(name: str) -> str | None:
    """The canonical key of a GenImage generator folder name or alias (any case), or None.

    Args:
        name: a folder name or alias (``imagenet_ai_0419_sdv4``, ``SDv1.4``, ``ADM`` ...).

    Returns:
        A key of :data:`GENERATORS`, ``all`` for the merged tree, or None.
    """
    return _BY_NORM.get(norm(name))


@dataclass(frozen=True)
class GenImageOptions(EvalProfileOption):
    """GenImage options: which generators to index (all found by default)."""

    generators: tuple[str, ...] = ()  # index only these (canonical keys or aliases); empty: all found

    def __post_init__(self) -> None:
        super().__post_init__()
        keys = []
        for name in self.generators:
            key = canonical_generator(name)
            if key is None:
                raise ConfigError(
                    f"unknown GenImage generator {name!r}.{did_you_mean(norm(name), [*GENERATORS, ALL])} "
                    f"Known: {', '.join([*GENERATORS, ALL])}"
                )
            keys.append(key)
        object.__setattr__(self, "generators", tuple(sorted(set(keys))))


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "genimage",
    "class": "GenImageSuite",
    "summary": "GenImage (NeurIPS 2023): 8 ImageNet-conditioned generators; train on SD v1.4, evaluate on all.",
}


class GenImageSuite(Suite):
    """The GenImage suite: eight ImageNet-conditioned generators, each with its own train and val split."""

    name = REGISTRATION["name"]
    version = 1
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = "sdv14"
    eval_convention = "genimage"
    Options = GenImageOptions

    def scan(self, root: Path) -> Iterator[Entry]:
        """The ``{train,val}/{ai,nature}`` images of every generator folder under ``root`` (or of ``root`` itself).

        Args:
            root: the folder holding the generator folders, or one generator's folder.

        Yields:
            One entry per image of the generators found (only those of the ``generators`` option when set).

        Raises:
            SuiteLayoutError: no generator folder, a requested generator missing, two folders for one generator, a
                root with splits that is not named after a generator, or no image.
        """
        root = Path(root)
        self.ignored = []
        found = self._generator_folders(root)
        if not found:
            raise unrecognised_root(root, "GenImage", ACCEPTED, several=True)
        wanted = self.options.generators
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise SuiteLayoutError(
                f"generators={','.join(wanted)}: no folder for {', '.join(missing)} under {root} "
                f"(found: {', '.join(sorted(found))})"
            )
        entries = [
            e
            for gen, holder in sorted(found.items())
            if not wanted or gen in wanted
            for e in self._scan_generator(root, gen, holder)
        ]
        if not entries:
            raise SuiteLayoutError(
                f"no images in the GenImage folders under {root} "
                f"({', '.join(sorted(found))}). Accepted layouts:\n{ACCEPTED}"
            )
        yield from entries

    def _generator_folders(self, root: Path) -> dict[str, Path]:
        """Canonical generator -> the folder holding its train/val folders."""
        if _has_splits(root):
            key = canonical_generator(root.name)
            if key is None:
                hint = did_you_mean(norm(root.name), _BY_NORM)
                raise SuiteLayoutError(
                    f"{root} holds train/val folders of ai/nature images, so it would be one generator's "
                    f"folder, but {root.name!r} is not a GenImage generator name.{hint} Rename it or pass "
                    f"the folder that holds the generator folders. Accepted layouts:\n{ACCEPTED}"
                )
            return {key: root}
        found: dict[str, Path] = {}
        for folder in subdirs(root):
            key = canonical_generator(folder.name)
            holder = self._holder(root, folder, key) if key is not None else None
            if holder is None:
                self.ignored.append(rel(root, folder))
                continue
            if key in found:
                raise SuiteLayoutError(
                    f"two folders under {root} are GenImage generator {key!r}: "
                    f"{rel(root, found[key])} and {rel(root, holder)}; keep one"
                )
            found[key] = holder
        return found

    def _holder(self, root: Path, folder: Path, key: str) -> Path | None:
        """``folder`` if it holds train/val (flat), else its inner folder of the same generator (nested)."""
        if _has_splits(folder):
            return folder
        inner = [d for d in subdirs(folder) if canonical_generator(d.name) == key and _has_splits(d)]
        if len(inner) > 1:
            raise SuiteLayoutError(
                f"{rel(root, folder)} holds several {key!r} folders "
                f"({', '.join(d.name for d in inner)}); keep one"
            )
        others = [rel(root, d) for d in subdirs(folder) if d not in inner]
        if inner:
            self.ignored.extend(others)
        return inner[0] if inner else None

    def _scan_generator(self, root: Path, gen: str, holder: Path) -> Iterator[Entry]:
        for split_dir in subdirs(holder):
            split = split_dir.name.lower()
            if split not in SPLITS:
                self.ignored.append(rel(root, split_dir))
                continue
            for label_dir in subdirs(split_dir):
                label = LABELS.get(label_dir.name.lower())
                if label is None:
                    self.ignored.append(rel(root, label_dir))
                    continue
                family = "real" if label == 0 else GENERATORS.get(gen, "unknown")
                for path in image_paths(root, label_dir):
                    yield Entry(path=path, generator=gen, split=split, label=label, family=family)

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """``sdv14`` (the GenImage standard) and ``train-on-<generator>`` for each generator in the index.

        Each evaluates every generator's val split (the merged ``all`` tree when no single generator was indexed).

        Args:
            generators: the generators in the index.

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        singles = [g for g in GENERATORS if g in generators]
        evaluated = tuple(GENERATORS) if singles else (ALL,)
        out = {
            "sdv14": Protocol(
                name="sdv14",
                train_generators=("sdv14",),
                eval_generators=evaluated,
                description="GenImage standard: train on SD v1.4 train (ai + nature), evaluate on every "
                "generator's val split",
            )
        }
        for gen in [*singles, *([ALL] if ALL in generators else [])]:
            out[f"train-on-{gen}"] = Protocol(
                name=f"train-on-{gen}",
                train_generators=(gen,),
                eval_generators=evaluated,
                description=f"train on {gen} train, evaluate on every generator's val split",
            )
        return out


def _has_splits(folder: Path) -> bool:
    """Whether ``folder`` holds a train or val folder with an ai or nature folder inside."""
    return any(
        d.name.lower() in SPLITS and any(x.name.lower() in LABELS for x in subdirs(d))
        for d in subdirs(folder)
    )
