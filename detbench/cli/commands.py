"""The ``detbench`` command line: one function per command, each a thin layer over the library (mostly
:mod:`detbench.api`). Heavy libraries (torch, sklearn) are imported only by commands that need them. Every command
runs inside one guard (:mod:`detbench.cli.guard`); shared options live in :mod:`detbench.cli.options` and what is
printed about results in :mod:`detbench.cli.views`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from detbench.cli import views as cli_views
from detbench.cli.guard import GuardedGroup, console, err, watch
from detbench.cli.options import (
    FILTER_HELP,
    BatchSizeOption,
    BootstrapOption,
    DeviceOption,
    FastIndexOption,
    ProtocolOption,
    QuietOption,
    RootOption,
    SeedOption,
    SetOption,
    SuiteOption,
    ThresholdOption,
    TrainProtocolOption,
    TrainRootOption,
    TrainSuiteOption,
    WorkersOption,
)
from detbench.errors import ConfigError
from detbench.models.precision import PRECISION_HELP

app = typer.Typer(
    cls=GuardedGroup,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Benchmark detectors of AI-generated images: train on one generator, evaluate on all.",
)


@app.callback()
def main_options(
    offline: Annotated[bool, typer.Option("--offline", help="Never touch the network (sets HF_HUB_OFFLINE).")] = False,
) -> None:
    """Options that apply to every command (``--offline``)."""
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["DETBENCH_OFFLINE"] = "1"
        if "huggingface_hub" in sys.modules:
            from detbench.models.weights import set_offline

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
    from detbench.engine.runner import Runner
    from detbench.progress import Phases

    runner = Runner(Phases(err, enabled=not quiet))
    watch(ctx, runner)
    if detector is None and not preset:
        raise typer.BadParameter("name a DETECTOR or pass --preset NAME")
    try:
        planned = _request(locals(), perturb=perturb, preset=preset, allow_cpu=allow_cpu)
        result = runner.run(planned.run)
    finally:
        distributed.cleanup()
    if distributed.env_rank() != 0:  # under torchrun, rank 0 reports
        return
    cli_views.show_result(result.record, result.metrics, result.path, result.reused)
    if planned.preset is not None:
        cli_views.show_preset_comparison(planned.preset, result)


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
    from detbench.data.index import index_suite
    from detbench.data.suites import display_name
    from detbench.progress import Phases
    from detbench.registry import SUITES

    cls = SUITES.get(suite)
    obj = cls(apply_overrides(cls.Options(), parse_set_args(set_)))
    if workers is not None and workers < 0:
        raise ConfigError(f"--workers must be >= 0; got {workers}")
    phases = Phases(err)
    idx = index_suite(obj, root, "fast" if fast else "full", workers=workers, phases=phases)
    from detbench.results.display import index_summary

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
        cli_views.list_detectors()
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
        cli_views.list_runs()
    elif what == "presets":
        cli_views.list_presets()
    else:
        raise ConfigError(f"cannot list {what!r}; choose detectors, suites, perturbations, presets or runs")


@app.command()
def leaderboard(
    suite: Annotated[str, typer.Argument(help="Suite name.")],
    metric: Annotated[
        Optional[str],
        typer.Option(help="Metric shown per generator (acc, ap, auc, real_acc, ...; ap_real and fpr95_real take real "
                     "images as positive, as RIGID reports); default: the suite's headline metrics (acc; Chameleon "
                     "adds real_acc and fake_acc)."),
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
    rank: Annotated[
        bool,
        typer.Option(help="Add each run's average rank over the generators, the Friedman test and the Nemenyi "
                     "critical difference (Demšar 2006)."),
    ] = False,
    cost: Annotated[
        bool,
        typer.Option(help="Add each run's cost: parameters, GFLOPs per image, images/s and peak memory (measured on "
                     "the machine that ran it)."),
    ] = False,
) -> None:
    """Rebuild SUITE's leaderboard from the finished run records (filters apply to every output)."""
    from detbench.registry import SUITES
    from detbench.results.display import (
        cost_note,
        friedman_note,
        leaderboard_cells,
        leaderboard_tables,
        markdown_table,
        unit_note,
    )
    from detbench.results.leaderboard import FLAGS_NOTE, ID_COLUMNS, leaderboard_view, suite_long, with_cost, write_csvs
    from detbench.store import atomic_path

    suite_cls = SUITES.get(suite)
    suite = suite_cls.name  # aliases (ufd) share their suite's records
    long = suite_long(suite, published)
    metrics = [metric] if metric else list(suite_cls.headline_metrics)
    filters = {"detector": detector, "backbone": backbone, "perturbation": perturbation}
    views = [leaderboard_view(long, name, delta=delta, rank=rank, **filters) for name in metrics]  # checks first
    if cost:
        views = [with_cost(view, suite) for view in views]
    markdown_parts, flagged = [], False
    for name, view in zip(metrics, views, strict=True):
        shown = leaderboard_cells(view, ID_COLUMNS, deltas=delta, metric=name)
        title = f"{suite} leaderboard: {name} ({unit_note(name, delta) + (' vs clean' if delta else '')})"
        n_ids = sum(c in ID_COLUMNS or c == "run" for c in shown.columns)
        for table in leaderboard_tables(shown, n_ids, title, width=console.width):
            console.print(table)
        flagged = flagged or "flags" in shown
        markdown_parts.append(f"**{title}**\n\n" + markdown_table(shown, right_from=n_ids))
        if rank:
            note = friedman_note(view.attrs["friedman"], int(view["avg_rank"].isna().sum()))
            console.print(note)
            markdown_parts.append(note + "\n")
    if flagged:  # some run evaluates copies of its training images
        console.print(FLAGS_NOTE)
        markdown_parts.append(FLAGS_NOTE + "\n")
    if cost:
        note = cost_note(views[0])
        console.print(note, markup=False)
        markdown_parts.append(note + "\n")
    if csv is not None:
        for path in write_csvs(suite, csv, metrics[0], filters=filters, rank=rank, cost=cost):
            console.print(f"wrote {path}")
    if markdown is not None:
        with atomic_path(markdown) as tmp:
            tmp.write_text("\n".join(markdown_parts), encoding="utf-8")
        console.print(f"wrote {markdown}")


