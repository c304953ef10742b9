"""What the CLI-level tests share: the small demo options and an in-process invoker."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from detbench.cli.commands import app

# A small demo build (12 train + 6 val images per class and family, 64 px): seconds per run on 2 cores.
SMALL = ["--set", "n_train=12", "--set", "n_val=6", "--set", "size=64", "-q"]
# linear-probe on a small folder tree: a bundled light backbone at 32 px.
FAST_FOLDER = ["--set", "backbone=timm:efficientnet_lite0@bundled", "--set", "crop=32", "-q"]


def invoke(*args: str) -> Result:
    """Run ``detbench ARGS`` in this process (no traceback escapes: see ``result.output``/``exit_code``)."""
    return CliRunner().invoke(app, list(args))
