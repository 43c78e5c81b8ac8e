"""Sphinx configuration for numadam's documentation."""

import os
import sys
import warnings

sys.path.insert(0, os.path.abspath("_ext"))

import numadam  # noqa: E402

project = "numadam"
author = "The numadam developers"
copyright = "2026, The numadam developers"
release = numadam.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "numpydoc",
    "options_section",
    "method_table",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "generated"]
html_theme = "pydata_sphinx_theme"
html_title = "numadam"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}

autosummary_generate = False
autodoc_typehints = "none"
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

# The docs build offline (CI has no network), so there is no intersphinx:
# references to numpy and scipy objects render as code, unlinked.
nitpicky = False

# numpydoc also reads each docstring for its signature, before the
# options_section extension has renamed the Options heading it does not
# know; that read only reports the unknown heading.
warnings.filterwarnings("ignore", message="Unknown section Options",
                        category=UserWarning)
