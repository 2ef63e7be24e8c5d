"""Parameter sweeps over one notebook with papermill, and the results table over seeds.

    python -m cnflib.collection.sweep sweeps/sparse_flows.yaml --workers 2
    python -m cnflib.collection.sweep sweeps/rnode.yaml --gpus 0 1 2 3     # 4 workers, one GPU each
    python -m cnflib.collection.sweep sweeps/smoke.yaml --dry-run          # list the points, run nothing
    python -m cnflib.collection.sweep sweeps/rnode.yaml -p preset tutorial # override a fixed parameter

A sweep file (YAML)::

    notebook: 07_sparse_flows     # a notebook of the collection (its name or number, e.g. "07")
    parameters: {preset: full}    # fixed papermill parameters
    grid:                         # the cartesian product of these lists is the set of points
      seed: [0, 1, 2]
    metrics: [gaussians6/structured/nll@0.5]  # optional: the metrics tabulated and plotted (default: every number)

A metric name may hold placeholders filled from each point's parameters, for notebooks that name
metrics after their data set: ``"{datasets[0]}_rnode_test_nll"`` reads ``miniboone_rnode_test_nll``
from the point with ``datasets=[miniboone]``, and the table has one column for all data sets.

Every name in ``parameters`` and ``grid`` must be a variable of the notebook's ``parameters``
cell; the file is validated before anything runs (each grid entry a list of distinct values,
``metrics`` a list, presets known), with messages naming the key. The output folder is locked for
the run (:mod:`cnflib.collection.lock`): a second sweep or runner on it stops, naming the holder. Each point runs into its own folder ``<out>/<grid values>-<hash>/`` (executed notebook,
``metrics.json`` written through :func:`cnflib.collection.report.record_metrics`, figures). A finished point
(``metrics.json`` present) is skipped when the sweep runs again; a point runs in
``<folder>.running`` and moves to ``<folder>`` when it succeeds or ``<folder>.failed`` when it
fails, so an interrupted or failed point is never mistaken for a finished one (nor is one whose
``metrics.json`` is unreadable: it runs again). Failed points are
reported, the others still run, and the exit status is non-zero. Under the ``full`` preset every
``fit`` of a point checkpoints into ``<its folder>/checkpoints/`` (see
:func:`cnflib.collection.presets.configure_trainer`): re-running the sweep resumes an interrupted or failed
point from them (delete ``<folder>.running`` or ``<folder>.failed`` to start it afresh).

Outputs in ``<out>``: ``points.csv`` (one row per point), ``results.csv`` and ``results.md``
(mean ± std over seeds, grouped by the other grid parameters) and ``results.png``.
"""
from __future__ import annotations

import argparse
import ast
import itertools
import json
import math
import multiprocessing
import os
import re
import shutil
import string
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import yaml
from tqdm import tqdm

from cnflib.collection import run_notebooks
from cnflib.collection._checks import check_parameters, check_presets, read_metrics
from cnflib.collection._checks import notebook_parameters as notebook_parameters  # re-exported
from cnflib.collection.lock import FolderLocked, folder_lock
from cnflib.core._validation import check_choice

SEED = "seed"  # the grid parameter averaged over in the results table
KEYS = ("notebook", "parameters", "grid", "metrics")
# Notebooks being written (a sweep file may name them before they exist; running one fails clearly).


@dataclass
class Sweep:
    """A parsed sweep file: the notebook, fixed parameters, the grid and the tabulated metrics."""

    name: str
    notebook: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    metrics: Optional[list[str]] = None


@dataclass
class Point:
    """One run of the sweep: all its papermill parameters and its folder name."""

    parameters: dict[str, Any]
    grid: dict[str, Any]
    name: str


def find_notebook(name: str, notebooks: Optional[Path] = None) -> Path:
    """The notebook called ``name`` (stem, stem prefix such as ``"07"``, or a path to an .ipynb).

    Raises ValueError listing the collection's notebooks when none (or several) match.
    """
    notebooks = notebooks or run_notebooks.NOTEBOOKS
    path = Path(name)
    if path.suffix == ".ipynb" and path.exists():
        return path
    found = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    exact = [p for p in found if p.stem == path.stem]
    matches = exact or [p for p in found if p.stem.startswith(str(name))]
    if len(matches) != 1:
        names = ", ".join(p.stem for p in found)
        raise ValueError(f"unknown notebook {name!r}{' (ambiguous)' if matches else ''}; valid: {names}")
    return matches[0]


