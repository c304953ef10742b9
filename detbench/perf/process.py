"""The fresh processes of ``detbench bench`` and the timed work they run.

Each scoring loop runs in a process of its own, as a script of its kind would (detbench's loop tunes the CPU
allocator, which would otherwise speed up a reference loop run in the same process), and the ``rss`` measure's
whole run too, so that the process's peak resident set is the run's alone. :class:`ChildProcess` is a spawned,
non-daemonic process that runs module-level functions on request; :func:`score_seconds`,
:func:`reference_seconds` and :func:`whole_run` are what it runs.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from detbench.paths import temporary_home


def peak_rss_mb() -> tuple[float, float]:
    """Peak resident set of this process and of its largest finished child, in MiB (ru_maxrss).

    Returns:
        ``(own, largest child)`` in MiB, rounded to 0.1.
    """
    from detbench.kit.cost import peak_rss_bytes

    return round(peak_rss_bytes() / 2**20, 1), round(peak_rss_bytes(children=True) / 2**20, 1)


def sync_device(device: str) -> None:
    """Wait for the device's queued work (CUDA), so that a timer stops after it; nothing on the CPU.

    Args:
        device: a torch device string.
    """
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def reference_loop(backbone: Any, folder: Path, names: list[str], batch_size: int, device: str) -> np.ndarray:
    """Features the way the reference repositories compute them, for the ``reference`` measure.

    PIL open + convert, torchvision transforms, manual batching, ``torch.no_grad`` (autograd bookkeeping kept),
    no DataLoader workers, fp32, the model in its default memory format.

    Args:
        backbone: a loaded :class:`~detbench.models.backbones.Backbone`.
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


class ChildProcess:
    """A spawned, non-daemonic process (DataLoader workers may start in it) that runs functions on request."""

    def __enter__(self) -> ChildProcess:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child_end = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child_end,))
        self.process.start()
        return self

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the child process (both must pickle: a module-level function).

        Args:
            fn: the function.
            *args: its arguments.

        Returns:
            What it returned.

        Raises:
            RuntimeError: it raised in the child (the message holds the child's traceback).
        """
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
        from detbench.models.backbones import load_backbone

        _LOADED[spec, crop] = load_backbone(spec, crop=crop)
    return _LOADED[spec, crop]


def score_seconds(
    spec: str, crop: int, folder: str, batch_size: int, workers: int | None, device: str, precision: str,
    names: list[str],
) -> float:
    """Seconds of ``FeatureCache.extract`` (decode, forward, cache write) over ``names`` with a fresh cache.

    Args:
        spec: the backbone spec (loaded once per process).
        crop: the backbone's crop.
        folder: the folder holding the images.
        batch_size: images per forward pass.
        workers: DataLoader workers (None: detbench's default).
        device: a torch device string.
        precision: a resolved precision.
        names: the image file names.

    Returns:
        The wall time in seconds.
    """
    import pandas as pd

    from detbench.models.features import FeatureCache

    backbone = _loaded(spec, crop)
    rows = pd.DataFrame({"path": names, "image_id": [f"bench-{i}" for i in range(len(names))]})
    with tempfile.TemporaryDirectory(prefix="detbench-bench-cache-") as cache:
        t = time.perf_counter()
        FeatureCache(Path(cache)).extract(
            backbone, Path(folder), rows, batch_size=batch_size, workers=workers, device=device, precision=precision
        )
        sync_device(device)
        return time.perf_counter() - t


def reference_seconds(
    spec: str, crop: int, folder: str, batch_size: int, device: str, names: list[str]
) -> float:
    """Seconds of :func:`reference_loop` over ``names``.

    Args:
        spec: the backbone spec (loaded once per process).
        crop: the backbone's crop.
        folder: the folder holding the images.
        batch_size: images per forward pass.
        device: a torch device string.
        names: the image file names.

    Returns:
        The wall time in seconds.
    """
    backbone = _loaded(spec, crop)
    t = time.perf_counter()
    reference_loop(backbone, Path(folder), names, batch_size, device)
    sync_device(device)
    return time.perf_counter() - t


def whole_run(root: str, home: str, opts: dict[str, Any]) -> dict[str, Any]:
    """A whole linear-probe run on the folder suite at ``root`` (meant for a fresh process); its time and peak RSS.

    Args:
        root: the suite root (as :func:`~detbench.perf.inputs.write_suite` writes it).
        home: the ``$DETBENCH_HOME`` of the run.
        opts: the bench options as a dict (device, backbone, rss_crop, workers, batch_size).

    Returns:
        ``seconds``, ``peak_rss_mb``, ``peak_child_rss_mb`` and the number of images ``scored``.
    """
    with temporary_home(Path(home)):
        from detbench.engine.resolve import RunRequest
        from detbench.engine.runner import Runner
        from detbench.progress import quiet

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
