"""Multi-process execution through torch.distributed, launched by torchrun (or ``detbench run --nproc N``).

Every helper also works in a plain single process (rank 0 of 1) without touching torch.distributed, so
callers need no branches of their own:

- ``init(device)`` joins the process group torchrun describes in the environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): NCCL for CUDA, gloo for CPU (the tested path here).
- Sharding: rank ``r`` takes the contiguous block ``shard_slice(n)`` of ``n`` items, so concatenating the
  blocks in rank order (``gather``/``all_gather`` return them in rank order) restores the original order;
  blocks aligned to the batch size keep every batch as it is in one process.
- ``local()``: a region in which this process works alone (e.g. scoring its shard), so nested code that
  would otherwise shard and communicate (feature extraction) runs single-process.

All ranks must see the same ``$DETBENCH_HOME`` (one machine, or a shared filesystem across nodes).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from torch import nn

# Ranks wait at barriers while rank 0 indexes a suite or fits a probe; torchrun ends them all if one fails.
TIMEOUT = dt.timedelta(hours=2)
_local_depth = 0


def launched() -> bool:
    """Whether torchrun started this process as one of several.

    Returns:
        True when ``WORLD_SIZE`` is above 1.
    """
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def env_rank() -> int:
    """This process's global rank as torchrun set it (0 when not launched by torchrun).

    Returns:
        ``RANK`` from the environment.
    """
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its machine as torchrun set it (0 when not launched by torchrun).

    Returns:
        ``LOCAL_RANK`` from the environment.
    """
    return int(os.environ.get("LOCAL_RANK", "0"))


def torchrun_command(argv: list[str], nproc: int) -> list[str]:
    """The command running ``detbench <argv>`` without ``--nproc`` as ``nproc`` processes on this machine.

    It runs ``python -m torch.distributed.run --standalone``: a free rendezvous port, no fixed 29500.

    Args:
        argv: detbench's arguments (``--nproc N`` and ``--nproc=N`` are dropped).
        nproc: processes to start.

    Returns:
        The command line.
    """
    args: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "detbench", *args]


def local_device(device: str) -> str:
    """Under torchrun, ``cuda`` means this process's GPU (``cuda:LOCAL_RANK``); anything else is kept.

    Args:
        device: the device the user asked for.

    Returns:
        The device this process uses.
    """
    return f"cuda:{local_rank()}" if device == "cuda" and launched() else device


def initialized() -> bool:
    """Whether a torch.distributed process group exists (never imports torch to find out).

    Returns:
        True when torch is imported and a group is initialised.
    """
    if "torch" not in sys.modules:  # nothing has imported torch, so no process group exists
        return False
    import torch.distributed as tdist

    return tdist.is_available() and tdist.is_initialized()


def init(device: str = "cpu") -> bool:
    """Join torchrun's process group (NCCL when ``device`` is CUDA, else gloo).

    A no-op in a single process or when a group exists already.

    Args:
        device: this process's device (a CUDA device is made current first).

    Returns:
        True if this call created the group.
    """
    if not launched() or initialized():
        return False
    import torch
    import torch.distributed as tdist

    backend = "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
        backend = "nccl"
    tdist.init_process_group(backend, timeout=TIMEOUT)
    return True


def cleanup() -> None:
    """Leave the process group (if any)."""
    if initialized():
        import torch.distributed as tdist

        tdist.destroy_process_group()


def _hard_exit(code: int) -> NoReturn:
    os._exit(code)


def leave(code: int) -> NoReturn:
    """End this torchrun-launched process with ``code``, without Python's interpreter finalisation.

    gloo's worker threads release the last collective's tensors after the collective has completed; releasing a
    tensor that Python created takes the GIL, and a thread that asks for it while the interpreter finalises aborts
    the whole process (SIGABRT, "terminate called without an active exception"), failing a run that finished.
    Output streams and logging are flushed first; results are already written (atomically) by then.

    Args:
        code: the exit status.
    """
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    _hard_exit(code)


