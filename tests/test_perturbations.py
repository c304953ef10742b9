"""Evaluation-time perturbations: specs, determinism, and that each does what its spec says."""

from __future__ import annotations

import hashlib
import io
import pickle

import numpy as np
import pytest
from PIL import Image

from detbench.config import ConfigError
from detbench.data.images import load_rgb_bytes
from detbench.data.jpeg_quality import estimate_jpeg_quality
from detbench.data.perturbations import (
    Compose,
    Downscale,
    JpegQuality,
    SocialChain,
    Step,
    Targeted,
    expand_sweep,
    parse_perturbation,
)
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


# ------------------------------------------------------------------------------------------ the newer steps


def decoded(img: Image.Image, fmt: str, **options) -> np.ndarray:
    """``img`` encoded with Pillow in ``fmt`` and decoded, as an RGB array."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format=fmt, **options)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def seeded(text: str) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha256(text.encode()).hexdigest(), 16))


@pytest.mark.parametrize("quality", [90, 50, 10])
def test_webp_is_pillows_lossy_webp_round_trip(photo: Image.Image, quality: int) -> None:
    got = np.asarray(parse_perturbation(f"webp:{quality}")(photo, "x"))
    np.testing.assert_array_equal(got, decoded(photo, "WEBP", quality=quality))
    assert not np.array_equal(got, np.asarray(photo))  # lossy


def test_noise_is_gaussian_noise_seeded_by_the_image_id_rounded_and_clipped(photo: Image.Image) -> None:
    arr = np.asarray(photo, dtype=np.float64)
    for sigma in (2.0, 25.0):
        expected = np.clip(np.rint(arr + seeded("img-1").normal(0, sigma, arr.shape)), 0, 255).astype(np.uint8)
        got = parse_perturbation(f"noise:{sigma:g}")(photo, "img-1")
        np.testing.assert_array_equal(np.asarray(got), expected)
    again = np.asarray(parse_perturbation("noise:25")(photo.copy(), "img-1"))
    other = np.asarray(parse_perturbation("noise:25")(photo, "img-2"))
    np.testing.assert_array_equal(again, expected)
    assert not np.array_equal(other, expected)  # another image, other noise
    assert 20 < np.std(other.astype(float) - arr) < 26  # clipping trims a little
    saturated = np.asarray(parse_perturbation("noise:255")(Image.new("RGB", (8, 8), (250, 5, 128)), "x"))
    assert saturated.min() == 0 and saturated.max() == 255


def test_gray_is_pillows_luma_on_three_channels(photo: Image.Image) -> None:
    got = np.asarray(parse_perturbation("gray")(photo, "x"))
    luma = np.asarray(photo.convert("L"))
    assert got.shape == (*luma.shape, 3)
    for c in range(3):
        np.testing.assert_array_equal(got[:, :, c], luma)
    r, g, b = (np.asarray(photo, dtype=np.int64)[:, :, c] for c in range(3))
    assert np.abs((r * 299 + g * 587 + b * 114) / 1000 - luma).max() <= 1  # ITU-R 601-2


@pytest.mark.parametrize("fraction, box", [(0.7, (19, 14, 108, 81)), (0.5, (32, 24, 96, 72)), (0.01, (63, 47, 64, 48))])
def test_crop_keeps_the_floored_centre(photo: Image.Image, fraction: float, box: tuple[int, int, int, int]) -> None:
    """128 x 96 at F = 0.7: int(89.6) x int(67.2) = 89 x 67 kept, at ((128 - 89) // 2, (96 - 67) // 2)."""
    got = parse_perturbation(f"crop:{fraction}")(photo, "x")
    left, top, right, bottom = box
    np.testing.assert_array_equal(np.asarray(got), np.asarray(photo)[top:bottom, left:right])
    assert parse_perturbation("crop:1")(photo, "x").tobytes() == photo.tobytes()


@pytest.mark.parametrize("factor, size", [(0.5, (64, 48)), (0.3, (38, 29)), (1.5, (192, 144))])
def test_resize_jpeg_is_a_bicubic_resize_then_pillow_jpeg(photo: Image.Image, factor: float, size) -> None:
    got = parse_perturbation(f"resize-jpeg:{factor}/60")(photo, "x")
    expected = decoded(photo.resize(size, resample=Image.Resampling.BICUBIC), "JPEG", quality=60, subsampling="4:2:0")
    np.testing.assert_array_equal(np.asarray(got), expected)
    spec = parse_perturbation(f"resize-jpeg:{factor}/60")
    assert spec.identity()["spec"] == f"resize-jpeg:{factor:g}/60" and spec.identity()["steps"][0]["quality"] == 60


def test_maxside_brings_the_longer_side_down_and_never_enlarges() -> None:
    rng = np.random.default_rng(1)
    wide = Image.fromarray(rng.integers(0, 256, (200, 301, 3), dtype=np.uint8))
    got = parse_perturbation("maxside:150")(wide, "x")
    expected = wide.resize((150, round(200 * 150 / 301)), resample=Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    tall = wide.transpose(Image.Transpose.TRANSPOSE)
    assert parse_perturbation("maxside:150")(tall, "x").size == (100, 150)
    assert parse_perturbation("maxside:301")(wide, "x").tobytes() == wide.tobytes()


def expected_social(img: Image.Image, seed: int, image_id: str) -> tuple[str, np.ndarray]:
    """The documented draws and chain of ``social:SEED``, computed with numpy and Pillow."""
    rng = seeded(f"social:{seed}:{image_id}")
    side = (1080, 1280, 1600, 2048)[rng.integers(4)]
    webp = rng.random() < 0.3
    quality = int(rng.integers(65, 96))
    crop = rng.random() < 0.5
    fraction = round(float(rng.uniform(0.8, 1.0)), 2)
    steps = []
    if crop:
        steps.append(f"crop:{fraction:g}")
        w, h = img.size
        kw, kh = int(w * fraction), int(h * fraction)
        img = img.crop(((w - kw) // 2, (h - kh) // 2, (w - kw) // 2 + kw, (h - kh) // 2 + kh))
    steps.append(f"maxside:{side}")
    w, h = img.size
    if max(w, h) > side:
        img = img.resize((side, round(h * side / w)), resample=Image.Resampling.BICUBIC)  # wide images here
    steps.append(f"{'webp' if webp else 'jpeg'}:{quality}")
    array = decoded(img, "WEBP", quality=quality) if webp else decoded(img, "JPEG", quality=quality)
    return "+".join(steps), array


def test_social_draws_its_chain_per_image_as_documented_and_records_it() -> None:
    social = parse_perturbation("social:7")
    assert isinstance(social, SocialChain) and social.per_image
    specs = {social.applied_spec(f"id-{i}", 0) for i in range(40)}
    kinds = {s.split("+")[-1].split(":")[0] for s in specs} | {s.split(":")[0] for s in specs}
    assert {"jpeg", "webp", "crop", "maxside"} <= kinds and len(specs) > 20  # both codecs, crops and not
    assert social.applied_spec("id-1", 0) == social.applied_spec("id-1", 1)  # every image, either label
    assert parse_perturbation("social:8").applied_spec("id-1", 0) != social.applied_spec("id-1", 0) or \
        parse_perturbation("social:8").applied_spec("id-2", 0) != social.applied_spec("id-2", 0)

    wide = Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 1700, 3), dtype=np.uint8))
    seen = set()
    for image_id in (f"id-{i}" for i in range(16)):
        spec, expected = expected_social(wide, 7, image_id)
        assert social.applied_spec(image_id, 1) == spec
        got = social(wide, image_id)
        np.testing.assert_array_equal(np.asarray(got), expected)
        np.testing.assert_array_equal(np.asarray(parse_perturbation(spec)(wide, image_id)), expected)  # replayable
        steps = dict(step.split(":") for step in spec.split("+"))
        cropped = int(1700 * float(steps["crop"])) if "crop" in steps else 1700
        seen |= {"webp" if "webp" in steps else "jpeg", "crop" if "crop" in steps else "whole",
                 "resized" if got.width < cropped else "kept"}
    assert seen == {"jpeg", "webp", "crop", "whole", "resized", "kept"}


def test_seeded_steps_stay_identical_after_pickling(photo: Image.Image) -> None:
    for spec in ("noise:8", "social:2", "gray+crop:0.9+webp:80", "resize-jpeg:0.5/90"):
        p = parse_perturbation(spec)
        assert pickle.loads(pickle.dumps(p))(photo, "id-9").tobytes() == p(photo.copy(), "id-9").tobytes()
        assert p(photo, "id-9").mode == "RGB"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("webp:0", "1..100"),
        ("webp:101", "1..100"),
        ("webp", "needs a value after ':', e.g. webp:75"),
        ("noise:0", "(0, 255]"),
        ("noise:300", "(0, 255]"),
        ("noise:x", "(0, 255]"),
        ("gray:1", "gray takes no value"),
        ("crop:0", "(0, 1]"),
        ("crop:1.5", "(0, 1]"),
        ("resize-jpeg:0.5", "separated by '/'"),
        ("resize-jpeg:0.5/75/2", "separated by '/'"),
        ("resize-jpeg:0.5,75", "resize-jpeg:0.5/75"),
        ("resize-jpeg:3/75", "(0, 2]"),
        ("resize-jpeg:0.5/0", "1..100"),
        ("resize-jpeg:0.5/x", "an integer in 1..100"),
        ("maxside:0", "at least 1 pixel"),
        ("social:-1", "integer >= 0"),
        ("social:1.5", "integer >= 0"),
        ("socail:1", "Did you mean 'social'"),
        ("jpeg:96@fake+blur:1", "once, at the end"),
        ("jpeg:96@fakes", "@fake or @real"),
        ("jpeg:96@", "@fake or @real"),
        ("jpeg:96@fake@real", "@fake or @real"),
        ("@fake", "expected name:value"),
        ("webp:0@real", "1..100"),
    ],
)
def test_bad_new_specs_are_config_errors_naming_what_is_valid(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_perturbation(spec)
    assert message in str(info.value)


# ------------------------------------------------------------------------------------------ class-targeted


def test_a_targeted_spec_applies_its_whole_chain_to_one_label_and_is_another_identity() -> None:
    targeted = parse_perturbation(" blur:1+JPEG:096 @ Fake ")
    assert isinstance(targeted, Targeted) and targeted.target_label == 1
    plain = parse_perturbation("blur:1+jpeg:96")
    assert targeted.identity() == {**plain.identity(), "spec": "blur:1+jpeg:96@fake", "target": "fake"}
    assert [s.spec for s in targeted.steps] == ["blur:1", "jpeg:96"]
    assert targeted.applied_spec("a", 1) == "blur:1+jpeg:96" and targeted.applied_spec("a", 0) == "clean"
    real = parse_perturbation("jpeg:96@real")
    assert real.target_label == 0 and real.identity() != parse_perturbation("jpeg:96@fake").identity()
    assert parse_perturbation("social:3@fake").applied_spec("z", 1) == SocialChain(3).spec_for("z")
    with pytest.raises(TypeError, match="applies by label"):
        targeted(Image.new("RGB", (4, 4)), "a")  # never applied to every image by mistake


def test_untargeted_identities_are_unchanged() -> None:
    """Run and feature-cache ids hash these dicts: the built-ins' must stay as they were."""
    assert parse_perturbation("jpeg:96").identity() == {
        "spec": "jpeg:96",
        "steps": [{"name": "jpeg", "version": 1, "quality": 96, "subsampling": "4:2:0", "encoder": "pillow"}],
    }
    assert parse_perturbation("blur:2+downscale:0.5").identity() == {
        "spec": "blur:2+downscale:0.5",
        "steps": [
            {"name": "blur", "version": 2, "sigma": 2.0, "truncate": 4.0, "mode": "reflect",
             "arithmetic": "uint8 in place per channel"},
            {"name": "downscale", "version": 1, "factor": 0.5, "resample": "bicubic", "resize_back": False},
        ],
    }
    assert parse_perturbation("resize:0.5").identity()["steps"][0]["rounding"] == "floor"
    assert parse_perturbation("jpeg:96").target_label is None and not parse_perturbation("jpeg:96").per_image


def test_expand_sweep_keeps_targets_and_slash_values() -> None:
    assert expand_sweep(["jpeg:95,75@fake", "resize-jpeg:0.5/75,0.25/50", "gray", "social:1,2", "noise:4@real"]) == [
        "jpeg:95@fake", "jpeg:75@fake", "resize-jpeg:0.5/75", "resize-jpeg:0.25/50", "gray", "social:1", "social:2",
        "noise:4@real",
    ]
    with pytest.raises(ConfigError, match="composed spec takes single values"):
        expand_sweep(["blur:1,2+jpeg:90@fake"])
    with pytest.raises(ConfigError, match="once, at the end"):
        expand_sweep(["jpeg:95,75@fake+blur:1"])


def test_only_single_steps_with_a_severity_sort_and_plot_by_level() -> None:
    from detbench.results.leaderboard import perturbation_rank

    assert perturbation_rank("jpeg:75") == (1, "jpeg", -75.0)
    assert perturbation_rank("noise:8") == (1, "noise", 8.0)
    assert perturbation_rank("webp:75") == (1, "webp", -75.0)
    for label in ("jpeg:75@fake", "gray", "social:1", "resize-jpeg:0.5/75", "maxside:1080"):
        assert perturbation_rank(label)[0] == 2, label
    assert all(isinstance(parse_perturbation(s), Step) for s in ("gray", "social:1"))