def _check_shape(spec: Any) -> None:
    """The sweep's keys and the type of each value, with messages naming the key."""
    if spec is None:
        raise ValueError(f"the sweep file is empty; a sweep is a mapping with at least 'notebook' "
                         f"(valid keys: {', '.join(KEYS)})")
    if not isinstance(spec, dict):
        raise ValueError(f"a sweep is a mapping of keys ({', '.join(KEYS)}), got a {type(spec).__name__}: "
                         "write 'notebook: NAME' lines, not '- ' items")
    if "notebook" not in spec:
        raise ValueError(f"a sweep needs a 'notebook' key; valid keys: {', '.join(KEYS)}")
    for key in spec:
        check_choice("sweep key", key, KEYS)
    for key in ("parameters", "grid"):
        if spec.get(key) is not None and not isinstance(spec[key], dict):
            raise ValueError(f"'{key}' must be a mapping of parameter names to "
                             f"{'values' if key == 'parameters' else 'lists of values'}, got {spec[key]!r}: "
                             f"write e.g. '{key}: {{seed: {'0' if key == 'parameters' else '[0, 1, 2]'}}}'")
    for key, values in (spec.get("grid") or {}).items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid[{key!r}] must be a non-empty list, got {values!r}: write e.g. '{key}: [{values}]'")
        texts = [json.dumps(v, sort_keys=True) for v in values]
        repeated = sorted({t for t in texts if texts.count(t) > 1})
        if repeated:
            raise ValueError(f"grid[{key!r}] repeats the values {', '.join(repeated)}: list each value once "
                             "(a repeated value would run the same point twice into one folder)")
    metrics = spec.get("metrics")
    if metrics is not None and (not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics)):
        raise ValueError(f"'metrics' must be a list of metric names, got {metrics!r}: write e.g. 'metrics: [{metrics}]'")


def parse(spec: dict[str, Any], name: str = "sweep", notebooks: Optional[Path] = None) -> Sweep:
    """Validate a sweep given as a dictionary (the YAML's content) and return it.

    Raises ValueError, naming the key, before anything runs: an empty or non-mapping file, an
    unknown key, a grid entry that is not a list or repeats a value, metrics that are not a list,
    parameters the notebook does not declare, an unknown preset (fixed or in the grid).
    """
    _check_shape(spec)
    parameters, grid = dict(spec.get("parameters") or {}), dict(spec.get("grid") or {})
    both = sorted(set(parameters) & set(grid))
    if both:
        raise ValueError(f"parameters {both} are both fixed and in the grid")
    notebook = find_notebook(str(spec["notebook"]), notebooks)
    check_parameters([*parameters, *grid], notebook)
    check_presets([parameters["preset"]] if "preset" in parameters else grid.get("preset", []))
    metrics = spec.get("metrics")
    for template in metrics or []:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        unknown = [f for f in fields if re.split(r"[.\[]", f)[0] not in {**parameters, **grid}]
        if unknown:
            raise ValueError(f"metric {template!r} names {unknown}, which the sweep does not set; "
                             f"set: {', '.join([*parameters, *grid])}")
    return Sweep(name, notebook, parameters, grid, list(metrics) if metrics is not None else None)


