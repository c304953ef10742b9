"""Build detbench's embedded, offline demo suite.

This is a synthetic stand-in, not a benchmark of real generators. Real images are crops of photographs
that ship inside installed packages (scikit-image, scikit-learn, matplotlib). Fake images are *other*
crops of the same photographs passed through small, fixed image processes, so the content statistics of
the two classes are matched and only the process differs. The processes come in three kinds:

- textural: they imitate the texture fingerprints of generator families (GAN transposed-convolution
  checkerboards, latent-autoencoder smoothing plus decoder texture, diffusion-like denoised spectra,
  nearest-neighbour blockiness);
- not textural: a colour-statistics shift (chroma and contrast), a smooth uneven illumination, banding in
  flat regions; what a detector that ignores texture (MPFT's Texture-Aware Masking hides the most textured
  patches) can still see;
- ``composite``: both at once (the upconv texture then the three non-textural processes), as a real
  generator deviates from photographs in several ways; the default training family.

Trained on ``composite`` and tested on every family, a detector shows which of the deviations it learned:
the upconv row (the same texture alone), the other textural rows (unseen textures) and the non-textural rows
(the global deviations alone). A detector trained on one family and tested on the others faces a real, if
small, generalisation problem; numbers on this suite say nothing about real generators.

Layout: ``root/<family>/<split>/<0_real|1_fake>/<family>_<split>_<label>_<NNNNN>.png`` with split in
{train, val}, then ``root/BUILD.json`` written last (atomically); a tree without it is an unfinished build.

Train/val disjointness: every photo is cut along its longer side into a train region (60 %) and a val
region (40 %, at the far end for even-indexed photos, at the near end for odd ones). Every crop lies
entirely inside one region, so no val pixel appears in any train image, while both splits still see every
photo (a photo-level split of 18 photos would confound the split with a content shift).

Pairing: fake ``i`` and real ``i`` of a (family, split) come from the same photo (different random crops),
so the photo mix is identical in both classes. Each family draws its own reals, as in GenImage where every
generator folder has its own real pool.

Nothing is trained. The "autoencoder" is a linear PCA basis of windowed 8x8 patches of the bundled photos
(the optimal linear autoencoder, fitted in a fraction of a second) plus a fixed random two-layer
convolution that adds decoder texture; the other families use fixed seeded kernels.

Generator weights (kernels, autoencoder basis) are fixed per family and independent of ``seed``: a family
is one "generator". ``seed`` controls crops, flips and noise. Every process treats the three colour
channels alike in the sense that grey photos stay grey, so colour never reveals the class.

Same bytes on every CPU: the family processes compute in float64. In float32, the CPU's vector kernels
(AVX-512 or AVX2 convolutions, reductions in another order) round differently, which flipped the 8-bit
rounding of some pixels between machines, changed the PNGs' bytes and so the index hash and every demo run
id, with the same numbers. In float64 such a flip needs a value within ~1e-13 of a rounding boundary. Random
kernels and noise come from numpy, whose normal sampler is the same everywhere (torch's vectorised one is not).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from detbench.store import write_json_atomic

if TYPE_CHECKING:
    import torch

# 2: the family processes compute in float64 (same bytes on every CPU); 3: the non-textural and composite
# families, faster process kernels (other float64 rounding), 8-image process chunks
BUILDER_VERSION = 3

FAMILIES: dict[str, str] = {
    "upconv": "GAN-like: 1/4-resolution content, two fixed transposed-convolution (4x4, stride 2) stages "
    "with unequal phase gains plus a 3x3 refinement: periodic checkerboard",
    "autoencoder": "latent-VAE-like: overlapping 8x8 PCA patch autoencoder at stride 4 (luma 5 + chroma 2x1 "
    "latents) and a fixed random two-layer decoder texture: smoothing + decoder texture",
    "denoise": "diffusion-like: 1/2-resolution bilinear upsampling, luma noise, then a bilateral denoiser: "
    "smooth, edge-preserving spectrum with faint residual noise",
    "nearest": "nearest-neighbour upsampling from 1/4 resolution: 4x4 blocks",
    "colour": "not textural, colour statistics: chroma x1.25 rotated 10 degrees about the grey axis, luma "
    "contrast x1.15 about the image mean",
    "illumination": "not textural, low frequency: a smooth illumination field of mean 1 per image (off-centre "
    "vignette plus a linear gradient in a random direction)",
    "banding": "not textural, flat regions: where the image is flat, its 5x5 blur posterised to 32 levels "
    "(visible bands); textured regions untouched",
    "composite": "texture and global deviations at once, like a real generator: the upconv process followed by "
    "colour, illumination and banding (the default training family)",
}

# How each family deviates from the photos: in texture (what Texture-Aware Masking hides), not in texture, or both.
KINDS: dict[str, str] = {
    "upconv": "texture", "autoencoder": "texture", "denoise": "texture", "nearest": "texture",
    "colour": "global", "illumination": "global", "banding": "global", "composite": "texture+global",
}

SPLITS = ("train", "val")
LABELS = ("0_real", "1_fake")
_VAL_FRACTION = 0.4
_MAX_SOURCE_SCALE = 3.0
_MIN_STD = 6.0
_PNG_LEVEL = 1
_CHUNK = 8  # images per family-process call: small tensors stay in the CPU caches (random draws follow the chunks)

# (name, loader) pairs; loaders never download. Colour photographs first.
_SKIMAGE_COLOUR = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
                   "immunohistochemistry")
_SKIMAGE_GREY = ("camera", "coins", "moon", "clock", "brick", "grass")


def _load_sources() -> list[tuple[str, np.ndarray]]:
    """The bundled photographs as uint8 RGB arrays, in a fixed order."""
    from detbench.paths import keep_matplotlib_in_home

    keep_matplotlib_in_home()  # before anything imports matplotlib, which creates its config folder on import
    import skimage.data
    from matplotlib.cbook import get_sample_data
    from sklearn.datasets import load_sample_images

    photos: list[tuple[str, np.ndarray]] = []
    for name in _SKIMAGE_COLOUR:
        photos.append((f"skimage.data.{name}", getattr(skimage.data, name)()))
    left, right, _ = skimage.data.stereo_motorcycle()
    photos += [
        ("skimage.data.stereo_motorcycle[left]", left),
        ("skimage.data.stereo_motorcycle[right]", right),
    ]
    sk = load_sample_images()
    for fname, img in zip(sk.filenames, sk.images, strict=True):
        photos.append((f"sklearn.load_sample_images:{Path(fname).name}", img))
    with get_sample_data("grace_hopper.jpg") as fh:
        photos.append(("matplotlib.sample_data:grace_hopper.jpg", np.asarray(Image.open(fh).convert("RGB"))))
    for name in _SKIMAGE_GREY:
        grey = getattr(skimage.data, name)()
        photos.append((f"skimage.data.{name}", np.repeat(grey[..., None], 3, axis=2)))
    return [(n, np.ascontiguousarray(a[..., :3], dtype=np.uint8)) for n, a in photos]


@functools.lru_cache(maxsize=1)
def _sources() -> tuple[tuple[str, np.ndarray], ...]:
    return tuple(_load_sources())


def _region(shape: tuple[int, ...], index: int, split: str) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a photo's train or val region."""
    h, w = shape[:2]
    long_ = max(h, w)
    cut = round(long_ * (1 - _VAL_FRACTION)) if index % 2 == 0 else round(long_ * _VAL_FRACTION)
    first = (split == "train") == (index % 2 == 0)
    lo, hi = (0, cut) if first else (cut, long_)
    return (0, lo, h, hi - lo) if w >= h else (lo, 0, hi - lo, w)


