"""CUDA paths: features and MPFT on a GPU (``gpu`` marker: skipped without one), NCCL with 2+ GPUs, and the
out-of-memory batch halving (simulated, so it runs everywhere)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from detbench import distributed as dist
from detbench.data.loading import HalveOnOom
from detbench.models.features import FeatureCache

TINY = "open_clip:detbench-tiny-vit@random"


class _FakeOom:
    """Raises CUDA out-of-memory for batches larger than ``fits``; otherwise doubles its input."""

    def __init__(self, fits: int) -> None:
        self.fits, self.sizes = fits, []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        if len(x) > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return x * 2


def test_out_of_memory_halves_the_batch_and_keeps_the_size() -> None:
    fn = _FakeOom(fits=3)
    run = HalveOnOom(fn)
    x = torch.arange(10.0)
    with pytest.warns(UserWarning, match="out of memory"):
        torch.testing.assert_close(run(x), x * 2)
    assert run.limit == 2 and fn.sizes[:3] == [10, 5, 2]
    fn.sizes.clear()
    torch.testing.assert_close(run(x[:4]), x[:4] * 2)
    assert fn.sizes == [2, 2]  # the smaller size is kept: no new failed attempt


def test_out_of_memory_at_a_single_image_is_raised() -> None:
    with pytest.raises(torch.cuda.OutOfMemoryError), pytest.warns(UserWarning):
        HalveOnOom(_FakeOom(fits=0))(torch.ones(4))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("gpu_imgs")
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root, pd.DataFrame(
        {"path": [f"{i}.png" for i in range(24)], "image_id": [f"id{i}" for i in range(24)]}
    )


@pytest.mark.gpu
@pytest.mark.parametrize("spec", [TINY, "timm:efficientnet_lite0@bundled"])
def test_features_on_cuda_match_cpu(tmp_path: Path, tree: tuple[Path, pd.DataFrame], spec: str) -> None:
    from detbench.models.backbones import load_backbone

    root, rows = tree
    backbone = load_backbone(spec)
    cpu, _, _ = FeatureCache(tmp_path / "cpu").extract(backbone, root, rows, batch_size=8, workers=0)
    gpu, _, _ = FeatureCache(tmp_path / "gpu").extract(
        backbone, root, rows, batch_size=8, workers=2, device="cuda"
    )
    cosine = (cpu * gpu).sum(1) / np.linalg.norm(cpu, axis=1) / np.linalg.norm(gpu, axis=1)
    assert cosine.min() > 0.995  # bf16 autocast on the GPU, fp32 on the CPU


@pytest.mark.gpu
def test_mpft_step_on_cuda_tracks_the_cpu_step(tmp_path: Path) -> None:
    from detbench.config import apply_overrides
    from detbench.detectors.mpft import MPFT, MPFTConfig
    from detbench.kit.detector import RunContext
    from detbench.progress import quiet

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 224, 224, generator=g), torch.tensor([0, 1] * 4)
    losses, moved = {}, {}
    for device in ("cpu", "cuda"):
        det = MPFT(apply_overrides(MPFTConfig(), {"backbone": TINY, "k": 2, "batch_size": 8}))
        det.setup(
            RunContext(
                suite_root=tmp_path, suite_name="t", device=device, seed=0, run_dir=tmp_path, phases=quiet()
            )
        )
        det.move_to(device)
        before = det.trainable_state()
        losses[device], n = det.train_step(x.to(device), y.to(device), det.make_optimizer()[0], None)
        after = det.trainable_state()
        moved[device] = torch.cat([(after[k] - before[k]).flatten() for k in after])
        assert n == 8 and np.isfinite(losses[device])
    assert abs(losses["cuda"] - losses["cpu"]) < 0.05 * abs(losses["cpu"])  # bf16 autocast on CUDA
    assert torch.nn.functional.cosine_similarity(moved["cuda"], moved["cpu"], dim=0) > 0.9


def _nccl_worker(rank: int, world: int, env: dict[str, str]) -> None:
    os.environ.update(env, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    dist.init(dist.local_device("cuda"))
    try:
        assert dist.all_reduce_sum(rank + 1) == world * (world + 1) / 2
        gathered = dist.gather(np.full(2, rank))
        assert gathered is None or np.concatenate(gathered).tolist() == [
            r for r in range(world) for _ in "ab"
        ]
        assert dist.broadcast(f"from {rank}") == "from 0"
        dist.barrier()
    finally:
        dist.cleanup()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_nccl_collectives_on_two_gpus(torchrun_env: dict[str, str]) -> None:
    torch.multiprocessing.spawn(_nccl_worker, args=(2, torchrun_env), nprocs=2, join=True)
