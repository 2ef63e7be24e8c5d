#!/usr/bin/env bash
# The test command: unit tests, then every notebook executed and checked by nbval.
# Usage: bash ci/test.sh [extra pytest args]
source "$(dirname "$0")/env.sh"
cd "$CNFLIB_ROOT"
python -m pytest tests -q "$@"
python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks -q "$@"
