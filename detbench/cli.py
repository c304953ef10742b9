"""The ``detbench`` command line. Heavy libraries (torch, sklearn) are imported only by commands that need them.

Every command runs inside one guard (:class:`GuardedGroup`): a :class:`~detbench.errors.DetbenchError` (or a full
or read-only disk) ends as one red line and exit 2; Ctrl-C or SIGTERM says where it stopped and that finished
work is kept (exit 130 / 143); anything else is a bug and is shown as one (traceback, exit 1). Data warnings
(:class:`~detbench.errors.DetbenchWarning`) print as ``warning:`` lines, also under ``-q``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from detbench.errors import ConfigError, DetbenchWarning, user_message
from detbench.precision import PRECISION_HELP

console = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
ACTIVITY = "detbench.activity"  # context meta key: the Runner whose phase an interrupt message names
# Raised to end a command on purpose (usage errors, exits): the command-line library reports them itself.
PASS_THROUGH = (typer.Exit, typer.Abort, *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"))


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop or preemption), handled like Ctrl-C."""


class GuardedGroup(TyperGroup):
    """The command group whose every command runs inside :func:`_guard`."""

    def invoke(self, ctx: typer.Context) -> Any:
        """Run the chosen command inside the guard.

        Args:
            ctx: the command line's context.

        Returns:
            What the command returns.
        """
        with _guard(ctx):
            return super().invoke(ctx)


