"""Print pyproject.toml's dependencies and its `docs` extra, one per line (the input of `pip install -r`)."""
import pathlib
import tomllib

root = pathlib.Path(__file__).resolve().parents[1]
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
for requirement in project["dependencies"] + project["optional-dependencies"]["docs"]:
    print(requirement)
