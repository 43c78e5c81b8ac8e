"""numadam: Adam and its relatives behind scipy's ``minimize``, on Numba kernels.

>>> import numpy as np, numadam
>>> from scipy.optimize import rosen, rosen_der
>>> res = numadam.minimize(rosen, np.array([-1.2, 1.0]), method="adam",
...                        jac=rosen_der, options={"learning_rate": 0.01,
...                                                "maxiter": 20000})
>>> res.success
True
"""

from ._interrupt import Interrupted
from ._minimize import make_method as _make_method
from ._minimize import minimize, resume
from ._optimizer import Optimizer, ParamGroup
from ._registry import METHODS as _METHODS
from ._show import show_options
from ._sparse import SparseGradient
from ._state import OptimizerState
from ._stochastic import RNG

__version__ = "0.1.0"

from . import schedules  # noqa: E402  (light: no compilation at import)

#: The method table: every numadam method's declaration
#: (:class:`numadam._registry.MethodSpec`), by name, in documentation order;
#: read-only. ``list(numadam.methods)`` gives the names.
methods = _METHODS

# numadam.sgd, numadam.adam, ...: each method as a scipy custom method.
globals().update({_name: _make_method(_spec) for _name, _spec in _METHODS.items()})

__all__ = ["minimize", "show_options", "Optimizer", "OptimizerState", "ParamGroup", "RNG",
           "SparseGradient", "Interrupted", "resume", "methods", "schedules", *methods]
