"""WildRF (Cavia et al., "Real-Time Deepfake Detection in the Real-World", arXiv 2406.09398, 2024).

Real and fake images collected by hand from three social platforms. As unzipped from the authors' archive (the
Google Drive link of ``barcavia/RealTime-DeepfakeDetection-in-the-RealWorld``)::

    ROOT/[WildRF/]train/{0_real,1_fake}/*                          Reddit
    ROOT/[WildRF/]val/{0_real,1_fake}/*                            Reddit
    ROOT/[WildRF/]test/{reddit,twitter,facebook}/{0_real,1_fake}/*

The platforms are the generators (``reddit``, ``twitter``, ``facebook``). The training and validation images are
Reddit's: the paper's protocol trains on one platform (Reddit) and tests on the three platforms' test sets (the
original's ``test_config.py`` evaluates ``reddit``, ``twitter`` and ``facebook``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from detbench.data.suites import Entry, EvalProfileOption, Protocol, Suite
from detbench.datasets._layout import image_paths, label_folders, norm, rel, subdirs, unrecognised_root

PLATFORMS = ("reddit", "twitter", "facebook")  # the test folders, in the order of the paper's table
TRAIN_PLATFORM = "reddit"  # the platform of train/ and val/
SPLITS = {"train": "train", "val": "val"}
ACCEPTED = (
    "  ROOT/[WildRF/]train/{0_real,1_fake}/*   Reddit (and val/ likewise)\n"
    "  ROOT/[WildRF/]test/{reddit,twitter,facebook}/{0_real,1_fake}/*"
)

REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "wildrf",
    "class": "WildRFSuite",
    "summary": "WildRF (2024): real vs fake images from Reddit, Twitter, Facebook; train on Reddit, test on all three.",
    "paper": "Cavia et al., Real-Time Deepfake Detection in the Real-World, arXiv 2406.09398",
    "year": 2024,
    "download": "https://drive.google.com/file/d/1A0xoL44Yg68ixd-FuIJn2VC4vdZ6M2gn (linked from "
    "github.com/barcavia/RealTime-DeepfakeDetection-in-the-RealWorld)",
    "licence": "not stated by the authors (images collected from public social-media posts; research use)",
}


class WildRFSuite(Suite):
    """The WildRF suite: Reddit, Twitter and Facebook as generators; Reddit has train and val splits."""

    name = REGISTRATION["name"]
    version = 1
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = TRAIN_PLATFORM
    eval_convention = None
    Options = EvalProfileOption

    def scan(self, root: Path) -> Iterator[Entry]:
        """The Reddit train/val images and each platform's test images.

        Args:
            root: the ``WildRF`` folder, or the folder it was unzipped into.

        Yields:
            One entry per image (generator: the platform).

        Raises:
            SuiteLayoutError: neither a ``test/<platform>`` nor a ``train``/``val`` folder with label folders.
        """
        root = Path(root)
        self.ignored, self.notes = [], []
        wrapped = [d for d in subdirs(root) if norm(d.name) == "wildrf"]
        top = wrapped[0] if wrapped and not _has_splits(root) else root
        entries: list[Entry] = []
        for child in subdirs(top):
            name = child.name.lower()
            if name in SPLITS:
                entries.extend(self._labelled(root, child, TRAIN_PLATFORM, SPLITS[name]))
            elif name == "test":
                for platform in subdirs(child):
                    key = platform.name.lower()
                    if key not in PLATFORMS:
                        self.ignored.append(rel(root, platform))
                        continue
                    entries.extend(self._labelled(root, platform, key, "test"))
            elif child not in wrapped:
                self.ignored.append(rel(root, child))
        if not entries:
            raise unrecognised_root(root, "WildRF", ACCEPTED, several=True, depth=3,
                                    missing="test/<platform>/{0_real,1_fake} or train/{0_real,1_fake} images")
        found = {e.generator for e in entries if e.split == "test"}
        absent = [p for p in PLATFORMS if p not in found]
        if found and absent:
            self.notes.append(f"no test images for {', '.join(absent)} (test/{absent[0]}/{{0_real,1_fake}})")
        yield from entries

    def _labelled(self, root: Path, folder: Path, generator: str, split: str) -> Iterator[Entry]:
        labels = label_folders(folder)
        self.ignored.extend(rel(root, d) for d in subdirs(folder) if d not in labels.values())
        if len(labels) == 1:
            lacking = "0_real" if 1 in labels else "1_fake"
            self.notes.append(f"{rel(root, folder)} has no {lacking} folder")
        for label, label_dir in sorted(labels.items()):
            for path in image_paths(root, label_dir):
                yield Entry(path=path, generator=generator, split=split, label=label,
                            family="real" if label == 0 else "unknown")

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """``reddit``: train on Reddit's train split, evaluate every platform's test split (the paper's protocol).

        Args:
            generators: the platforms in the index.

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        evaluated = tuple(p for p in PLATFORMS if p in generators) or None
        return {
            TRAIN_PLATFORM: Protocol(
                name=TRAIN_PLATFORM,
                train_generators=(TRAIN_PLATFORM,),
                eval_generators=evaluated,
                eval_split="test",
                description="WildRF protocol: train on Reddit (train/), evaluate Reddit, Twitter and Facebook "
                "(test/<platform>)",
            )
        }


def _has_splits(folder: Path) -> bool:
    """Whether ``folder`` itself holds a train, val or test folder."""
    return any(d.name.lower() in (*SPLITS, "test") for d in subdirs(folder))
