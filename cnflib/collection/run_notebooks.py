"""Execute the notebook collection headless with papermill and print a results summary::

    python -m cnflib.collection.run_notebooks                         # every notebook, default parameters
    python -m cnflib.collection.run_notebooks --only 02 -p preset full # one notebook at paper scale
    python -m cnflib.collection.run_notebooks --only 02 --store       # re-execute 02 and store it in notebooks/
    python -m cnflib.collection.run_notebooks --clean notebooks/*.ipynb  # clean stored notebooks in place

(``cnflib-notebooks`` is the same command where cnflib is installed.) Each notebook runs with
``CNFLIB_OUTPUT_DIR=<output>/<name>`` so that it writes its figures and ``metrics.json`` there,
next to the executed copy; its cells' output is logged as it runs (papermill's ``log_output``)
to ``<output>/<name>/output.log``, so a long run can be watched (``tail -f``). A failed notebook is reported and the
others still run; the exit status is non-zero if any failed. Parameters that a notebook does not
declare, or an unknown preset, stop the run before any notebook starts; the output folder is locked
for the run (:mod:`cnflib.collection.lock`), and an unreadable ``metrics.json`` fails its notebook.

Every executed copy is cleaned (:func:`clean`): outputs are kept, but not papermill's run metadata
(temporary paths, timings), nbclient's per-cell timestamps or progress-bar chunks on stderr, so a
stored notebook's diff shows only what changed in its results.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Optional, Union

from cnflib.collection._checks import check_run, read_metrics
from cnflib.collection.lock import FolderLocked, folder_lock
from cnflib.collection.report import CHECKPOINT_ENV, OUTPUT_ENV
from cnflib.core._paths import project_root

ROOT = project_root()
NOTEBOOKS = ROOT / "notebooks"
RUN_METADATA = ("papermill", "execution")  # notebook- and cell-level keys written by papermill / nbclient
# One tqdm frame: "\rdesc:  42%|████      | 126/300 [00:10<00:14, 12.0it/s, loss=3.2]" (to the next \r or \n)
PROGRESS_FRAME = re.compile(r"\r?[^\r\n]*\d+%\|[^\r\n]*\|[^\r\n]*")


def discover(only: Optional[list[str]] = None, notebooks: Optional[Path] = None) -> list[Path]:
    """The collection's notebooks in order, optionally those whose name starts with an ``only`` prefix."""
    notebooks = notebooks or NOTEBOOKS
    found = sorted(p for p in notebooks.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise SystemExit(f"no notebooks in {notebooks}: run from a checkout of cnflib or pass --notebooks DIR")
    if only:
        chosen = [p for p in found if any(p.stem.startswith(o) for o in only)]
        if not chosen:
            names = ", ".join(p.stem for p in found)
            raise SystemExit(f"no notebook matches {only}; notebooks: {names}")
        return chosen
    return found


def clean(nb: dict) -> dict:
    """Remove run noise from a notebook (nbformat 4, as a dict), in place; returns it.

    Removed: the notebook's and every cell's ``papermill`` metadata, the cells' ``execution``
    timestamps and empty ``tags``, and on stderr every progress-bar frame (then every stderr
    stream left blank). Kept: sources, tags, execution counts and every other output.
    """
    for key in RUN_METADATA:
        nb.get("metadata", {}).pop(key, None)
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {})
        for key in RUN_METADATA:
            meta.pop(key, None)
        if meta.get("tags") == []:
            del meta["tags"]
        if "outputs" not in cell:
            continue
        kept = []
        for output in cell["outputs"]:
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                text = output["text"] if isinstance(output["text"], str) else "".join(output["text"])
                kept_text = PROGRESS_FRAME.sub("", text)
                if not kept_text.strip():
                    continue
                if kept_text != text:
                    output["text"] = kept_text
            kept.append(output)
        cell["outputs"] = kept
    return nb


def clean_file(path: Union[str, Path]) -> bool:
    """Clean the notebook file ``path`` in place (see :func:`clean`); returns whether it changed."""
    import nbformat

    path = Path(path)
    before = path.read_text()
    nb = clean(nbformat.reads(before, as_version=4))
    after = nbformat.writes(nb) + "\n"
    if after != before:
        path.write_text(after)
    return after != before


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