def _random_crop(photo: np.ndarray, region: tuple[int, int, int, int], size: int,
                 rng: np.random.Generator) -> np.ndarray:
    """A random-scale, random-position, randomly flipped crop resized to ``size`` (Lanczos)."""
    top, left, rh, rw = region
    fit = min(rh, rw)
    for _ in range(10):  # reject near-flat crops (black borders, empty sky)
        lo, hi = min(size, fit), min(round(size * _MAX_SOURCE_SCALE), fit)
        side = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi))))) if hi > lo else lo
        y = top + int(rng.integers(0, rh - side + 1))
        x = left + int(rng.integers(0, rw - side + 1))
        img = Image.fromarray(photo[y:y + side, x:x + side])
        if side != size:
            img = img.resize((size, size), Image.Resampling.LANCZOS)
        crop = np.asarray(img)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if crop.std() >= _MIN_STD:
            break
    return np.ascontiguousarray(crop)


# ---------------------------------------------------------------- family processes (torch, float64 in [0, 1])

def _down(x: torch.Tensor, factor: int) -> torch.Tensor:
    import torch.nn.functional as F

    return F.avg_pool2d(_planar(x), factor)


def _planar(x: torch.Tensor) -> torch.Tensor:
    """``x`` in contiguous (N, C, H, W) memory: the crops arrive channels-last (a permuted view), where torch's
    pooling and element-wise kernels are slower (pooling over twice). Element-wise operations and pooling give the
    same values in either layout (each window summed in the same order); matrix products (``einsum``, convolutions)
    may not, so the processes that use them (colour, autoencoder) keep the layout the bytes were made with.
    """
    return x.contiguous()


