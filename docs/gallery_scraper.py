"""An image scraper for sphinx-gallery: the Figures an example keeps in its variables.

The package's plotting functions return :class:`matplotlib.figure.Figure` objects that
pyplot does not know about (they never touch pyplot's state), so sphinx-gallery's own
matplotlib scraper would not see them; this one shows every new Figure a code block leaves
in the example's variables. ``docs/conf.py`` names it in ``image_scrapers``.
"""


def package_figures(block, block_vars, gallery_conf):
    """Save the block's new Figures and return their reST (sphinx-gallery's scraper API)."""
    from matplotlib.figure import Figure
    from sphinx_gallery.scrapers import figure_rst

    seen = block_vars.setdefault("mmlgnet_seen_figures", set())
    paths = []
    for value in list(block_vars["example_globals"].values()):
        if isinstance(value, Figure) and id(value) not in seen:
            seen.add(id(value))
            path = next(block_vars["image_path_iterator"])
            value.savefig(path, dpi=90, bbox_inches="tight")
            paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])
