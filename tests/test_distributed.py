"""torch.distributed on CPU (gloo): sharding helpers, a 2-process torchrun run equal to a 1-process run, and a
DDP MPFT step equal to the single-process step on the combined batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from detbench import distributed as dist
from detbench.config import apply_overrides
from detbench.detectors.mpft import MPFT, MPFTConfig
from detbench.kit.detector import RunContext
from detbench.progress import quiet

TINY = {
    "backbone": "open_clip:detbench-tiny-vit@random",
    "k": 2,
    "batch_size": 8,
    "lr_backbone": 1e-3,
    "lr_head": 1e-2,
    "warmup": 0.0,
}
DEMO = [
    "--suite",
    "demo",
    "--set",
    "n_train=12",
    "--set",
    "n_val=6",
    "--set",
    "size=64",
    "-q",
    "--bootstrap",
    "0",
    "--batch-size",
    "8",
]
STEP_ATOL = 1e-6  # fp32: DDP sums the two half-batch gradients in another order than one backward does


# ------------------------------------------------------------------------------------------ helpers


@pytest.mark.parametrize("world", [2, 3, 5])
@pytest.mark.parametrize("align", [1, 8])
def test_shard_blocks_cover_everything_in_order(
    monkeypatch: pytest.MonkeyPatch, world: int, align: int
) -> None:
    monkeypatch.setattr(dist, "world_size", lambda: world)
    for n in (0, 1, 7, 8, 9, 40, 101):
        blocks = []
        for r in range(world):
            monkeypatch.setattr(dist, "rank", lambda r=r: r)
            blocks.append(dist.shard_slice(n, align=align))
        assert np.concatenate([np.arange(n)[b] for b in blocks]).tolist() == list(range(n))
        assert all(b.start % align == 0 or b.start == n for b in blocks)
        sizes = [b.stop - b.start for b in blocks]
        assert max(sizes) - min(sizes) <= align  # balanced up to one unit
        with dist.local():
            assert dist.shard_slice(n, align=align) == slice(0, n)


def test_single_process_helpers_are_identities() -> None:
    module = torch.nn.Linear(2, 2)
    assert not dist.sharded() and dist.rank() == 0 and dist.world_size() == 1
    assert dist.broadcast("x") == "x" and dist.gather(3) == [3] and dist.all_gather(3) == [3]
    assert dist.all_reduce_sum(2.5) == 2.5 and dist.data_parallel(module, "cpu") is module
    assert not dist.init("cpu")  # not launched by torchrun: no process group


@pytest.mark.parametrize(("argv", "code"), [(["ls", "suites"], 0), (["run", "--set"], 2), (["no-such-command"], 2)])
def test_a_torchrun_process_ends_through_leave_with_the_commands_exit_status(
    argv: list[str], code: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Under torchrun every ``detbench`` process ends through ``distributed.leave`` (no interpreter finalisation,
    where gloo's worker threads can abort a finished run), with the status the command would have exited with."""
    from detbench.cli import commands

    class Left(Exception):
        pass

    def hard_exit(status: int) -> None:
        raise Left(status)

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("DETBENCH_HOME", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["detbench", *argv])
    monkeypatch.setattr(dist, "_hard_exit", hard_exit)
    with pytest.raises(Left) as left:
        commands.main()
    assert left.value.args == (code,)


def test_a_single_process_ends_normally(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from detbench.cli import commands

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("DETBENCH_HOME", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["detbench", "ls", "suites"])
    monkeypatch.setattr(dist, "_hard_exit", lambda status: pytest.fail(f"hard exit {status}"))
    with pytest.raises(SystemExit) as stop:
        commands.main()
    assert stop.value.code in (0, None)


def test_torchrun_command_drops_nproc() -> None:
    cmd = dist.torchrun_command(["--offline", "run", "linear-probe", "--nproc", "4", "-q", "--nproc=4"], 4)
    assert cmd[:6] == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=4",
        "-m",
    ]
    assert cmd[6:] == ["detbench", "--offline", "run", "linear-probe", "-q"]


# ------------------------------------------------------------------------------------ whole runs


