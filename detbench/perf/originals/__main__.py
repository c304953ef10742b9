"""``python -m detbench.perf.originals NAME ROOT FILES_JSON OUT_JSON``: one original loop in a process of its own.

Loads the original's model from the weight files named in ``FILES_JSON`` (``{role: path}``), scores the test set at
``ROOT`` and writes ``{"scores": {path: P(fake)}, "load_s": ..., "score_s": ..., "peak_rss_mb": ...}`` to
``OUT_JSON``: ``load_s`` is the model's construction and weight loading, ``score_s`` the whole scoring pass (loader,
decode, forward), ``peak_rss_mb`` this process's peak resident set (its DataLoader workers apart).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> None:
    """Run one original loop and write its scores and timings.

    Args:
        argv: ``NAME ROOT FILES_JSON OUT_JSON``.
    """
    from detbench.kit.cost import peak_rss_bytes
    from detbench.perf.originals import original

    name, root, files_json, out_json = argv
    module = original(name)
    files = {role: Path(p) for role, p in json.loads(Path(files_json).read_text()).items()}
    t = time.perf_counter()
    model = module.load(files)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    scores = module.score(model, Path(root))
    score_s = time.perf_counter() - t
    peak = round(peak_rss_bytes() / 2**20, 1)
    Path(out_json).write_text(json.dumps({"scores": scores, "load_s": load_s, "score_s": score_s,
                                          "peak_rss_mb": peak}))


if __name__ == "__main__":
    main(sys.argv[1:])
