"""Options and help texts that several ``detbench`` commands share, declared once (defaults stay in each command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

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
SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Config override key=value (repeatable; train.holdout=0.1|0|val-split chooses the held-out images)."
)]
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
