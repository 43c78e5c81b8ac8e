"""Render the ``Options`` section of numadam's method docstrings.

scipy's convention documents a method's options under an ``Options``
heading, a section numpydoc does not know. Before numpydoc reads a
docstring, this extension renames that heading to ``Other Parameters`` (which
numpydoc formats as a parameter list), and the ``numpydoc_docstring.rst``
template shows that list under the title ``Options``. No numadam docstring
uses ``Other Parameters`` for anything else.
"""


def _rename(app, what, name, obj, options, lines):
    for i in range(len(lines) - 1):
        if lines[i].strip() == "Options" and set(lines[i + 1].strip()) == {"-"}:
            lines[i] = lines[i].replace("Options", "Other Parameters")
            lines[i + 1] = "-" * len("Other Parameters")


def setup(app):
    # numpydoc connects at the default priority (500); run before it.
    app.connect("autodoc-process-docstring", _rename, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
