"""Sweeps: grid expansion, parameters reach the notebook, resume, failures, the mean ± std table,
and every sweep file in sweeps/ names a notebook and parameters that exist."""
import json
import math
from pathlib import Path

import nbformat
import pytest

from cnflib.collection import run_notebooks, sweep

ROOT = Path(__file__).resolve().parents[1]
SWEEP_FILES = sorted((ROOT / "sweeps").glob("*.yaml"))

# A tiny notebook: no torch, writes metrics.json itself (what cnflib.collection.report.record_metrics does).
BODY = """
import json, os, pathlib
if x == "bad" and seed == 1:
    raise RuntimeError("this point is broken")
folder = pathlib.Path(os.environ["CNFLIB_OUTPUT_DIR"])
runs = folder.parent / "runs.txt"
with open(runs, "a") as f:
    f.write(f"{x} {seed}\\n")
(folder / "metrics.json").write_text(json.dumps({"score": scale * (seed + 1), f"{x}_rank": seed, "label": f"{x}-{seed}", "preset": preset,
                                               "gpus": os.environ.get("CUDA_VISIBLE_DEVICES", "")}))
"""


def _notebook(folder: Path, name: str = "01_tiny") -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('preset = "tutorial"\nseed = 0\nx = "a"  # a grid parameter\nscale = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# tiny"), params, nbformat.v4.new_code_cell("scale = scale or 1.0\n" + BODY)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    _notebook(folder)
    return folder


def test_parameters_cell_is_read(notebooks):
    assert sweep.notebook_parameters(notebooks / "01_tiny.ipynb") == {"preset": "tutorial", "seed": 0, "x": "a", "scale": None}


def test_grid_expansion_is_the_cartesian_product(notebooks):
    s = sweep.parse({"notebook": "01", "parameters": {"preset": "full"}, "grid": {"x": ["a", "b", "c"], "seed": [0, 1]}},
                    notebooks=notebooks)
    points = sweep.expand(s)
    assert [(p.grid["x"], p.grid["seed"]) for p in points] == [(x, s) for x in "abc" for s in (0, 1)]
    assert all(p.parameters["preset"] == "full" for p in points)
    assert len({p.name for p in points}) == 6 and points[0].name.startswith("x=a_seed=0-")
    other = sweep.expand(sweep.parse({"notebook": "01", "parameters": {"preset": "tutorial"}, "grid": {"x": ["a"], "seed": [0]}},
                                     notebooks=notebooks))
    assert other[0].name != points[0].name  # a changed fixed parameter is a new point


def test_unknown_names_are_rejected_with_the_valid_ones(notebooks):
    with pytest.raises(ValueError, match=r"unknown parameters \['lr'\] for 01_tiny; valid: preset, seed, x, scale"):
        sweep.parse({"notebook": "01_tiny", "grid": {"lr": [1, 2]}}, notebooks=notebooks)
    with pytest.raises(ValueError, match="unknown notebook '09_nope'; valid: 01_tiny"):
        sweep.parse({"notebook": "09_nope"}, notebooks=notebooks)
    with pytest.raises(ValueError, match="unknown sweep key 'grids'; valid: notebook, parameters, grid, metrics"):
        sweep.parse({"notebook": "01", "grids": {}}, notebooks=notebooks)
    with pytest.raises(ValueError, match="unknown preset 'big'"):
        sweep.parse({"notebook": "01", "parameters": {"preset": "big"}}, notebooks=notebooks)
    with pytest.raises(ValueError, match=r"metric '\{lr\}_nll' names \['lr'\], which the sweep does not set"):
        sweep.parse({"notebook": "01", "grid": {"seed": [1]}, "metrics": ["{lr}_nll"]}, notebooks=notebooks)
    with pytest.raises(ValueError, match="both fixed and in the grid"):
        sweep.parse({"notebook": "01", "parameters": {"seed": 0}, "grid": {"seed": [1]}}, notebooks=notebooks)


def test_sweep_runs_resumes_reports_failures_and_tabulates(notebooks, tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(f"notebook: {notebooks / '01_tiny.ipynb'}\nparameters: {{preset: full, scale: 2.0}}\n"
                    "grid:\n  x: [a, bad]\n  seed: [0, 1, 2]\nmetrics: [score, '{x}_rank']\n")
    out = tmp_path / "out"
    assert sweep.main([str(spec), "--out", str(out), "--gpus", "0", "1"]) == 1  # 2 workers; point (bad, 1) fails

    rows = {(r["x"], r["seed"]): r for r in json.loads(pd_json(out / "points.csv"))}
    assert [rows[("bad", s)]["status"] for s in range(3)] == ["ok", "FAILED", "ok"]
    assert "this point is broken" in rows[("bad", 1)]["error"]
    assert all(rows[("a", s)]["status"] == "ok" for s in range(3))
    # the parameters reached the notebook: its metrics echo them
    assert rows[("a", 1)]["label"] == "a-1" and rows[("a", 1)]["preset"] == "full" and rows[("a", 1)]["score"] == 4.0
    assert {int(rows[(x, s)]["gpus"]) for x, s in rows if (x, s) != ("bad", 1)} <= {0, 1}  # each worker its own GPU
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert sum(f.endswith(".failed") for f in folders) == 1 and not any(f.endswith(".running") for f in folders)
    ok_folder = out / rows[("a", 0)]["folder"]
    assert (ok_folder / "01_tiny.ipynb").exists() and (ok_folder / "metrics.json").exists()

    # the table: mean ± std (ddof=1) over the seeds that ran of score = 2 (seed + 1)
    table = (out / "results.csv").read_text().splitlines()
    assert table[0] == "x,n,score_mean,score_std,{x}_rank_mean,{x}_rank_std"  # a_rank and bad_rank in one column
    assert table[1] == "a,3,4.0,2.0,1.0,1.0" and table[2].startswith("bad,2,4.0,2.828")  # seeds 0, 2: 2 and 6
    markdown = (out / "results.md").read_text()
    assert "| a | 3 | 4 ± 2 | 1 ± 1 |" in markdown and "| bad | 2 | 4 ± 2.8 | 1 ± 1.4 |" in markdown
    assert (out / "results.png").stat().st_size > 1000

    # re-run: finished points are skipped, failed ones are tried again
    (out / "runs.txt").unlink(missing_ok=True)
    assert sweep.main([str(spec), "--out", str(out)]) == 1
    assert not (out / "runs.txt").exists()  # only the failed point ran again, and it fails before writing
    assert "1 of 6 point(s) failed" in capsys.readouterr().err


def pd_json(path):
    import pandas as pd

    return pd.read_csv(path).to_json(orient="records")


def test_results_table_groups_by_non_seed_parameters():
    rows = [{"lam": lam, "seed": s, "status": "ok", "nll": lam + s, "flag": True} for lam in (0.1, 1.0) for s in (0, 1, 2, 3)]
    rows.append({"lam": 1.0, "seed": 4, "status": "FAILED", "nll": 100.0})
    table = sweep.results_table(rows, ["lam", "seed"])
    assert list(table.columns) == ["lam", "n", "nll_mean", "nll_std"]  # booleans are not averaged
    assert table["n"].tolist() == [4, 4]
    assert table["nll_mean"].tolist() == pytest.approx([1.6, 2.5])
    assert table["nll_std"].tolist() == pytest.approx([math.sqrt(5 / 3)] * 2)
    with pytest.raises(ValueError, match="unknown metric 'bpd'; valid: nll"):
        sweep.results_table(rows, ["lam", "seed"], ["bpd"])
    single = sweep.results_table(rows[:1], ["lam", "seed"])
    assert "| 0.1 | 1 | 0.1 |" in sweep.to_markdown(single, ["nll"])  # one seed: no ± shown


def test_dry_run_lists_points_and_runs_nothing(notebooks, tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(f"notebook: {notebooks / '01_tiny.ipynb'}\ngrid: {{seed: [0, 1]}}\n")
    assert sweep.main([str(spec), "--out", str(tmp_path / "out"), "--dry-run", "-p", "scale", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("todo") and '"scale": 3' in line for line in lines)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", SWEEP_FILES, ids=[p.stem for p in SWEEP_FILES])
def test_sweep_files_name_real_notebooks_and_parameters(path):
    s = sweep.load(path)
    assert sweep.expand(s)
    text = path.read_text().lower()
    assert "estimate" in text  # the expected runtime is marked as an estimate
    if path.stem != "smoke":  # a paper's run (full) or the multi-seed figures of a notebook (tutorial)
        assert s.parameters.get("preset") in ("tutorial", "full") and sweep.SEED in s.grid


def test_sweep_folder_has_the_papers_and_smoke_files():
    assert {"smoke", "rnode", "sparse_flows", "latent_ode", "infocnf", "flows_by_parts"} <= {p.stem for p in SWEEP_FILES}
