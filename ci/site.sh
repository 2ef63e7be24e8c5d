#!/usr/bin/env bash
# Build the collection's site into site/ from the stored, executed notebooks (nothing is executed
# and nothing is fetched), then check it: warnings are errors (a broken internal link, a missing
# figure or a notebook missing from the index stops the build), and docs/check_site.py checks the
# HTML. Serve it locally with `python -m http.server -d site 8000` and open localhost:8000.
# Usage: bash ci/site.sh [extra sphinx-build args]
source "$(dirname "$0")/env.sh"
cd "$CNFLIB_ROOT"
# Sphinx writes into build/site/ (MyST-NB puts its jupyter_execute/ beside the output folder).
rm -rf build/site site
python -m sphinx -b html -E -W --keep-going -q -d build/site/doctrees docs build/site/html "$@"
mv build/site/html site
python docs/check_site.py site
