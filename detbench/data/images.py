"""Open image files: probe them for the index, load them as RGB for models.

This is the only module in detbench that opens image files. Benchmark data is dirty (0-byte PNGs,
truncated JPEGs, HTML saved as ``.jpg``), so no function here crashes on a bad file: ``probe`` returns
an :class:`ImageInfo` whose ``status`` says what is wrong, the loaders raise :class:`ImageError`.

Statuses: ``ok``; ``empty`` (0 bytes); ``truncated`` (an image whose data ends early);
``undecodable`` (not an image of a supported format, or corrupt data); ``too_large`` (the header claims
more than ``max_pixels`` pixels, the decompression-bomb guard; checked before anything is decoded);
``unreadable`` (permission or OS error); ``not_a_file`` (missing path, dangling symlink, symlink loop,
directory, FIFO, device...); ``bad_name`` (a path that is not valid UTF-8, so no record can hold it: set by
the index, which stores the name with its undecodable bytes escaped).

Files are identified by their bytes, not their name, among the formats detbench indexes (PNG, JPEG,
WebP, BMP, TIFF, GIF): a PNG saved as ``.jpg`` is reported as ``png``. Multi-picture JPEGs (MPO, as
written by many cameras) are reported as ``jpeg``. Width and height are as stored in the file, before
EXIF orientation.

The loaders decode the first frame only (animated GIF/WebP, multi-frame TIFF/MPO) and convert it to RGB by the
rules of :mod:`detbench.data.rgb_conversion` (EXIF orientation, alpha onto white, high bit depths, CMYK); every model
sees images converted this way. JPEG quality estimates come from :mod:`detbench.data.jpeg_quality`.

PNG metadata chunks (zTXt/iTXt text, iCCP profiles) may decompress to :data:`PNG_MAX_METADATA_CHUNK` bytes
while detbench reads a file (PIL's own limit, 1 MB, rejects the workflow metadata generators embed in their
PNGs); the pixels are unaffected. PIL's setting is restored afterwards.

The pixel guard is explicit (``max_pixels``); PIL's global ``MAX_IMAGE_PIXELS`` is never changed. Some
PIL plugins (GIF, TIFF, MPO, WebP) still apply PIL's own guard internally; its error maps to
``too_large`` too. ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import os
import re
import stat as stat_module
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import IO, Any

from PIL import Image

from detbench.data.jpeg_quality import estimate_jpeg_quality
from detbench.data.rgb_conversion import apply_orientation, to_rgb

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".jfif", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
STATUSES: tuple[str, ...] = (
    "ok",
    "empty",
    "truncated",
    "undecodable",
    "too_large",
    "unreadable",
    "not_a_file",
    "bad_name",
)
DEFAULT_MAX_PIXELS = 178_956_970  # 2 x PIL's default MAX_IMAGE_PIXELS
NO_BYTES = "no image bytes (a null value)"
PNG_MAX_METADATA_CHUNK = 64 * 1024 * 1024  # PIL's total text budget (MAX_TEXT_MEMORY) is 64 MiB too

_PIL_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
_FORMAT_NAMES = {"MPO": "jpeg"}
_TRUNCATION_WORDS = ("truncated", "premature end", "unexpected end", "not enough data")
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not block; no effect on regular files
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)

class ImageError(Exception):
    """An image that cannot be used; ``status`` is one of :data:`STATUSES`, ``reason`` says why."""

    def __init__(self, status: str, reason: str, path: str | None = None) -> None:
        super().__init__(status, reason, path)
        self.status = status
        self.reason = reason
        self.path = path

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{where}{self.status} ({self.reason})"


@dataclass(frozen=True, kw_only=True)
class ImageInfo:
    """What :func:`probe` learned about one file; fields it could not read are None."""

    format: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    mode: str | None = None
    n_frames: int | None = None
    jpeg_quality: int | None = None
    exif: bool | None = None  # the header carries an EXIF block (see _has_exif)
    exif_tags: str | None = None  # JSON of the camera tags of EXIF_TAGS it holds (see _exif_tags); None: none
    phash: str | None = None  # perceptual hash of the decoded first frame (full probes only; see _phash)
    status: str
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown image status {self.status!r}; expected one of {STATUSES}")

    @property
    def ok(self) -> bool:
        """Whether the file decoded as an image."""
        return self.status == "ok"


# ---------------------------------------------------------------------------------------- public API


def probe(
    path: str | os.PathLike[str], *, decode: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> ImageInfo:
    """Describe one file without ever raising for problems of the file itself.

    Only the first frame is ever used, so broken later frames of an animation leave it ``ok`` with
    ``n_frames=None``. PIL may still emit warnings (e.g. about corrupt EXIF) for malformed files; the status is
    what counts.

    Args:
        path: the file.
        decode: decode the first frame fully, so truncated or corrupt data is caught, and take its perceptual hash
            (:mod:`detbench.data.perceptual_hash`); False reads only the header (fast; truncation past the header
            goes unnoticed, and there is no hash).
        max_pixels: detbench's pixel guard (larger images get status ``too_large``); None disables it.

    Returns:
        The :class:`ImageInfo`: status (``ok`` or what is wrong, with the reason), format, size and more.
    """
    try:
        fp, size = _open_regular(path)
    except ImageError as exc:
        return ImageInfo(status=exc.status, reason=exc.reason)
    with fp:
        return _probe_stream(fp, size, decode=decode, max_pixels=max_pixels)


def load_rgb(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load the first frame of an image file as an RGB image (see the module docstring for the rules).

    Args:
        path: the file.
        max_pixels: detbench's pixel guard; None disables it.

    Returns:
        The decoded RGB image.

    Raises:
        ImageError: the file cannot be used (its ``status`` and ``reason`` say why; the path is attached).
    """
    try:
        fp, size = _open_regular(path)
        with fp:
            return _load_rgb_stream(fp, size, max_pixels=max_pixels)
    except ImageError as exc:
        raise ImageError(exc.status, exc.reason, os.fspath(path)) from exc.__cause__