def _cli(home: Path, *args: str) -> None:
    """``detbench ARGS`` in a fresh process (``--nproc`` relaunches it under torchrun)."""
    env = {**os.environ, "DETBENCH_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "detbench", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _cli_one_thread(home: Path, *args: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``detbench ARGS`` in this process with one thread, like each torchrun process (OMP_NUM_THREADS=1), so
    that kernels round alike."""
    from threadpoolctl import threadpool_limits
    from typer.testing import CliRunner

    from detbench.cli.commands import app

    monkeypatch.setenv("DETBENCH_HOME", str(home))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            result = CliRunner().invoke(app, list(args))
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output


def _run_files(home: Path, detector: str) -> dict[str, pd.DataFrame]:
    (run_dir,) = (home / "runs" / "demo" / detector).glob("*/run.json")
    return {
        name: pd.read_parquet(run_dir.parent / name) for name in ("scores.parquet", "heldout_scores.parquet")
    }


def _same_runs(one: Path, two: Path, detector: str, atol: float) -> None:
    assert [p.parent.name for p in (one / "runs/demo" / detector).glob("*/run.json")] == [
        p.parent.name for p in (two / "runs/demo" / detector).glob("*/run.json")
    ]  # same run id
    a, b = _run_files(one, detector), _run_files(two, detector)
    for name in a:
        pd.testing.assert_frame_equal(a[name].drop(columns="score"), b[name].drop(columns="score"))
        np.testing.assert_allclose(b[name]["score"], a[name]["score"], rtol=0, atol=atol)


def test_two_process_linear_probe_run_matches_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cli_one_thread(tmp_path / "one", "run", "linear-probe", *DEMO, monkeypatch=monkeypatch)
    _cli(tmp_path / "two", "run", "linear-probe", *DEMO, "--nproc", "2")
    _same_runs(tmp_path / "one", tmp_path / "two", "linear-probe", atol=1e-6)
    shards = list((tmp_path / "two" / "features").glob("*/shard-*.ids.npy"))
    assert len(shards) > 2  # both ranks wrote feature shards


@pytest.mark.slow
def test_two_process_mpft_run_matches_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mpft = [
        "--set",
        "steps=4",
        "--set",
        "batch_size=4",
        "--set",
        "eval_every=2",
        "--set",
        "checkpoint_every=2",
    ]
    _cli_one_thread(tmp_path / "one", "run", "mpft", *DEMO, *mpft, monkeypatch=monkeypatch)
    _cli(tmp_path / "two", "run", "mpft", *DEMO, *mpft, "--nproc", "2")
    _same_runs(tmp_path / "one", tmp_path / "two", "mpft", atol=1e-5)


# -------------------------------------------------------------------------------------- DDP step


def _mpft(tmp: Path) -> tuple[MPFT, torch.optim.Optimizer]:
    """The tiny-ViT MPFT with plain SGD: AdamW divides each gradient by its own magnitude, which turns pure
    rounding noise (e.g. the attention key bias, whose true gradient is 0) into steps of +-lr in any run, so
    SGD is what shows that the DDP gradient equals the whole batch's."""
    det = MPFT(apply_overrides(MPFTConfig(), TINY))
    det.setup(RunContext(suite_root=tmp, suite_name="t", device="cpu", seed=0, run_dir=tmp, phases=quiet()))
    return det, torch.optim.SGD([p for p in det.net.parameters() if p.requires_grad], lr=0.5)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return torch.randn(8, 3, 224, 224, generator=g), torch.tensor([0] * 4 + [1] * 4)


def _gen(step: int) -> torch.Generator:
    return torch.Generator().manual_seed(100 + step)


def _ddp_worker(rank: int, world: int, env: dict[str, str], tmp: str) -> None:
    os.environ.update(env, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init("cpu")
    try:
        det, optimizer = _mpft(Path(tmp))
        x, y = _batch()
        part = dist.shard_slice(len(y))
        results = [det.train_step(x[part], y[part], optimizer, _gen(0))]
        # Step 2: rank 1's slice failed to load, so the update is the one of rank 0's images alone.
        mine = (x[:4], y[:4]) if rank == 0 else (None, None)
        results.append(det.train_step(*mine, optimizer, _gen(1)))
        if rank == 0:
            torch.save({"state": det.trainable_state(), "results": results}, Path(tmp) / "ddp.pt")
    finally:
        dist.cleanup()


def test_ddp_mpft_steps_equal_single_process_steps(tmp_path: Path, torchrun_env: dict[str, str]) -> None:
    # fork: the children inherit the imports (spawn would re-import torch and open_clip in each).
    torch.multiprocessing.start_processes(
        _ddp_worker, args=(2, torchrun_env, str(tmp_path)), nprocs=2, start_method="fork"
    )
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    det, optimizer = _mpft(tmp_path)
    before = det.trainable_state()
    x, y = _batch()
    results = [det.train_step(x, y, optimizer, _gen(0)), det.train_step(x[:4], y[:4], optimizer, _gen(1))]
    assert [n for _, n in ddp["results"]] == [n for _, n in results] == [8, 4]
    np.testing.assert_allclose([loss for loss, _ in ddp["results"]], [loss for loss, _ in results], rtol=1e-6)
    after = det.trainable_state()
    assert max(float((after[k] - before[k]).abs().max()) for k in after) > 1e-3  # the steps moved the weights
    for name, value in after.items():
        torch.testing.assert_close(ddp["state"][name], value, rtol=0, atol=STEP_ATOL, msg=name)
