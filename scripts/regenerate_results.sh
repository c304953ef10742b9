#!/usr/bin/env bash
# Regenerates the demo files of results/ from nothing: every run on the demo suite, the leaderboard (csv, long
# csv, Markdown) and the report of the default MPFT run. From the repository root, with detbench installed:
#
#   bash scripts/regenerate_results.sh            (PYTHON=/path/to/venv/bin/python to choose the interpreter)
#
# It works in a fresh temporary DETBENCH_HOME (so the demo is built, indexed and every run computed anew; nothing
# of an earlier home is reused) and removes it at the end unless KEEP_HOME=1. RESULTS_HOME=DIR resumes an
# interrupted regeneration in DIR instead (runs finished there are reused: a run id names exactly what it computed). Run ids are deterministic: the same
# code and package versions reproduce the same ids and numbers. The benchmark files under results/bench/ are a
# separate step (results/README.md).
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=results
export DETBENCH_HOME
export COLUMNS=200  # one output line per run, so its id is read from it whole
if [[ -n ${RESULTS_HOME:-} ]]; then  # resume in this home: its finished runs (same ids) are reused, it is kept
    DETBENCH_HOME=$RESULTS_HOME
else
    DETBENCH_HOME=$(mktemp -d -t detbench-results-XXXXXX)
    if [[ ${KEEP_HOME:-0} != 1 ]]; then
        trap 'rm -rf "$DETBENCH_HOME"' EXIT
    fi
fi
echo "DETBENCH_HOME=$DETBENCH_HOME"

detbench() { "$PY" -m detbench "$@"; }

# Every registered detector that computes its own scores (imported scores, `external`, need a file), so a newly
# registered detector gets its plain demo run here without editing this script.
mapfile -t DETECTORS < <("$PY" - <<'PYEOF'
from detbench.api import list_detectors
from detbench.registry import DETECTORS

for name in list_detectors()["name"]:
    if not DETECTORS.get(name).external:
        print(name)
PYEOF
)
echo "detectors: ${DETECTORS[*]}"

LOGS="$DETBENCH_HOME/logs"
mkdir -p "$LOGS"
for d in "${DETECTORS[@]}"; do
    echo "== detbench run $d --suite demo"
    detbench run "$d" --suite demo -q | tee "$LOGS/$d.txt"
done

# The variants the README discusses: other thresholds, the MPFT ablations and the robustness sweep.
detbench run rigid --suite demo --threshold calibrated -q
detbench run mpft --suite demo --threshold calibrated -q
for s in random none inverse; do detbench run mpft --suite demo --set mask.strategy=$s -q; done
detbench run mpft --suite demo --set mask.ratio=0.2 -q
detbench run mpft --suite demo --set mask.operator=dct_hf -q
detbench run mpft --suite demo --set train_per_class=50 -q
detbench sweep mpft --suite demo --perturb jpeg:95,75,50 --perturb blur:1,2 -q

detbench leaderboard demo --csv "$OUT" --markdown "$OUT/demo_leaderboard.md" > /dev/null

# The report of the default MPFT run, its id as `detbench run mpft --suite demo` printed it.
MPFT_RUN=$(sed -n 's/^run \([0-9a-f]\{16\}\) -> .*/\1/p' "$LOGS/mpft.txt")
if [[ -z $MPFT_RUN ]]; then
    echo "error: no run id in the output of detbench run mpft --suite demo" >&2
    exit 1
fi
rm -rf "$OUT/demo_report"
detbench report "$MPFT_RUN" --out "$OUT/demo_report"
echo "default MPFT demo run: $MPFT_RUN"
