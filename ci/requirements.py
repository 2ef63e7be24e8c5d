"""Print pyproject.toml's dependencies and the named extras, one per line (the input of ``pip install -r``).

    python ci/requirements.py notebooks test
"""
import pathlib
import sys
import tomllib

root = pathlib.Path(__file__).resolve().parents[1]
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
for requirement in project["dependencies"]:
    print(requirement)
for extra in sys.argv[1:]:
    for requirement in project["optional-dependencies"][extra]:
        print(requirement)