@contextlib.contextmanager
def _guard(ctx: typer.Context) -> Iterator[None]:
    """User errors as one red line (exit 2); Ctrl-C or SIGTERM says where it stopped (exit 130 / 143); bugs as
    bugs (traceback, exit 1); DetbenchWarnings as ``warning:`` lines."""
    with warnings.catch_warnings():
        warnings.simplefilter("default", DetbenchWarning)  # each message once
        shown = warnings.showwarning

        def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, DetbenchWarning):
                err.print("[yellow]warning:[/] ", end="")
                err.print(str(message), markup=False, highlight=False, soft_wrap=True)
            else:
                shown(message, category, *args, **kwargs)

        warnings.showwarning = show
        try:
            with _sigterm_as_interrupt():
                yield
        except PASS_THROUGH:
            raise
        except KeyboardInterrupt as exc:
            _stopped(exc, ctx.meta.get(ACTIVITY))
        except Exception as exc:
            message = user_message(exc)
            if message is None:
                _bug(exc)
            err.print("[bold red]error:[/] ", end="")
            err.print(message, markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None


def _stopped(exc: KeyboardInterrupt, activity: Any) -> None:
    terminated = isinstance(exc, Terminated)
    how = "Terminated (SIGTERM)" if terminated else "Interrupted"
    where = ""
    if activity is not None:
        where = f" while {activity.phase}" + (f" in {activity.run_dir}" if activity.run_dir else "")
    err.print(f"\n[yellow]{how}{escape(where)}.[/] Finished work is kept; run the same command again to resume.")
    raise typer.Exit(143 if terminated else 130) from None


def _bug(exc: BaseException) -> None:
    from detbench import __version__

    err.print("".join(traceback.format_exception(exc)), markup=False, highlight=False, end="")
    err.print(
        f"[bold red]This is a bug in detbench {__version__}[/], not a problem with your input: please report it "
        "with the command you ran and the traceback above.",
        highlight=False,
    )
    raise typer.Exit(1) from None


def _watch(ctx: typer.Context, runner: Any) -> None:
    """Let an interrupt message name ``runner``'s phase and run directory."""
    ctx.meta[ACTIVITY] = runner


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while the body runs, so it stops as cleanly as Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


app = typer.Typer(
    cls=GuardedGroup,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Benchmark detectors of AI-generated images: train on one generator, evaluate on all.",
)


FAST_INDEX_HELP = "Index ids from size, mtime and path instead of content hashes."
BOOTSTRAP_HELP = "Bootstrap resamples for the 95% intervals of acc and AP (0: none)."
FILTER_HELP = "Exact (case-insensitive) if some run has that value, else every value containing it."
THRESHOLD_HELP = (
    "Decision threshold of acc: a number in [0, 1], or 'calibrated' (best balanced accuracy on the "
    "training generator's held-out split)."
)


# Options shared by commands, declared once (the defaults stay in each signature).
SuiteOption = Annotated[
    Optional[str], typer.Option("--suite", "-s", help="Suite name (see `detbench ls suites`); default demo.")
]
RootOption = Annotated[Optional[Path], typer.Option(help="Where the suite's data lives (the demo builds its own).")]
ProtocolOption = Annotated[Optional[str], typer.Option(help="Protocol (default: the suite's standard one).")]
TrainSuiteOption = Annotated[
    Optional[str], typer.Option(help="Cross-suite: train on this suite's protocol, evaluate on --suite.")
]
TrainRootOption = Annotated[Optional[Path], typer.Option(help="Where the training suite's data lives.")]
TrainProtocolOption = Annotated[
    Optional[str], typer.Option(help="The training suite's protocol (default: its standard one).")
]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", help="Config override key=value (repeatable).")]
SeedOption = Annotated[int, typer.Option(help="Seed for splits, training and sampling.")]
DeviceOption = Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available).")]
WorkersOption = Annotated[
    Optional[int], typer.Option(help="Decoding workers (default: half the cores for a GPU, none on <=4 CPU cores).")
]
BatchSizeOption = Annotated[Optional[int], typer.Option(help="Batch size for feature extraction/scoring.")]
BootstrapOption = Annotated[int, typer.Option(help=BOOTSTRAP_HELP)]
ThresholdOption = Annotated[str, typer.Option(help=THRESHOLD_HELP)]
FastIndexOption = Annotated[bool, typer.Option(help=FAST_INDEX_HELP)]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


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
    ctx: typer.Context,
    detector: Annotated[
        Optional[str], typer.Argument(help="Detector name (see `detbench ls detectors`); implied by --preset.")
    ] = None,
    suite: SuiteOption = None,
    preset: Annotated[
        Optional[str], typer.Option(help="Reproduce a published table (see `detbench ls presets`).")
    ] = None,
    allow_cpu: Annotated[bool, typer.Option(help="Let a preset run without a CUDA GPU.")] = False,
    root: RootOption = None,
    protocol: ProtocolOption = None,
    train_suite: TrainSuiteOption = None,
    train_root: TrainRootOption = None,
    train_protocol: TrainProtocolOption = None,
    set_: SetOption = None,
    seed: SeedOption = 0,
    force: Annotated[
        bool, typer.Option(help="Recompute even if this exact run exists (the old one is kept aside).")
    ] = False,
    device: DeviceOption = None,
    workers: WorkersOption = None,
    batch_size: BatchSizeOption = None,
    nproc: Annotated[
        int, typer.Option(help="Processes on this machine (e.g. one per GPU), launched through torchrun.")
    ] = 1,
    perturb: Annotated[
        Optional[str], typer.Option(help="Evaluation-time perturbation, e.g. jpeg:75 or blur:2+jpeg:90.")
    ] = None,
    bootstrap: BootstrapOption = 1000,
    threshold: ThresholdOption = "0.5",
    fast_index: FastIndexOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train DETECTOR on the protocol's training generator and evaluate it on every generator."""
    from detbench import distributed

    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1; got {nproc}")
    if nproc > 1 and not distributed.launched():
        command = distributed.torchrun_command(sys.argv[1:], nproc)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(command[0], command)
    from detbench.progress import Phases
    from detbench.runner import Runner

    runner = Runner(Phases(err, enabled=not quiet))
    _watch(ctx, runner)
    if detector is None and not preset:
        raise typer.BadParameter("name a DETECTOR or pass --preset NAME")
    try:
        planned = _request(locals(), perturb=perturb, preset=preset, allow_cpu=allow_cpu)
        result = runner.run(planned.run)
    finally:
        distributed.cleanup()
    if distributed.env_rank() != 0:  # under torchrun, rank 0 reports
        return
    _show_result(result.record, result.metrics, result.run_dir, result.reused)
    if planned.preset is not None:
        _show_preset_comparison(planned.preset, result)


# The options that ``run`` and ``sweep`` share, passed to :func:`detbench.api.request` by name.
_REQUEST_OPTIONS = (
    "root", "protocol", "seed", "device", "threshold", "bootstrap", "force", "train_suite", "train_root",
    "train_protocol", "workers", "batch_size", "fast_index",
)  # fmt: skip


def _request(options: dict[str, Any], **extra: Any) -> Any:
    """The :class:`detbench.api.Request` of a ``run`` or ``sweep`` command line (its ``locals()``)."""
    from detbench.api import request
    from detbench.config import parse_set_args

    chosen = {name: options[name] for name in _REQUEST_OPTIONS}
    return request(options["detector"], options["suite"], settings=parse_set_args(options["set_"]), **chosen, **extra)


