"""Sphinx configuration: the API reference comes from the numpydoc docstrings."""

project = "sklearn-mmlgnet"
author = "sklearn-mmlgnet developers"
release = "0.1.0"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.autosummary"]
napoleon_numpy_docstring = True
autodoc_default_options = {"members": True, "undoc-members": False}
autosummary_generate = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
