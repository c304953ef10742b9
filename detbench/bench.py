"""Whole-pipeline throughput (``detbench bench``): one CSV row per measurement, like timm's benchmark script.

Rows (column ``what``) on generated images, in a temporary ``$DETBENCH_HOME``:

- ``decode``: load + preprocess through the DataLoader (workers, prefetching), no model;
- ``forward``: the backbone on ready tensors under inference_mode (bf16 autocast on CUDA);
- ``score``: ``FeatureCache.extract`` with a fresh cache (decode, forward, cache write): detbench's loop;
- ``reference``: the same images through the plain loop of the reference repositories (PIL open + convert,
  torchvision transforms, manual batches, ``torch.no_grad``, no workers); ``ratio`` = score / reference;
- ``mpft_step``: one MPFT training step (TAM mask, forward, backward, AdamW) on a batch of ready tensors;
- ``index``: ``build_index`` on a generated folder suite (content ids: ``full``; size+mtime ids: ``fast``);
- ``cache_read``: ``FeatureStore.lookup`` of every cached row (memory-mapped shards);
- ``metrics``: per-generator metrics of 1 M scores (without and with the bootstrap that runs use);
- ``rss``: a whole linear-probe run (index, features, fit, chunked scoring, metrics) on ``--rss-images``
  small images in a fresh process; ``peak_rss_mb`` is that process's peak.

Timings are medians of ``repeats`` runs after a warm-up; ``score`` and ``reference`` alternate so that load
drifts hit both alike. ``peak_rss_mb`` is this process's peak resident set so far (``ru_maxrss``);
``peak_child_rss_mb`` the largest finished child's (DataLoader workers, index probes).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import resource
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detbench.precision import autocast, resolve_precision
from detbench.records import write_text_atomic

DEMO_BACKBONE = "timm:efficientnet_lite0@bundled"
COLUMNS = [
    "what",
    "backbone",
    "device",
    "batch",
    "workers",
    "images",
    "seconds",
    "images_per_s",
    "ratio",
    "peak_rss_mb",
    "peak_child_rss_mb",
    "note",
]
ALL = ("decode", "forward", "score", "reference", "mpft_step", "index", "cache_read", "metrics", "rss")


@dataclass
class Options:
    backbone: str = DEMO_BACKBONE
    device: str = "cpu"
    precision: str = "auto"  # forward passes (forward, score, mpft_step): see detbench.precision
    crop: int = 128  # the demo suite's crop
    size: int = 128  # generated image side (the demo suite's)
    images: int = 512
    batch_size: int = 64
    workers: int | None = None  # None: detbench's default (half the cores)
    repeats: int = 3
    index_files: int = 5000
    cache_rows: int = 50_000
    cache_dim: int = 768
    metric_scores: int = 1_000_000
    bootstrap: int = 1000
    rss_images: int = 0  # 0: skip the RSS run
    rss_crop: int = 32
    only: tuple[str, ...] = field(default_factory=lambda: tuple(w for w in ALL if w != "rss"))

    def validate(self) -> None:
        """Refuse unknown measures, out-of-range sizes and a malformed backbone spec before any work."""
        from detbench.backbones import parse_spec, split_sha256
        from detbench.errors import ConfigError

        unknown = sorted(set(self.only) - set(ALL))
        if unknown:
            raise ConfigError(f"unknown measures {', '.join(unknown)}; choose from {', '.join(ALL)}")
        if "rss" in self.only and self.rss_images < 16:
            raise ConfigError("the rss measure needs --rss-images N (at least 16), e.g. --rss-images 50000")
        positive = {"crop": self.crop, "size": self.size, "images": self.images, "batch-size": self.batch_size,
                    "repeats": self.repeats, "index-files": self.index_files, "rss-crop": self.rss_crop}
        bad = [f"--{name} {value}" for name, value in positive.items() if value < 1]
        if self.workers is not None and self.workers < 0:
            bad.append(f"--workers {self.workers}")
        if bad:
            raise ConfigError(f"{', '.join(bad)}: sizes and counts must be >= 1 (--workers >= 0)")
        parse_spec(split_sha256(self.backbone)[0])


# ------------------------------------------------------------------------------------------ facts


def peak_rss_mb() -> tuple[float, float]:
    """Peak resident set of this process and of its largest finished child, in MiB (ru_maxrss: KiB).

    Returns:
        ``(own, largest child)`` in MiB, rounded to 0.1.
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return round(own, 1), round(children, 1)


