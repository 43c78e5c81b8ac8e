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
    "sphinx_gallery.gen_gallery",
]

# The gallery: the scripts in examples/, run at every build (their printed
# output and figures embedded), each downloadable as a script and a notebook.
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r".*\.py$",
    "download_all_examples": False,
    "abort_on_example_error": True,
    "write_computation_times": False,
}

templates_path = ["_templates"]
exclude_patterns = ["_build", "generated", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip"]
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
