#!/usr/bin/env bash
# The test command: the site build, unit and browser tests, then every notebook and every solutions
# notebook executed and checked by nbval.
# Usage: bash ci/test.sh [extra pytest args]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CNFLIB_ROOT"
export MPLBACKEND="${MPLBACKEND:-Agg}" PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::DeprecationWarning}"  # this run only
# The browser tests drive Debian's Chromium: install it where we can (root, e.g. CI); elsewhere
# they skip and say how to enable them (under CI=true they fail instead).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[cnflib] installing Debian's chromium for the browser tests" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null \
      || echo "[cnflib] could not install chromium" >&2
  else
    echo "[cnflib] no chromium: the browser tests will skip (apt-get install chromium, as root)" >&2
  fi
fi
bash ci/site.sh
python -m pytest tests -q "$@"
python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks solutions -q "$@"
