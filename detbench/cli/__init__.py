"""The ``detbench`` command line: one thin function per command over :mod:`detbench.api`, the printed views, the
error guard and the options several commands share.

May import every other part of detbench; nothing imports it but ``detbench.__main__``.
"""

from detbench.cli.commands import app, main

__all__ = ["app", "main"]
