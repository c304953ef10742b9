"""Edge-Enhanced ViT (a reconstruction): the edge module against scipy in float64, the fusion by hand, what trains,
and refused states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from scipy import ndimage

from detbench.config import ConfigError, apply_overrides
from detbench.detectors.edge_vit import (
    EdgeConfig,
    EdgeViT,
    EdgeViTConfig,
    edge_difference,
    edge_map,
    edge_score,
    fuse,
)
from detbench.kit.detector import RunContext
from detbench.models.weights import WeightsError
from detbench.progress import quiet

TINY = {**EdgeViT.tiny_settings, "lr": 1e-3}
LUMA = np.array([0.299, 0.587, 0.114])
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def images(n: int = 2, side: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((n, 3, side, side)))  # float64 in [0, 1]


def normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN, dtype=x.dtype).view(1, 3, 1, 1)) / torch.tensor(STD, dtype=x.dtype).view(1, 3, 1, 1)


def scipy_edges(g: np.ndarray, operator: str) -> np.ndarray:
    # OpenCV's default border (BORDER_REFLECT_101) is scipy's "mirror"
    if operator == "sobel":
        return np.hypot(ndimage.sobel(g, axis=0, mode="mirror"), ndimage.sobel(g, axis=1, mode="mirror"))
    return np.abs(ndimage.laplace(g, mode="mirror"))


def make(tmp: Path, root: Path, **overrides: object) -> tuple[EdgeViT, RunContext]:
    det = EdgeViT(apply_overrides(EdgeViTConfig(), {**TINY, **overrides}))
    ctx = RunContext(suite_root=root, suite_name="test", device="cpu", seed=0, run_dir=tmp, phases=quiet(), workers=0)
    det.setup(ctx)
    return det, ctx


# ------------------------------------------------------------------------------------------- edge module


@pytest.mark.parametrize("operator", ["sobel", "laplacian"])
def test_edge_map_equals_scipy_in_float64(operator: str) -> None:
    gray = images(2)[:, 0]
    ours = edge_map(gray, operator)
    assert ours.dtype == torch.float64
    for i in range(2):
        np.testing.assert_allclose(ours[i].numpy(), scipy_edges(gray[i].numpy(), operator), rtol=0, atol=1e-12)


@pytest.mark.parametrize("operator", ["sobel", "laplacian"])
def test_edge_score_equals_a_scipy_computation(operator: str) -> None:
    x = images(3, side=24, seed=1)
    edge = EdgeConfig(operator=operator, sigma=1.1, kernel=5)
    ours = edge_score(normalise(x), MEAN, STD, edge)
    for i in range(3):
        g = np.tensordot(LUMA, x[i].numpy(), axes=1)
        smoothed = ndimage.gaussian_filter(g, 1.1, radius=2, mode="mirror")
        diff = scipy_edges(g, operator) - scipy_edges(smoothed, operator)
        expected = np.log(diff.var() + edge.eps)
        assert ours.dtype == torch.float32
        assert float(ours[i]) == pytest.approx(expected, abs=1e-4)  # float32 luma and convolutions


def test_difference_is_zero_for_an_image_equal_to_its_processed_copy() -> None:
    gray = images(2)[:, 0]
    for operator in ("sobel", "laplacian"):
        assert torch.equal(edge_difference(gray, gray.clone(), operator), torch.zeros_like(gray))
    flat = normalise(torch.full((1, 3, 16, 16), 0.4, dtype=torch.float64))  # smoothing leaves it as it is
    edge = EdgeConfig()
    assert float(edge_score(flat, MEAN, STD, edge)) == pytest.approx(np.log(edge.eps), abs=1e-6)


def test_smoother_images_score_lower() -> None:
    x = images(1, side=32, seed=2)
    smooth = torch.from_numpy(ndimage.gaussian_filter(x.numpy(), (0, 0, 2, 2)))
    s = edge_score(normalise(torch.cat([x, smooth])), MEAN, STD, EdgeConfig())
    assert s[1] < s[0]


def test_config_refusals() -> None:
    for bad in ({"edge.kernel": "4"}, {"edge.sigma": "0"}, {"fusion.c": "0"}, {"lr": "0"}, {"flip": "2"}):
        with pytest.raises(ConfigError):
            apply_overrides(EdgeViTConfig(), bad)


# ------------------------------------------------------------------------------------------- fusion


def test_fusion_equals_the_hand_computation(tmp_path: Path) -> None:
    det, _ = make(tmp_path, tmp_path, **{"fusion.mode": "fixed", "fusion.weight": "-0.75", "fusion.bias": "2.5"})
    net = det.net.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        vit = net.head(net.backbone.embed(x)).squeeze(1)
        s = edge_score(x, net.backbone.preprocess.mean, net.backbone.preprocess.std, net.edge)
        fused = net(x).squeeze(1)
        assert torch.allclose(fused, 1.0 * vit - 0.75 * s + 2.5, atol=1e-5)
        assert torch.equal(fuse(torch.tensor([[2.0, -3.0]]), torch.tensor([0.5, 2.0, 1.0])), torch.tensor([[-4.0]]))
        net.train()
        # training sees the ViT alone (train mode may take another attention kernel: equal up to rounding)
        assert torch.allclose(net(x).squeeze(1), vit, atol=1e-6)
    none, _ = make(tmp_path, tmp_path, **{"fusion.mode": "none"})
    with torch.no_grad():
        assert torch.equal(none.net.eval()(x), none.net.vit_logit(x))


def tree(root: Path) -> pd.DataFrame:
    """8 images: noisy 'real' ramps and smooth 'fake' ones."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        label = i % 2
        ramp = np.linspace(0, 255, 40)[None, :, None] * np.ones((40, 1, 3))
        img = ramp + (0 if label else rng.normal(0, 40, (40, 40, 3)))  # noisy real, smooth fake
        path = f"{label}/{i}.png"
        (root / str(label)).mkdir(exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / path)
        rows.append({"path": path, "label": label, "image_id": f"id{i}", "generator": "g"})
    return pd.DataFrame(rows)


