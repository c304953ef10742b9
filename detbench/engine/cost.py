"""The ``cost`` section of a run record: what scoring cost, on the machine that ran it.

Recorded, never keyed: the same run on another machine has the same id and another cost. It holds the detector's
parameters (total and trainable), the FLOPs of scoring one image (:func:`detbench.kit.cost.count_flops` on one
forward of the first scored evaluation image through :meth:`~detbench.kit.detector.Detector.cost_forward`), the
images per second of the evaluation's scoring phase, and the peak memory of the device, with the machine it was
measured on. A value that could not be measured is None, with its reason under ``na``; :func:`run_cost` reads the
section back (a run recorded before it existed reads n/a throughout).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from detbench.kit.cost import count_flops, count_parameters, machine

if TYPE_CHECKING:
    from detbench.data.tiles import Tiling
    from detbench.kit.cost import CostForward
    from detbench.kit.detector import Detector, RunContext

COST = "cost"  # the record's section
COST_FIELDS = ("params", "params_trainable", "gflops_per_image", "images_per_s", "peak_memory_bytes")
NOT_RECORDED = "not recorded: the run was written by a detbench that did not measure cost"


def measure_cost(detector: Detector, ctx: RunContext, scores: pd.DataFrame, fresh: int, seconds: float,
                 peak: tuple[int | None, str], tiling: Tiling | None = None) -> dict[str, Any]:
    """The cost section of a finished run.

    Args:
        detector: the detector, as it scored.
        ctx: the evaluation's run context.
        scores: the evaluation scores (the first scored image is the one counted).
        fresh: evaluation images scored in this process (chunks read back after a resume not included).
        seconds: the wall time of the evaluation's scoring phase.
        peak: :func:`detbench.kit.cost.peak_memory` read right after it.
        tiling: the run's tiles, if any: the FLOPs of one tile are counted (on the first scored image's first tile) and
            multiplied by the mean number of tiles of the scored images.

    Returns:
        The section: every field of :data:`COST_FIELDS` (a number or None), ``na`` (field -> why it is None), and
        the facts behind them (``flops_input``, ``scored_images``, ``scoring_s``, ``peak_memory``, ``machine``...).
    """
    out: dict[str, Any] = dict.fromkeys(COST_FIELDS)
    na: dict[str, str] = {}
    out.update(_network_cost(detector, ctx, scores, na, tiling))
    if fresh > 0 and seconds > 0:
        out["images_per_s"] = round(fresh / seconds, 3)
    else:
        na["images_per_s"] = ("every evaluation score was read back from chunks an interrupted attempt wrote"
                              if len(scores) else "no evaluation image was scored")
    out.update(scored_images=int(fresh), scoring_s=round(seconds, 3))
    out["peak_memory_bytes"], out["peak_memory"] = peak
    if peak[0] is None:
        na["peak_memory_bytes"] = peak[1]
    out["machine"] = machine(ctx.device)
    out["na"] = na
    return out


def _network_cost(detector: Detector, ctx: RunContext, scores: pd.DataFrame, na: dict[str, str],
                  tiling: Tiling | None = None) -> dict[str, Any]:
    """Parameters and FLOPs per image, from the detector's cost forward (reasons for what is n/a go to ``na``)."""
    scored = scores[np.isfinite(scores["score"].to_numpy(dtype=float))]
    if scored.empty:
        why = "no evaluation image was scored"
        na.update(params=why, params_trainable=why, gflops_per_image=why)
        return {}
    first = scored.iloc[0]
    found = detector.cost_forward(ctx, str(first["generator"]))
    if isinstance(found, str):
        na.update(params=found, params_trainable=found, gflops_per_image=found)
        return {}
    out: dict[str, Any] = {"params": count_parameters(found.modules) + found.outside_torch,
                           "params_trainable": found.trainable}
    if found.trainable is None:
        na["params_trainable"] = f"{type(detector).__name__} does not say which parameters its training updates"
    image_id = str(first["image_id"])
    if tiling is not None:
        from detbench.kit.tiling import tile_sides

        generator = str(first["generator"])
        image_id = tiling.tile_id(image_id, tile_sides(detector, tiling, ctx, [generator])[generator], 0)
    flops, facts = _flops(found, ctx, first, na, image_id)
    out.update(facts)
    if flops is not None and tiling is not None:
        tiles = float(scored["n_tiles"].mean())
        flops = int(round(flops * tiles))
        out["tiles_per_image"] = round(tiles, 3)
        facts["flops_input_note"] = (f"one tile's forward (of the first scored image) times the mean number of tiles "
                                     f"of the scored images ({tiles:g})")
        out.update(facts)
    if flops is not None:
        out["flops_per_image"] = flops
        out["gflops_per_image"] = flops / 1e9
    if found.note:
        out["counted"] = found.note
    return out


def _flops(found: CostForward, ctx: RunContext, row: pd.Series, na: dict[str, str],
           image_id: str) -> tuple[int | None, dict]:
    """The FLOPs of ``found``'s forward on ``row``'s image, or the tile ``image_id`` names (loaded and preprocessed as
    scoring did).
    """
    import torch

    from detbench.data.loading import ImageRowsDataset

    dataset = ImageRowsDataset(ctx.suite_root, [str(row["path"])], found.transform,
                               image_ids=[image_id], perturb=ctx.perturbation)
    x, _, reason = dataset[0]
    if x is None:
        na["gflops_per_image"] = f"the image counted on ({row['path']}) could not be loaded again: {reason}"
        return None, {}
    params = [p for m in found.modules for p in m.parameters()]
    x = x.unsqueeze(0).to(params[0].device if params else torch.device("cpu"))
    facts: dict[str, Any] = {"flops_input": list(x.shape[1:])}
    if found.native_size:
        facts["flops_input_note"] = "images are scored at their own size: counted at the first scored image's"
    try:
        flops = count_flops(found.forward, x)
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as exc:
        na["gflops_per_image"] = f"torch's FLOP counter failed on the scoring forward ({type(exc).__name__}: {exc})"
        return None, facts
    if flops <= 0:
        na["gflops_per_image"] = "torch's FLOP counter found no matrix product or convolution in the scoring forward"
        return None, facts
    return flops, facts


def run_cost(record: dict[str, Any]) -> dict[str, Any]:
    """A run's cost as tables show it.

    Args:
        record: the run record.

    Returns:
        Every field of :data:`COST_FIELDS` (a finite number, or None), ``device`` (the GPU's name on CUDA, else the
        device and processor), ``peak_memory`` (what was measured) and ``na`` (field -> why it is None; a run
        recorded before cost was measured: :data:`NOT_RECORDED` for each).
    """
    cost = record.get(COST)
    if not isinstance(cost, dict):
        return {**dict.fromkeys(COST_FIELDS), "device": "", "peak_memory": "", "na": dict.fromkeys(COST_FIELDS,
                                                                                                   NOT_RECORDED)}
    values = {f: _number(cost.get(f)) for f in COST_FIELDS}
    na = {f: str((cost.get("na") or {}).get(f, "not measured")) for f, v in values.items() if v is None}
    where = cost.get("machine") or {}
    device = str(where.get("device", ""))
    label = where.get("gpu") or (f"{device}: {where.get('cpu')}" if where.get("cpu") else device)
    return {**values, "device": str(label), "peak_memory": str(cost.get("peak_memory") or ""), "na": na}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value
