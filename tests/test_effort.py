"""Effort: checkpoints in the original's two formats score through the CLI exactly as the original's evaluation would.

The reference (written here from the original's published semantics, not imported), on a tiny tower of the same
family (width 32, 2 layers, 2 heads, patch 8, 32 px input instead of ViT-L/14's 1024, 24, 16, 14, 224):

- ``effort_detector.py`` (GenImage / Chameleon checkpoints): ``CLIPModel.vision_model`` whose ``self_attn``
  linears compute ``F.linear(x, weight_main + U_residual @ diag(S_residual) @ V_residual, bias)``;
  ``pooler_output`` (``post_layernorm`` of the class token after ``pre_layrnorm`` and the encoder layers:
  ``x + attn(layer_norm1(x))``, ``x + fc2(quick_gelu(fc1(layer_norm2(x))))``, queries scaled by
  ``head_dim ** -0.5``); ``head = Linear(1024, 2)``; P(fake) = ``softmax(pred, 1)[:, 1]``. Saved by
  ``trainer.save_ckpt`` as the detector's plain ``state_dict()`` (``backbone.``, ``head.``; the SVD layers also hold
  ``S_r``, ``U_r``, ``V_r``). Evaluation input (``abstract_dataset.load_rgb``): ``cv2.resize(img, (224, 224),
  interpolation=cv2.INTER_CUBIC)`` on 8-bit RGB, ``ToTensor``, CLIP's mean/std.
- ``clip_models.py`` / ``validate.py`` (ProGAN): ``{'model': ClipModel.state_dict()}`` (the whole CLIPModel under
  ``model.``, ``fc = Linear(1024, 1)``), P(fake) = ``sigmoid``; input: ``translate_duplicate(img, 256)`` (an image
  smaller than 256 on a side tiled), ``CenterCrop(224)``, ``ToTensor``, CLIP's mean/std.

The cubic resize is written here with numpy as OpenCV defines ``INTER_CUBIC`` (Keys' kernel with a = -0.75,
half-pixel centres, border pixels replicated, the result rounded and saturated to 8 bits).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import invoke
from equivalence import assert_refused_naming, assert_released_run_matches, double_state, write_test_images
from PIL import Image
from torch.nn import functional as F

from detbench.registry import DETECTORS

WIDTH, LAYERS, HEADS, PATCH, CROP = 32, 2, 2, 8, 32
TINY = [f"crop={CROP}", f"width={WIDTH}", f"layers={LAYERS}", f"heads={HEADS}", f"patch={PATCH}"]
MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
STD = np.array([0.26862954, 0.26130258, 0.27577711])
IMAGES = [  # (generator, label folder, name, width, height): down- and up-scaled, odd sizes, one above 256 px
    ("sdxl", "0_real", "a.png", 80, 70),
    ("sdxl", "0_real", "b.jpg", 32, 32),
    ("sdxl", "1_fake", "c.png", 50, 21),
    ("dalle", "0_real", "d.png", 71, 65),
    ("dalle", "1_fake", "e.png", 27, 40),
    ("dalle", "1_fake", "f.png", 260, 270),
]
PATHS = [f"{gen}/{label}/{name}" for gen, label, name, _w, _h in IMAGES]


def cubic_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (border-replicated) and Keys weights (a = -0.75) of each output sample."""
    a = -0.75
    src = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    base = np.floor(src)
    t = src - base
    idx = np.clip(base[:, None].astype(int) + np.arange(-1, 3)[None], 0, n_in - 1)
    d = np.abs(t[:, None] - np.arange(-1, 3)[None])
    w = np.where(d <= 1, (a + 2) * d**3 - (a + 3) * d**2 + 1,
                 np.where(d < 2, a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a, 0.0))
    return idx, w


def cv2_cubic(pixels: np.ndarray, size: int) -> np.ndarray:
    """``cv2.resize(pixels, (size, size), interpolation=cv2.INTER_CUBIC)`` of ``[H, W, 3]`` uint8."""
    x = pixels.astype(np.float64)
    ri, rw = cubic_weights(x.shape[0], size)
    ci, cw = cubic_weights(x.shape[1], size)
    rows = (x[ri] * rw[:, :, None, None]).sum(axis=1)
    out = (rows[:, ci] * cw[None, :, :, None]).sum(axis=2)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def tile_crop(pixels: np.ndarray) -> np.ndarray:
    """``translate_duplicate(img, 256)`` then ``CenterCrop(CROP)``."""
    h, w = pixels.shape[:2]
    if min(h, w) < 256:
        pixels = np.tile(pixels, (math.ceil(256 / h), math.ceil(256 / w), 1))
    h, w = pixels.shape[:2]
    top, left = int(round((h - CROP) / 2.0)), int(round((w - CROP) / 2.0))
    return pixels[top:top + CROP, left:left + CROP]


