"""numadam.Optimizer over many arrays: any shape, lists, dicts and torch-style
parameter groups, stepped as one compiled call per group and dtype.

The references are independent: the NumPy oracle of tests/reference.py run
on each array alone (the group kernel must give what stepping each array
alone gives), torch.optim with the same parameter groups where torch is
installed, and a one-array Optimizer per array, which runs other kernels
than the group's, for bitwise agreement.
"""

import copy

import numpy as np
import pytest

import numadam
from numadam._kernels import group as gk

from conftest import DTYPES, METHODS, VARIANTS, variant_id
from reference import Reference, SparseAdamReference, clip_grad_norm

#: the arrays of a small MLP: weights and biases of three layers and an
#: embedding, of several shapes (a 0-d scale among them)
SHAPES = [(6, 5), (5,), (5, 4), (4,), (4, 3), (3,), (7, 2), ()]


def _arrays(shapes, dtype, seed):
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.standard_normal(s), dtype=dtype) for s in shapes]


def _gradients(shapes, dtype, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[np.asarray(rng.standard_normal(s), dtype=dtype) for s in shapes]
            for _ in range(steps)]


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_a_group_steps_each_array_as_the_oracle(variant):
    """Every method and flag: 2-D, 1-D and 0-d arrays in one group move as
    the NumPy oracle moves each alone, and bitwise as a one-array Optimizer
    per array (other kernels, same arithmetic)."""
    method, options = variant
    options = dict(options, learning_rate=0.01)
    params = _arrays(SHAPES, np.float64, 0)
    alone = [p.copy() for p in params]
    refs = [Reference(method, p.ravel(), **options) for p in params]
    opt = numadam.Optimizer(method, params, parallel=False, **options)
    singles = [numadam.Optimizer(method, a, parallel=False, **options) for a in alone]
    assert len(opt._units) == 1
    for gs in _gradients(SHAPES, np.float64, 7):
        opt.step(gs)
        for s, g, r in zip(singles, gs, refs):
            s.step(g)
            r.step(g.ravel())
    for p, a, r in zip(params, alone, refs):
        np.testing.assert_array_equal(p, a)
        np.testing.assert_allclose(p.ravel(), r.x, rtol=1e-12, atol=1e-15)
    for s_group, s_alone in zip(opt.state, [s.state for s in singles]):
        np.testing.assert_array_equal(s_group.S, s_alone.S)
        np.testing.assert_array_equal(s_group.aux, s_alone.aux)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("method, options", [("adam", {}), ("sgd", {"momentum": 0.9}),
                                             ("nadam", {"weight_decay": 0.01})])
def test_the_parallel_group_kernel_equals_the_serial_one_bitwise(method, options, dtype):
    """Large and small arrays cut into parts that span arrays: the parallel
    kernel gives the serial kernel's bits, in float64 and float32."""
    shapes = [(300, 40), (40,), (40, 70), (70,), (5000,), (3,)]
    a = _arrays(shapes, dtype, 2)
    b = [x.copy() for x in a]
    serial = numadam.Optimizer(method, a, parallel=False, learning_rate=0.01, **options)
    parallel = numadam.Optimizer(method, b, parallel=True, learning_rate=0.01, **options)
    assert parallel.parallel == [True] * 6 and serial.parallel == [False] * 6
    for gs in _gradients(shapes, dtype, 4):
        serial.step(gs)
        parallel.step(gs)
    for x, y in zip(a, b):
        assert x.dtype == dtype
        np.testing.assert_array_equal(x, y)


