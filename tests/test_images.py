"""Tests for detbench.data.images: every hostile file is generated here, in tmp_path."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import resource
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from detbench.data import images
from detbench.data.images import (
    IMAGE_EXTENSIONS,
    STATUSES,
    ImageError,
    ImageInfo,
    fast_id,
    file_digest,
    load_rgb,
    load_rgb_bytes,
    probe,
)
from detbench.data.jpeg_quality import estimate_jpeg_quality
from detbench.data.rgb_conversion import ALPHA_BACKGROUND

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _noise(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _save(path: Path, im: Image.Image, fmt: str | None = None, **kwargs: object) -> Path:
    im.save(path, fmt, **kwargs)
    return path


def _encode(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _pixels(im: Image.Image) -> list[tuple[int, ...]]:
    return [tuple(pixel) for pixel in np.asarray(im).reshape(-1, len(im.getbands())).tolist()]


def _assert_bad(info: ImageInfo, status: str) -> None:
    assert info.status == status, info
    assert not info.ok
    assert info.reason


# ------------------------------------------------------------------------------------- constants


def test_constants() -> None:
    assert IMAGE_EXTENSIONS == {".png", ".jpg", ".jpeg", ".jfif", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
    assert all(ext == ext.lower() for ext in IMAGE_EXTENSIONS)
    assert Path("A.JPG").suffix.lower() in IMAGE_EXTENSIONS
    assert STATUSES == (
        "ok", "empty", "truncated", "undecodable", "too_large", "unreadable", "not_a_file", "bad_name"
    )
    assert images.DEFAULT_MAX_PIXELS == 2 * 89_478_485
    assert ALPHA_BACKGROUND == (255, 255, 255)
    with pytest.raises(ValueError, match="unknown image status"):
        ImageInfo(status="broken")


# ------------------------------------------------------------------------------------- good files


@pytest.mark.parametrize(
    ("fmt", "suffix", "name", "mode"),
    [
        ("PNG", ".png", "png", "RGB"),
        ("JPEG", ".jpg", "jpeg", "RGB"),
        ("WEBP", ".webp", "webp", "RGB"),
        ("BMP", ".bmp", "bmp", "RGB"),
        ("TIFF", ".tif", "tiff", "RGB"),
        ("GIF", ".gif", "gif", "P"),
    ],
)
def test_probe_ok_formats(tmp_path: Path, fmt: str, suffix: str, name: str, mode: str) -> None:
    path = _save(tmp_path / f"a{suffix}", _noise(64, 48), fmt)
    for decode in (True, False):
        info = probe(path, decode=decode)
        assert info.ok and info.status == "ok" and info.reason is None
        assert (info.format, info.width, info.height, info.mode) == (name, 64, 48, mode)
        assert info.bytes == path.stat().st_size
        assert info.n_frames == 1
        assert (info.jpeg_quality is not None) == (name == "jpeg")
    rgb = load_rgb(path)
    assert rgb.mode == "RGB" and rgb.size == (64, 48)


def test_format_from_bytes_not_name(tmp_path: Path) -> None:
    info = probe(_save(tmp_path / "really_png.jpg", _noise(), "PNG"))
    assert info.ok and info.format == "png" and info.jpeg_quality is None


def test_one_pixel(tmp_path: Path) -> None:
    path = _save(tmp_path / "px.png", Image.new("RGB", (1, 1), (1, 2, 3)))
    info = probe(path)
    assert info.ok and (info.width, info.height) == (1, 1)
    assert load_rgb(path).getpixel((0, 0)) == (1, 2, 3)


def test_loaded_image_is_detached_from_file(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", _noise())
    rgb = load_rgb(path)
    path.unlink()
    assert type(rgb) is Image.Image
    assert np.asarray(rgb).shape == (48, 64, 3)


def test_load_rgb_bytes_matches_file(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.jpg", _noise(), quality=80)
    assert np.array_equal(np.asarray(load_rgb(path)), np.asarray(load_rgb_bytes(path.read_bytes())))
    with pytest.raises(ImageError) as caught:
        load_rgb_bytes(b"")
    assert caught.value.status == "empty"
    with pytest.raises(ImageError) as caught:
        load_rgb_bytes(b"<html>nope</html>")
    assert caught.value.status == "undecodable"


# ------------------------------------------------------------------------------------- JPEG quality


@pytest.mark.parametrize("quality", [1, 10, 30, 50, 51, 75, 90, 95, 99, 100])
@pytest.mark.parametrize("subsampling", [0, 2])
def test_jpeg_quality_exact_for_pil_files(tmp_path: Path, quality: int, subsampling: int) -> None:
    path = _save(tmp_path / "q.jpg", _noise(32, 32), quality=quality, subsampling=subsampling)
    assert probe(path, decode=False).jpeg_quality == quality
    with Image.open(path) as im:
        assert estimate_jpeg_quality(im) == quality


def test_jpeg_quality_greyscale_and_chroma_fallback(tmp_path: Path) -> None:
    path = _save(tmp_path / "g.jpg", _noise().convert("L"), quality=42)
    assert probe(path).jpeg_quality == 42
    with Image.open(_save(tmp_path / "c.jpg", _noise(), quality=63)) as im:
        chroma_only = type("Img", (), {"quantization": {1: im.quantization[1]}})()
    assert estimate_jpeg_quality(chroma_only) == 63
    assert estimate_jpeg_quality(Image.new("RGB", (4, 4))) is None
    assert estimate_jpeg_quality(type("Img", (), {"quantization": {0: [1, 2]}})()) is None


# ------------------------------------------------------------------------------------- broken files


def test_zero_byte_png(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    for decode in (True, False):
        info = probe(path, decode=decode)
        _assert_bad(info, "empty")
        assert info.bytes == 0 and info.format is None
    with pytest.raises(ImageError) as caught:
        load_rgb(path)
    assert caught.value.status == "empty" and caught.value.path == str(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("fmt", "suffix", "kwargs"),
    [
        ("JPEG", ".jpg", {"quality": 90}),
        ("JPEG", ".jpg", {"quality": 90, "progressive": True}),
        ("PNG", ".png", {}),
        ("WEBP", ".webp", {}),
        ("GIF", ".gif", {}),
        ("BMP", ".bmp", {}),
        ("TIFF", ".tif", {}),
        ("TIFF", ".tif", {"compression": "tiff_deflate"}),
    ],
)
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_truncated_files(tmp_path: Path, fmt: str, suffix: str, kwargs: dict[str, object]) -> None:
    data = _encode(_noise(80, 60), fmt, **kwargs)
    path = tmp_path / f"cut{suffix}"
    for fraction in (0.05, 0.25, 0.5, 0.75, 0.95):
        path.write_bytes(data[: int(len(data) * fraction)])
        _assert_bad(probe(path), "truncated")
        with pytest.raises(ImageError) as caught:
            load_rgb(path)
        assert caught.value.status == "truncated"


@pytest.mark.parametrize(("fmt", "suffix", "name"), [("JPEG", ".jpg", "jpeg"), ("PNG", ".png", "png")])
def test_truncated_in_half_keeps_header_fields(tmp_path: Path, fmt: str, suffix: str, name: str) -> None:
    data = _encode(_noise(80, 60), fmt, quality=90) if fmt == "JPEG" else _encode(_noise(80, 60), fmt)
    path = tmp_path / f"half{suffix}"
    path.write_bytes(data[: len(data) // 2])
    info = probe(path)
    _assert_bad(info, "truncated")
    assert (info.format, info.width, info.height, info.bytes) == (name, 80, 60, len(data) // 2)
    assert info.jpeg_quality == (90 if name == "jpeg" else None)
    # A header-only probe cannot see missing pixel data: documented behaviour.
    assert probe(path, decode=False).ok


def test_html_saved_as_jpg(tmp_path: Path) -> None:
    path = tmp_path / "page.jpg"
    path.write_text("<!DOCTYPE html>\n<html><body><h1>403 Forbidden</h1></body></html>\n")
    info = probe(path)
    _assert_bad(info, "undecodable")
    assert info.format is None and info.bytes == path.stat().st_size
    assert "not a supported image format" in info.reason
    _assert_bad(probe(path, decode=False), "undecodable")


@pytest.mark.parametrize(
    ("content", "described"),
    [
        (b"root:x:0:0:root:/root:/bin/bash\n", "text, not image data"),
        (b"<!DOCTYPE html><html>secret</html>", "an HTML page"),
        (b"%PDF-1.7 secret", "a PDF document"),
        (b'{"api_key": "secret"}', "text that looks like JSON"),
        (b"\x00\x00\x00\x1cftypavif secret", "an AVIF image"),
        (b"\x13\x37\xc0\xde secret \x00\xff", "binary data of an unknown format"),
    ],
    ids=["passwd", "html", "pdf", "json", "avif", "binary"],
)
def test_reasons_describe_a_file_and_never_quote_it(tmp_path: Path, content: bytes, described: str) -> None:
    """A symlink to /etc/passwd once put its first 16 bytes into the index's reason text: reasons never quote bytes."""
    path = tmp_path / "x.png"
    path.write_bytes(content)
    info = probe(path)
    assert info.status == "undecodable" and info.reason == f"not a supported image format ({described})"
    assert "secret" not in info.reason and "root" not in info.reason


