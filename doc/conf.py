"""Sphinx configuration for icatdump's documentation.

Build: ``make docs`` (or ``python -m sphinx -W --keep-going -b html doc
doc/_build/html``).  Pages are Markdown (myst-parser); the CLI reference is
generated from the click commands (sphinx-click), the API reference from the
docstrings (autodoc).  ``tests/test_docs.py`` builds the site with warnings
as errors and runs the ```python examples of every page.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import icatdump  # noqa: E402

project = "icatdump"
author = "the icatdump authors"
copyright = "the icatdump authors; Apache-2.0"
version = release = icatdump.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx_click",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_heading_anchors = 3
smartquotes = False
myst_enable_extensions = ["deflist"]

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"

html_theme = "alabaster"
html_title = "icatdump %s" % release
html_static_path = []


def _credential_option(app, ctx, lines):
    """Show ``--cred_<key> VALUE`` as the commands' --help does."""
    for i, line in enumerate(lines):
        if line.strip().startswith(".. option:: --cred_ "):
            from icatdump.config import _CredentialOption
            opt = next(p for p in ctx.command.params if isinstance(p, _CredentialOption))
            name, text = opt.get_help_record(ctx)
            lines[i] = line.split("..")[0] + ".. option:: --cred_<key> <value>"
            indent = line.split("..")[0] + "    "
            lines[i + 1:i + 1] = ["", indent + text]
            break


def setup(app):
    app.connect("sphinx-click-process-options", _credential_option)
