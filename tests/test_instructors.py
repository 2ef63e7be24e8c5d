"""What instructors look for is there and agrees with the project: licences and citation."""
import pathlib
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_code_licence_is_mit_as_pyproject_says():
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == {"text": "MIT"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_content_licence_and_citation():
    assert "CC BY 4.0" in (ROOT / "LICENSE-CONTENT").read_text()
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert citation["cff-version"] == "1.2.0" and str(citation["version"]) == version
    assert citation["license"] == ["MIT", "CC-BY-4.0"]
    readme = (ROOT / "README.md").read_text()
    assert "LICENSE-CONTENT" in readme and "CITATION.cff" in readme and "bash ci/site.sh" in readme
