"""Sphinx extension for the collection's site: the notebook index and the API page.

- ``<!-- notebook-index -->`` in a page becomes the index table of ``notebooks/README.md``
  (title linked to the notebook's page, what it shows, default runtime). A notebook file without
  a row there, or a row without a file, is a warning (an error under ``-W``, as ci/site.sh builds).
- ``<!-- api -->`` becomes one ``automodule`` section per public module of ``cnflib`` (every
  module whose dotted name has no part starting with ``_``), so the API page follows the package.
- ``stage_notebooks`` copies the notebooks into the source folder, with a blank line around each
  display-math block (``$$`` at the start of a line): Jupyter renders such a block inside a
  paragraph, MyST only between paragraphs.
- The library's docstrings are reStructuredText with a few plain-text habits (``[n, *event_shape]``,
  ``|w|``); ``plain_text_marks`` escapes those two marks outside ``literals`` before parsing.
"""
from __future__ import annotations

import importlib
import json
import os
import pathlib
import pkgutil
import re

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

ROOT = pathlib.Path(__file__).resolve().parents[2]
INDEX_MARKER = "<!-- notebook-index -->"
API_MARKER = "<!-- api -->"


def separate_display_math(markdown: str) -> str:
    """Put a blank line before and after every block that starts with ``$$`` at a line's start."""
    out: list[str] = []
    inside, fenced = False, False
    for line in markdown.split("\n"):
        if line.startswith(("```", "~~~")):
            fenced = not fenced
        opens = not fenced and not inside and line.startswith("$$")
        if opens and out and out[-1].strip():
            out.append("")
        out.append(line)
        if opens:
            inside = line.count("$$") < 2
            closes = not inside
        else:
            closes = inside and "$$" in line
            inside = inside and not closes
        if closes:
            out.append("")
    return "\n".join(out)


def stage_notebooks(source: pathlib.Path, target: pathlib.Path) -> None:
    """Copy ``source/NN_*.ipynb`` into ``target`` (emptied first) for the build, keeping file times."""
    if target.exists():
        for old in target.glob("*.ipynb"):
            old.unlink()
    target.mkdir(exist_ok=True)
    for notebook in sorted(source.glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(notebook.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                cell["source"] = separate_display_math("".join(cell["source"]))
        staged = target / notebook.name
        staged.write_text(json.dumps(nb, indent=1, ensure_ascii=False))
        stat = notebook.stat()
        os.utime(staged, (stat.st_atime, stat.st_mtime))


def index_rows() -> list[tuple[str, str, str, str]]:
    """The rows (notebook, title, what it shows, runtime) of the table in notebooks/README.md."""
    rows = []
    for line in (ROOT / "notebooks" / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"\d\d_\w+", cells[0]):
            rows.append((cells[0], cells[1], cells[2], cells[3]))
    return rows


def index_mismatch(rows: list[tuple[str, str, str, str]], notebooks: pathlib.Path) -> str | None:
    """What differs between the index rows and the notebook files, or ``None``."""
    files = sorted(p.stem for p in notebooks.glob("[0-9][0-9]_*.ipynb"))
    listed = sorted(row[0] for row in rows)
    if listed == files:
        return None
    return (f"notebooks/README.md's index and notebooks/ disagree: missing from the index "
            f"{sorted(set(files) - set(listed))}, listed without a file {sorted(set(listed) - set(files))}")


def checked_index_rows() -> list[tuple[str, str, str, str]]:
    """``index_rows()``; a warning if they do not name exactly the notebook files."""
    rows = index_rows()
    problem = index_mismatch(rows, ROOT / "notebooks")
    if problem:
        logger.warning(problem, type="cnflib", subtype="index")
    return rows


def index_table() -> str:
    """The index as a MyST table whose titles link to the notebooks' pages."""
    lines = ["| | notebook | what it shows | default runtime |", "|---|---|---|---|"]
    for stem, title, what, runtime in checked_index_rows():
        lines.append(f"| {stem[:2]} | [{title}](notebooks/{stem}.ipynb) | {what} | {runtime} |")
    return "\n".join(lines)


def public_modules(package: str = "cnflib") -> list[str]:
    """Dotted names of the package's public modules, sorted (``__main__`` and ``_x`` left out)."""
    root = importlib.import_module(package)
    names = [package] + [
        info.name for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    return sorted(names)


def api_sections() -> str:
    """One section per public module, each an ``automodule`` with the members it defines.

    ``:ignore-module-all:``: a package's ``__all__`` re-exports names of its modules, which are
    documented once, in the module that defines them.
    """
    blocks = []
    for name in public_modules():
        blocks.append(f"## `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}\n   :members:\n   :ignore-module-all:\n```\n")
    return "\n".join(blocks)


LITERAL = re.compile(r"(``.*?``)")
STAR_IN_SHAPE = re.compile(r"\*(?=\w*\])")


def plain_text_marks(app: Sphinx, what: str, name: str, obj: object, options: dict, lines: list[str]) -> None:
    """Escape ``*`` inside a shape (``[n, *event_shape]``, ``[n, *]``) and every ``|``."""
    for i, line in enumerate(lines):
        parts = LITERAL.split(line)
        lines[i] = "".join(
            part if part.startswith("``") else STAR_IN_SHAPE.sub(r"\\*", part).replace("|", r"\|")
            for part in parts
        )


def expand_markers(app: Sphinx, docname: str, source: list[str]) -> None:
    if INDEX_MARKER in source[0]:
        source[0] = source[0].replace(INDEX_MARKER, index_table())
    if API_MARKER in source[0]:
        source[0] = source[0].replace(API_MARKER, api_sections())


def setup(app: Sphinx) -> dict:
    app.connect("source-read", expand_markers)
    app.connect("autodoc-process-docstring", plain_text_marks, priority=400)  # before napoleon
    return {"parallel_read_safe": True, "parallel_write_safe": True}