def machine(device: str) -> dict[str, Any]:
    """What the numbers were measured on.

    Args:
        device: the torch device string the measurements used.

    Returns:
        CPU, cores (all and usable), RAM, load, torch threads, Python/platform/torch/CUDA/detbench versions, the
        git state, the device, and the GPU names when CUDA is available.
    """
    import torch

    from detbench import __version__
    from detbench.record import git_state

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    facts: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_avg_1m": os.getloadavg()[0],
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "detbench": __version__,
        "source": git_state(),
        "device": device,
    }
    if torch.cuda.is_available():
        facts["gpu"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return facts


# ------------------------------------------------------------------------------------------ inputs


def write_images(folder: Path, n: int, size: int, seed: int = 0, prefix: str = "img") -> list[str]:
    """``n`` distinct PNGs (a gradient, a disc and noise) of ``size`` px in ``folder``.

    Args:
        folder: where to write them (created if missing).
        n: how many.
        size: the side of each square image in pixels.
        seed: seeds the images.
        prefix: file name prefix (``<prefix>_000000.png`` ...).

    Returns:
        The file names, in order.
    """
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    names = []
    for i in range(n):
        base = (xx * rng.uniform(0.2, 1.0) + yy * rng.uniform(0.2, 1.0))[..., None] * rng.uniform(0.3, 1.0, 3)
        cx, cy, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 8, size / 3)]
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r)[..., None] * rng.uniform(-80, 80, 3)
        img = base + disc + rng.normal(0, rng.uniform(2, 30), (size, size, 3))
        name = f"{prefix}_{i:06d}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / name)
        names.append(name)
    return names


def write_suite(root: Path, n: int, size: int, train_per_class: int, seed: int = 0) -> None:
    """A folder suite of ``n`` images: ``gen0/train/{0_real,1_fake}`` and ``gen<k>/test/{0_real,1_fake}``.

    ``train_per_class`` images per label go to ``gen0/train``; the rest are spread over the test folders of
    ``gen0`` to ``gen7``.

    Args:
        root: the suite root.
        n: images in all.
        size: image side in pixels.
        train_per_class: training images per label.
        seed: seeds the images.
    """
    n_test = n - 2 * train_per_class
    for label in ("0_real", "1_fake"):
        write_images(root / "gen0" / "train" / label, train_per_class, size, seed=seed + len(label))
    for k in range(8):
        for j, label in enumerate(("0_real", "1_fake")):
            count = n_test * (2 * k + j + 1) // 16 - n_test * (2 * k + j) // 16
            write_images(root / f"gen{k}" / "test" / label, count, size, seed=seed + 100 + 2 * k + j)


@contextlib.contextmanager
def _home(path: Path) -> Iterator[None]:
    """``$DETBENCH_HOME`` set to ``path`` for the block."""
    old = os.environ.get("DETBENCH_HOME")
    os.environ["DETBENCH_HOME"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("DETBENCH_HOME", None)
        else:
            os.environ["DETBENCH_HOME"] = old


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------ measures


def reference_loop(backbone: Any, folder: Path, names: list[str], batch_size: int, device: str) -> np.ndarray:
    """Features the way the reference repositories compute them, for the ``reference`` measure.

    PIL open + convert, torchvision transforms, manual batching, ``torch.no_grad`` (autograd bookkeeping kept),
    no DataLoader workers, fp32, the model in its default memory format.

    Args:
        backbone: a loaded :class:`~detbench.backbones.Backbone`.
        folder: the folder holding the images.
        names: the image file names, in order.
        batch_size: images per forward pass.
        device: a torch device string.

    Returns:
        The ``[len(names), D]`` float32 embeddings.
    """
    import torch
    import torchvision.transforms as T
    from PIL import Image

    pp = backbone.preprocess
    transform = T.Compose([T.CenterCrop(pp.crop), T.ToTensor(), T.Normalize(pp.mean, pp.std)])
    backbone.model.to(device).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(names), batch_size):
            batch = [
                transform(Image.open(folder / name).convert("RGB"))
                for name in names[start : start + batch_size]
            ]
            out.append(backbone.embed(torch.stack(batch).to(device)).float().cpu().numpy())
    return np.concatenate(out)


