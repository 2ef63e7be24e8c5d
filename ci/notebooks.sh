#!/usr/bin/env bash
# The main job: execute every notebook headless with papermill at its default parameters
# into outputs/ (executed copies, figures, metrics.json each) and print a summary table.
# Usage: bash ci/notebooks.sh [--output DIR] [--only 02_continuous_normalizing_flows] [-p preset full]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CNFLIB_ROOT"
export MPLBACKEND="${MPLBACKEND:-Agg}" PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::DeprecationWarning}"  # this run only
python -m cnflib.collection.run_notebooks "$@"