@app.command()
def compare(
    runs: Annotated[
        list[str],
        typer.Argument(help="Two or more run ids (or their first characters, see `detbench ls runs`); each run after "
                       "the first is compared with the first."),
    ],
    metric: Annotated[
        Optional[str],
        typer.Option(help="Comma list of acc, auc, ap, tpr_at_fpr_1, tpr_at_fpr_5, tpr_at_fpr_10, ece, brier, nll "
                     "(default acc,auc,ap)."),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(help="Paired bootstrap resamples for the 95% intervals of the differences (0: none).")
    ] = 1000,
    common: Annotated[
        bool, typer.Option(help="Compare on the images every run scored (says how many were dropped).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the paired bootstrap.")] = 0,
    csv: Annotated[Optional[Path], typer.Option(help="Also write the comparison to this CSV file.")] = None,
) -> None:
    """Paired comparison of runs on the same images: per generator, mean and worst, the difference with its
    bootstrap interval and a p-value (accuracy: exact McNemar; AUC: DeLong; others: paired bootstrap; Holm-adjusted
    across generators).
    """
    from detbench.api import compare as compare_runs
    from detbench.results.paired import check_csv_path, write_csv

    check_csv_path(csv)
    table = compare_runs(runs, metric, bootstrap=bootstrap, common=common, seed=seed)
    cli_views.show_comparison(table, bootstrap)
    if csv is not None:
        write_csv(table, csv)
        console.print(f"wrote {csv}")


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
    from detbench.engine.runner import Runner
    from detbench.engine.sweep import run_sweep
    from detbench.progress import Phases
    from detbench.results.display import robustness_table

    runner = Runner(Phases(err, enabled=not quiet))
    watch(ctx, runner)
    base = _request(locals()).run
    result = run_sweep(base, perturb, runner)
    rec = result.clean.record
    title = f"{cli_views.run_title(rec)}): robustness"
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
    paths_relative_to: Annotated[
        Optional[str],
        typer.Option(help="What relative paths in FILE are relative to: root (--root) or file (FILE's folder, as "
                     "`detbench predict --export` writes them). Default: the root, else FILE's folder if only there "
                     "they name images of the suite."),
    ] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Suite option key=value (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for splits and sampling.")] = 0,
    bootstrap: BootstrapOption = 1000,
    force: Annotated[bool, typer.Option(help="Recompute even if this exact run exists (the old one is kept aside).")]
    = False,
    fast_index: FastIndexOption = False,
    quiet: QuietOption = False,
) -> None:
    """Scores computed outside detbench (a closed API, another framework) as a run of external:NAME, with the same
    metrics, intervals, leaderboard rows, report and robustness views as any run.
    """
    from detbench.api import import_scores as import_file
    from detbench.config import parse_set_args

    run = import_file(
        suite, file, name=name, root=root, protocol=protocol, logits=logits, threshold=threshold, perturb=perturb,
        score_column=score_column, key_column=key_column, settings=parse_set_args(set_), seed=seed,
        bootstrap=bootstrap, force=force, fast_index=fast_index, progress=not quiet,
        paths_relative_to=paths_relative_to,
    )  # fmt: skip
    cli_views.show_result(run.record, run.metrics, run.path, run.reused)


@app.command()
def report(
    target: Annotated[
        str, typer.Argument(help="A run id (or its first characters), or a suite name (or the folder of either under "
                            "$DETBENCH_HOME/runs).")
    ],
    out: Annotated[
        Optional[Path], typer.Option(help="Output folder (default: $DETBENCH_HOME/reports/<run or suite>).")
    ] = None,
) -> None:
    """Write a self-contained HTML report (charts embedded) and its PNG charts for a run or a suite."""
    from detbench.results.html import build_report

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
    from detbench.progress import Phases
    from detbench.results.predict import check_outputs, predict_runs, predictions_table, write_export, write_predictions

    if export_logits and export is None:
        raise ConfigError("--export-logits applies to --export FILE")
    check_outputs(csv, json_, export)  # before any image is scored
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
    cache, metrics) and, with --rss-images, the peak memory of a whole run.
    """
    from rich.table import Table

    from detbench.engine.resolve import check_device, default_device
    from detbench.perf.bench import COLUMNS, run_bench
    from detbench.perf.options import ALL, Options

    check_device(device)
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
