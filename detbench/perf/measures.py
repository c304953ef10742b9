"""The measurements of ``detbench bench``: one method of :class:`Bench` per measure, each recording its rows.

What each measure times is listed in :mod:`detbench.perf.bench`. Timings are medians of ``repeats`` runs after a
warm-up; the scoring loops and the ``rss`` run go through fresh processes (:mod:`detbench.perf.process`).
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detbench.models.precision import autocast, resolve_precision
from detbench.paths import temporary_home
from detbench.perf.inputs import write_images, write_suite
from detbench.perf.process import (
    ChildProcess,
    peak_rss_mb,
    reference_seconds,
    score_seconds,
    sync_device,
    whole_run,
)

if TYPE_CHECKING:
    from detbench.perf.options import Options


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class Bench:
    """Runs the measurements of :class:`~detbench.perf.bench.Options` and collects their rows."""

    def __init__(self, opts: Options, work: Path) -> None:
        self.opts, self.work = opts, work
        self.rows: list[dict[str, Any]] = []
        self._backbone: Any = None
        self._images: tuple[Path, list[str]] | None = None

    def row(self, what: str, images: int, seconds: float, **extra: Any) -> dict[str, Any]:
        """Record one measurement.

        Args:
            what: the measure (a name from :data:`detbench.perf.bench.ALL`).
            images: images (or rows, scores, files) processed per timed run.
            seconds: the median time of a run.
            **extra: columns to set or override (``note``, ``batch``, ``workers`` ...).

        Returns:
            The row (also appended to :attr:`rows`), columns as :data:`detbench.perf.bench.COLUMNS`.
        """
        own, child = peak_rss_mb()
        row = {
            "what": what,
            "backbone": self.opts.backbone,
            "device": self.opts.device,
            "batch": self.opts.batch_size,
            "workers": self._workers(),
            "images": images,
            "seconds": round(seconds, 4),
            "images_per_s": round(images / seconds, 1) if seconds > 0 else None,
            "ratio": None,
            "peak_rss_mb": own,
            "peak_child_rss_mb": child,
            "note": "",
            **extra,
        }
        self.rows.append(row)
        return row

    def _workers(self) -> int:
        from detbench.data.loading import default_workers

        gpu = self.opts.device.startswith("cuda")
        return default_workers(gpu) if self.opts.workers is None else self.opts.workers

    @property
    def backbone(self) -> Any:
        """The backbone of the options, loaded on first use.

        Returns:
            The :class:`~detbench.models.backbones.Backbone` at the options' crop.
        """
        if self._backbone is None:
            from detbench.models.backbones import load_backbone

            self._backbone = load_backbone(self.opts.backbone, crop=self.opts.crop)
        return self._backbone

    @property
    def images(self) -> tuple[Path, list[str]]:
        """The generated benchmark images, written on first use.

        Returns:
            ``(folder, file names)``.
        """
        if self._images is None:
            folder = self.work / "images"
            self._images = folder, write_images(folder, self.opts.images, self.opts.size)
        return self._images

    def run(self, progress: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
        """Run the measures of ``opts.only`` in order.

        Args:
            progress: called with each measure's name before it runs.

        Returns:
            Every row recorded.
        """
        for what in self.opts.only:
            progress(what)
            getattr(self, f"bench_{what}")()
        return self.rows

    def bench_decode(self) -> None:
        """Measure load + preprocess through the DataLoader, no model."""
        from detbench.data.loading import ImageRowsDataset, iterate_batches

        folder, names = self.images
        dataset = ImageRowsDataset(folder, names, self.backbone.preprocess.eval_transform())

        def decode() -> None:
            for _ in iterate_batches(dataset, batch_size=self.opts.batch_size, workers=self.opts.workers):
                pass

        decode()
        self.row("decode", len(names), _median_seconds(decode, self.opts.repeats), note="load + preprocess")

    def bench_forward(self) -> None:
        """Measure the backbone's forward pass on ready tensors (inference mode, the options' precision)."""
        import torch

        from detbench.data.loading import HalveOnOom, tune_cpu_allocator

        device, bs = self.opts.device, self.opts.batch_size
        if not device.startswith("cuda"):  # as FeatureCache.extract does
            tune_cpu_allocator()
        crop = self.backbone.preprocess.crop
        model = self.backbone.model.to(device).eval()
        x = torch.randn(bs, 3, crop, crop, device=device)
        channels_last = self.backbone.patch_size is None
        if channels_last:  # as FeatureCache.extract does
            model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        embed = HalveOnOom(self.backbone.embed)
        precision = resolve_precision(self.opts.precision, device)
        n_batches = max(1, self.opts.images // bs)

        def forward() -> None:
            with torch.inference_mode(), autocast(precision, device):
                for _ in range(n_batches):
                    embed(x)
            sync_device(device)

        forward()
        note = f"precision {precision}" + self._weights_note()
        self.row("forward", n_batches * bs, _median_seconds(forward, self.opts.repeats), note=note)

    def bench_score(self) -> None:
        """Measure ``FeatureCache.extract`` with a fresh cache (and the reference loop beside it when requested)."""
        self._score_and_reference(score=True, reference="reference" in self.opts.only)

    def bench_reference(self) -> None:
        """Measure the reference loop (done by :meth:`bench_score` when ``score`` is requested too)."""
        if "score" not in self.opts.only:
            self._score_and_reference(score=False, reference=True)

    def _score_and_reference(self, score: bool, reference: bool) -> None:
        """Each loop runs in its own fresh process, as a script of its kind would (detbench's tunes the CPU
        allocator, which would otherwise speed up a reference loop run in the same process).
        """
        folder, names = self.images
        o = self.opts
        calls = []
        if score:
            calls.append(
                (score_seconds, (o.backbone, o.crop, str(folder), o.batch_size, o.workers, o.device,
                                  resolve_precision(o.precision, o.device)))
            )
        if reference:
            calls.append((reference_seconds, (o.backbone, o.crop, str(folder), o.batch_size, o.device)))
        times: list[list[float]] = [[] for _ in calls]
        with contextlib.ExitStack() as stack:
            children = [stack.enter_context(ChildProcess()) for _ in calls]
            warm = names[: 2 * o.batch_size]
            for child, (fn, args) in zip(children, calls, strict=True):
                child.call(fn, *args, warm)
            for _ in range(o.repeats):  # alternate, so that load changes hit both
                for child, (fn, args), out in zip(children, calls, times, strict=True):
                    out.append(child.call(fn, *args, names))
        seconds = dict(zip([fn.__name__ for fn, _ in calls], map(statistics.median, times), strict=True))
        if score:
            note = (f"FeatureCache.extract, fresh cache, own process, precision "
                    f"{resolve_precision(o.precision, o.device)}" + self._weights_note())
            self.row("score", len(names), seconds["score_seconds"], note=note)
        if reference:
            note = "PIL + torchvision, no workers, torch.no_grad, fp32, own process" + self._weights_note()
            ref = self.row("reference", len(names), seconds["reference_seconds"], workers=0, note=note)
            if score:
                ref["ratio"] = round(seconds["reference_seconds"] / seconds["score_seconds"], 3)
                ref["note"] += "; ratio = detbench score speed / reference speed"

    def bench_index(self) -> None:
        """Measure ``build_index`` on a generated folder suite, with content ids and with size+mtime ids."""
        from detbench.data.index import build_index
        from detbench.datasets.folder import FolderSuite

        root = self.work / "index_tree"
        write_suite(root, self.opts.index_files, size=24, train_per_class=self.opts.index_files // 16)
        for mode in ("full", "fast"):
            with tempfile.TemporaryDirectory(dir=self.work) as home, temporary_home(Path(home)):
                t = time.perf_counter()
                index = build_index(FolderSuite(), root, mode=mode)
                seconds = time.perf_counter() - t
            assert len(index.rows) == self.opts.index_files
            self.row(
                "index",
                self.opts.index_files,
                seconds,
                batch=None,
                backbone=None,
                workers=None,
                note=f"{mode} ids, cold, build_index's default workers; images_per_s = files/s",
            )

    def bench_mpft_step(self) -> None:
        """Measure one MPFT training step (TAM mask, forward, backward, AdamW) on a batch of ready tensors."""
        import torch

        from detbench.config import apply_overrides
        from detbench.detectors.mpft import MPFT, MPFTConfig
        from detbench.kit.detector import RunContext
        from detbench.progress import quiet

        device, bs = self.opts.device, self.opts.batch_size
        cfg = apply_overrides(
            MPFTConfig(),
            {"backbone": self.opts.backbone, "crop": str(self.opts.crop), "batch_size": str(bs - bs % 2),
             "precision": self.opts.precision},
        )
        det = MPFT(cfg)
        det.setup(
            RunContext(
                suite_root=self.work,
                suite_name="bench",
                device=device,
                seed=0,
                run_dir=self.work,
                phases=quiet(),
            )
        )
        det.move_to(device)
        optimizer, _ = det.make_optimizer()
        crop = det.backbone.preprocess.crop
        g = torch.Generator().manual_seed(0)
        x = torch.randn(cfg.batch_size, 3, crop, crop, generator=g).to(device)
        y = torch.tensor([0, 1] * (cfg.batch_size // 2), device=device)

        def step() -> None:
            det.train_step(x, y, optimizer, torch.Generator(device=device).manual_seed(0))
            sync_device(device)

        step()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        seconds = _median_seconds(step, self.opts.repeats)
        trainable = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
        note = f"{cfg.trainable} k={cfg.k}, {trainable / 1e6:.1f} M trainable, TAM {cfg.mask.operator}, "
        note += f"precision {det.precision}"
        if device.startswith("cuda"):
            note += f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        self.row(
            "mpft_step",
            cfg.batch_size,
            seconds,
            batch=cfg.batch_size,
            workers=0,
            note=note + self._weights_note(),
        )

    def _weights_note(self) -> str:
        return "" if self.backbone.pretrained else ", random weights (throughput only)"

    def bench_cache_read(self) -> None:
        """Measure ``FeatureStore.lookup`` of every cached row, in shuffled order."""
        from detbench.models.features import SHARD_ROWS, FeatureStore

        n, dim = self.opts.cache_rows, self.opts.cache_dim
        store = FeatureStore(self.work / "cache_read", {"bench": n})
        ids = [f"row-{i}" for i in range(n)]
        rng = np.random.default_rng(0)
        for start in range(0, n, SHARD_ROWS):
            chunk = ids[start : start + SHARD_ROWS]
            store.append(chunk, rng.standard_normal((len(chunk), dim), dtype=np.float32))
        wanted = [ids[i] for i in rng.permutation(n)]
        found: list[np.ndarray] = []
        seconds = _median_seconds(lambda: found.append(store.lookup(wanted)[1]), self.opts.repeats)
        assert found[-1].all()
        mb_s = n * dim * 4 / 2**20 / seconds
        self.row(
            "cache_read",
            n,
            seconds,
            batch=None,
            workers=0,
            backbone=None,
            note=f"{dim}-d float32 rows, shuffled ids; {mb_s:.0f} MiB/s; images_per_s = rows/s",
        )

    def bench_metrics(self) -> None:
        """Measure per-generator metrics of ``metric_scores`` scores, without and with the bootstrap."""
        import pandas as pd

        from detbench.metrics import per_group_metrics

        n = self.opts.metric_scores
        rng = np.random.default_rng(0)
        df = pd.DataFrame(
            {
                "generator": np.array([f"g{i}" for i in range(8)])[rng.integers(0, 8, n)],
                "label": rng.integers(0, 2, n),
            }
        )
        df["score"] = np.clip(rng.normal(0.4 + 0.2 * df["label"], 0.2), 0, 1)
        for n_boot in sorted({0, self.opts.bootstrap}):
            seconds = _median_seconds(lambda b=n_boot: per_group_metrics(df, n_boot=b), 1 if n_boot else 3)
            self.row(
                "metrics",
                n,
                seconds,
                batch=None,
                workers=0,
                backbone=None,
                device="cpu",
                note=f"8 generators, n_boot={n_boot}; images_per_s = scores/s",
            )

    def bench_rss(self) -> None:
        """Measure a whole linear-probe run on ``rss_images`` small images in a fresh process (time and peak RSS)."""
        n = self.opts.rss_images
        root = self.work / "rss_tree"
        t = time.perf_counter()
        write_suite(root, n, size=32, train_per_class=min(500, n // 8))
        generated = time.perf_counter() - t
        with ChildProcess() as child:  # a fresh process: its peak RSS is the run's alone
            result = child.call(whole_run, str(root), str(self.work / "rss_home"), asdict(self.opts))
        self.row(
            "rss",
            n,
            result["seconds"],
            peak_rss_mb=result["peak_rss_mb"],
            peak_child_rss_mb=result["peak_child_rss_mb"],
            batch=self.opts.batch_size,
            note=(
                f"linear-probe run on {n} 32 px PNGs (crop {self.opts.rss_crop}; {result['scored']} "
                f"scored): index + features + fit + scoring + metrics; images generated in "
                f"{generated:.0f} s"
            ),
        )