def test_decoder_messages_lose_the_bytes_they_quote(tmp_path: Path) -> None:
    """PIL quotes the bytes it chokes on (a PNG chunk type, a TIFF header): reasons keep their length only."""
    from detbench.data.images import scrub

    assert scrub("SyntaxError: broken PNG file (chunk b'ro\\x00t')") == "SyntaxError: broken PNG file (chunk <4 bytes>)"
    assert scrub('not a TIFF file (header b"II*\\x00" not valid)') == "not a TIFF file (header <4 bytes> not valid)"
    data = bytearray(_encode(_noise(8, 8), "PNG"))
    data[12:16] = b"r\x00ot"  # the IHDR chunk's type, overwritten
    path = tmp_path / "chunk.png"
    path.write_bytes(bytes(data))
    info = probe(path)
    assert info.status != "ok" and "r\\x00ot" not in info.reason and "b'" not in info.reason


def test_random_bytes_png(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_bad(probe(path), "undecodable")
    with pytest.raises(ImageError) as caught:
        load_rgb(path)
    assert caught.value.status == "undecodable"


def test_corrupt_but_complete_png_is_undecodable(tmp_path: Path) -> None:
    data = bytearray(_encode(_noise(64, 64), "PNG"))
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    _assert_bad(probe(path), "undecodable")


def test_huge_png_header_is_too_large_without_allocating(tmp_path: Path) -> None:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info = probe(path)
    with pytest.raises(ImageError) as caught:
        load_rgb(path)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    _assert_bad(info, "too_large")
    assert (info.format, info.width, info.height) == ("png", 100_000, 100_000)
    assert "10000000000" in info.reason
    assert caught.value.status == "too_large"
    assert grown_mib < 100


def test_max_pixels_is_explicit(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", _noise(64, 48))
    _assert_bad(probe(path, max_pixels=64 * 48 - 1), "too_large")
    assert probe(path, max_pixels=64 * 48).ok
    assert probe(path, max_pixels=None).ok
    with pytest.raises(ImageError) as caught:
        load_rgb(path, max_pixels=100)
    assert caught.value.status == "too_large"


def test_pil_globals_untouched(tmp_path: Path) -> None:
    max_pixels, load_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    data = _encode(_noise(), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    probe(path)
    probe(path, max_pixels=10)
    with pytest.raises(ImageError):
        load_rgb(path)
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == (max_pixels, load_truncated)
    assert load_truncated is False


# ------------------------------------------------------------------------------------- not files


def test_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "gone.png"
    link.symlink_to(tmp_path / "missing.png")
    info = probe(link)
    _assert_bad(info, "not_a_file")
    assert "dangling" in info.reason
    with pytest.raises(ImageError) as caught:
        load_rgb(link)
    assert caught.value.status == "not_a_file"


def test_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    info = probe(tmp_path / "a.png")
    _assert_bad(info, "not_a_file")
    assert "loop" in info.reason


def test_symlink_to_image_is_followed(tmp_path: Path) -> None:
    target = _save(tmp_path / "real.png", _noise())
    (tmp_path / "link.png").symlink_to(target)
    assert probe(tmp_path / "link.png").ok


def test_directory_missing_path_and_fifo(tmp_path: Path) -> None:
    folder = tmp_path / "folder.png"
    folder.mkdir()
    info = probe(folder)
    _assert_bad(info, "not_a_file")
    assert "directory" in info.reason
    _assert_bad(probe(tmp_path / "never_existed.png"), "not_a_file")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    result: dict[str, ImageInfo] = {}
    worker = threading.Thread(target=lambda: result.update(info=probe(fifo)), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # release the blocked reader
        pytest.fail("probe blocked opening a FIFO")
    info = result["info"]
    _assert_bad(info, "not_a_file")
    assert "FIFO" in info.reason
    with pytest.raises(ImageError) as caught:
        file_digest(folder)
    assert caught.value.status == "not_a_file"


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: chmod 000 does not stop root from reading (covered by the mocked test below)",
)
def test_unreadable_file_chmod(tmp_path: Path) -> None:
    path = _save(tmp_path / "locked.png", _noise())
    path.chmod(0)
    try:
        _assert_bad(probe(path), "unreadable")
    finally:
        path.chmod(0o644)


def test_unreadable_file_permission_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path / "locked.png", _noise())

    def deny(*args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    with monkeypatch.context() as patch:
        patch.setattr(images.os, "open", deny)
        info = probe(path)
        with pytest.raises(ImageError) as caught:
            load_rgb(path)
    _assert_bad(info, "unreadable")
    assert "Permission denied" in info.reason
    assert caught.value.status == "unreadable"


# ------------------------------------------------------------------------------------- RGB conversion


def test_cmyk_jpeg(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (32, 16), (0, 0, 0, 0))
    cmyk.paste((255, 0, 0, 0), (16, 0, 32, 16))  # right half cyan
    for name, kwargs in (("plain.jpg", {}), ("bad_icc.jpg", {"icc_profile": b"not an ICC profile"})):
        path = _save(tmp_path / name, cmyk, quality=95, **kwargs)
        assert probe(path).mode == "CMYK"
        rgb = np.asarray(load_rgb(path)).astype(int)
        assert np.abs(rgb[8, 4] - (255, 255, 255)).max() < 8
        assert np.abs(rgb[8, 28] - (0, 255, 255)).max() < 8


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 255, 256, 32768, 65280, 65535]], dtype=np.uint16)
    path = _save(tmp_path / "deep.png", Image.fromarray(values))
    info = probe(path)
    assert info.ok and info.mode.startswith("I;16")
    rgb = np.asarray(load_rgb(path))
    assert rgb[0, :, 0].tolist() == [0, 0, 1, 128, 255, 255]
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all()


