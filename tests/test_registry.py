"""The method table: one declaration per method, read by everything that
lists methods."""

import pathlib
import re

import numpy as np
import pytest
from scipy.optimize import rosen, rosen_der

import numadam
from numadam._registry import MethodSpec
from numadam._rules import get_rule

from conftest import METHODS, VARIANTS

PACKAGE = pathlib.Path(numadam.__file__).parent


def test_methods_is_a_read_only_table_of_declarations():
    assert METHODS[:3] == ["sgd", "adagrad", "rmsprop"]
    assert {"adam", "adadelta", "lion"} <= set(numadam.methods)
    assert all(isinstance(spec, MethodSpec) and spec.name == name
               for name, spec in numadam.methods.items())
    with pytest.raises(TypeError):
        numadam.methods["mine"] = numadam.methods["adam"]
    with pytest.raises(AttributeError):
        numadam.methods["adam"].name = "other"
    assert set(numadam.__all__) >= set(numadam.methods)


@pytest.mark.parametrize("method", METHODS)
def test_every_declared_method_is_a_callable_with_its_docs(method):
    fn = getattr(numadam, method)
    assert fn._numadam_spec is numadam.methods[method]
    assert fn.__name__ == method and f'method="{method}"' in fn.__doc__
    text = numadam.show_options(method, disp=False)
    for opt in numadam.methods[method].options:
        assert f"{opt.name} : " in text


def test_every_rule_flag_is_switched_both_ways_by_the_variants():
    """Together, the declared variants of the methods of a rule take every
    flag of that rule both ways (where the flag can be off at all)."""
    seen = {}
    for method, options in VARIANTS:
        spec = numadam.methods[method]
        rule = spec.rule_impl()
        seen.setdefault(rule.name, set()).add(rule.flags(spec.resolve(options)))
    for name, flag_sets in seen.items():
        rule = get_rule(name)
        for k, flag in enumerate(rule.flag_names):
            values = {F[k] for F in flag_sets}
            assert values == {False, True}, (name, flag, values)


@pytest.mark.parametrize("method", METHODS)
def test_declared_settings_are_valid_options(method):
    spec = numadam.methods[method]
    common = {o.name for o in numadam._options.COMMON_OPTIONS}
    for options in (spec.example, spec.demo, *spec.variants):
        hyper = {k: v for k, v in options.items() if k not in common}
        spec.resolve(hyper)          # raises on an unknown or invalid value
        assert set(options) <= set(spec.option_names) | common


@pytest.mark.parametrize("method", METHODS)
def test_demo_settings_reduce_rosenbrock(method):
    res = numadam.minimize(rosen, np.array([-1.2, 1.0]), method=method, jac=rosen_der,
                           options=dict(numadam.methods[method].demo, maxiter=500))
    assert res.nit == 500 and res.fun < 0.5 * rosen(np.array([-1.2, 1.0]))


@pytest.mark.parametrize("method", ["adadelta", "lion"])
def test_a_new_method_lives_in_its_rule_module_and_its_declaration(method):
    """The methods added through the table are named in exactly two package
    files: the rule module and the declaration."""
    pattern = re.compile(rf"\b{method}\b", re.IGNORECASE)
    files = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if pattern.search(p.read_text()))
    assert files == ["_registry.py", f"_rules/{method}.py"]


def test_sparse_modes_come_from_the_declarations():
    lazy = [m for m in METHODS if "lazy" in numadam.methods[m].sparse_modes]
    assert "nadam" not in lazy and {"adam", "adadelta", "lion"} <= set(lazy)
    x = np.zeros(4)
    for method in METHODS:
        for mode in ("lazy", "catchup"):
            if mode in numadam.methods[method].sparse_modes:
                numadam.Optimizer(method, x, sparse=mode)
            else:
                with pytest.raises(ValueError, match=f"not available for method "
                                                     f"'{method}'"):
                    numadam.Optimizer(method, x, sparse=mode)


def test_a_bad_declaration_fails_at_once():
    spec = numadam.methods["adam"]
    with pytest.raises(ValueError, match="unknown sparse modes"):
        MethodSpec(name="x", rule="adam", summary="", options=spec.options, math="",
                   symbols="", references=(), sparse_modes=("eager",))
