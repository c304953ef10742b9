"""CO-SPY: release folders in the original's format score through the CLI as the original's fusion detector would.

The reference (written here from the original's published semantics, Megum1/CO-SPY ``detectors/{progan,sd-v1_4}``
and ``evaluate.py``, not imported): ``test_transform`` is ``Resize(load)`` (shorter side to ``load``, the longer
``int(load * long / short)``, PIL bilinear), ``CenterCrop(crop)`` (top ``round((h - crop) / 2)``), ``ToTensor``.
``CoSpyFusionDetector.forward`` normalises per branch: the semantic logit is ``fc`` on the encoder's image
embedding of the encoder-normalised image; the artefact logit is ``fc`` on the 512-d pooled features of a ResNet
stem cut after ``layer2`` (``conv1`` 3x3 stride 2) fed ``NPR * 2/3`` of the ImageNet-normalised image (ProGAN;
``NPR = x - up(down(x))``: each 2x2 block's top-left pixel subtracted) or, for SD v1.4, ``(a - vae(a)) / 7 * 100``
with ``a`` the [0, 1] image resized as a tensor (bilinear, no antialias) and ``vae(a)`` the diffusers
``AutoencoderKL``'s ``decode(encode(a).latent_dist.mean)`` (written below functionally: GroupNorm eps 1e-6, SiLU,
one-head attention, (0, 1, 0, 1)-padded stride-2 downsampling, nearest x2 upsampling); the fused logit is
``fc`` (2 -> 1) on [semantic, artefact]; P(fake) = sigmoid. The frozen encoder is detbench's tiny random CLIP ViT
on both sides (the backbone layer has its own tests); every other weight, BatchNorm statistics included, is random
and saved in the original's files: ``semantic_weights.pth`` / ``fusion_weights.pth`` (``fc.weight``, ``fc.bias``)
and ``artifact_weights.pth`` (the ``ArtifactDetector`` state dict: ``artifact_encoder.*``, ``fc.*``, and for SD
v1.4 the VAE under ``artifact_encoder.vae.*``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import invoke
from equivalence import (
    assert_matches_reference,
    assert_released_run_matches,
    double_state,
    released_run,
    write_test_images,
)
from PIL import Image
from resnet_reference import calibrate_head, random_resnet_state, resnet_features
from torch.nn import functional as F

from detbench.models.backbones import load_backbone
from detbench.registry import DETECTORS

IMAGES = [("gan", "0_real", "a.png", 48, 40), ("gan", "1_fake", "b.png", 41, 57), ("gan", "1_fake", "c.jpg", 64, 63),
          ("sd", "0_real", "d.png", 53, 53), ("sd", "1_fake", "e.png", 70, 47)]
CLIP = ((0.48145466, 0.45782750, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
VAE_CHANNELS, VAE_GROUPS, LATENT = (32, 64), 32, 4
# SD v1.4 sizes scaled to the tiny ViT's 224 px input: Resize(240), CenterCrop(224), artefact tensor Resize(48)
SD_SIZES = {"load_size": 240, "crop_size": 224, "artifact_size": 48}


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_images(tmp_path_factory.mktemp("folder"), IMAGES, seed=4, noise=(30, 0), quality=90)


@pytest.fixture(scope="module")
def tiny_spec(tiny_vit_file: Path) -> str:
    return f"open_clip:detbench-tiny-vit@{tiny_vit_file}"


# ---------------------------------------------------------------------------------------------- the original


def original_transform(path: Path, load: int, crop: int) -> torch.Tensor:
    """``Resize(load)`` - ``CenterCrop(crop)`` - ``ToTensor`` as torchvision computes them on a PIL image."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    short, long = min(w, h), max(w, h)
    new_long = int(load * long / short)
    img = img.resize((load, new_long) if w <= h else (new_long, load), Image.Resampling.BILINEAR)
    pixels = np.asarray(img)
    top, left = int(round((pixels.shape[0] - crop) / 2.0)), int(round((pixels.shape[1] - crop) / 2.0))
    pixels = pixels[top:top + crop, left:left + crop]
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255.0


def normalise(x: torch.Tensor, stats) -> torch.Tensor:
    mean, std = (torch.tensor(s, dtype=x.dtype).view(1, 3, 1, 1) for s in stats)
    return (x - mean) / std


