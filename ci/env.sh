# Source this file: it creates (or reuses) the project's Python environment and activates it.
#
# Where: $CNFLIB_ENV, default ~/.cache/cnflib/venv (outside the checkout, so fresh clones reuse it).
# When: rebuilt only if the hash of the dependency files differs from the stamp inside the env.
# Afterwards: the env's python is first on PATH and the checkout is on PYTHONPATH, so notebooks
# and kernels import this checkout's `cnflib` without an install step.
set -euo pipefail
CNFLIB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CNFLIB_ENV="${CNFLIB_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cnflib/venv}"
export CNFLIB_ROOT CNFLIB_ENV

_cnflib_python() {
  for candidate in python3.11 python3.12 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))'; then
      echo "$candidate"; return 0
    fi
  done
  echo "cnflib needs Python 3.11 or 3.12 on PATH" >&2; return 1
}

_cnflib_stamp() {
  cat "$CNFLIB_ROOT/pyproject.toml" "$CNFLIB_ROOT/environment.yml" "$CNFLIB_ROOT/ci/env.sh" \
    | "$(_cnflib_python)" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
}

_cnflib_build_env() {
  local py; py="$(_cnflib_python)"
  echo "[cnflib] building the environment in $CNFLIB_ENV (a few minutes, once)" >&2
  rm -rf "$CNFLIB_ENV"
  mkdir -p "$(dirname "$CNFLIB_ENV")"
  "$py" -m venv "$CNFLIB_ENV"
  "$CNFLIB_ENV/bin/python" -m pip install --quiet --upgrade pip 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  # Dependencies only (read from pyproject.toml): cnflib itself comes from the checkout via
  # PYTHONPATH, so one environment serves every clone with the same dependency files.
  "$CNFLIB_ENV/bin/python" "$CNFLIB_ROOT/ci/requirements.py" > "$CNFLIB_ENV/requirements.txt"
  "$CNFLIB_ENV/bin/python" -m pip install --quiet --progress-bar off -r "$CNFLIB_ENV/requirements.txt" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  "$CNFLIB_ENV/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (cnflib)" >/dev/null
}

_cnflib_want="$(_cnflib_stamp)"
if [ "$(cat "$CNFLIB_ENV/.cnflib-stamp" 2>/dev/null || true)" != "$_cnflib_want" ]; then
  _cnflib_build_env
  echo "$_cnflib_want" > "$CNFLIB_ENV/.cnflib-stamp"
fi
export PATH="$CNFLIB_ENV/bin:$PATH"
export PYTHONPATH="$CNFLIB_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND="${MPLBACKEND:-Agg}"
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::DeprecationWarning}"
