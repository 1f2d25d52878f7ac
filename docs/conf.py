"""Sphinx configuration of the skbayesmix documentation."""

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Build from the source tree, so the docs describe the code beside them.
sys.path.insert(0, str(ROOT))
# The gallery's examples run in this process; they must not open windows.
os.environ.setdefault("MPLBACKEND", "Agg")

import skbayesmix  # noqa: E402

project = "skbayesmix"
author = "the skbayesmix developers"
copyright = "the skbayesmix developers"
version = release = skbayesmix.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
default_role = "literal"
autosummary_generate = True
autodoc_default_options = {}
autodoc_typehints = "none"

# numpydoc: one table of members per class, made by the autosummary template.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False


def _example_argv(gallery_conf, script_vars):
    """The examples take their figure's path as first argument.

    sphinx-gallery defines no ``__file__``, so the examples cannot find their own
    folder; it runs them from there, so a bare file name lands where a reader's
    run of the script writes it (``examples/*.png``, ignored by git). The gallery
    shows the figures it captures itself.
    """
    return [Path(script_vars["src_file"]).stem + ".png"]


class _ExampleOrder:
    """The gallery's order: the seed tutorial first, the 6.4 GB memmap last."""

    ORDER = [
        "plot_tutorial.py",
        "plot_grid_search.py",
        "plot_dirichlet_process.py",
        "plot_density_band.py",
        "fit_memmap.py",
    ]

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        rank = self.ORDER.index(filename) if filename in self.ORDER else len(self.ORDER)
        return rank, filename

    def __repr__(self):
        return f"<{type(self).__name__}>"


sphinx_gallery_conf = {
    "reset_argv": _example_argv,
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # Only the plot_*.py scripts run; fit_memmap.py writes 6.4 GB, so the
    # gallery shows its source without running it.
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "doc_module": ("skbayesmix",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skbayesmix": None},
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "show_memory": False,
    "within_subsection_order": _ExampleOrder,
}

html_theme = "pydata_sphinx_theme"
html_title = f"skbayesmix {version}"
html_static_path = ["_static"]
html_show_sourcelink = False
html_domain_indices = False
html_css_files = ["custom.css"]
# "fit", not "VariationalGaussianMixture.fit", in the page tables of contents.
toc_object_entries_show_parents = "hide"
html_theme_options = {
    "navbar_end": ["navbar-icon-links"],
    "secondary_sidebar_items": ["page-toc"],
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
suppress_warnings = ["config.cache"]  # reset_argv is a function
html_sidebars = {"index": [], "performance": [], "install": []}

# The methods inherited from scikit-learn (get_params, set_fit_request, ...)
# cite scikit-learn's own glossary and labels, which only its site defines.
_SKLEARN_DOCS = "https://scikit-learn.org/stable/"
_SKLEARN_LABELS = {"metadata_routing": "metadata_routing.html"}


def _sklearn_references(app, what, name, obj, options, lines):
    if not getattr(obj, "__module__", "").startswith("sklearn"):
        return

    def label(match):
        text, target = match.group(1), match.group(2)
        page = _SKLEARN_LABELS.get(target, "user_guide.html")
        return f"`{text} <{_SKLEARN_DOCS}{page}>`__"

    for i, line in enumerate(lines):
        line = re.sub(r":ref:`([^`<]+?)\s*<([^>`]+)>`", label, line)
        # A bare label (set_output cites a gallery example) goes to the gallery.
        line = re.sub(
            r":ref:`([^`<>]+)`",
            f"`an example <{_SKLEARN_DOCS}auto_examples/index.html>`__",
            line,
        )
        lines[i] = re.sub(r":term:`([^`]+)`", r"*\1*", line)


def setup(app):
    app.connect("autodoc-process-docstring", _sklearn_references)
