"""Execute the notebook collection headless with papermill and print a results summary.

    python -m cnflib.collection.run_notebooks                         # every notebook, default parameters
    python -m cnflib.collection.run_notebooks --only 02 -p preset full # one notebook at paper scale

Each notebook runs with ``CNFLIB_OUTPUT_DIR=<output>/<name>`` so that it writes its figures
and ``metrics.json`` there, next to the executed copy. A failed notebook is reported and the
others still run; the exit status is non-zero if any failed. Parameters that a notebook does not
declare, or an unknown preset, stop the run before any notebook starts; the output folder is locked
for the run (:mod:`cnflib.collection.lock`), and an unreadable ``metrics.json`` fails its notebook.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from cnflib.collection._checks import check_run, read_metrics
from cnflib.collection.lock import FolderLocked, folder_lock
from cnflib.collection.report import OUTPUT_ENV

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def discover(only: Optional[list[str]] = None) -> list[Path]:
    """The collection's notebooks in order, optionally those whose name starts with an ``only`` prefix."""
    found = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        chosen = [p for p in found if any(p.stem.startswith(o) for o in only)]
        if not chosen:
            names = ", ".join(p.stem for p in found)
            raise SystemExit(f"no notebook matches {only}; notebooks: {names}")
        return chosen
    return found


def _parse_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value: JSON (``1``, ``[0.5, 0.9]``, ``true``), a Python literal as papermill's own
    command line reads it (``True``, ``None``, ``("a", 2)``), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def execute(notebook: Path, folder: Path, parameters: dict[str, Any]) -> dict[str, Any]:
    """Execute ``notebook`` into ``folder`` (executed copy, metrics.json, figures).

    Returns its summary row: notebook, status ("ok" or "FAILED"), seconds, metrics, error.
    """
    import papermill

    folder.mkdir(parents=True, exist_ok=True)
    metrics_file = folder / "metrics.json"
    metrics_file.unlink(missing_ok=True)
    os.environ[OUTPUT_ENV] = str(folder)
    start = time.perf_counter()
    status, error = "ok", ""
    try:
        papermill.execute_notebook(str(notebook), str(folder / notebook.name), parameters=parameters,
                                   cwd=str(notebook.parent), progress_bar=False, kernel_name="python3")
    except Exception as exc:  # a failed notebook must not stop the others
        status = "FAILED"
        error = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
    finally:
        os.environ.pop(OUTPUT_ENV, None)
    seconds = time.perf_counter() - start
    metrics = {}
    if metrics_file.exists():
        try:
            metrics = read_metrics(metrics_file)
        except ValueError as exc:  # this notebook's failure, not the run's
            status, error = "FAILED", str(exc)[:200]
    return {"notebook": notebook.stem, "status": status, "seconds": round(seconds, 1), "metrics": metrics, "error": error}


def summary_table(rows: list[dict[str, Any]], max_metrics: int = 6) -> str:
    """A markdown table: notebook, status, seconds, key metrics."""
    lines = ["| notebook | status | seconds | key metrics |", "|---|---|---:|---|"]
    for row in rows:
        shown = ", ".join(f"{k}={_short(v)}" for k, v in list(row["metrics"].items())[:max_metrics])
        if row["error"]:
            shown = f"{row['error']} " + shown
        lines.append(f"| {row['notebook']} | {row['status']} | {row['seconds']:.0f} | {shown} |")
    return "\n".join(lines)


def run_all(notebooks: list[Path], output: Path, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """Execute ``notebooks`` into ``output/<name>``; write summary.md and summary.json; return the rows."""
    rows = []
    for notebook in notebooks:
        print(f"[cnflib] running {notebook.stem} {parameters or ''}", file=sys.stderr, flush=True)
        rows.append(execute(notebook, output / notebook.stem, parameters))
        print(f"[cnflib]   {rows[-1]['status']} in {rows[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
    (output / "summary.md").write_text(summary_table(rows) + "\n")
    (output / "summary.json").write_text(json.dumps(rows, indent=2))
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "outputs", help="output folder (default: outputs/)")
    parser.add_argument("--only", nargs="+", help="notebook name prefixes, e.g. 01 02_continuous")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="papermill parameter (JSON values), e.g. -p preset full -p seed 1")
    args = parser.parse_args(argv)
    parameters = {name: _parse_value(value) for name, value in args.parameter}
    notebooks = discover(args.only)
    try:
        check_run(parameters, notebooks)  # before any notebook starts
        with folder_lock(args.output):
            rows = run_all(notebooks, args.output, parameters)
    except (ValueError, FolderLocked) as exc:  # run_all's notebooks report their own errors
        print(f"[cnflib] {exc}", file=sys.stderr)
        return 2
    table = summary_table(rows)
    print(table)
    failed = [r["notebook"] for r in rows if r["status"] != "ok"]
    if failed:
        print(f"\n{len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
