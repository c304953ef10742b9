"""A collection laid out as ``ROOT/{train,test}/<generator>/{0_real,1_fake}/*`` (a template suite).

Copy it to ``datasets/<your_suite>.py`` and adapt :meth:`SplitCollectionSuite.scan` to the layout the data set is
distributed in (its real folder names, archives' wrapper folders, broken files), and the protocols to the ones its
paper evaluates. What each part is for:

- ``REGISTRATION``: the facts ``detbench ls suites`` shows, read without importing this module (literals only).
- ``scan``: one :class:`~detbench.data.suites.Entry` per image (path relative to the root, generator, split,
  label); everything it does not use goes to ``self.ignored`` (reported by ``detbench index``).
- ``protocols``: how the data trains and evaluates (``eval``, which trains nothing, is added by the base).
- ``eval_convention``: the name of the test-set convention its paper evaluates with, so each detector applies its
  original's preprocessing for it (a suite never names a detector).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from detbench.data.suites import Entry, Protocol, Suite
from detbench.datasets._layout import labelled_images, norm, subdirs, unrecognised_root

REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "split-collection",
    "class": "SplitCollectionSuite",
    "summary": "Template: ROOT/{train,test}/<generator>/{0_real,1_fake}; train on one generator, test on all.",
}
SPLITS = ("train", "test")
ACCEPTED = "  ROOT/{train,test}/<generator>/{0_real,1_fake}/*"


class SplitCollectionSuite(Suite):
    name = REGISTRATION["name"]
    version = 1  # bump whenever scan() would return other rows for the same tree
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = "eval"
    eval_convention = None  # e.g. "forensynths": a key of detbench.data.suites.EVAL_CONVENTIONS

    def scan(self, root: Path) -> Iterator[Entry]:
        """Every image under ``root/<split>/<generator>/{0_real,1_fake}``.

        Args:
            root: the collection's root.

        Yields:
            One entry per image; other folders go to ``self.ignored``.

        Raises:
            SuiteLayoutError: no image in the accepted layout.
        """
        root = Path(root)
        self.ignored = []
        entries = []
        for split_dir in subdirs(root):
            split = norm(split_dir.name)
            if split not in SPLITS:
                self.ignored.append(split_dir.name)
                continue
            for generator_dir in subdirs(split_dir):
                for path, label in labelled_images(root, generator_dir, self.ignored):
                    entries.append(Entry(path=path, generator=norm(generator_dir.name), split=split, label=label))
        if not entries:
            raise unrecognised_root(root, "a split collection", ACCEPTED)
        yield from entries

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """``train-on-GEN`` for each generator: train on its training images, evaluate every generator's test split.

        Args:
            generators: the generators in the index.

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        return {
            f"train-on-{g}": Protocol(name=f"train-on-{g}", train_generators=(g,), train_split="train",
                                      eval_split="test", description=f"train on {g}, evaluate every generator")
            for g in generators
        }
