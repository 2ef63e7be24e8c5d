"""The measured tables in data/: read by name, and a missing one names the command that makes it."""
import re
from pathlib import Path

import pandas as pd
import pytest

from cnflib.collection.measured import read_measured

ROOT = Path(__file__).resolve().parents[1]


def test_reads_the_csv(tmp_path):
    (tmp_path / "data").mkdir()
    pd.DataFrame({"seed": [0, 1], "gap": [0.1, 0.2]}).to_csv(tmp_path / "data" / "seeds.csv", index=False)
    table = read_measured("seeds.csv", "python make.py", root=tmp_path)
    assert table.to_dict("list") == {"seed": [0, 1], "gap": [0.1, 0.2]}


def test_missing_file_names_its_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data/seeds\.csv is missing.*python -m cnflib\.collection\.sweep x\.yaml"):
        read_measured("seeds.csv", "python -m cnflib.collection.sweep x.yaml", root=tmp_path)


def test_only_csv(tmp_path):
    with pytest.raises(ValueError, match="ending in .csv"):
        read_measured("seeds.json", "python make.py", root=tmp_path)


def test_every_table_a_notebook_reads_ships_and_is_documented():
    readme = (ROOT / "data" / "README.md").read_text()
    names = set()
    for notebook in [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("solutions/*.ipynb")]:
        names |= set(re.findall(r'read_measured\(\\?"([\w.]+\.csv)', notebook.read_text()))
    assert names, "no notebook reads a measured table"
    for name in sorted(names):
        assert (ROOT / "data" / name).is_file(), name
        assert f"`{name}`" in readme, f"{name} is not described in data/README.md"
