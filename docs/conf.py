"""Sphinx configuration of the collection's site: `bash ci/site.sh` builds it into `site/`.

The notebooks are rendered from their stored outputs (MyST-NB, no execution); the theme
(sphinx-book-theme) and MathJax (sphinx-mathjax-offline) come from installed packages, so the
build and the pages fetch nothing from the network.
"""
import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]

import cnflib  # noqa: E402  (after the path change: the checkout's cnflib)
import cnflib_site  # noqa: E402  (docs/_ext/cnflib_site.py)

# Sphinx reads sources inside docs/ only (and MyST resolves links through a symlink to its
# target), so every build copies the notebooks and their solutions into docs/notebooks/ and
# docs/solutions/ (git-ignored).
cnflib_site.stage_notebooks(ROOT / "notebooks", DOCS / "notebooks")
cnflib_site.stage_notebooks(ROOT / "solutions", DOCS / "solutions")

project = "cnflib"
author = "the cnflib contributors"
copyright = "the cnflib contributors; code MIT, text and figures CC BY 4.0"
release = version = cnflib.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static: math renders offline
    "cnflib_site",             # the notebook index and the API page (docs/_ext/cnflib_site.py)
]

exclude_patterns = ["_build", "img", "check_site.py"]

# Notebooks: stored outputs only; a notebook is never executed by the build.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_dmath_double_inline = True  # $$...$$ inside a paragraph (as Jupyter renders it) is display math
myst_heading_anchors = 3

# API page: signatures with type hints, members in source order.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_inherit_docstrings = False  # not torch's and Lightning's docstrings
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "sphinx_book_theme"
html_title = "cnflib · continuous-depth generative models"
html_static_path = []
html_show_sourcelink = False  # the download button offers the .ipynb
html_context = {"default_mode": "light"}  # an unset mode makes the theme log a console error
html_theme_options = {
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "use_download_button": True,
    "footer_content_items": ["copyright"],
}
