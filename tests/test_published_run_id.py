"""The README's first command, planned on the full default demo build (nothing trained), has the run id that
results/ and the README publish: a change of run ids cannot land without regenerating them."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke

from detbench.engine.plan import plan_run
from detbench.engine.runner import Runner

REPO = Path(__file__).resolve().parents[1]
REGENERATE = ("the run id of the README's first command changed: if that is intended, regenerate results/ with "
              "scripts/regenerate_results.sh and quote the new id and numbers in README.md")


class Planned(BaseException):
    """Stops a run once it is planned (not an Exception: the command line's guard would report it as a bug)."""


def first_command() -> list[str]:
    """The arguments of the ``detbench run`` command in the README's first code block."""
    block = REPO.joinpath("README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    line = next(line for line in block.splitlines() if "detbench run" in line)
    return shlex.split(line.split("detbench ", 1)[1].split("#", 1)[0])


def planned_run_id(args: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The id ``detbench ARGS`` would compute or reuse, from its plan: the demo built and indexed, nothing trained."""
    ids: list[str] = []

    def plan_only(self: Runner, req: object) -> None:
        ids.append(plan_run(req, self.phases, self._set_phase).run_id[:16])
        raise Planned

    monkeypatch.setattr(Runner, "run", plan_only)
    with pytest.raises(Planned):
        invoke(*args, "-q")
    return ids[0]


def published_mpft_run_id() -> str:
    """The default MPFT demo run of results/demo_leaderboard.csv."""
    board = pd.read_csv(REPO / "results" / "demo_leaderboard.csv", dtype=str, keep_default_na=False)
    row = board[(board["detector"] == "mpft") & (board["settings"] == "defaults") & (board["perturbation"] == "clean")
                & (board["threshold"] == "0.5")]
    assert len(row) == 1, row
    return row["run_id"].iloc[0]


def test_the_readme_first_command_has_the_published_run_id(monkeypatch: pytest.MonkeyPatch) -> None:
    args = first_command()
    assert args == ["run", "mpft", "--suite", "demo"]  # the default MPFT demo run that results/ publishes
    quoted = re.findall(r"`run ([0-9a-f]{16}) ->", REPO.joinpath("README.md").read_text())
    published = published_mpft_run_id()
    assert quoted == [published], "README.md quotes another run id than results/demo_leaderboard.csv"
    assert (REPO / "results" / "demo_report" / f"{published}_acc.png").is_file(), "results/demo_report is stale"
    assert planned_run_id(args, monkeypatch) == published, REGENERATE
