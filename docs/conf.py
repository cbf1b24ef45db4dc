"""Sphinx configuration: the API reference comes from the numpydoc docstrings."""

project = "sklearn-mmlgnet"
author = "sklearn-mmlgnet developers"
import sklearn_mmlgnet  # noqa: E402  (one source for the version)

release = sklearn_mmlgnet.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.autosummary"]
napoleon_numpy_docstring = True
napoleon_use_ivar = True  # Attributes as fields: no second description of a property
# scikit-learn generates the metadata-routing setters; their docstrings point into
# scikit-learn's own docs, so they are left to scikit-learn's reference.
autodoc_default_options = {
    "members": True,
    "undoc-members": False,
    "exclude-members": ",".join(
        f"set_{m}_request" for m in ("fit", "score", "transform", "inverse_transform", "predict",
                                     "predict_proba", "split")),
}
autosummary_generate = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
