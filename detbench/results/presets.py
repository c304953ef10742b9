"""Paper presets: named, versioned bundles of detector config + suite protocol + the published numbers.

Each preset is a TOML file in ``detbench/preset_files/`` that cites its source. ``detbench run --preset NAME``
checks the environment first (weights, suite root, GPU), runs, then prints measured vs expected per
generator. A run whose settings differ from the preset's (e.g. a stand-in backbone) is recorded as
*not* a reproduction, so it never passes for one.

A preset's ``[release.KEY]`` tables name the released files its ``--set KEY=PATH`` options take; ``sha256`` is
the published file's digest where one is known. A file whose sha256 differs from it is a recorded departure; where
no digest is known, nothing shows that the file given is the release, so the run is recorded as an *unverified*
reproduction (``reproduction: false``, the key listed in ``unverified``), never as a verified one. A release that
is a folder of files (``folder = true``) is checked to be a folder and always recorded as unverified.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from detbench.errors import PresetError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Preset:
    """A published table to reproduce: detector, suite, protocol and config, with the published numbers."""

    name: str
    version: int
    detector: str
    suite: str
    protocol: str
    description: str
    config: dict[str, str]
    published: dict[str, Any]
    required_files: tuple[str, ...] = ()
    gpu: bool = True
    min_images_per_generator: int = 0
    source_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # config key -> the released file it takes: {"file": name, "where": how to get it, "sha256": digest if known}
    release: dict[str, dict[str, str]] = field(default_factory=dict)
    perturb: str | None = None  # the perturbation the paper applies to every test image (e.g. "jpeg:95"), or None

    def expected(self, metric: str) -> dict[str, float]:
        """Published values of ``metric`` (in %) by generator (``mean`` included); absent means unknown.

        Args:
            metric: ``acc``, ``ap`` ...

        Returns:
            Generator -> value in %.
        """
        return {k: float(v) for k, v in self.published.get(metric, {}).items()}

    def expected_range(self, metric: str) -> dict[str, tuple[float, float]]:
        """Published ranges of ``metric`` (in %) by generator, where a paper gives a range rather than a value.

        Args:
            metric: ``acc``, ``ap`` ...

        Returns:
            Generator -> ``(low, high)`` in %.
        """
        return {k: (float(v[0]), float(v[1])) for k, v in self.published.get("range", {}).get(metric, {}).items()}

    def identity(self) -> dict[str, Any]:
        """What a run records of its preset.

        Returns:
            ``{"name", "version"}``.
        """
        return {"name": self.name, "version": self.version}


def load_presets() -> dict[str, Preset]:
    """Every preset shipped in ``detbench/preset_files/*.toml``.

    Returns:
        Preset name -> :class:`Preset`, in file name order.
    """
    presets = {}
    for entry in sorted((resources.files("detbench") / "preset_files").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text())
            preset = Preset(
                name=data["name"], version=int(data["version"]), detector=data["detector"], suite=data["suite"],
                protocol=data["protocol"], description=data.get("description", ""),
                config={k: str(v) for k, v in data.get("config", {}).items()}, published=data.get("published", {}),
                required_files=tuple(data.get("required_files", ())), gpu=bool(data.get("gpu", True)),
                min_images_per_generator=int(data.get("min_images_per_generator", 0)), source_file=entry.name,
                release=_release(data.get("release", {}), entry.name), perturb=data.get("perturb"),
            )  # fmt: skip
            presets[preset.name] = preset
    return presets


def _release(table: dict[str, Any], source: str) -> dict[str, dict[str, str]]:
    """A preset file's ``[release.KEY]`` tables, each digest checked (64 hex digits, lower case)."""
    out = {}
    for key, info in table.items():
        entry = {k: str(v) for k, v in info.items()}
        digest = entry.get("sha256")
        if digest is not None:
            digest = digest.strip().lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise PresetError(f"{source}: release.{key}.sha256 must be 64 hex digits; got {info['sha256']!r}")
            entry["sha256"] = digest
        out[key] = entry
    return out


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Args:
        name: the preset's name.

    Returns:
        The :class:`Preset`.

    Raises:
        PresetError: an unknown name (with did-you-mean and the known names).
    """
    presets = load_presets()
    if name not in presets:
        close = difflib.get_close_matches(name, list(presets), n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise PresetError(f"unknown preset {name!r}.{hint} Known presets: {', '.join(presets)}")
    return presets[name]


def preset_overrides(preset: Preset, user: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The preset's --set values updated by the user's, and the keys where the user departs from the preset.

    Args:
        preset: the preset.
        user: the user's ``--set`` values.

    Returns:
        The merged values and the keys the user changed from the preset's values.
    """
    merged = {**preset.config, **user}
    departures = [k for k, v in user.items() if k in preset.config and preset.config[k] != v]
    return merged, departures


def check_environment(
    preset: Preset, root: Path | None, overrides: dict[str, str], *, allow_cpu: bool, device: str | None
) -> list[str]:
    """Everything that would stop the preset or make it meaningless, found before the long run.

    Checks the GPU, the required files, the backbone's weights, the suite root, its protocol and image counts.

    Args:
        preset: the preset.
        root: the suite root the user gave, or None.
        overrides: the merged ``--set`` values.
        allow_cpu: run a GPU preset without a GPU anyway.
        device: the requested device, or None.

    Returns:
        One line per problem; empty when the preset can run.
    """
    problems: list[str] = []
    if preset.gpu and not allow_cpu and not (device or "").startswith("cpu"):
        import torch

        if not torch.cuda.is_available():
            problems.append(
                "no CUDA GPU found: this preset needs one for a sensible run time (pass --allow-cpu to run anyway)"
            )
    for key in preset.required_files:
        value = overrides.get(key)
        if not value:
            problems.append(
                f"--set {key}=PATH is required (see `detbench ls presets` and the README's reproduction guide)"
            )
        elif _is_folder(preset, key):
            problems.extend(_check_folder(key, value))
        else:
            problems.extend(_check_file(key, value))
    spec = overrides.get("backbone")
    if spec:
        problems.extend(_check_backbone(spec))
    if root is None:
        problems.append(f"--root PATH is required: where the {preset.suite} data lives (see the README section)")
    elif not Path(root).expanduser().is_dir():
        problems.append(f"--root {root}: not a directory")
    else:
        problems.extend(_check_suite(preset, Path(root).expanduser(), overrides))
    return problems


def _is_folder(preset: Preset, key: str) -> bool:
    """Whether the release ``key`` takes is a folder of files (``folder = true`` in its ``[release.KEY]``)."""
    return preset.release.get(key, {}).get("folder", "").lower() == "true"


def _check_folder(key: str, value: str) -> list[str]:
    """A ``--set KEY=FOLDER`` release: an existing folder (its files are the detector's to read and record)."""
    path = Path(value).expanduser()
    if path.is_dir():
        return []
    what = "not a folder (this release is a folder of files)" if path.exists() else "no such folder"
    return [f"--set {key}={value}: {what}"]


def _check_file(key: str, value: str) -> list[str]:
    """A ``--set KEY=PATH[#sha256=HEX]`` file: it exists and matches its pin (read with the loaders' own parser)."""
    from detbench.models.spec import split_sha256
    from detbench.models.weights import WeightsError, verify_sha256

    try:
        path, pin = split_sha256(value)
    except ValueError as exc:
        return [f"--set {key}: {exc}"]
    if not Path(path).expanduser().is_file():
        hint = " (only a trailing #sha256=HEX is read as a pin; any other # is part of the path)" if "#" in path else ""
        return [f"--set {key}={value}: no such file {path}{hint}"]
    try:
        verify_sha256(Path(path).expanduser(), pin)
    except WeightsError as exc:
        return [f"--set {key}: {exc}"]
    return []


def release_check(preset: Preset, overrides: dict[str, str]) -> tuple[list[str], list[str], dict[str, Any]]:
    """Whether the files given are the releases the preset evaluates (by sha256).

    Args:
        preset: the preset (its ``release`` tables; a required file without one is unverified).
        overrides: the merged ``--set`` values (files already checked by :func:`check_environment`).

    Returns:
        ``(departures, unverified, files)``: the keys whose file is not the release (its sha256 differs from the
        published one), the keys whose release has no known sha256 (nothing shows the file is the release), and per
        key ``{"sha256", "release_sha256", "matches"}`` (``matches`` None when unknown).
    """
    from detbench.models.spec import split_sha256
    from detbench.models.weights import sha256_file

    departures: list[str] = []
    unverified: list[str] = []
    files: dict[str, Any] = {}
    for key in dict.fromkeys([*preset.required_files, *preset.release]):
        value, release = overrides.get(key), preset.release.get(key, {})
        if not value:
            continue
        if _is_folder(preset, key):  # no digest of a folder is published or defined: never verified
            files[key] = {"sha256": None, "release_sha256": None, "matches": None}
            unverified.append(key)
            continue
        actual = sha256_file(Path(split_sha256(value)[0]).expanduser())
        declared = release.get("sha256")
        matches = None if declared is None else actual == declared
        files[key] = {"sha256": actual, "release_sha256": declared, "matches": matches}
        if matches is None:
            unverified.append(key)
        elif not matches:
            departures.append(f"{key} (sha256 {actual[:12]}… is not the release's {declared[:12]}…)")
    return departures, unverified, files


def _check_backbone(spec: str) -> list[str]:
    from detbench.models.backbones import load_backbone
    from detbench.models.weights import WeightsError

    try:
        load_backbone(spec)
    except (WeightsError, ValueError, FileNotFoundError) as exc:
        return [f"backbone {spec}: {exc}"]
    return []


def _check_suite(preset: Preset, root: Path, overrides: dict[str, str]) -> list[str]:
    from detbench.data.index import build_index
    from detbench.data.suites import SuiteLayoutError
    from detbench.engine.protocol_checks import protocol_problems
    from detbench.engine.resolve import RunRequest, resolve

    resolved = resolve(RunRequest(detector=preset.detector, suite=preset.suite, overrides=overrides))
    suite = resolved.suite
    try:
        index = build_index(suite, root)
    except SuiteLayoutError as exc:
        return [f"suite root {root}: {exc}"]
    protocols = suite.all_protocols(index.generators)
    if preset.protocol not in protocols:
        return [f"protocol {preset.protocol} is not available for the data under {root}"]
    protocol = protocols[preset.protocol]
    usable = index.usable
    needs_training = resolved.detector_cls(resolved.config).needs_training()
    problems = protocol_problems(protocol, usable, needs_training=needs_training, root=root)
    expected = set(protocol.eval_generators or ()) | {g for g in preset.expected("acc") if g != "mean"}
    evaluated = usable[usable["split"] == protocol.eval_split]
    counts = evaluated.groupby("generator").size()
    by_class = evaluated.groupby(["generator", "label"]).size()
    for gen in sorted(expected):
        n = int(counts.get(gen, 0))
        if n == 0:
            problems.append(f"generator {gen}: no {protocol.eval_split} images found under {root}")
            continue
        lacking = [name for label, name in ((0, "real"), (1, "fake")) if int(by_class.get((gen, label), 0)) == 0]
        if lacking:
            problems.append(f"generator {gen}: no {' and no '.join(lacking)} {protocol.eval_split} images under "
                            f"{root} ({n} of the other class): its accuracy and AP need both")
        elif n < preset.min_images_per_generator:
            problems.append(
                f"generator {gen}: only {n} {protocol.eval_split} images "
                f"(expected at least {preset.min_images_per_generator})"
            )
    return problems


SAMPLING_SIGMAS = 2.0  # a row's tolerance is at least this many binomial standard errors of its sample


def row_tolerance(fixed: float, expected_percent: float | None, n_images: float) -> float:
    """Points of difference a row may show before it is flagged: the preset's fixed tolerance, widened to
    :data:`SAMPLING_SIGMAS` binomial standard errors of a rate near ``expected_percent`` measured on
    ``n_images`` images (at n = 200 and 50 % one standard error is 3.5 points: a fixed 3 would flag a
    perfect implementation). AP is treated like a rate here: an approximation, stated in the note.

    Args:
        fixed: the preset's tolerance in points.
        expected_percent: the published value in % (None: unknown, the fixed tolerance applies).
        n_images: images behind the measured value (NaN or 0: the fixed tolerance applies).

    Returns:
        The tolerance in points.
    """
    if expected_percent is None or not n_images or n_images != n_images:
        return fixed
    p = min(max(expected_percent / 100, 0.0), 1.0)
    return max(fixed, SAMPLING_SIGMAS * 100 * (p * (1 - p) / n_images) ** 0.5)


def compare(preset: Preset, metrics: pd.DataFrame, metrics_shown: tuple[str, ...] = ("acc", "ap")) -> pd.DataFrame:
    """Measured vs published per generator and metric (in %).

    Args:
        preset: the preset (published values, ranges and tolerance).
        metrics: the run's per-generator metrics (fractions; ``n_real``/``n_fake`` widen the tolerance).
        metrics_shown: the metrics compared.

    Returns:
        One row per generator and metric with a published value or range: measured, expected, the delta, the
        row's tolerance (the preset's, widened to the sampling error of the row's image count, see
        :func:`row_tolerance`) and whether the delta exceeds it.
    """
    fixed = float(preset.published.get("tolerance", 3.0))
    rows = []
    measured = metrics.set_index("generator")
    counts = (measured["n_real"] + measured["n_fake"]) if {"n_real", "n_fake"} <= set(measured.columns) else None
    for metric in metrics_shown:
        expected, ranges = preset.expected(metric), preset.expected_range(metric)
        if not expected and not ranges:
            continue
        for gen in measured.index:
            value = 100 * float(measured.loc[gen, metric]) if metric in measured.columns else float("nan")
            exp = expected.get(gen)
            lo_hi = ranges.get(gen)
            tolerance = row_tolerance(fixed, exp, float(counts.loc[gen]) if counts is not None else float("nan"))
            if exp is not None:
                delta = value - exp
                flag = abs(delta) > tolerance
            elif lo_hi is not None:
                delta = value - min(max(value, lo_hi[0]), lo_hi[1])
                flag = delta != 0 and abs(delta) > tolerance
            else:
                delta, flag = float("nan"), False
            rows.append(
                {
                    "generator": gen,
                    "metric": metric,
                    "measured": value,
                    "expected": exp if exp is not None else (f"{lo_hi[0]}–{lo_hi[1]}" if lo_hi else "unknown"),
                    "delta": delta,
                    "tolerance": round(tolerance, 1),
                    "flag": flag,
                }
            )
    columns = ["generator", "metric", "measured", "expected", "delta", "tolerance", "flag"]
    return pd.DataFrame(rows, columns=columns)


def published_rows(suite: str) -> pd.DataFrame:
    """Published per-generator values of every preset of ``suite``, in the leaderboard's long format.

    Args:
        suite: the suite's name.

    Returns:
        One row per preset, generator and metric (acc, AP) with a published value (as a fraction).
    """
    rows = []
    for preset in load_presets().values():
        if preset.suite != suite:
            continue
        for metric in ("acc", "ap"):
            for gen, value in preset.expected(metric).items():
                rows.append(
                    {
                        "suite": suite,
                        "detector": f"{preset.detector} (published: {preset.name})",
                        "backbone": preset.config.get("backbone", ""),
                        "settings": "published",
                        "protocol": preset.protocol,
                        "perturbation": "clean",
                        "threshold": "0.5",
                        "config_hash": "",
                        "fit_id": "",
                        "run_id": "published",
                        "generator": gen,
                        "metric": metric,
                        "value": value / 100,
                    }
                )
    return pd.DataFrame(rows)


def prepare_preset_run(
    preset: Preset,
    detector: str | None,
    suite: str | None,
    protocol: str | None,
    overrides: dict[str, str],
    *,
    root: Path | None,
    allow_cpu: bool,
    device: str | None,
    perturb: str | None = None,
) -> tuple[str, str, str, dict[str, str], dict[str, Any], str | None]:
    """Resolve a preset against the user's arguments and check the environment before any long work.

    Args:
        preset: the preset.
        detector: the detector the user named, or None.
        suite: the suite the user named, or None.
        protocol: the protocol the user named, or None (the preset's).
        overrides: the user's ``--set`` values.
        root: the suite root, or None.
        allow_cpu: run a GPU preset without a GPU anyway.
        device: the requested device, or None.
        perturb: the perturbation the user asked for, or None (the preset's, if it names one).

    Returns:
        ``(detector, suite, protocol, merged --set values, preset record, perturbation)``; the record says whether
        the run is a verified reproduction, lists the departures (settings, a perturbation other than the paper's,
        and files that are not the release) and the files whose release sha256 is unknown (``unverified``), and
        gives each file's sha256 (``files``); the perturbation is the user's, else the paper's (None: clean).

    Raises:
        PresetError: a detector or suite other than the preset's, or problems found by
            :func:`check_environment`.
    """
    for given, wanted, what in ((detector, preset.detector, "detector"), (suite, preset.suite, "suite")):
        if given is not None and given != wanted:
            raise PresetError(f"preset {preset.name} runs {what} {wanted!r}, not {given!r}; drop the argument")
    merged, departures = preset_overrides(preset, overrides)
    if protocol is not None and protocol != preset.protocol:
        departures.append(f"protocol={protocol}")
    if perturb is not None and perturb != preset.perturb:
        departures.append(f"perturb={perturb} (the paper's: {preset.perturb or 'none'})")
    problems = check_environment(preset, root, merged, allow_cpu=allow_cpu, device=device)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise PresetError(f"preset {preset.name} cannot run yet; missing:\n{listing}")
    not_release, unverified, files = release_check(preset, merged)
    departures.extend(not_release)
    record = {**preset.identity(), "reproduction": not departures and not unverified, "departures": departures,
              "unverified": unverified, "files": files}
    return preset.detector, preset.suite, protocol or preset.protocol, merged, record, perturb or preset.perturb
