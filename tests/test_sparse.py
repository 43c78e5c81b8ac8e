"""Sparse gradients: forms, validation, the three modes, both loops."""

import numpy as np
import pytest
import scipy.sparse as sp
from numba import njit

import numadam
from numadam import experiments

from conftest import METHODS, replay_sparse
from reference import SparseAdamReference

N = 40


def _stream(steps, n=N, per_step=6, seed=0, rows=None):
    """A fixed sequence of (indices, values) for a quadratic pulled to a
    target: the gradient of 0.5 |x - target|^2 on a random subset."""
    rng = np.random.default_rng(seed)
    target = rng.standard_normal(n)
    picks = [np.sort(rng.choice(n, per_step, replace=False)) for _ in range(steps + 2)]
    return target, picks


def _jac_factory(target, picks, form="SparseGradient"):
    state = {"k": 0}

    def jac(x):
        idx = picks[state["k"] % len(picks)]
        state["k"] += 1
        val = x[idx] - target[idx]
        if form == "SparseGradient":
            return numadam.SparseGradient(idx, val)
        if form == "tuple":
            return idx, val
        if form == "csr_matrix":
            return sp.csr_matrix((val, (np.zeros_like(idx), idx)), shape=(1, N))
        if form == "csr_array":
            return sp.csr_array((val, (np.zeros_like(idx), idx)), shape=(1, N))
        if form == "coo_array_1d":
            return sp.coo_array((val, (idx,)), shape=(N,))
        raise AssertionError(form)
    return jac, state


def _run(mode, method="adam", form="SparseGradient", steps=200, **options):
    target, picks = _stream(steps)
    jac, _ = _jac_factory(target, picks, form)
    return numadam.minimize(lambda x: 0.5 * float(np.sum((x - target) ** 2)),
                            np.zeros(N), jac=jac, method=method,
                            options=dict({"sparse": mode, "maxiter": steps, "gtol": 0,
                                          "learning_rate": 0.05}, **options))


def _run_fixed(mode, method, steps=200, **options):
    """A gradient stream that does not depend on x: catch-up then replays
    exactly what dense would do (with x-dependent gradients the gradient is
    taken at the rows' lagging values, see the guide)."""
    rng = np.random.default_rng(4)
    picks = [np.sort(rng.choice(N, 6, replace=False)) for _ in range(steps + 2)]
    values = [rng.standard_normal(6) for _ in range(steps + 2)]
    return replay_sparse(picks, values, N, mode, method, steps, **options)


@pytest.mark.parametrize("form", ["tuple", "csr_matrix", "csr_array", "coo_array_1d"])
def test_every_input_form_gives_the_same_run(form):
    a = _run("lazy")
    b = _run("lazy", form=form)
    np.testing.assert_array_equal(a.x, b.x)


def test_duplicate_indices_are_summed():
    target, picks = _stream(100)
    rng = np.random.default_rng(5)

    def jac_dups(x, state={"k": 0}):
        idx = picks[state["k"]]
        state["k"] += 1
        val = x[idx] - target[idx]
        # split each value in two parts given under the same index
        w = rng.uniform(0.2, 0.8, idx.size)
        return numadam.SparseGradient(np.concatenate([idx, idx[::-1]]),
                                      np.concatenate([val * w, (val * (1 - w))[::-1]]))

    f = lambda x: 0.0  # noqa: E731
    dup = numadam.minimize(f, np.zeros(N), jac=jac_dups,
                           options={"sparse": "lazy", "maxiter": 100, "gtol": 0})
    ref = SparseAdamReference(np.zeros(N))
    rng = np.random.default_rng(5)
    for k in range(100):
        idx = picks[k]
        val = ref.x[idx] - target[idx]
        w = rng.uniform(0.2, 0.8, idx.size)
        ref.step(np.concatenate([idx, idx[::-1]]),
                 np.concatenate([val * w, (val * (1 - w))[::-1]]))
    np.testing.assert_allclose(dup.x, ref.x, rtol=1e-12, atol=1e-15)


def test_lazy_adam_is_sparse_adam():
    target, picks = _stream(300)
    jac, _ = _jac_factory(target, picks)
    res = numadam.minimize(lambda x: 0.0, np.zeros(N), jac=jac,
                           options={"sparse": "lazy", "maxiter": 300, "gtol": 0,
                                    "learning_rate": 0.05})
    ref = SparseAdamReference(np.zeros(N), lr=0.05)
    for k in range(300):
        idx = picks[k]
        ref.step(idx, ref.x[idx] - target[idx])
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-12, atol=0)