def test_the_parts_of_the_parallel_kernel_cover_every_element_once():
    rng = np.random.default_rng(0)
    for trial in range(200):
        sizes = list(rng.integers(0, 9000, size=rng.integers(1, 12)))
        if trial % 3 == 0:
            sizes[0] = 0
        C, B = gk.chunks(sizes)
        seen = [np.zeros(n, int) for n in sizes]
        for j, lo, hi in C.T:
            assert 0 <= lo < hi <= sizes[j]
            seen[j][lo:hi] += 1
        assert all((s == 1).all() for s in seen)
        assert B[0] == 0 and B[-1] == C.shape[1] and np.all(np.diff(B) >= 0)
        total = sum(sizes)
        parts = len(B) - 1
        assert parts == max(1, min(gk.PARTS, total // gk.LEAST))
        work = [sum(C[2, p] - C[1, p] for p in range(B[q], B[q + 1]))
                for q in range(parts)]
        assert max(work) - min(work) <= 1             # equal parts


def test_torch_parameter_groups_give_torchs_run():
    """Two groups with their own learning rate and weight decay, as
    torch.optim.AdamW and SGD take them (float64)."""
    torch = pytest.importorskip("torch")
    params = _arrays(SHAPES[:6], np.float64, 4)
    grads = _gradients(SHAPES[:6], np.float64, 30, seed=5)
    for cls, method, top, first, second in [
            ("AdamW", "adamw", dict(lr=0.01, betas=(0.8, 0.99)),
             dict(weight_decay=0.0), dict(lr=0.05, weight_decay=0.1)),
            ("SGD", "sgd", dict(lr=0.05, momentum=0.9, nesterov=True),
             dict(weight_decay=0.01), dict(lr=0.2))]:
        mine = [p.copy() for p in params]
        ts = [torch.tensor(p.copy(), requires_grad=True) for p in params]
        t_opt = getattr(torch.optim, cls)([dict(params=ts[:4], **first),
                                           dict(params=ts[4:], **second)],
                                          foreach=False, **top)
        groups = [dict(params=mine[:4], **first),
                  dict(params={"w": mine[4], "b": mine[5]}, **second)]
        opt = numadam.Optimizer(method, groups, **top)
        assert len(opt._units) == 2
        for gs in grads:
            for t, g in zip(ts, gs):
                t.grad = torch.from_numpy(g.copy())
            t_opt.step()
            opt.step([gs[:4], {"b": gs[5], "w": gs[4]}])
        for p, t in zip(mine, ts):
            np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-12, atol=1e-14,
                                       err_msg=cls)


def test_dicts_tuples_and_state_come_back_in_the_structure_given():
    w, b = np.ones((2, 3)), np.zeros(3)
    opt = numadam.Optimizer("sgd", {"w": w, "b": b}, lr=0.5)
    opt.step({"b": np.ones(3), "w": np.full((2, 3), 2.0)})
    np.testing.assert_array_equal(w, 0.0)
    np.testing.assert_array_equal(b, -0.5)
    state = opt.state
    assert list(state) == ["w", "b"] and state["w"].S.shape == (0, 6)
    assert opt.parallel == {"w": False, "b": False}
    assert repr(opt) == "Optimizer('sgd', sizes=[6, 3], step=1)"
    t = (np.ones(2), np.ones((1, 1)))
    opt = numadam.Optimizer("adam", t)
    opt.step((np.ones(2), np.ones((1, 1))))
    assert [s.step for s in opt.state] == [1, 1]
    one = np.ones((2, 2))
    single = numadam.Optimizer("sgd", one, lr=1.0)
    single.step(np.full((2, 2), 0.5))
    np.testing.assert_array_equal(one, 0.5)
    assert repr(single) == "Optimizer('sgd', shape=(2, 2), dtype=float64, step=1)"


def test_a_state_continues_a_group_exactly():
    params = _arrays(SHAPES, np.float64, 6)
    grads = _gradients(SHAPES, np.float64, 10)
    whole = [p.copy() for p in params]
    numadam_opt = numadam.Optimizer("adam", whole, lr=0.01)
    for gs in grads:
        numadam_opt.step(gs)
    first = [p.copy() for p in params]
    opt = numadam.Optimizer("adam", first, lr=0.01)
    for gs in grads[:4]:
        opt.step(gs)
    again = numadam.Optimizer("adam", first, lr=0.01, state=opt.state)
    for gs in grads[4:]:
        again.step(gs)
    for a, b in zip(first, whole):
        np.testing.assert_array_equal(a, b)
    states = opt.state
    behind = numadam.Optimizer("adam", [np.ones(4)], lr=0.01).state[0]
    states[3] = behind
    with pytest.raises(ValueError, match=r"the state of params\[3\] is at step 0 .* that "
                                         r"of params\[0\] at step 4 .* share one step "
                                         "count"):
        numadam.Optimizer("adam", [p.copy() for p in params], state=states)
    with pytest.raises(ValueError, match=r"the state of params\[0\]: .*holds 1 "):
        numadam.Optimizer("adam", [p.copy() for p in params], state=states[::-1])


def test_bounds_in_a_group_are_per_array():
    a, b = np.zeros((2, 2)), np.zeros(3)
    opt = numadam.Optimizer("sgd", [a, b], lr=1.0,
                            bounds=[(np.full((2, 2), -0.5), np.ones((2, 2))), None])
    opt.step([np.ones((2, 2)), np.ones(3)])
    np.testing.assert_array_equal(a, -0.5)
    np.testing.assert_array_equal(b, -1.0)
    with pytest.raises(TypeError, match="bounds of an Optimizer of 2 arrays must be a "
                                        "list or tuple with one entry per array"):
        numadam.Optimizer("sgd", [a, b], bounds=(np.zeros(4), np.ones(4)))
    with pytest.raises(ValueError, match=r"bounds of params\[1\] must be two arrays of "
                                         r"shape \(3,\), got shapes \(2,\) and \(2,\)"):
        numadam.Optimizer("sgd", [a, b], bounds=[None, (np.zeros(2), np.ones(2))])


def test_sparse_and_dense_groups_and_a_global_clip():
    """An embedding in a lazy sparse group, dense layers in another, all
    clipped together: as the oracle with torch's clip_grad_norm_."""
    emb, w, b = np.ones((6, 2)), np.ones((2, 3)), np.ones(3)
    opt = numadam.Optimizer("adam", [dict(params=[emb], sparse="lazy", lr=0.1),
                                     dict(params=[w, b])], lr=0.01, clip_norm=1.0)
    refs = [Reference("adam", a.ravel(), learning_rate=lr)
            for a, lr in ((w, 0.01), (b, 0.01))]
    g_emb = numadam.SparseGradient([4, 1], [[3.0, 0.0], [0.0, 4.0]])
    gw, gb = np.full((2, 3), 0.5), np.full(3, -0.25)
    dense_emb = g_emb.todense(12).reshape(6, 2)
    clipped, factor = clip_grad_norm([dense_emb, gw, gb], 1.0)
    assert factor < 1
    opt.step([[g_emb], [gw, gb]])
    for ref, g in zip(refs, clipped[1:]):
        ref.step(g.ravel())
    np.testing.assert_allclose(w.ravel(), refs[0].x, rtol=1e-12)
    np.testing.assert_allclose(b, refs[1].x, rtol=1e-12)
    emb_ref = SparseAdamReference(np.ones(12), lr=0.1)      # lazy: SparseAdam's rule
    flat = [2, 3, 8, 9]                                      # rows 1 and 4
    emb_ref.step(flat, clipped[0].ravel()[flat])
    np.testing.assert_allclose(emb.ravel(), emb_ref.x, rtol=1e-12)
    assert emb[0, 0] == 1.0 and emb[1, 1] < 1.0
    # a dense array in the sparse group is a gradient over all its rows
    opt.step([[np.zeros((6, 2))], [gw, gb]])
    assert [s.step for s in opt.state[0]] == [2]


def test_bad_gradients_change_nothing_and_name_the_array():
    params = {"w": np.ones((2, 2)), "b": np.ones(2)}
    groups = [dict(params=params), dict(params=[np.ones(3)], lr=0.5)]
    opt = numadam.Optimizer("adam", groups)
    good = {"w": np.ones((2, 2)), "b": np.ones(2)}
    for bad, exc, match in [
            ([good, [np.ones(4)]], ValueError,
             r"gradient\[1\]\[0\] must be an array of shape \(3,\), got shape \(4,\)"),
            ([{"w": np.ones((2, 2)), "b": np.ones(2, complex)}, [np.ones(3)]], TypeError,
             r"gradient\[0\]\['b'\] must be a real array"),
            ([{"w": np.ones((2, 2))}, [np.ones(3)]], ValueError,
             r"the gradient\[0\] must have the keys of params\[0\]\['params'\]: "
             r"missing \['b'\]"),
            ([good], ValueError, "the gradient of an Optimizer of 2 groups must be a list "
                                 "or tuple with one entry per group, got 1"),
            ([good, [np.ones(3)]], ValueError, "learning_rate"),
    ]:
        with pytest.raises(exc, match=match):
            opt.step(bad, learning_rate=-1.0 if match == "learning_rate" else None)
    np.testing.assert_array_equal(params["w"], 1.0)
    assert [s.step for s in opt.state[1]] == [0]
    assert all(not s.S.any() for s in opt.state[0].values())
    g = [good, [np.arange(3.0)]]
    kept = [good["w"].copy(), np.arange(3.0)]
    opt.step(g)
    np.testing.assert_array_equal(g[0]["w"], kept[0])      # gradients are not touched
    np.testing.assert_array_equal(g[1][0], kept[1])
    assert [s.step for s in opt.state[1]] == [1]


def test_gradients_of_other_layouts_and_dtypes_are_converted():
    a, b = np.ones((3, 4)), np.ones(5)
    c, d = a.copy(), b.copy()
    opt = numadam.Optimizer("adam", [a, b], lr=0.1)
    ref = numadam.Optimizer("adam", [c, d], lr=0.1)
    ga = np.arange(12.0).reshape(4, 3).T           # not C-contiguous
    gb = np.arange(5, dtype=np.float32)            # another dtype
    opt.step([ga, gb])
    ref.step([np.ascontiguousarray(ga), gb.astype(np.float64)])
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, d)