def npr(x: torch.Tensor) -> torch.Tensor:
    rows, cols = 2 * (torch.arange(x.shape[-2]) // 2), 2 * (torch.arange(x.shape[-1]) // 2)
    return x - x[:, :, rows][:, :, :, cols]


def _gn(x, sd, p):
    return F.group_norm(x, VAE_GROUPS, sd[f"{p}.weight"], sd[f"{p}.bias"], eps=1e-6)


def _conv(x, sd, p, stride=1, padding=1):
    return F.conv2d(x, sd[f"{p}.weight"], sd[f"{p}.bias"], stride=stride, padding=padding)


def _resnet(x, sd, p):
    h = _conv(F.silu(_gn(x, sd, f"{p}.norm1")), sd, f"{p}.conv1")
    h = _conv(F.silu(_gn(h, sd, f"{p}.norm2")), sd, f"{p}.conv2")
    return (_conv(x, sd, f"{p}.conv_shortcut", padding=0) if f"{p}.conv_shortcut.weight" in sd else x) + h


def _attention(x, sd, p):
    b, c, h, w = x.shape
    t = _gn(x, sd, f"{p}.group_norm").reshape(b, c, h * w).transpose(1, 2)
    q, k, v = (F.linear(t, sd[f"{p}.to_{n}.weight"], sd[f"{p}.to_{n}.bias"]) for n in "qkv")
    out = F.linear(torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), -1) @ v, sd[f"{p}.to_out.0.weight"],
                   sd[f"{p}.to_out.0.bias"])
    return out.transpose(1, 2).reshape(b, c, h, w) + x


def _mid(x, sd, p):
    return _resnet(_attention(_resnet(x, sd, f"{p}.resnets.0"), sd, f"{p}.attentions.0"), sd, f"{p}.resnets.1")


def vae_reconstruct(x: torch.Tensor, sd: dict) -> torch.Tensor:
    """diffusers ``AutoencoderKL``: ``decode(encode(x).latent_dist.mean).sample``."""
    n = len(VAE_CHANNELS)
    x = _conv(x, sd, "encoder.conv_in")
    for i in range(n):
        for j in range(2):
            x = _resnet(x, sd, f"encoder.down_blocks.{i}.resnets.{j}")
        if i < n - 1:
            x = _conv(F.pad(x, (0, 1, 0, 1)), sd, f"encoder.down_blocks.{i}.downsamplers.0.conv", stride=2, padding=0)
    x = _mid(x, sd, "encoder.mid_block")
    x = _conv(F.silu(_gn(x, sd, "encoder.conv_norm_out")), sd, "encoder.conv_out")
    z = _conv(x, sd, "quant_conv", padding=0)[:, :LATENT]
    x = _conv(_conv(z, sd, "post_quant_conv", padding=0), sd, "decoder.conv_in")
    x = _mid(x, sd, "decoder.mid_block")
    for i in range(n):
        for j in range(3):
            x = _resnet(x, sd, f"decoder.up_blocks.{i}.resnets.{j}")
        if i < n - 1:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = _conv(x, sd, f"decoder.up_blocks.{i}.upsamplers.0.conv")
    return _conv(F.silu(_gn(x, sd, "decoder.conv_norm_out")), sd, "decoder.conv_out")


