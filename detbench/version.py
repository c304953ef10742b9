"""The version of detbench, recorded in every index, run and report."""

__version__ = "0.1.0"
