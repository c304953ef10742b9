"""AI-GenBench (Pellegrini et al., "AI-GenBench: A New Ongoing Benchmark for AI-Generated Image Detection", IJCNN
2025 Verimedia workshop, arXiv 2504.20865): 36 generators from 2017 to 2024 ordered by release date, with real
images from LAION, COCO, ImageNet and RAISE.

Its authors' scripts (``dataset_creation/simple_dataset_generation.py``) build the dataset and save it with Hugging
Face ``datasets``' ``DatasetDict.save_to_disk``::

    ROOT/[ai_gen_bench_v1.0.0/]dataset_dict.json    {"splits": ["train", "validation"]}
    ROOT/[ai_gen_bench_v1.0.0/]train/data-00000-of-000NN.arrow ...   Arrow IPC streams, one row per image
    ROOT/[ai_gen_bench_v1.0.0/]train/dataset_info.json, state.json    the features; the shards, in order
    ROOT/[ai_gen_bench_v1.0.0/]validation/...

The shards read are those each split's ``state.json`` lists (what ``datasets.load_from_disk`` reads), with pyarrow
alone (no ``datasets`` package), memory-mapped and in record batches; a root holding one split's folder (its
``state.json``) is read as that split. Each row holds ``image`` (the ``Image`` feature: bytes and path), ``label``
(``ClassLabel`` real, fake), ``generator`` (AI-GenBench's name, empty for a real image), ``file_id``,
``origin_dataset`` (kept as ``meta_origin_dataset``) and more. A generator's key is its name in lower case with every
run of other characters than letters and digits written ``-`` (``Stable Diffusion XL 1.0`` ->
``stable-diffusion-xl-1-0``).

Splits: ``train`` trains; ``validation`` is the split AI-GenBench's code evaluates (its test stage reads it when
the dataset has no test split, as released), so it is read as ``test`` then.

Generators: ``generator_set=benchmark`` (the default) keeps the generators of AI-GenBench's timeline, as its loader
does: those the shipped release-date table dates for this suite (``detbench/data/release_dates.csv``, taken from
the benchmark's ``benchmark_generators.py``); the images of other generators in the data are skipped with a note.
``generator_set=all`` keeps every generator.

Real images carry no generator. Each is listed under one generator of its split: the reals, in the order of a
seeded hash (``real_pairing_seed``) of their ``file_id``, are handed out in generator order, each generator's
share proportional to its generated images (largest remainders first, ties by name): every generator is tested
(and trains) on as many reals as fakes, near enough, and no real image is listed twice, as AI-GenBench pairs reals
with each window's fakes without repeating one.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from detbench.config import ConfigError
from detbench.data.images import scrub
from detbench.data.labels import FAKE_VALUES, REAL_VALUES, LabelValues
from detbench.data.release_dates import load_release_dates
from detbench.data.shards import Locator, ShardError, check_image_column, iter_rows, open_shard
from detbench.data.suites import Entry, EvalProfileOption, Protocol, Suite, SuiteLayoutError, seeded_rank
from detbench.datasets._layout import did_you_mean, split_value, unrecognised_root
from detbench.datasets.hfparquet import SHOWN, cell_text, label_map

DATASET_DICT = "dataset_dict.json"
STATE = "state.json"
GENERATOR_SETS = ("benchmark", "all")
ID_COLUMN = "file_id"  # orders the real images for pairing (the row's locator where the column is absent)
LAYOUT = """  ROOT/[ai_gen_bench_v1.0.0/]dataset_dict.json
  ROOT/[ai_gen_bench_v1.0.0/]train/{data-*.arrow, dataset_info.json, state.json}
  ROOT/[ai_gen_bench_v1.0.0/]validation/{data-*.arrow, dataset_info.json, state.json}
  (or one split's folder: ROOT/{data-*.arrow, state.json})"""


@dataclass(frozen=True)
class AIGenBenchOptions(EvalProfileOption):
    """AI-GenBench's columns, label values, the generators kept and the seed pairing real images with generators."""

    image_column: str = "image"
    label_column: str = "label"
    generator_column: str = "generator"
    real_values: tuple[str, ...] = REAL_VALUES
    fake_values: tuple[str, ...] = FAKE_VALUES
    keep_columns: tuple[str, ...] = ("origin_dataset",)  # other (small) columns kept in the index as meta_<name>
    generator_set: str = "benchmark"  # benchmark: the generators of AI-GenBench's timeline; all: every one
    real_pairing_seed: int = 1337  # orders the real images handed out to the generators

    def __post_init__(self) -> None:
        super().__post_init__()
        LabelValues(self.real_values, self.fake_values)
        if self.generator_set not in GENERATOR_SETS:
            raise ConfigError(f"generator_set must be one of {', '.join(GENERATOR_SETS)}; got {self.generator_set!r}")


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "aigenbench",
    "class": "AIGenBenchSuite",
    "summary": "AI-GenBench (IJCNN 2025): 36 generators 2017-2024 in a save_to_disk Arrow dataset; chrono windows.",
    "aliases": ["ai-genbench"],
    "paper": "Pellegrini et al., AI-GenBench: A New Ongoing Benchmark for AI-Generated Image Detection, "
    "IJCNN 2025 Verimedia workshop, arXiv 2504.20865",
    "year": 2025,
    "download": "built with github.com/srish01/AI-GenBench dataset_creation (fake part: "
    "huggingface.co/datasets/lrzpellegrini/AI-GenBench-fake_part; reals from LAION, COCO, ImageNet, RAISE)",
    "licence": "code BSD-3-Clause; images under their source datasets' terms (dataset_creation/README.md)",
}


