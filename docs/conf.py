"""Sphinx configuration.

Build (from the repository root, with ``pip install -e ".[docs]"``)::

    sphinx-build -W -b html docs docs/_build/html

The API reference is generated from the numpydoc docstrings (autosummary + numpydoc), the
example gallery runs ``examples/*.py`` (sphinx-gallery), and the results tables are built
from ``docs/results/results_*.json`` by ``docs/make_tables.py``, the same code that writes
the README's table.
"""

import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))

import make_tables  # noqa: E402
import sklearn_mmlgnet  # noqa: E402

project = "sklearn-mmlgnet"
author = "sklearn-mmlgnet developers"
copyright = "sklearn-mmlgnet developers"
release = version = sklearn_mmlgnet.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "_generated"]
root_doc = "index"
default_role = "py:obj"

# -- API reference --------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"
autodoc_default_options = {
    # scikit-learn generates the metadata-routing setters; their docstrings point into
    # scikit-learn's own docs.
    "exclude-members": ",".join(
        f"set_{m}_request" for m in ("fit", "score", "transform", "inverse_transform", "predict",
                                     "predict_proba", "split", "partial_fit")),
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- Example gallery ------------------------------------------------------------------------
# The examples run in examples/ and write their files into examples/mmlgnet_out/, which
# git ignores.
os.environ.setdefault("MMLGNET_EXAMPLE_OUT", "mmlgnet_out")


# MMLGNET_DOCS_SKIP_EXAMPLES="a.py b.py" leaves those examples out of a (local) build.
_skip = os.environ.get("MMLGNET_DOCS_SKIP_EXAMPLES", "").split()

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r".*\.py$",  # run every example
    "ignore_pattern": "|".join([r"__init__\.py"] + [re.escape(name) + "$" for name in _skip]),
    "image_scrapers": ("matplotlib", "gallery_scraper.package_figures"),
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 1,
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("sklearn_mmlgnet",),
    "backreferences_dir": "generated/backreferences",
}

# -- HTML -----------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-mmlgnet {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "header_links_before_dropdown": 5,
    "show_toc_level": 2,
    # No "on this page" column on the landing page and the gallery's pages: their code needs
    # the width.
    "secondary_sidebar_items": {
        "**": ["page-toc"], "index": [], "auto_examples/index": [],
        **{f"auto_examples/{p.stem}": [] for p in (DOCS.parent / "examples").glob("*.py")}},
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"**": ["sidebar-nav-bs"], "index": []}
html_show_sourcelink = False


# -- Generated pages ------------------------------------------------------------------------
def _write_generated(app):
    """Results tables (from docs/results) and the command line's help (from the parser)."""
    make_tables.write_generated()
    from sklearn_mmlgnet.cli import build_parser

    parser = build_parser()
    blocks = [("mmlgnet", parser.format_help())]
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in subparsers.choices.items():
        blocks.append((f"mmlgnet {name}", sub.format_help()))
    lines = []
    for title, text in blocks:
        lines += [f"``{title}``", "^" * (len(title) + 4), "", ".. code-block:: text", ""]
        lines += ["   " + line if line else "" for line in text.splitlines()]
        lines.append("")
    (DOCS / "_generated" / "cli_help.rst").write_text("\n".join(lines))


def setup(app):
    app.connect("builder-inited", _write_generated)
