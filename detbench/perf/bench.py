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

This module holds the command: its options, the machine description and the output files. The measures are
:mod:`detbench.perf.measures`, the generated inputs :mod:`detbench.perf.inputs`, and the fresh processes the
scoring loops and the ``rss`` run go through :mod:`detbench.perf.process`.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detbench.paths import temporary_home
from detbench.perf.measures import Bench
from detbench.perf.options import Options
from detbench.store import write_text_atomic

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




def machine(device: str) -> dict[str, Any]:
    """What the numbers were measured on.

    Args:
        device: the torch device string the measurements used.

    Returns:
        CPU, cores (all and usable), RAM, load, torch threads, Python/platform/torch/CUDA/detbench versions, the
        git state, the device, and the GPU names when CUDA is available.
    """
    import torch

    from detbench.engine.record import git_state
    from detbench.kit.cost import cpu_model
    from detbench.version import __version__

    facts: dict[str, Any] = {
        "cpu": cpu_model(),
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
    with tempfile.TemporaryDirectory(prefix="detbench-bench-") as tmp, temporary_home(Path(tmp) / "home"):
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
