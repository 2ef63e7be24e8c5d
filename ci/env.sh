# Source this file (`source ci/env.sh`): it creates (or reuses) the project's Python environment
# and activates it in your shell.
#
# What it changes in your shell, and nothing else (no shell options, no functions, no other
# variables): PATH (the environment's bin/ first), PYTHONPATH (this checkout first, so notebooks
# and kernels import its `cnflib` without an install step), CNFLIB_ROOT (this checkout) and
# CNFLIB_ENV (the environment's folder). The build runs in its own process (ci/build_env.sh, in
# strict mode); if it fails, PATH and PYTHONPATH stay as they were and the `source` returns 1.
#
# Where: $CNFLIB_ENV, default ~/.cache/cnflib/venv (outside the checkout, so fresh clones reuse it).
# What: pyproject.toml's dependencies and its `notebooks`, `test` and `docs` extras at the exact versions of
# ci/constraints.txt; rebuilt only when the hash of those files differs from the env's stamp.
CNFLIB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
CNFLIB_ENV="${CNFLIB_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cnflib/venv}"
export CNFLIB_ROOT CNFLIB_ENV
# Two shells sourcing this at once (a notebook kernel and a test run, say) would both rebuild the
# same folder: the build runs under a lock on "$CNFLIB_ENV.lock" (util-linux flock, where present),
# and the second one finds the stamp written and builds nothing.
mkdir -p "$(dirname "$CNFLIB_ENV")" 2>/dev/null
if if command -v flock >/dev/null 2>&1; then flock "$CNFLIB_ENV.lock" bash "$CNFLIB_ROOT/ci/build_env.sh"
   else bash "$CNFLIB_ROOT/ci/build_env.sh"; fi; then
  export PATH="$CNFLIB_ENV/bin:$PATH"
  export PYTHONPATH="$CNFLIB_ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "[cnflib] the environment in $CNFLIB_ENV could not be built; nothing was activated" >&2
  false
fi
