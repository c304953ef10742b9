"""Kernel timings with pytest-benchmark (``nox -s bench`` runs them with ``--benchmark-enable``):

    pytest benchmarks/test_bench_kernels.py --benchmark-enable --benchmark-json results/bench/kernels.json

Without ``--benchmark-enable`` (the project's default) each runs once, as a smoke test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from detbench.metrics import binary_metrics, per_group_metrics
from detbench.models.features import SHARD_ROWS, FeatureStore

N_SCORES = 1_000_000


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, N_SCORES)
    return pd.DataFrame(
        {
            "generator": np.array([f"g{i}" for i in range(8)])[rng.integers(0, 8, N_SCORES)],
            "label": labels,
            "score": np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1),
        }
    )


def test_binary_metrics_1m(benchmark, scores: pd.DataFrame) -> None:
    out = benchmark(binary_metrics, scores["label"].to_numpy(), scores["score"].to_numpy())
    assert 0.5 < out["auc"] < 1


def test_per_generator_metrics_1m(benchmark, scores: pd.DataFrame) -> None:
    out = benchmark.pedantic(per_group_metrics, args=(scores,), rounds=3, iterations=1)
    assert list(out["generator"])[-2:] == ["mean", "worst"]


@pytest.mark.parametrize("rows", [20_000])
def test_feature_cache_read(benchmark, tmp_path: Path, rows: int) -> None:
    store = FeatureStore(tmp_path / "store", {"bench": rows})
    ids = [f"row-{i}" for i in range(rows)]
    rng = np.random.default_rng(0)
    for start in range(0, rows, SHARD_ROWS):
        chunk = ids[start : start + SHARD_ROWS]
        store.append(chunk, rng.standard_normal((len(chunk), 768), dtype=np.float32))
    wanted = [ids[i] for i in rng.permutation(rows)]
    feats, found = benchmark(store.lookup, wanted)
    assert found.all() and feats.shape == (rows, 768)


def test_tam_mask_vit_l14_batch(benchmark) -> None:
    from detbench.detectors.tam import MaskConfig, make_mask

    x = torch.randn(32, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    mask = benchmark(make_mask, x, MaskConfig(), 14, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert mask.shape == (32, 16, 16) and int(mask[0].sum()) == round(0.4 * 256)


def test_decode_and_preprocess_512px(benchmark, tmp_path: Path) -> None:
    from detbench.data.loading import ImageRowsDataset
    from detbench.data.preprocess import Preprocess

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    pp = Preprocess(crop=224, mean=(0.5,) * 3, std=(0.5,) * 3)
    dataset = ImageRowsDataset(tmp_path, ["a.png"], pp.eval_transform())
    x, _, err = benchmark(dataset.__getitem__, 0)
    assert err is None and x.shape == (3, 224, 224)
