"""Docstrings and option listings generated from the method declarations."""

from __future__ import annotations

import textwrap

from ._options import COMMON_OPTIONS


def _literal(options):
    """A dict of options as the Python literal an example shows."""
    items = ", ".join(f"{name!r}: {value!r}" for name, value in options.items())
    return "{" + items.replace("'", '"') + "}"


def options_section(spec):
    """The numpydoc-style ``Options`` section of a method."""
    lines = ["Options", "-------"]
    for opt in spec.options + COMMON_OPTIONS:
        head, body = opt.describe()
        lines.append(head)
        lines.extend(textwrap.wrap(body, 72, initial_indent="    ",
                                   subsequent_indent="    "))
    if spec.fixed:
        fixed = ", ".join(f"{k}={v!r}" for k, v in spec.fixed.items())
        lines.append(f"(fixed by this method: {fixed})")
    return "\n".join(lines)


def method_docstring(spec):
    """The docstring of ``numadam.<method>``."""
    refs = "\n".join(f".. [{k}] {textwrap.fill(r, 68, subsequent_indent='   ')}"
                     for k, r in enumerate(spec.references, 1))
    notes = spec.notes + "\n\n" if spec.notes else ""
    symbols = textwrap.fill("where " + spec.symbols, 76)
    return f"""{spec.summary}

Use it as ``numadam.minimize(fun, x0, method="{spec.name}", ...)``, or hand it
to scipy as a custom method:
``scipy.optimize.minimize(fun, x0, method=numadam.{spec.name}, jac=grad,
options={{...}})`` gives the same result.

The update at step :math:`t = 1, 2, \\dots`, element-wise:
{spec.math}
{symbols}

Parameters
----------
fun, x0, args, jac, hess, hessp, bounds, constraints, callback
    As for :func:`numadam.minimize`.
**options
    The options below; ``tol`` is taken as ``gtol`` when ``gtol`` is not
    given.

Returns
-------
res : scipy.optimize.OptimizeResult
    As for :func:`numadam.minimize`.

{options_section(spec)}

Notes
-----
{notes}The numerics follow torch.optim's documented algorithm; float32 input runs in
float32 throughout.

References
----------
{refs}

Examples
--------
>>> import numpy as np, numadam, scipy.optimize
>>> from scipy.optimize import rosen, rosen_der
>>> x0 = np.array([-1.2, 1.0])
>>> opts = {_literal(spec.example)}
>>> res = scipy.optimize.minimize(rosen, x0, method=numadam.{spec.name},
...                               jac=rosen_der, options=opts)
>>> same = numadam.minimize(rosen, x0, method="{spec.name}", jac=rosen_der,
...                         options=opts)
>>> bool(np.array_equal(res.x, same.x)), bool(res.fun < rosen(x0))
(True, True)
"""


def options_text(spec):
    """What ``show_options`` prints for a numadam method."""
    return (f"{spec.name}: {spec.summary}\n\n{options_section(spec)}\n"
            if spec else "")