SHARED = np.zeros(4)


@pytest.mark.parametrize("params, exc, match", [
    ([], ValueError, r"params must hold at least one array, got an empty list"),
    ({"a": np.zeros(2), "b": [1.0]}, TypeError,
     r"params\['b'\] must be a NumPy array or a CUDA device array, got list"),
    ([np.zeros(2), np.zeros(3, int)], TypeError,
     r"params\[1\] must be float32 or float64, got dtype int64"),
    ([np.zeros(2), np.zeros((2, 3), order="F")], ValueError,
     r"params\[1\] must be a C-contiguous, writable array"),
    ([{"lr": 0.1}], ValueError, r"params\[0\] must have a 'params' entry"),
    ([{"params": [np.zeros(2)], "lrr": 0.1}], TypeError,
     r"params\[0\] got unknown options: lrr"),
    ([{"params": [np.zeros(2)], "clip_norm": 1.0}], ValueError,
     r"params\[0\]: clip_norm clips all the arrays of an Optimizer together"),
    ([{"params": [np.zeros(2)], "beta1": 2.0}], ValueError,
     r"params\[0\]: adam: option 'beta1' must satisfy 0 <= beta1 < 1, got 2\.0"),
    ([{"params": [np.zeros(2)], "lr": 0.1, "learning_rate": 0.2}], TypeError,
     r"option 'lr' is torch.optim's spelling of 'learning_rate': give one spelling"),
    ([{"params": [np.zeros(2)], "sparse": "dense"}], ValueError,
     r"params\[0\]: Optimizer\(sparse='dense'\) is Optimizer\(\)"),
    ([{"params": [SHARED]}, {"params": [np.zeros(1), SHARED[1:]]}], ValueError,
     r"params\[0\]\['params'\]\[0\] and params\[1\]\['params'\]\[1\] share "
     r"memory: each array may appear once"),
])
def test_params_errors(params, exc, match):
    with pytest.raises(exc, match=match):
        numadam.Optimizer("adam", params)


