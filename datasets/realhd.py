"""RealHD (Yu, Ye, Rong, Xuan and Ma, "RealHD: A High-Quality Dataset for Robust Detection of State-of-the-Art
AI-Generated Images", ACM MM 2025, arXiv 2602.10546): over 730,000 real and generated images; the generated ones
made by text-to-image generation, inpainting (each with its binary mask), refinement and face swapping, each
annotated with its generation method and content category.

No file listing of the release was found to build against: the project page (``github.com/real-hd/real-hd.github.io``
at commit edf46ba6c87d1e7000aa0d5f00f33e89bc4f90aa, ``index.html``, whose Dataset button only says the download link
is being generated), ``github.com/Hanzhe-yu/RealHD`` (commit 0e4f76727568a60f1dc24bd9de57ad1d6233ca71: a README and
figures) and searches of public code, documentation, web pages and issue threads for a RealHD loader, file list,
directory tree or Hugging Face card gave none. This adapter reads the layout the paper describes (the split, then
the method, then the generator) and makes each of its choices a setting::

    ROOT/[RealHD/]<split>/real/[<category>/]*                         real photographs
    ROOT/[RealHD/]<split>/<method>/<generator>/[<category>/]*         generated images
    ROOT/[RealHD/]<split>/inpainting/<generator>/masks/*              inpainting masks: never indexed

``split``: train, val (valid, validation) or test; a root without split folders is refused unless
``split_default`` names its split. ``method``: text2image (also t2i, text-to-image, txt2img), inpainting
(inpaint), refinement (refine, refined) or faceswap (face_swap, face-swapping); ``methods`` chooses which are
indexed. ``generator_folders=false`` reads ``<method>/[<category>/]*`` instead (the method is the generator).
``real_folder`` and ``mask_folders`` name those folders. The generator key is ``<method>-<generator>``
(``inpainting-sdxl``); a category folder is kept as ``meta_category`` (``--by meta_category``).

Real images carry no generator. In the test split each is listed under every generator (each generator is scored
against the whole real test pool); in train and val each is listed under one generator of its split, chosen by a
seeded hash of its path (``pairing_seed``), so that pooled training counts every real image once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from detbench.config import ConfigError
from detbench.data.suites import Entry, EvalProfileOption, Protocol, Suite, seeded_rank
from detbench.datasets._layout import (
    SPLIT_NAMES,
    did_you_mean,
    image_paths,
    norm,
    rel,
    slug,
    subdirs,
    unrecognised_root,
)

# method key -> (its family, the folder names accepted for it, normalised by ``norm``)
METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "text2image": ("diffusion", ("text2image", "t2i", "texttoimage", "txt2img", "text2img")),
    "inpainting": ("diffusion", ("inpainting", "inpaint", "inpainted")),
    "refinement": ("diffusion", ("refinement", "refine", "refined")),
    "faceswap": ("unknown", ("faceswap", "faceswapping", "faceswapped", "swap")),
}
EVAL_SPLIT = "test"
CATEGORY_COLUMN = "category"  # the index column meta_category
ACCEPTED = (
    "  ROOT/[RealHD/]<split>/real/[<category>/]*                    split: train, val, test\n"
    "  ROOT/[RealHD/]<split>/<method>/<generator>/[<category>/]*    method: text2image, inpainting, refinement, "
    "faceswap\n"
    "  (without split folders: --set split_default=test; method folders without generator folders: "
    "--set generator_folders=false)"
)


@dataclass(frozen=True)
class RealHDOptions(EvalProfileOption):
    """The layout choices of a RealHD root (see the module's docstring)."""

    methods: tuple[str, ...] = tuple(METHODS)  # the generation methods indexed
    generator_folders: bool = True  # <method>/<generator>/...; false: <method>/... with the method as generator
    real_folder: str = "real"  # the folder of the real photographs in each split
    mask_folders: tuple[str, ...] = ("mask", "masks")  # folders whose files are never indexed (inpainting masks)
    split_default: str = ""  # the split of a root without split folders; empty: such a root is refused
    pairing_seed: int = 0  # which train/val generator each real image of those splits is listed under

    def __post_init__(self) -> None:
        super().__post_init__()
        for method in self.methods:
            if method not in METHODS:
                raise ConfigError(f"unknown RealHD method {method!r}.{did_you_mean(method, METHODS)} Known: "
                                  f"{', '.join(METHODS)}")
        if not self.methods:
            raise ConfigError(f"methods names no method; choose from {', '.join(METHODS)}")
        if not norm(self.real_folder):
            raise ConfigError("real_folder must name a folder (default: real)")
        splits = sorted(set(SPLIT_NAMES.values()))
        if self.split_default and self.split_default not in splits:
            raise ConfigError(f"split_default must be one of {', '.join(splits)} (or empty), not "
                              f"{self.split_default!r}")


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "realhd",
    "class": "RealHDSuite",
    "summary": "RealHD (ACM MM 2025): text-to-image, inpainting, refinement and face-swap images vs real photos; "
    "train on all methods (or one), test on every generator.",
    "aliases": ["real-hd"],
    "paper": "Yu, Ye, Rong, Xuan and Ma, RealHD: A High-Quality Dataset for Robust Detection of State-of-the-Art "
    "AI-Generated Images, ACM MM 2025, arXiv 2602.10546",
    "year": 2025,
    "download": "https://real-hd.github.io (linked from the paper; its dataset link was not yet published when "
    "checked)",
    "licence": "not stated in the paper; see the download page",
}