def rank() -> int:
    """This process's rank in the process group (0 without one).

    Returns:
        The rank.
    """
    if not initialized():
        return 0
    import torch.distributed as tdist

    return tdist.get_rank()


def world_size() -> int:
    """The number of processes in the process group (1 without one).

    Returns:
        The world size.
    """
    if not initialized():
        return 1
    import torch.distributed as tdist

    return tdist.get_world_size()


def is_main() -> bool:
    """Whether this is rank 0 (the process that writes shared results).

    Returns:
        True on rank 0 and in a single process.
    """
    return rank() == 0


def sharded() -> bool:
    """Whether work is split across processes here (several ranks, outside ``local()``).

    Returns:
        True when sharded.
    """
    return _local_depth == 0 and world_size() > 1


@contextlib.contextmanager
def local() -> Iterator[None]:
    """Within this block the process acts alone: no sharding, every collective is the identity.

    Yields:
        Nothing; blocks nest.
    """
    global _local_depth
    _local_depth += 1
    try:
        yield
    finally:
        _local_depth -= 1


def shard_slice(n: int, align: int = 1) -> slice:
    """This rank's contiguous block of ``n`` items (all of them when not sharded).

    Blocks start at multiples of ``align``: with ``align`` = the batch size, every item lands in the same batch
    as in one process (CPU and GPU kernels may round differently for another batch size), at the price of up to
    one batch of imbalance.

    Args:
        n: the number of items.
        align: the block boundary unit.

    Returns:
        The slice of this rank's items.
    """
    if not sharded():
        return slice(0, n)
    r, w = rank(), world_size()
    units = -(-n // align)
    return slice(min(n, units * r // w * align), min(n, units * (r + 1) // w * align))


def _nccl() -> bool:
    import torch.distributed as tdist

    return tdist.get_backend() == "nccl"


def barrier() -> None:
    """Wait until every rank arrives (a no-op when not sharded)."""
    if not sharded():
        return
    import torch
    import torch.distributed as tdist

    if _nccl():
        tdist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        tdist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects).

    Args:
        obj: the object (only rank 0's value matters).

    Returns:
        Rank 0's object (``obj`` itself when not sharded).
    """
    if not sharded():
        return obj
    import torch.distributed as tdist

    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0; None on the other ranks.

    Args:
        obj: this rank's picklable object.

    Returns:
        The list on rank 0 (``[obj]`` when not sharded), None elsewhere.
    """
    if not sharded():
        return [obj]
    import torch.distributed as tdist

    out: list[Any] | None = [None] * world_size() if is_main() else None
    tdist.gather_object(obj, out, dst=0)
    return out


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order, on every rank.

    Args:
        obj: this rank's picklable object.

    Returns:
        The list (``[obj]`` when not sharded).
    """
    if not sharded():
        return [obj]
    import torch.distributed as tdist

    out: list[Any] = [None] * world_size()
    tdist.all_gather_object(out, obj)
    return out


def all_reduce_sum(value: float) -> float:
    """The sum of ``value`` over ranks (float64).

    Args:
        value: this rank's value.

    Returns:
        The sum (``value`` when not sharded).
    """
    if not sharded():
        return value
    import torch
    import torch.distributed as tdist

    device = torch.device("cuda", torch.cuda.current_device()) if _nccl() else torch.device("cpu")
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    tdist.all_reduce(t)
    return float(t.item())


def data_parallel(module: nn.Module, device: str, **kwargs: Any) -> nn.Module:
    """``module`` wrapped in DistributedDataParallel when sharded, else ``module`` itself.

    Wrapped, its backward averages gradients over ranks.

    Args:
        module: the model to train.
        device: its device (a CUDA device gives DDP its ``device_ids``).
        **kwargs: passed to DistributedDataParallel.

    Returns:
        The wrapped or the same module.
    """
    if not sharded():
        return module
    import torch
    from torch.nn.parallel import DistributedDataParallel

    dev = torch.device(device)
    ids = None
    if dev.type == "cuda":
        ids = [dev.index if dev.index is not None else torch.cuda.current_device()]
    return DistributedDataParallel(module, device_ids=ids, **kwargs)
