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
