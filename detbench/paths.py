"""Where detbench writes: everything lives under ``$DETBENCH_HOME`` (default: the user cache dir)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def home_path() -> Path:
    """``$DETBENCH_HOME`` if set, else the platform's user cache dir (e.g. ``~/.cache/detbench``); not created.

    Returns:
        The path.
    """
    env = os.environ.get("DETBENCH_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("detbench"))


def detbench_home() -> Path:
    """:func:`home_path`, created on demand.

    Returns:
        The existing folder.
    """
    home = home_path()
    home.mkdir(parents=True, exist_ok=True)
    return home


@contextlib.contextmanager
def temporary_home(path: Path) -> Iterator[None]:
    """``$DETBENCH_HOME`` set to ``path`` for the block, then restored (or unset again).

    Args:
        path: the home to use.

    Yields:
        Nothing; the variable is set while the block runs.
    """
    old = os.environ.get("DETBENCH_HOME")
    os.environ["DETBENCH_HOME"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("DETBENCH_HOME", None)
        else:
            os.environ["DETBENCH_HOME"] = old


def home_subdir(name: str) -> Path:
    """``$DETBENCH_HOME/<name>``, created on demand.

    Args:
        name: the sub-folder (``runs``, ``features``, ``indexes``, ``weights``, ``demo`` ...).

    Returns:
        The existing folder.
    """
    path = detbench_home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def home_description() -> str:
    """Where detbench writes, for messages about full or read-only disks.

    Returns:
        One sentence naming the home and ``DETBENCH_HOME``.
    """
    return f"detbench writes everything under {home_path()}; set DETBENCH_HOME to use another folder"


def keep_matplotlib_in_home() -> None:
    """Make matplotlib keep its config and font cache under ``$DETBENCH_HOME/matplotlib`` (unless the user set
    ``MPLCONFIGDIR``). Call before importing matplotlib: it reads the variable when first imported.
    """
    if not os.environ.get("MPLCONFIGDIR"):
        os.environ["MPLCONFIGDIR"] = str(home_subdir("matplotlib"))
