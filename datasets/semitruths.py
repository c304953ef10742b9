"""Semi-Truths (Pal, Kruk et al., NeurIPS 2024 Datasets and Benchmarks, arXiv 2411.07472): real photographs of six
segmentation data sets (ADE20K, CelebAHQ, CityScapes, HumanParsing, OpenImages, SUN RGBD) and localised edits of
them, by diffusion inpainting and by prompt-based editing, with several diffusion models.

As downloaded from Hugging Face (``semi-truths/Semi-Truths-Evalset``, the evaluation sample, and the full
``semi-truths/Semi-Truths``) and its tar archives extracted in place::

    ROOT/metadata.csv                                     every image, real and edited: path, label, change metrics
    ROOT/original/images/<dataset>/*                      the real images
    ROOT/{inpainting,p2p}/<dataset>/<model>/*             the edited (fake) images
    ROOT/metadata/**/*.csv                                the full release's metadata (inpainting and prompt-based)

The metadata is the list: ``image_path`` (relative to ROOT) and ``label`` (real/fake or 0/1) by default; the
editing model (``model``) is the generator. Every other column (``dataset``, ``method``, ``sem_magnitude``,
``post_edit_ratio``, ``area_ratio``, ``ssim``, ``lpips_score``, ``dreamsim``, ``sen_sim`` ... as the release
names them) is kept as an index column ``meta_<column>``, so ``--by meta_sem_magnitude`` or
``--by meta_area_ratio:5`` slices accuracy by the magnitude of change, as the paper's tables do. The real images
have no editing model: they are one shared pool, listed under each model. Column names are options (the release
has renamed them between versions); rows are checked as a file list's are (see the ``list`` suite).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from detbench.data.suites import Entry, Protocol, SuiteLayoutError, top_levels
from detbench.datasets._layout import cross_suite_protocols, slug
from detbench.datasets.filelist import FileListOptions, FileListSuite

METADATA = ("metadata.csv", "metadata")  # the evaluation sample's list, the full release's folder of lists
REAL_POOL = "real"  # the generator the real rows carry before they are listed under each model


@dataclass(frozen=True)
class SemiTruthsOptions(FileListOptions):
    """Semi-Truths' metadata columns (the file-list options, with the release's column names as defaults)."""

    file: str = ""  # empty: ROOT/metadata.csv, else every CSV under ROOT/metadata/
    path_column: str = "image_path"
    generator_column: str = "model"
    generator_default: str = REAL_POOL
    split_column: str = "split"  # the release has none: every image is test
    split_default: str = "test"


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "semitruths",
    "class": "SemiTruthsSuite",
    "summary": "Semi-Truths (NeurIPS 2024): localised diffusion edits with magnitude-of-change metadata; test only.",
    "aliases": ["semi-truths"],
    "paper": "Pal, Kruk et al., Semi-Truths: A Large-Scale Dataset of AI-Augmented Images for Evaluating Robustness "
    "of AI-Generated Image Detectors, NeurIPS 2024 Datasets and Benchmarks, arXiv 2411.07472",
    "year": 2024,
    "download": "https://huggingface.co/datasets/semi-truths/Semi-Truths-Evalset (evaluation sample) or "
    "https://huggingface.co/datasets/semi-truths/Semi-Truths (full)",
    "licence": "CC (Creative Commons, as the dataset card states); the source images keep their data sets' terms",
}


class SemiTruthsSuite(FileListSuite):
    """The Semi-Truths suite: edited images per editing model against the shared pool of real originals."""

    name = REGISTRATION["name"]
    version = 1
    default_protocol = "eval"
    eval_convention = None
    Options = SemiTruthsOptions

    def scan(self, root: Path) -> Iterator[Entry]:
        """The metadata's rows: each edited image under its model, each real image under every model.

        Args:
            root: the folder holding ``metadata.csv`` (or ``metadata/``) and the image folders.

        Yields:
            One entry per edited image and one per real image and model; the metadata's other columns in
            ``extra`` (index columns ``meta_<column>``).

        Raises:
            SuiteLayoutError: no metadata, a missing path or label column, no usable row, or no edited image.
        """
        root = Path(root)
        lists = self._lists(root)
        entries: list[Entry] = []
        ignored: list[str] = []
        notes: list[str] = []
        for path in lists:
            self.options = replace(self.options, file=str(path.relative_to(root)))
            try:
                entries.extend(super().scan(root))
            finally:
                self.options = replace(self.options, file=self._file)
            ignored += self.ignored
            notes += self.notes
        self.ignored, self.notes = ignored, notes
        fakes = [e for e in entries if e.label == 1]
        models = sorted({e.generator for e in fakes if e.generator != REAL_POOL})
        if not models:
            raise SuiteLayoutError(
                f"Semi-Truths under {root}: no edited image with a {self.options.generator_column!r} (editing "
                f"model) among {len(entries)} usable rows of {', '.join(p.name for p in lists)}; name the column "
                "with --set generator_column=..."
            )
        unmodelled = sum(e.generator == REAL_POOL for e in fakes)
        if unmodelled:
            self.notes.append(f"{unmodelled} edited images name no {self.options.generator_column!r}: skipped")
        out = [replace(e, generator=slug(e.generator), family="diffusion") for e in fakes if e.generator != REAL_POOL]
        reals = [e for e in entries if e.label == 0]
        out += [replace(e, generator=slug(m), family="real") for m in models for e in reals]
        self.keep_splits(out)
        yield from out

    def _lists(self, root: Path) -> list[Path]:
        self._file = self.options.file
        if self.options.file:
            return [self._list_file(root)]
        single, folder = root / METADATA[0], root / METADATA[1]
        if single.is_file():
            return [single]
        found = sorted(p for p in folder.rglob("*.csv") if p.is_file()) if folder.is_dir() else []
        if found:
            return found
        raise SuiteLayoutError(
            f"{root} does not look like Semi-Truths: no metadata.csv (the evaluation sample) and no metadata/*.csv "
            f"(the full release); pass --set file=PATH to name the list. Found:\n{top_levels(root, depth=2)}"
        )

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """Test only: the cross-suite training setups, evaluated on every editing model.

        Args:
            generators: the editing models in the index.

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        return cross_suite_protocols(None, eval_split="test")