class Bench:
    """Runs the measurements of :class:`Options` and collects their rows."""

    def __init__(self, opts: Options, work: Path) -> None:
        self.opts, self.work = opts, work
        self.rows: list[dict[str, Any]] = []
        self._backbone: Any = None
        self._images: tuple[Path, list[str]] | None = None

    def row(self, what: str, images: int, seconds: float, **extra: Any) -> dict[str, Any]:
        """Record one measurement.

        Args:
            what: the measure (a name from :data:`ALL`).
            images: images (or rows, scores, files) processed per timed run.
            seconds: the median time of a run.
            **extra: columns to set or override (``note``, ``batch``, ``workers`` ...).

        Returns:
            The row (also appended to :attr:`rows`), columns as :data:`COLUMNS`.
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
        from detbench.data import default_workers

        gpu = self.opts.device.startswith("cuda")
        return default_workers(gpu) if self.opts.workers is None else self.opts.workers

    @property
    def backbone(self) -> Any:
        """The backbone of the options, loaded on first use.

        Returns:
            The :class:`~detbench.backbones.Backbone` at the options' crop.
        """
        if self._backbone is None:
            from detbench.backbones import load_backbone

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
        from detbench.data import ImageRowsDataset, iterate_batches

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

        from detbench.data import HalveOnOom, tune_cpu_allocator

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
            _sync(device)

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
        allocator, which would otherwise speed up a reference loop run in the same process)."""
        folder, names = self.images
        o = self.opts
        calls = []
        if score:
            calls.append(
                (_score_seconds, (o.backbone, o.crop, str(folder), o.batch_size, o.workers, o.device,
                                  resolve_precision(o.precision, o.device)))
            )
        if reference:
            calls.append((_reference_seconds, (o.backbone, o.crop, str(folder), o.batch_size, o.device)))
        times: list[list[float]] = [[] for _ in calls]
        with contextlib.ExitStack() as stack:
            children = [stack.enter_context(_Child()) for _ in calls]
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
            self.row("score", len(names), seconds["_score_seconds"], note=note)
        if reference:
            note = "PIL + torchvision, no workers, torch.no_grad, fp32, own process" + self._weights_note()
            ref = self.row("reference", len(names), seconds["_reference_seconds"], workers=0, note=note)
            if score:
                ref["ratio"] = round(seconds["_reference_seconds"] / seconds["_score_seconds"], 3)
                ref["note"] += "; ratio = detbench score speed / reference speed"

    def bench_index(self) -> None:
        """Measure ``build_index`` on a generated folder suite, with content ids and with size+mtime ids."""
        from detbench.datasets.folder import FolderSuite
        from detbench.index import build_index

        root = self.work / "index_tree"
        write_suite(root, self.opts.index_files, size=24, train_per_class=self.opts.index_files // 16)
        for mode in ("full", "fast"):
            with tempfile.TemporaryDirectory(dir=self.work) as home, _home(Path(home)):
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
        from detbench.detector import RunContext
        from detbench.detectors.mpft import MPFT, MPFTConfig
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
            _sync(device)

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
        from detbench.features import SHARD_ROWS, FeatureStore

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
        with _Child() as child:  # a fresh process: its peak RSS is the run's alone
            result = child.call(_rss_run, str(root), str(self.work / "rss_home"), asdict(self.opts))
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


class _Child:
    """A spawned, non-daemonic process (DataLoader workers may start in it) that runs functions on request."""

    def __enter__(self) -> _Child:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child_end = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child_end,))
        self.process.start()
        return self

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.conn.send((fn, args))
        ok, value = self.conn.recv()
        if not ok:
            raise RuntimeError(f"{fn.__name__} failed in the child process:\n{value}")
        return value

    def __exit__(self, *exc: object) -> None:
        self.conn.send(None)
        self.process.join()


