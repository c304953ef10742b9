"""Texture-Aware Masking: scores, selection, fills (detectors/tam.py)."""

from __future__ import annotations

import pytest
import torch

from detbench.config import ConfigError, apply_overrides
from detbench.detectors.tam import (
    OPERATORS,
    MaskConfig,
    ViTTokenFill,
    make_mask,
    num_masked,
    select_patches,
    texture_scores,
    zero_fill,
)
from detbench.models.backbones import CLIP_MEAN, CLIP_STD, load_backbone


def normalise(rgb: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (rgb - mean) / std


def four_patches(p: int = 16) -> torch.Tensor:
    """A 2x2 grid of ``p`` px patches: flat grey | noise / stripes | diagonal edge (RGB in [0, 1])."""
    g = torch.Generator().manual_seed(0)
    img = torch.full((1, 3, 2 * p, 2 * p), 0.5)
    img[..., :p, p:] = torch.rand(1, 1, p, p, generator=g)
    img[..., p:, :p] = (torch.arange(p) % 4 < 2).float().view(1, 1, 1, p)
    img[..., p:, p:] = (torch.arange(p).view(p, 1) > torch.arange(p).view(1, p)).float()
    return normalise(img)


@pytest.mark.parametrize("operator", OPERATORS)
def test_flat_patch_scores_below_textured_ones(operator: str) -> None:
    scores = texture_scores(four_patches(), 16, operator, mean=CLIP_MEAN, std=CLIP_STD)[0]
    assert scores.shape == (2, 2)
    flat = scores[0, 0]
    assert flat.abs() < 1e-5
    for textured in (scores[0, 1], scores[1, 0], scores[1, 1]):
        assert textured > flat + 1e-3


def test_scores_stay_inside_each_patch() -> None:
    """A flat patch next to a textured one still scores zero (no operator reads across patch borders)."""
    x = four_patches(8)
    for operator in OPERATORS:
        assert texture_scores(x, 8, operator, mean=CLIP_MEAN, std=CLIP_STD)[0, 0, 0].abs() < 1e-5


@pytest.mark.parametrize(("patch", "crop"), [(14, 224), (16, 224), (32, 224), (16, 128)])
@pytest.mark.parametrize("strategy", ["tam", "random", "inverse", "stochastic"])
def test_exactly_k_patches_per_image(patch: int, crop: int, strategy: str) -> None:
    x = torch.randn(3, 3, crop, crop, generator=torch.Generator().manual_seed(1))
    cfg = MaskConfig(strategy=strategy, ratio=0.4)
    mask = make_mask(x, cfg, patch, mean=CLIP_MEAN, std=CLIP_STD, generator=torch.Generator().manual_seed(0))
    side = crop // patch
    assert mask.shape == (3, side, side) and mask.dtype == torch.bool
    assert mask.sum(dim=(1, 2)).tolist() == [num_masked(side * side, 0.4)] * 3


def test_num_masked_rounds_half_up() -> None:
    assert num_masked(256, 0.4) == 102  # 102.4
    assert num_masked(49, 0.4) == 20  # 19.6
    assert num_masked(10, 0.25) == 3  # 2.5 rounds up (Python's round gives 2)
    assert num_masked(64, 0.0) == 0


def test_tam_picks_most_textured_and_inverse_least() -> None:
    scores = torch.arange(16.0).view(1, 4, 4)
    tam = select_patches(scores, "tam", 0.25)
    inverse = select_patches(scores, "inverse", 0.25)
    assert tam.view(-1).nonzero().view(-1).tolist() == [12, 13, 14, 15]
    assert inverse.view(-1).nonzero().view(-1).tolist() == [0, 1, 2, 3]
    assert not select_patches(scores, "none", 0.25).any()


@pytest.mark.parametrize("strategy", ["random", "stochastic"])
def test_random_choices_reproducible_with_seeded_generator(strategy: str) -> None:
    scores = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(3))

    def draw(seed: int) -> torch.Tensor:
        return select_patches(scores, strategy, 0.4, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))


def test_stochastic_temperature_limits() -> None:
    scores = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(4))

    def draw(seed: int, temperature: float) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return select_patches(scores, "stochastic", 0.4, generator=gen, temperature=temperature)

    assert torch.equal(draw(0, 1e-4), select_patches(scores, "tam", 0.4))
    hot = [draw(s, 1e4) for s in range(200)]
    freq = torch.stack(hot).float().mean(0)  # close to uniform 26/64 whatever the texture
    assert (freq - 26 / 64).abs().max() < 0.15


def test_p_unmasked_leaves_whole_images_unmasked() -> None:
    x = torch.randn(64, 3, 64, 64)
    cfg = MaskConfig(strategy="random", ratio=0.5, p_unmasked=0.5)
    counts = make_mask(x, cfg, 16, mean=CLIP_MEAN, std=CLIP_STD,
                       generator=torch.Generator().manual_seed(0)).sum(dim=(1, 2))
    assert set(counts.tolist()) == {0, 8}
    assert 15 < int((counts == 0).sum()) < 49