def generator_key(name: str) -> str:
    """AI-GenBench's generator name as an index key: lower case, other characters than letters and digits ``-``.

    Args:
        name: the name in the ``generator`` column (``Diffusion GAN (ProjectedGAN)``).

    Returns:
        The key (``diffusion-gan-projectedgan``).
    """
    return re.sub(r"[^0-9a-z]+", "-", name.lower()).strip("-")


class AIGenBenchSuite(Suite):
    """AI-GenBench's saved dataset: generated images under their generator, each real image under one generator."""

    name = REGISTRATION["name"]
    version = 1
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = "train-all"
    eval_convention = None
    headline_metrics = ("auc", "acc")  # the benchmark ranks by AUC
    Options = AIGenBenchOptions

    def scan(self, root: Path) -> Iterator[Entry]:
        """The rows of every shard each split's ``state.json`` lists.

        Args:
            root: the saved dataset's folder (or a folder holding it, or one split's folder).

        Yields:
            One entry per generated image of a kept generator and one per real image, its path a shard locator
            (``<split>/data-00000-of-000NN.arrow#image:<row>``).

        Raises:
            SuiteLayoutError: no saved dataset under ``root``, a split without its listed shards, a missing column,
                or no usable row.
        """
        root = Path(root)
        self.ignored, self.notes = [], []
        splits = _saved_splits(root)
        has_test = any(split_value(name) == "test" for name, _ in splits)
        kept = self._kept_generators()
        skipped: dict[str, list[str]] = {}
        entries: list[Entry] = []
        for name, folder in splits:
            split = "test" if name.lower() == "validation" and not has_test else split_value(name)
            fakes: list[Entry] = []
            reals: list[tuple[Entry, str]] = []
            for shard in _listed_shards(root, folder, self.ignored):
                try:
                    self._scan_shard(root, shard, split, kept, fakes, reals, skipped)
                except (ShardError, OSError) as exc:  # a damaged shard is reported and skipped, not fatal
                    self.notes.append(f"shard {shard.relative_to(root).as_posix()} skipped: {scrub(str(exc))}")
            entries.extend(fakes)
            entries.extend(self._paired(reals, Counter(e.generator for e in fakes), f"{name} split"))
        for why, rows in skipped.items():
            self.notes.append(f"{len(rows)} rows skipped: {why}: " + ", ".join(rows[:SHOWN])
                              + (f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""))
        if not entries:
            raise SuiteLayoutError(f"no usable rows in the AI-GenBench dataset under {root}. {' '.join(self.notes)}")
        yield from entries

    def _kept_generators(self) -> set[str] | None:
        """The generator keys of AI-GenBench's timeline (None: every generator is kept)."""
        if self.options.generator_set == "all":
            return None
        return {g for g, suite, _ in load_release_dates().rows if suite == self.name}

    def _scan_shard(
        self,
        root: Path,
        shard: Path,
        split: str,
        kept: set[str] | None,
        fakes: list[Entry],
        reals: list[tuple[Entry, str]],
        skipped: dict[str, list[str]],
    ) -> None:
        o = self.options
        rel = shard.relative_to(root).as_posix()
        shard_file = open_shard(shard)  # ShardError for a file that is not Arrow IPC: the caller skips it
        names = shard_file.schema_arrow.names
        try:
            check_image_column(shard_file, o.image_column, rel)
        except ShardError as exc:
            raise SuiteLayoutError(f"{exc}. Name the image column with --set image_column=NAME") from None
        absent = [c for c in (o.label_column, o.generator_column, *o.keep_columns) if c not in names]
        if absent:
            raise SuiteLayoutError(
                f"{rel}: no column {', '.join(map(repr, absent))} (columns: {', '.join(names)})."
                f"{did_you_mean(absent[0], names)} Name columns with --set label_column=... (or generator_column, "
                "keep_columns)"
            )
        labels, why_skipped = label_map(shard_file, o, rel)
        columns = list(dict.fromkeys([o.label_column, o.generator_column, *o.keep_columns]
                                     + ([ID_COLUMN] if ID_COLUMN in names else [])))
        try:
            batches = list(iter_rows(shard, columns))  # the small columns only
        except (OSError, ValueError) as exc:
            raise ShardError(f"{type(exc).__name__}: {exc}") from exc
        for start, values in batches:
            for i, cell in enumerate(values[o.label_column]):
                row = start + i
                label = labels(cell)
                if label is None:
                    skipped.setdefault(why_skipped, []).append(f"{rel} row {row} ({cell!r})")
                    continue
                name = cell_text(values[o.generator_column][i])
                entry = Entry(path=str(Locator(rel, o.image_column, row)), generator=generator_key(name), split=split,
                              label=label, family="real" if label == 0 else "unknown",
                              extra={c: values[c][i] for c in o.keep_columns})
                if label == 0:
                    reals.append((entry, cell_text(values[ID_COLUMN][i]) if ID_COLUMN in values else entry.path))
                elif not entry.generator:
                    why = f"generated images with no {o.generator_column!r}"
                    skipped.setdefault(why, []).append(f"{rel} row {row}")
                elif kept is not None and entry.generator not in kept:
                    skipped.setdefault("generators outside AI-GenBench's timeline (--set generator_set=all keeps "
                                       "them)", []).append(f"{rel} row {row} ({name})")
                else:
                    fakes.append(entry)

    def _paired(self, reals: list[tuple[Entry, str]], fakes: Counter, where: str) -> list[Entry]:
        """The real images, each under one generator: shares proportional to ``fakes`` (see the module's doc)."""
        if reals and not fakes:
            self.notes.append(f"{len(reals)} real images of the {where} skipped: it holds no generated image to pair "
                              "them with")
            return []
        total, n = sum(fakes.values()), len(reals)
        quota = {g: n * count // total for g, count in fakes.items()}
        for g in sorted(fakes, key=lambda g: (-(n * fakes[g] % total), g))[: n - sum(quota.values())]:
            quota[g] += 1
        seed = self.options.real_pairing_seed
        ordered = sorted(reals, key=lambda r: (seeded_rank(seed, r[1]), r[1], r[0].path))
        out, start = [], 0
        for g in sorted(fakes):
            out.extend(replace(entry, generator=g) for entry, _ in ordered[start:start + quota[g]])
            start += quota[g]
        return out

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """``train-all``: AI-GenBench's training on the whole dataset (every generator's train split, pooled),
        evaluated on every generator's test split. Its sliding windows are ``chrono:`` protocols (README).

        Args:
            generators: the generators in the index.

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        return {
            "train-all": Protocol(
                name="train-all",
                train_generators=tuple(sorted(generators)),
                eval_generators=None,
                train_split="train",
                eval_split="test",
                description="train on every generator's train split (pooled, AI-GenBench's full training), "
                "evaluate every generator on its test split (the released validation split)",
            )
        }


def _saved_splits(root: Path) -> list[tuple[str, Path]]:
    """(split name, folder) of the saved dataset under ``root``: a ``DatasetDict`` (its ``dataset_dict.json``, at
    the root or in one folder below it) or a single split's folder (its ``state.json``).
    """
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for top in candidates:
        if (top / DATASET_DICT).is_file():
            try:
                names = json.loads((top / DATASET_DICT).read_text()).get("splits")
            except (OSError, ValueError, AttributeError) as exc:
                raise SuiteLayoutError(f"{top / DATASET_DICT} is not a dataset_dict.json ({exc})") from None
            if not isinstance(names, list) or not names or not all(map(_plain_name, names)):
                raise SuiteLayoutError(f"{top / DATASET_DICT} does not list its splits as folder names (expected "
                                       f"{{\"splits\": [\"train\", ...]}}; got {names!r})")
            return [(name, top / name) for name in names]
    if (root / STATE).is_file():
        return [(str(_state(root).get("_split") or root.name), root)]
    raise unrecognised_root(root, "AI-GenBench (a dataset saved with save_to_disk)", LAYOUT, several=True,
                            missing=f"{DATASET_DICT} or {STATE}")


def _state(folder: Path) -> dict:
    try:
        state = json.loads((folder / STATE).read_text())
    except (OSError, ValueError) as exc:
        raise SuiteLayoutError(f"{folder / STATE}: not readable as the state.json save_to_disk writes ({exc})"
                               ) from None
    if not isinstance(state, dict):
        raise SuiteLayoutError(f"{folder / STATE}: not the state.json save_to_disk writes (not an object)")
    return state


def _listed_shards(root: Path, folder: Path, ignored: list[str]) -> list[Path]:
    """The shards ``folder/state.json`` lists, in order; other ``.arrow`` files there go to ``ignored``."""
    where = folder.relative_to(root).as_posix()
    files = _state(folder).get("_data_files")
    if not isinstance(files, list) or not files:
        raise SuiteLayoutError(f"{folder / STATE} lists no shards (_data_files)")
    names = [f.get("filename") if isinstance(f, dict) else None for f in files]
    if not all(map(_plain_name, names)):
        raise SuiteLayoutError(f"{folder / STATE}: each _data_files entry must name a file in that folder; got "
                               f"{names[:SHOWN]!r}")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise SuiteLayoutError(f"split folder {where}: {len(missing)} shards its state.json lists are missing: "
                               + ", ".join(missing[:SHOWN]))
    ignored.extend(sorted(p.relative_to(root).as_posix() for p in folder.glob("*.arrow") if p.name not in names))
    return [folder / n for n in names]


def _plain_name(name: object) -> bool:
    """Whether ``name`` is a file or folder name inside its folder (no separator, not ``.`` or ``..``)."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name