def _kernel_gen(family: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"detbench-demo/{family}".encode()))


def _normal(gen: np.random.Generator, *shape: int) -> torch.Tensor:
    """Standard normal float64 draws from numpy (torch's own normal sampler rounds differently on different CPUs)."""
    import torch

    return torch.from_numpy(gen.standard_normal(shape))


@functools.cache
def _upconv_weights() -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Two fixed (transposed-conv kernel, refinement kernel) pairs."""
    import torch

    g = _kernel_gen("upconv")
    bil = torch.tensor([0.25, 0.75, 0.75, 0.25], dtype=torch.float64)
    stages = []
    for _ in range(2):
        k = torch.outer(bil, bil) * (1 + 0.03 * _normal(g, 4, 4))
        # each output phase (even/odd row x even/odd column) sums its own 2x2 taps: unequal phase gains
        # make the checkerboard; the mean gain stays 1 so brightness is preserved
        k = k / k.sum() * 4
        r = 0.06 * _normal(g, 3, 3)
        r = r - r.mean()
        stages.append((k, r))
    return tuple(stages)


# Transposed convolution, 4x4 kernel, stride 2, on an input padded by one replicated pixel and cropped back to
# twice the input size: output phase (a, b) of pixel (q, r) sums the kernel taps t of TAPS[a] x TAPS[b], each
# reading the padded input at (q + offset_t, r + offset_u). Four products per output pixel instead of the
# float64 convolution routines, which are slow.
_UPCONV_TAPS = (((1, 1), (3, 0)), ((0, 2), (2, 1)))  # phase -> ((kernel tap, offset in the padded input), ...)


def _transposed_up2(y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``conv_transpose2d(pad_replicate(y, 1), k, stride=2, padding=1)[..., 2:-2, 2:-2]`` for one shared 4x4 ``k``."""
    import torch.nn.functional as F

    n, c, h, w = y.shape
    yp = F.pad(y, (1, 1, 1, 1), mode="replicate")
    out = y.new_empty(n, c, h, 2, w, 2)
    for a, row_taps in enumerate(_UPCONV_TAPS):
        for b, col_taps in enumerate(_UPCONV_TAPS):
            taps = [(float(k[t, u]), yp[..., oy:oy + h, ox:ox + w]) for t, oy in row_taps for u, ox in col_taps]
            acc = taps[0][1] * taps[0][0]
            for weight, window in taps[1:]:
                acc.add_(window, alpha=weight)
            out[:, :, :, a, :, b] = acc
    return out.view(n, c, 2 * h, 2 * w)