def parameters_digest(parameters: dict[str, Any], length: int = 8) -> str:
    """A short hash of papermill ``parameters`` (the same for the same values in any order)."""
    return hashlib.sha1(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:length]


def execute(notebook: Path, folder: Path, parameters: dict[str, Any],
            checkpoints: Optional[Path] = None) -> dict[str, Any]:
    """Execute ``notebook`` into ``folder`` (executed copy, metrics.json, figures).

    The notebook's checkpoints and training logs go to ``checkpoints`` (default
    ``folder/checkpoints``; see :func:`cnflib.collection.presets.configure_trainer`); its cells' output is
    appended to ``folder/output.log`` while it runs.
    Returns its summary row: notebook, status ("ok" or "FAILED"), seconds, metrics, error.
    """
    import papermill

    folder.mkdir(parents=True, exist_ok=True)
    metrics_file = folder / "metrics.json"
    metrics_file.unlink(missing_ok=True)
    os.environ[OUTPUT_ENV] = str(folder)
    os.environ[CHECKPOINT_ENV] = str(checkpoints or folder / "checkpoints")
    start = time.perf_counter()
    status, error = "ok", ""
    executed = folder / notebook.name
    log, live = logging.getLogger("papermill"), logging.FileHandler(folder / "output.log", encoding="utf-8")
    live.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(live)
    log.setLevel(logging.INFO)
    try:
        papermill.execute_notebook(str(notebook), str(executed), parameters=parameters, cwd=str(notebook.parent),
                                   progress_bar=False, log_output=True, kernel_name="python3")
    except Exception as exc:  # a failed notebook must not stop the others
        status = "FAILED"
        error = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
    finally:
        os.environ.pop(OUTPUT_ENV, None)
        os.environ.pop(CHECKPOINT_ENV, None)
        log.removeHandler(live)
        live.close()
        if executed.exists():
            clean_file(executed)
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
        folder = output / notebook.stem
        print(f"[cnflib] running {notebook.stem} {parameters or ''} (live output: {folder / 'output.log'})",
              file=sys.stderr, flush=True)
        # checkpoints per parameter set: the same -p values resume, others start afresh
        rows.append(execute(notebook, folder, parameters, checkpoints=folder / "checkpoints" / parameters_digest(parameters)))
        print(f"[cnflib]   {rows[-1]['status']} in {rows[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
    (output / "summary.md").write_text(summary_table(rows) + "\n")
    (output / "summary.json").write_text(json.dumps(rows, indent=2))
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "outputs", help="output folder (default: outputs/)")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="the notebooks' folder (default: notebooks/)")
    parser.add_argument("--only", nargs="+", help="notebook name prefixes, e.g. 01 02_continuous")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="papermill parameter (JSON values), e.g. -p preset full -p seed 1")
    parser.add_argument("--store", action="store_true",
                        help="copy each notebook that ran without error (cleaned) back over its stored file")
    parser.add_argument("--clean", nargs="+", type=Path, metavar="NOTEBOOK",
                        help="only clean these notebook files in place (no execution)")
    args = parser.parse_args(argv)
    if args.clean:
        for path in args.clean:
            print(f"{path}: {'cleaned' if clean_file(path) else 'already clean'}")
        return 0
    parameters = {name: _parse_value(value) for name, value in args.parameter}
    if args.store and parameters:
        parser.error("--store keeps the stored notebooks at their default parameters: drop -p")
    notebooks = discover(args.only, args.notebooks)
    try:
        check_run(parameters, notebooks)  # before any notebook starts
        with folder_lock(args.output):
            rows = run_all(notebooks, args.output, parameters)
    except (ValueError, FolderLocked) as exc:  # run_all's notebooks report their own errors
        print(f"[cnflib] {exc}", file=sys.stderr)
        return 2
    if args.store:
        for notebook, row in zip(notebooks, rows):
            if row["status"] == "ok":
                notebook.write_text((args.output / notebook.stem / notebook.name).read_text())
    table = summary_table(rows)
    print(table)
    failed = [r["notebook"] for r in rows if r["status"] != "ok"]
    if failed:
        print(f"\n{len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
