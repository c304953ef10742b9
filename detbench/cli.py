"""The ``detbench`` command line. Heavy libraries (torch, sklearn) are imported only by commands that need them."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Benchmark detectors of AI-generated images: train on one generator, evaluate on all.",
)
console = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True)

USER_ERRORS = {
    "RegistryError",
    "ConfigError",
    "SuiteLayoutError",
    "ProtocolError",
    "LockedError",
    "WeightsError",
    "FileNotFoundError",
    "NotADirectoryError",
    "PermissionError",
    "PresetError",
}


def _fail(exc: BaseException) -> None:
    err.print("[bold red]error:[/] ", end="")
    err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _user_error(exc: BaseException) -> bool:
    return any(cls.__name__ in USER_ERRORS for cls in type(exc).__mro__)


@app.callback()
def main_options(
    offline: Annotated[bool, typer.Option("--offline", help="Never touch the network (sets HF_HUB_OFFLINE).")] = False,
) -> None:
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["DETBENCH_OFFLINE"] = "1"
        if "huggingface_hub" in sys.modules:
            from detbench.weights import set_offline

            set_offline(True)


@app.command()
def run(
    detector: Annotated[
        Optional[str], typer.Argument(help="Detector name (see `detbench ls detectors`); implied by --preset.")
    ] = None,
    suite: Annotated[
        Optional[str], typer.Option("--suite", "-s", help="Suite name (see `detbench ls suites`); default demo.")
    ] = None,
    preset: Annotated[
        Optional[str], typer.Option(help="Reproduce a published table (see `detbench ls presets`).")
    ] = None,
    allow_cpu: Annotated[bool, typer.Option(help="Let a preset run without a CUDA GPU.")] = False,
    root: Annotated[
        Optional[Path], typer.Option(help="Where the suite's data lives (the demo builds its own).")
    ] = None,
    protocol: Annotated[Optional[str], typer.Option(help="Protocol (default: the suite's standard one).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Config override key=value (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for splits, training and sampling.")] = 0,
    force: Annotated[
        bool, typer.Option(help="Recompute even if this exact run exists (the old one is kept aside).")
    ] = False,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Image decoding workers (default: half the cores).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size for feature extraction/scoring.")] = None,
    perturb: Annotated[
        Optional[str], typer.Option(help="Evaluation-time perturbation, e.g. jpeg:75 or blur:2+jpeg:90.")
    ] = None,
    fast_index: Annotated[bool, typer.Option(help="Index ids from size+mtime instead of content hashes.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train DETECTOR on the protocol's training generator and evaluate it on every generator."""
    from detbench.config import parse_set_args
    from detbench.progress import Phases
    from detbench.runner import Runner, RunRequest

    runner = Runner(Phases(err, enabled=not quiet))
    chosen = None
    try:
        overrides = parse_set_args(set_)
        preset_record = None
        if preset:
            from detbench.presets import get_preset, prepare_preset_run

            chosen = get_preset(preset)
            detector, suite, protocol, overrides, preset_record = prepare_preset_run(
                chosen, detector, suite, protocol, overrides, root=root, allow_cpu=allow_cpu, device=device
            )
        elif detector is None:
            raise typer.BadParameter("name a DETECTOR or pass --preset NAME")
        req = RunRequest(
            detector=detector,
            suite=suite or "demo",
            root=root,
            protocol=protocol,
            preset=preset_record,
            overrides=overrides,
            seed=seed,
            force=force,
            device=device,
            workers=workers,
            batch_size=batch_size,
            perturb=perturb,
            index_mode="fast" if fast_index else "full",
        )
        result = runner.run(req)
    except KeyboardInterrupt:
        where = f" in {runner.run_dir}" if runner.run_dir else ""
        err.print(
            f"\n[yellow]Interrupted while {runner.phase}{where}.[/] Finished work is kept; "
            "run the same command again to resume."
        )
        raise typer.Exit(130) from None
    except Exception as exc:
        if _user_error(exc):
            _fail(exc)
        raise
    _show_result(result)
    if chosen is not None:
        _show_preset_comparison(chosen, result)


def _show_preset_comparison(preset, result) -> None:  # noqa: ANN001
    from detbench.display import frame_table
    from detbench.presets import compare

    table = compare(preset, result.metrics)
    if table.empty:
        console.print(f"preset {preset.name}: no published per-generator values to compare with")
        return
    shown = table.assign(
        measured=table["measured"].map(lambda v: f"{v:.1f}"),
        delta=table["delta"].map(lambda v: "" if v != v else f"{v:+.1f}"),
        flag=table["flag"].map(lambda f: "beyond tolerance" if f else ""),
        expected=table["expected"].map(str),
    )
    confidence = preset.published.get("confidence", "")
    console.print(frame_table(shown, f"{preset.name}: measured vs published (%), {confidence}"))
    console.print(f"source: {preset.published.get('source', 'unknown')}")
    if not (result.record.get("preset") or {}).get("reproduction", False):
        console.print("[yellow]Not a reproduction:[/] settings differ from the preset "
                      f"({', '.join(result.record['preset'].get('departures', []))}); never compare it as one.")