def test_methods_share_the_group_kernel_builder():
    """Each method's group kernel compiles once per rule and flags, whatever
    the number and shapes of the arrays."""
    for method in METHODS[:2]:
        a = numadam.Optimizer(method, [np.ones(3), np.ones((2, 2))], parallel=False)
        b = numadam.Optimizer(method, [np.ones(9), np.ones(1), np.ones((3, 3))],
                              parallel=False)
        assert a._units[0].engine.kernel is b._units[0].engine.kernel


def test_hyperparameters_change_between_steps_as_in_torch():
    """torch's ``param_groups[i]["lr"] = ...`` mid-run, with weight decay
    and betas changed too: the same run as torch.optim.Adam (float64)."""
    torch = pytest.importorskip("torch")
    params = _arrays(SHAPES[:4], np.float64, 8)
    grads = _gradients(SHAPES[:4], np.float64, 20, seed=9)
    mine = [p.copy() for p in params]
    ts = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    t_opt = torch.optim.Adam([dict(params=ts[:2]), dict(params=ts[2:], lr=0.05)],
                             lr=0.01, foreach=False)
    opt = numadam.Optimizer("adam", [dict(params=mine[:2]), dict(params=mine[2:], lr=0.05)],
                            lr=0.01)
    for k, gs in enumerate(grads):
        if k == 7:
            for groups in (t_opt.param_groups, opt.param_groups):
                groups[0]["lr"] = 0.002
                groups[1]["weight_decay"] = 0.1
                groups[1]["betas"] = (0.5, 0.9)
        for t, g in zip(ts, gs):
            t.grad = torch.from_numpy(g.copy())
        t_opt.step()
        opt.step([gs[:2], gs[2:]])
    for p, t in zip(mine, ts):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert opt.param_groups[0]["lr"] == 0.002 == opt.param_groups[0]["learning_rate"]
    assert opt.param_groups[1]["betas"] == (0.5, 0.9)