def test_int32_and_float_images(tmp_path: Path) -> None:
    ints = np.array([[-5, 0, 512, 65535, 70000]], dtype=np.int32)
    path = _save(tmp_path / "int.tif", Image.fromarray(ints))
    assert probe(path).mode == "I"
    assert np.asarray(load_rgb(path))[0, :, 0].tolist() == [0, 0, 2, 255, 255]

    unit = np.array([[0.0, 0.5, 1.0, np.nan]], dtype=np.float32)
    path = _save(tmp_path / "unit.tif", Image.fromarray(unit))
    assert probe(path).mode == "F"
    assert np.asarray(load_rgb(path))[0, :, 0].tolist() == [0, 128, 255, 0]

    wide = np.array([[-3.0, 2.0, 100.4, 300.0]], dtype=np.float32)
    path = _save(tmp_path / "wide.tif", Image.fromarray(wide))
    assert np.asarray(load_rgb(path))[0, :, 0].tolist() == [0, 2, 100, 255]


def _palette_image() -> Image.Image:
    im = Image.new("P", (2, 1))
    im.putpalette([*RED, *BLUE] + [0] * (254 * 3))
    im.putdata([0, 1])
    return im


def test_palette_without_and_with_transparency(tmp_path: Path) -> None:
    opaque = _save(tmp_path / "p.png", _palette_image())
    assert probe(opaque).mode == "P"
    assert _pixels(load_rgb(opaque)) == [RED, BLUE]
    keyed = _save(tmp_path / "pt.png", _palette_image(), transparency=1)
    assert _pixels(load_rgb(keyed)) == [RED, ALPHA_BACKGROUND]