def read_spec(path: Path) -> Any:
    """The YAML content of a sweep file; ValueError naming the file if it cannot be read or parsed."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read the sweep file: {error}") from None


def load(path: Union[str, Path], notebooks: Optional[Path] = None) -> Sweep:
    """Read and validate a sweep file (see the module docstring for its format)."""
    path = Path(path)
    return parse(read_spec(path), path.stem, notebooks)


def _slug(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")[:40]


def expand(sweep: Sweep) -> list[Point]:
    """The cartesian product of the grid (in the file's order), each with its folder name.

    The name shows the grid values and ends with a hash of *all* parameters, so a point whose
    fixed parameters changed is never confused with an old one.
    """
    keys = list(sweep.grid)
    points = []
    for values in itertools.product(*(sweep.grid[k] for k in keys)):
        grid = dict(zip(keys, values))
        parameters = {**sweep.parameters, **grid}
        digest = run_notebooks.parameters_digest(parameters, 6)
        label = "_".join(f"{k}={_slug(v)}" for k, v in grid.items()) or "point"
        points.append(Point(parameters, grid, f"{label}-{digest}"))
    return points


def run_point(notebook: Path, folder: Path, parameters: dict[str, Any]) -> dict[str, Any]:
    """Execute one point in ``<folder>.running``, then move it to ``folder`` or ``<folder>.failed``.

    The folder of an earlier, interrupted (``.running``) or failed (``.failed``) run of the point
    is reused, so that its checkpoints resume the training.
    """
    running, failed = folder.with_name(folder.name + ".running"), folder.with_name(folder.name + ".failed")
    if not running.is_dir() and failed.is_dir():
        failed.rename(running)
    if (running / "checkpoints").is_dir():
        print(f"[sweep] {folder.name}: resuming from the checkpoints in {running / 'checkpoints'}",
              file=sys.stderr, flush=True)
    running.mkdir(parents=True, exist_ok=True)
    (running / "params.json").write_text(json.dumps(parameters, indent=2))
    row = run_notebooks.execute(notebook, running, parameters)
    if row["status"] == "ok" and not (running / "metrics.json").exists():
        (running / "metrics.json").write_text("{}")
    target = folder if row["status"] == "ok" else failed
    for stale in (folder, failed):
        shutil.rmtree(stale, ignore_errors=True)
    running.rename(target)
    return row


def _finished(folder: Path) -> Optional[dict[str, Any]]:
    """The row of a point finished earlier, or None if it has no readable metrics.json (then it runs again)."""
    if not (folder / "metrics.json").exists():
        return None
    try:
        metrics = read_metrics(folder / "metrics.json")
    except ValueError as error:
        print(f"[sweep] {error}: running the point again", file=sys.stderr)
        return None
    return {"status": "done", "seconds": math.nan, "error": "", "metrics": metrics}


def _claim_gpus(free) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = free.get()  # this worker's kernels see only these devices


def _pool(workers: int, gpus: Optional[list[str]] = None) -> ProcessPoolExecutor:
    """Worker processes, each pinned to one entry of ``gpus`` (a CUDA_VISIBLE_DEVICES value) if given.

    Forked (no second import of torch) when no other thread could be copied mid-lock.
    """
    fork = sys.platform.startswith("linux") and threading.active_count() == 1
    context = multiprocessing.get_context("fork" if fork else "spawn")
    if not gpus:
        return ProcessPoolExecutor(workers, mp_context=context)
    free = context.Queue()
    for entry in gpus[:workers]:
        free.put(entry)
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_claim_gpus, initargs=(free,))


def _results(sweep: Sweep, todo: list[Point], out: Path, pool: Optional[ProcessPoolExecutor]
             ) -> Iterator[tuple[Point, dict[str, Any]]]:
    """Submit ``todo`` to ``pool`` now (or run it in this process, lazily); yields points as they finish."""
    if pool is None:
        return ((p, run_point(sweep.notebook, out / p.name, p.parameters)) for p in todo)
    futures = {pool.submit(run_point, sweep.notebook, out / p.name, p.parameters): p for p in todo}
    return ((futures[f], f.result()) for f in as_completed(futures))


def run(sweep: Sweep, out: Union[str, Path], workers: int = 1, progress: bool = True,
        gpus: Optional[list[str]] = None) -> list[dict[str, Any]]:
    """Run every unfinished point (up to ``workers`` at once); returns one row per point.

    ``gpus``: one CUDA_VISIBLE_DEVICES value per worker (e.g. ``["0", "1"]``, or ``["0,1", "2,3"]``
    for two DDP points of 2 GPUs each); a worker runs all its points on its own devices.

    A row holds the grid values, ``status`` ("ok", "done" = finished earlier, "FAILED"),
    ``seconds``, ``error``, ``folder`` and the point's metrics. The folder ``out`` is locked for the
    run (a second run on it raises :class:`~cnflib.collection.lock.FolderLocked` naming this one).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if gpus and workers > len(gpus):
        raise ValueError(f"{workers} workers but {len(gpus)} GPU entries {gpus}: give one entry per worker")
    with folder_lock(out):
        return _run(sweep, Path(out), workers, progress, gpus)


def _run(sweep: Sweep, out: Path, workers: int, progress: bool, gpus: Optional[list[str]]) -> list[dict[str, Any]]:
    points = expand(sweep)
    outcome = {p.name: row for p in points if (row := _finished(out / p.name)) is not None}
    todo = [p for p in points if p.name not in outcome]
    pool = _pool(min(workers, len(todo)), gpus) if todo and (gpus or (workers > 1 and len(todo) > 1)) else None
    results = _results(sweep, todo, out, pool)  # workers start before tqdm starts its monitor thread
    bar = tqdm(total=len(points), initial=len(outcome), desc=sweep.name, file=sys.stderr, disable=not progress,
               ncols=100)
    failures = 0
    try:
        for point, row in results:
            outcome[point.name] = row
            failures += row["status"] != "ok"
            bar.set_postfix(failed=failures, refresh=False)
            bar.update(1)
            if row["status"] != "ok":
                bar.write(f"[sweep] FAILED {point.name}: {row['error']}")
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    rows = []
    for p in points:
        done, templated = outcome[p.name], [t for t in sweep.metrics or [] if "{" in t]
        rows.append({**p.grid, "status": done["status"], "seconds": done["seconds"], "error": done["error"],
                     "folder": p.name, **done["metrics"],
                     **{t: done["metrics"].get(t.format(**p.parameters)) for t in templated}})
    return rows


def _numeric_metrics(rows: list[dict[str, Any]], grid: list[str]) -> list[str]:
    skip = {*grid, "status", "seconds", "error", "folder"}
    names: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            if key not in skip and isinstance(value, (int, float)) and not isinstance(value, bool):
                names[key] = None
    return list(names)


def results_table(rows: list[dict[str, Any]], grid: list[str], metrics: Optional[list[str]] = None):
    """Mean and std (ddof=1) over seeds of each metric, grouped by the other grid parameters.

    Only points that ran successfully count; ``n`` is the number of them in each group.
    Returns a DataFrame with the group columns, ``n``, and ``<metric>_mean``, ``<metric>_std``.
    """
    import pandas as pd

    ok = [r for r in rows if r["status"] in ("ok", "done")]
    available = _numeric_metrics(ok, grid)
    if metrics is None:
        metrics = available
    for name in metrics:
        check_choice("metric", name, available)
    groups = [g for g in grid if g != SEED]
    frame = pd.DataFrame(ok, columns=[*grid, *metrics])
    for g in groups:  # lists (e.g. datasets=[...]) are not hashable: group by their text
        frame[g] = frame[g].map(lambda v: v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v))
    keyed = frame.assign(_all="all").groupby(groups or ["_all"], sort=False, dropna=False)
    table = keyed[metrics].agg(["mean", "std"])
    table.columns = [f"{m}_{stat}" for m, stat in table.columns]
    table.insert(0, "n", keyed.size())
    table = table.reset_index()
    return table.drop(columns="_all") if not groups else table


