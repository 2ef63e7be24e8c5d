"""The full presets, proven to run: every notebook's smoke mode (``-p preset full -p smoke True``) on
generated files in each data set's release format, and every sweep file's ``--dry-run``.

The smoke mode keeps the full preset's models, loaders, losses, evaluations and metric names and
caps its sizes (``cnflib.collection.presets.resolve``'s ``smoke_caps``), so this proves that a
paper-scale run reaches its last cell, not what it measures. Slow (minutes):
deselect with ``-m "not smoke"``. Run with ``-s`` to see each notebook's seconds and the kernel's
peak resident memory.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from fakedata import trust_cifar_source, write_cifar, write_maf, write_mnist

from cnflib.collection import run_notebooks, sweep

pytestmark = pytest.mark.smoke

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = run_notebooks.discover()
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))
KERNEL_USAGE = "kernel_usage.json"

# The kernel's own CPU time and peak resident memory, written when it exits into the notebook's output folder.
USAGE_HOOK = f"""
import atexit, json, os, resource
def _cnflib_smoke_usage():
    folder, usage = os.environ.get("CNFLIB_OUTPUT_DIR"), resource.getrusage(resource.RUSAGE_SELF)
    if folder:
        with open(os.path.join(folder, {KERNEL_USAGE!r}), "w") as handle:
            json.dump({{"cpu_s": usage.ru_utime + usage.ru_stime, "max_rss_mib": usage.ru_maxrss / 1024}}, handle)
atexit.register(_cnflib_smoke_usage)
"""
RUNS: dict[str, dict] = {}  # notebook stem: its summary row, once executed


@pytest.fixture(scope="module")
def smoke_env(tmp_path_factory):
    """A ``$CNFLIB_DATA`` with MAF's tabular sets, MNIST and CIFAR-10 in their release formats, an IPython
    profile whose startup tells torchvision the fake CIFAR-10 batches' md5s, and an output folder.
    At the end, prints the table of the notebooks run: seconds, kernel CPU seconds, kernel peak RSS."""
    data = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    write_maf(data, rng)  # MINIBOONE: 810 train, 90 validation, 100 test rows
    write_mnist(data, rng, train=10_000 + 40, test=10)  # the loader's 10,000 validation images, 40 train
    _, md5 = write_cifar(data, rng, per_batch=1_000 + 8, test=10)  # 5,000 validation images, 40 train
    ipython = tmp_path_factory.mktemp("ipython")
    startup = ipython / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-cnflib-smoke.py").write_text(trust_cifar_source(md5) + USAGE_HOOK)
    with pytest.MonkeyPatch.context() as patch:  # papermill's kernel inherits this process's environment
        patch.setenv("CNFLIB_DATA", str(data))
        patch.setenv("IPYTHONDIR", str(ipython))
        patch.setenv("MPLBACKEND", "Agg")
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        yield tmp_path_factory.mktemp("smoke")
    lines = ["", "| notebook | status | seconds | kernel CPU seconds | kernel peak RSS (MiB) |", "|---|---|---:|---:|---:|"]
    lines += [f"| {stem} | {r['status']} | {r['seconds']:.0f} | {r['cpu_s']:.0f} | {r['max_rss_mib']:.0f} |"
              for stem, r in RUNS.items()]
    lines.append(f"| total | | {sum(r['seconds'] for r in RUNS.values()):.0f} | "
                 f"{sum(r['cpu_s'] for r in RUNS.values()):.0f} | |")
    print("\n".join(lines))


def smoke_run(stem: str, out: Path) -> dict:
    """Notebook ``stem`` executed in smoke mode (once per session): its summary row plus kernel usage."""
    if stem not in RUNS:
        notebook = next(p for p in NOTEBOOKS if p.stem == stem)
        row = run_notebooks.execute(notebook, out / stem, {"preset": "full", "smoke": True})
        usage = out / stem / KERNEL_USAGE
        row.update(json.loads(usage.read_text()) if usage.exists() else {"cpu_s": float("nan"),
                                                                          "max_rss_mib": float("nan")})
        RUNS[stem] = row
    return RUNS[stem]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_smoke_mode_reaches_the_last_cell(smoke_env, notebook):
    row = smoke_run(notebook.stem, smoke_env)
    assert row["status"] == "ok", row["error"]
    assert row["metrics"], "the notebook recorded its metrics"


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_dry_run_lists_its_points(path, capsys):
    assert sweep.main([str(path), "--dry-run"]) == 0  # python -m cnflib.collection.sweep FILE --dry-run
    listed, summary = capsys.readouterr()
    spec = sweep.load(path)
    points = sweep.expand(spec)
    assert len(listed.splitlines()) == len(points) and f"{len(points)} points of {spec.notebook.stem}" in summary
    for line, point in zip(listed.splitlines(), points):
        assert point.name in line and json.dumps(point.parameters) in line


@pytest.mark.parametrize("path", [p for p in SWEEPS if sweep.load(p).parameters.get("preset") == "full"],
                         ids=lambda p: p.stem)
def test_smoke_run_records_every_metric_its_sweep_tabulates(smoke_env, path):
    spec = sweep.load(path)
    recorded = smoke_run(spec.notebook.stem, smoke_env)["metrics"]
    wanted = {template.format(**point.parameters) for point in sweep.expand(spec) for template in spec.metrics or []}
    assert not sorted(wanted - set(recorded)), f"{path.name}: metrics the smoke run did not record"
