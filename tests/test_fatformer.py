"""FatFormer: a checkpoint in the original's format scores through the CLI exactly as the original's evaluation would.

The reference (written here from the original's published semantics, not imported), on a tiny CLIP of the same
family (image tower width 64, 4 layers, 2 heads, patch 8, 32 px input, adapters after blocks 2 and 4 (0-based 1,
3), 32 GroupNorm groups; text tower width 48, 2 layers, 2 heads; instead of ViT-L/14's 1024, 24, 16, 14, 224,
blocks 8/16/24, 128 groups and the 768-wide 12-layer text tower; the adapters' 64-channel bottleneck and 8 heads,
the 8 context tokens, the 12 heads of the alignment and the 77-token prompts are the original's):

- ``models/clip/model.py``: ``VisionTransformer.forward(x, return_full=True)``: ``conv1``, class token,
  positions, ``ln_pre``, blocks ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x)) + adapter(x)`` (QuickGELU), ``ln_post``
  on every token, ``@ proj``. ``ForgeryAwareAdapterLayer``: the patch tokens as a grid,
  ``pytorch_wavelets.DWTForward(J=1, wave='haar')`` (``AFB2D``: the width pass then the height pass, each a
  stride-2 ``conv2d`` with the registered filter buffers, zero mode), ``GroupNorm``, attention across the 4 bands,
  ``LayerNorm``, attention across positions, ``LayerNorm``, ReLU FFN, ``LayerNorm``, ``DWTInverse`` (``SFB2D``: the
  height pass then the width pass, ``conv_transpose2d`` with the synthesis buffers), zero for the class token,
  times ``freq_scale``, plus ``0.1 * conv1d(relu(conv1d(x)))``.
- ``models/clip_models.py``: ``LanguageGuidedAlignment`` (context vectors attending over the image tokens,
  ``norm1``, ReLU FFN, ``norm2``; prompts ``[token_prefix, ctx, token_suffix]``), ``TextEncoder`` per image (causal
  transformer, ``ln_final``, the end token (position ``1 + 8 + 2``: ``real`` and ``fake`` are single BPE tokens)
  ``@ text_projection``), logits ``exp(logit_scale) * cos``, the text-guided interactor over the patch tokens, the
  sum; ``main.evaluate``: ``softmax(1)[:, 1]``. Checkpoint: ``{'model': CLIPModel.state_dict()}``, which holds the
  image tower, the text tower and ``logit_scale`` twice (``clip_model.`` and ``image_encoder.`` /
  ``text_encoder.`` / ``logit_scale``).
- ``utils/dataset.py`` (test): ``Resize((256, 256))`` (PIL bilinear), ``CenterCrop(224)``, ``ToTensor``, ImageNet
  mean/std; here 40 and 32.
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

WIDTH, LAYERS, HEADS, PATCH, CROP, LOAD = 64, 4, 2, 8, 32, 40
ADAPTED, BOTTLENECK, ADAPTER_HEADS, GROUPS = (1, 3), 64, 8, 32
TEXT, TEXT_LAYERS, TEXT_HEADS, LGA_HEADS, N_CTX, CONTEXT, VOCAB = 48, 2, 2, 12, 8, 77, 50
EOT = 1 + N_CTX + 2
TINY = [f"load_size={LOAD}", f"crop={CROP}", f"width={WIDTH}", f"layers={LAYERS}", f"heads={HEADS}",
        f"patch={PATCH}", f"embed_dim={TEXT}", "num_adapters=2", f"adapter_groups={GROUPS}", f"text_width={TEXT}",
        f"text_layers={TEXT_LAYERS}", f"text_heads={TEXT_HEADS}", f"vocab_size={VOCAB}"]
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
IMAGES = [  # (generator, label folder, name, width, height): down- and up-scaled, odd sizes
    ("progan", "0_real", "a.png", 80, 70),
    ("progan", "0_real", "b.jpg", 32, 32),
    ("progan", "1_fake", "c.png", 50, 21),
    ("guided", "0_real", "d.png", 71, 65),
    ("guided", "1_fake", "e.png", 27, 40),
    ("guided", "1_fake", "f.png", 300, 260),
]
PATHS = [f"{gen}/{label}/{name}" for gen, label, name, _w, _h in IMAGES]
B = 0.7071067811865476  # pywt's Haar taps


def original_input(path: Path) -> np.ndarray:
    """``Resize((LOAD, LOAD))``, ``CenterCrop(CROP)``, ``ToTensor``, ImageNet ``Normalize``: ``[3, CROP, CROP]``."""
    img = Image.open(path).convert("RGB").resize((LOAD, LOAD), Image.Resampling.BILINEAR)
    top = left = int(round((LOAD - CROP) / 2.0))
    pixels = np.asarray(img)[top:top + CROP, left:left + CROP].astype(np.float32) / np.float32(255.0)
    return ((pixels - MEAN) / STD).transpose(2, 0, 1).astype(np.float32)


# ---------------------------------------------------------------------------------------------- reference forward


def ln(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps=1e-5)


def lin(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    return x @ sd[p + ".weight"].T + sd[p + ".bias"]


def mha(q: torch.Tensor, kv: torch.Tensor, sd: dict, p: str, heads: int, mask=None) -> torch.Tensor:
    """``nn.MultiheadAttention(q, kv, kv)`` on sequence-first ``[L, N, E]``."""
    e = q.shape[-1]
    w, b = sd[p + ".in_proj_weight"], sd[p + ".in_proj_bias"]
    qq, kk, vv = q @ w[:e].T + b[:e], kv @ w[e:2 * e].T + b[e:2 * e], kv @ w[2 * e:].T + b[2 * e:]
    d = e // heads

    def split(t: torch.Tensor) -> torch.Tensor:  # [L, N, E] -> [N, heads, L, d]
        return t.reshape(t.shape[0], t.shape[1], heads, d).permute(1, 2, 0, 3)

    att = (split(qq) * d**-0.5) @ split(kk).transpose(-1, -2)
    if mask is not None:
        att = att + mask
    out = (att.softmax(-1) @ split(vv)).permute(2, 0, 1, 3).reshape(q.shape[0], q.shape[1], e)
    return lin(out, sd, p + ".out_proj")


def afb1d(x: torch.Tensor, h0: torch.Tensor, h1: torch.Tensor, dim: int) -> torch.Tensor:
    """pytorch_wavelets' analysis bank along ``dim`` (zero mode, even length: no padding)."""
    c = x.shape[1]
    shape = [1, 1, 1, 1]
    shape[dim] = h0.numel()
    h = torch.cat([h0.reshape(shape), h1.reshape(shape)] * c, dim=0)
    return F.conv2d(x, h, stride=(2, 1) if dim == 2 else (1, 2), groups=c)


