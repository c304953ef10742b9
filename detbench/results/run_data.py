"""What a report shows of one run, read from its folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass
class RunData:
    """What a report shows of one run: its folder, its record and its per-generator metrics."""

    run_dir: Path
    record: dict[str, Any]
    metrics: pd.DataFrame

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def spec(self) -> str:
        """The run's perturbation.

        Returns:
            Its spec (``jpeg:75`` ...), or ``clean``.
        """
        p = self.record.get("perturbation")
        return "clean" if not p else str(p.get("spec"))

    @classmethod
    def load(cls, run_dir: Path, record: dict[str, Any]) -> RunData:
        """Read a run's metrics.

        Args:
            run_dir: the run's folder.
            record: its record (``run.json``).

        Returns:
            The run's data.
        """
        from detbench.engine.finished_run import Run

        return cls(run_dir, record, Run(run_dir, record).metrics)