def original_input(path: Path, layout: str) -> np.ndarray:
    """The original's network input ``[3, CROP, CROP]`` float32."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    pixels = cv2_cubic(pixels, CROP) if layout == "deepfakebench" else tile_crop(pixels)
    x = (pixels.astype(np.float32) / np.float32(255.0) - MEAN.astype(np.float32)) / STD.astype(np.float32)
    return x.transpose(2, 0, 1).astype(np.float32)


def svd_weight(sd: dict, p: str) -> torch.Tensor:
    return sd[p + "weight_main"] + sd[p + "U_residual"] @ torch.diag(sd[p + "S_residual"]) @ sd[p + "V_residual"]


def pooler_output(x: torch.Tensor, sd: dict, pre: str) -> torch.Tensor:
    """``CLIPVisionTransformer(x)['pooler_output']`` with SVD-residual attention, from the state dict."""
    b = x.shape[0]
    patches = F.conv2d(x, sd[pre + "embeddings.patch_embedding.weight"], stride=PATCH).flatten(2).transpose(1, 2)
    cls = sd[pre + "embeddings.class_embedding"].expand(b, 1, WIDTH)
    h = torch.cat([cls, patches], 1) + sd[pre + "embeddings.position_embedding.weight"]

    def ln(t: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(t, (WIDTH,), sd[pre + name + ".weight"], sd[pre + name + ".bias"], eps=1e-5)

    h = ln(h, "pre_layrnorm")
    d = WIDTH // HEADS
    for i in range(LAYERS):
        p = f"{pre}encoder.layers.{i}."
        a = ln(h, f"encoder.layers.{i}.layer_norm1")

        def proj(t: torch.Tensor, name: str, p: str = p) -> torch.Tensor:
            return F.linear(t, svd_weight(sd, f"{p}self_attn.{name}."), sd[f"{p}self_attn.{name}.bias"])

        n = a.shape[1]
        q = (proj(a, "q_proj") * d**-0.5).reshape(b, n, HEADS, d).transpose(1, 2)
        k = proj(a, "k_proj").reshape(b, n, HEADS, d).transpose(1, 2)
        v = proj(a, "v_proj").reshape(b, n, HEADS, d).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
        h = h + proj((att @ v).transpose(1, 2).reshape(b, n, WIDTH), "out_proj")
        m = F.linear(ln(h, f"encoder.layers.{i}.layer_norm2"), sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])
        m = m * torch.sigmoid(1.702 * m)
        h = h + F.linear(m, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
    return ln(h[:, 0], "post_layernorm")


def random_tower(pre: str, main_factors: bool, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random weights of the tiny tower under ``pre``, in the original's key names."""

    def r(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=gen)

    sd = {
        pre + "embeddings.class_embedding": r(WIDTH, scale=0.5),
        pre + "embeddings.patch_embedding.weight": r(WIDTH, 3, PATCH, PATCH, scale=(3 * PATCH * PATCH) ** -0.5),
        pre + "embeddings.position_embedding.weight": r((CROP // PATCH) ** 2 + 1, WIDTH, scale=0.3),
    }
    for name in ("pre_layrnorm", "post_layernorm"):
        sd[f"{pre}{name}.weight"], sd[f"{pre}{name}.bias"] = 1 + r(WIDTH, scale=0.1), r(WIDTH, scale=0.1)
    for i in range(LAYERS):
        p = f"{pre}encoder.layers.{i}."
        for name in ("k_proj", "v_proj", "q_proj", "out_proj"):
            q = f"{p}self_attn.{name}."
            sd[q + "weight_main"], sd[q + "bias"] = r(WIDTH, WIDTH, scale=WIDTH**-0.5), r(WIDTH, scale=0.1)
            sd[q + "S_residual"], sd[q + "U_residual"] = r(1, scale=0.3), r(WIDTH, 1, scale=WIDTH**-0.5)
            sd[q + "V_residual"] = r(1, WIDTH, scale=WIDTH**-0.5)
            if main_factors:
                sd[q + "S_r"], sd[q + "U_r"], sd[q + "V_r"] = r(WIDTH - 1), r(WIDTH, WIDTH - 1), r(WIDTH - 1, WIDTH)
        for name in ("layer_norm1", "layer_norm2"):
            sd[f"{p}{name}.weight"], sd[f"{p}{name}.bias"] = 1 + r(WIDTH, scale=0.1), r(WIDTH, scale=0.1)
        sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"] = r(4 * WIDTH, WIDTH, scale=WIDTH**-0.5), r(4 * WIDTH)
        sd[p + "mlp.fc2.weight"] = r(WIDTH, 4 * WIDTH, scale=(4 * WIDTH) ** -0.5)
        sd[p + "mlp.fc2.bias"] = r(WIDTH, scale=0.1)
    return sd


def make_checkpoint(root: Path, path: Path, layout: str) -> tuple[dict[str, float], dict[str, float]]:
    """Random weights in ``layout``'s format (a head calibrated to spread these images' scores); the reference
    scores in float32 and float64."""
    gen = torch.Generator().manual_seed(5)
    pre = "backbone." if layout == "deepfakebench" else "model.vision_model."
    sd = random_tower(pre, layout == "deepfakebench", gen)
    inputs = torch.from_numpy(np.stack([original_input(root / p, layout) for p in PATHS]))
    with torch.no_grad():
        feats32 = pooler_output(inputs, sd, pre)
        w = torch.randn(WIDTH, generator=gen)
        margin = feats32 @ w
        w = 2.0 * w / margin.std()
        b = -float((feats32 @ w).mean())
        if layout == "deepfakebench":
            real_w = torch.randn(WIDTH, generator=gen) / WIDTH**0.5
            sd["head.weight"] = torch.stack([real_w, real_w + w])
            sd["head.bias"] = torch.tensor([0.1, 0.1 + b])
            key = "head."
        else:
            sd["fc.weight"], sd["fc.bias"] = w[None], torch.tensor([b])
            key = "fc."

        def prob(feats: torch.Tensor, s: dict) -> np.ndarray:
            logits = F.linear(feats, s[key + "weight"], s[key + "bias"])
            out = torch.softmax(logits, 1)[:, 1] if layout == "deepfakebench" else torch.sigmoid(logits[:, 0])
            return out.double().numpy()

        ref32 = prob(feats32, sd)
        sd64 = double_state(sd)
        ref64 = prob(pooler_output(inputs.double(), sd64, pre), sd64)
    if layout == "deepfakebench":
        torch.save(sd, path)
    else:  # the whole CLIPModel: a text tower the forward never reads, and older transformers' position_ids
        text = {"model.text_model.embeddings.token_embedding.weight": torch.randn(10, 8),
                "model.text_model.final_layer_norm.weight": torch.ones(8), "model.logit_scale": torch.tensor(2.0),
                "model.visual_projection.weight": torch.randn(8, WIDTH), "model.text_projection.weight":
                torch.randn(8, 8), "model.vision_model.embeddings.position_ids": torch.arange(17)[None]}
        torch.save({"model": {**sd, **text}}, path)
    return dict(zip(PATHS, ref32, strict=True)), dict(zip(PATHS, ref64, strict=True))


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_images(tmp_path_factory.mktemp("folder"), IMAGES, seed=7, noise=(6, 6), quality=90)



def run(root: Path, *settings: str):
    args = [a for s in [*TINY, *settings] for a in ("--set", s)]
    return invoke("run", "effort", "--suite", "folder", "--root", str(root), "--protocol", "eval", "-q", *args)


@pytest.mark.parametrize("layout", ["deepfakebench", "ufd"])
def test_released_checkpoint_scores_as_the_original_eval(layout: str, image_root: Path, tmp_path: Path,
                                                         detbench_home: Path) -> None:
    ckpt = tmp_path / "effort.pth"
    ref32, ref64 = make_checkpoint(image_root, ckpt, layout)
    result = run(image_root, f"weights={ckpt}", f"layout={layout}")
    assert result.exit_code == 0, result.output
    # float32 scores vs the float64 reference within 4x the float32 rounding error this reference shows + 4 eps32
    # (tests/equivalence.py); a wrong resize, crop, tiling, normalisation or layer is far beyond this bound
    record = assert_released_run_matches(detbench_home, "effort", ref32, ref64, images=len(IMAGES))
    identity = record["key"]["detector_identity"]
    assert identity["weights_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    kind = "stretch-cubic" if layout == "deepfakebench" else "tile-crop"
    assert identity["eval_preprocessing"] == {"preprocess": kind, "crop": CROP, "normalise": "clip"}


def test_a_wrong_checkpoint_is_refused_naming_its_keys(image_root: Path, tmp_path: Path) -> None:
    make_checkpoint(image_root, tmp_path / "dfb.pth", "deepfakebench")
    result = run(image_root, f"weights={tmp_path / 'dfb.pth'}", "layout=ufd")  # the other layout
    assert_refused_naming(result, "missing keys: model.vision_model.", "unexpected keys: backbone.")

    sd = torch.load(tmp_path / "dfb.pth")
    sd["backbone.embeddings.position_ids"] = torch.arange(17).flip(0)[None]  # not a counter: refused
    torch.save(sd, tmp_path / "bad_ids.pth")
    result = run(image_root, f"weights={tmp_path / 'bad_ids.pth'}")
    assert result.exit_code == 2 and "backbone.embeddings.position_ids" in result.output, result.output


def test_tile_and_stretch_steps() -> None:
    from detbench.detectors.effort import StretchCubic, TileTo

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    np.testing.assert_array_equal(np.asarray(TileTo(256)(img)), np.tile(np.asarray(img), (9, 6, 1)))
    big = Image.new("RGB", (300, 256))
    assert TileTo(256)(big) is big
    got = np.asarray(StretchCubic(40)(img)).astype(int)
    assert np.abs(got - cv2_cubic(np.asarray(img), 40).astype(int)).max() <= 1


def test_registry_facts() -> None:
    info = DETECTORS.info("effort")
    assert info is not None and info.year == 2025 and info.training == "trains" and info.weights_key == "weights"
    assert "CC BY-NC 4.0" in info.released and "Chameleon" in info.released


def test_training_starts_from_the_clip_tower_split_by_svd() -> None:
    """Before training, the SVD split tower computes the CLIP tower it came from (``pooler_output`` = ``ln_post`` of
    the class token), and only the residuals and the head train (Adam, ``effort.yaml``'s rate and weight decay)."""
    from detbench.detectors.effort import Effort, EffortConfig
    from detbench.kit.detector import RunContext
    from detbench.models.backbones import load_backbone
    from detbench.progress import quiet

    recipe = ("epochs", "train_batch_size", "checkpoint_every")
    settings = {k: v for k, v in Effort.tiny_settings.items() if k not in recipe}  # the tiny tower, the default recipe
    settings["crop"] = 224  # the backbone's own grid: no resampled positions
    detector = Effort(EffortConfig(**settings))
    detector.setup(RunContext(suite_root=Path("."), suite_name="x", device="cpu", seed=0, run_dir=Path("."),
                              phases=quiet()))
    visual = load_backbone(settings["backbone"]).model
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        v = visual.double()
        h = v.conv1(x.double()).flatten(2).transpose(1, 2)
        h = torch.cat([v.class_embedding.expand(2, 1, -1), h], 1) + v.positional_embedding
        h = v.transformer(v.ln_pre(h))
        expected = v.ln_post(h[:, 0])
        got = detector.net.double().tower(x.double())
    # the split runs in float32 (as the original's): W_main + U S V rebuilds W to ~1e-7 relative, so the towers
    # agree to ~1e-6 over the 4 layers; a wrongly mapped q/k/v slice or layer norm differs by O(1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    trainable = {n for n, p in detector.net.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("_residual", ".weight", ".bias")) for n in trainable)
    assert {n for n in trainable if not n.endswith("_residual")} == {"head.weight", "head.bias"}
    rows = pd.DataFrame({"path": ["a.png"] * 40, "label": [0, 1] * 20})
    setup = detector.train_setup(None, rows)  # type: ignore[arg-type]
    group = setup.optimizer.param_groups[0]
    assert isinstance(setup.optimizer, torch.optim.Adam) and group["lr"] == 2e-4 and group["weight_decay"] == 5e-4
    assert setup.batch_size == 32 and setup.epochs == 10
