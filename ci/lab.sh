#!/usr/bin/env bash
# Open the collection in JupyterLab, in the project's environment.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CNFLIB_ROOT"
exec jupyter lab notebooks/ "$@"
