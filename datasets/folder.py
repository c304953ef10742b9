"""Bring your own data: a tree with label folders ``0_real``/``1_fake``, ``real``/``fake``, ``nature``/``ai``.

The label of an image is its deepest folder with one of those names (any case). The split is the nearest
folder above it named train, val (valid, validation) or test, else ``split_default``. The generator is
the folder at ``generator_level`` among the folders above the label folder, not counting split folders
(0: the first under the root, -1: the nearest); an image with no such folder belongs to a generator named
after the root folder. Examples (generator_level=0)::

    ROOT/sdxl/{0_real,1_fake}/*                  generator sdxl, split test
    ROOT/{train,test}/<gen>/{real,fake}/*        generator <gen>, split train / test
    Chameleon/test/{0_real,1_fake}/*             generator Chameleon, split test
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from detbench.config import ConfigError
from detbench.data.suites import (
    Entry,
    EvalProfileOption,
    SuiteLayoutError,
    check_content_option,
    top_levels,
    walk_files,
)
from detbench.datasets._layout import SPLIT_NAMES, SplitsFromDataSuite

LABELS = {"0_real": 0, "1_fake": 1, "real": 0, "fake": 1, "nature": 0, "ai": 1}
ACCEPTED = "label folders 0_real/1_fake, real/fake or nature/ai (any case), holding the images"


@dataclass(frozen=True)
class FolderOptions(EvalProfileOption):
    """How to read a folder tree: which folder names the generator, and the split of unmarked images."""

    generator_level: int = 0  # the folder above the label folder naming the generator (splits skipped)
    split_default: str = "test"  # the split of images with no train/val/test folder above them
    content: str = ""  # what every image shows (a key of detbench.data.suites.CONTENTS, e.g. faces); "": anything

    def __post_init__(self) -> None:
        super().__post_init__()
        check_content_option(self.content)
        if not self.split_default.strip() or "/" in self.split_default:
            raise ConfigError(f"split_default must be a split name such as test; got {self.split_default!r}")


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "folder",
    "class": "FolderSuite",
    "summary": "Your own data: any tree of 0_real/1_fake, real/fake or nature/ai folders.",
}


class FolderSuite(SplitsFromDataSuite):
    """Your own images in real/fake label folders, optionally grouped by generator and split folders."""

    name = REGISTRATION["name"]
    version = 1
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = "train-on-<generator>"  # no sensible default: the error lists the train-on-* protocols
    Options = FolderOptions

    def scan(self, root: Path) -> Iterator[Entry]:
        """Every image inside a label folder under ``root``, with the generator and split its folders name.

        The splits found per generator are kept for :meth:`protocols`; folders without a label folder go to
        ``self.ignored``.

        Args:
            root: the tree's root.

        Yields:
            One entry per image.

        Raises:
            SuiteLayoutError: no image inside a label folder, or an image without a folder at ``generator_level``.
        """
        root = Path(root)
        level = self.options.generator_level
        entries: list[Entry] = []
        unlabelled: set[str] = set()
        for path, _abs in walk_files(root):
            dirs = path.split("/")[:-1]
            depth = next((i for i in range(len(dirs) - 1, -1, -1) if dirs[i].lower() in LABELS), None)
            if depth is None:
                unlabelled.add("/".join(dirs) or ".")
                continue
            above = dirs[:depth]
            split_dirs = [d.lower() for d in above if d.lower() in SPLIT_NAMES]
            split = SPLIT_NAMES[split_dirs[-1]] if split_dirs else self.options.split_default
            candidates = [d for d in above if d.lower() not in SPLIT_NAMES]
            if not candidates:
                generator = root.resolve().name
            elif -len(candidates) <= level < len(candidates):
                generator = candidates[level]
            else:
                raise SuiteLayoutError(
                    f"generator_level={level}, but {path} has {len(candidates)} generator folder(s) "
                    f"above its label folder ({'/'.join(candidates)}); choose a level every image has"
                )
            label = LABELS[dirs[depth].lower()]
            entries.append(
                Entry(
                    path=path,
                    generator=generator,
                    split=split,
                    label=label,
                    family="real" if label == 0 else "unknown",
                )
            )
        self.ignored = sorted(unlabelled)
        self.keep_splits(entries)
        if not entries:
            raise SuiteLayoutError(
                f"no images inside label folders under {root}: expected {ACCEPTED}. "
                f"Found:\n{top_levels(root, depth=3)}"
            )
        yield from entries
