"""The papermill runner reports every notebook, keeps going after a failure and exits non-zero."""
import json

import nbformat

from cnflib.collection import run_notebooks


def _notebook(path, code):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("preset = 'tutorial'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_runner_reports_failures_and_metrics(tmp_path, monkeypatch, capsys):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "01_ok.ipynb", "from cnflib.collection.report import record_metrics\nrecord_metrics(nll=1.25, preset=preset)")
    _notebook(notebooks / "02_broken.ipynb", "assert False, 'the effect did not show'")
    monkeypatch.setattr(run_notebooks, "NOTEBOOKS", notebooks)
    out = tmp_path / "out"
    status = run_notebooks.main(["--output", str(out), "-p", "preset", "full"])
    assert status == 1
    rows = json.loads((out / "summary.json").read_text())
    assert [(r["notebook"], r["status"]) for r in rows] == [("01_ok", "ok"), ("02_broken", "FAILED")]
    assert rows[0]["metrics"] == {"nll": 1.25, "preset": "full"}
    assert (out / "01_ok" / "01_ok.ipynb").exists()
    table = capsys.readouterr().out
    assert "| 01_ok | ok |" in table and "| 02_broken | FAILED |" in table


def test_unknown_notebook_prefix_lists_the_notebooks(tmp_path, monkeypatch):
    monkeypatch.setattr(run_notebooks, "NOTEBOOKS", tmp_path)
    _notebook(tmp_path / "01_ok.ipynb", "1")
    try:
        run_notebooks.discover(["99"])
    except SystemExit as exc:
        assert "01_ok" in str(exc)
    else:
        raise AssertionError("expected SystemExit")


def test_parameter_values_read_as_json_or_python_literals():
    """``-p smoke True`` (as papermill's own command line) and ``-p smoke true`` are both the boolean."""
    parse = run_notebooks._parse_value
    assert parse("True") is True and parse("true") is True and parse("False") is False and parse("None") is None
    assert parse("[0.5, 0.9]") == [0.5, 0.9] and parse("3") == 3 and parse("full") == "full"
