"""A run plan is decided complete before any work and never changed afterwards."""

from __future__ import annotations

import dataclasses

import pytest

from detbench.api import request
from detbench.engine.plan import plan_run
from detbench.progress import Phases


def test_the_plan_is_complete_and_immutable() -> None:
    req = request("linear-probe", "demo", settings={"n_train": 12, "n_val": 6, "size": 64}).run
    plan = plan_run(req, Phases(enabled=False))
    assert plan.ctx.suite_root == plan.index.root and plan.ctx.run_dir == plan.fit_dir
    assert plan.train_ctx is plan.ctx and plan.trains
    assert plan.fit_key and plan.run_key["fit_id"] == plan.fit_id
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.run_key = {}  # type: ignore[misc]
    again = plan_run(req, Phases(enabled=False))
    assert (again.fit_id, again.run_id) == (plan.fit_id, plan.run_id)
    assert not plan.fit_dir.exists()  # planning writes no fit