class RealHDSuite(Suite):
    """The RealHD suite: generators per generation method, the real photographs of each split paired with them."""

    name = REGISTRATION["name"]
    version = 1
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = "all"
    eval_convention = None
    Options = RealHDOptions

    def scan(self, root: Path) -> Iterator[Entry]:
        """Every generated image under its ``<method>-<generator>``, and the real ones paired with them.

        Args:
            root: the RealHD folder (holding the split folders), or the folder it was unpacked into.

        Yields:
            One entry per generated image; one per real image and generator in test, one per real image in train
            and val; a category folder in ``extra``.

        Raises:
            SuiteLayoutError: no split folder (and no ``split_default``), or no generated image of the chosen
                methods.
        """
        root = Path(root)
        self.ignored, self.notes = [], []
        top = root
        if not _splits(root):
            top = next((d for d in subdirs(root) if norm(d.name) == "realhd" and _splits(d)), root)
        parts = _splits(top)
        if parts:
            self.ignored.extend(rel(root, d) for d in subdirs(top) if d.name.lower() not in SPLIT_NAMES)
            self.ignored.extend(rel(root, d) for d in subdirs(root) if top != root and d != top)
        elif self.options.split_default:
            parts = [(self.options.split_default, top)]
        else:
            raise unrecognised_root(root, "RealHD", ACCEPTED, several=True, depth=3,
                                    missing="train/val/test folder (and no split_default)")
        fakes: dict[str, list[Entry]] = defaultdict(list)
        reals: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
        for split, folder in parts:
            for child in subdirs(folder):
                method = _method(child.name)
                if norm(child.name) == norm(self.options.real_folder):
                    reals[split].extend(self._images(root, child))
                elif method in self.options.methods:
                    fakes[split].extend(self._generated(root, child, method, split))
                else:
                    self.ignored.append(rel(root, child))
        if not any(fakes.values()):
            methods = ", ".join(self.options.methods)
            raise unrecognised_root(root, "RealHD", ACCEPTED, several=True, depth=3,
                                    missing=f"generated images of {methods} in <split>/<method>/<generator>")
        entries: list[Entry] = []
        for split, generated in sorted(fakes.items()):
            generators = sorted({e.generator for e in generated})
            entries += generated
            if not reals.get(split):
                self.notes.append(f"split {split} has no real images ({self.options.real_folder}/): its generators "
                                  "have fakes only")
            for path, category in reals.get(split, []):
                extra = {CATEGORY_COLUMN: category} if category else {}
                paired = generators if split == EVAL_SPLIT else [self._paired(path, generators)]
                entries += [Entry(path=path, generator=g, split=split, label=0, family="real", extra=extra)
                            for g in paired]
        unpaired = sorted(set(reals) - set(fakes))
        if unpaired:
            self.notes.append(f"real images of split {', '.join(unpaired)} have no generated images beside them: "
                              "not indexed")
        yield from entries

    def _images(self, root: Path, folder: Path) -> Iterator[tuple[str, str | None]]:
        """``(path, category)`` of the images under ``folder``, less those inside a mask folder."""
        masks = {norm(m) for m in self.options.mask_folders}
        prefix = rel(root, folder)
        skipped: set[str] = set()
        for path in image_paths(root, folder):
            inner = PurePosixPath(path).relative_to(prefix).parts
            mask = next((i for i, part in enumerate(inner[:-1]) if norm(part) in masks), None)
            if mask is not None:
                skipped.add(f"{prefix}/{'/'.join(inner[: mask + 1])}")
                continue
            yield path, inner[0] if len(inner) > 1 else None
        self.ignored.extend(sorted(skipped))

    def _generated(self, root: Path, method_dir: Path, method: str, split: str) -> Iterator[Entry]:
        family = METHODS[method][0]
        if not self.options.generator_folders:
            for path, category in self._images(root, method_dir):
                yield _fake(path, method, split, family, category)
            return
        loose = 0
        for path, category in self._images(root, method_dir):
            if category is None:
                loose += 1
                continue
            inner = PurePosixPath(path).relative_to(rel(root, method_dir)).parts
            subcategory = inner[1] if len(inner) > 2 else None
            yield _fake(path, f"{method}-{slug(category)}", split, family, subcategory)
        if loose:
            self.notes.append(f"{loose} images directly in {rel(root, method_dir)}: not indexed (generator folders "
                              "expected; --set generator_folders=false reads the method as the generator)")

    def _paired(self, path: str, generators: list[str]) -> str:
        """The one train/val generator a real image is listed under (a seeded hash of its path)."""
        return generators[int.from_bytes(seeded_rank(self.options.pairing_seed, path), "big") % len(generators)]

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """``all``: train on every generator's train split; ``method-<m>``: on one method's generators. Each
        evaluates every generator's test split.

        Args:
            generators: the generators in the index.

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        out = {"all": Protocol(name="all", train_generators=tuple(generators), eval_split=EVAL_SPLIT,
                               description="train on every generator's train split (pooled), evaluate every "
                               "generator's test split")}
        for method in METHODS:
            mine = tuple(g for g in generators if g == method or g.startswith(f"{method}-"))
            if mine:
                out[f"method-{method}"] = Protocol(
                    name=f"method-{method}", train_generators=mine, eval_split=EVAL_SPLIT,
                    description=f"train on the {method} generators' train split, evaluate every generator's test "
                    "split (across methods)")
        return out


def _fake(path: str, generator: str, split: str, family: str, category: str | None) -> Entry:
    return Entry(path=path, generator=generator, split=split, label=1, family=family,
                 extra={CATEGORY_COLUMN: category} if category else {})


def _splits(folder: Path) -> list[tuple[str, Path]]:
    """``(split, folder)`` of the split folders directly under ``folder``."""
    return [(SPLIT_NAMES[d.name.lower()], d) for d in subdirs(folder) if d.name.lower() in SPLIT_NAMES]


def _method(folder: str) -> str | None:
    """The generation method a folder name stands for, or None."""
    key = norm(folder)
    return next((method for method, (_family, names) in METHODS.items() if key in names), None)
