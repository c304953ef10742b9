"""AIGIBench (Li et al., "Is Artificial Intelligence Generated Image Detection a Solved Problem?", NeurIPS 2025
Datasets and Benchmarks, arXiv 2505.12335).

As unzipped from the authors' archives (Hugging Face ``HorizonTEL/AIGIBench`` or Baidu Netdisk, the links of
``github.com/HorizonTEL/AIGIBench``)::

    ROOT/train/{car,cat,chair,horse}/{0_real,1_fake}/*   ProGAN (ForenSynths), generators progan-<class>
    ROOT/train/sdv1.4/{0_real,1_fake}/*                  SD v1.4 (GenImage), generator sdv14
    ROOT/val/<same folders>/{0_real,1_fake}/*
    ROOT/test/<subset>/{0_real,1_fake}/*                  25 test subsets (ProGAN, R3GAN, ..., CommunityAI, SocialRF)

The two training settings of the paper are the suite's protocols: ``setting-1`` trains on the four ProGAN classes,
``setting-2`` on the four ProGAN classes and SD v1.4 (the union, as the authors merge it: its SD v1.4 images are
already drawn to match ProGAN's count). Both evaluate the test subsets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from detbench.data.suites import Entry, EvalProfileOption, Protocol, Suite
from detbench.datasets._layout import CLASSES_4, image_paths, label_folders, norm, rel, subdirs, unrecognised_root

SD_FOLDER = "sdv14"  # train/sdv1.4 normalised
SD_KEY = "sdv14"
PROGAN_KEYS = tuple(f"progan-{c}" for c in CLASSES_4)
TRAIN_KEYS = (*PROGAN_KEYS, SD_KEY)
# test subset folder (normalised by ``norm``) -> (generator key, family), in the order of the paper's groups
TEST_SUBSETS: dict[str, tuple[str, str]] = {
    # GAN-based noise-to-image generation
    "progan": ("progan", "gan"), "r3gan": ("r3gan", "gan"), "stylegan3": ("stylegan3", "gan"),
    "styleganxl": ("stylegan-xl", "gan"), "styleswim": ("styleswin", "gan"), "styleswin": ("styleswin", "gan"),
    "wfir": ("wfir", "gan"),
    # GANs for deepfake (face swapping and editing)
    "blendface": ("blendface", "gan"), "e4s": ("e4s", "gan"), "faceswap": ("faceswap", "gan"),
    "inswap": ("inswap", "gan"), "simswap": ("simswap", "gan"),
    # diffusion for text-to-image generation
    "dalle3": ("dalle-3", "commercial"), "flux1dev": ("flux1-dev", "diffusion"), "glide": ("glide", "diffusion"),
    "imagen3": ("imagen3", "commercial"), "midjourney": ("midjourney-v6", "commercial"),
    "midjourneyv6": ("midjourney-v6", "commercial"), "sd3": ("sd3", "diffusion"), "sdxl": ("sdxl", "diffusion"),
    # diffusion for personalised generation
    "blip": ("blip", "diffusion"), "infiniteid": ("infinite-id", "diffusion"), "instantid": ("instantid", "diffusion"),
    "ipadapter": ("ip-adapter", "diffusion"), "photomaker": ("photomaker", "diffusion"),
    # open platforms: images collected from AI-art communities and social media
    "communityai": ("communityai", "unknown"), "socialrf": ("socialrf", "unknown"),
}  # fmt: skip
ACCEPTED = (
    "  ROOT/{train,val}/{car,cat,chair,horse,sdv1.4}/{0_real,1_fake}/*\n"
    "  ROOT/test/<subset>/{0_real,1_fake}/*   e.g. test/ProGAN, test/FLUX1-dev, test/SocialRF"
)

REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "aigibench",
    "class": "AIGIBenchSuite",
    "summary": "AIGIBench (NeurIPS 2025): 25 test subsets; train on ProGAN (setting-1) or ProGAN + SD v1.4 (setting-2)",
    "paper": "Li et al., Is Artificial Intelligence Generated Image Detection a Solved Problem?, NeurIPS 2025 "
    "Datasets and Benchmarks, arXiv 2505.12335",
    "year": 2025,
    "download": "https://huggingface.co/datasets/HorizonTEL/AIGIBench (or the Baidu Netdisk link of "
    "github.com/HorizonTEL/AIGIBench)",
    "licence": "CC BY-NC-SA 4.0 (dataset card); the ProGAN and SD v1.4 training images keep ForenSynths' and "
    "GenImage's terms",
}


class AIGIBenchSuite(Suite):
    """The AIGIBench suite: ProGAN classes and SD v1.4 to train on, 25 test subsets."""

    name = REGISTRATION["name"]
    version = 1
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = "setting-2"  # the authors retrain every detector of their results table on Setting-II
    eval_convention = None
    Options = EvalProfileOption

    def scan(self, root: Path) -> Iterator[Entry]:
        """The training and validation folders and every test subset with label folders.

        Args:
            root: the folder holding ``train``, ``val`` and ``test`` (or any of them; a wrapper folder named
                AIGIBench is looked into).

        Yields:
            One entry per image: ``progan-<class>`` and ``sdv14`` in train/val, a subset's key in test.

        Raises:
            SuiteLayoutError: none of the accepted folders holds images.
        """
        root = Path(root)
        self.ignored, self.notes = [], []
        top = root
        if not _has_splits(root):
            top = next((d for d in subdirs(root) if norm(d.name) == "aigibench" and _has_splits(d)), root)
        entries: list[Entry] = []
        for child in subdirs(top):
            name = child.name.lower()
            if name in ("train", "val"):
                for source in subdirs(child):
                    key = _train_key(source.name)
                    if key is None:
                        self.ignored.append(rel(root, source))
                        continue
                    family = "diffusion" if key == SD_KEY else "gan"
                    entries.extend(self._labelled(root, source, key, name, family))
            elif name == "test":
                for subset in subdirs(child):
                    key, family = TEST_SUBSETS.get(norm(subset.name), (subset.name.lower(), "unknown"))
                    found = list(self._labelled(root, subset, key, "test", family))
                    if not found:
                        continue
                    if norm(subset.name) not in TEST_SUBSETS:
                        self.notes.append(f"{rel(root, subset)} is not one of the paper's 25 test subsets; "
                                          f"indexed as {key}")
                    entries.extend(found)
            elif norm(child.name) != "aigibench":
                self.ignored.append(rel(root, child))
        if not entries:
            raise unrecognised_root(root, "AIGIBench", ACCEPTED, several=True, depth=3,
                                    missing="train/<source>/{0_real,1_fake} or test/<subset>/{0_real,1_fake} images")
        yield from entries

    def _labelled(self, root: Path, folder: Path, generator: str, split: str, family: str) -> Iterator[Entry]:
        labels = label_folders(folder)
        self.ignored.extend(rel(root, d) for d in subdirs(folder) if d not in labels.values())
        if not labels:
            self.ignored.append(rel(root, folder))
        for label, label_dir in sorted(labels.items()):
            for path in image_paths(root, label_dir):
                yield Entry(path=path, generator=generator, split=split, label=label,
                            family="real" if label == 0 else family)

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """The paper's two training settings, each evaluated on the test subsets found.

        ``setting-1``: the ProGAN classes car, cat, chair, horse; ``setting-2``: those and SD v1.4. The training
        images are pooled (as the authors merge them); ``suite.balance=generator`` balances them per source, and
        ``train-on-progan-car,...,sdv14`` is the same mix built on any suite (balanced by default).

        Args:
            generators: the generators in the index.

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        evaluated = tuple(g for g in generators if g not in TRAIN_KEYS) or None
        settings = (
            ("setting-1", PROGAN_KEYS, "Setting-I: train on ProGAN car, cat, chair, horse"),
            ("setting-2", TRAIN_KEYS, "Setting-II: train on ProGAN car, cat, chair, horse and SD v1.4"),
        )
        out = {}
        for name, train, what in settings:
            missing = [g for g in train if g not in generators]
            note = f" (missing from this root: {', '.join(missing)})" if missing else ""
            out[name] = Protocol(name=name, train_generators=train, eval_generators=evaluated, eval_split="test",
                                 description=f"{what}{note}, pooled; evaluate the test subsets")
        return out


def _train_key(folder: str) -> str | None:
    """The generator of a train/val source folder: ``progan-<class>`` for the four ProGAN classes, ``sdv14``."""
    if folder.lower() in CLASSES_4:
        return f"progan-{folder.lower()}"
    return SD_KEY if norm(folder) in (SD_FOLDER, "sd14", "sdv14") else None


def _has_splits(folder: Path) -> bool:
    return any(d.name.lower() in ("train", "val", "test") for d in subdirs(folder))