def sfb1d(lo: torch.Tensor, hi: torch.Tensor, g0: torch.Tensor, g1: torch.Tensor, dim: int) -> torch.Tensor:
    """pytorch_wavelets' synthesis bank along ``dim`` (zero mode, Haar: no cropping)."""
    c = lo.shape[1]
    shape = [1, 1, 1, 1]
    shape[dim] = g0.numel()
    s = (2, 1) if dim == 2 else (1, 2)
    return (F.conv_transpose2d(lo, torch.cat([g0.reshape(shape)] * c), stride=s, groups=c)
            + F.conv_transpose2d(hi, torch.cat([g1.reshape(shape)] * c), stride=s, groups=c))


def adapter(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    n, b, d = x.shape
    g = int(math.sqrt(n))
    grid = x[1:].transpose(0, 1).reshape(b, g, g, d).permute(0, 3, 1, 2)
    # DWTForward passes (h0_col, h1_col) where AFB2D expects the row filters: the width pass uses the *_col buffers
    lohi = afb1d(grid, sd[p + ".dwt_transform.h0_col"], sd[p + ".dwt_transform.h1_col"], dim=3)
    y = afb1d(lohi, sd[p + ".dwt_transform.h0_row"], sd[p + ".dwt_transform.h1_row"], dim=2)
    y = y.reshape(b, d, 4, y.shape[-2], y.shape[-1])
    hh, ww = y.shape[-2:]
    t = F.group_norm(y.flatten(-2), GROUPS, sd[p + ".dwt_norm.weight"], sd[p + ".dwt_norm.bias"], eps=1e-5)
    t = t.permute(0, 2, 3, 1)  # [B, 4, n, D]
    c, nq = 4, t.shape[2]
    q = t.transpose(0, 1).flatten(1, 2)
    t = ln(t + mha(q, q, sd, p + ".intra_band", ADAPTER_HEADS).reshape(c, b, nq, d).transpose(0, 1), sd,
           p + ".norm_intra")
    q = t.flatten(0, 1).transpose(0, 1)
    t = ln(t + mha(q, q, sd, p + ".inter_band", ADAPTER_HEADS).transpose(0, 1).reshape(b, c, nq, d), sd,
           p + ".norm_inter")
    t = ln(t + lin(torch.relu(lin(t, sd, p + ".linear1")), sd, p + ".linear2"), sd, p + ".norm3")
    t = t.reshape(b, 4, hh, ww, d).permute(0, 4, 1, 2, 3)
    # SFB2D likewise: the height pass uses the *_row buffers, the width pass the *_col ones
    g0c, g1c = sd[p + ".idwt_transform.g0_row"], sd[p + ".idwt_transform.g1_row"]
    lo = sfb1d(t[:, :, 0], t[:, :, 1], g0c, g1c, dim=2)
    hi = sfb1d(t[:, :, 2], t[:, :, 3], g0c, g1c, dim=2)
    freq = sfb1d(lo, hi, sd[p + ".idwt_transform.g0_col"], sd[p + ".idwt_transform.g1_col"], dim=3)
    freq = torch.cat([torch.zeros_like(x[:1]), freq.flatten(-2).permute(2, 0, 1)], dim=0)
    down = torch.relu(F.conv1d(x.permute(1, 2, 0), sd[p + ".first_conv_layer.weight"],
                               sd[p + ".first_conv_layer.bias"]))
    up = F.conv1d(down, sd[p + ".second_conv_layer.weight"], sd[p + ".second_conv_layer.bias"]).permute(2, 0, 1)
    return up * 0.1 + freq * sd[p + ".freq_scale"]


def block(x: torch.Tensor, sd: dict, p: str, heads: int, mask=None, with_adapter: bool = False) -> torch.Tensor:
    x = x + mha(ln(x, sd, p + ".ln_1"), ln(x, sd, p + ".ln_1"), sd, p + ".attn", heads, mask)
    h = lin(ln(x, sd, p + ".ln_2"), sd, p + ".mlp.c_fc")
    out = x + lin(h * torch.sigmoid(1.702 * h), sd, p + ".mlp.c_proj")
    return out + adapter(x, sd, p + ".forgery_aware_adapter") if with_adapter else out


def original_forward(x: torch.Tensor, sd: dict) -> torch.Tensor:
    """``CLIPModel.forward``: ``[B, 2]`` logits, from the checkpoint's tensors (the copies the load keeps)."""
    v = "image_encoder."
    t = F.conv2d(x, sd[v + "conv1.weight"], stride=PATCH).flatten(2).transpose(1, 2)
    t = torch.cat([sd[v + "class_embedding"].expand(x.shape[0], 1, WIDTH), t], 1) + sd[v + "positional_embedding"]
    t = ln(t, sd, v + "ln_pre").permute(1, 0, 2)
    for i in range(LAYERS):
        t = block(t, sd, f"{v}transformer.resblocks.{i}", HEADS, with_adapter=i in ADAPTED)
    feats = ln(t.permute(1, 0, 2), sd, v + "ln_post") @ sd[v + "proj"]  # [B, T, E]
    unit = feats / feats.norm(dim=-1, keepdim=True)
    scale = sd["clip_model.logit_scale"].exp()
    a = "language_guided_alignment."
    ctx = sd[a + "ctx"][:, None].repeat_interleave(x.shape[0], dim=1)
    ctx = ln(ctx + mha(ctx, feats.transpose(0, 1), sd, a + "patch_basaed_enhancer", LGA_HEADS), sd, a + "norm1")
    ctx = ln(ctx + lin(torch.relu(lin(ctx, sd, a + "linear1")), sd, a + "linear2"), sd, a + "norm2")
    mask = torch.full((CONTEXT, CONTEXT), float("-inf"), dtype=x.dtype).triu(1)
    logits, texts = [], []
    for ctx_i, unit_i in zip(ctx.transpose(0, 1), unit, strict=True):
        prompts = torch.cat([sd[a + "token_prefix"], ctx_i[None].expand(2, -1, -1), sd[a + "token_suffix"]], 1)
        h = (prompts + sd["text_encoder.positional_embedding"]).permute(1, 0, 2)
        for i in range(TEXT_LAYERS):
            h = block(h, sd, f"text_encoder.transformer.resblocks.{i}", TEXT_HEADS, mask)
        h = ln(h.permute(1, 0, 2), sd, "text_encoder.ln_final")
        text = h[:, EOT] @ sd["text_encoder.text_projection"]
        texts.append(text)
        logits.append(scale * unit_i[0] @ (text / text.norm(dim=-1, keepdim=True)).T)
    text = torch.stack(texts, dim=1)  # [2, B, E]
    tgt = feats[:, 1:].transpose(0, 1)
    tgt = ln(tgt + mha(tgt, text, sd, "text_guided_interactor", LGA_HEADS), sd, "norm1")
    tgt = ln(tgt + lin(torch.relu(lin(tgt, sd, "linear1")), sd, "linear2"), sd, "norm2")
    pooled = tgt.transpose(0, 1).mean(1)
    pooled = pooled / pooled.norm(dim=-1, keepdim=True)
    text_unit = text / text.norm(dim=-1, keepdim=True)
    aug = torch.stack([scale * p_i @ t_i.T for p_i, t_i in zip(pooled, text_unit.transpose(0, 1), strict=True)])
    return torch.stack(logits) + aug


# ---------------------------------------------------------------------------------------------- the checkpoint


def random_checkpoint(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random weights in ``CLIPModel.state_dict()``'s keys (the aliases included, sharing their values)."""

    def r(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=gen)

    sd: dict[str, torch.Tensor] = {}

    def norm(p: str, d: int) -> None:
        sd[p + ".weight"], sd[p + ".bias"] = 1 + r(d, scale=0.1), r(d, scale=0.1)

    def linear(p: str, n_out: int, n_in: int) -> None:
        sd[p + ".weight"], sd[p + ".bias"] = r(n_out, n_in, scale=n_in**-0.5), r(n_out, scale=0.1)

    def attention(p: str, d: int) -> None:
        sd[p + ".in_proj_weight"], sd[p + ".in_proj_bias"] = r(3 * d, d, scale=d**-0.5), r(3 * d, scale=0.1)
        linear(p + ".out_proj", d, d)

    def blocks(p: str, d: int, n: int, adapted: tuple[int, ...]) -> None:
        for i in range(n):
            q = f"{p}.resblocks.{i}"
            attention(q + ".attn", d)
            norm(q + ".ln_1", d)
            linear(q + ".mlp.c_fc", 4 * d, d)
            linear(q + ".mlp.c_proj", d, 4 * d)
            norm(q + ".ln_2", d)
            if i in adapted:
                a = q + ".forgery_aware_adapter"
                sd[a + ".first_conv_layer.weight"] = r(BOTTLENECK, d, 1, scale=d**-0.5)
                sd[a + ".first_conv_layer.bias"] = r(BOTTLENECK, scale=0.1)
                sd[a + ".second_conv_layer.weight"] = r(d, BOTTLENECK, 1, scale=BOTTLENECK**-0.5)
                sd[a + ".second_conv_layer.bias"] = r(d, scale=0.1)
                sd[a + ".freq_scale"] = torch.tensor([0.7])
                taps = {"h0": [B, B], "h1": [B, -B], "g0": [B, B], "g1": [B, -B]}  # analysis taps reversed
                for name, values in taps.items():
                    kind = "dwt_transform" if name[0] == "h" else "idwt_transform"
                    sd[f"{a}.{kind}.{name}_col"] = torch.tensor(values, dtype=torch.float32).reshape(1, 1, 2, 1)
                    sd[f"{a}.{kind}.{name}_row"] = torch.tensor(values, dtype=torch.float32).reshape(1, 1, 1, 2)
                norm(a + ".dwt_norm", d)
                attention(a + ".intra_band", d)
                norm(a + ".norm_intra", d)
                attention(a + ".inter_band", d)
                norm(a + ".norm_inter", d)
                linear(a + ".linear1", 4 * d, d)
                linear(a + ".linear2", d, 4 * d)
                norm(a + ".norm3", d)

    c, v = "clip_model.", "clip_model.visual."
    sd[v + "class_embedding"] = r(WIDTH, scale=0.5)
    sd[v + "positional_embedding"] = r((CROP // PATCH) ** 2 + 1, WIDTH, scale=0.3)
    sd[v + "proj"] = r(WIDTH, TEXT, scale=WIDTH**-0.5)
    sd[v + "conv1.weight"] = r(WIDTH, 3, PATCH, PATCH, scale=(3 * PATCH * PATCH) ** -0.5)
    norm(v + "ln_pre", WIDTH)
    blocks(v + "transformer", WIDTH, LAYERS, ADAPTED)
    norm(v + "ln_post", WIDTH)
    sd[c + "positional_embedding"] = r(CONTEXT, TEXT, scale=0.3)
    sd[c + "text_projection"] = r(TEXT, TEXT, scale=TEXT**-0.5)
    sd[c + "logit_scale"] = torch.tensor(math.log(100.0))
    blocks(c + "transformer", TEXT, TEXT_LAYERS, ())
    sd[c + "token_embedding.weight"] = r(VOCAB, TEXT)
    norm(c + "ln_final", TEXT)
    a = "language_guided_alignment."
    sd[a + "ctx"] = r(N_CTX, TEXT, scale=0.5)
    sd[a + "token_prefix"], sd[a + "token_suffix"] = r(2, 1, TEXT), r(2, CONTEXT - 1 - N_CTX, TEXT)
    for p in (a + "patch_basaed_enhancer", "text_guided_interactor"):
        attention(p, TEXT)
    for p in (a, ""):
        norm(p + "norm1", TEXT)
        linear(p + "linear1", 4 * TEXT, TEXT)
        linear(p + "linear2", TEXT, 4 * TEXT)
        norm(p + "norm2", TEXT)
    # the aliases CLIPModel registers: image_encoder = visual, text_encoder's four, logit_scale
    for key in [k for k in sd if k.startswith(v)]:
        sd["image_encoder." + key[len(v):]] = sd[key]
    for key in [k for k in sd if k.startswith((c + "transformer.", c + "ln_final."))]:
        sd["text_encoder." + key[len(c):]] = sd[key]
    for name in ("positional_embedding", "text_projection"):
        sd["text_encoder." + name] = sd[c + name]
    sd["logit_scale"] = sd[c + "logit_scale"]
    return sd


def make_checkpoint(root: Path, path: Path) -> tuple[dict[str, float], dict[str, float], np.ndarray]:
    """Random weights saved as the original saves them; the reference scores in float32 and float64, and the
    float64 scores without the adapters' frequency part (how much it moves them)."""
    gen = torch.Generator().manual_seed(3)
    sd = random_checkpoint(gen)
    # the copies PyTorch's load overwrites (clip_model's towers, CLIPModel's own logit_scale) hold other values here,
    # so the scores show which copy is used (the DWT filters stay Haar's)
    overwritten = ("clip_model.visual.", "clip_model.transformer.", "clip_model.ln_final.",
                   "clip_model.positional_embedding", "clip_model.text_projection")
    for key in [k for k in sd if (k.startswith(overwritten) and "_transform." not in k) or k == "logit_scale"]:
        sd[key] = sd[key] + 0.5 * torch.randn(sd[key].shape, generator=gen)
    inputs = torch.from_numpy(np.stack([original_input(root / p) for p in PATHS]))
    with torch.no_grad():
        ref32 = torch.softmax(original_forward(inputs, sd), 1)[:, 1].double().numpy()
        sd64 = double_state(sd)
        ref64 = torch.softmax(original_forward(inputs.double(), sd64), 1)[:, 1].numpy()
        no_freq = {k: torch.zeros_like(t) if k.endswith("freq_scale") else t for k, t in sd64.items()}
        without = torch.softmax(original_forward(inputs.double(), no_freq), 1)[:, 1].numpy()
    torch.save({"model": sd}, path)
    return dict(zip(PATHS, ref32, strict=True)), dict(zip(PATHS, ref64, strict=True)), without


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_images(tmp_path_factory.mktemp("folder"), IMAGES, seed=7, noise=(6, 10), quality=90)


def run(root: Path, *settings: str):
    args = [a for s in [*TINY, *settings] for a in ("--set", s)]
    return invoke("run", "fatformer", "--suite", "folder", "--root", str(root), "--protocol", "eval", "-q", *args)


def test_released_checkpoint_scores_as_the_original_eval(image_root: Path, tmp_path: Path,
                                                         detbench_home: Path) -> None:
    ckpt = tmp_path / "fatformer.pth"
    ref32, ref64, without_freq = make_checkpoint(image_root, ckpt)
    result = run(image_root, f"weights={ckpt}")
    assert result.exit_code == 0, result.output
    # the DWT branch moves the scores far beyond the equivalence bound: a wrong band order, sign or filter would show
    assert np.abs(np.array([ref64[p] for p in PATHS]) - without_freq).max() > 1e-2
    # a wrong resize, crop, normalisation or layer is far beyond the bound
    record = assert_released_run_matches(detbench_home, "fatformer", ref32, ref64, images=len(IMAGES))
    identity = record["key"]["detector_identity"]
    assert identity["weights_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert identity["eval_preprocessing"] == {"resize": LOAD, "crop": CROP, "normalise": "imagenet"}


def test_a_wrong_checkpoint_is_refused_naming_its_keys(image_root: Path, tmp_path: Path) -> None:
    sd = random_checkpoint(torch.Generator().manual_seed(3))
    wrong = {k: v for k, v in sd.items() if not k.startswith("image_encoder.")}  # e.g. saved without the aliases
    wrong["head.weight"] = torch.zeros(2, TEXT)
    torch.save({"model": wrong}, tmp_path / "wrong.pth")
    result = run(image_root, f"weights={tmp_path / 'wrong.pth'}")
    assert_refused_naming(result, "missing keys: image_encoder.", "unexpected keys: head.weight")

    sd["clip_model.visual.transformer.resblocks.1.forgery_aware_adapter.dwt_transform.h1_row"] *= -1
    torch.save({"model": sd}, tmp_path / "not_haar.pth")
    result = run(image_root, f"weights={tmp_path / 'not_haar.pth'}")
    assert result.exit_code == 2 and "dwt_transform.h1_row is not the Haar filter" in result.output, result.output


def test_haar_transform_inverts_and_matches_the_block_formulas() -> None:
    from detbench.detectors.fatformer import haar_dwt, haar_idwt

    x = torch.randn(2, 3, 4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = haar_dwt(x)
    p, q, r, s = x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    expected = torch.stack([p + q + r + s, p + q - r - s, p - q + r - s, p - q - r + s], dim=2) / 2
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(haar_idwt(y), x, rtol=0, atol=1e-12)


def test_registry_facts() -> None:
    info = DETECTORS.info("fatformer")
    assert info is not None and info.year == 2024 and info.training == "trains" and info.weights_key == "weights"
    assert "Apache-2.0" in info.released and "ProGAN" in info.released


def test_training_starts_from_the_clip_towers_frozen() -> None:
    """Before training, the image tower (adapters silenced) and the text tower on the embedded prompt compute the
    open_clip CLIP they came from; only the adapters, the prompt context, the enhancer and the interactor train."""
    import open_clip

    from detbench.detectors.fatformer import FatFormer, FatFormerConfig
    from detbench.kit.detector import RunContext
    from detbench.models.backbones import load_backbone, load_text_tower
    from detbench.progress import quiet

    recipe = ("epochs", "train_batch_size", "checkpoint_every")
    settings = {k: v for k, v in FatFormer.tiny_settings.items() if k not in recipe}
    settings.update(crop=224, load_size=256)  # the backbone's own grid: no resampled positions
    detector = FatFormer(FatFormerConfig(**settings))
    detector.setup(RunContext(suite_root=Path("."), suite_name="x", device="cpu", seed=0, run_dir=Path("."),
                              phases=quiet()))
    net = detector.net.double()
    clip = load_text_tower(settings["backbone"]).clip
    clip.visual = load_backbone(settings["backbone"]).model
    clip = clip.double()
    prompts = [" ".join(["X"] * 8) + f" {name}." for name in ("real", "fake")]
    tokens = open_clip.tokenize(prompts)
    lga = net.language_guided_alignment
    with torch.no_grad():
        embedded = net.clip_model.token_embedding(tokens)
        got = net.text_encoder(torch.cat([lga.token_prefix, embedded[:, 1:9], lga.token_suffix], 1), net.eot)
        torch.testing.assert_close(got, clip.encode_text(tokens), rtol=0, atol=1e-10)
        for block in net.image_encoder.transformer.resblocks:
            if hasattr(block, "forgery_aware_adapter"):
                block.forgery_aware_adapter.second_conv_layer.weight.zero_()
                block.forgery_aware_adapter.second_conv_layer.bias.zero_()
        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        v = clip.visual
        h = v.conv1(x).flatten(2).transpose(1, 2)
        h = torch.cat([v.class_embedding.expand(2, 1, -1), h], 1) + v.positional_embedding
        expected = v.ln_post(v.transformer(v.ln_pre(h))) @ v.proj
        torch.testing.assert_close(net.image_encoder(x), expected, rtol=0, atol=1e-10)
    trainable = {n.split(".")[0] for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"language_guided_alignment", "text_guided_interactor", "norm1", "linear1", "linear2",
                         "norm2", "clip_model"}  # clip_model: only its adapters
    assert {n for n, p in net.clip_model.named_parameters() if p.requires_grad} == {
        n for n, _ in net.clip_model.named_parameters() if ".forgery_aware_adapter." in n}
    setup = detector.train_setup(None, pd.DataFrame({"path": ["a.png"] * 40, "label": [0, 1] * 20}))  # type: ignore[arg-type]
    assert set(setup.model.state_dict()) == set(detector.state_module().state_dict())
    assert not any(k.startswith(("clip_model", "image_encoder", "text_encoder")) for k in setup.model.state_dict())