def test_rgba_composited_onto_white(tmp_path: Path) -> None:
    im = Image.new("RGBA", (4, 1))
    im.putdata([(10, 200, 30, 0), (0, 0, 0, 255), (0, 0, 0, 128), (200, 100, 50, 255)])
    path = _save(tmp_path / "alpha.png", im)
    assert probe(path).mode == "RGBA"
    pixels = _pixels(load_rgb(path))
    assert pixels[0] == ALPHA_BACKGROUND  # the colour hidden under alpha 0 must not leak
    assert pixels[1] == (0, 0, 0)
    assert all(abs(c - 127) <= 1 for c in pixels[2])
    assert pixels[3] == (200, 100, 50)


def test_la_and_greyscale(tmp_path: Path) -> None:
    la = Image.new("LA", (2, 1))
    la.putdata([(50, 0), (50, 255)])
    path = _save(tmp_path / "la.png", la)
    assert probe(path).mode == "LA"
    assert _pixels(load_rgb(path)) == [ALPHA_BACKGROUND, (50, 50, 50)]

    grey = Image.new("L", (2, 1))
    grey.putdata([7, 250])
    path = _save(tmp_path / "l.png", grey)
    assert _pixels(load_rgb(path)) == [(7, 7, 7), (250, 250, 250)]

    bilevel = Image.new("1", (2, 1))
    bilevel.putdata([0, 1])
    path = _save(tmp_path / "one.png", bilevel)
    assert _pixels(load_rgb(path)) == [(0, 0, 0), (255, 255, 255)]