def test_fit_learns_the_vit_and_then_the_fusion(tmp_path: Path) -> None:
    """One fit: every ViT and head weight changes, the fusion is untouched by the gradient and then fitted."""
    frame = tree(tmp_path)
    det, ctx = make(tmp_path, tmp_path)
    before = {n: p.detach().clone() for n, p in det.net.named_parameters()}
    assert not det.net.fusion.requires_grad
    facts = det.fit(frame.iloc[:6], frame.iloc[6:], ctx)
    after = dict(det.net.named_parameters())
    trained = [n for n in before if n.startswith(("vit.", "head."))]
    assert trained and all(not torch.equal(before[n], after[n]) for n in trained)
    assert facts["fusion_rows"] == "heldout" and facts["fusion"] == pytest.approx(after["fusion"].tolist())
    assert after["fusion"][1] < 0  # smoother images (lower edge variance) pushed towards fake


def test_the_fusion_falls_back_to_the_training_rows(tmp_path: Path) -> None:
    frame = tree(tmp_path)
    det, ctx = make(tmp_path, tmp_path)
    facts = det.fit(frame.iloc[:6], frame.iloc[[6]], ctx)  # one held-out class only
    assert facts["fusion_rows"] == "train" and facts["fusion_n"] == 6


# ------------------------------------------------------------------------------------------- states


def test_a_checkpoint_of_another_detector_is_refused(tmp_path: Path) -> None:
    from detbench.detectors.bfree import BFreeNet

    other = tmp_path / "bfree.safetensors"
    save_file({k: v.contiguous() for k, v in BFreeNet(32, 4, 32, 2, 2, 4, 1e-5).state_dict().items()}, str(other))
    with pytest.raises(WeightsError):
        make(tmp_path, tmp_path, weights=str(other))


def test_its_own_state_loads_as_released_weights(tmp_path: Path) -> None:
    det, _ = make(tmp_path, tmp_path, **{"fusion.mode": "fixed", "fusion.weight": "0.5"})
    path = tmp_path / "own.safetensors"
    save_file({k: v.detach().contiguous() for k, v in det.net.state_dict().items()}, str(path))
    loaded, _ = make(tmp_path, tmp_path, weights=str(path))
    for name, value in det.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[name], value)