def test_a_schedule_per_group_and_checked_changes():
    a, b = np.zeros(2), np.zeros(2)
    sched = numadam.schedules.step(1.0, 0.5, 2)
    opt = numadam.Optimizer("sgd", [dict(params=[a], learning_rate=sched),
                                    dict(params=[b])], lr=1.0)
    assert opt.param_groups[0]["learning_rate"] is sched
    for _ in range(4):
        opt.step([[np.ones(2)], [np.ones(2)]])
    rates = [sched(k) for k in range(4)]
    np.testing.assert_allclose(a, -sum(rates), rtol=1e-15)
    np.testing.assert_array_equal(b, -4.0)
    assert rates[0] != rates[-1]
    group = opt.param_groups[1]
    before = opt.state
    for key, value, exc, match in [
            ("lr", -1.0, ValueError, r"param_groups\[1\]: sgd: option 'learning_rate' "
                                     r"must satisfy 0 <= learning_rate, got -1"),
            ("momentum", 0.9, ValueError, r"param_groups\[1\]: changing 'momentum' "
                                          r"changes the state the method keeps"),
            ("momentun", 0.9, TypeError, r"param_groups\[1\] got unknown options: "
                                         r"momentun"),
            ("clip_norm", 1.0, ValueError, "clip_norm belongs to the whole Optimizer"),
            ("params", [a], ValueError, "the arrays of a group are fixed")]:
        with pytest.raises(exc, match=match):
            group[key] = value
    with pytest.raises(TypeError, match="can be set, not removed"):
        del group["lr"]
    assert group["lr"] == 1.0
    opt.step([[np.zeros(2)], [np.ones(2)]])
    np.testing.assert_array_equal(b, -5.0)
    assert [s.step for g in opt.state for s in g] == [s.step + 1 for g in before
                                                      for s in g]
    group.update(lr=0.5, weight_decay=0.0)
    opt.step([[np.zeros(2)], [np.ones(2)]])
    np.testing.assert_array_equal(b, -5.5)
    single = numadam.Optimizer("adam", np.ones(3), lr=0.1)
    assert len(single.param_groups) == 1 and single.param_groups[0]["params"] is single.x


# ------------------------------------------------------------ state dicts --

