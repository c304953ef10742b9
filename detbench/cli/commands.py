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
    AllowCpuOption,
    BatchSizeOption,
    BootstrapOption,
    DeviceOption,
    FastIndexOption,
    ForceOption,
    PerturbOption,
    PresetOption,
    ProtocolOption,
    QuietOption,
    RootOption,
    SeedOption,
    SeedsOption,
    SetOption,
    SuiteOption,
    ThresholdOption,
    TrainProtocolOption,
    TrainRootOption,
    TrainSuiteOption,
    WorkersOption,
)
from detbench.engine.run_options import OPTIONS, SWEEP_OPTIONS
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
    preset: PresetOption = None,
    allow_cpu: AllowCpuOption = False,
    root: RootOption = None,
    protocol: ProtocolOption = None,
    train_suite: TrainSuiteOption = None,
    train_root: TrainRootOption = None,
    train_protocol: TrainProtocolOption = None,
    set_: SetOption = None,
    seed: SeedOption = 0,
    seeds: SeedsOption = None,
    force: ForceOption = False,
    device: DeviceOption = None,
    workers: WorkersOption = None,
    batch_size: BatchSizeOption = None,
    nproc: Annotated[
        int, typer.Option(help="Processes on this machine (e.g. one per GPU), launched through torchrun.")
    ] = 1,
    perturb: PerturbOption = None,
    bootstrap: BootstrapOption = 1000,
    threshold: ThresholdOption = "0.5",
    fast_index: FastIndexOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train DETECTOR on the protocol's training generator and evaluate it on every generator."""
    from detbench import api, distributed

    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1; got {nproc}")
    if detector is None and not preset:
        raise typer.BadParameter("name a DETECTOR or pass --preset NAME")
    seed_list = _seeds(seed, seeds)
    if nproc > 1 and not distributed.launched():
        command = distributed.torchrun_command(sys.argv[1:], nproc)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(command[0], command)
    runner = _runner(ctx, quiet)
    try:
        planned = _request(locals(), RUN_ARGUMENTS)
        results = api.carry_out(planned.run, seed_list, runner)
    finally:
        distributed.cleanup()
    if distributed.env_rank() != 0:  # under torchrun, rank 0 reports
        return
    for result in results:
        cli_views.show_result(result.record, result.metrics, result.path, result.reused)
        if planned.preset is not None:
            cli_views.show_preset_comparison(planned.preset, result)
    from detbench.engine.chrono import is_series

    if is_series(planned.run.protocol):
        cli_views.show_chrono_series(results)
    elif len(results) > 1:
        cli_views.show_seed_spread(results)


# The arguments of :func:`detbench.api.request` that ``run`` and ``sweep`` take from the command line (besides the
# detector, suite and --set), by name: the run options (:mod:`detbench.engine.run_options`) each command offers.
RUN_ARGUMENTS = tuple(name for name in OPTIONS if name != "seeds")
SWEEP_ARGUMENTS = tuple(name for name in SWEEP_OPTIONS if name != "seeds")


def _seeds(seed: int, seeds: str | None) -> list[int]:
    from detbench.engine.run_options import check_seeds, parse_seeds

    return check_seeds(seed, parse_seeds(seeds))


def _runner(ctx: typer.Context, quiet: bool) -> Any:
    """A runner whose phase an interrupt message names."""
    from detbench.engine.runner import Runner
    from detbench.progress import Phases

    runner = Runner(Phases(err, enabled=not quiet))
    watch(ctx, runner)
    return runner


def _request(options: dict[str, Any], names: tuple[str, ...]) -> Any:
    """The :class:`detbench.api.Request` of a ``run`` or ``sweep`` command line (its ``locals()``)."""
    from detbench.api import request
    from detbench.config import parse_set_args

    chosen = {name: options[name] for name in names}
    return request(options["detector"], options["suite"], settings=parse_set_args(options["set_"]), **chosen)


@app.command()
def index(
    suite: Annotated[str, typer.Argument(help="Suite name.")],
    root: Annotated[Optional[Path], typer.Option(help="Suite root (the demo builds its own).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Suite option key=value.")] = None,
    fast: Annotated[bool, typer.Option(help="Ids from size, mtime and path, and header-only checks (faster).")] = False,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes for probing files.")] = None,
) -> None:
    """Index a suite on disk and print its counts, formats and problems."""
    from detbench import api
    from detbench.config import parse_set_args
    from detbench.results.display import index_summary

    rows = api.index(suite, root, parse_set_args(set_), fast=fast, workers=workers, progress=True)
    for table in index_summary(rows):
        console.print(table)
    console.print(f"index written to {rows.attrs['directory']}")


