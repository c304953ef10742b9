"""The spread of a run repeated with several seeds: per generator and metric, the mean, sample standard deviation
and number of seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from detbench.engine.record import record_seed

SPREAD_METRICS = ("acc", "ap", "auc")


def seed_spread(runs: Sequence[Any], metrics: Sequence[str] = SPREAD_METRICS) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; NaN for one seed) and count over ``runs`` of each metric per generator.

    Args:
        runs: finished runs (:class:`~detbench.engine.finished_run.Run`) that differ only in their seed.
        metrics: the metrics summarised (those the runs have).

    Returns:
        Columns ``generator``, ``metric``, ``mean``, ``sd``, ``n_seeds``, ``seeds``; generators in the first run's
        order. A generator some run leaves undefined (n/a) has a NaN mean: a spread over fewer seeds is not shown
        as if it were over all.
    """
    frames = []
    for run in runs:
        m = run.metrics.set_index("generator")
        frames.append(m[[c for c in metrics if c in m.columns]].assign(seed=record_seed(run.record)))
    both = pd.concat(frames)
    order = list(dict.fromkeys(frames[0].index))
    rows = []
    for generator in order:
        part = both.loc[[generator]]
        for metric in [c for c in metrics if c in both.columns]:
            values = part[metric].astype(float)
            rows.append({
                "generator": generator,
                "metric": metric,
                "mean": float(values.mean(skipna=False)),
                "sd": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                "n_seeds": len(values),
                "seeds": ",".join(str(s) for s in part["seed"]),
            })
    return pd.DataFrame(rows, columns=["generator", "metric", "mean", "sd", "n_seeds", "seeds"])