def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.4g}" if math.isnan(std) else f"{mean:.4g} ± {std:.2g}"


def to_markdown(table, metrics: list[str]) -> str:
    """The results table in markdown, each metric as ``mean ± std`` (``mean`` alone when n = 1)."""
    groups = [c for c in table.columns if c != "n" and not c.endswith(("_mean", "_std"))]
    lines = ["| " + " | ".join([*groups, "n", *metrics]) + " |", "|" + "---|" * len(groups) + "---:|" + "---:|" * len(metrics)]
    for _, row in table.iterrows():
        cells = [str(row[g]) for g in groups] + [str(int(row["n"]))]
        cells += [_pm(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_results(table, metrics: list[str], path: Path, max_panels: int = 6) -> Path:
    """One panel per metric (the first ``max_panels``): mean ± std over seeds for each group; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [c for c in table.columns if c != "n" and not c.endswith(("_mean", "_std"))]
    labels = [", ".join(f"{g}={row[g]}" for g in groups) or "all" for _, row in table.iterrows()]
    shown = metrics[:max_panels]
    cols = min(max(len(shown), 1), 3)
    rows = -(-max(len(shown), 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    for ax, metric in zip(axes.flat, shown):
        ax.errorbar(range(len(table)), table[f"{metric}_mean"], yerr=table[f"{metric}_std"].fillna(0),
                    fmt="o", capsize=3)
        ax.set_xticks(range(len(table)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(metric, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_results(sweep: Sweep, rows: list[dict[str, Any]], out: Union[str, Path]) -> str:
    """Write points.csv, results.csv, results.md and results.png into ``out``; returns the markdown."""
    import pandas as pd

    out = Path(out)
    pd.DataFrame(rows).to_csv(out / "points.csv", index=False)
    grid = list(sweep.grid)
    if not any(r["status"] != "FAILED" for r in rows):
        return "no point finished: no results table"
    available = _numeric_metrics([r for r in rows if r["status"] != "FAILED"], grid)
    metrics = [m for m in sweep.metrics if m in available] if sweep.metrics is not None else available
    missing = [m for m in sweep.metrics or [] if m not in available]
    if missing:  # e.g. a renamed metric: the runs are kept, fix the sweep file and re-run (instant)
        print(f"[sweep] metrics that no point recorded (left out): {missing}; recorded: {', '.join(available)}",
              file=sys.stderr)
    table = results_table(rows, grid, metrics)
    table.to_csv(out / "results.csv", index=False)
    markdown = to_markdown(table, metrics)
    header = f"# {sweep.name}: {sweep.notebook.stem} {json.dumps(sweep.parameters)}\n\nmean ± std over seeds\n\n"
    (out / "results.md").write_text(header + markdown + "\n")
    plot_results(table, metrics, out / "results.png")
    return markdown


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnflib.collection.sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="a sweep file (YAML), e.g. sweeps/smoke.yaml")
    parser.add_argument("--workers", type=int, help="points run at once (default: 1, or one per --gpus entry)")
    parser.add_argument("--gpus", nargs="+", metavar="IDS",
                        help="pin each worker to these devices (CUDA_VISIBLE_DEVICES values), e.g. 0 1 2 3")
    parser.add_argument("--out", type=Path, help="output folder (default: outputs/sweeps/<sweep name>)")
    parser.add_argument("--dry-run", action="store_true", help="validate and list the points; run nothing")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="override a fixed parameter (JSON value), e.g. -p preset tutorial")
    args = parser.parse_args(argv)
    try:
        spec = read_spec(args.sweep)
        if args.parameter and isinstance(spec, dict) and isinstance(spec.get("parameters") or {}, dict):
            spec["parameters"] = {**(spec.get("parameters") or {}),
                                  **{k: run_notebooks._parse_value(v) for k, v in args.parameter}}
        sweep = parse(spec, args.sweep.stem)
    except ValueError as exc:
        print(f"{args.sweep}: {exc}", file=sys.stderr)
        return 2
    out = args.out or run_notebooks.ROOT / "outputs" / "sweeps" / sweep.name
    points = expand(sweep)
    if args.dry_run:
        for p in points:
            state = "done" if (out / p.name / "metrics.json").exists() else "todo"
            print(f"{state}  {out / p.name}  {json.dumps(p.parameters)}")
        print(f"{len(points)} points of {sweep.notebook.stem}", file=sys.stderr)
        return 0
    try:
        rows = run(sweep, out, args.workers or len(args.gpus or [None]), gpus=args.gpus)
    except FolderLocked as exc:
        print(f"[sweep] {exc}", file=sys.stderr)
        return 2
    print(write_results(sweep, rows, out))
    print(f"\nresults: {out}/results.md, results.csv, results.png; per point: points.csv", file=sys.stderr)
    failed = [r["folder"] for r in rows if r["status"] == "FAILED"]
    if failed:
        print(f"{len(failed)} of {len(rows)} point(s) failed (see <folder>.failed/): {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
