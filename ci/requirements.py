"""Print pyproject.toml's dependencies, one per line (the input of `pip install -r`)."""
import pathlib
import tomllib

root = pathlib.Path(__file__).resolve().parents[1]
for requirement in tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]:
    print(requirement)
