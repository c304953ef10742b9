"""What a detector costs: its parameters, the FLOPs of scoring one image, and the peak memory of the process.

A detector names the forward pass that scores one image with :meth:`~detbench.kit.detector.Detector.cost_forward`
(a :class:`CostForward`); :func:`count_flops` counts that forward with torch's own FLOP counter
(:class:`torch.utils.flop_counter.FlopCounterMode`), :func:`count_parameters` counts the parameters of its modules
and :func:`peak_memory` reads the peak memory of the device it ran on. The run records them
(:mod:`detbench.engine.cost`).

torch's counter counts matrix products and convolutions (2 FLOPs per multiply-add); element-wise operations, norms
and pooling are not counted. It does not see fused inference kernels (the fast path of ``nn.MultiheadAttention``)
and has no formula for the CPU kernel of ``scaled_dot_product_attention``: :func:`count_flops` runs the forward with
autograd recording (its input requires grad), which takes the counted path, and counts that CPU kernel as torch
counts the CUDA ones, so one forward gives the same count on any device.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn

CUDA_PEAK = "torch.cuda.max_memory_allocated: the most memory torch allocated on {device} during the run"
CPU_PEAK = ("peak resident set of the process (Linux VmHWM, elsewhere ru_maxrss), since it started: work done before "
            "the run in the same process counts, DataLoader worker processes do not")


@dataclass(frozen=True)
class CostForward:
    """The forward pass that scores one image, for counting what a detector costs.

    Attributes:
        forward: maps a batch of preprocessed images (``transform``'s output with a leading batch dimension, on the
            device of ``modules``) to anything; it runs every network pass scoring runs per image (RIGID: the clean
            image and its noisy copy).
        transform: PIL image -> the preprocessed input of one image, as scoring makes it.
        modules: the torch modules holding the detector's parameters (a module shared by several counts once).
        trainable: the parameters the detector's training updates; None when it does not say.
        outside_torch: parameters held outside torch (e.g. a head applied with numpy), added to the total.
        native_size: images are scored at their own size: the count is for the size of the image it was given.
        note: what the count leaves out or adds, in words (empty: the forward is the whole scoring pass).
    """

    forward: Callable[[Tensor], Any]
    transform: Any
    modules: tuple[nn.Module, ...]
    trainable: int | None = None
    outside_torch: int = 0
    native_size: bool = False
    note: str = ""


def count_parameters(modules: Iterable[nn.Module]) -> int:
    """The number of parameters of ``modules``, each parameter counted once.

    Args:
        modules: torch modules (they may share submodules or parameters).

    Returns:
        The sum of ``numel()`` over their distinct parameters.
    """
    seen: dict[int, int] = {}
    for module in modules:
        for p in module.parameters():
            seen[id(p)] = p.numel()
    return sum(seen.values())


def count_flops(forward: Callable[[Tensor], Any], x: Tensor) -> int:
    """The FLOPs torch's FLOP counter counts in one call of ``forward`` on ``x``.

    Args:
        forward: the forward pass (e.g. a module).
        x: its input (a batch; the count is for the whole batch).

    Returns:
        The FLOPs (2 per multiply-add of matrix products, convolutions and attention).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops})
    x = x.detach().clone().requires_grad_(True)  # autograd recording: fused inference kernels take the counted path
    with torch.enable_grad(), counter:
        forward(x)
    return int(counter.get_total_flops())


def _cpu_attention_flops(query: Any, key: Any, value: Any, *args: Any, out_val: Any = None, **kwargs: Any) -> int:
    """FLOPs of the CPU kernel of ``scaled_dot_product_attention``, by torch's own formula for the CUDA kernels."""
    from torch.utils.flop_counter import sdpa_flop_count

    return int(sdpa_flop_count(query.shape, key.shape, value.shape))


_cpu_attention_flops._get_raw = True  # type: ignore[attr-defined]  # FlopCounterMode passes the tensors


def reset_peak_memory(device: str) -> None:
    """Start a CUDA device's peak-memory counter afresh (nothing elsewhere: a process's peak RSS cannot be reset).

    Args:
        device: a torch device string.
    """
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats(torch.device(device))


def peak_memory(device: str) -> tuple[int | None, str]:
    """The peak memory of the device a run used, and what was measured.

    Args:
        device: the run's torch device string.

    Returns:
        ``(bytes, what)``: on CUDA :func:`torch.cuda.max_memory_allocated` since :func:`reset_peak_memory`; on the
        CPU the process's peak RSS (:func:`peak_rss_bytes`); ``(None, why)`` elsewhere.
    """
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.max_memory_allocated(torch.device(device))), CUDA_PEAK.format(device=device)
    if device == "cpu":
        return peak_rss_bytes(), CPU_PEAK
    return None, f"not measured on {device}: torch offers no peak-memory counter there"


def peak_rss_bytes(children: bool = False) -> int:
    """The peak resident set size of this process (or of its largest finished child), in bytes.

    This process's is, on Linux, the high-water mark of its own address space (``VmHWM``): ``ru_maxrss`` also counts
    the address space the process was started from (``exec`` after ``vfork`` records the parent's peak), so a small
    process started by a large one reports the large one's peak. Elsewhere, and for children, ``ru_maxrss``, which
    has that bias.

    Args:
        children: the largest finished child process's instead of this process's.

    Returns:
        Bytes.
    """
    if not children and (own := _own_high_water_mark()) is not None:
        return own
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    value = resource.getrusage(who).ru_maxrss
    return int(value if sys.platform == "darwin" else value * 1024)


def _own_high_water_mark() -> int | None:
    """``VmHWM`` of ``/proc/self/status`` in bytes; None where there is none (not Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def machine(device: str) -> dict[str, Any]:
    """The machine a cost was measured on.

    Args:
        device: the run's torch device string.

    Returns:
        ``device``, ``cpu`` (the processor's model name), ``cpu_count``, ``platform`` and, on a CUDA device, ``gpu``
        (its name).
    """
    out: dict[str, Any] = {"device": device, "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                           "platform": platform.platform()}
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what :mod:`platform` knows.

    Returns:
        The name.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