#: torch.optim's optimizers, with options that switch on their state slots,
#: and numadam's method for each
TORCH_RUNS = [
    ("SGD", "sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adagrad", "adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)),
    ("RMSprop", "rmsprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ("Adadelta", "adadelta", dict(lr=0.5, rho=0.8)),
    ("Adam", "adam", dict(lr=0.01, betas=(0.8, 0.99), amsgrad=True, weight_decay=0.01)),
    ("AdamW", "adamw", dict(lr=0.01, weight_decay=0.1)),
    ("Adamax", "adamax", dict(lr=0.02)),
    ("NAdam", "nadam", dict(lr=0.01, momentum_decay=0.005)),
    ("RAdam", "radam", dict(lr=0.01, weight_decay=0.01, decoupled_weight_decay=True)),
]


@pytest.mark.parametrize("name, method, options", TORCH_RUNS, ids=[r[0] for r in TORCH_RUNS])
def test_a_torch_state_dict_continues_in_numadam_as_in_torch(name, method, options):
    """torch runs 50 steps; its state_dict, loaded into numadam, continues 50
    steps as torch does (float64, 1e-12), over two groups of arrays."""
    torch = pytest.importorskip("torch")
    shapes = [(4, 3), (3,), (5,)]
    params = _arrays(shapes, np.float64, 10)
    grads = _gradients(shapes, np.float64, 100, seed=11)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        ts = [torch.tensor(p.copy(), requires_grad=True) for p in params]
        cls = getattr(torch.optim, name)
        t_opt = cls([dict(params=ts[:2]), dict(params=ts[2:], weight_decay=0.05)],
                    foreach=False, **options)
        for k, gs in enumerate(grads):
            if k == 50:
                saved = copy.deepcopy(t_opt.state_dict())     # torch's is live
                mine = [t.detach().numpy().copy() for t in ts]
            for t, g in zip(ts, gs):
                t.grad = torch.from_numpy(g.copy())
            t_opt.step()
    finally:
        torch.set_default_dtype(old)
    opt = numadam.Optimizer(method, [dict(params=mine[:2]), dict(params=mine[2:])])
    opt.load_state_dict(saved)
    assert opt.param_groups[1]["weight_decay"] == 0.05
    # torch's SGD keeps no step count: a momentum buffer loads as step 1
    assert [s.step for g in opt.state for s in g] == [1 if name == "SGD" else 50] * 3
    for gs in grads[50:]:
        opt.step([gs[:2], gs[2:]])
    for p, t in zip(mine, ts):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-12, atol=1e-14,
                                   err_msg=name)


@pytest.mark.parametrize("method, options", [("adam", dict(amsgrad=True)),
                                             ("nadam", {}), ("sgd", dict(momentum=0.9)),
                                             ("rmsprop", dict(centered=True)),
                                             ("lion", {}), ("sgd", {})])
def test_state_dicts_round_trip_and_continue_bitwise(method, options, tmp_path):
    import pickle

    params = {"w": np.ones((3, 2)), "b": np.zeros(2)}
    grads = [{"w": np.full((3, 2), 0.1 * k), "b": np.full(2, -0.2 * k)} for k in range(8)]
    whole = {k: v.copy() for k, v in params.items()}
    ref = numadam.Optimizer(method, whole, lr=0.01, clip_norm=5.0, **options)
    for g in grads:
        ref.step(g)
    opt = numadam.Optimizer(method, params, lr=0.01, clip_norm=5.0, **options)
    for g in grads[:5]:
        opt.step(g)
    sd = opt.state_dict()
    assert sorted(sd) == ["param_groups", "state"]
    group = sd["param_groups"][0]
    assert group["params"] == [0, 1] and group["lr"] == 0.01 and group["clip_norm"] == 5.0
    assert group["maximize"] is False
    assert sd["state"][0]["step"] == 5 and sd["state"][0]["aux"][0] == 5
    if "beta1" in opt.options:
        assert group["betas"] == (opt.options["beta1"], opt.options["beta2"])
    torch_names = {"adam": ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
                   "nadam": ["exp_avg", "exp_avg_sq", "mu_product"],
                   "sgd": ["momentum_buffer"], "rmsprop": ["square_avg", "grad_avg"],
                   "lion": ["exp_avg"]}[method]
    for key in torch_names:
        assert key in sd["state"][0]
    if method != "sgd" or options:
        assert sd["state"][0][torch_names[0]].shape == (3, 2)
    np.savez(tmp_path / "sd.npz", sd=np.array(sd, dtype=object))
    from_npz = np.load(tmp_path / "sd.npz", allow_pickle=True)["sd"].item()
    for again in (pickle.loads(pickle.dumps(sd)), from_npz):
        assert again.keys() == sd.keys()
        for j, entry in sd["state"].items():
            for key, value in entry.items():
                if value is None:
                    assert again["state"][j][key] is None
                else:
                    np.testing.assert_array_equal(again["state"][j][key], value)
    resumed = {k: v.copy() for k, v in params.items()}
    fresh = numadam.Optimizer(method, resumed, lr=0.5, clip_norm=5.0, **options)
    fresh.load_state_dict(from_npz)
    assert fresh.param_groups[0]["lr"] == 0.01
    for g in grads[5:]:
        fresh.step(g)
    for key in params:
        np.testing.assert_array_equal(resumed[key], whole[key])


def test_load_state_dict_checks_everything_before_changing_anything():
    x = [np.ones(3), np.ones(2)]
    opt = numadam.Optimizer("adam", x, lr=0.1)
    opt.step([np.ones(3), np.ones(2)])
    sd = opt.state_dict()
    target = numadam.Optimizer("adam", [np.ones(3), np.ones(2)], lr=0.2)
    cases = [
        ([], ValueError, "state_dict must be a dict with 'state' and 'param_groups'"),
        (dict(sd, param_groups=[]), ValueError, r"must have 1 group\(s\)"),
        (dict(sd, param_groups=[dict(sd["param_groups"][0], params=[0])]), ValueError,
         r"has 1 parameter\(s\), this Optimizer's group 0 has 2"),
        (dict(sd, param_groups=[dict(sd["param_groups"][0], lrr=1.0)]), TypeError,
         "unknown options: lrr"),
        (dict(sd, param_groups=[dict(sd["param_groups"][0], eps=-1.0)]), ValueError,
         r"param_groups'\]\[0\]: adam: option 'eps'"),
        (dict(sd, param_groups=[dict(sd["param_groups"][0], clip_norm=1.0)]), ValueError,
         "clips to clip_norm=1.0, this Optimizer to None"),
        (dict(sd, param_groups=[dict(sd["param_groups"][0], amsgrad=True)]), ValueError,
         r"has no 'max_exp_avg_sq', which adam with these options keeps"),
        (dict(sd, state={0: dict(sd["state"][0], exp_avg=np.ones(4)), 1: sd["state"][1]}),
         ValueError, r"\['exp_avg'\] must be a real array of 3 elements"),
        (dict(sd, state={0: dict(sd["state"][0], step=-2.0), 1: sd["state"][1]}),
         ValueError, r"'step'\] must be a whole number >= 0"),
        (dict(sd, state={0: sd["state"][0]}), ValueError,
         "the arrays of a parameter group share one step count"),
        (dict(sd, param_groups=[dict(sd["param_groups"][0], maximize="no")]), TypeError,
         "maximize"),
    ]
    for bad, exc, match in cases:
        with pytest.raises(exc, match=match):
            target.load_state_dict(bad)
        assert target.param_groups[0]["lr"] == 0.2 and target.state[0].step == 0
    target.load_state_dict(sd)
    assert target.param_groups[0]["lr"] == 0.1 and target.state[1].step == 1
    np.testing.assert_array_equal(target.state[0].S, opt.state[0].S)


def test_device_arrays_of_any_shape_step_as_the_host():
    cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    if not cuda.is_available():  # pragma: no cover - a broken driver
        pytest.skip("no CUDA GPU and no simulator")
    params = _arrays([(3, 4), (4,)], np.float64, 12)
    host = [p.copy() for p in params]
    dev = [cuda.to_device(p) for p in params]
    h = numadam.Optimizer("adam", host, lr=0.05, clip_norm=1.0)
    d = numadam.Optimizer("adam", dev, lr=0.05, clip_norm=1.0)
    for gs in _gradients([(3, 4), (4,)], np.float64, 3):
        h.step(gs)
        d.step([cuda.to_device(g) for g in gs])
    for x, y in zip(dev, host):
        got = x.copy_to_host()
        assert got.shape == y.shape
        np.testing.assert_allclose(got, y, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match=r"gradient\[0\] must be a device array of shape "
                                         r"\(3, 4\), got shape \(12,\)"):
        d.step([cuda.to_device(np.zeros(12)), cuda.to_device(np.zeros(4))])
