"""Shared test data: method variants covering every flag, dtypes, problems."""

import numpy as np
import pytest

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