def random_vae_state(seed: int) -> OrderedDict:
    """Random weights under diffusers' AutoencoderKL key names (block_out_channels VAE_CHANNELS, 2 layers)."""
    gen = torch.Generator().manual_seed(seed)
    sd: OrderedDict = OrderedDict()

    def conv(p, cout, cin, k):
        sd[f"{p}.weight"] = torch.randn(cout, cin, k, k, generator=gen) / math.sqrt(cin * k * k)
        sd[f"{p}.bias"] = 0.05 * torch.randn(cout, generator=gen)

    def norm(p, c):
        sd[f"{p}.weight"] = 0.5 + torch.rand(c, generator=gen)
        sd[f"{p}.bias"] = 0.1 * torch.randn(c, generator=gen)

    def resnet(p, cin, cout):
        norm(f"{p}.norm1", cin), conv(f"{p}.conv1", cout, cin, 3), norm(f"{p}.norm2", cout)
        conv(f"{p}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{p}.conv_shortcut", cout, cin, 1)

    def mid(p, c):
        resnet(f"{p}.resnets.0", c, c)
        norm(f"{p}.attentions.0.group_norm", c)
        for name in ("to_q", "to_k", "to_v", "to_out.0"):
            sd[f"{p}.attentions.0.{name}.weight"] = torch.randn(c, c, generator=gen) / math.sqrt(c)
            sd[f"{p}.attentions.0.{name}.bias"] = 0.05 * torch.randn(c, generator=gen)
        resnet(f"{p}.resnets.1", c, c)

    ch = VAE_CHANNELS
    conv("encoder.conv_in", ch[0], 3, 3)
    cin = ch[0]
    for i, c in enumerate(ch):
        for j in range(2):
            resnet(f"encoder.down_blocks.{i}.resnets.{j}", cin if j == 0 else c, c)
        if i < len(ch) - 1:
            conv(f"encoder.down_blocks.{i}.downsamplers.0.conv", c, c, 3)
        cin = c
    mid("encoder.mid_block", ch[-1])
    norm("encoder.conv_norm_out", ch[-1]), conv("encoder.conv_out", 2 * LATENT, ch[-1], 3)
    conv("quant_conv", 2 * LATENT, 2 * LATENT, 1), conv("post_quant_conv", LATENT, LATENT, 1)
    rev = tuple(reversed(ch))
    conv("decoder.conv_in", rev[0], LATENT, 3)
    mid("decoder.mid_block", rev[0])
    cin = rev[0]
    for i, c in enumerate(rev):
        for j in range(3):
            resnet(f"decoder.up_blocks.{i}.resnets.{j}", cin if j == 0 else c, c)
        if i < len(rev) - 1:
            conv(f"decoder.up_blocks.{i}.upsamplers.0.conv", c, c, 3)
        cin = c
    norm("decoder.conv_norm_out", rev[-1]), conv("decoder.conv_out", 3, rev[-1], 3)
    return sd


