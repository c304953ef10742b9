"""Name -> plugin registries for detectors, suites and perturbations.

Built-ins and third-party entry points are registered lazily as ``"module:attr"`` targets, so listing
names never imports torch; a plugin's module is imported only when its name is looked up. Third-party
packages register through the entry-point groups ``detbench.detectors``, ``detbench.data.suites`` and
``detbench.data.perturbations``::

    [project.entry-points."detbench.detectors"]
    my-detector = "my_pkg.detector:MyDetector"
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from detbench.errors import RegistryError


@dataclass(frozen=True)
class DetectorInfo:
    """What ``detbench ls detectors`` shows about a detector without importing it (so without torch).

    ``training`` is ``"trains"`` or ``"training-free"`` (then the class sets ``training_free = True``);
    ``weights_key`` is the ``--set`` key that takes released weights (empty: none are released or supported)
    and ``released`` names the files it loads.
    """

    paper: str
    year: int | None = None  # None: not a published method (a baseline)
    training: str = "trains"
    weights_key: str = ""
    released: str = ""

    def __post_init__(self) -> None:
        if self.training not in TRAINING_KINDS:
            raise ValueError(f"DetectorInfo.training must be one of {TRAINING_KINDS}, got {self.training!r}")


TRAINING_KINDS = ("trains", "training-free")


@dataclass(frozen=True)
class SuiteInfo:
    """What ``detbench ls suites`` shows about a data set without importing its adapter: the paper that published
    it, its year, where to download it and its licence (as the authors state them).
    """

    paper: str = ""
    year: int | None = None
    download: str = ""
    licence: str = ""


@dataclass
class _Entry:
    target: str | None  # "module:attr" while not yet imported
    obj: Any = None
    summary: str = ""
    origin: str = "built-in"
    info: DetectorInfo | SuiteInfo | None = None

    def load(self) -> Any:
        if self.obj is None:
            assert self.target is not None
            self.obj = _import_target(self.target)
        return self.obj


def _import_target(target: str) -> Any:
    """The object at ``"module:attr.sub"``."""
    module_name, _, attr = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


REGISTRATION_BLOCK = re.compile(r"^REGISTRATION = (\{.*?^\})", re.M | re.S)


def read_registration(path: Path) -> dict[str, Any] | None:
    """The ``REGISTRATION`` literal of a plugin module, read from its source without importing it.

    Args:
        path: the module's file.

    Returns:
        A fresh dict, or None when the module has no ``REGISTRATION``.

    Raises:
        RegistryError: the block is not a dict of literals with ``name``, ``class`` and ``summary``.
    """
    match = REGISTRATION_BLOCK.search(path.read_text(encoding="utf-8"))
    if match is None:
        return None
    try:
        facts = ast.literal_eval(match.group(1))
    except (ValueError, SyntaxError) as exc:
        raise RegistryError(f"{path}: REGISTRATION must be a dict of literals ({exc})") from None
    missing = [key for key in ("name", "class", "summary") if not isinstance(facts.get(key), str)]
    if missing:
        raise RegistryError(f"{path}: REGISTRATION lacks {', '.join(missing)} (strings)")
    return dict(facts)


class Registry:
    """A named collection of plugins with lazy targets, duplicate checks and did-you-mean errors."""

    def __init__(self, kind: str, entry_point_group: str | None = None, base: str | None = None) -> None:
        """Args:
        kind: what the registry holds, for messages ("detector").
        entry_point_group: where third-party plugins register.
        base: ``"module:Class"`` every plugin must subclass, checked when a plugin is first loaded.
        """
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.base = base
        self._entries: dict[str, _Entry] = {}
        self._entry_points_loaded = False

    def register_lazy(self, name: str, target: str, summary: str = "", origin: str = "built-in",
                      info: DetectorInfo | SuiteInfo | None = None) -> None:
        """Register ``name`` to the object at ``"module:attr"``, imported on first use.

        Args:
            name: the plugin's name on the command line.
            target: ``"module:attr"`` of the plugin class.
            summary: one line for ``detbench ls``.
            origin: who registered it (``built-in``, an entry point, ...).
            info: what is listed without importing: a detector's paper, year, training kind and released weights,
                or a suite's paper, year, download and licence.
        """
        if ":" not in target:
            raise ValueError(f"lazy target must look like 'module:attr', got {target!r}")
        self._add(name, _Entry(target=target, summary=summary, origin=origin, info=info))

    def register(self, name: str, summary: str = "") -> Callable[[Any], Any]:
        """Decorator registering an object under ``name`` (in-process plugins, notebooks, tests).

        Args:
            name: the plugin's name on the command line.
            summary: one line for ``detbench ls``.

        Returns:
            The decorator; it returns the object unchanged.

        Raises:
            RegistryError: (from the decorator) ``name`` is registered already to another target.
        """

        def decorator(obj: Any) -> Any:
            target = f"{obj.__module__}:{obj.__qualname__}"
            existing = self._entries.get(name)
            if existing is not None and existing.target == target:
                existing.obj = obj  # the lazy placeholder's own module is being imported
                return obj
            self._add(name, _Entry(target=target, obj=obj, summary=summary, origin="decorator"))
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        """Remove ``name`` (nothing happens when it is not registered).

        Args:
            name: the plugin's name.
        """
        self._entries.pop(name, None)

    def _add(self, name: str, entry: _Entry) -> None:
        if name in self._entries:
            prev = self._entries[name]
            raise RegistryError(
                f"{self.kind} {name!r} is already registered (by {prev.origin}: {prev.target}); "
                f"cannot register it again from {entry.origin}: {entry.target}"
            )
        self._entries[name] = entry

    def discover(self, package: str) -> None:
        """Register the plugins shipped in ``detbench.<package>`` from their modules' ``REGISTRATION`` literals.

        Each plugin module states its own registration once, as a dict of literals read here without importing the
        module (so listing names never imports torch): ``name``, ``class``, ``summary``, optional ``aliases`` and,
        for detectors, the :class:`DetectorInfo` fields. Modules whose names start with ``_`` and modules without a
        ``REGISTRATION`` are helpers.

        Args:
            package: ``detectors`` or ``datasets``.

        Raises:
            RegistryError: a ``REGISTRATION`` that is not a literal dict with ``name``, ``class`` and ``summary``.
        """
        spec = importlib.util.find_spec(f"detbench.{package}")
        assert spec is not None and spec.submodule_search_locations
        for path in sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.py")):
            if path.name.startswith("_"):
                continue
            facts = read_registration(path)
            if facts is None:
                continue
            target = f"detbench.{package}.{path.stem}:{facts.pop('class')}"
            name, summary, aliases = facts.pop("name"), facts.pop("summary"), facts.pop("aliases", [])
            kind = SuiteInfo if package == "datasets" else DetectorInfo
            try:
                info = kind(**facts) if facts else None
            except TypeError as exc:
                raise RegistryError(f"{path}: REGISTRATION has an unknown key ({exc})") from None
            self.register_lazy(name, target, summary, info=info)
            for alias in aliases:
                self.register_lazy(alias, target, f"Alias of {name}.")

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or not self.entry_point_group:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            dist = getattr(ep, "dist", None)
            origin = f"entry point of {dist.name}" if dist is not None else "entry point"
            self._add(ep.name, _Entry(target=ep.value, origin=origin))

    def names(self) -> list[str]:
        """Every registered name, entry points included.

        Returns:
            The names, sorted.
        """
        self._load_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def describe(self, name: str) -> dict[str, str]:
        """Name, summary, origin and target, without importing the plugin.

        Args:
            name: the plugin's name.

        Returns:
            ``{"name", "summary", "origin", "target"}``.

        Raises:
            RegistryError: an unknown name.
        """
        entry = self._entry(name)
        return {"name": name, "summary": entry.summary, "origin": entry.origin, "target": entry.target or ""}

    def info(self, name: str) -> DetectorInfo | SuiteInfo | None:
        """The facts given at registration (None for plugins registered without them).

        Args:
            name: the plugin's name.

        Returns:
            The :class:`DetectorInfo` (a detector) or :class:`SuiteInfo` (a suite), or None.

        Raises:
            RegistryError: an unknown name.
        """
        return self._entry(name).info

    def get(self, name: str) -> Any:
        """The plugin registered as ``name`` (imported on first use and checked against the base class).

        Args:
            name: the plugin's name.

        Returns:
            The plugin (a class).

        Raises:
            RegistryError: an unknown name, a target that cannot be imported, or an object that is not a subclass
                of the registry's base.
        """
        entry = self._entry(name)
        try:
            obj = entry.load()
        except (ImportError, AttributeError) as exc:
            raise RegistryError(f"{self.kind} {name!r} could not be loaded from {entry.target}: {exc}") from exc
        if self.base is not None:
            base = _import_target(self.base)
            if not (isinstance(obj, type) and issubclass(obj, base)):
                entry.obj = None
                raise RegistryError(
                    f"{self.kind} {name!r} ({entry.origin}: {entry.target}) is not a subclass of "
                    f"{base.__module__}.{base.__qualname__}; it cannot be used as a {self.kind}"
                )
        return obj

    def _entry(self, name: str) -> _Entry:
        self._load_entry_points()
        if name not in self._entries:
            raise RegistryError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: str) -> str:
        """The message for an unknown name: closest matches and every known name.

        Args:
            name: the name given.

        Returns:
            The message.
        """
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(known) or 'none'}."


DETECTORS = Registry("detector", "detbench.detectors", base="detbench.kit.detector:Detector")
SUITES = Registry("suite", "detbench.data.suites", base="detbench.data.suites:Suite")
PERTURBATIONS = Registry("perturbation", "detbench.data.perturbations", base="detbench.data.perturbations:Step")

DETECTORS.discover("detectors")
SUITES.discover("datasets")
PERTURBATIONS.register_lazy(
    "jpeg", "detbench.data.perturbations:JpegQuality", "JPEG re-encoding at quality Q (1..100), e.g. jpeg:75."
)
PERTURBATIONS.register_lazy(
    "blur", "detbench.data.perturbations:GaussianBlur", "Gaussian blur, sigma S pixels (0 < S <= 20), e.g. blur:2."
)
PERTURBATIONS.register_lazy(
    "downscale",
    "detbench.data.perturbations:Downscale",
    "Bicubic downscale by factor F (0 < F < 1), not resized back, e.g. downscale:0.5.",
)
PERTURBATIONS.register_lazy(
    "resize",
    "detbench.data.perturbations:BilinearResize",
    "AIGCDetectBenchmark's resize: bilinear to int(side*F), not resized back, e.g. resize:0.5.",
)
PERTURBATIONS.register_lazy(
    "webp", "detbench.data.perturbations:WebpQuality", "Lossy WebP re-encoding at quality Q (1..100), e.g. webp:75."
)
PERTURBATIONS.register_lazy(
    "noise",
    "detbench.data.perturbations:GaussianNoise",
    "Additive Gaussian noise, sigma in 0..255 units (0 < S <= 255), seeded per image, e.g. noise:8.",
)
PERTURBATIONS.register_lazy(
    "gray", "detbench.data.perturbations:Grayscale", "Pillow's L conversion back to 3 channels; no value: gray."
)
PERTURBATIONS.register_lazy(
    "crop",
    "detbench.data.perturbations:CentreCrop",
    "Centre crop keeping fraction F of each side (0 < F <= 1, floored), e.g. crop:0.8.",
)
PERTURBATIONS.register_lazy(
    "resize-jpeg",
    "detbench.data.perturbations:ResizeJpeg",
    "Bicubic resize by S (0 < S <= 2), then JPEG at quality Q; S/Q, e.g. resize-jpeg:0.5/75.",
)
PERTURBATIONS.register_lazy(
    "maxside",
    "detbench.data.perturbations:MaxSide",
    "Bicubic resize of the longer side down to L px, never enlarged, e.g. maxside:1080.",
)
PERTURBATIONS.register_lazy(
    "social",
    "detbench.data.perturbations:SocialChain",
    "A sharing-platform chain (crop, maxside, JPEG or WebP) drawn per image from SEED, e.g. social:1.",
)
