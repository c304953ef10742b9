"""Frozen-backbone features with a content-addressed cache.

The cache key hashes everything that changes a feature: the backbone identity (spec, weights sha256,
preprocessing, library versions), the embedding, the perturbation, the numeric precision of the forward pass
(:mod:`detbench.models.precision`), and this module's format version.
Rows are keyed by image content id, so the same bytes under another path or suite hit the cache.
Each key holds append-only shards (``*.feats.npy`` + ``*.ids.npy``, read memory-mapped); a shard counts
only once its ids file exists, and both are written atomically, so a killed extraction leaves nothing a
later run trusts and concurrent writers at worst store a row twice with identical values.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detbench import distributed as dist
from detbench.errors import DataError, warn
from detbench.paths import home_subdir
from detbench.store import atomic_path, content_hash, read_json, sweep_stale_tmp, write_json_atomic

FEATURE_FORMAT_VERSION = 1
SHARD_ROWS = 4096


def feature_key(
    backbone: Any, embedding: str, perturbation: dict[str, Any] | None, precision: str = "fp32"
) -> dict[str, Any]:
    """The cache key of one kind of feature.

    Args:
        backbone: the loaded :class:`~detbench.models.backbones.Backbone` (its identity enters the key).
        embedding: the embedding's name.
        perturbation: the perturbation's identity, or None for clean images.
        precision: the resolved precision of the forward pass (fp32, bf16 or fp16).

    Returns:
        The key (format version, backbone identity, embedding, perturbation, precision).
    """
    return {
        "format": FEATURE_FORMAT_VERSION,
        "backbone": backbone.identity(),
        "embedding": embedding,
        "perturbation": perturbation,
        "precision": precision,
    }


def _read_key(path: Path) -> Any:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


class FeatureStore:
    """The shards of one cache key."""

    def __init__(self, directory: Path, key: dict[str, Any]) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        sweep_stale_tmp(directory)  # shard temp files of killed extractions
        self._sweep_orphans()
        stored = _read_key(directory / "key.json")
        if stored is None:  # new, or damaged: the folder name is the key's hash, so the shards are this key's
            write_json_atomic(directory / "key.json", key)
        elif stored != key:
            raise DataError(f"feature cache {directory} holds another key (a hash collision or a damaged key.json); "
                            "delete that folder to continue")

    def _sweep_orphans(self, min_age_s: float = 600.0) -> None:
        """Delete feature files whose ids file never came (a kill between the two writes). A writer writes
        the ids right after the features, so an orphan older than ``min_age_s`` belongs to no live writer.
        """
        now = time.time()
        for feats in self.directory.glob("*.feats.npy"):
            ids = feats.with_name(feats.name.replace(".feats.npy", ".ids.npy"))
            try:
                if not ids.exists() and now - feats.stat().st_mtime > min_age_s:
                    feats.unlink()
            except OSError:
                continue

    def lookup(
        self, ids: list[str], out: np.ndarray | None = None, want: Sequence[int] | None = None
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """Features for the cached ids (rows in ``ids`` order; repeated ids all filled) and a found mask.

        Args:
            ids: image content ids.
            out: a ``[len(ids), D]`` float32 array to fill in place; None allocates one (NaN rows) on the first hit.
            want: the positions of ``ids`` to look up; None: all.

        Returns:
            The features (``out``; None when nothing was found and no ``out`` was given) and a boolean mask of
            the positions found.
        """
        found = np.zeros(len(ids), dtype=bool)
        positions: dict[str, list[int]] = {}
        for i in range(len(ids)) if want is None else want:
            positions.setdefault(ids[i], []).append(int(i))
        if not positions:
            return out, found
        for ids_file in sorted(self.directory.glob("*.ids.npy")):
            shard = self._open_shard(ids_file)
            if shard is None:
                continue
            shard_ids, feats = shard
            rows, targets = [], []
            for row, image_id in enumerate(shard_ids.tolist()):
                for target in positions.get(image_id, ()):
                    rows.append(row)
                    targets.append(target)
            if not rows:
                continue
            if out is None:
                out = np.full((len(ids), feats.shape[1]), np.nan, dtype=np.float32)
            out[targets] = feats[rows]
            found[targets] = True
        return out, found

    def _open_shard(self, ids_file: Path) -> tuple[np.ndarray, np.ndarray] | None:
        """A shard's ids and memory-mapped features, or None after deleting a damaged shard (truncated or
        mismatched files: a disk fault; shards are written atomically) with a warning: its rows are computed
        again.
        """
        feats_file = ids_file.with_name(ids_file.name.replace(".ids.npy", ".feats.npy"))
        try:
            shard_ids = np.load(ids_file, allow_pickle=False)
            feats = np.load(feats_file, mmap_mode="r", allow_pickle=False)
            if shard_ids.ndim != 1 or feats.ndim != 2 or len(feats) != len(shard_ids):
                raise ValueError(f"{len(shard_ids)} ids for features of shape {feats.shape}")
        except FileNotFoundError:
            if not ids_file.exists():  # deleted meanwhile by another process that found it damaged
                return None
            problem = f"{feats_file.name} is missing"
        except (OSError, ValueError, EOFError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            return shard_ids, feats
        for path in (ids_file, feats_file):
            path.unlink(missing_ok=True)
        warn(f"feature cache shard {ids_file.name.removesuffix('.ids.npy')} in {self.directory} was damaged "
             f"({problem}); it was deleted and its features are computed again")
        return None

    def append(self, ids: list[str], feats: np.ndarray) -> None:
        """Store features as a new shard (features first, then ids, each written atomically).

        Args:
            ids: the image content ids of the rows (at most 64 characters each).
            feats: ``[len(ids), D]`` features (stored as float32).
        """
        name = f"shard-{uuid.uuid4().hex[:12]}"
        with atomic_path(self.directory / f"{name}.feats.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(feats, dtype=np.float32), allow_pickle=False)
        with atomic_path(self.directory / f"{name}.ids.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.array(ids, dtype="U64"), allow_pickle=False)


class FeatureCache:
    """``extract`` returns features for index rows, computing and storing only the missing ones."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else home_subdir("features")

    def store(self, key: dict[str, Any]) -> FeatureStore:
        """The shards of one cache key (a folder named by the key's hash).

        Args:
            key: a key from :func:`feature_key`.

        Returns:
            The :class:`FeatureStore`.

        Raises:
            DataError: the folder holds another key.
        """
        return FeatureStore(self.root / content_hash(key)[:24], key)

    def extract(
        self,
        backbone: Any,
        suite_root: Path,
        rows: Any,
        *,
        embedding: str | None = None,
        perturbation: Any | None = None,
        batch_size: int = 64,
        workers: int | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        advance: Callable[[int], None] | None = None,
    ) -> tuple[np.ndarray, dict[int, str], dict[str, int]]:
        """Features for index rows, computing and storing only the missing ones (sharded across ranks under torchrun).

        Args:
            backbone: the loaded :class:`~detbench.models.backbones.Backbone`.
            suite_root: the root the rows' paths are relative to.
            rows: index rows (``image_id``, ``path``; ``bytes`` and ``mtime_ns`` are checked when present).
            embedding: the embedding's name; None: the backbone's default.
            perturbation: a perturbation applied before preprocessing (part of the key), or None.
            batch_size: images per forward pass.
            workers: decode processes; None: :func:`~detbench.data.loading.default_workers`.
            device: a torch device string.
            precision: a resolved precision (fp32, bf16, fp16).
            advance: called with the number of rows done, for progress.

        Returns:
            Features ``[len(rows), D]`` (NaN rows for images that failed to load), failure reasons by row position,
            and the counts ``cached``, ``computed`` and ``failed``.
        """
        import torch

        from detbench.data.loading import HalveOnOom, ImageRowsDataset, iterate_batches, tune_cpu_allocator
        from detbench.models.precision import autocast

        embedding = embedding or backbone.default_embedding
        perturbation_id = perturbation.identity() if perturbation is not None else None
        key = feature_key(backbone, embedding, perturbation_id, precision)
        store = self.store(key)
        ids = [str(i) for i in rows["image_id"]]
        out, found = store.lookup(ids)
        if out is None:
            out = np.full((len(ids), backbone.embed_dims[embedding]), np.nan, dtype=np.float32)
        if advance:
            advance(int(found.sum()))
        missing_all = np.flatnonzero(~found)
        if dist.sharded():  # rank 0's view of what is missing binds every rank (another job may write meanwhile)
            missing_all = dist.broadcast(missing_all)
        first_of: dict[str, int] = {}
        for i in missing_all:
            first_of.setdefault(ids[i], int(i))
        missing = np.array(sorted(first_of.values()), dtype=np.int64)
        todo = missing[dist.shard_slice(len(missing), align=batch_size)]  # under torchrun, this rank's batches
        have = found.copy()
        failures: dict[int, str] = {}
        if len(todo):
            dataset = ImageRowsDataset(
                suite_root,
                [rows["path"].iloc[i] for i in todo],
                backbone.preprocess.eval_transform(),
                image_ids=[ids[i] for i in todo],
                perturb=perturbation,
                stats=(
                    [(rows["bytes"].iloc[i], rows["mtime_ns"].iloc[i]) for i in todo]
                    if {"bytes", "mtime_ns"} <= set(rows.columns)
                    else None
                ),
            )
            cuda = device.startswith("cuda")
            if not cuda:
                tune_cpu_allocator()
            model = backbone.model.to(device).eval()
            # CNNs run faster in NHWC: on GPUs, and with oneDNN on CPUs (EfficientNet-Lite0, 2 cores: 2x).
            channels_last = backbone.patch_size is None
            if channels_last:
                model.to(memory_format=torch.channels_last)
            embed = HalveOnOom(lambda x: backbone.embed(x, embedding))
            pending_ids: list[str] = []
            pending: list[np.ndarray] = []
            with torch.inference_mode(), autocast(precision, device):
                for batch in iterate_batches(dataset, batch_size=batch_size, workers=workers, pin_memory=cuda):
                    for local, reason in batch.failures:
                        failures[int(todo[local])] = reason
                    if batch.x is not None:
                        x = batch.x.to(device, non_blocking=True)
                        if channels_last:
                            x = x.contiguous(memory_format=torch.channels_last)
                        feats = embed(x).float().cpu().numpy()
                        targets = todo[batch.indices]
                        out[targets] = feats
                        have[targets] = True
                        pending_ids.extend(ids[t] for t in targets)
                        pending.append(feats)
                        if len(pending_ids) >= SHARD_ROWS:
                            store.append(pending_ids, np.concatenate(pending))
                            pending_ids, pending = [], []
                    if advance:
                        advance(len(batch.indices) + len(batch.failures))
            if pending_ids:
                store.append(pending_ids, np.concatenate(pending))
        if dist.sharded():  # the all-gather returns once every rank has written its shards: read the others' rows
            failures = {k: v for part in dist.all_gather(failures) for k, v in part.items()}
            failed = {ids[i] for i in failures}
            want = [int(i) for i in np.flatnonzero(~have) if ids[i] not in failed]
            _, got = store.lookup(ids, out=out, want=want)
            if want and not got[want].all():
                raise RuntimeError(f"feature cache {store.directory} lost rows computed by other ranks (deleted?)")
        for i in missing_all:  # repeated ids (a shared real pool) take their first occurrence's result
            source = first_of[ids[i]]
            if source != i:
                out[i] = out[source]
                if source in failures:
                    failures[int(i)] = failures[source]
        counts = {
            "cached": int(len(ids) - len(missing_all)),
            "computed": int(len(missing_all) - len(failures)),
            "failed": len(failures),
        }
        return out, failures, counts
