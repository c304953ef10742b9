"""Evaluation-time perturbations: specs, determinism, and that each does what its spec says."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from PIL import Image

from detbench.config import ConfigError
from detbench.data.images import load_rgb_bytes
from detbench.data.jpeg_quality import estimate_jpeg_quality
from detbench.data.perturbations import Compose, Downscale, JpegQuality, expand_sweep, parse_perturbation
from detbench.registry import PERTURBATIONS


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A textured RGB image with both smooth regions and fine detail (fine detail is what blur removes)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:128]
    smooth = 128 + 60 * np.sin(x / 9.0)[..., None] * np.cos(y / 7.0)[..., None]
    arr = np.clip(smooth + rng.normal(0, 25, (96, 128, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def high_frequency_energy(img: Image.Image) -> float:
    """Mean squared response of a discrete Laplacian (a high-pass filter) on the grey image."""
    g = np.asarray(img.convert("L"), dtype=np.float64)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(np.mean(lap**2))


@pytest.mark.parametrize("spec", ["jpeg:75", "blur:2", "downscale:0.5", "blur:1+jpeg:90+downscale:0.5"])
def test_same_image_gives_the_same_bytes_every_time_and_after_pickling(photo: Image.Image, spec: str) -> None:
    p = parse_perturbation(spec)
    first = p(photo, "id-1").tobytes()
    assert p(photo.copy(), "id-1").tobytes() == first
    assert pickle.loads(pickle.dumps(p))(photo, "id-1").tobytes() == first  # DataLoader workers
    assert p(photo, "id-1").mode == "RGB"


@pytest.mark.parametrize("quality", [95, 75, 50, 30])
def test_jpeg_encodes_at_the_requested_quality(photo: Image.Image, quality: int) -> None:
    p = JpegQuality(quality)
    data = p.encode(photo)
    assert data == p.encode(photo)
    assert estimate_jpeg_quality(Image.open(io.BytesIO(data))) == quality
    out = p(photo, "x")
    assert out.tobytes() == load_rgb_bytes(data).tobytes() and out.size == photo.size
    assert out.tobytes() != photo.tobytes()


def test_lower_jpeg_quality_loses_more(photo: Image.Image) -> None:
    ref = np.asarray(photo, dtype=np.float64)
    outputs = [np.asarray(JpegQuality(q)(photo, "x"), dtype=np.float64) for q in (95, 75, 30)]
    errors = [np.mean((out - ref) ** 2) for out in outputs]
    assert errors[0] < errors[1] < errors[2]


def test_blur_lowers_high_frequency_energy_more_as_sigma_grows(photo: Image.Image) -> None:
    energies = [high_frequency_energy(photo)]
    for sigma in (1, 2, 3):
        out = parse_perturbation(f"blur:{sigma}")(photo, "x")
        assert out.size == photo.size
        energies.append(high_frequency_energy(out))
    assert energies == sorted(energies, reverse=True) and energies[1] < 0.5 * energies[0]
    mean_before = np.asarray(photo, dtype=np.float64).mean()
    mean_after = np.asarray(parse_perturbation("blur:2")(photo, "x"), dtype=np.float64).mean()
    # A blur keeps the brightness, up to the originals' truncation of each of the two 1-D passes (< 1 level each)
    assert 0 <= mean_before - mean_after < 2.0


@pytest.mark.parametrize("factor, size", [(0.5, (64, 48)), (0.25, (32, 24)), (0.3, (38, 29))])
def test_downscale_gives_the_expected_size_and_is_not_resized_back(photo: Image.Image, factor, size) -> None:
    assert Downscale(factor)(photo, "x").size == size
    assert Downscale(0.01)(Image.new("RGB", (20, 20)), "x").size == (1, 1)


def test_compositions_apply_left_to_right(photo: Image.Image) -> None:
    composed = parse_perturbation("blur:2+jpeg:90")
    assert isinstance(composed, Compose)
    manual = JpegQuality(90)(parse_perturbation("blur:2")(photo, "x"), "x")
    assert composed(photo, "x").tobytes() == manual.tobytes()
    assert parse_perturbation("jpeg:90+blur:2")(photo, "x").tobytes() != manual.tobytes()


def test_identity_is_canonical_json_with_the_spec() -> None:
    ident = parse_perturbation(" BLUR:2.0 + jpeg:090 ").identity()
    assert ident["spec"] == "blur:2+jpeg:90"
    assert [s["name"] for s in ident["steps"]] == ["blur", "jpeg"]
    assert ident["steps"][1]["quality"] == 90 and ident["steps"][1]["subsampling"] == "4:2:0"
    assert ident == parse_perturbation("blur:2+jpeg:90").identity()
    assert parse_perturbation("downscale:0.50").identity()["steps"][0]["resize_back"] is False
    assert parse_perturbation("jpeg:75").identity() != parse_perturbation("jpeg:76").identity()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("jepg:75", "Did you mean 'jpeg'"),
        ("blr:2", "Did you mean 'blur'"),
        ("jpeg", "needs a value after ':', e.g. jpeg:75"),
        ("jpeg:0", "1..100"),
        ("jpeg:101", "1..100"),
        ("jpeg:7.5", "an integer in 1..100"),
        ("blur:0", "(0, 20]"),
        ("blur:nan", "(0, 20]"),
        ("blur:x", "(0, 20]"),
        ("downscale:1", "(0, 1)"),
        ("downscale:-0.5", "(0, 1)"),
        ("jpeg:95,75", "detbench sweep"),
        ("blur:2+", "expected name:value"),
        ("", "expected name:value"),
    ],
)
def test_bad_specs_are_config_errors_naming_what_is_valid(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_perturbation(spec)
    assert message in str(info.value)


def test_expand_sweep_runs_each_value_separately_in_order() -> None:
    specs = expand_sweep(["jpeg:95,75,50", "blur:1, 2", "downscale:0.5", "blur:2+jpeg:90", "jpeg:75"])
    assert specs == ["jpeg:95", "jpeg:75", "jpeg:50", "blur:1", "blur:2", "downscale:0.5", "blur:2+jpeg:90"]
    with pytest.raises(ConfigError, match="composed spec takes single values"):
        expand_sweep(["blur:1,2+jpeg:90"])
    with pytest.raises(ConfigError, match="1..100"):
        expand_sweep(["jpeg:95,750"])
    with pytest.raises(ConfigError, match="no perturbation"):
        expand_sweep([])


def test_built_ins_are_registered_lazily() -> None:
    assert {"jpeg", "blur", "downscale", "resize"} <= set(PERTURBATIONS.names())
    assert "1..100" in PERTURBATIONS.describe("jpeg")["summary"]


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5, 2.0, 3.0, 7.3])
def test_blur_is_the_originals_in_place_uint8_blur_bit_for_bit(sigma: float) -> None:
    """CNNDetection / UnivFD / AIGCDetectBenchmark: gaussian_filter(img[:,:,c], output=img[:,:,c], sigma=s)
    on each uint8 channel in place (each 1-D pass truncated to 8 bits), written here as they call it."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(int(sigma * 10))
    for shape in ((37, 53, 3), (64, 64, 3)):
        arr = rng.integers(0, 256, shape, dtype=np.uint8)
        expected = arr.copy()
        for c in range(3):
            gaussian_filter(expected[:, :, c], output=expected[:, :, c], sigma=sigma)
        got = np.asarray(parse_perturbation(f"blur:{sigma}")(Image.fromarray(arr), "x"))
        np.testing.assert_array_equal(got, expected)
        float_once = np.clip(np.rint(gaussian_filter(arr.astype(np.float32), sigma=(sigma, sigma, 0))), 0, 255)
        assert (float_once != expected).mean() > 0.3  # the rounding the originals do not do


@pytest.mark.parametrize("size", [(256, 256), (333, 257), (1023, 681), (3, 5)])
def test_resize_is_aigcdetectbenchmarks_resize_bit_for_bit(size: tuple[int, int]) -> None:
    """AIGCDetectBenchmark's ``noise_type=resize``: ``transforms.Resize((int(height/2), int(width/2)))`` of the PIL
    image (torchvision's default bilinear, antialiased on PIL)."""
    from torchvision import transforms

    rng = np.random.default_rng(sum(size))
    img = Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))
    theirs = transforms.Resize((int(img.height / 2), int(img.width / 2)))(img) if min(size) >= 2 else None
    ours = parse_perturbation("resize:0.5").apply(img)
    if theirs is not None:
        assert ours.size == theirs.size and np.array_equal(np.asarray(ours), np.asarray(theirs))
    assert ours.size == (max(1, size[0] // 2), max(1, size[1] // 2))
    assert parse_perturbation("resize:0.5").identity() != parse_perturbation("downscale:0.5").identity()
    with pytest.raises(ConfigError, match="resize factor must be in"):
        parse_perturbation("resize:1.5")
