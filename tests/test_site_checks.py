"""The site build's own checks, on small hand-made inputs: the HTML checker (docs/check_site.py)
finds broken links, missing figures and network loads; the index check finds a notebook missing
from notebooks/README.md; display math is separated from paragraphs for MyST."""
import json
import pathlib
import sys

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
sys.path[:0] = [str(DOCS), str(DOCS / "_ext")]
import check_site  # noqa: E402

pytest.importorskip("sphinx")
import cnflib_site  # noqa: E402


def page(body: str) -> str:
    return f"<html><head></head><body><main>{body}</main></body></html>"


@pytest.fixture
def site(tmp_path, monkeypatch):
    notebooks = tmp_path / "repo" / "notebooks"
    notebooks.mkdir(parents=True)
    nb = {"cells": [{"cell_type": "code", "outputs": [{"data": {"image/png": "iVBOR"}}]}]}
    (notebooks / "01_a.ipynb").write_text(json.dumps(nb))
    monkeypatch.setattr(check_site, "ROOT", tmp_path / "repo")
    out = tmp_path / "site"
    (out / "notebooks").mkdir(parents=True)
    (out / "_images").mkdir()
    (out / "_images" / "f.png").write_bytes(b"\x89PNG")
    (out / "index.html").write_text(page('<a href="notebooks/01_a.html#top">01</a>'))
    (out / "notebooks" / "01_a.html").write_text(page('<h1 id="top">01</h1><img src="../_images/f.png">'))
    return out


def test_a_good_site_passes(site):
    assert check_site.check(site) == []


def test_broken_link_missing_anchor_and_figure_are_found(site):
    (site / "index.html").write_text(page('<a href="notebooks/02_b.html">x</a><a href="notebooks/01_a.html#nope">y</a>'))
    (site / "_images" / "f.png").unlink()
    problems = "\n".join(check_site.check(site))
    assert "broken link notebooks/02_b.html" in problems
    assert "no element with id 'nope'" in problems
    assert "broken link ../_images/f.png" in problems


def test_page_without_its_figures_or_missing_page_is_found(site):
    (site / "notebooks" / "01_a.html").write_text(page('<h1 id="top">01</h1>'))
    assert "0 images on the page, 1 figures stored" in "\n".join(check_site.check(site))
    (site / "notebooks" / "01_a.html").unlink()
    assert any("01_a.ipynb: no page" in p for p in check_site.check(site))


def test_network_loads_are_found(site):
    (site / "index.html").write_text(page('<script src="https://cdn.example/mathjax.js"></script>'
                                          '<a href="notebooks/01_a.html">01</a>'))
    assert any("loads https://cdn.example/mathjax.js from the network" in p for p in check_site.check(site))


def test_index_mismatch_names_the_missing_notebook(tmp_path):
    (tmp_path / "01_a.ipynb").write_text("{}")
    (tmp_path / "02_b.ipynb").write_text("{}")
    rows = [("01_a", "A", "what", "~1 min"), ("03_c", "C", "what", "~1 min")]
    problem = cnflib_site.index_mismatch(rows, tmp_path)
    assert "missing from the index ['02_b']" in problem and "listed without a file ['03_c']" in problem
    assert cnflib_site.index_mismatch(rows[:1], tmp_path / "none") is not None
    assert cnflib_site.index_mismatch([("01_a", "A", "", ""), ("02_b", "B", "", "")], tmp_path) is None


def test_display_math_gets_blank_lines_outside_code():
    text = "text\n$$a\n b$$\nmore $x$\n```\n$$c\n```"
    assert cnflib_site.separate_display_math(text) == "text\n\n$$a\n b$$\n\nmore $x$\n```\n$$c\n```"
    assert cnflib_site.separate_display_math("a\n$$x$$\nb") == "a\n\n$$x$$\n\nb"
