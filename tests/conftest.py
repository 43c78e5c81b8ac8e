"""Shared test data: method variants covering every flag, dtypes, problems."""

import os
import shutil
import sys

import numpy as np
import pytest

# The CUDA tests run on the CUDA simulator where there is no NVIDIA GPU (the
# variable must be set before numba.cuda is first imported); on a machine
# with a GPU they run unchanged on the device.
if "NUMBA_ENABLE_CUDASIM" not in os.environ and not (
        os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi")):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    if "numba" in sys.modules:          # imported for setup.cfg's filterwarnings
        from numba.core import config

        config.reload_config()

#: (method, options) pairs that together switch on every flag and option
#: of every rule.
VARIANTS = [
    ("sgd", {}),
    ("sgd", dict(momentum=0.9)),
    ("sgd", dict(momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("sgd", dict(momentum=0.9, nesterov=True)),
    ("adagrad", {}),
    ("adagrad", dict(lr_decay=0.01, initial_accumulator_value=0.1, weight_decay=0.01)),
    ("rmsprop", {}),
    ("rmsprop", dict(centered=True)),
    ("rmsprop", dict(momentum=0.9)),
    ("rmsprop", dict(centered=True, momentum=0.9, weight_decay=0.01)),
    ("adam", {}),
    ("adam", dict(amsgrad=True)),
    ("adam", dict(weight_decay=0.01)),
    ("adam", dict(weight_decay=0.01, decoupled_weight_decay=True)),
    ("amsgrad", {}),
    ("amsgrad", dict(weight_decay=0.01)),
    ("adamw", {}),
    ("adamw", dict(amsgrad=True)),
    ("adamax", {}),
    ("adamax", dict(weight_decay=0.01)),
    ("nadam", {}),
    ("nadam", dict(weight_decay=0.01, decoupled_weight_decay=True)),
    ("nadam", dict(weight_decay=0.01, momentum_decay=0.01)),
    ("radam", {}),
    ("radam", dict(weight_decay=0.01, decoupled_weight_decay=True)),
    ("radam", dict(beta2=0.9)),
]

METHODS = ["sgd", "adagrad", "rmsprop", "adam", "amsgrad", "adamw", "adamax",
           "nadam", "radam"]

DTYPES = [np.float64, np.float32]


def variant_id(v):
    method, options = v
    return method + "".join(f"-{k}={val}" for k, val in options.items())


@pytest.fixture(params=DTYPES, ids=["float64", "float32"])
def dtype(request):
    return request.param
