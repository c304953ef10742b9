"""GANGen-Detection (Tan et al., ``chuangchuangtan/GANGen-Detection``): 9 GANs, 2k real + 2k fake each.

The test collection of NPR's Table 2 and FreqNet, evaluated with a detector trained on ProGAN (the
CNNDetection training set: protocol ``train-progan-4class`` with ``--train-root``). Layout as distributed::

    ROOT/<GAN>/{0_real,1_fake}/*      AttGAN, BEGAN, CramerGAN, InfoMaxGAN, MMDGAN, RelGAN, S3GAN, SNGAN, STGAN

Folder names are matched case-insensitively; generators are the lower-cased names (``attgan``...).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from detbench.data.suites import Entry, EvalProfileOption, Protocol, Suite
from detbench.datasets._layout import cross_suite_protocols, labelled_images, norm, rel, subdirs, unrecognised_root

GANS = ("attgan", "began", "cramergan", "infomaxgan", "mmdgan", "relgan", "s3gan", "sngan", "stgan")
ACCEPTED = (
    "  ROOT/<GAN>/{0_real,1_fake}/*   (ROOT may also hold a GANGen-Detection folder)\n"
    "  GANs: AttGAN, BEGAN, CramerGAN, InfoMaxGAN, MMDGAN, RelGAN, S3GAN, SNGAN, STGAN (any case)"
)


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "gangen",
    "class": "GANGenSuite",
    "summary": (
        "GANGen-Detection (NPR, FreqNet): 9 GANs, 2k real + 2k fake each; test only (train on ProGAN "
        "elsewhere)."
    ),
}


class GANGenSuite(Suite):
    """The GANGen-Detection suite: nine GANs' test sets, evaluated only."""

    name = REGISTRATION["name"]
    version = 1
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = "eval"
    eval_convention = "gangen"  # NPR's and FreqNet's test.py: no_resize, no_crop (profile native)
    Options = EvalProfileOption

    def scan(self, root: Path) -> Iterator[Entry]:
        """The nine GANs' ``0_real``/``1_fake`` images (split ``test``) under ``root`` or its GANGen-Detection folder.

        Args:
            root: the collection's root.

        Yields:
            One entry per image; other folders go to ``self.ignored``.

        Raises:
            SuiteLayoutError: no image of any of the nine GANs.
        """
        root = Path(root)
        self.ignored = []
        containers = [root, *[d for d in subdirs(root) if norm(d.name) == "gangendetection"]]
        found: dict[str, Path] = {}
        for container in containers:
            for child in subdirs(container):
                key = norm(child.name)
                if key in GANS and key not in found:
                    found[key] = child
                elif child not in containers:
                    self.ignored.append(rel(root, child))
        entries = [
            Entry(path=path, generator=gan, split="test", label=label, family="real" if label == 0 else "gan")
            for gan in GANS
            if gan in found
            for path, label in labelled_images(root, found[gan], self.ignored)
        ]
        if not entries:
            raise unrecognised_root(root, "GANGen-Detection", ACCEPTED)
        yield from entries

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """The cross-suite training setups (GANGen is a test set only), evaluated on the nine GANs.

        Args:
            generators: the generators in the index (unused: the evaluated set is the nine GANs).

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        return cross_suite_protocols(GANS, eval_split="test")