def branch_inputs(x: torch.Tensor, variant: str, vae: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(semantic encoder input, artefact ResNet input) of a [0, 1] image batch."""
    if variant == "progan":
        return normalise(x, CLIP), npr(normalise(x, IMAGENET)) * 2.0 / 3.0
    a = F.interpolate(x, size=(SD_SIZES["artifact_size"],) * 2, mode="bilinear", align_corners=False,
                      antialias=False)  # transforms.Resize(224, antialias=False) on a square tensor
    return normalise(x, ((0.5,) * 3, (0.5,) * 3)), (a - vae_reconstruct(a, vae)) / 7.0 * 100.0


def write_release(folder: Path, variant: str, root: Path, spec: str, vae_in_checkpoint: bool = True,
                  references: bool = True):
    """Random release files in the original's format, heads calibrated to spread these images' logits, and the
    reference P(fake) of every image in float32 and float64 (None without ``references``)."""
    folder.mkdir(parents=True, exist_ok=True)
    backbone = load_backbone(spec)
    dim = backbone.embed_dims["proj"]
    enc = random_resnet_state(stem_kernel=3, stages=2, head="fc1", head_scale=1.0, seed=7)
    if variant == "sd-v1_4":
        del enc["fc1.weight"], enc["fc1.bias"]  # VAEReconEncoder has no fc1
    vae = random_vae_state(11) if variant == "sd-v1_4" else None
    gen = torch.Generator().manual_seed(5)
    sem = {"fc.weight": torch.randn(1, dim, generator=gen), "fc.bias": torch.zeros(1)}
    art_fc = {"fc.weight": torch.randn(1, 512, generator=gen), "fc.bias": torch.zeros(1)}
    fusion = {"fc.weight": torch.tensor([[0.9, -0.7]]), "fc.bias": torch.tensor([0.2])}
    load, crop = (256, 224) if variant == "progan" else (SD_SIZES["load_size"], SD_SIZES["crop_size"])
    paths = [f"{g}/{lab}/{n}" for g, lab, n, _w, _h in IMAGES]
    inputs = torch.cat([original_transform(root / p, load, crop) for p in paths])

    def logits(x, sem, enc, art_fc, fusion, vae, model):
        s_in, a_in = branch_inputs(x, variant, vae)
        emb = backbone.embed(s_in, "proj") if model is None else model(s_in)
        s = emb @ sem["fc.weight"].T + sem["fc.bias"]
        a = resnet_features(a_in, enc, stem_kernel=3, stages=2) @ art_fc["fc.weight"].T + art_fc["fc.bias"]
        return torch.cat([s, a], 1) @ fusion["fc.weight"].T + fusion["fc.bias"]

    ref32 = ref64 = None
    with torch.no_grad():
        if references:
            s_in, a_in = branch_inputs(inputs, variant, vae)
            calibrate_head(sem, backbone.embed(s_in, "proj"), "fc")
            calibrate_head(art_fc, resnet_features(a_in, enc, stem_kernel=3, stages=2), "fc")
            ref32 = torch.sigmoid(logits(inputs, sem, enc, art_fc, fusion, vae, None))[:, 0].double().numpy()
            backbone64 = load_backbone(spec)
            backbone64.model.double()
            dbl = [double_state(d) if d is not None else None for d in (sem, enc, art_fc, fusion, vae)]
            embed64 = lambda x: backbone64.embed(x, "proj")
            ref64 = torch.sigmoid(logits(inputs.double(), *dbl, embed64))[:, 0].numpy()
    art = OrderedDict((f"artifact_encoder.{k}", v) for k, v in enc.items())
    if vae is not None and vae_in_checkpoint:
        art.update((f"artifact_encoder.vae.{k}", v) for k, v in vae.items())
    art.update(art_fc)
    torch.save(sem, folder / "semantic_weights.pth")  # SemanticDetector.save_weights: fc only
    torch.save(art, folder / "artifact_weights.pth")  # BaseDetector.save_weights: the whole state dict
    torch.save(fusion, folder / "fusion_weights.pth")  # CoSpyFusionDetector.save_weights: fc only
    if not references:
        return None, None, vae
    return dict(zip(paths, ref32, strict=True)), dict(zip(paths, ref64, strict=True)), vae



def run_cli(root: Path, spec: str, *settings: str):
    args = ["run", "co-spy", "--suite", "folder", "--root", str(root), "--protocol", "eval", "-q",
            "--set", f"backbone={spec}"]
    for s in settings:
        args += ["--set", s]
    return invoke(*args)


# ---------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("variant", ["progan", "sd-v1_4"])
def test_released_folder_scores_as_the_original_fusion_detector(variant: str, image_root: Path, tiny_spec: str,
                                                                 tmp_path: Path, detbench_home: Path) -> None:
    folder = tmp_path / variant
    ref32, ref64, _ = write_release(folder, variant, image_root, tiny_spec)
    extra = [f"{k}={v}" for k, v in SD_SIZES.items()] + [f"vae_channels={','.join(map(str, VAE_CHANNELS))}"] \
        if variant == "sd-v1_4" else []
    result = run_cli(image_root, tiny_spec, f"variant={variant}", f"weights={folder}", *extra)
    assert result.exit_code == 0, result.output
    # float32 scores vs the float64 reference within 4x the float32 rounding error this reference shows
    # (err32 = max |ref32 - ref64|) + 4 eps32: see tests/equivalence.py; a wrong layer or resize is >> this bound
    record = assert_released_run_matches(detbench_home, "co-spy", ref32, ref64, images=len(IMAGES))

    identity = record["key"]["detector_identity"]
    shas = {part: hashlib.sha256((folder / f"{part}_weights.pth").read_bytes()).hexdigest()
            for part in ("semantic", "artifact", "fusion")}
    assert identity["release_files"] == shas and record["key"]["detector"]["config"]["weights"] == "file"
    assert str(tmp_path) not in json.dumps(record["key"])
    assert identity["vae"] == (None if variant == "progan" else {"source": "artifact checkpoint", "sha256": None})
    assert identity["stand_in"] and record["fit"]["weights"] == "released"


def test_a_separate_vae_file_loads_when_the_checkpoint_holds_none(image_root: Path, tiny_spec: str, tmp_path: Path,
                                                                  detbench_home: Path) -> None:
    from safetensors.torch import save_file

    folder = tmp_path / "sd"
    ref32, ref64, vae = write_release(folder, "sd-v1_4", image_root, tiny_spec, vae_in_checkpoint=False)
    settings = [*(f"{k}={v}" for k, v in SD_SIZES.items()), "variant=sd-v1_4", f"weights={folder}",
                f"vae_channels={','.join(map(str, VAE_CHANNELS))}"]
    result = run_cli(image_root, tiny_spec, *settings)
    assert result.exit_code == 2 and "Traceback" not in result.output
    first = result.output.strip().splitlines()[0]
    assert first.startswith("error:") and "--set vae=FILE" in first, result.output  # one line names the flag

    save_file({k: v.contiguous() for k, v in vae.items()}, tmp_path / "diffusion_pytorch_model.safetensors")
    result = run_cli(image_root, tiny_spec, *settings, f"vae={tmp_path / 'diffusion_pytorch_model.safetensors'}")
    assert result.exit_code == 0, result.output
    record, scores = released_run(detbench_home, "co-spy")
    assert_matches_reference(scores["score"], scores["path"].map(ref32), scores["path"].map(ref64).to_numpy())
    sha = hashlib.sha256((tmp_path / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    assert record["key"]["detector_identity"]["vae"] == {"source": "file", "sha256": sha}


def test_a_release_of_the_other_variant_is_refused_naming_its_keys(image_root: Path, tiny_spec: str,
                                                                    tmp_path: Path) -> None:
    write_release(tmp_path / "progan", "progan", image_root, tiny_spec, references=False)
    write_release(tmp_path / "sd", "sd-v1_4", image_root, tiny_spec, references=False)
    sd = [*(f"{k}={v}" for k, v in SD_SIZES.items()), f"vae_channels={','.join(map(str, VAE_CHANNELS))}"]
    result = run_cli(image_root, tiny_spec, "variant=sd-v1_4", f"weights={tmp_path / 'progan'}", *sd)
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in text
    assert "artifact checkpoint" in text and "unexpected keys: artifact_encoder.fc1.weight" in text, text
    result = run_cli(image_root, tiny_spec, f"weights={tmp_path / 'sd'}")
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "missing keys: artifact_encoder.fc1.weight" in text, text
    assert "unexpected keys: artifact_encoder.vae." in text
    result = run_cli(image_root, tiny_spec, f"weights={tmp_path / 'nowhere'}")
    assert result.exit_code == 2 and result.output.startswith("error:") and "not a folder" in result.output


def test_registration_facts() -> None:
    info = DETECTORS.info("co-spy")
    assert info is not None and info.year == 2025 and info.weights_key == "weights" and info.training == "trains"
    assert "MIT" in info.released and "Cheng" in info.paper


def test_a_vae_folder_or_a_cached_pipeline_repository_loads(image_root: Path, tiny_spec: str, tmp_path: Path,
                                                            detbench_home: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``--set vae=`` takes a diffusers folder and a repository id in the local Hugging Face cache (a pipeline's
    ``vae/``), each loaded strictly and named by its sha256."""
    from huggingface_hub import constants
    from safetensors.torch import save_file

    folder = tmp_path / "sd"
    _, _, vae = write_release(folder, "sd-v1_4", image_root, tiny_spec, vae_in_checkpoint=False, references=False)
    pipeline = tmp_path / "pipeline"
    (pipeline / "vae").mkdir(parents=True)
    weights = pipeline / "vae" / "diffusion_pytorch_model.safetensors"
    save_file({k: v.contiguous() for k, v in vae.items()}, weights)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    repo = tmp_path / "hub" / "models--someone--pipe"
    (repo / "snapshots" / "abc123" / "vae").mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (repo / "blobs" / sha).write_bytes(weights.read_bytes())
    (repo / "snapshots" / "abc123" / "vae" / weights.name).symlink_to(repo / "blobs" / sha)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    settings = [*(f"{k}={v}" for k, v in SD_SIZES.items()), "variant=sd-v1_4", f"weights={folder}",
                f"vae_channels={','.join(map(str, VAE_CHANNELS))}"]
    for spec in (pipeline / "vae", "someone/pipe"):
        result = run_cli(image_root, tiny_spec, *settings, f"vae={spec}")
        assert result.exit_code == 0, result.output
    records = [json.loads(p.read_text()) for p in (detbench_home / "runs" / "folder" / "co-spy").glob("*/run.json")]
    assert sorted(r["key"]["detector_identity"]["vae"]["source"] for r in records) == ["file", "hf:someone/pipe"]
    assert {r["key"]["detector_identity"]["vae"]["sha256"] for r in records} == {sha}


def test_without_diffusers_the_sd_variant_stops_naming_the_extra(image_root: Path, tiny_spec: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    write_release(tmp_path / "sd", "sd-v1_4", image_root, tiny_spec, references=False)
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now raises ImportError
    result = run_cli(image_root, tiny_spec, "variant=sd-v1_4", f"weights={tmp_path / 'sd'}",
                     *(f"{k}={v}" for k, v in SD_SIZES.items()), f"vae_channels={','.join(map(str, VAE_CHANNELS))}")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("error:") and "pip install 'detbench[diffusion]'" in lines[0], result.output