def test_lazy_adam_matches_torch_sparse_adam():
    torch = pytest.importorskip("torch")
    target, picks = _stream(300)
    jac, _ = _jac_factory(target, picks)
    res = numadam.minimize(lambda x: 0.0, np.zeros(N), jac=jac,
                           options={"sparse": "lazy", "maxiter": 300, "gtol": 0,
                                    "learning_rate": 0.05})
    p = torch.zeros(N, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SparseAdam([p], lr=0.05)
    for k in range(300):
        idx = picks[k]
        xv = p.detach().numpy()
        p.grad = torch.sparse_coo_tensor(torch.from_numpy(idx)[None],
                                         torch.from_numpy(xv[idx] - target[idx]), (N,),
                                         check_invariants=True)
        opt.step()
    np.testing.assert_allclose(res.x, p.detach().numpy(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("method, options", [
    ("adagrad", {}), ("adagrad", {"lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("sgd", {}),
])
@pytest.mark.parametrize("mode", ["lazy", "catchup"])
def test_sparse_equals_dense_where_skipping_is_exact(method, options, mode):
    sparse = _run(mode, method=method, **options)
    dense = _run("dense", method=method, **options)
    np.testing.assert_array_equal(sparse.x, dense.x)


@pytest.mark.parametrize("method", METHODS)
def test_dense_mode_is_the_dense_rule_on_the_densified_gradient(method):
    target, picks = _stream(80)
    jac, _ = _jac_factory(target, picks)

    def dense_jac(x, state={"k": 0}):
        idx = picks[state["k"]]
        state["k"] += 1
        g = np.zeros(N)
        g[idx] = x[idx] - target[idx]
        return g

    opts = {"maxiter": 80, "gtol": 0, "learning_rate": 0.05}
    a = numadam.minimize(lambda x: 0.0, np.zeros(N), jac=jac, method=method,
                         options=dict(opts, sparse="dense"))
    b = numadam.minimize(lambda x: 0.0, np.zeros(N), jac=dense_jac, method=method,
                         options=opts)
    np.testing.assert_array_equal(a.x, b.x)


@pytest.mark.parametrize("method, options", [
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("rmsprop", {"momentum": 0.5}),
    ("rmsprop", {"momentum": 0.5, "centered": True}),
    ("adadelta", {}),
    ("lion", {}),
    ("lion", {"weight_decay": 0.1}),
])
def test_catchup_replays_skipped_steps_exactly_for_constant_rates(method, options):
    """For sgd, rmsprop, adadelta and lion the skipped zero-gradient steps
    have a closed form; catch-up then equals dense to rounding."""
    catch = _run_fixed("catchup", method, **options)
    dense = _run_fixed("dense", method, **options)
    np.testing.assert_allclose(catch.x, dense.x, rtol=1e-10, atol=1e-12)
    lazy = _run_fixed("lazy", method, **options)
    assert np.max(np.abs(lazy.x - dense.x)) > 1e-3     # lazy is not dense


@pytest.mark.parametrize("method, options", [("adam", {}), ("amsgrad", {}),
                                             ("adamw", {"weight_decay": 0.1})])
def test_catchup_adam_approximates_dense_adam(method, options):
    """Adam's catch-up ignores eps and takes the current step's bias
    corrections for the skipped ones: close to dense once those settle."""
    opts = dict(options, eps=1e-12, steps=3000, learning_rate=0.01)
    catch = _run_fixed("catchup", method, **opts)
    dense = _run_fixed("dense", method, **opts)
    lazy = _run_fixed("lazy", method, **opts)
    err_catch = np.max(np.abs(catch.x - dense.x))
    err_lazy = np.max(np.abs(lazy.x - dense.x))
    assert err_catch < 0.1 * err_lazy
    assert err_catch < 0.02 * np.max(np.abs(dense.x))


def test_catchup_flushes_every_coordinate_at_the_end():
    """A coordinate touched once, at the first step, keeps moving (dense
    adam's momentum) until the end of the run."""
    x0 = np.zeros(4)

    def jac(x, state={"k": 0}):
        state["k"] += 1
        return (np.array([0]), np.array([1.0])) if state["k"] == 1 else (
            np.array([3]), np.array([0.0]))

    opts = {"maxiter": 50, "gtol": 0, "learning_rate": 0.1}
    catch = numadam.minimize(lambda x: 0.0, x0, jac=jac, method="sgd",
                             options=dict(opts, sparse="catchup", momentum=0.9))
    expected = -0.1 * sum(0.9 ** j for j in range(50))
    assert catch.x[0] == pytest.approx(expected, rel=1e-12)
    assert catch.state.step == 50


@pytest.mark.parametrize("mode", ["lazy", "catchup", "dense"])
def test_compiled_loop_sparse_bitwise_the_python_loop(mode):
    rows, r = 30, 4
    n = rows * r
    rng = np.random.default_rng(2)
    target = rng.standard_normal(n)
    picks = np.array([np.sort(rng.choice(rows, 5, replace=False)) for _ in range(60)])

    @njit
    def fun(x, step, picks, target):
        return 0.5 * np.sum((x - target) ** 2)

    @njit
    def jac(x, step, picks, target):
        k = step[0]
        step[0] += 1
        sel = picks[k % picks.shape[0]]
        val = np.empty((sel.shape[0], 4))
        for j in range(sel.shape[0]):
            for q in range(4):
                val[j, q] = x[sel[j] * 4 + q] - target[sel[j] * 4 + q]
        return sel, val

    runs = []
    for compiled in (True, False):
        step = np.zeros(1, np.int64)
        runs.append(numadam.minimize(fun, np.zeros(n), args=(step, picks, target),
                                     jac=jac, options={"sparse": mode, "maxiter": 50,
                                                       "gtol": 0, "learning_rate": 0.05,
                                                       "compiled": compiled}))
    np.testing.assert_array_equal(runs[0].x, runs[1].x)
    np.testing.assert_array_equal(runs[0].jac, runs[1].jac)
    assert runs[0].nfev == runs[1].nfev


def test_rows_form_updates_whole_rows():
    x = np.zeros(12)
    opt = numadam.Optimizer("sgd", x, sparse="lazy", learning_rate=1.0)
    opt.step(numadam.SparseGradient([2, 0], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    np.testing.assert_array_equal(x, [-4, -5, -6, 0, 0, 0, -1, -2, -3, 0, 0, 0])


def _table_steps(form, seed=3, rows=50, r=4, steps=30):
    """Gradients of a (rows, r) table in ``form``: whole rows by rows, the
    same by coordinates, by a 2-D scipy.sparse table, and (every third step)
    scattered coordinates that are not whole rows."""
    rng = np.random.default_rng(seed)
    for t in range(steps):
        if t % 3 == 2:
            coords = np.sort(rng.choice(rows * r, 7, replace=False))
            values = rng.standard_normal(7)
            if form == "scipy table":
                table = np.zeros(rows * r)
                table[coords] = values
                yield sp.csr_matrix(table.reshape(rows, r))
            else:
                yield numadam.SparseGradient(coords, values)
            continue
        touched = np.sort(rng.choice(rows, 6, replace=False))
        values = rng.standard_normal((6, r))
        if form == "rows":
            yield numadam.SparseGradient(touched, values)
        elif form == "coordinates":
            coords = (touched[:, None] * r + np.arange(r)).ravel()
            yield numadam.SparseGradient(coords, values.ravel())
        else:
            table = np.zeros((rows, r))
            table[touched] = values
            yield sp.csr_matrix(table)


@pytest.mark.parametrize("method", ["adam", "rmsprop", "sgd"])
def test_a_tables_gradient_by_whole_rows_in_any_form_is_the_same_lazy_step(method):
    # the reference: a flat parameter, where every gradient is coordinates
    flat = np.linspace(-1.0, 1.0, 200)
    ref = numadam.Optimizer(method, flat, sparse="lazy", learning_rate=0.01)
    for g in _table_steps("coordinates"):
        ref.step(g)
    for form in ("rows", "coordinates", "scipy table"):
        table = np.linspace(-1.0, 1.0, 200).reshape(50, 4)
        opt = numadam.Optimizer(method, table, sparse="lazy", learning_rate=0.01)
        for g in _table_steps(form):
            opt.step(g)
        np.testing.assert_array_equal(table.ravel(), flat)
        assert opt.state_dict()["state"][0]["step"] == 30


def test_whole_rows_are_found_and_nothing_else():
    from numadam._sparse import as_rows, whole_rows

    idx = np.array([4, 5, 6, 7, 12, 13, 14, 15], np.int64)
    val = np.arange(8.0).reshape(-1, 1)
    rows, vals = as_rows(idx, val, 4)
    np.testing.assert_array_equal(rows, [1, 3])
    np.testing.assert_array_equal(vals, [[0, 1, 2, 3], [4, 5, 6, 7]])
    for bad in ([4, 5, 6, 7, 12, 13, 14], [5, 6, 7, 8], [4, 5, 7, 6], [-4, -3, -2, -1],
                []):
        assert not whole_rows(np.array(bad, np.int64), 4)
        assert as_rows(np.array(bad, np.int64), np.zeros((len(bad), 1)), 4)[1].shape[1] == 1


def test_catchup_keeps_one_row_length():
    table = np.zeros((5, 2))
    opt = numadam.Optimizer("adam", table, sparse="catchup")
    opt.step(numadam.SparseGradient([1], [[1.0, 2.0]]))
    with pytest.raises(ValueError, match="must keep their row length: 2 before, 1 now"):
        opt.step(numadam.SparseGradient([3], [1.0]))


def test_optimizer_catchup_and_flush():
    x = np.zeros(5)
    opt = numadam.Optimizer("sgd", x, sparse="catchup", learning_rate=0.1, momentum=0.5)
    opt.step((np.array([1]), np.array([1.0])))
    opt.step((np.array([2]), np.array([1.0])))
    assert x[1] == pytest.approx(-0.1)            # not caught up yet
    opt.flush()
    assert x[1] == pytest.approx(-0.1 - 0.1 * 0.5)
    assert x[2] == pytest.approx(-0.1)


@pytest.mark.parametrize("jac_returns, options, exc, match", [
    (lambda x: numadam.SparseGradient([40], [1.0]), {"sparse": "lazy"}, IndexError,
     r"jac returned a sparse gradient with index 40 out of range for x0 of size 40"),
    (lambda x: numadam.SparseGradient([-1], [1.0]), {"sparse": "catchup"}, IndexError,
     r"with index -1 out of range"),
    (lambda x: numadam.SparseGradient([20], [[1.0, 2.0]]), {"sparse": "lazy"},
     IndexError, r"row index 20 out of range for 20 rows of 2"),
    (lambda x: numadam.SparseGradient([1], [[1.0, 2.0, 3.0]]), {"sparse": "lazy"},
     ValueError, r"needs x0's size \(40\) to be a multiple of 3"),
    (lambda x: numadam.SparseGradient([1], [1.0]), {}, TypeError,
     r"jac returned a sparse gradient .*; set options\['sparse'\] to 'lazy', "
     r"'catchup' or 'dense'"),
    (lambda x: np.zeros(N), {"sparse": "lazy"}, TypeError,
     r"option sparse='lazy' needs jac to return a sparse gradient"),
    (lambda x: sp.csr_matrix(np.ones((2, N))), {"sparse": "lazy"}, ValueError,
     r"jac returned a sparse gradient of shape \(2, 40\), but x0 has 40 elements: "
     r"give shape \(1, 40\) or \(40,\), or a table"),
])
def test_bad_sparse_gradients_fail_before_any_step(jac_returns, options, exc, match):
    x0 = np.zeros(N)
    with pytest.raises(exc, match=match):
        numadam.minimize(lambda x: 0.0, x0, jac=jac_returns, options=options)
    assert not x0.any()


@pytest.mark.parametrize("method, options, exc, match", [
    ("nadam", {"sparse": "lazy"}, ValueError,
     r"option sparse='lazy' is not available for method 'nadam': lazy updates exist "
     r"for sgd, adagrad, rmsprop, adadelta, adam, amsgrad, adamw, lion; "
     r"sparse='dense' works with every method"),
    ("radam", {"sparse": "catchup"}, ValueError,
     r"option sparse='catchup' is not available for method 'radam': catch-up updates "
     r"exist for sgd, adagrad, rmsprop, adadelta, adam, amsgrad, adamw, lion;"),
    ("adam", {"sparse": "compressed"}, ValueError,
     r"option 'sparse' must be None, 'lazy', 'catchup' or 'dense', got 'compressed'"),
    ("adam", {"sparse": "catchup", "weight_decay": 0.1}, ValueError,
     r"sparse='catchup' cannot replay coupled weight decay"),
    ("adam", {"sparse": "lazy", "average": "ema"}, ValueError,
     r"option 'average' reads every coordinate each step"),
    ("adam", {"sparse": "lazy", "jac_out": True}, ValueError,
     r"option 'jac_out' cannot be combined with option 'sparse'"),
])
def test_sparse_option_errors(method, options, exc, match):
    with pytest.raises(exc, match=match):
        numadam.minimize(lambda x: 0.0, np.zeros(N), method=method,
                         jac=lambda x, *a: numadam.SparseGradient([0], [1.0]),
                         options=options)


@pytest.mark.slow
def test_catchup_closes_most_of_the_gap_between_lazy_and_dense():
    """Logistic regression on bag-of-words with rare words, same epochs: the
    loss of catch-up adam is at least halfway from lazy to dense."""
    data = experiments.bag_of_words(n_docs=4000, seed=1)
    curves = experiments.sparse_comparison(epochs=8, data=data)
    final = {mode: c[-1] for mode, c in curves.items()}
    assert final["lazy"] > final["dense"]
    closed = (final["lazy"] - final["catchup"]) / (final["lazy"] - final["dense"])
    assert closed >= 0.5
