r"""detbench: an open benchmark harness for detectors of AI-generated images.

From Python (each function does what its command does; see :mod:`detbench.api`)::

    import detbench

    run = detbench.run("linear-probe", "demo", settings={"n_train": 12, "n_val": 6, "size": 64})
    run.metrics                              # per generator, then mean and worst (pandas)
    detbench.leaderboard("demo", metric="ap")
    detbench.import_scores("demo", "scores.csv", name="my-api")   # scores computed elsewhere
    detbench.compare([run_a, run_b])         # paired differences with intervals and p-values

``import detbench`` is cheap: nothing heavy (torch, pandas) is imported until a function needs it. Every mistake
raises a :class:`DetbenchError` (its subclasses below: ``ConfigError``, ``InputError``, ``DataError``...); warnings
about the data or the results are :class:`DetbenchWarning`\ s.

The modules behind these functions live in sub-packages by concern (``detbench.engine`` runs, ``detbench.data``
indexes, ``detbench.results`` reads runs back...); ``docs/architecture.md`` maps them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detbench.errors import (
    BackboneError,
    ConfigError,
    DamagedRunError,
    DataError,
    DetbenchError,
    DetbenchWarning,
    InputError,
    LockedError,
    PresetError,
    ProtocolError,
    RegistryError,
    RunLookupError,
    SuiteLayoutError,
    TrainingError,
    WeightsError,
)
from detbench.version import __version__

API = (
    "Run", "run", "sweep", "import_scores", "load_run", "runs", "leaderboard", "compare", "index", "predict",
    "report", "list_detectors", "list_suites", "list_perturbations", "list_presets", "bench",
)  # fmt: skip
__all__ = [
    *API, "DetbenchError", "DetbenchWarning", "BackboneError", "ConfigError", "DamagedRunError", "DataError",
    "InputError", "LockedError", "PresetError", "ProtocolError", "RegistryError", "RunLookupError",
    "SuiteLayoutError", "TrainingError", "WeightsError", "__version__",
]  # fmt: skip

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ imports them on first use
    from detbench.api import compare as compare
    from detbench.api import import_scores as import_scores
    from detbench.api import index as index
    from detbench.api import leaderboard as leaderboard
    from detbench.api import list_detectors as list_detectors
    from detbench.api import list_suites as list_suites
    from detbench.api import load_run as load_run
    from detbench.api import predict as predict
    from detbench.api import report as report
    from detbench.api import run as run
    from detbench.api import runs as runs
    from detbench.api import sweep as sweep
    from detbench.engine.finished_run import Run as Run


def __getattr__(name: str) -> Any:
    """The API functions, imported on first use (so ``import detbench`` imports neither torch nor pandas)."""
    if name in API:
        from detbench import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'detbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
