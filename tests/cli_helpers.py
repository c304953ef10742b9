"""What the CLI-level tests share: the small demo options and an in-process invoker."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner, Result

from detbench.cli.commands import app

# A small demo build (12 train + 6 val images per class and family, 64 px): seconds per run on 2 cores.
SMALL_SETTINGS = {"n_train": 12, "n_val": 6, "size": 64}
SMALL = [arg for key, value in SMALL_SETTINGS.items() for arg in ("--set", f"{key}={value}")] + ["-q"]
# linear-probe on a small folder tree: a bundled light backbone at 32 px.
FAST_FOLDER = ["--set", "backbone=timm:efficientnet_lite0@bundled", "--set", "crop=32", "-q"]


def invoke(*args: str) -> Result:
    """Run ``detbench ARGS`` in this process (no traceback escapes: see ``result.output``/``exit_code``)."""
    return CliRunner().invoke(app, list(args))


def with_small_demo(home: Path, tree: Path) -> Path:
    """``home`` with its own copy of the small demo build ``tree`` (the ``small_demo_tree`` fixture), as if a run
    there had built it."""
    shutil.copytree(tree, home / "demo", dirs_exist_ok=True)
    return home
