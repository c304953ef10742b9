"""``python -m detbench`` (and ``torchrun -m detbench``): the same command line as ``detbench``."""

from detbench.cli.commands import main

main()