def load_rgb_bytes(data: bytes | None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """:func:`load_rgb` for an encoded image held in memory.

    Args:
        data: the encoded bytes; None is a missing value (status ``empty``).
        max_pixels: detbench's pixel guard; None disables it.

    Returns:
        The decoded RGB image.

    Raises:
        ImageError: the bytes cannot be used.
    """
    if data is None:
        raise ImageError("empty", NO_BYTES)
    return _load_rgb_stream(io.BytesIO(data), len(data), max_pixels=max_pixels)


def probe_bytes(data: bytes | None, *, decode: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """:func:`probe` for an encoded image held in memory (an image cell of a Parquet shard).

    Args:
        data: the encoded bytes; None (a null cell) is ``empty``.
        decode: decode the first frame fully and hash it (else only the header).
        max_pixels: detbench's pixel guard; None disables it.

    Returns:
        The :class:`ImageInfo`.
    """
    if data is None:
        return ImageInfo(status="empty", reason=NO_BYTES)
    return _probe_stream(io.BytesIO(data), len(data), decode=decode, max_pixels=max_pixels)


def probe_encoded(data: bytes, rgb: Image.Image) -> ImageInfo:
    """:func:`probe_bytes` (full) of bytes the caller has just encoded, without decoding them again.

    The header is read from ``data`` as any probe reads it; the decode is replaced by ``rgb``, which the caller
    vouches is what :func:`load_rgb_bytes` returns for ``data`` (a lossless encoding of ``rgb`` without EXIF
    orientation: what an encoder that has just written it knows). The perceptual hash is taken from ``rgb``.

    Args:
        data: the encoded bytes.
        rgb: the RGB image they decode to.

    Returns:
        The :class:`ImageInfo` a full :func:`probe_bytes` of ``data`` gives.

    Raises:
        ValueError: ``rgb`` is not an RGB image of the size the header states, or the bytes carry EXIF (whose
            orientation the loaders apply).
    """
    from detbench.data.perceptual_hash import perceptual_hash

    info = probe_bytes(data, decode=False)
    if not info.ok:
        return info
    if rgb.mode != "RGB" or rgb.size != (info.width, info.height) or info.exif:
        raise ValueError(f"not the image of these bytes: {rgb.mode} {rgb.size} for {info.format} "
                         f"{info.width}x{info.height}{' with EXIF' if info.exif else ''}")
    return replace(info, phash=perceptual_hash(rgb))


def bytes_digest(data: bytes) -> str:
    """Content id of bytes held in memory; equal to :func:`file_digest` of a file holding them.

    Args:
        data: the bytes.

    Returns:
        The blake2b (16-byte digest) as hex.
    """
    digest = _content_digest()
    digest.update(data)
    return digest.hexdigest()


def file_digest(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Content id: blake2b (16-byte digest) of the file's bytes, as hex.

    Args:
        path: the file.
        chunk: bytes read at a time.

    Returns:
        The hex digest.

    Raises:
        ImageError: the path is not a readable regular file.
    """
    fp, _ = _open_regular(path)
    digest = _content_digest()
    with fp, _classified(fp):
        while block := fp.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _content_digest() -> Any:
    return hashlib.blake2b(digest_size=16)


def fast_id(path: str | os.PathLike[str], stat: os.stat_result | None = None) -> str:
    """Id for the fast index mode: blake2b (16 bytes) of ``"{size}:{mtime_ns}:{absolute path}"``, as hex.

    The whole absolute path is part of it: files with the same name, size and mtime (``0_real/1.png`` and
    ``1_fake/1.png`` from one archive, or two datasets' copies of a layout) never share an id, and so never
    share cached features. Moving the data changes the ids (full mode hashes the bytes instead).

    Args:
        path: the file.
        stat: its ``os.stat`` result when already known.

    Returns:
        The hex digest.

    Raises:
        ImageError: the path cannot be stat-ed.
    """
    if stat is None:
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise _path_error(path, exc) from exc
    key = f"{stat.st_size}:{stat.st_mtime_ns}:".encode() + os.fsencode(os.path.abspath(os.fspath(path)))
    return hashlib.blake2b(key, digest_size=16).hexdigest()


# ---------------------------------------------------------------------------------------- opening


def _open_regular(path: str | os.PathLike[str]) -> tuple[IO[bytes], int]:
    """Open a regular file for binary reading and return it with its size; ImageError otherwise."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _path_error(path, exc) from exc
    try:
        info = os.fstat(fd)
        if not stat_module.S_ISREG(info.st_mode):
            raise ImageError("not_a_file", f"not a regular file ({_file_kind(info.st_mode)})")
        return os.fdopen(fd, "rb"), info.st_size
    except BaseException:
        os.close(fd)
        raise


def _path_error(path: str | os.PathLike[str], exc: OSError) -> ImageError:
    """Map an error from opening or stat-ing a path to not_a_file (nothing readable there) or unreadable."""
    if exc.errno == errno.ELOOP:
        return ImageError("not_a_file", "symlink loop")
    if isinstance(exc, FileNotFoundError):
        return ImageError("not_a_file", "dangling symlink" if os.path.islink(path) else "no such file")
    if isinstance(exc, NotADirectoryError):
        return ImageError("not_a_file", "a parent of the path is not a directory")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    if mode is not None and not stat_module.S_ISREG(mode):  # e.g. a directory on Windows, a socket
        return ImageError("not_a_file", f"not a regular file ({_file_kind(mode)})")
    return ImageError("unreadable", f"{type(exc).__name__}: {exc.strerror or exc}")


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat_module.S_ISDIR, "directory"),
        (stat_module.S_ISFIFO, "FIFO"),
        (stat_module.S_ISSOCK, "socket"),
        (stat_module.S_ISCHR, "character device"),
        (stat_module.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"


@functools.cache
def _openers() -> tuple[tuple[Callable[..., Image.Image], Callable[[bytes], bool | str] | None], ...]:
    Image.init()
    return tuple(Image.OPEN[fmt] for fmt in _PIL_FORMATS if fmt in Image.OPEN)


def _identify(fp: IO[bytes], size: int) -> Image.Image:
    """Identify the format from the leading bytes and parse the header: ``Image.open`` restricted to
    the formats detbench indexes and without PIL's global pixel guard (callers check). Decodes nothing.
    """
    if size == 0:
        raise ImageError("empty", "file is empty (0 bytes)")
    fp.seek(0)
    prefix = fp.read(16)
    failure: Exception | None = None
    for factory, accept in _openers():
        try:
            verdict = accept(prefix) if accept else True
            if not verdict or isinstance(verdict, str):  # a str means "recognised but unsupported"
                continue
            fp.seek(0)
            return factory(fp, "")
        except Exception as exc:
            failure = exc
    if failure is not None:
        raise failure
    raise ImageError("undecodable", f"not a supported image format ({describe_content(prefix)})")


# what a file that is not an image usually is, by its first bytes (named, never quoted: see describe_content)
_KNOWN_CONTENT = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
    (b"7z\xbc\xaf", "a 7z archive"),
    (b"Rar!", "a RAR archive"),
    (b"8BPS", "a Photoshop PSD file"),
    (b"\x00\x00\x01\x00", "a Windows icon"),
    (b"\xff\x0a", "a JPEG XL image"),
    (b"\x00\x00\x00\x0cJXL ", "a JPEG XL image"),
    (b"PAR1", "a Parquet file"),
    (b"\x93NUMPY", "a NumPy array file"),
)
_ISO_BRANDS = {b"avif": "an AVIF image", b"avis": "an AVIF image", b"heic": "a HEIC image", b"heix": "a HEIC image",
               b"mif1": "a HEIF image", b"msf1": "a HEIF image"}
_BYTES_LITERAL = re.compile(r"""b(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def describe_content(prefix: bytes) -> str:
    """What the leading bytes of a file that is not a supported image look like, in words.

    Reasons are written to indexes, scores and reports: they describe a file and never quote it (a symlink to a
    private file must not leak its first bytes into a shared record).

    Args:
        prefix: the file's first bytes (16 are enough).

    Returns:
        e.g. ``an HTML page``, ``a PDF document``, ``text``, ``binary data of an unknown format``.
    """
    for magic, name in _KNOWN_CONTENT:
        if prefix.startswith(magic):
            return name
    if prefix[4:8] == b"ftyp":
        brand = prefix[8:12]
        return _ISO_BRANDS.get(brand, "an ISO media file (MP4, MOV, HEIF...)")
    head = prefix.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page"
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"svg" in head):
        return "an SVG or XML document"
    if head.startswith(b"<?xml"):
        return "an XML document"
    if head.startswith((b"{", b"[")):
        return "text that looks like JSON"
    try:
        text: str | None = prefix.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the end of the prefix is still text
        text = prefix[: exc.start].decode("utf-8") if exc.start >= len(prefix) - 3 and exc.end == len(prefix) else None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "text, not image data"
    return "binary data of an unknown format"


def scrub(text: str) -> str:
    r"""``text`` (an error message) with every bytes literal replaced by its length: decoders quote the bytes
    they choke on (``broken PNG file (chunk b'ro\x00t')``), and reasons never quote a file.

    Args:
        text: a message.

    Returns:
        The message, e.g. ``broken PNG file (chunk <4 bytes>)``.
    """
    return _BYTES_LITERAL.sub(lambda m: f"<{len(_literal_bytes(m.group(0)))} bytes>", text)


def _literal_bytes(literal: str) -> bytes:
    import ast

    try:
        return ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return literal.encode()


def _check_pixels(size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError("too_large", f"{width}x{height} = {width * height} pixels exceeds {max_pixels}")


_png_limit_lock = threading.Lock()
_png_limit_users = 0
_png_limit_saved = 0


@contextlib.contextmanager
def _png_metadata_limit() -> Iterator[None]:
    """Raise PIL's PNG metadata-chunk limit to :data:`PNG_MAX_METADATA_CHUNK` while detbench reads (never lower it);
    the previous value comes back when the last concurrent reader is done.
    """
    from PIL import PngImagePlugin

    global _png_limit_users, _png_limit_saved
    with _png_limit_lock:
        if _png_limit_users == 0:
            _png_limit_saved = PngImagePlugin.MAX_TEXT_CHUNK
            PngImagePlugin.MAX_TEXT_CHUNK = max(_png_limit_saved, PNG_MAX_METADATA_CHUNK)
        _png_limit_users += 1
    try:
        yield
    finally:
        with _png_limit_lock:
            _png_limit_users -= 1
            if _png_limit_users == 0:
                PngImagePlugin.MAX_TEXT_CHUNK = _png_limit_saved


@contextlib.contextmanager
def _classified(fp: IO[bytes]) -> Iterator[None]:
    """Turn any exception raised while reading an image into an ImageError with a status."""
    try:
        yield
    except ImageError:
        raise
    except Exception as exc:
        raise _classify(exc, fp) from exc


def _classify(exc: Exception, fp: IO[bytes]) -> ImageError:
    text = scrub(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (Image.DecompressionBombError, MemoryError)):
        return ImageError("too_large", text)
    if isinstance(exc, OSError) and exc.errno is not None:
        return ImageError("unreadable", text)
    if isinstance(exc, EOFError) or any(word in str(exc).lower() for word in _TRUNCATION_WORDS):
        return ImageError("truncated", text)
    kind = _ends_early(fp)
    if kind:
        return ImageError("truncated", f"{kind} data ends early ({text})")
    return ImageError("undecodable", text)


def _ends_early(fp: IO[bytes]) -> str | None:
    """The format's name if the bytes start like that format but lack its end (or declared length)."""
    try:
        fp.seek(0)
        head = fp.read(16)
        size = fp.seek(0, io.SEEK_END)
        fp.seek(max(0, size - 1024))
        tail = fp.read()
    except (OSError, ValueError):
        return None
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG" if b"IEND" not in tail else None
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG" if b"\xff\xd9" not in tail else None
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF" if not tail.rstrip(b"\0").endswith(b";") else None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP" if size < int.from_bytes(head[4:8], "little") + 8 else None
    if head[:4] in (b"II*\0", b"MM\0*"):  # the header points at the first directory (often at the end)
        first_ifd = int.from_bytes(head[4:8], "little" if head[:2] == b"II" else "big")
        return "TIFF" if first_ifd + 2 > size else None
    return None


# ---------------------------------------------------------------------------------------- probing


def _probe_stream(fp: IO[bytes], size: int, *, decode: bool, max_pixels: int | None) -> ImageInfo:
    fields: dict[str, Any] = {"bytes": size}
    try:
        with _classified(fp), _png_metadata_limit():
            im = _identify(fp, size)
            fields.update(
                format=_format_name(im),
                width=im.width,
                height=im.height,
                mode=im.mode,
                jpeg_quality=estimate_jpeg_quality(im),
                exif=_has_exif(im),
                exif_tags=_exif_tags(im),
            )
            _check_pixels(im.size, max_pixels)  # after reading the header, so too-large files report it
            fields["n_frames"] = _n_frames(im)
            if decode:
                im.load()
    except ImageError as exc:
        return ImageInfo(**fields, status=exc.status, reason=exc.reason)
    if decode:
        fields["phash"] = _phash(im, fp)
    return ImageInfo(**fields, status="ok")


def _phash(im: Image.Image, fp: IO[bytes]) -> str | None:
    """The perceptual hash of a decoded image as the loaders convert it to RGB; None when that conversion fails (the
    image keeps its status: the hash only serves the near-duplicate check, which counts images without one).
    """
    from detbench.data.perceptual_hash import perceptual_hash

    try:
        with _classified(fp), _png_metadata_limit():
            return perceptual_hash(to_rgb(apply_orientation(im)))
    except ImageError:
        return None


_EXIF_IFD = 0x8769  # the TIFF tag pointing at the Exif sub-directory
# The camera tags the index records (PIL.ExifTags.Base names): who made the picture with what, and how it was exposed.
EXIF_TAGS = (
    "Make", "Model", "ExposureTime", "FNumber", "ExposureProgram", "ISOSpeedRatings", "ShutterSpeedValue",
    "ApertureValue", "BrightnessValue", "ExposureBiasValue", "MaxApertureValue", "SubjectDistance", "MeteringMode",
    "LightSource", "Flash", "FocalLength", "ExposureMode", "WhiteBalance", "DigitalZoomRatio",
    "FocalLengthIn35mmFilm", "SceneCaptureType", "GainControl", "Contrast", "Saturation", "Sharpness",
    "SubjectDistanceRange",
)


def _exif_tags(im: Image.Image) -> str | None:
    """The :data:`EXIF_TAGS` the header's EXIF block holds, as sorted JSON: text stripped of NUL padding, numbers
    (rationals included) as floats, the first of a number sequence; tags with other values are left out. None when
    there is no EXIF block, it cannot be parsed, or it holds none of the tags: an absent tag is never given a value.
    Read from the header alone, as :func:`_has_exif`.
    """
    import json

    from PIL import ExifTags

    if not _has_exif(im):  # also keeps getexif() from reading a PNG past its header
        return None
    try:
        raw = im.info.get("exif")
        exif = Image.Exif() if raw else im.getexif()  # TIFF: from the directories already read
        if raw:
            exif.load(raw)
        merged = {**dict(exif), **dict(exif.get_ifd(_EXIF_IFD))}
    except Exception:  # a corrupt EXIF block (PIL raises many types) holds no tags we can trust
        return None
    found: dict[str, Any] = {}
    for name in EXIF_TAGS:
        value = merged.get(int(ExifTags.Base[name]))
        if isinstance(value, tuple | list) and value:
            value = value[0]
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if isinstance(value, str):
            value = value.strip("\x00 ").strip()
            if value:
                found[name] = value
            continue
        try:
            number = float(value)
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if number == number and abs(number) != float("inf"):  # a 0/0 or x/0 rational is no value
            found[name] = number
    return json.dumps(found, sort_keys=True) if found else None


def _has_exif(im: Image.Image) -> bool:
    """Whether the header read so far carries an EXIF block: a JPEG APP1 ``Exif`` segment, a PNG ``eXIf`` chunk
    before the image data, a WebP ``EXIF`` chunk, or a TIFF Exif sub-directory. Read from the header alone, so a full
    and a header-only probe agree.
    """
    if im.info.get("exif"):
        return True
    tags = getattr(im, "tag_v2", None)
    return bool(tags is not None and _EXIF_IFD in tags)


def _format_name(im: Image.Image) -> str | None:
    return _FORMAT_NAMES.get(im.format or "", (im.format or "").lower()) or None


def _n_frames(im: Image.Image) -> int | None:
    """Frame count; None if later frames cannot be read (only the first frame is ever used)."""
    try:
        return int(getattr(im, "n_frames", 1))
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            im.seek(0)


# ---------------------------------------------------------------------------------------- loading


def _load_rgb_stream(fp: IO[bytes], size: int, *, max_pixels: int | None) -> Image.Image:
    with _classified(fp), _png_metadata_limit():
        im = _identify(fp, size)
        _check_pixels(im.size, max_pixels)
        im.load()
        rgb = to_rgb(apply_orientation(im))
    return rgb.copy() if rgb is im else rgb


def reason_counts(reasons: Iterable[Any]) -> dict[str, int]:
    """How many statuses or failure reasons of each kind (``"not_a_file: dangling symlink"`` counts as
    ``not_a_file``).

    Args:
        reasons: index or score statuses, or failure reasons (a Series or any iterable).

    Returns:
        ``{kind: count}``, most frequent first (ties by name).
    """
    counts: dict[str, int] = {}
    for reason in reasons:
        kind = str(reason).split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


NO_SCORE = "no_score"  # the status (prefix) of an evaluation image a detector gave no score: left out of the metrics
