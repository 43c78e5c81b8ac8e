"""Shared test data: method variants covering every flag, dtypes, problems."""

import os
import shutil
import sys

import numpy as np
import pytest

#: tests/compile_report.py: the number of Numba compilations and their time,
#: printed at the end of the run.
pytest_plugins = ["compile_report"]

# The CUDA tests run on the CUDA simulator where there is no NVIDIA GPU (the
# variable must be set before numba.cuda is first imported); on a machine
# with a GPU they run unchanged on the device.
if "NUMBA_ENABLE_CUDASIM" not in os.environ and not (
        os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi")):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    if "numba" in sys.modules:          # imported for setup.cfg's filterwarnings
        from numba.core import config

        config.reload_config()

import numadam  # noqa: E402  (after the simulator is chosen)

#: The method names, from the method table.
METHODS = list(numadam.methods)

#: (method, options) pairs that together switch on every flag and option
#: of every rule: each method's declared variants (tests/test_registry.py
#: checks that they do).
VARIANTS = [(name, dict(options)) for name, spec in numadam.methods.items()
            for options in spec.variants]

DTYPES = [np.float64, np.float32]


def variant_id(v):
    method, options = v
    return method + "".join(f"-{k}={val}" for k, val in options.items())


@pytest.fixture(params=DTYPES, ids=["float64", "float32"])
def dtype(request):
    return request.param


def replay_sparse(picks, values, n, mode, method, steps, **options):
    """minimize on ``x0 = zeros(n)`` with ``f = 0`` and the fixed sparse
    gradients ``SparseGradient(picks[k], values[k])`` in turn (they do not
    depend on x), learning rate 0.05, for ``steps`` steps."""
    def jac(x, state={"k": 0}):
        k = state["k"]
        state["k"] += 1
        return numadam.SparseGradient(picks[k], values[k])

    return numadam.minimize(lambda x: 0.0, np.zeros(n), jac=jac, method=method,
                            options=dict({"sparse": mode, "maxiter": steps, "gtol": 0,
                                          "learning_rate": 0.05}, **options))


def torch_run(torch, name, x0, grads, **options):
    """``torch.optim.<name>`` (``foreach=False``) stepped from ``x0`` over
    ``grads`` in float64 as torch's default dtype (in which it keeps scalar
    state such as nadam's mu_product); the final parameters."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        p = torch.tensor(np.array(x0, dtype=np.float64), requires_grad=True)
        opt = getattr(torch.optim, name)([p], foreach=False, **options)
        for g in grads:
            p.grad = torch.from_numpy(np.array(g, dtype=np.float64))
            opt.step()
    finally:
        torch.set_default_dtype(old)
    return p.detach().numpy()
