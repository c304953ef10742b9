"""Finished runs read back and used: the ``Run`` handle, leaderboards, HTML reports and their figures, paper
presets, scoring new images with a trained run, and the rich tables that print them.

May import every part below :mod:`detbench.cli` except :mod:`detbench.perf`.
"""
