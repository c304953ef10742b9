"""A run request and its resolution: every option looked up and validated before any work starts.

:func:`resolve` turns a :class:`RunRequest` (what the CLI and the Python API receive) into a :class:`Resolved`:
the suite with its options, the detector class with its full config (profile defaults, the suite's default
backbone, then the user's ``--set`` values), the perturbation and the threshold policy. Bad input raises a
:class:`~detbench.errors.DetbenchError` here, before any weights load or any file is read.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detbench.config import apply_overrides, field_paths
from detbench.data.protocol_builder import BALANCE_KEY, DATES_KEY, ProtocolOptions
from detbench.data.suites import Suite
from detbench.data.tiles import FUSE_KEY, TILES_KEY, Tiling, parse_tiling
from detbench.engine.holdout import HOLDOUT_KEY, parse_holdout
from detbench.engine.near_duplicates import CHECK_PREFIX, NearDuplicateCheck, parse_check_settings
from detbench.engine.near_duplicates import KEYS as CHECK_KEYS
from detbench.errors import ConfigError
from detbench.kit.detector import Detector
from detbench.registry import DETECTORS, SUITES

TRAIN_SUITE_PREFIX = "train_suite."
SUITE_PREFIX = "suite."
DETECTOR_PREFIX = "detector."  # says a key is the detector's where the suite has an option of that name too
TRAIN_PREFIX = "train."  # run-level training settings (train.holdout)
EVAL_PREFIX = "eval."  # run-level evaluation settings (eval.tiles, eval.fuse)
MAX_SEED = 2**32 - 1  # scikit-learn's random_state limit


@dataclass
class RunRequest:
    """What to run: the same fields whether the CLI or the Python API builds it."""

    detector: str
    suite: str
    root: Path | None = None
    protocol: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    force: bool = False
    device: str | None = None
    workers: int | None = None
    batch_size: int | None = None
    perturb: str | None = None
    index_mode: str = "full"
    n_boot: int = 1000  # bootstrap resamples for the acc/AP intervals; 0 disables them
    threshold: str = "0.5"  # "calibrated" or a fixed value in [0, 1]
    keep_fit: bool = False  # with force: recompute the run but reuse an existing trained fit
    preset: dict[str, Any] | None = None  # recorded (name, version, whether this run is a faithful reproduction)
    train_suite: str | None = None  # cross-suite: train on this suite's protocol (default: the protocol's own)
    train_root: Path | None = None  # where the training suite's data lives
    train_protocol: str | None = None  # the training suite's protocol (default: the one named, else its default)


@dataclass(frozen=True)
class ThresholdPolicy:
    """``fixed`` at ``value``, or ``calibrated``: the threshold maximising balanced accuracy on the
    training generator's held-out split (clean images; the deployable choice).
    """

    policy: str
    value: float | None = None

    @classmethod
    def parse(cls, text: str) -> ThresholdPolicy:
        """The policy ``--threshold`` names.

        Args:
            text: ``calibrated`` (any case) or a number in [0, 1].

        Returns:
            The policy.

        Raises:
            ConfigError: anything else.
        """
        if text.strip().lower() == "calibrated":
            return cls("calibrated")
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 <= value <= 1:
            raise ConfigError(f"--threshold must be 'calibrated' or a number in [0, 1]; got {text!r}")
        return cls("fixed", value)

    @property
    def label(self) -> str:
        """The threshold as runs and tables show it: ``calibrated`` or the fixed value."""
        return "calibrated" if self.policy == "calibrated" else f"{self.value:g}"


@dataclass
class Resolved:
    """Everything decided before any work starts (so bad input fails fast)."""

    suite: Suite
    detector_cls: type[Detector]
    config: Any
    perturbation: Any | None
    threshold: ThresholdPolicy
    settings: dict[str, Any]  # the detector keys the user set, resolved (shown by leaderboards)
    train_suite_overrides: dict[str, str] = field(default_factory=dict)  # --set train_suite.KEY=VALUE
    holdout: str | None = None  # --set train.holdout=VALUE (detbench.engine.holdout); None: the detector's default
    protocol_options: ProtocolOptions = field(default_factory=ProtocolOptions)  # suite.balance, chrono.dates
    near_duplicates: NearDuplicateCheck = field(default_factory=NearDuplicateCheck)  # --set check.near_duplicates*
    tiling: Tiling | None = None  # eval.tiles / eval.fuse (detbench.data.tiles), or the detector's default; None: off
    tiling_chosen_by: str | None = None  # who chose the tiling: --set eval.tiles or the detector's original


def resolve(req: RunRequest) -> Resolved:
    """Look up plugins and validate every option before any work.

    ``--set`` keys go to the detector's config (bare, or ``detector.KEY``), to the suite's options (bare, or
    ``suite.KEY``), to the training suite (``train_suite.KEY``), for ``train.holdout`` to the choice of held-out
    images (:mod:`detbench.engine.holdout`), for ``check.*`` to the near-duplicate check
    (:mod:`detbench.engine.near_duplicates`) and for ``eval.tiles`` / ``eval.fuse`` to tiled evaluation
    (:mod:`detbench.data.tiles`). A bare key that both the detector and the suite define is refused,
    naming both: it is never resolved silently. The config takes the compute profile's
    defaults, the suite's default backbone, then the user's values.

    Args:
        req: the run request.

    Returns:
        The :class:`Resolved` suite, detector class, config, perturbation, threshold policy and settings.

    Raises:
        RegistryError: an unknown detector, suite or perturbation.
        ConfigError: an unknown or ambiguous key, a key given twice, a bad value, a malformed backbone spec, or an
            out-of-range run option.
    """
    suite_cls = SUITES.get(req.suite)
    det_cls = DETECTORS.get(req.detector)
    suite_keys = set(field_paths(suite_cls.Options))
    det_keys = set(field_paths(det_cls.Config))
    suite_over: dict[str, str] = {}
    det_over: dict[str, str] = {}
    train_over: dict[str, str] = {}
    holdout: str | None = None
    protocol_settings: dict[str, str] = {}
    check_settings: dict[str, str] = {}
    tile_settings: dict[str, str] = {}
    for key, value in req.overrides.items():
        bare_balance = key == BALANCE_KEY.removeprefix(SUITE_PREFIX) and key not in suite_keys | det_keys
        if (key == BALANCE_KEY and key.removeprefix(SUITE_PREFIX) not in suite_keys) or bare_balance:
            protocol_settings["balance"] = str(value).strip().lower()
            continue
        if key == DATES_KEY:
            protocol_settings["dates_file"] = str(value)
            continue
        if key.startswith(CHECK_PREFIX) and key not in det_keys:
            check_settings[key] = value
            continue
        if key.startswith(TRAIN_SUITE_PREFIX):
            train_over[key.removeprefix(TRAIN_SUITE_PREFIX)] = value
            continue
        if key.startswith(TRAIN_PREFIX) and key not in det_keys:
            if key != HOLDOUT_KEY:
                raise ConfigError(f"unknown training setting {key!r}; the one there is: {HOLDOUT_KEY}")
            holdout = parse_holdout(value).label  # a bad value fails now
            continue
        if key.startswith(EVAL_PREFIX) and key not in det_keys:
            if key not in (TILES_KEY, FUSE_KEY):
                raise ConfigError(f"unknown evaluation setting {key!r}; the ones there are: {TILES_KEY}, {FUSE_KEY}")
            tile_settings[key] = value
            continue
        if key.startswith(SUITE_PREFIX):
            target, bare, keys = suite_over, key.removeprefix(SUITE_PREFIX), suite_keys
            if bare not in keys:
                raise ConfigError(
                    f"unknown suite option {bare!r} for {req.suite}; valid: {', '.join(sorted(keys)) or 'none'}"
                )
        elif key.startswith(DETECTOR_PREFIX):
            target, bare, keys = det_over, key.removeprefix(DETECTOR_PREFIX), det_keys
            if bare not in keys:
                raise ConfigError(f"unknown setting {bare!r} of {req.detector}; valid: {', '.join(sorted(keys))}")
        elif key in det_keys and key in suite_keys:
            raise ConfigError(
                f"--set {key} is ambiguous: it is both the detector {req.detector}'s setting {key!r} and suite "
                f"{req.suite}'s option {key!r}; say which with --set {DETECTOR_PREFIX}{key}=... or "
                f"--set {SUITE_PREFIX}{key}=..."
            )
        elif key in det_keys or key in suite_keys:
            target, bare = (det_over, key) if key in det_keys else (suite_over, key)
        else:
            valid = sorted(det_keys) + [f"{SUITE_PREFIX}{k}" for k in sorted(suite_keys)] + [
                HOLDOUT_KEY, BALANCE_KEY, DATES_KEY, *CHECK_KEYS, TILES_KEY, FUSE_KEY]
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown --set key {key!r} for {req.detector} on {req.suite}.{hint} Valid keys: {', '.join(valid)}"
            )
        if bare in target:
            owner = f"{req.detector}'s setting" if target is det_over else f"suite {req.suite}'s option"
            raise ConfigError(f"--set gives {owner} {bare!r} twice (bare and prefixed)")
        target[bare] = value
    suite = suite_cls(apply_overrides(suite_cls.Options(), suite_over))
    profile = det_cls.profile_defaults.get(suite.compute_profile, {})
    config = apply_overrides(det_cls.Config(), profile)
    if "backbone" in det_keys and not config.backbone and "backbone" not in profile:  # a profile's "" is kept
        config = apply_overrides(config, {"backbone": suite.default_backbone})
    config = apply_overrides(config, det_over)
    if getattr(config, "backbone", ""):  # a malformed spec fails now, not after a long index or demo build
        from detbench.models.backbones import parse_spec

        try:
            parse_spec(config.backbone)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    perturbation = None
    if req.perturb:
        from detbench.data.perturbations import parse_perturbation

        perturbation = parse_perturbation(req.perturb)
    check_run_options(req)
    near_duplicates = parse_check_settings(check_settings)  # a bad value fails now
    settings = {key: _dotted(config, key) for key in sorted(det_over)}
    if holdout is not None:
        settings[HOLDOUT_KEY] = holdout
    tiling, tiling_by = resolve_tiling(det_cls, tile_settings)
    if TILES_KEY in tile_settings:
        settings[TILES_KEY] = tiling.spec if tiling else "none"
    if FUSE_KEY in tile_settings and tiling is not None:
        settings[FUSE_KEY] = tiling.fuse
    if req.train_suite:  # else a cross-suite protocol names it: its options are checked once that is known
        training_suite(req.train_suite, train_over)  # an unknown suite or option fails now
    protocol_options = ProtocolOptions(**protocol_settings)  # a bad balance fails now
    if protocol_options.dates_file is not None:
        protocol_options.dates()  # an unreadable or malformed table fails now
    if protocol_options.balance is not None:
        settings[BALANCE_KEY] = protocol_options.balance
    return Resolved(
        suite, det_cls, config, perturbation, ThresholdPolicy.parse(req.threshold), settings, train_over, holdout,
        protocol_options, near_duplicates, tiling, tiling_by,
    )


def check_content(det_cls: type[Detector], config: Any, suite: Suite, warn: Callable[[str], None]) -> None:
    """Refuse a suite without the content fact the detector requires, unless its override setting is on.

    Args:
        det_cls: the detector class (``requires_content``, ``content_override``).
        config: its resolved config.
        suite: the suite run on (evaluation or training).
        warn: told when the override lets the run go on.

    Raises:
        ConfigError: the suite's ``content`` is not the one required and the override is off.
    """
    need, content = det_cls.requires_content, suite.declared_content()
    if not need or content == need:
        return
    declared = f"declares content {content!r}" if content else "declares no content"
    override = det_cls.content_override
    if override and getattr(config, override, False) is True:
        warn(f"{det_cls.name} is made for suites of {need} (content={need!r}) and suite {suite.name} {declared}: "
             f"run anyway because {override}=true (recorded in the run identity)")
        return
    options = {f.name for f in dataclasses.fields(suite.options)} if dataclasses.is_dataclass(suite.options) else set()
    declare = f"; if its images are {need}, say so with --set suite.content={need}" if "content" in options else ""
    fix = f"pass --set {override}=true to run it anyway (recorded in the run identity)" if override else "use one"
    raise ConfigError(f"{det_cls.name} needs a suite whose content is {need!r} (the suite fact content); suite "
                      f"{suite.name} {declared}{declare}; {fix}")


def resolve_tiling(det_cls: type[Detector], given: dict[str, str]) -> tuple[Tiling | None, str | None]:
    """The tiling of a run: ``--set eval.tiles`` (and ``eval.fuse``), else the detector's ``default_tiles``.

    Args:
        det_cls: the detector class (its defaults, whether it reads pixels and gives probabilities).
        given: the ``eval.*`` values the user set.

    Returns:
        ``(tiling or None, who chose it)``.

    Raises:
        ConfigError: a bad value, a fusion rule without tiles, tiles for a detector that reads no pixels, or
            ``logit-mean`` of scores that are not probabilities.
    """
    if TILES_KEY in given:
        tiling, by = parse_tiling(given[TILES_KEY], given.get(FUSE_KEY)), f"--set {TILES_KEY}"
    elif det_cls.default_tiles is not None:
        tiling = parse_tiling(det_cls.default_tiles, given.get(FUSE_KEY, det_cls.default_fuse))
        by = f"{det_cls.name}'s original"
    else:
        tiling, by = parse_tiling("none", given.get(FUSE_KEY)), None
    if tiling is None:
        return None, None
    if not det_cls.scores_pixels:
        raise ConfigError(f"{det_cls.name} reads no pixels, so it cannot score tiles: drop --set {TILES_KEY}")
    if tiling.fuse == "logit-mean" and not det_cls.probability_scores:
        raise ConfigError(f"{FUSE_KEY}=logit-mean takes the logits of probabilities, and {det_cls.name}'s scores are "
                          "not probabilities: use mean or max")
    return tiling, by



def training_suite(name: str, overrides: dict[str, str]) -> Suite:
    """The suite a cross-suite run trains on, with its ``--set train_suite.KEY=VALUE`` options.

    Args:
        name: the training suite's name.
        overrides: its options.

    Returns:
        The suite.

    Raises:
        RegistryError: an unknown suite.
        ConfigError: a bad option (the message says to set them as ``train_suite.KEY=VALUE``).
    """
    cls = SUITES.get(name)
    try:
        return cls(apply_overrides(cls.Options(), overrides))
    except ConfigError as exc:
        raise ConfigError(f"training suite {name}: {exc} (set them as train_suite.KEY=VALUE)") from None





def check_run_options(req: RunRequest) -> None:
    """Range checks of the run's own options (the detector's and suite's are their configs' validate()).

    Args:
        req: the run request (device, seed, bootstrap, workers, batch size).

    Raises:
        ConfigError: the first option out of range, or a device this machine does not have.
    """
    check_device(req.device)
    checks = [
        (0 <= req.seed <= MAX_SEED, f"--seed must be in 0..{MAX_SEED}; got {req.seed}"),
        (req.n_boot >= 0, f"--bootstrap must be >= 0 (0 disables intervals); got {req.n_boot}"),
        (req.workers is None or req.workers >= 0, f"--workers must be >= 0 (0: decode in-process); got {req.workers}"),
        (req.batch_size is None or req.batch_size >= 1, f"--batch-size must be >= 1; got {req.batch_size}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _dotted(config: Any, key: str) -> Any:
    for part in key.split("."):
        config = getattr(config, part)
    return config


DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_device(device: object) -> str | None:
    """Check a device the user named, before any work: one this machine has, of a type detbench runs on.

    Args:
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; None: the default (:func:`default_device`).

    Returns:
        The device as given (stripped), or None.

    Raises:
        ConfigError: not a device name, a type detbench does not run on, CUDA or MPS absent here, or a GPU number
            this machine does not have.
    """
    if device is None:
        return None
    usage = "use cpu, cuda, cuda:N (a GPU number) or mps"
    if not isinstance(device, str):
        raise ConfigError(f"device must be text ({usage}); got {device!r}")
    text = device.strip()
    import torch

    hint = f" (did you mean cuda:{text}?)" if text.isdigit() else ""
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {device!r} is not a device: {usage}{hint}") from None
    if parsed.type not in DEVICE_TYPES or (parsed.type != "cuda" and parsed.index not in (None, 0)):
        raise ConfigError(f"--device {device!r}: detbench runs on cpu, cuda, cuda:N or mps")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "torch sees no CUDA GPU"
            raise ConfigError(f"--device {device}: {why}; use --device cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(
                f"--device {device}: this machine has {count} CUDA GPU{'s' if count != 1 else ''} "
                f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})"
            )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS (Apple-silicon GPUs, macOS) is not available here; use --device cpu")
    return text


def default_device() -> str:
    """The device runs use when none is given.

    Returns:
        ``cuda`` when a CUDA GPU is available, else ``cpu``.
    """
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
