"""SAFE: a checkpoint in the original's format scores through the CLI exactly as SAFE's evaluation would.

The reference (written here from the original's published semantics, not imported): ``scripts/eval.sh`` runs
``main_finetune.py --eval True --transform_mode crop --input_size 256`` (here ``--input_size 64``), which reads
each image as RGB, ``CenterCrop(256)`` (torchvision pads a smaller image with black, ``(256 - w) // 2`` on the
left and the rest on the right, likewise vertically) and ``ToTensor`` (values in [0, 1], nothing normalised).
``models/resnet.py``'s ``resnet50(num_classes=2)`` takes ``pytorch_wavelets.DWTForward(J=1, mode='symmetric',
wave='bior1.3')`` of the image, keeps ``Yh[0][:, :, 2]`` (the bands are ordered LH, HL, HH: HH is high-pass
along both axes), resizes it bilinearly back to 256x256, and runs conv1 (3x3, stride 2) - bn1 - ReLU - maxpool -
layer1 - layer2 - average pool - ``fc1 = Linear(512, 2)``. P(fake) = ``scipy.special.softmax(logits,
axis=1)[:, 1]``. The checkpoint is ``utils.save_model``'s ``{'model', 'optimizer', 'epoch', 'scaler', 'args'}``,
loaded with ``checkpoint['model']``.

The DWT is computed here with numpy as PyWavelets defines it (half-sample symmetric extension by L - 1, full
convolution, every second sample from index L), with PyWavelets' published ``bior1.3`` taps.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import invoke
from equivalence import assert_refused_naming, assert_released_run_matches, double_state, write_test_images
from PIL import Image
from resnet_reference import calibrate_head, random_resnet_state, resnet_features
from scipy.special import softmax

from detbench.registry import DETECTORS

# pywt.Wavelet('bior1.3').dec_lo / .dec_hi and pywt.Wavelet('haar') (PyWavelets' documented filter values)
BIOR13_LO = [-0.08838834764831845, 0.08838834764831845, 0.7071067811865476, 0.7071067811865476,
             0.08838834764831845, -0.08838834764831845]
BIOR13_HI = [0.0, 0.0, -0.7071067811865476, 0.7071067811865476, 0.0, 0.0]
HAAR_LO, HAAR_HI = [0.7071067811865476, 0.7071067811865476], [-0.7071067811865476, 0.7071067811865476]
FILTERS = {"bior1.3": (BIOR13_LO, BIOR13_HI), "haar": (HAAR_LO, HAAR_HI)}
CROP = 64  # --set crop=64 (the original's --input_size): the semantics of 256 on a quarter of the side, 16x faster
IMAGES = [  # (generator, label folder, name, width, height): larger, exact, smaller (padded) and odd sizes
    ("sdxl", "0_real", "a.png", 80, 70),
    ("sdxl", "0_real", "b.jpg", 64, 64),
    ("sdxl", "1_fake", "c.png", 50, 41),
    ("dalle", "0_real", "d.png", 71, 65),
    ("dalle", "1_fake", "e.png", 67, 30),
    ("dalle", "1_fake", "f.png", 90, 100),
]


def dwt_axis(x: np.ndarray, taps: list[float], axis: int) -> np.ndarray:
    """PyWavelets' single-level analysis along ``axis``, mode ``symmetric``: ``floor((N + L - 1) / 2)`` outputs."""
    taps_arr = np.asarray(taps, dtype=x.dtype)
    length, n = len(taps), x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (length - 1, length - 1)
    ext = np.pad(x, pad, mode="symmetric")
    full = np.apply_along_axis(lambda v: np.convolve(v, taps_arr, mode="full"), axis, ext)
    keep = np.arange(length, length + 2 * ((n + length - 1) // 2), 2)
    return np.take(full, keep, axis=axis).astype(x.dtype)


def band(x: np.ndarray, wavelet: str, name: str) -> np.ndarray:
    """The ``[..., H, W]`` detail sub-band ``name`` (first letter: filter along the width, second: along the height)."""
    lo, hi = FILTERS[wavelet]
    x = dwt_axis(x, hi if name[0] == "H" else lo, axis=-1)
    return dwt_axis(x, hi if name[1] == "H" else lo, axis=-2)


def bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of ``[..., H, W]`` with half-pixel centres (``align_corners=False``), clamped at the edges."""

    def weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), (src - i0).astype(x.dtype)

    r0, r1, wr = weights(x.shape[-2], out_h)
    c0, c1, wc = weights(x.shape[-1], out_w)
    rows = x[..., r0, :] * (1 - wr)[:, None] + x[..., r1, :] * wr[:, None]
    return rows[..., c0] * (1 - wc) + rows[..., c1] * wc


def original_input(path: Path) -> np.ndarray:
    """``CenterCrop(CROP)`` (black padding first when smaller) then ``ToTensor``: ``[3, CROP, CROP]`` float32."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    h, w = pixels.shape[:2]
    ph, pw = max(0, CROP - h), max(0, CROP - w)
    pixels = np.pad(pixels, ((ph // 2, (ph + 1) // 2), (pw // 2, (pw + 1) // 2), (0, 0)))
    h, w = pixels.shape[:2]
    top, left = int(round((h - CROP) / 2.0)), int(round((w - CROP) / 2.0))
    return (pixels[top:top + CROP, left:left + CROP].transpose(2, 0, 1) / np.float32(255.0)).astype(np.float32)


def safe_features(x: np.ndarray, sd: dict) -> torch.Tensor:
    """Pooled layer2 features of one image ``[3, H, W]`` (the dtype of ``x`` is the computation's)."""
    high = bilinear(band(x, "bior1.3", "HH"), x.shape[-2], x.shape[-1])
    return resnet_features(torch.from_numpy(np.ascontiguousarray(high))[None], sd, stem_kernel=3, stages=2)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_images(tmp_path_factory.mktemp("folder"), IMAGES, seed=7, noise=(6, 6), quality=90)


# torch.cuda.amp.GradScaler.state_dict() of an enabled scaler, what NativeScalerWithGradNormCount saves
GRAD_SCALER_STATE = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                     "_growth_tracker": 0}


def adamw_state() -> dict:
    """An AdamW state after one step, with the decay and no-decay groups ``optim_factory`` builds (``lr_scale``)."""
    weight, bias = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([{"params": [weight], "weight_decay": 0.01, "lr_scale": 1.0},
                                   {"params": [bias], "weight_decay": 0.0, "lr_scale": 1.0}], lr=5e-3)
    weight.grad, bias.grad = torch.ones(2, 2), torch.ones(2)
    optimizer.step()
    return optimizer.state_dict()


def training_args() -> argparse.Namespace:
    """``main_finetune.py``'s arguments as ``scripts/train.sh`` and ``utils.init_distributed_mode`` leave them."""
    return argparse.Namespace(
        model="SAFE", input_size=256, transform_mode="crop", nb_classes=2, batch_size=32, blr=1e-2, lr=5e-3,
        weight_decay=0.01, warmup_epochs=1, epochs=20, data_path="data/datasets/train_ForenSynths/train",
        eval_data_path="data/datasets/train_ForenSynths/val", output_dir="results/SAFE/20240101_000000",
        resume="", auto_resume=True, eval=False, dist_eval=True, pin_mem=True, model_ema=False, rank=0,
        world_size=4, gpu=0, dist_url="env://", distributed=True, dist_backend="nccl", smoothing=0.1)


def make_checkpoint(root: Path, path: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Random weights (random BatchNorm statistics) with a two-logit ``fc1`` whose margin spreads these images'
    scores, saved as ``utils.save_model`` saves them; the reference scores in float32 and float64."""
    sd = random_resnet_state(stem_kernel=3, stages=2, head="fc1", head_scale=1.0, seed=5)
    paths = [f"{gen}/{label}/{name}" for gen, label, name, _w, _h in IMAGES]
    inputs = [original_input(root / p) for p in paths]
    with torch.no_grad():
        feats32 = torch.cat([safe_features(x, sd) for x in inputs])
        calibrate_head(sd, feats32, "fc1")
        gen = torch.Generator().manual_seed(11)
        real_w = torch.randn(1, 512, generator=gen) / 512**0.5
        real_b = 0.1 * torch.randn(1, generator=gen)
        sd["fc1.weight"] = torch.cat([real_w, real_w + sd["fc1.weight"]])  # fake - real margin: the calibrated one
        sd["fc1.bias"] = torch.cat([real_b, real_b + sd["fc1.bias"]])
        logits32 = feats32 @ sd["fc1.weight"].T + sd["fc1.bias"]
        ref32 = softmax(logits32.numpy(), axis=1)[:, 1].astype(np.float64)
        sd64 = double_state(sd)
        feats64 = torch.cat([safe_features(x.astype(np.float64), sd64) for x in inputs])
        ref64 = softmax((feats64 @ sd64["fc1.weight"].T + sd64["fc1.bias"]).numpy(), axis=1)[:, 1]
    torch.save({"model": sd, "optimizer": adamw_state(), "epoch": "best", "scaler": GRAD_SCALER_STATE,
                "args": training_args()}, path)
    return dict(zip(paths, ref32, strict=True)), dict(zip(paths, ref64, strict=True))



@pytest.mark.parametrize("wavelet", ["bior1.3", "haar"])
@pytest.mark.parametrize("name", ["LH", "HL", "HH"])
@pytest.mark.parametrize("shape", [(256, 256), (17, 12), (9, 14)])
def test_the_dwt_band_is_the_filter_bank(wavelet: str, name: str, shape: tuple[int, int]) -> None:
    from detbench.detectors.safe import dwt_band

    x = np.random.default_rng(0).normal(size=(2, 3, *shape))
    got = dwt_band(torch.from_numpy(x), wavelet, name).numpy()
    np.testing.assert_allclose(got, band(x, wavelet, name), rtol=0, atol=1e-12)


def test_the_kept_band_is_pytorch_wavelets_yh_index_2() -> None:
    """``Yh[0][:, :, 2]`` of bior1.3 in symmetric mode is the 2x2 diagonal difference of the extended image: for an
    even side, output ``o`` covers rows/columns ``2o - 2`` and ``2o - 1`` (mirrored at the borders)."""
    from detbench.detectors.safe import dwt_band

    x = np.random.default_rng(1).normal(size=(1, 1, 8, 8))
    e = np.pad(x[0, 0], 2, mode="symmetric")
    diag = 0.5 * (e[0::2, 0::2] - e[0::2, 1::2] - e[1::2, 0::2] + e[1::2, 1::2])[:6, :6]
    np.testing.assert_allclose(dwt_band(torch.from_numpy(x), "bior1.3", "HH")[0, 0].numpy(), diag, atol=1e-12)


def test_released_checkpoint_scores_as_the_original_eval(image_root: Path, tmp_path: Path,
                                                        detbench_home: Path) -> None:
    ckpt = tmp_path / "checkpoint-best.pth"
    ref32, ref64 = make_checkpoint(image_root, ckpt)
    result = invoke("run", "safe", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    "--set", f"weights={ckpt}", "--set", f"crop={CROP}")
    assert result.exit_code == 0, result.output
    # float32 scores vs the float64 reference within 4x the float32 rounding error this reference shows
    # (err32 = max |ref32 - ref64|) + 4 eps32: see tests/equivalence.py; a wrong band, crop, pad or
    # normalisation is >> this bound
    record = assert_released_run_matches(detbench_home, "safe", ref32, ref64, images=len(IMAGES))

    identity = record["key"]["detector_identity"]
    assert identity["weights_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert identity["eval_preprocessing"] == {"crop": CROP, "resize": "none", "pad": "black", "normalise": "none"}


def test_a_wrong_checkpoint_is_refused_naming_its_keys(tmp_path: Path, image_root: Path) -> None:
    sd = random_resnet_state(stem_kernel=3, stages=2, head="fc", head_scale=1.0, seed=1)  # fc, not fc1
    sd["layer3.0.conv1.weight"] = torch.zeros(1)  # a full ResNet-50 key SAFE never builds
    torch.save({"model": sd, "epoch": 3}, tmp_path / "wrong.pth")
    result = invoke("run", "safe", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    "--set", f"weights={tmp_path / 'wrong.pth'}")
    assert_refused_naming(result, "missing keys: fc1.weight, fc1.bias", "unexpected keys: fc.weight, fc.bias",
                          "layer3.0.conv1.weight")

    sd = random_resnet_state(stem_kernel=3, stages=2, head="fc1", head_scale=1.0, seed=1)  # NPR's one logit
    torch.save({"model": sd}, tmp_path / "one_logit.pth")
    result = invoke("run", "safe", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    "--set", f"weights={tmp_path / 'one_logit.pth'}")
    assert result.exit_code == 2 and "fc1.weight: checkpoint (1, 512) vs model (2, 512)" in result.output


def test_registry_facts() -> None:
    info = DETECTORS.info("safe")
    assert info is not None and info.year == 2025 and info.training == "trains" and info.weights_key == "weights"
    assert "checkpoint-best.pth" in info.released and "Apache-2.0" in info.released


def test_the_patch_mask_zeroes_whole_grid_cells() -> None:
    from detbench.detectors.safe import RandomPatchMask

    x = torch.ones(3, 64, 48)
    assert torch.equal(RandomPatchMask(0.0, 0.75, 16)(x), x)  # never applied
    for seed in range(20):
        torch.manual_seed(seed)
        out = RandomPatchMask(1.0, 0.75, 16)(x)
        cells = out[0].reshape(4, 16, 3, 16).permute(0, 2, 1, 3).reshape(12, -1)
        assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])  # the same cells in every channel
        assert all(bool((c == 0).all() or (c == 1).all()) for c in cells)  # whole cells
        assert int((cells == 0).all(dim=1).sum()) <= int(64 * 48 * 0.75 / 256)
    torch.manual_seed(0)
    masked = [int((RandomPatchMask(1.0, 0.75, 16)(x) == 0).any()) for _ in range(40)]
    assert 0 < sum(masked) < 40  # the ratio is drawn: some images lose no whole cell, most lose some


def test_the_training_recipe() -> None:
    """``scripts/train.sh``: AdamW with weight decay on weights only, ``blr * batch / 256``, one warm-up epoch, the
    best epoch kept, the original's augmentation chain (a small image padded up to the random crop)."""
    from detbench.detectors.safe import SAFE, SAFEConfig
    from detbench.kit.detector import RunContext
    from detbench.progress import quiet

    detector = SAFE(SAFEConfig())
    detector.setup(RunContext(suite_root=Path("."), suite_name="x", device="cpu", seed=0, run_dir=Path("."),
                              phases=quiet()))
    rows = pd.DataFrame({"path": [f"{i}.png" for i in range(300)], "label": [0, 1] * 150})
    setup = detector.train_setup(None, rows)  # type: ignore[arg-type]
    decay, no_decay = setup.optimizer.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert setup.batch_size == 128 and setup.drop_last and setup.keep == "best" and setup.epochs == 20
    assert setup.schedule.lr(0, 0, 10) == 0.0 and setup.schedule.lr(10, 1, 10) == pytest.approx(1e-2 * 128 / 256)
    assert setup.loss(torch.zeros(1, 2), torch.ones(1)) == pytest.approx(float(np.log(2)))
    x = setup.train_transform(Image.new("RGB", (100, 300), (200, 100, 50)), np.random.default_rng(0))
    assert x.shape == (3, 256, 256) and float(x.min()) >= 0 and float(x.max()) <= 1
