"""The notebook collection: its index matches the files, and each notebook has the agreed shape."""
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def index_rows() -> dict[str, str]:
    rows = {}
    for line in (ROOT / "notebooks" / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"\d\d_\w+", cells[0]):
            rows[cells[0]] = cells[1]
    return rows


def test_index_lists_exactly_the_notebooks():
    assert sorted(index_rows()) == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_shape(path):
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    title = "".join(cells[0]["source"]).splitlines()[0]
    assert title.startswith("# ") and index_rows()[path.stem] in title, "first cell: '# NN · <index title>'"
    code = [c for c in cells if c["cell_type"] == "code"]
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert not [c for c in code if "injected-parameters" in c.get("metadata", {}).get("tags", [])], \
        "no papermill-injected parameters are stored (run without -p before committing)"
    assert len(tagged) == 1 and 'preset = "tutorial"' in "".join(tagged[0]["source"])
    assert all(c.get("outputs") is not None for c in code)
    assert any(c["outputs"] for c in code), "outputs are stored"
    assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"])
    assert any(re.search(r"^\s*assert ", "".join(c["source"]), re.M) for c in code), "asserts on measured effects"
    assert path.stat().st_size < 2_000_000
    counts = [c["execution_count"] for c in code if c["execution_count"] is not None]
    assert counts == sorted(counts), "executed top to bottom"


def _header(path: pathlib.Path) -> str:
    return "".join(json.loads(path.read_text())["cells"][0]["source"])


def index_runtimes() -> dict[str, str]:
    rows = {}
    for line in (ROOT / "notebooks" / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"\d\d_\w+", cells[0]):
            rows[cells[0]] = cells[3]
    return rows


@pytest.mark.parametrize("i", range(len(NOTEBOOKS)), ids=[p.stem for p in NOTEBOOKS])
def test_previous_and_next_links_follow_the_index(i):
    header = _header(NOTEBOOKS[i])
    previous = re.search(r"\*Previous:\*(.*?)\*Next:\*", header, re.S)
    following = re.search(r"\*Next:\*(.*)", header)
    assert previous and following, "the title block names the previous and the next notebook"
    links = lambda text: re.findall(r"\]\((\d\d_\w+)\.ipynb\)", text)  # noqa: E731
    assert links(previous.group(1)) == ([NOTEBOOKS[i - 1].stem] if i > 0 else [])
    assert links(following.group(1))[:1] == ([NOTEBOOKS[i + 1].stem] if i + 1 < len(NOTEBOOKS) else [])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stated_runtime_agrees_with_the_index(path):
    stated = re.search(r"\*Default runtime:\* about (\d+(?:\.\d+)?) minutes?", _header(path))
    indexed = re.fullmatch(r"~(\d+(?:\.\d+)?) min", index_runtimes()[path.stem])
    assert stated and indexed, "the title block says '*Default runtime:* about N minutes'; the index '~N min'"
    assert float(stated.group(1)) == float(indexed.group(1))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_notebook_is_clean(path):
    """No papermill run metadata, no per-cell timestamps, no progress-bar chunks (run_notebooks.clean)."""
    import copy

    from cnflib.collection.run_notebooks import PROGRESS_FRAME, clean

    nb = json.loads(path.read_text())
    assert "papermill" not in nb["metadata"]
    for cell in nb["cells"]:
        assert not {"papermill", "execution"} & set(cell["metadata"]), cell["metadata"]
        for output in cell.get("outputs", []):
            if output.get("name") == "stderr":
                assert not PROGRESS_FRAME.search("".join(output["text"])), output["text"]
    assert clean(copy.deepcopy(nb)) == nb, "python -m cnflib.collection.run_notebooks --clean notebooks/*.ipynb"


def test_clean_keeps_outputs_and_drops_run_noise():
    from cnflib.collection.run_notebooks import clean

    warning = "cnflib/x.py:3: UserWarning: something real\n"
    frames = "\rfit:   0%|          | 0/300 [00:00<?, ?it/s]\rfit:  50%|█████     | 150/300 [00:10<00:10, 14.9it/s, loss=3.2]"
    cell = {"cell_type": "code", "execution_count": 3, "source": "fit()",
            "metadata": {"tags": [], "execution": {"iopub.status.idle": "2026"}, "papermill": {"duration": 1.0}},
            "outputs": [{"output_type": "stream", "name": "stderr", "text": frames},
                        {"output_type": "stream", "name": "stderr", "text": "\n"},
                        {"output_type": "stream", "name": "stderr", "text": [frames, "\n", warning]},
                        {"output_type": "stream", "name": "stdout", "text": "nll 1.23\n"},
                        {"output_type": "display_data", "data": {"image/png": "AAAA"}, "metadata": {}}]}
    tagged = {"cell_type": "code", "execution_count": 1, "source": "preset = 1", "outputs": [],
              "metadata": {"tags": ["parameters"]}}
    nb = clean({"metadata": {"papermill": {"output_path": "outputs/a.ipynb"}, "kernelspec": {"name": "python3"}},
                "cells": [tagged, cell], "nbformat": 4, "nbformat_minor": 5})
    assert nb["metadata"] == {"kernelspec": {"name": "python3"}}
    assert nb["cells"][0]["metadata"] == {"tags": ["parameters"]} and nb["cells"][1]["metadata"] == {}
    assert [o.get("text") for o in nb["cells"][1]["outputs"]] == ["\n" + warning, "nll 1.23\n", None]
    assert nb["cells"][1]["execution_count"] == 3
