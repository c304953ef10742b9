"""The embedded demo suite: real photo crops vs synthetic generator families, built offline.

A synthetic stand-in for a real benchmark: its fake families deviate from the photos in texture, in global
statistics only, or in both (see ``demo_build.FAMILIES``), so the train-on-one, evaluate-on-all protocol is a
genuine generalisation test that runs in under a minute on a laptop CPU. Its numbers say nothing about real
generators.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detbench.data.suites import Entry, Protocol, Suite, SuiteLayoutError, top_levels, walk_files
from detbench.paths import home_subdir
from detbench.store import content_hash, exclusive_lock

LABEL_DIRS = {"0_real": 0, "1_fake": 1}


@dataclass(frozen=True)
class DemoOptions:
    """The demo suite's options: images per class and family in each split, their size and the build seed."""

    n_train: int = 200  # images per class per family in the train split
    n_val: int = 100  # images per class per family in the val split
    size: int = 128
    build_seed: int = 0

    def validate(self) -> None:
        """Check the build options.

        Raises:
            ConfigError: ``n_train < 4``, ``n_val < 1``, ``size`` outside 32..512 or not a multiple of 8, or a
                negative ``build_seed``.
        """
        from detbench.config import ConfigError

        if self.n_train < 4 or self.n_val < 1 or not 32 <= self.size <= 512 or self.size % 8 or self.build_seed < 0:
            raise ConfigError(
                "demo options: n_train >= 4, n_val >= 1, 32 <= size <= 512 with size a multiple of 8, "
                f"build_seed >= 0; got n_train={self.n_train}, n_val={self.n_val}, size={self.size}, "
                f"build_seed={self.build_seed}"
            )


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "demo",
    "class": "DemoSuite",
    "summary": "Embedded offline demo: photo crops vs 4 synthetic generator families (a stand-in, not a benchmark).",
}


class DemoSuite(Suite):
    """The offline demo suite: photo crops against synthetic generator families, built on first use."""

    name = REGISTRATION["name"]
    version = 1
    default_backbone = "timm:efficientnet_lite0@bundled"
    default_protocol = "composite"
    compute_profile = "small"
    Options = DemoOptions

    def __init__(self, options: DemoOptions | None = None) -> None:
        super().__init__(options)
        self._written: dict[Path, dict[str, dict[str, Any]]] = {}  # root built here -> index rows of its files

    def build_dir(self) -> Path:
        """Where the demo tree of these options lives (built or not).

        Returns:
            ``$DETBENCH_HOME/demo/v<builder version>-<hash of the options>``.
        """
        from detbench.datasets.demo_build import BUILDER_VERSION

        key = content_hash({"builder": BUILDER_VERSION, **dataclasses.asdict(self.options)})[:12]
        return home_subdir("demo") / f"v{BUILDER_VERSION}-{key}"

    def default_root(self, phases: Any | None = None) -> Path:
        """The built demo tree, building it first (once, under a lock; a killed build is redone).

        Args:
            phases: a :class:`detbench.progress.Phases` to show the build's progress on, or None.

        Returns:
            The tree's root (:meth:`build_dir`).
        """
        from PIL import Image

        from detbench.data.index import written_row
        from detbench.datasets.demo_build import FAMILIES, build_demo

        root = self.build_dir()
        if (root / "BUILD.json").exists():
            return root
        log = phases.log if phases is not None else None
        with exclusive_lock(root.parent / f"{root.name}.lock", "the demo build", wait=True, on_wait=log):
            if (root / "BUILD.json").exists():
                return root
            o = self.options
            total = len(FAMILIES) * 2 * (o.n_train + o.n_val)
            rows: dict[str, dict[str, Any]] = {}
            args = {"seed": o.build_seed, "size": o.size, "n_train": o.n_train, "n_val": o.n_val,
                    "written": lambda rel, path, data, pixels: rows.__setitem__(
                        rel, written_row(rel, path, data, Image.fromarray(pixels)))}
            if phases is None:
                build_demo(root, **args)
            else:
                with phases.phase("build demo suite", total) as tracker:
                    build_demo(root, **args, progress=lambda done, _total: tracker.update(done, total))
            self._written[root.resolve()] = rows
        return root

    def written_rows(self, root: Path) -> dict[str, dict[str, Any]]:
        """The index rows of the images :meth:`default_root` built under ``root`` in this process, made while it wrote
        them (the index takes a row only while its file's size and mtime are unchanged).

        Args:
            root: the suite root, resolved.

        Returns:
            Path relative to ``root`` -> row; empty when this adapter did not build ``root``.
        """
        return self._written.get(root, {})

    def scan(self, root: Path) -> Iterator[Entry]:
        """Every ``<family>/<train|val>/<0_real|1_fake>/*`` image under ``root``.

        Args:
            root: the demo tree.

        Yields:
            One entry per image (fake family ``synthetic``); other files are skipped.

        Raises:
            SuiteLayoutError: no file fits the layout.
        """
        found = False
        for rel, _abs in walk_files(root):
            parts = rel.split("/")
            if len(parts) != 4 or parts[2] not in LABEL_DIRS or parts[1] not in ("train", "val"):
                continue
            found = True
            label = LABEL_DIRS[parts[2]]
            yield Entry(
                path=rel, generator=parts[0], split=parts[1], label=label, family="real" if label == 0 else "synthetic"
            )
        if not found:
            raise SuiteLayoutError(
                f"{root} is not a demo suite tree (<family>/<train|val>/<0_real|1_fake>/*.png). "
                f"Found:\n{top_levels(root)}"
            )

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """One protocol per family: train on it, evaluate on every family's val split.

        Args:
            generators: the demo families in the index.

        Returns:
            Family name -> :class:`~detbench.data.suites.Protocol`.
        """
        return {
            g: Protocol(
                name=g, train_generators=(g,), description=f"train on demo family {g}, evaluate on every family"
            )
            for g in generators
        }

    def describe_build(self, root: Path) -> dict[str, Any]:
        """The build summary of a demo tree.

        Args:
            root: a built demo tree.

        Returns:
            The contents of ``root/BUILD.json`` (see :func:`~detbench.datasets.demo_build.build_demo`).
        """
        return json.loads((root / "BUILD.json").read_text())
