#!/usr/bin/env bash
# Create (or reuse) the project's environment in $CNFLIB_ENV; `source ci/env.sh` runs this, then
# activates it. Strict mode holds in this process only, never in the shell that sourced env.sh.
#
# Rebuilt only if the hash of the files that define it (pyproject.toml, ci/constraints.txt and the
# two scripts that read them) differs from the stamp inside the env. cnflib itself is not
# installed: it comes from the checkout via PYTHONPATH, so one environment serves every clone.
# `bash ci/build_env.sh --print-stamp` prints the stamp the files ask for and builds nothing.
set -euo pipefail
CNFLIB_ROOT="${CNFLIB_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
CNFLIB_ENV="${CNFLIB_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cnflib/venv}"

python_for_cnflib() {
  for candidate in python3.11 python3.12 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "cnflib needs Python 3.11 or 3.12 on PATH" >&2; return 1
}

quiet_pip() {  # pip, without the noise of find-links folders that do not exist on this machine
  "$CNFLIB_ENV/bin/python" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

py="$(python_for_cnflib)"
want="$(cat "$CNFLIB_ROOT/pyproject.toml" "$CNFLIB_ROOT/ci/constraints.txt" "$CNFLIB_ROOT/ci/build_env.sh" \
          "$CNFLIB_ROOT/ci/requirements.py" | "$py" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ "${1:-}" = "--print-stamp" ]; then
  echo "$want"; exit 0
fi
if [ "$(cat "$CNFLIB_ENV/.cnflib-stamp" 2>/dev/null || true)" = "$want" ]; then
  exit 0
fi
echo "[cnflib] building the environment in $CNFLIB_ENV (a few minutes, once)" >&2
rm -rf "$CNFLIB_ENV"
mkdir -p "$(dirname "$CNFLIB_ENV")"
"$py" -m venv "$CNFLIB_ENV"
quiet_pip install --quiet --upgrade pip
"$CNFLIB_ENV/bin/python" "$CNFLIB_ROOT/ci/requirements.py" notebooks test docs > "$CNFLIB_ENV/requirements.txt"
quiet_pip install --quiet --progress-bar off -c "$CNFLIB_ROOT/ci/constraints.txt" -r "$CNFLIB_ENV/requirements.txt"
"$CNFLIB_ENV/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (cnflib)" >/dev/null
echo "$want" > "$CNFLIB_ENV/.cnflib-stamp"