def _show_result(result) -> None:  # noqa: ANN001
    from detbench.display import metrics_table

    rec = result.record
    title = (
        f"{rec['detector']} on {rec['suite']} (protocol {rec['protocol']}, backbone {rec['backbone']}"
        + (f", {rec['perturbation'].get('spec')}" if rec.get("perturbation") else "")
        + ")"
    )
    console.print(metrics_table(result.metrics, title))
    counts = rec.get("counts", {})
    skipped = counts.get("eval_skipped", 0)
    if skipped:
        console.print(f"[yellow]{skipped} evaluation images skipped:[/] {counts.get('skipped_reasons')}")
    console.print(f"run {rec['run_id'][:16]} -> {result.run_dir}" + (" (reused)" if result.reused else ""))


@app.command()
def index(
    suite: Annotated[str, typer.Argument(help="Suite name.")],
    root: Annotated[Optional[Path], typer.Option(help="Suite root (the demo builds its own).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Suite option key=value.")] = None,
    fast: Annotated[bool, typer.Option(help="Ids from size+mtime and header-only checks (faster).")] = False,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes for probing files.")] = None,
) -> None:
    """Index a suite on disk and print its counts, formats and problems."""
    from detbench.config import apply_overrides, parse_set_args
    from detbench.index import build_index
    from detbench.progress import Phases
    from detbench.registry import SUITES

    try:
        cls = SUITES.get(suite)
        obj = cls(apply_overrides(cls.Options(), parse_set_args(set_)))
        phases = Phases(err)
        path = root or obj.default_root(phases)
        if path is None:
            raise FileNotFoundError(f"suite {suite!r} needs --root PATH")
        with phases.phase(f"index {suite}", None) as tracker:
            idx = build_index(obj, path, mode="fast" if fast else "full", workers=workers, progress=tracker.update)
    except Exception as exc:
        if _user_error(exc):
            _fail(exc)
        raise
    from detbench.display import index_summary

    for table in index_summary(idx):
        console.print(table)
    console.print(f"index written to {idx.directory}")


@app.command("ls")
def ls(what: Annotated[str, typer.Argument(help="detectors | suites | perturbations | presets | runs")]) -> None:
    """List registered detectors, suites, perturbations or paper presets, or finished runs."""
    from rich.table import Table

    from detbench.registry import DETECTORS, PERTURBATIONS, SUITES

    registries = {"detectors": DETECTORS, "suites": SUITES, "perturbations": PERTURBATIONS}
    if what in registries:
        reg = registries[what]
        table = Table(title=what)
        for col in ("name", "summary", "origin"):
            table.add_column(col)
        for name in reg.names():
            d = reg.describe(name)
            table.add_row(name, d["summary"] or d["target"], d["origin"])
        console.print(table)
    elif what == "runs":
        _list_runs()
    elif what == "presets":
        _list_presets()
    else:
        _fail(ValueError(f"cannot list {what!r}; choose detectors, suites, perturbations, presets or runs"))


def _list_presets() -> None:
    from rich.table import Table

    from detbench.presets import load_presets

    table = Table(title="paper presets (detbench run --preset NAME --root PATH)")
    for col in ("name", "runs", "published mean acc", "confidence", "source"):
        table.add_column(col, overflow="fold")
    for p in load_presets().values():
        mean = p.expected("acc").get("mean")
        span = p.expected_range("acc").get("mean")
        shown = f"{mean:.2f}" if mean is not None else (f"{span[0]}–{span[1]}" if span else "unknown")
        table.add_row(f"{p.name} (v{p.version})", f"{p.detector} on {p.suite}/{p.protocol}", shown,
                      str(p.published.get("confidence", "")), str(p.published.get("source", "")))
    console.print(table)


def _list_runs() -> None:
    from rich.table import Table

    from detbench.display import fmt
    from detbench.leaderboard import run_records

    table = Table(title="finished runs")
    for col in ("run id", "suite", "detector", "protocol", "backbone", "perturbation", "mean acc", "created"):
        table.add_column(col)
    for _, rec in run_records():
        mean = (rec.get("summary") or {}).get("mean", {}).get("acc")
        pert = (rec.get("perturbation") or {}).get("spec", "clean")
        table.add_row(
            rec["run_id"][:16],
            rec["suite"],
            rec["detector"],
            rec.get("protocol", ""),
            str(rec.get("backbone", "")),
            pert,
            fmt(mean),
            rec.get("created", ""),
        )
    console.print(table)


@app.command()
def leaderboard(
    suite: Annotated[str, typer.Argument(help="Suite name.")],
    metric: Annotated[str, typer.Option(help="Metric shown per generator (acc, ap, auc, real_acc, ...).")] = "acc",
    csv: Annotated[
        Optional[Path], typer.Option(help="Folder to write <suite>_leaderboard.csv and _long.csv into.")
    ] = None,
) -> None:
    """Rebuild SUITE's leaderboard from the finished run records."""
    from detbench.display import frame_table
    from detbench.leaderboard import ID_COLUMNS, long_table, wide_table, write_csvs

    long = long_table(suite)
    if long.empty:
        _fail(
            FileNotFoundError(f"no finished runs for suite {suite!r}; try `detbench run linear-probe --suite {suite}`")
        )
    wide = wide_table(long, metric)
    shown = wide.drop(columns=["config_hash"]).rename(columns={"run_id": "run"})
    console.print(frame_table(shown, f"{suite} leaderboard: {metric} (%)", percent_from=len(ID_COLUMNS) - 1))
    if csv is not None:
        for path in write_csvs(suite, csv, metric):
            console.print(f"wrote {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
