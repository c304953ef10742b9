"""Running a benchmark: a request is resolved and planned (identities, protocol rows, checks), carried out
(fit or reuse, resumable scoring) and recorded (``run.json`` and its tables); sweeps are runs too.

May import the ground floor, :mod:`detbench.data`, :mod:`detbench.models`, :mod:`detbench.kit` and the plugins
(``detbench.detectors``, ``detbench.datasets``); never :mod:`detbench.results`, :mod:`detbench.perf` or
:mod:`detbench.cli`.
"""
