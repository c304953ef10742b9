"""Objects that released checkpoints pickle beside their weights, built here without the libraries they come from.

A test saves a file in a release's layout with these and loads it through detbench, which must read the weights
without importing (or needing) the library and without running any of its code.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def yacs_cfgnode(marker: Path | None = None) -> Iterator[type]:
    """A class that pickles as ``yacs.config.CfgNode``, importable under that name only inside the block.

    Built as yacs 0.1.8 builds its node: a ``dict`` subclass whose ``__init__`` keeps the four flags
    (``__immutable__``, ``__deprecated_keys__``, ``__renamed_keys__``, ``__new_allowed__``) in its ``__dict__``;
    ``freeze()`` sets ``__immutable__`` on every node, as SPAI's training does before it saves.

    Args:
        marker: a file the class writes whenever any of its code runs after the block (a loader that calls it).

    Yields:
        The class.
    """
    def touched(*_: Any) -> None:
        if marker is not None and sys.modules.get("yacs.config") is not module:
            marker.write_text("yacs.config.CfgNode code ran")

    class CfgNode(dict):
        def __init__(self, init: dict[str, Any] | None = None, new_allowed: bool = False) -> None:
            touched()
            super().__init__(init or {})
            self.__dict__["__immutable__"] = False
            self.__dict__["__deprecated_keys__"] = set()
            self.__dict__["__renamed_keys__"] = {}
            self.__dict__["__new_allowed__"] = new_allowed

        def __new__(cls, *args: Any, **kwargs: Any) -> CfgNode:
            touched()
            return super().__new__(cls)

        def __setstate__(self, state: dict[str, Any]) -> None:
            touched()
            self.__dict__.update(state)

        def freeze(self) -> None:
            self.__dict__["__immutable__"] = True
            for value in self.values():
                if isinstance(value, CfgNode):
                    value.freeze()

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    package, module = types.ModuleType("yacs"), types.ModuleType("yacs.config")
    package.config, module.CfgNode = module, CfgNode  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in ("yacs", "yacs.config")}
    sys.modules.update({"yacs": package, "yacs.config": module})
    try:
        yield CfgNode
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
