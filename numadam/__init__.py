"""numadam: Adam and its relatives behind scipy's ``minimize``, on Numba kernels.

>>> import numpy as np, numadam
>>> from scipy.optimize import rosen, rosen_der
>>> res = numadam.minimize(rosen, np.array([-1.2, 1.0]), method="adam",
...                        jac=rosen_der, options={"learning_rate": 0.01,
...                                                "maxiter": 20000})
>>> res.success
True
"""

from ._minimize import make_method as _make_method
from ._minimize import minimize
from ._optimizer import Optimizer
from ._registry import METHODS as _METHODS
from ._show import show_options
from ._sparse import SparseGradient
from ._state import OptimizerState
from ._stochastic import RNG

__version__ = "0.1.0"

from . import schedules  # noqa: E402  (light: no compilation at import)

sgd = _make_method(_METHODS["sgd"])
adagrad = _make_method(_METHODS["adagrad"])
rmsprop = _make_method(_METHODS["rmsprop"])
adam = _make_method(_METHODS["adam"])
amsgrad = _make_method(_METHODS["amsgrad"])
adamw = _make_method(_METHODS["adamw"])
adamax = _make_method(_METHODS["adamax"])
nadam = _make_method(_METHODS["nadam"])
radam = _make_method(_METHODS["radam"])

#: The names of numadam's methods.
methods = tuple(_METHODS)

__all__ = ["minimize", "show_options", "Optimizer", "OptimizerState", "RNG",
           "SparseGradient", "methods", "schedules", *methods]