@app.command("ls")
def ls(what: Annotated[str, typer.Argument(help="detectors | suites | perturbations | presets | runs")]) -> None:
    """List registered detectors, suites, perturbations or paper presets, or finished runs."""
    from pandas import isna as pd_isna
    from rich.table import Table

    from detbench import api

    registries = {"suites": api.list_suites, "perturbations": api.list_perturbations}
    if what == "detectors":
        cli_views.list_detectors()
    elif what in registries:
        table = Table(title=what)
        facts = ("paper", "download", "licence") if what == "suites" else ()
        for col in ("name", "summary", *facts, "origin"):
            table.add_column(col)
        for row in registries[what]().to_dict("records"):
            stated = [str(row[k] or "") for k in facts]
            if facts and row["paper"] and not pd_isna(row["year"]):
                stated[0] = f"{row['paper']} ({row['year']})"
            table.add_row(row["name"], row["summary"] or row["target"], *stated, row["origin"])
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
    by: Annotated[
        Optional[str],
        typer.Option(help="Metrics per slice of the index: format, jpeg_quality, size or meta_COLUMN[:BINS] (one row "
                     "per generator and slice; n/a where a slice lacks real or fake images)."),
    ] = None,
    cost: Annotated[
        bool,
        typer.Option(help="Add each run's cost: parameters, GFLOPs per image, images/s and peak memory (measured on "
                     "the machine that ran it)."),
    ] = False,
) -> None:
    """Rebuild SUITE's leaderboard from the finished run records (filters apply to every output)."""
    from detbench import api
    from detbench.registry import SUITES
    from detbench.results.display import (
        cost_note,
        friedman_note,
        leaderboard_cells,
        leaderboard_tables,
        markdown_table,
        unit_note,
    )
    from detbench.results.leaderboard import FLAGS_NOTE, FLOOR_COLUMN, FLOOR_NOTE, VIEW_ID_COLUMNS, write_csvs
    from detbench.store import atomic_path

    suite_cls = SUITES.get(suite)
    suite = suite_cls.name  # aliases (ufd) share their suite's records
    metrics = [metric] if metric else list(suite_cls.headline_metrics)
    filters = {"detector": detector, "backbone": backbone, "perturbation": perturbation}
    if by and cost:
        raise ConfigError("--cost is shown per run, not per slice: drop --by or --cost")
    views = [api.leaderboard(suite, name, delta=delta, published=published, rank=rank, by=by, cost=cost, **filters)
             for name in metrics]  # every metric checked before anything is shown
    if by:
        cli_views.show_slices(suite, views, metrics, by, csv, markdown)
        return
    markdown_parts, flagged, floored = [], False, False
    for name, view in zip(metrics, views, strict=True):
        shown = leaderboard_cells(view, VIEW_ID_COLUMNS, deltas=delta, metric=name)
        title = f"{suite} leaderboard: {name} ({unit_note(name, delta) + (' vs clean' if delta else '')})"
        n_ids = sum(c in VIEW_ID_COLUMNS or c == "run" for c in shown.columns)
        floored = floored or (FLOOR_COLUMN in view and view[FLOOR_COLUMN].isin(["beats", "below"]).any())
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
    if floored:  # some run is compared with a shortcut floor run
        console.print(FLOOR_NOTE)
        markdown_parts.append(FLOOR_NOTE + "\n")
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
    by: Annotated[
        Optional[str],
        typer.Option(help="Metrics per slice of the index: format, jpeg_quality, size or meta_COLUMN[:BINS] (one row "
                     "per generator and slice; n/a where a slice lacks real or fake images)."),
    ] = None,
) -> None:
    """Paired comparison of runs on the same images: per generator, mean and worst, the difference with its
    bootstrap interval and a p-value (accuracy: exact McNemar; AUC: DeLong; others: paired bootstrap; Holm-adjusted
    across generators).
    """
    from detbench.api import compare as compare_runs
    from detbench.results.paired import check_csv_path, write_csv

    check_csv_path(csv)
    table = compare_runs(runs, metric, bootstrap=bootstrap, common=common, seed=seed, by=by)
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
            "--perturb",
            "-p",
            help="One axis of values, e.g. jpeg:95,75,50, blur:1,2, webp:90,70 or jpeg:95,75@fake (repeatable); a run "
            "per value.",
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
    seeds: SeedsOption = None,
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
    from detbench import api
    from detbench.results.display import robustness_table

    seed_list = _seeds(seed, seeds)
    runner = _runner(ctx, quiet)
    base = _request(locals(), SWEEP_ARGUMENTS).run
    for result in api.sweep_results(base, perturb, seed_list, runner):
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
    by: Annotated[
        Optional[str],
        typer.Option(help="Metrics per slice of the index: format, jpeg_quality, size or meta_COLUMN[:BINS] (one row "
                     "per generator and slice; n/a where a slice lacks real or fake images)."),
    ] = None,
) -> None:
    """Write a self-contained HTML report (charts embedded) and its PNG charts for a run or a suite."""
    from detbench import api

    path = api.report(target, out, by=by)
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
    from detbench import api
    from detbench.results.predict import predictions_table

    if export_logits and export is None:
        raise ConfigError("--export-logits applies to --export FILE")
    refs = [ref.strip() for ref in run_id.split(",")]
    results = api.predict(refs, paths, export=export, logits=export_logits, csv=csv, json_path=json_, device=device,
                          workers=workers, batch_size=batch_size, progress=not quiet).attrs["runs"]
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
    images: Annotated[
        Optional[int],
        typer.Option(help="Generated images for decode/forward/score/reference, or per --vs-originals detector."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 64,
    workers: WorkersOption = None,
    repeats: Annotated[
        Optional[int],
        typer.Option(help="Timed repeats per measure (the median is reported), or per --vs-originals detector."),
    ] = None,
    index_files: Annotated[int, typer.Option(help="Files for the index measure.")] = 5000,
    rss_images: Annotated[
        int, typer.Option(help="Also run a whole linear-probe run on this many 32 px images (e.g. 50000).")
    ] = 0,
    rss_crop: Annotated[int, typer.Option(help="Backbone input size for the RSS run.")] = 32,
    vs_originals: Annotated[
        bool, typer.Option(help="Score as detbench and as the original repositories' evaluation loops, compared.")
    ] = False,
    detectors: Annotated[
        Optional[str], typer.Option(help="With --vs-originals: comma list of univfd,npr,cnnspot,aide (default all).")
    ] = None,
) -> None:
    """Measure throughput of the pipeline's parts (decode, forward, scoring vs a reference loop, index, feature
    cache, metrics) and, with --rss-images, the peak memory of a whole run; with --vs-originals, detbench's
    scoring against the original repositories' own evaluation loops.
    """
    from rich.table import Table

    from detbench import api

    measures = [w.strip() for w in only.split(",")] if only else None
    names = [d.strip() for d in detectors.split(",")] if detectors is not None else None
    if names is not None and not vs_originals:
        raise ConfigError("--detectors applies to --vs-originals only")
    if vs_originals:
        rows = api.bench(out, vs_originals=True, detectors=names, images=images, repeats=repeats, progress=True)
        _show_vs_originals(rows, out)
        return
    rows = api.bench(out, detectors=names, images=images, repeats=repeats, only=measures, progress=True,
                     backbone=backbone, device=device, precision=precision, crop=crop, size=size,
                     batch_size=batch_size, workers=workers, index_files=index_files, rss_images=rss_images,
                     rss_crop=rss_crop)
    from detbench.perf.bench import COLUMNS

    table = Table(title=f"detbench bench: {rows['backbone'].iloc[0]} on {rows['device'].iloc[0]}",
                  title_justify="left")
    shown = [c for c in COLUMNS if c not in ("backbone", "device", "note")]
    for col in ("#", *shown):
        table.add_column(col, justify="left" if col == "what" else "right")
    records = rows.to_dict("records")
    for i, row in enumerate(records, 1):
        table.add_row(str(i), *("" if row[c] is None or row[c] != row[c] else str(row[c]) for c in shown))
    console.print(table)
    for i, row in enumerate(records, 1):
        console.print(f"{i}. {row['note']}", markup=False, highlight=False)
    if out:
        console.print(f"rows appended to {out / 'pipeline.csv'}; machine description in {out / 'machine.json'}")


def _show_vs_originals(rows: Any, out: Path | None) -> None:
    """Print ``detbench bench --vs-originals``' table."""
    from rich.table import Table

    table = Table(title="detbench vs the original evaluation loops (CPU)", title_justify="left")
    shown = ["detector", "images", "repeats", "detbench_images_per_s", "original_images_per_s", "ratio_min",
             "ratio_median", "ratio_max", "detbench_peak_rss_mb", "original_peak_rss_mb", "max_abs_diff"]
    for col in shown:
        table.add_column(col, justify="left" if col == "detector" else "right")
    for row in rows.to_dict("records"):
        table.add_row(*(str(row[c]) for c in shown))
    console.print(table)
    if out:
        console.print(f"written: {out / 'vs_originals.csv'}, {out / 'vs_originals.md'}")


def main() -> None:
    """The ``detbench`` console script (under torchrun, each process ends through :func:`distributed.leave`)."""
    from detbench import distributed

    if not distributed.launched():
        app(prog_name="detbench")
        return
    try:
        app(prog_name="detbench")
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    distributed.leave(code)


if __name__ == "__main__":
    main()
