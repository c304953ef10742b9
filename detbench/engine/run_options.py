"""The options of a run, declared once: name, default, accepted type and help text.

``detbench run`` / ``detbench sweep`` (their flags and help), :func:`detbench.api.request`, :func:`detbench.api.run`
and :func:`detbench.api.sweep` (their arguments, defaults and type checks) all follow :data:`RUN_OPTIONS`;
``tests/test_run_options.py`` checks every one of them against it. Adding an option means one entry here, the
argument in those signatures, and where :class:`~detbench.engine.resolve.RunRequest` takes it.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from detbench.errors import ConfigError


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # True is an int to Python, not here


def _is_seeds(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(_is_int(v) for v in value)


# kind -> (what the message says, the test); None passes for an optional option
KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "text": ("text (a str)", lambda v: isinstance(v, str)),
    "path": ("a path (str or os.PathLike)", lambda v: isinstance(v, (str, os.PathLike))),
    "int": ("an integer (not a bool)", _is_int),
    "bool": ("True or False", lambda v: isinstance(v, bool)),
    "threshold": ("'calibrated' or a number in [0, 1] (not a bool)",
                  lambda v: isinstance(v, str) or (isinstance(v, numbers.Real) and not isinstance(v, bool))),
    "seeds": ("a list of integers (not bools)", _is_seeds),
}  # fmt: skip


@dataclass(frozen=True)
class RunOption:
    """One option of a run.

    Attributes:
        name: the Python argument (the flag is ``--name`` with ``-`` for ``_``).
        default: the default of every signature that takes it.
        kind: a key of :data:`KINDS` (the accepted Python type).
        help: the flag's help text.
        optional: None is accepted too.
        sweep: ``detbench sweep`` and :func:`detbench.api.sweep` take it as well.
    """

    name: str
    default: Any
    kind: str
    help: str
    optional: bool = False
    sweep: bool = True


BOOTSTRAP_HELP = "Bootstrap resamples for the 95% intervals of acc and AP (0: none)."
THRESHOLD_HELP = (
    "Decision threshold of acc: a number in [0, 1], or 'calibrated' (best balanced accuracy on the "
    "training generator's held-out split)."
)
FAST_INDEX_HELP = "Index ids from size, mtime and path instead of content hashes."

RUN_OPTIONS: tuple[RunOption, ...] = (
    RunOption("root", None, "path", "Where the suite's data lives (the demo builds its own).", optional=True),
    RunOption("protocol", None, "text", "Protocol (default: the suite's standard one).", optional=True),
    RunOption("seed", 0, "int", "Seed for splits, training and sampling."),
    RunOption("seeds", None, "seeds",
              "Comma list of seeds (e.g. 0,1,2): one run per seed, instead of --seed; leaderboards group them.",
              optional=True),
    RunOption("perturb", None, "text",
              "Evaluation-time perturbation, e.g. jpeg:75, blur:2+jpeg:90, social:1, or jpeg:96@fake (the fakes only).",
              optional=True, sweep=False),
    RunOption("device", None, "text", "cpu, cuda, cuda:1 ... (default: cuda if available).", optional=True),
    RunOption("threshold", "0.5", "threshold", THRESHOLD_HELP),
    RunOption("bootstrap", 1000, "int", BOOTSTRAP_HELP),
    RunOption("force", False, "bool", "Recompute even if this exact run exists (the old one is kept aside)."),
    RunOption("train_suite", None, "text", "Cross-suite: train on this suite's protocol, evaluate on --suite.",
              optional=True),
    RunOption("train_root", None, "path", "Where the training suite's data lives.", optional=True),
    RunOption("train_protocol", None, "text", "The training suite's protocol (default: its standard one).",
              optional=True),
    RunOption("workers", None, "int",
              "Decoding workers (default: half the cores for a GPU, none on <=4 CPU cores).", optional=True),
    RunOption("batch_size", None, "int", "Batch size for feature extraction/scoring.", optional=True),
    RunOption("fast_index", False, "bool", FAST_INDEX_HELP),
    RunOption("preset", None, "text", "Reproduce a published table (see `detbench ls presets`).", optional=True,
              sweep=False),
    RunOption("allow_cpu", False, "bool", "Let a preset run without a CUDA GPU.", sweep=False),
)  # fmt: skip
OPTIONS: dict[str, RunOption] = {option.name: option for option in RUN_OPTIONS}
SWEEP_OPTIONS: tuple[str, ...] = tuple(o.name for o in RUN_OPTIONS if o.sweep)


def check_types(values: dict[str, Any]) -> None:
    """Refuse run arguments of the wrong type with one :class:`~detbench.errors.ConfigError` naming the argument
    (Python would otherwise fail later with a bare TypeError, or accept ``seed=True`` as 1).

    Args:
        values: arguments by name; names that are not run options are not checked here.

    Raises:
        ConfigError: the first argument of another type.
    """
    for name, value in values.items():
        option = OPTIONS.get(name)
        if option is None or (value is None and option.optional):
            continue
        check_kind(option.kind, name, value, optional=option.optional)


def check_kind(kind: str, name: str, value: Any, *, optional: bool = False) -> None:
    """Refuse ``value`` unless it is of ``kind`` (a key of :data:`KINDS`).

    Args:
        kind: the accepted type.
        name: the argument, for the message.
        value: its value.
        optional: None is accepted too (the message says so).

    Raises:
        ConfigError: ``value`` is of another type.
    """
    what, test = KINDS[kind]
    if (value is None and optional) or test(value):
        return
    none = " or None" if optional else ""
    raise ConfigError(f"{name} must be {what}{none}; got {value!r} ({type(value).__name__})")


def parse_seeds(text: str | None) -> list[int] | None:
    """The seeds ``--seeds`` names (``0,1,2``); None when not given.

    Args:
        text: the comma list.

    Returns:
        The seeds, in the order given.

    Raises:
        ConfigError: not integers, or empty.
    """
    if text is None:
        return None
    message = f"--seeds takes a comma list of integers, e.g. 0,1,2; got {text!r}"
    try:
        seeds = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(message) from None
    if not seeds:
        raise ConfigError(message)
    return seeds


def check_seeds(seed: int, seeds: list[int] | None) -> list[int]:
    """The seeds of a request: ``seeds`` when given (checked), else ``[seed]``.

    Args:
        seed: the single seed (``--seed``).
        seeds: the seeds (``--seeds``), or None.

    Returns:
        The seeds to run, in order.

    Raises:
        ConfigError: ``seeds`` with duplicates, empty, or together with a non-default ``seed``.
    """
    if seeds is None:
        return [seed]
    if not seeds:
        raise ConfigError("seeds is empty; give at least one seed, e.g. --seeds 0,1,2")
    duplicates = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if duplicates:
        raise ConfigError(f"--seeds has duplicates ({', '.join(map(str, duplicates))}); each seed runs once")
    if seed != OPTIONS["seed"].default:
        raise ConfigError("give either --seed or --seeds, not both")
    return list(seeds)
