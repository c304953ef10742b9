"""Options and help texts that several ``detbench`` commands share, declared once (defaults stay in each command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from detbench.engine.run_options import OPTIONS

FILTER_HELP = "Exact (case-insensitive) if some run has that value, else every value containing it."


# Options shared by commands, declared once (the defaults stay in each signature).
SuiteOption = Annotated[
    Optional[str], typer.Option("--suite", "-s", help="Suite name (see `detbench ls suites`); default demo.")
]
RootOption = Annotated[Optional[Path], typer.Option(help=OPTIONS["root"].help)]
ProtocolOption = Annotated[Optional[str], typer.Option(help=OPTIONS["protocol"].help)]
TrainSuiteOption = Annotated[Optional[str], typer.Option(help=OPTIONS["train_suite"].help)]
TrainRootOption = Annotated[Optional[Path], typer.Option(help=OPTIONS["train_root"].help)]
TrainProtocolOption = Annotated[Optional[str], typer.Option(help=OPTIONS["train_protocol"].help)]
SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Config override key=value (repeatable; train.holdout=0.1|0|val-split chooses the held-out images; "
    "check.near_duplicates=warn|refuse|off and check.near_duplicates_distance=D the near-duplicate check)."
)]
SeedOption = Annotated[int, typer.Option(help=OPTIONS["seed"].help)]
SeedsOption = Annotated[Optional[str], typer.Option(help=OPTIONS["seeds"].help)]
DeviceOption = Annotated[Optional[str], typer.Option(help=OPTIONS["device"].help)]
WorkersOption = Annotated[Optional[int], typer.Option(help=OPTIONS["workers"].help)]
BatchSizeOption = Annotated[Optional[int], typer.Option(help=OPTIONS["batch_size"].help)]
BootstrapOption = Annotated[int, typer.Option(help=OPTIONS["bootstrap"].help)]
ThresholdOption = Annotated[str, typer.Option(help=OPTIONS["threshold"].help)]
FastIndexOption = Annotated[bool, typer.Option(help=OPTIONS["fast_index"].help)]
ForceOption = Annotated[bool, typer.Option(help=OPTIONS["force"].help)]
PerturbOption = Annotated[Optional[str], typer.Option(help=OPTIONS["perturb"].help)]
PresetOption = Annotated[Optional[str], typer.Option(help=OPTIONS["preset"].help)]
AllowCpuOption = Annotated[bool, typer.Option(help=OPTIONS["allow_cpu"].help)]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