def _correlate3(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """3x3 correlation of every channel with one shared kernel ``r``, replicate padding."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    out = xp[..., :h, :w] * float(r[0, 0])
    for dy in range(3):
        for dx in range(3):
            if dy or dx:
                out.add_(xp[..., dy:dy + h, dx:dx + w], alpha=float(r[dy, dx]))
    return out


def _upconv(x: torch.Tensor, _: np.random.Generator) -> torch.Tensor:
    y = _down(x, 4)
    for k, r in _upconv_weights():
        y = _transposed_up2(y, k)
        y = y + _correlate3(y, r)
    return y


_OPP = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]], dtype=np.float64)
_OPP = _OPP / np.linalg.norm(_OPP, axis=1, keepdims=True)  # orthonormal luma / two chroma axes


@functools.cache
def _ae_weights() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encoder filters [8, 3, 8, 8] fitted by PCA on windowed photo patches, and decoder-texture convs."""
    import torch

    win1 = np.sin(np.pi * (np.arange(8) + 0.5) / 8)
    win = np.outer(win1, win1)  # win**2 overlap-adds to 1 at stride 4
    rng = np.random.default_rng(zlib.crc32(b"detbench-demo/autoencoder"))
    patches = []
    for _, photo in _sources():
        opp = photo.astype(np.float64) / 255 @ _OPP.T
        ys = rng.integers(0, opp.shape[0] - 8, 400)
        xs = rng.integers(0, opp.shape[1] - 8, 400)
        patches += [opp[y:y + 8, x:x + 8] * win[..., None] for y, x in zip(ys, xs, strict=True)]
    p = np.stack(patches)  # [N, 8, 8, 3]
    filters = []
    for ch, k in ((0, 5), (1, 1), (2, 1)):
        x = p[..., ch].reshape(len(p), 64)
        _, vectors = np.linalg.eigh(x.T @ x)  # principal directions: eigenvectors of the 64 x 64 scatter matrix
        for v in vectors.T[::-1][:k]:  # largest eigenvalue first
            f = np.zeros((3, 8, 8))
            f[ch] = v.reshape(8, 8) * win
            filters.append(f)
    enc = torch.tensor(np.stack(filters), dtype=torch.float64)
    g = _kernel_gen("autoencoder")
    w1 = _normal(g, 8, 1, 3, 3) / 3
    b1 = 0.1 * _normal(g, 8)
    w2 = _normal(g, 1, 8, 3, 3) / 8
    return enc, w1, b1, w2


def _conv3_to_one(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``conv2d(pad_replicate(x, 1), w)`` for a 3x3 ``w`` [1, in, 3, 3]: the nine taps' channel sums as one matrix
    product over every pixel of the padded input, then the nine shifted tap planes added (float64 convolutions
    with many input channels are slow).
    """
    import torch
    import torch.nn.functional as F

    n, c, h, w_ = x.shape
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    taps = torch.einsum("tc,ncp->ntp", w[0].permute(1, 2, 0).reshape(9, c), xp.reshape(n, c, -1))
    taps = taps.view(n, 3, 3, h + 2, w_ + 2)
    out = taps[:, 0, 0, :h, :w_].clone()
    for dy in range(3):
        for dx in range(3):
            if dy or dx:
                out.add_(taps[:, dy, dx, dy:dy + h, dx:dx + w_])
    return out.unsqueeze(1)


def _autoencoder(x: torch.Tensor, _: np.random.Generator) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    enc, w1, b1, w2 = _ae_weights()
    opp = torch.tensor(_OPP, dtype=torch.float64)
    z = torch.einsum("oc,nchw->nohw", opp, x)
    zp = F.pad(z, (4, 4, 4, 4), mode="reflect")
    latent = F.conv2d(zp, enc, stride=4)
    rec = F.conv_transpose2d(latent, enc, stride=4)[..., 4:-4, 4:-4]
    luma = rec[:, :1]
    h = F.relu(F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), w1, b1))
    t = _conv3_to_one(h, w2)
    t = t - F.avg_pool2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    rec = torch.cat([luma + 0.3 * t, rec[:, 1:]], dim=1)
    return torch.einsum("oc,nohw->nchw", opp, rec)


def _bilateral(x: torch.Tensor, radius: int = 2, sigma_s: float = 1.5, sigma_r: float = 0.08) -> torch.Tensor:
    """Joint-colour bilateral filter (range distance over all channels, so grey stays grey)."""
    import torch
    import torch.nn.functional as F

    h, w = x.shape[2:]
    xp = F.pad(x, (radius,) * 4, mode="reflect")
    num = torch.zeros_like(x)
    den = torch.zeros_like(x[:, :1])
    diff, wgt = torch.empty_like(x), torch.empty_like(den)
    range_scale = -1 / (x.shape[1] * 2 * sigma_r**2)  # on the channel mean of the squared difference
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            nb = xp[:, :, radius + dy:radius + dy + h, radius + dx:radius + dx + w]
            torch.sub(nb, x, out=diff).square_()
            wgt.copy_(diff[:, :1])
            for channel in range(1, x.shape[1]):  # channel sum by adds: torch's reduction over dim 1 is slower
                wgt.add_(diff[:, channel:channel + 1])
            wgt.mul_(range_scale).add_(-(dy * dy + dx * dx) / (2 * sigma_s**2)).exp_()
            num.addcmul_(wgt, nb)
            den.add_(wgt)
    return num.div_(den)


def _denoise(x: torch.Tensor, gen: np.random.Generator) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    y = F.interpolate(_down(x, 2), scale_factor=2, mode="bilinear", align_corners=False)
    noise = 0.04 * _normal(gen, y.shape[0], 1, *y.shape[2:])
    # one image at a time: the filter's 25 passes then stay in the CPU caches (element-wise, so the same values)
    return torch.cat([_bilateral(image) for image in (y + noise).split(1)])


def _nearest(x: torch.Tensor, _: np.random.Generator) -> torch.Tensor:
    import torch.nn.functional as F

    return F.interpolate(_down(x, 4), scale_factor=4, mode="nearest")


# The families below deviate from the photos in colour, low-frequency structure or flat regions, never in
# texture: what Texture-Aware Masking leaves visible. Their strengths are fixed here (part of BUILDER_VERSION).
_CHROMA_GAIN, _HUE_DEGREES, _LUMA_CONTRAST = 1.25, 10.0, 1.15
_GRADIENT, _VIGNETTE, _VIGNETTE_SHIFT = 0.12, 0.18, 0.25
_BAND_LEVELS, _FLAT_GRADIENT = 32, 6 / 255


def _colour(x: torch.Tensor, _: np.random.Generator) -> torch.Tensor:
    """Colour grading: chroma scaled and rotated about the grey axis, luma contrast raised about the image mean."""
    import torch

    opp = torch.tensor(_OPP, dtype=torch.float64)
    z = torch.einsum("oc,nchw->nohw", opp, x)
    angle = math.radians(_HUE_DEGREES)
    rot = _CHROMA_GAIN * torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]],
                                      dtype=torch.float64)
    luma = z[:, :1]
    mean = luma.mean(dim=(2, 3), keepdim=True)
    z = torch.cat([mean + _LUMA_CONTRAST * (luma - mean), torch.einsum("oc,nchw->nohw", rot, z[:, 1:])], dim=1)
    return torch.einsum("oc,nohw->nchw", opp, z)


def _illumination(x: torch.Tensor, gen: np.random.Generator) -> torch.Tensor:
    """Uneven illumination: each image times a smooth field of mean 1 (an off-centre vignette plus a linear
    gradient in a random direction).
    """
    import torch

    n, _, h, w = x.shape
    angle = torch.from_numpy(gen.uniform(0, 2 * math.pi, n)).view(n, 1, 1)
    cy, cx = (torch.from_numpy(gen.uniform(-_VIGNETTE_SHIFT, _VIGNETTE_SHIFT, n)).view(n, 1, 1) for _ in range(2))
    v = ((torch.arange(h, dtype=torch.float64) + 0.5) / h * 2 - 1).view(1, h, 1)
    u = ((torch.arange(w, dtype=torch.float64) + 0.5) / w * 2 - 1).view(1, 1, w)
    field = 1 + _GRADIENT * (torch.cos(angle) * u + torch.sin(angle) * v) - _VIGNETTE * ((u - cx) ** 2 + (v - cy) ** 2)
    return x * (field / field.mean(dim=(1, 2), keepdim=True)).unsqueeze(1)


def _banding(x: torch.Tensor, _: np.random.Generator) -> torch.Tensor:
    """Banding in flat regions: where the 5x5-blurred luma is flat, the blurred image posterised to a few levels
    replaces the image (blended by flatness); textured regions are untouched.
    """
    import torch
    import torch.nn.functional as F

    x = _planar(x)
    blur = F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    luma = F.pad(blur.mean(dim=1, keepdim=True), (1, 1, 1, 1), mode="replicate")
    gy = (luma[..., 2:, 1:-1] - luma[..., :-2, 1:-1]) / 2
    gx = (luma[..., 1:-1, 2:] - luma[..., 1:-1, :-2]) / 2
    flat = (1 - torch.sqrt(gx * gx + gy * gy) / _FLAT_GRADIENT).clamp(0, 1) ** 2
    flat = F.avg_pool2d(F.pad(flat, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    bands = torch.round(blur * _BAND_LEVELS) / _BAND_LEVELS
    return x + flat * (bands - x)


def _composite(x: torch.Tensor, gen: np.random.Generator) -> torch.Tensor:
    return _banding(_illumination(_colour(_upconv(x, gen), gen), gen), gen)


_PROCESSES: dict[str, Callable[[torch.Tensor, np.random.Generator], torch.Tensor]] = {
    "upconv": _upconv,
    "autoencoder": _autoencoder,
    "denoise": _denoise,
    "nearest": _nearest,
    "colour": _colour,
    "illumination": _illumination,
    "banding": _banding,
    "composite": _composite,
}


def _apply_family(family: str, crops: np.ndarray, noise_seed: int) -> np.ndarray:
    """Run a family's process on uint8 crops [N, H, W, 3]; returns uint8 of the same shape."""
    import torch

    gen = np.random.default_rng(noise_seed)
    out = np.empty_like(crops)
    for i in range(0, len(crops), _CHUNK):
        x = torch.from_numpy(crops[i:i + _CHUNK]).permute(0, 3, 1, 2).double() / 255
        with torch.inference_mode():
            y = _PROCESSES[family](x, gen)
        out[i:i + _CHUNK] = (y.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


# ---------------------------------------------------------------- build

def _rng(seed: int, *keys: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _png(arr: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of ``arr`` [H, W, 3]: every row Sub-filtered, deflated at level 1.

    Twice as fast as Pillow's encoder, which tries five filters on every row, at about the same size.
    """
    h, w, _ = arr.shape
    rows = arr.reshape(h, w * 3)
    filtered = np.empty((h, 1 + w * 3), np.uint8)
    filtered[:, 0] = 1  # filter type Sub: each byte minus the byte of the pixel to its left (mod 256)
    filtered[:, 1:4] = rows[:, :3]
    np.subtract(rows[:, 3:], rows[:, :-3], out=filtered[:, 4:])

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, truecolour, deflate, filter method 0, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(filtered, _PNG_LEVEL)) + chunk(b"IEND", b""))


def _save_png(arr: np.ndarray, path: Path) -> bytes:
    data = _png(arr)
    path.write_bytes(data)
    return data


def build_demo(
    root: Path,
    *,
    seed: int = 0,
    size: int = 128,
    n_train: int = 200,
    n_val: int = 100,
    families: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    written: Callable[[str, Path, bytes, np.ndarray], None] | None = None,
) -> dict:
    """Write the demo suite under ``root`` and return its summary (also written to ``root/BUILD.json``).

    Existing ``BUILD.json`` and the chosen family folders are removed first, so a rebuild never mixes
    old and new files. Same arguments give byte-identical PNGs, whatever the number of cores: one task per
    (family, split, label) runs on each core, torch on one thread per task (restored afterwards).

    Args:
        root: the folder to build in (created if missing).
        seed: seeds every crop and fingerprint.
        size: image side in pixels, a multiple of 8 and >= 32.
        n_train: images per class per family in the train split (>= 1).
        n_val: images per class per family in the val split (>= 1).
        families: the families to build (keys of :data:`FAMILIES`); None builds all.
        progress: called as ``progress(done, total)`` once per image, in order, when the images of its
            (family, split, label) are written.
        written: called as ``written(path relative to root, path, bytes, pixels)`` right after each PNG is written,
            from the worker threads; ``pixels`` is the uint8 [H, W, 3] array the bytes encode.

    Returns:
        The summary: builder version, arguments, families, counts per family/split/label, total, sources.

    Raises:
        ValueError: an unknown family or an out-of-range size or count.
    """
    fams = list(FAMILIES) if families is None else list(dict.fromkeys(families))
    unknown = [f for f in fams if f not in FAMILIES]
    if unknown or not fams:
        raise ValueError(f"unknown demo families {unknown}; choose from {sorted(FAMILIES)}")
    if size % 8 or size < 32:
        raise ValueError(f"size must be a multiple of 8 and >= 32, got {size}")
    if n_train < 1 or n_val < 1:
        raise ValueError(f"n_train and n_val must be >= 1, got {n_train}, {n_val}")

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "BUILD.json").unlink(missing_ok=True)
    for fam in fams:
        shutil.rmtree(root / fam, ignore_errors=True)

    sources = _sources()
    for weights in (_upconv_weights, _ae_weights):  # fitted once, before the threads share them
        weights()
    counts = {"train": n_train, "val": n_val}
    total = len(fams) * 2 * (n_train + n_val)

    def write_class(fam: str, split: str, label: str) -> int:
        n = counts[split]
        order = _rng(seed, fam, split, "photos").permutation(len(sources))
        photo_ids = [int(order[i % len(order)]) for i in range(n)]
        rng = _rng(seed, fam, split, label)
        crops = np.stack([
            _random_crop(sources[p][1], _region(sources[p][1].shape, p, split), size, rng) for p in photo_ids
        ])
        if label == "1_fake":
            crops = _apply_family(fam, crops, int(rng.integers(2**63)))
        out_dir = root / fam / split / label
        out_dir.mkdir(parents=True, exist_ok=True)
        for i, arr in enumerate(crops):
            name = f"{fam}/{split}/{label}/{fam}_{split}_{label}_{i:05d}.png"
            data = _save_png(arr, root / name)
            if written is not None:
                written(name, root / name, data, arr)
        return n

    # One task per (family, split, label) on every core: torch (one thread per task), Pillow's resampling and
    # PNG encoding release the GIL. Each task draws from its own seeded generators, so the order of completion
    # changes nothing in the files.
    done = 0
    with _torch_threads(1), ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        tasks = [pool.submit(write_class, fam, split, label) for fam in fams for split in SPLITS for label in LABELS]
        try:
            for task in tasks:
                for _ in range(task.result()):
                    done += 1
                    if progress is not None:
                        progress(done, total)
        finally:
            for task in tasks:
                task.cancel()

    summary = {
        "builder_version": BUILDER_VERSION,
        "seed": seed,
        "size": size,
        "n_train": n_train,
        "n_val": n_val,
        "families": {f: FAMILIES[f] for f in fams},
        "counts": {f: {s: {lab: counts[s] for lab in LABELS} for s in SPLITS} for f in fams},
        "total_images": total,
        "sources": [name for name, _ in sources],
        "train_val_split": f"spatial: val is one end ({_VAL_FRACTION:.0%}) of each photo's longer side",
    }
    write_json_atomic(root / "BUILD.json", summary)
    return summary
