"""What instructors look for is there and agrees with the project: licences, citation, and a
solutions notebook whose sections match its notebook's exercises."""
import json
import pathlib
import re
import tomllib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_code_licence_is_mit_as_pyproject_says():
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_content_licence_and_citation():
    content = (ROOT / "LICENSE-CONTENT").read_text()
    assert "CC BY 4.0" in content
    # the legal code itself, not only a pointer to it: its eight sections, start to end
    assert all(f"Section {k} -- " in content for k in range(1, 9)), "LICENSE-CONTENT lacks CC BY 4.0's legal code"
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert citation["cff-version"] == "1.2.0" and str(citation["version"]) == version
    assert citation["license"] == ["MIT", "CC-BY-4.0"]
    readme = (ROOT / "README.md").read_text()
    assert "LICENSE-CONTENT" in readme and "CITATION.cff" in readme and "bash ci/site.sh" in readme


def exercise_count(notebook: pathlib.Path) -> int:
    """Numbered items of the notebook's '## Exercises' cell."""
    for cell in json.loads(notebook.read_text())["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and text.startswith("## Exercises"):
            section = text.split("\n## ")[0]
            return len(re.findall(r"^\d+\. ", section, re.M))
    return 0


SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solutions_cover_every_exercise(path):
    notebook = ROOT / "notebooks" / path.name
    assert notebook.exists(), f"{path.name}: no notebook of that name"
    cells = json.loads(path.read_text())["cells"]
    headings = [m for c in cells if c["cell_type"] == "markdown"
                for m in re.findall(r"^## Exercise (\d+)", "".join(c["source"]), re.M)]
    assert headings == [str(k) for k in range(1, exercise_count(notebook) + 1)], headings
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert text.count("**Expected outcome.**") == len(headings)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(c["outputs"] is not None for c in code) and any(c["outputs"] for c in code), "executed"
    assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"])
    solutions = [c for c in code if "hide-input" in c.get("metadata", {}).get("tags", [])]
    assert solutions and all(c["metadata"].get("jupyter", {}).get("source_hidden") for c in solutions), \
        "solution code is collapsed on the site (tag hide-input) and in JupyterLab (source_hidden)"
