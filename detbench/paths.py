"""Where detbench writes: everything lives under ``$DETBENCH_HOME`` (default: the user cache dir)."""

from __future__ import annotations

import os
from pathlib import Path


def detbench_home() -> Path:
    """``$DETBENCH_HOME`` if set, else the platform's user cache dir (e.g. ``~/.cache/detbench``)."""
    env = os.environ.get("DETBENCH_HOME")
    if env:
        home = Path(env).expanduser()
    else:
        import platformdirs

        home = Path(platformdirs.user_cache_dir("detbench"))
    home.mkdir(parents=True, exist_ok=True)
    return home


def home_subdir(name: str) -> Path:
    """``$DETBENCH_HOME/<name>``, created on demand."""
    path = detbench_home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