def test_zero_fill_zeroes_exactly_the_masked_patches() -> None:
    x = torch.randn(2, 3, 70, 70) + 10  # 4x4 grid of 16 px; the last 6 px rows/columns are never masked
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, 1, 2] = mask[1, 3, 3] = True
    out = zero_fill(x, mask, 16)
    assert torch.equal(out[0, :, 16:32, 32:48], torch.zeros(3, 16, 16))
    assert torch.equal(out[1, :, 48:64, 48:64], torch.zeros(3, 16, 16))
    assert int((out == 0).sum()) == 2 * 3 * 16 * 16
    assert torch.equal(x[0, :, 64:], out[0, :, 64:])


def test_mask_config_validation_and_dotted_overrides() -> None:
    got = apply_overrides(MaskConfig(), {"strategy": "random", "ratio": "0.25"})
    assert got == MaskConfig("random", 0.25)
    assert apply_overrides(MaskConfig(), {"ratio": "1.0"}).ratio == 1.0  # [0, 1], as the README says
    for bad in ({"ratio": "1.01"}, {"temperature": "0"}, {"p_unmasked": "1.5"}, {"grid": "1"},
                {"operator": "fft"}):
        with pytest.raises(ConfigError):
            apply_overrides(MaskConfig(), bad)
    assert not MaskConfig(strategy="none").active and not MaskConfig(ratio=0.0).active


# ----------------------------------------------------------------------------------- ViT token fills


@pytest.fixture(scope="module")
def tiny_vit():
    return load_backbone("open_clip:detbench-tiny-vit@random")


def _irregular_mask(b: int, side: int) -> torch.Tensor:
    """An irregular (not transpose-symmetric) mask of 30 % of the patches."""
    return select_patches(torch.rand(b, side, side, generator=torch.Generator().manual_seed(2)), "tam", 0.3)


@pytest.mark.parametrize("fill", ["token", "drop"])
def test_token_fills_ignore_masked_content_only(tiny_vit, fill: str) -> None:
    """New pixels in masked patches leave the output unchanged; new pixels in unmasked ones do not."""
    visual = tiny_vit.model
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    mask = _irregular_mask(2, 14)
    masked_px = mask.repeat_interleave(16, 1).repeat_interleave(16, 2).unsqueeze(1)
    x_masked_changed = torch.where(masked_px, torch.randn_like(x), x)
    x_unmasked_changed = torch.where(masked_px, x, torch.randn_like(x))
    with torch.no_grad():
        fresh = tiny_vit.embed(x)
    fill_module = ViTTokenFill(visual, fill)

    def embed(inp: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
        fill_module.mask = m
        try:
            with torch.no_grad():
                return tiny_vit.embed(inp)
        finally:
            fill_module.mask = None

    try:
        base = embed(x, mask)
        assert torch.allclose(embed(x_masked_changed, mask), base, atol=1e-5)
        assert not torch.allclose(embed(x_unmasked_changed, mask), base, atol=1e-3)
        assert not torch.allclose(fresh, base, atol=1e-3)
        assert torch.equal(embed(x, None), fresh)  # no mask (evaluation): the model is untouched
    finally:
        fill_module.remove()


def test_drop_fill_reduces_token_count(tiny_vit) -> None:
    visual = tiny_vit.model
    seen: list[tuple[int, ...]] = []
    fill = ViTTokenFill(visual, "drop")
    probe = visual.ln_pre.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
    try:
        mask = _irregular_mask(2, 14)
        fill.mask = mask
        with torch.no_grad():
            tiny_vit.embed(torch.randn(2, 3, 224, 224))
        fill.mask = mask.clone()
        fill.mask[1, 0, 1] = True
        with pytest.raises(ValueError, match="same number"):
            tiny_vit.embed(torch.randn(2, 3, 224, 224))
    finally:
        fill.remove()
        probe.remove()
    assert seen[0] == (2, 1 + 196 - int(mask[0].sum()), 64)


def test_token_fill_writes_the_token_at_masked_grid_positions(tiny_vit) -> None:
    visual = tiny_vit.model
    fill = ViTTokenFill(visual, "token")
    seen: list[torch.Tensor] = []
    probe = visual.conv1.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    x = torch.randn(1, 3, 224, 224)
    try:
        with torch.no_grad():
            plain = visual.conv1(x)
            mask = torch.zeros(1, 14, 14, dtype=torch.bool)
            mask[0, 2, 5] = True
            fill.mask = mask
            tiny_vit.embed(x)
    finally:
        fill.remove()
        probe.remove()
    out = seen[-1]
    assert torch.equal(out[0, :, 2, 5], fill.mask_token.detach())
    keep = ~mask[0]
    assert torch.equal(out[0][:, keep], plain[0][:, keep])


def test_token_fill_rejects_non_vit() -> None:
    with pytest.raises(TypeError, match="VisionTransformer"):
        ViTTokenFill(torch.nn.Conv2d(3, 8, 3), "token")