def _serve(conn: Any) -> None:
    while (request := conn.recv()) is not None:
        fn, args = request
        try:
            conn.send((True, fn(*args)))
        except Exception:  # reported to the parent, which raises
            conn.send((False, traceback.format_exc()))


_LOADED: dict[tuple[str, int], Any] = {}  # backbones loaded in a child process


def _loaded(spec: str, crop: int) -> Any:
    if (spec, crop) not in _LOADED:
        from detbench.backbones import load_backbone

        _LOADED[spec, crop] = load_backbone(spec, crop=crop)
    return _LOADED[spec, crop]


def _score_seconds(
    spec: str, crop: int, folder: str, batch_size: int, workers: int | None, device: str, precision: str,
    names: list[str],
) -> float:
    import pandas as pd

    from detbench.features import FeatureCache

    backbone = _loaded(spec, crop)
    rows = pd.DataFrame({"path": names, "image_id": [f"bench-{i}" for i in range(len(names))]})
    with tempfile.TemporaryDirectory(prefix="detbench-bench-cache-") as cache:
        t = time.perf_counter()
        FeatureCache(Path(cache)).extract(
            backbone, Path(folder), rows, batch_size=batch_size, workers=workers, device=device, precision=precision
        )
        _sync(device)
        return time.perf_counter() - t


def _reference_seconds(
    spec: str, crop: int, folder: str, batch_size: int, device: str, names: list[str]
) -> float:
    backbone = _loaded(spec, crop)
    t = time.perf_counter()
    reference_loop(backbone, Path(folder), names, batch_size, device)
    _sync(device)
    return time.perf_counter() - t


def _rss_run(root: str, home: str, opts: dict[str, Any]) -> dict[str, Any]:
    """A whole linear-probe run on the suite at ``root`` (in a fresh process); its time and peak RSS."""
    with _home(Path(home)):
        from detbench.progress import quiet
        from detbench.resolve import RunRequest
        from detbench.runner import Runner

        req = RunRequest(
            "linear-probe",
            "folder",
            root=Path(root),
            protocol="train-on-gen0",
            device=opts["device"],
            overrides={"backbone": opts["backbone"], "crop": str(opts["rss_crop"])},
            workers=opts["workers"],
            batch_size=opts["batch_size"],
            n_boot=0,
        )
        t = time.perf_counter()
        result = Runner(quiet()).run(req)
        seconds = time.perf_counter() - t
    own, child = peak_rss_mb()
    scored = sum(g["real"] + g["fake"] for g in result.record["counts"]["eval"].values())
    return {"seconds": seconds, "peak_rss_mb": own, "peak_child_rss_mb": child, "scored": scored}


def run_bench(
    opts: Options, out: Path | None, progress: Callable[[str], None] = lambda _: None
) -> list[dict[str, Any]]:
    """Run the measurements in a temporary ``$DETBENCH_HOME``.

    Args:
        opts: what to measure and how.
        out: a folder to append ``pipeline.csv`` rows to and write ``machine.json`` in; None writes nothing.
        progress: called with each measure's name before it runs.

    Returns:
        The rows.

    Raises:
        ConfigError: invalid options (see :meth:`Options.validate`).
    """
    opts.validate()
    with tempfile.TemporaryDirectory(prefix="detbench-bench-") as tmp, _home(Path(tmp) / "home"):
        rows = Bench(opts, Path(tmp)).run(progress)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "pipeline.csv"
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["time", *COLUMNS])
            if new:
                writer.writeheader()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            writer.writerows({"time": stamp, **row} for row in rows)
        write_text_atomic(out / "machine.json", json.dumps(machine(opts.device), indent=1, sort_keys=True) + "\n")
    return rows
