"""Perceptual hashes of images and the search for pairs of near-identical hashes.

The hash is the DCT perceptual hash (pHash) in the variant of the ``imagehash`` library's ``phash`` (hash size 8,
high-frequency factor 4), computed on the image as every model sees it:

1. the first frame converted to RGB by the loading rules (:mod:`detbench.data.rgb_conversion`: EXIF orientation,
   alpha onto white, high bit depths scaled, CMYK through its profile);
2. converted to 8-bit greyscale by PIL (mode ``L``: ITU-R 601-2 luma, ``L = R*299/1000 + G*587/1000 + B*114/1000``);
3. resized to 32 x 32 pixels with PIL's Lanczos filter (``Image.Resampling.LANCZOS``);
4. the unnormalised 2-D DCT-II of those pixels as float64 (``scipy.fft.dct``, type 2, ``norm=None``, along axis 0
   then axis 1);
5. the top-left 8 x 8 coefficients (the lowest frequencies, the DC term included);
6. bit = coefficient > the median of those 64 coefficients;
7. the 64 bits in row-major order, the first the most significant, written as 16 lowercase hex digits.

Two hashes are compared by their Hamming distance (bits that differ, 0 to 64). A resized or re-encoded copy of an
image lands a few bits from the original; unrelated images land about 32 bits apart.

:func:`near_pairs` finds every pair within a distance ``D`` without comparing all pairs: the 64 bits are cut into
``D + 1`` bands, and two hashes that differ in at most ``D`` bits agree exactly on at least one band (pigeonhole), so
only pairs sharing a band's value are compared.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image

HASH_BITS = 64
HASH_SIDE = 8  # the top-left HASH_SIDE x HASH_SIDE DCT coefficients give the bits
RESIZE_SIDE = 32  # the image is reduced to RESIZE_SIDE x RESIZE_SIDE greyscale pixels first
RESAMPLE = Image.Resampling.LANCZOS
DESCRIPTION = (
    "pHash (imagehash's phash variant): RGB by the loading rules, PIL greyscale (L), 32x32 Lanczos, 2-D DCT-II, "
    "top-left 8x8 with the DC term, bit = coefficient > median"
)
_CHUNK = 1 << 21  # candidate pairs compared at a time


def perceptual_hash(rgb: Image.Image) -> str:
    """The 64-bit pHash of an RGB image (the variant the module docstring states), as 16 hex digits.

    Args:
        rgb: the image converted to RGB by the loading rules.

    Returns:
        16 lowercase hex digits.
    """
    from scipy.fft import dct

    grey = rgb.convert("L").resize((RESIZE_SIDE, RESIZE_SIDE), RESAMPLE)
    pixels = np.asarray(grey, dtype=np.float64)
    coefficients = dct(dct(pixels, type=2, axis=0), type=2, axis=1)[:HASH_SIDE, :HASH_SIDE]
    bits = (coefficients > np.median(coefficients)).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def hash_values(hashes: Iterable[str]) -> np.ndarray:
    """Hex hashes as unsigned 64-bit integers.

    Args:
        hashes: 16-hex-digit hashes (:func:`perceptual_hash`).

    Returns:
        A ``uint64`` array, in order.
    """
    return np.array([int(h, 16) for h in hashes], dtype=np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between ``a`` and ``b``, element-wise.

    Args:
        a: ``uint64`` hashes.
        b: ``uint64`` hashes, broadcastable against ``a``.

    Returns:
        The distances (0 to 64), as ``int64``.
    """
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x).astype(np.int64)
    flat = np.ascontiguousarray(x).reshape(-1)
    counts = np.unpackbits(flat.view(np.uint8)).reshape(-1, HASH_BITS).sum(axis=1, dtype=np.int64)
    return counts.reshape(x.shape)


def bands(distance: int) -> list[tuple[int, int]]:
    """How :func:`near_pairs` cuts the hash: ``distance + 1`` bands of consecutive bits, as equal as can be.

    Args:
        distance: the largest Hamming distance searched, 0 to 63.

    Returns:
        ``(shift, width)`` of each band: the band's value is ``(hash >> shift) & (2**width - 1)``.
    """
    n = distance + 1
    widths = [HASH_BITS // n + (1 if i < HASH_BITS % n else 0) for i in range(n)]
    out, shift = [], 0
    for width in widths:
        out.append((shift, width))
        shift += width
    return out


def near_pairs(a: np.ndarray, b: np.ndarray, distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of a hash of ``a`` and a hash of ``b`` at most ``distance`` bits apart.

    Only pairs that agree on one of the :func:`bands` are compared (any pair within ``distance`` does), band by
    band and in chunks, so memory stays bounded by the chunk size, not by ``len(a) * len(b)``.

    Args:
        a: ``uint64`` hashes.
        b: ``uint64`` hashes.
        distance: the largest Hamming distance, 0 to 63.

    Returns:
        ``(i, j, d)``: indices into ``a`` and ``b`` and their distances, each pair once, sorted by ``i`` then ``j``.

    Raises:
        ValueError: ``distance`` outside 0..63.
    """
    if not 0 <= distance < HASH_BITS:
        raise ValueError(f"distance must be in 0..{HASH_BITS - 1}; got {distance}")
    a, b = np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)
    found_i, found_j = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    if len(a) and len(b):
        for shift, width in bands(distance):
            mask = np.uint64((1 << width) - 1)
            key_a = (a >> np.uint64(shift)) & mask
            key_b = (b >> np.uint64(shift)) & mask
            order = np.argsort(key_b, kind="stable")
            sorted_b = key_b[order]
            lo = np.searchsorted(sorted_b, key_a, side="left")
            n_match = np.searchsorted(sorted_b, key_a, side="right") - lo
            for start, stop in _chunks(n_match):
                counts = n_match[start:stop]
                i = np.repeat(np.arange(start, stop, dtype=np.int64), counts)
                first = np.repeat(lo[start:stop] - np.cumsum(counts) + counts, counts)
                j = order[first + np.arange(len(i), dtype=np.int64)]
                near = hamming(a[i], b[j]) <= distance
                found_i.append(i[near])
                found_j.append(j[near].astype(np.int64))
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    pairs = np.unique(np.stack([i, j], axis=1), axis=0) if len(i) else np.empty((0, 2), np.int64)
    i, j = pairs[:, 0], pairs[:, 1]
    return i, j, hamming(a[i], b[j])


def _chunks(n_match: np.ndarray) -> list[tuple[int, int]]:
    """Slices of consecutive elements of ``a`` whose candidate pairs together stay near :data:`_CHUNK` (a slice
    exceeds it by at most one element's candidates).
    """
    ids = np.maximum(np.cumsum(n_match) - 1, 0) // _CHUNK
    edges = [0, *(np.flatnonzero(np.diff(ids)) + 1).tolist(), len(n_match)]
    return list(zip(edges[:-1], edges[1:], strict=True))
