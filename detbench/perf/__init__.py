"""``detbench bench``: throughput and memory of each stage of the pipeline (decode, forward, scoring, training,
indexing, caches, metrics), measured in fresh processes on generated inputs.

May import every part below :mod:`detbench.cli` except :mod:`detbench.results`.
"""
