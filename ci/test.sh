#!/usr/bin/env bash
# The test command: unit tests, then every notebook executed and checked by nbval.
# Usage: bash ci/test.sh [extra pytest args]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CNFLIB_ROOT"
export MPLBACKEND="${MPLBACKEND:-Agg}" PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::DeprecationWarning}"  # this run only
python -m pytest tests -q "$@"
python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks -q "$@"