def test_exif_orientation_applied(tmp_path: Path) -> None:
    im = Image.new("RGB", (40, 20), BLUE)
    im.paste(RED, (0, 0, 10, 10))  # marker at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    path = _save(tmp_path / "rot.jpg", im, quality=95, exif=exif.tobytes())
    info = probe(path)
    assert (info.width, info.height) == (40, 20)  # as stored
    rgb = load_rgb(path)
    assert rgb.size == (20, 40)
    top_right = np.asarray(rgb)[5, 15].astype(int)
    assert np.abs(top_right - RED).max() < 20


def test_corrupt_exif_is_ignored(tmp_path: Path) -> None:
    path = _save(tmp_path / "bad_exif.jpg", _noise(), exif=b"Exif\x00\x00garbage-not-tiff")
    assert probe(path).ok
    assert load_rgb(path).size == (64, 48)


@pytest.mark.parametrize(("suffix", "kwargs"), [(".gif", {}), (".webp", {"lossless": True})])
def test_animated_first_frame(tmp_path: Path, suffix: str, kwargs: dict[str, object]) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, GREEN, BLUE)]
    path = tmp_path / f"anim{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0, **kwargs)
    info = probe(path)
    assert info.ok and info.n_frames == 3
    rgb = load_rgb(path)
    assert rgb.size == (8, 8) and set(_pixels(rgb)) == {RED}


def test_mpo_reported_as_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "camera.jpg"
    first, second = Image.new("RGB", (16, 16), RED), Image.new("RGB", (16, 16), GREEN)
    first.save(path, "MPO", save_all=True, append_images=[second], quality=85)
    info = probe(path)
    assert (info.status, info.format, info.n_frames, info.jpeg_quality) == ("ok", "jpeg", 2, 85)
    assert np.abs(np.asarray(load_rgb(path)).astype(int) - RED).max() < 10


# ------------------------------------------------------------------------------------- ids and errors


def test_file_digest(tmp_path: Path) -> None:
    data = np.random.default_rng(2).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    path = tmp_path / "blob.png"
    path.write_bytes(data)
    expected = hashlib.blake2b(data, digest_size=16).hexdigest()
    assert file_digest(path) == expected == file_digest(path, chunk=777)
    (tmp_path / "empty.png").write_bytes(b"")
    assert file_digest(tmp_path / "empty.png") == hashlib.blake2b(b"", digest_size=16).hexdigest()


def test_fast_id(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"x" * 100)
    os.utime(path, ns=(1_000_000_000, 2_000_000_000))
    expected = hashlib.blake2b(f"100:2000000000:{path}".encode(), digest_size=16).hexdigest()
    assert fast_id(path) == expected == fast_id(path, path.stat()) == fast_id(str(path))
    os.utime(path, ns=(1_000_000_000, 3_000_000_000))
    assert fast_id(path) != expected


def test_fast_ids_of_same_name_size_and_mtime_differ_by_folder(tmp_path: Path) -> None:
    """Regression: the id hashed the base name only, so 0_real/1.png and 1_fake/1.png (same size and mtime, as
    extracted from an archive) shared an id and cached features: a perfect detector scored 50 %."""
    ids = []
    for label in ("0_real", "1_fake"):
        (tmp_path / label).mkdir()
        path = tmp_path / label / "1.png"
        path.write_bytes(bytes([label == "1_fake"]) * 100)
        os.utime(path, ns=(1_000_000_000, 2_000_000_000))
        ids.append(fast_id(path))
    assert ids[0] != ids[1]
    with pytest.raises(ImageError) as caught:
        fast_id(tmp_path / "missing.png")
    assert caught.value.status == "not_a_file"


def test_image_error_pickles() -> None:
    error = ImageError("truncated", "image file is truncated", "/data/x.jpg")
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.status, clone.reason, clone.path) == ("truncated", "image file is truncated", "/data/x.jpg")
    assert str(clone) == "/data/x.jpg: truncated (image file is truncated)"


def test_probe_encoded_equals_a_full_probe_of_the_bytes() -> None:
    from detbench.datasets.demo_build import _png

    pixels = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    data = _png(pixels)
    rgb = Image.fromarray(pixels)
    assert images.probe_encoded(data, rgb) == images.probe_bytes(data)
    assert np.array_equal(np.asarray(images.load_rgb_bytes(data)), pixels)
    with pytest.raises(ValueError, match="not the image of these bytes"):
        images.probe_encoded(data, rgb.transpose(Image.Transpose.ROTATE_90))
    cut = images.probe_bytes(data[:12])
    assert images.probe_encoded(data[:12], rgb) == cut and not cut.ok
