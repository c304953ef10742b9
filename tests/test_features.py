from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from detbench.models.backbones import load_backbone
from detbench.models.features import FeatureCache


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    from detbench.data import images

    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        path = root / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
        rows.append({"path": path.name, "image_id": images.file_digest(path)})
    return root, pd.DataFrame(rows)


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("open_clip:detbench-tiny-vit@random")


class Jpeg50:
    def identity(self) -> dict:
        return {"spec": "test-jpeg:50"}

    def __call__(self, img: Image.Image, image_id: str) -> Image.Image:
        import io

        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=50)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def test_second_extraction_is_served_from_the_cache(tmp_path: Path, tree, backbone) -> None:
    root, rows = tree
    cache = FeatureCache(tmp_path / "features")
    first, failures, counts = cache.extract(backbone, root, rows, workers=0)
    assert counts == {"cached": 0, "computed": 6, "failed": 0} and not failures
    second, _, counts = cache.extract(backbone, root, rows.iloc[::-1], workers=0)
    assert counts == {"cached": 6, "computed": 0, "failed": 0}
    np.testing.assert_array_equal(second, first[::-1])


def test_any_key_part_change_is_a_miss(tmp_path: Path, tree, backbone) -> None:
    root, rows = tree
    cache = FeatureCache(tmp_path / "features")
    base, _, _ = cache.extract(backbone, root, rows, workers=0)
    _, _, counts = cache.extract(backbone, root, rows, embedding="pre_proj", workers=0)
    assert counts["computed"] == 6
    padded = dataclasses.replace(backbone.preprocess, resize="stretch")
    other = load_backbone("open_clip:detbench-tiny-vit@random")
    other.preprocess = padded
    feats, _, counts = cache.extract(other, root, rows, workers=0)
    assert counts["computed"] == 6 and not np.allclose(feats, base)
    _, _, counts = cache.extract(backbone, root, rows, perturbation=Jpeg50(), workers=0)
    assert counts["computed"] == 6


def test_changed_weights_are_a_miss(tmp_path: Path, tree, backbone) -> None:
    import open_clip
    from safetensors.torch import save_file

    from detbench.models.backbones import register_tiny_models

    register_tiny_models()
    model = open_clip.create_model("detbench-tiny-vit", pretrained=None)
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    trained = load_backbone(f"open_clip:detbench-tiny-vit@{weights}")
    root, rows = tree
    cache = FeatureCache(tmp_path / "features")
    cache.extract(backbone, root, rows, workers=0)
    _, _, counts = cache.extract(trained, root, rows, workers=0)
    assert counts["computed"] == 6


def test_unloadable_images_are_reported_not_cached(tmp_path: Path, tree, backbone) -> None:
    root, rows = tree
    (root / "bad.png").write_bytes(b"<html>not an image</html>")
    bad = pd.concat([rows, pd.DataFrame([{"path": "bad.png", "image_id": "f" * 32}])], ignore_index=True)
    cache = FeatureCache(tmp_path / "features")
    feats, failures, counts = cache.extract(backbone, root, bad, workers=0)
    assert counts["failed"] == 1 and 6 in failures and failures[6].startswith("undecodable")
    assert np.isnan(feats[6]).all() and np.isfinite(feats[:6]).all()
    _, _, counts = cache.extract(backbone, root, bad, workers=0)
    assert counts == {"cached": 6, "computed": 0, "failed": 1}


def test_orphan_feature_files_of_killed_writers_are_swept(tmp_path: Path) -> None:
    import os

    from detbench.models.features import FeatureStore

    directory = tmp_path / "store"
    FeatureStore(directory, {"k": 1}).append(["a"], np.zeros((1, 2), dtype=np.float32))
    orphan = directory / "shard-deadbeef0000.feats.npy"
    fresh = directory / "shard-cafecafe0000.feats.npy"
    for path in (orphan, fresh):
        np.save(path, np.zeros((1, 2), dtype=np.float32))
    os.utime(orphan, (1, 1))
    store = FeatureStore(directory, {"k": 1})
    assert not orphan.exists() and fresh.exists()  # a recent one may belong to a live writer
    _, found = store.lookup(["a"])
    assert found.all()