def _show_preset_comparison(preset, result) -> None:
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


def _show_result(rec: dict[str, Any], metrics: Any, path: Path, reused: bool) -> None:
    """The run's metrics table, what it skipped, and where it is."""
    from detbench.display import metrics_table, threshold_note

    title = _run_title(rec) + (f", {rec['perturbation'].get('spec')}" if rec.get("perturbation") else "") + ")"
    console.print(metrics_table(metrics, title, threshold_note(rec)))
    counts = rec.get("counts", {})
    for what, n, reasons in (
        ("training", counts.get("train", {}).get("skipped", 0), counts.get("train", {}).get("skipped_reasons", {})),
        ("evaluation", counts.get("eval_skipped", 0), counts.get("skipped_reasons", {})),
    ):
        if n:
            why = ", ".join(f"{v} {k}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
            console.print(f"[yellow]{n} {what} images skipped:[/] {why}")
    console.print(f"run {rec['run_id'][:16]} -> {path}" + (" (reused)" if reused else ""))


def _run_title(rec: dict[str, Any]) -> str:
    """``DETECTOR on SUITE (protocol P[, backbone B]`` (left open for more facts)."""
    from detbench.leaderboard import detector_label

    backbone = f", backbone {rec['backbone']}" if rec.get("backbone") else ""
    return f"{detector_label(rec)} on {rec['suite']} (protocol {rec['protocol']}{backbone}"


@app.command()
def index(
    suite: Annotated[str, typer.Argument(help="Suite name.")],
    root: Annotated[Optional[Path], typer.Option(help="Suite root (the demo builds its own).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Suite option key=value.")] = None,
    fast: Annotated[bool, typer.Option(help="Ids from size, mtime and path, and header-only checks (faster).")] = False,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes for probing files.")] = None,
) -> None:
    """Index a suite on disk and print its counts, formats and problems."""
    from detbench.config import apply_overrides, parse_set_args
    from detbench.index import index_suite
    from detbench.progress import Phases
    from detbench.registry import SUITES
    from detbench.suites import display_name

    cls = SUITES.get(suite)
    obj = cls(apply_overrides(cls.Options(), parse_set_args(set_)))
    if workers is not None and workers < 0:
        raise ConfigError(f"--workers must be >= 0; got {workers}")
    phases = Phases(err)
    idx = index_suite(obj, root, "fast" if fast else "full", workers=workers, phases=phases)
    from detbench.display import index_summary

    for table in index_summary(idx):
        console.print(table)
    ignored = obj.ignored
    if ignored:
        more = f" and {len(ignored) - 10} more" if len(ignored) > 10 else ""
        shown = ", ".join(map(display_name, ignored[:10])) + more
        phases.warn(f"{len(ignored)} folders are not part of the {suite} layout and were skipped: {shown}")
    for note in obj.notes:
        phases.warn(note)
    console.print(f"index written to {idx.directory}")


@app.command("ls")
def ls(what: Annotated[str, typer.Argument(help="detectors | suites | perturbations | presets | runs")]) -> None:
    """List registered detectors, suites, perturbations or paper presets, or finished runs."""
    from rich.table import Table

    from detbench.registry import DETECTORS, PERTURBATIONS, SUITES

    registries = {"detectors": DETECTORS, "suites": SUITES, "perturbations": PERTURBATIONS}
    if what == "detectors":
        _list_detectors()
    elif what in registries:
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
        raise ConfigError(f"cannot list {what!r}; choose detectors, suites, perturbations, presets or runs")


def _list_detectors() -> None:
    """Paper and year, trains or training-free, released weights (``--set KEY=PATH``), without importing one."""
    import pandas as pd
    from rich.table import Table

    from detbench.api import list_detectors

    table = Table(title="detectors")
    for col in ("name", "paper", "year", "training", "released weights", "summary", "origin"):
        table.add_column(col, overflow="fold")
    for d in list_detectors().to_dict("records"):
        if not isinstance(d["paper"], str):  # a plugin that states no facts
            facts = ["?", "?", "?", "?"]
        else:
            weights = f"--set {d['weights_key']}=PATH ({d['released']})" if d["weights_key"] else "none"
            facts = [d["paper"], "-" if pd.isna(d["year"]) else str(d["year"]), d["training"], weights]
        table.add_row(d["name"], *facts, d["summary"] or d["target"], d["origin"])
    console.print(table)


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
    from detbench.display import fmt, frame_table
    from detbench.leaderboard import runs_table

    runs = runs_table()
    shown = runs.assign(run_id=runs["run_id"].str[:16], mean_acc=runs["mean_acc"].map(fmt))
    columns = {"run_id": "run id", "suite": "suite", "detector": "detector", "protocol": "protocol",
               "backbone": "backbone", "perturbation": "perturbation", "mean_acc": "mean acc", "created": "created"}
    console.print(frame_table(shown[list(columns)].rename(columns=columns), "finished runs", len(columns)))


@app.command()
def leaderboard(
    suite: Annotated[str, typer.Argument(help="Suite name.")],
    metric: Annotated[
        Optional[str],
        typer.Option(help="Metric shown per generator (acc, ap, auc, real_acc, ...); default: the suite's headline "
                     "metrics (acc; Chameleon adds real_acc and fake_acc)."),
    ] = None,
    csv: Annotated[
        Optional[Path], typer.Option(help="Folder to write <suite>_leaderboard.csv and _long.csv into.")
    ] = None,
    markdown: Annotated[Optional[Path], typer.Option(help="Write the table shown as Markdown to this file.")] = None,
    detector: Annotated[Optional[str], typer.Option(help=f"Only these detectors. {FILTER_HELP}")] = None,
    backbone: Annotated[Optional[str], typer.Option(help=f"Only these backbones. {FILTER_HELP}")] = None,
    perturbation: Annotated[
        Optional[str], typer.Option(help=f"Only these perturbations ('clean', 'jpeg', 'jpeg:75'). {FILTER_HELP}")
    ] = None,
    delta: Annotated[
        bool, typer.Option(help="Show perturbed runs as differences to the clean run of the same fit.")
    ] = False,
    published: Annotated[
        bool, typer.Option(help="Add the published numbers of this suite's paper presets (marked, not run).")
    ] = False,
) -> None:
    """Rebuild SUITE's leaderboard from the finished run records (filters apply to every output)."""
    from detbench.display import leaderboard_cells, leaderboard_tables, markdown_table
    from detbench.leaderboard import ID_COLUMNS, leaderboard_view, suite_long, write_csvs
    from detbench.records import atomic_path
    from detbench.registry import SUITES

    suite_cls = SUITES.get(suite)
    suite = suite_cls.name  # aliases (ufd) share their suite's records
    long = suite_long(suite, published)
    metrics = [metric] if metric else list(suite_cls.headline_metrics)
    filters = {"detector": detector, "backbone": backbone, "perturbation": perturbation}
    views = [leaderboard_view(long, name, delta=delta, **filters) for name in metrics]  # every check before output
    markdown_parts = []
    for name, view in zip(metrics, views, strict=True):
        shown = leaderboard_cells(view, ID_COLUMNS, deltas=delta)
        title = f"{suite} leaderboard: {name} ({'Δ percentage points vs clean' if delta else '%'})"
        n_ids = sum(c in ID_COLUMNS or c == "run" for c in shown.columns)
        for table in leaderboard_tables(shown, n_ids, title):
            console.print(table)
        markdown_parts.append(f"**{title}**\n\n" + markdown_table(shown, right_from=n_ids))
    if csv is not None:
        for path in write_csvs(suite, csv, metrics[0], filters=filters):
            console.print(f"wrote {path}")
    if markdown is not None:
        with atomic_path(markdown) as tmp:
            tmp.write_text("\n".join(markdown_parts), encoding="utf-8")
        console.print(f"wrote {markdown}")


@app.command()
def sweep(
    ctx: typer.Context,
    detector: Annotated[str, typer.Argument(help="Detector name (see `detbench ls detectors`).")],
    perturb: Annotated[
        list[str],
        typer.Option(
            "--perturb", "-p", help="One axis of values, e.g. jpeg:95,75,50 or blur:1,2 (repeatable); a run per value."
        ),
    ],
    suite: SuiteOption = None,
    root: RootOption = None,
    protocol: ProtocolOption = None,
    train_suite: TrainSuiteOption = None,
    train_root: TrainRootOption = None,
    train_protocol: TrainProtocolOption = None,
    set_: SetOption = None,
    seed: SeedOption = 0,
    force: Annotated[bool, typer.Option(help="Retrain once and recompute every run of the sweep.")] = False,
    device: DeviceOption = None,
    workers: WorkersOption = None,
    batch_size: BatchSizeOption = None,
    bootstrap: BootstrapOption = 1000,
    threshold: ThresholdOption = "0.5",
    fast_index: FastIndexOption = False,
    quiet: QuietOption = False,
) -> None:
    """Robustness sweep: the clean run plus one run per perturbation value, training DETECTOR once."""
    from detbench.display import robustness_table
    from detbench.progress import Phases
    from detbench.runner import Runner
    from detbench.sweep import run_sweep

    runner = Runner(Phases(err, enabled=not quiet))
    _watch(ctx, runner)
    base = _request(locals()).run
    result = run_sweep(base, perturb, runner)
    rec = result.clean.record
    title = f"{_run_title(rec)}): robustness"
    console.print(robustness_table(result.table, title))
    console.print(
        f"{len(result.perturbed)} perturbed runs scored by fit {rec['fit_id'][:16]}; "
        f"report: detbench report {rec['run_id'][:16]}"
    )


@app.command("import-scores")
def import_scores(
    suite: Annotated[str, typer.Argument(help="The suite the scores are of (see `detbench ls suites`).")],
    file: Annotated[
        Path,
        typer.Argument(help="CSV, TSV, JSON or Parquet: a path column (relative to --root; or filename, or image_id) "
                       "and a score column, P(fake)."),
    ],
    name: Annotated[str, typer.Option(help="What computed the scores: the run shows as external:NAME.")],
    root: RootOption = None,
    protocol: Annotated[
        Optional[str], typer.Option(help="Protocol whose evaluation images are scored (default: the suite's).")
    ] = None,
    logits: Annotated[bool, typer.Option(help="The scores are raw logits: P(fake) = sigmoid(score).")] = False,
    threshold: ThresholdOption = "0.5",
    perturb: Annotated[
        Optional[str],
        typer.Option(help="What the scores were computed on, e.g. jpeg:75 (a label for robustness views; nothing is "
                     "applied)."),
    ] = None,
    score_column: Annotated[str, typer.Option(help="The column of scores.")] = "score",
    key_column: Annotated[
        str, typer.Option(help="The column naming the images (default: the first of path, filename, image_id).")
    ] = "",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Suite option key=value (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for splits and sampling.")] = 0,
    bootstrap: BootstrapOption = 1000,
    force: Annotated[bool, typer.Option(help="Recompute even if this exact run exists (the old one is kept aside).")]
    = False,
    fast_index: FastIndexOption = False,
    quiet: QuietOption = False,
) -> None:
    """Scores computed outside detbench (a closed API, another framework) as a run of external:NAME, with the same
    metrics, intervals, leaderboard rows, report and robustness views as any run."""
    from detbench.api import import_scores as import_file
    from detbench.config import parse_set_args

    run = import_file(
        suite, file, name=name, root=root, protocol=protocol, logits=logits, threshold=threshold, perturb=perturb,
        score_column=score_column, key_column=key_column, settings=parse_set_args(set_), seed=seed,
        bootstrap=bootstrap, force=force, fast_index=fast_index, progress=not quiet,
    )  # fmt: skip
    _show_result(run.record, run.metrics, run.path, run.reused)


@app.command()
def report(
    target: Annotated[str, typer.Argument(help="A run id (or its first characters), or a suite name.")],
    out: Annotated[
        Optional[Path], typer.Option(help="Output folder (default: $DETBENCH_HOME/reports/<run or suite>).")
    ] = None,
) -> None:
    """Write a self-contained HTML report (charts embedded) and its PNG charts for a run or a suite."""
    from detbench.report import build_report

    path = build_report(target, out)
    console.print(f"wrote {path} and {len(list(path.parent.glob('*.png')))} PNG charts in {path.parent}")


@app.command()
def predict(
    run_id: Annotated[
        str,
        typer.Argument(help="The run whose trained detector scores (id or first characters); several separated by "
                       "commas score with each."),
    ],
    paths: Annotated[list[Path], typer.Argument(help="Image files, or folders searched recursively for images.")],
    csv: Annotated[Optional[Path], typer.Option(help="Also write the predictions to this CSV file.")] = None,
    json_: Annotated[Optional[Path], typer.Option("--json", help="Also write them (and the run) as JSON.")] = None,
    export: Annotated[
        Optional[Path],
        typer.Option(help="Also write the grip-unina-style CSV: filename (relative to the CSV's folder) and one "
                     "P(fake) column per run, for other tools."),
    ] = None,
    export_logits: Annotated[
        bool, typer.Option(help="--export writes logits (log-odds) instead of P(fake), as grip-unina's main.py does.")
    ] = False,
    device: DeviceOption = None,
    workers: WorkersOption = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size for scoring.")] = None,
    quiet: QuietOption = False,
) -> None:
    """Score your own images with finished runs' trained detectors: P(fake) and the decision per file."""
    from detbench.predict import predict_runs, predictions_table, write_export, write_predictions
    from detbench.progress import Phases

    if export_logits and export is None:
        raise ConfigError("--export-logits applies to --export FILE")
    refs = [ref.strip() for ref in run_id.split(",")]
    results = predict_runs(
        refs, paths, device=device, workers=workers, batch_size=batch_size, phases=Phases(err, enabled=not quiet)
    )
    write_predictions(results, csv, json_)
    if export is not None:
        write_export(results, export, logits=export_logits)
    failed = 0
    for trained, predictions in results:
        console.print(predictions_table(predictions, trained))
        decisions = predictions["decision"].value_counts()
        failed = int((predictions["error"] != "").sum())
        console.print(f"{decisions.get('fake', 0)} fake, {decisions.get('real', 0)} real, {failed} could not be scored")
    written = [p for p in (csv, json_, export) if p is not None]
    if written:
        console.print("wrote " + ", ".join(map(str, written)))
    if failed == len(results[0][1]):
        raise typer.Exit(1)


@app.command()
def bench(
    out: Annotated[
        Optional[Path], typer.Option(help="Append rows to OUT/pipeline.csv and write OUT/machine.json.")
    ] = Path("results/bench"),
    only: Annotated[
        Optional[str],
        typer.Option(help="Comma list of decode,forward,score,reference,mpft_step,index,cache_read,metrics,rss."),
    ] = None,
    backbone: Annotated[str, typer.Option(help="Backbone spec.")] = "timm:efficientnet_lite0@bundled",
    device: DeviceOption = None,
    precision: Annotated[str, typer.Option(help=f"Forward-pass precision: {PRECISION_HELP}.")] = "auto",
    crop: Annotated[int, typer.Option(help="Backbone input size.")] = 128,
    size: Annotated[int, typer.Option(help="Side of the generated images.")] = 128,
    images: Annotated[int, typer.Option(help="Generated images for decode/forward/score/reference.")] = 512,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 64,
    workers: WorkersOption = None,
    repeats: Annotated[int, typer.Option(help="Timed repeats per measure (the median is reported).")] = 3,
    index_files: Annotated[int, typer.Option(help="Files for the index measure.")] = 5000,
    rss_images: Annotated[
        int, typer.Option(help="Also run a whole linear-probe run on this many 32 px images (e.g. 50000).")
    ] = 0,
    rss_crop: Annotated[int, typer.Option(help="Backbone input size for the RSS run.")] = 32,
) -> None:
    """Measure throughput of the pipeline's parts (decode, forward, scoring vs a reference loop, index, feature
    cache, metrics) and, with --rss-images, the peak memory of a whole run."""
    from rich.table import Table

    from detbench.bench import ALL, COLUMNS, Options, run_bench
    from detbench.resolve import default_device

    chosen = tuple(w.strip() for w in only.split(",")) if only else tuple(w for w in ALL if w != "rss")
    if rss_images and "rss" not in chosen:
        chosen = (*chosen, "rss")
    opts = Options(backbone=backbone, device=device or default_device(), precision=precision, crop=crop, size=size,
                   images=images, batch_size=batch_size, workers=workers, repeats=repeats, index_files=index_files,
                   rss_images=rss_images, rss_crop=rss_crop, only=chosen)
    rows = run_bench(opts, out, progress=lambda what: err.print(f"bench: {what} ..."))
    table = Table(title=f"detbench bench: {opts.backbone} on {opts.device}", title_justify="left")
    shown = [c for c in COLUMNS if c not in ("backbone", "device", "note")]
    for col in ("#", *shown):
        table.add_column(col, justify="left" if col == "what" else "right")
    for i, row in enumerate(rows, 1):
        table.add_row(str(i), *("" if row[c] is None else str(row[c]) for c in shown))
    console.print(table)
    for i, row in enumerate(rows, 1):
        console.print(f"{i}. {row['note']}", markup=False, highlight=False)
    if out:
        console.print(f"rows appended to {out / 'pipeline.csv'}; machine description in {out / 'machine.json'}")


def main() -> None:
    """The ``detbench`` console script."""
    app(prog_name="detbench")


if __name__ == "__main__":
    main()
