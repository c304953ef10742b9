"""The run options are declared once (detbench.engine.run_options): every signature and flag follows that table; and
``--seeds`` runs one run per seed, which leaderboards group as mean and standard deviation."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
import typer
from cli_helpers import SMALL, SMALL_SETTINGS, invoke

import detbench
from detbench import api
from detbench.cli.commands import app
from detbench.engine.run_options import OPTIONS, SWEEP_OPTIONS, check_seeds, parse_seeds
from detbench.errors import ConfigError


def _cli_params(name: str) -> dict[str, click.Parameter]:
    command = typer.main.get_command(app).commands[name]
    return {p.name: p for p in command.params}


@pytest.mark.parametrize("function, names", [
    (api.request, [n for n in OPTIONS if n != "seeds"]),
    (api.run, list(OPTIONS)),
    (api.sweep, list(SWEEP_OPTIONS)),
])  # fmt: skip
def test_python_signatures_take_every_option_with_its_declared_default(function, names) -> None:
    params = inspect.signature(function).parameters
    for name in names:
        assert name in params, f"{function.__name__} lacks the run option {name}"
        assert params[name].default == OPTIONS[name].default, (function.__name__, name)
    own = {"perturb"} if function is api.sweep else set()  # a sweep's perturb: its axes of values
    unexpected = {n for n in params if n in OPTIONS} - set(names) - own
    assert not unexpected, f"{function.__name__} takes {unexpected}, which the table does not give it"


@pytest.mark.parametrize("command, names", [("run", list(OPTIONS)), ("sweep", list(SWEEP_OPTIONS))])
def test_command_line_flags_follow_the_table(command: str, names: list[str]) -> None:
    params = _cli_params(command)
    for name in names:
        assert name in params, f"detbench {command} lacks --{name.replace('_', '-')}"
        assert params[name].default == OPTIONS[name].default, (command, name)
        if not (command == "sweep" and name == "force"):  # a sweep's --force also says what a sweep recomputes
            assert params[name].help == OPTIONS[name].help, (command, name)
    own = {"perturb"} if command == "sweep" else set()  # a sweep's --perturb: one axis of values
    assert {n for n in params if n in OPTIONS} - own == set(names)


def test_the_cli_passes_every_option_to_the_api() -> None:
    from detbench.cli.commands import RUN_ARGUMENTS, SWEEP_ARGUMENTS

    assert set(RUN_ARGUMENTS) == set(OPTIONS) - {"seeds"}
    assert set(SWEEP_ARGUMENTS) == set(SWEEP_OPTIONS) - {"seeds"}


@pytest.mark.parametrize("seed, seeds, message", [
    (0, [1, 1], "duplicates (1)"),
    (0, [], "seeds is empty"),
    (3, [0, 1], "either --seed or --seeds"),
])  # fmt: skip
def test_bad_seeds_are_refused(seed: int, seeds: list[int], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_seeds(seed, seeds)


def test_seeds_text_is_parsed_or_refused() -> None:
    assert parse_seeds("0, 1,2") == [0, 1, 2] and parse_seeds(None) is None
    for bad in ("a,b", ",", "1.5"):
        with pytest.raises(ConfigError, match="comma list of integers"):
            parse_seeds(bad)


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0,1,0"], "duplicates (0)"),
    (["--seeds", "x"], "comma list of integers"),
    (["--seed", "2", "--seeds", "0,1"], "either --seed or --seeds"),
])  # fmt: skip
def test_bad_seeds_on_the_command_line_are_one_error_line_before_any_work(args: list[str], message: str,
                                                                           tmp_path: Path) -> None:
    for command in (["run", "linear-probe"], ["sweep", "linear-probe", "-p", "jpeg:90"]):
        result = invoke(*command, "--suite", "demo", *SMALL, *args)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    from detbench.paths import home_subdir

    assert not list(home_subdir("runs").rglob("run.json"))


@pytest.mark.parametrize("kwargs, message", [
    ({"seeds": [0, 0]}, "duplicates"),
    ({"seeds": [True, 1]}, "seeds must be a list of integers"),
    ({"seeds": "0,1"}, "seeds must be a list of integers"),
])  # fmt: skip
def test_bad_seeds_in_python_raise_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        detbench.run("linear-probe", "demo", settings=SMALL_SETTINGS, **kwargs)


def test_seeds_run_once_each_and_the_leaderboard_groups_them(tmp_path: Path) -> None:
    result = invoke("run", "linear-probe", "--suite", "demo", *SMALL, "--seeds", "0,1", "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    assert "over seeds 0,1" in " ".join(result.output.split()), result.output
    from detbench.paths import home_subdir

    records = [json.loads(p.read_text()) for p in home_subdir("runs").glob("demo/linear-probe/*/run.json")]
    assert sorted(r["key"]["seed"] for r in records) == [0, 1] and len({r["fit_id"] for r in records}) == 2
    means = {r["key"]["seed"]: pd.read_parquet(Path(r["paths"]["run"]) / "metrics.parquet").set_index("generator")
             for r in records}

    board = detbench.leaderboard("demo", metric="acc")
    assert len(board) == 1, board
    row = board.iloc[0]
    assert row["seeds"] == "0,1" and row["run_id"].endswith(" +1")
    for generator in ("mean", *[g for g in means[0].index if g not in ("mean", "worst")]):
        expected = np.mean([means[s].loc[generator, "acc"] for s in (0, 1)])
        assert row[generator] == pytest.approx(expected, abs=1e-12)
    assert row["mean_sd"] == pytest.approx(np.std([means[s].loc["mean", "acc"] for s in (0, 1)], ddof=1), abs=1e-12)

    shown = invoke("leaderboard", "demo")
    assert shown.exit_code == 0 and "sd (seeds)" in shown.output and "0,1" in shown.output, shown.output


def test_python_seeds_return_one_run_per_seed(tmp_path: Path) -> None:
    runs = detbench.run("linear-probe", "demo", settings=SMALL_SETTINGS, seeds=[2, 3], bootstrap=0)
    assert [r.record["key"]["seed"] for r in runs] == [2, 3]
    single = detbench.run("linear-probe", "demo", settings=SMALL_SETTINGS, seed=2, bootstrap=0)
    assert single.record["run_id"] == runs[0].record["run_id"] and single.reused


def test_an_eval_only_run_writes_no_fit_folder(tmp_path: Path) -> None:
    from detbench.paths import home_subdir

    index = detbench.index("demo", settings=SMALL_SETTINGS)
    rows = index[index["split"] == "val"]
    pd.DataFrame({"path": rows["path"], "score": rows["label"] * 0.5 + 0.25}).to_csv(tmp_path / "s.csv", index=False)
    run = detbench.import_scores("demo", tmp_path / "s.csv", name="plain", settings=SMALL_SETTINGS)
    assert run.record["fit"]["stored"] is False and run.record["paths"]["fit"] is None
    detector_dir = home_subdir("runs") / "demo" / "external"
    assert [p.name for p in detector_dir.iterdir()] == [run.id[: len(p.name)] for p in detector_dir.iterdir()]
    assert not list(detector_dir.rglob("fit.json")) and not list(detector_dir.rglob("state"))
