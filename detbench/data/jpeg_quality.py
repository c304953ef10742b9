"""Estimate the quality a JPEG was saved at, from its quantisation tables (the index's ``jpeg_quality`` column)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

# IJG (libjpeg) standard quantisation tables, ITU-T T.81 Annex K, natural (row-major) order.
_STD_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_STD_CHROMINANCE = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32  # fmt: skip


def estimate_jpeg_quality(img: Image.Image) -> int | None:
    """The IJG quality (1..100) whose scaled standard table is closest to the file's quantisation table.

    Compares table 0 with the luminance table (or, without table 0, table 1 with the chrominance
    table) by the sum of absolute differences. Exact for files written by libjpeg (PIL, most tools)
    at a given quality; for other encoders it is the nearest IJG equivalent.

    Args:
        img: an opened PIL image (its ``quantization`` tables are read).

    Returns:
        The quality, or None for non-JPEGs.
    """
    import numpy as np

    tables = getattr(img, "quantization", None)
    if not tables:
        return None
    index = 0 if 0 in tables else 1 if 1 in tables else None
    if index is None or len(tables[index]) != 64:
        return None
    errors = np.abs(_ijg_tables(index) - np.asarray(tables[index], dtype=np.int32)).sum(axis=1)
    return int(errors.argmin()) + 1


@functools.cache
def _ijg_tables(index: int) -> np.ndarray:
    """Libjpeg's jpeg_set_quality (force_baseline) applied to the standard table ``index`` (0 luminance,
    1 chrominance): a 100 x 64 array, row q - 1 for quality q.
    """
    import numpy as np

    standard = np.asarray(_STD_CHROMINANCE if index else _STD_LUMINANCE, dtype=np.int32)
    quality = np.arange(1, 101)
    scale = np.where(quality < 50, 5000 // quality, 200 - 2 * quality)
    return np.clip((standard[None, :] * scale[:, None] + 50) // 100, 1, 255)
