"""The backbone spec grammar: ``PROVIDER:ARCH@SOURCE[#sha256=HEX][#tag=TAG]``.

Providers: ``open_clip`` and ``timm``. Sources: a pretrained tag, a local file, ``local-dir:DIR`` (open_clip),
``bundled`` (timm EfficientNet-Lite0 shipped in a package) or ``random`` (seeded random init, never presented as
pretrained).
"""

from __future__ import annotations

import difflib
import os
import re

from detbench.errors import BackboneError

PROVIDERS = ("open_clip", "timm")


WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


FILE_HINT = " (.safetensors, .bin, .pt or .pth)"
SPEC_OPTIONS = ("sha256", "tag")  # ``#key=value`` suffixes of a spec


_OPTION = re.compile(r"#([A-Za-z0-9_]+)=([^#]*)$")


def split_options(spec: str) -> tuple[str, dict[str, str]]:
    """``"open_clip:X@/w.bin#tag=openai#sha256=HEX"`` → ``("open_clip:X@/w.bin", {"tag": ..., "sha256": ...})``.

    The rule for ``#`` (so that paths may contain it): only ``#KEY=VALUE`` suffixes at the very end of the spec
    whose KEY is one of :data:`SPEC_OPTIONS` are options, read from the right; every other ``#`` belongs to the
    path (``/data/run#3/NPR.pth`` is a path, ``/data/run#3/NPR.pth#sha256=HEX`` that path pinned).

    Args:
        spec: a backbone spec or weights path, optionally followed by ``#sha256=HEX`` (pins the weights' hash)
            and/or ``#tag=TAG`` (the open_clip pretrained tag a weight file belongs to: builds that tag's model).

    Returns:
        The bare spec and the options found (sha256 lower-cased and checked: 64 hex digits).

    Raises:
        BackboneError: an option given twice or empty, or a sha256 pin that is not 64 hex digits.
    """
    base = spec
    options: dict[str, str] = {}
    while (match := _OPTION.search(base)) is not None and match.group(1) in SPEC_OPTIONS:
        key, value = match.group(1), match.group(2).strip()
        if not value or key in options:
            raise BackboneError(f"bad option #{key}={match.group(2)} in {spec!r}: expected "
                                f"{' or '.join(f'#{k}=...' for k in SPEC_OPTIONS)} at the end, each at most once")
        options[key] = value
        base = base[:match.start()]
    if "sha256" in options:
        digest = options["sha256"].lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BackboneError(f"bad sha256 pin in {spec!r}: expected 64 hex digits after #sha256=")
        options["sha256"] = digest
    return base, dict(reversed(options.items()))


def split_sha256(spec: str) -> tuple[str, str | None]:
    """``"timm:x@/w.pth#sha256=HEX"`` → ``("timm:x@/w.pth", "hex")``: a spec (or a weights path) may pin its sha256.

    Args:
        spec: a backbone spec or weights path, optionally with ``#`` options.

    Returns:
        The spec with its other ``#`` options kept, and the pinned digest (lower case) or None.

    Raises:
        BackboneError: a malformed ``#`` option or sha256 pin.
    """
    base, options = split_options(spec)
    digest = options.pop("sha256", None)
    return base + "".join(f"#{k}={v}" for k, v in options.items()), digest


def parse_spec(spec: str) -> tuple[str, str, str]:
    """``"open_clip:ViT-L-14@openai"`` → ``("open_clip", "ViT-L-14", "openai")``.

    Args:
        spec: a backbone spec without ``#`` options.

    Returns:
        ``(provider, arch, source)``.

    Raises:
        BackboneError: a malformed spec or an unknown provider.
    """
    usage = "expected PROVIDER:ARCH@SOURCE, e.g. open_clip:ViT-L-14@openai or timm:efficientnet_lite0@bundled"
    if not isinstance(spec, str) or ":" not in spec:
        raise BackboneError(f"bad backbone spec {spec!r}: {usage}")
    provider, rest = spec.split(":", 1)
    if provider not in PROVIDERS:
        raise BackboneError(f"unknown backbone provider {provider!r} in {spec!r}; known: {', '.join(PROVIDERS)}")
    arch, sep, source = rest.partition("@")
    if not sep or not arch or not source or any(c.isspace() for c in arch):
        raise BackboneError(f"bad backbone spec {spec!r}: {usage} (SOURCE: a pretrained tag, a file path, "
                         "local-dir:DIR, bundled or random)")
    return provider, arch, source


def source_kind(source: str) -> str:
    """What a spec's source names.

    Args:
        source: the part after ``@``.

    Returns:
        ``random``, ``bundled``, ``local-dir``, ``file`` (a path or a weight-file suffix) or ``tag``.
    """
    if source in ("random", "bundled"):
        return source
    if source.startswith("local-dir:"):
        return "local-dir"
    if "/" in source or os.sep in source or source.startswith(("~", ".")) or source.endswith(WEIGHT_SUFFIXES):
        return "file"
    return "tag"


def path_free_spec(spec: str) -> str:
    """A spec as the run identity holds it: a file or ``local-dir:`` source becomes the word ``file`` / ``local-dir``
    (the weights' sha256 is in the backbone's identity) and a ``#sha256=`` pin is dropped (a pin changes no number);
    ``#tag=`` stays. Any other spec is returned unchanged, so the ids of runs on tags, ``bundled`` or ``random`` never
    change.

    Args:
        spec: a backbone spec, as configured.

    Returns:
        The spec without any path.
    """
    try:
        base, options = split_options(spec)
        provider, arch, source = parse_spec(base)
    except BackboneError:
        return spec
    kind = source_kind(source)
    if kind not in ("file", "local-dir"):
        return spec
    tag = f"#tag={options['tag']}" if "tag" in options else ""
    return f"{provider}:{arch}@{kind}{tag}"


def unknown_name(kind: str, name: str, known: list[str]) -> BackboneError:
    """The error for an unknown architecture or tag, listing the known names (or the closest, when there are many).

    Args:
        kind: what was looked up (``timm architecture`` ...).
        name: the name given.
        known: the names accepted.

    Returns:
        The error to raise.
    """
    close = difflib.get_close_matches(name, known, n=3)
    if len(known) <= 40:
        hint = f"; known: {', '.join(known) or 'none'}"
    else:
        hint = f"; did you mean {', '.join(close)}?" if close else ""
    return BackboneError(f"unknown {kind} {name!r}{hint}")
