"""Chameleon (Yan et al., AIDE, ICLR 2025): AI-generated images that fool people, and real photographs.

A test set only (14,863 real and 11,170 fake images as released; obtained from the AIDE authors by email).
Published detectors flag under 14 % of its fakes, so runs always show real and fake accuracy separately.
Accepted layout (as AIDE's ``TestDataset`` reads it; folder names any case)::

    ROOT/[test/]{0_real,1_fake}/*

Every image is generator ``chameleon``, split ``test``. Train elsewhere: protocols ``train-genimage-sdv14``
and ``train-progan-4class`` (with ``--train-root``), or any suite's protocol with ``--train-suite``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from detbench.data.suites import Entry, EvalProfileOption, Protocol, Suite, SuiteLayoutError
from detbench.datasets._layout import (
    cross_suite_protocols,
    label_folders,
    labelled_images,
    rel,
    subdirs,
    unrecognised_root,
)

GENERATOR = "chameleon"
RELEASED = {0: 14_863, 1: 11_170}  # images per label in the released test set (AIDE paper and README)
ACCEPTED = "  ROOT/[test/]{0_real,1_fake}/*   (folder names any case)"


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "chameleon",
    "class": "ChameleonSuite",
    "summary": "Chameleon (AIDE, ICLR 2025): 14,863 real + 11,170 human-fooling fakes; test only, real/fake acc shown.",
}


class ChameleonSuite(Suite):
    """The Chameleon suite: real images and human-fooling fakes, evaluated only."""

    name = REGISTRATION["name"]
    version = 1
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = "eval"
    headline_metrics = ("acc", "real_acc", "fake_acc")
    eval_convention = "chameleon"
    Options = EvalProfileOption

    def scan(self, root: Path) -> Iterator[Entry]:
        """Every image of ``root/[test/]{0_real,1_fake}`` as generator ``chameleon``, split ``test``.

        Counts that differ from the release are noted in ``self.notes``.

        Args:
            root: the Chameleon root or its test folder.

        Yields:
            One entry per image (fake family ``unknown``).

        Raises:
            SuiteLayoutError: no ``0_real``/``1_fake`` folder at the root or in ``test/``, or no image in them.
        """
        root = Path(root)
        self.ignored, self.notes = [], []
        folder = root if label_folders(root) else next(
            (d for d in subdirs(root) if d.name.lower() == "test" and label_folders(d)), None
        )
        if folder is None:
            raise unrecognised_root(root, "Chameleon", ACCEPTED)
        self.ignored.extend(rel(root, d) for d in subdirs(root) if d != folder and folder != root)
        entries = [
            Entry(path=path, generator=GENERATOR, split="test", label=label, family="real" if label == 0 else "unknown")
            for path, label in labelled_images(root, folder, self.ignored)
        ]
        found = {label: sum(e.label == label for e in entries) for label in RELEASED}
        if found != RELEASED:
            self.notes.append(
                f"Chameleon as released has {RELEASED[0]} real and {RELEASED[1]} fake images; this root has "
                f"{found[0]} real and {found[1]} fake files (before any decoding check)"
            )
        if not entries:
            raise SuiteLayoutError(f"no images in {rel(root, folder) if folder != root else root}'s 0_real/1_fake")
        yield from entries

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """The cross-suite training setups (Chameleon is a test set only), evaluated on Chameleon.

        Args:
            generators: the generators in the index (unused: the one generator is ``chameleon``).

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        return cross_suite_protocols((GENERATOR,), eval_split="test")
