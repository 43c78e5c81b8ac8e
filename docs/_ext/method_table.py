"""List numadam's methods from the method table (``numadam.methods``).

``.. numadam-methods:: table`` renders a table of every method's name and
summary; ``.. numadam-methods:: functions`` renders the ``autofunction`` of
every method callable. A method added to the table appears in both without
an edit here or in the pages.
"""

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

import numadam


def _table_lines():
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 15 85", "",
             "   * - name", "     - update"]
    for name, spec in numadam.methods.items():
        lines += [f"   * - ``{name}``", f"     - {spec.summary}"]
    return lines


def _function_lines():
    return [f".. autofunction:: numadam.{name}" for name in numadam.methods]


class MethodsDirective(Directive):
    required_arguments = 1

    def run(self):
        kind = self.arguments[0]
        if kind not in ("table", "functions"):
            raise self.error(f"numadam-methods takes 'table' or 'functions', got {kind!r}")
        lines = _table_lines() if kind == "table" else _function_lines()
        node = nodes.container()
        self.state.nested_parse(StringList(lines, source="numadam.methods"),
                                self.content_offset, node)
        return node.children


def setup(app):
    app.add_directive("numadam-methods", MethodsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
