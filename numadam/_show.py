"""``show_options``: the documented options of a method."""

from __future__ import annotations

import scipy.optimize

from ._docs import options_text
from ._registry import METHODS, lookup

__all__ = ["show_options"]


def show_options(method=None, disp=True):
    """Show the documented options of a method.

    Parameters
    ----------
    method : str, optional
        A numadam method (case-insensitive) or one of scipy's minimize
        methods, whose options scipy then shows. None shows every numadam
        method.
    disp : bool, optional
        Print the text (default) or return it.

    Returns
    -------
    text : str or None
        The text, when ``disp`` is False.

    Examples
    --------
    >>> import numadam
    >>> text = numadam.show_options("adam", disp=False)
    >>> "beta1 : float, default 0.9" in text
    True
    """
    if method is None:
        text = "\n".join(options_text(spec) for spec in METHODS.values())
    else:
        where, spec = lookup(method)
        if where == "scipy":
            return scipy.optimize.show_options("minimize", method, disp=disp)
        text = options_text(spec)
    if disp:
        print(text)
        return None
    return text
