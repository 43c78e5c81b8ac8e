"""The paper's experiments: against scikit-learn's optimum, and the command."""

import subprocess
import sys

import numpy as np
import pytest

import numadam
from numadam import experiments, schedules

sklearn = pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits_problem():
    """Standardised digits, softmax regression with sklearn's L2 penalty, and
    the optimum LogisticRegression(lbfgs) finds."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits(return_X_y=True)
    std = X.std(axis=0)
    X = (X - X.mean(axis=0)) / np.where(std == 0, 1.0, std)
    y = y.astype(np.int64)
    C = 1.0
    n, d = X.shape
    lam = 1.0 / (C * n)
    clf = LogisticRegression(C=C, tol=1e-14, max_iter=100_000).fit(X, y)
    w_sk = np.concatenate([clf.coef_.T.ravel(), clf.intercept_])
    args = (np.ascontiguousarray(X), y, lam, 10)
    f_star, g_star = experiments.logistic_fg(w_sk, *args)
    assert np.max(np.abs(g_star)) < 1e-6          # sklearn did converge
    return args, f_star, d * 10 + 10


def test_our_objective_is_sklearns_divided_by_C_n(digits_problem):
    args, f_star, p = digits_problem
    X, y, lam, k = args
    rng = np.random.default_rng(0)
    w = rng.standard_normal(p) * 0.1
    W, b = w[:-k].reshape(-1, k), w[-k:]
    Z = X @ W + b
    Z -= Z.max(axis=1, keepdims=True)
    logp = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
    sk_objective = -logp[np.arange(len(y)), y].sum() + 0.5 * np.sum(W * W) / 1.0
    f, _ = experiments.logistic_fg(w, *args)
    assert f == pytest.approx(sk_objective / len(y), rel=1e-12)


@pytest.mark.slow
def test_full_batch_adam_with_cosine_reaches_sklearns_optimum(digits_problem):
    args, f_star, p = digits_problem
    res = numadam.minimize(experiments.logistic_fg, np.zeros(p), args=args, jac=True,
                           method="adam",
                           options={"learning_rate": schedules.cosine(0.05, 5000),
                                    "maxiter": 5000, "gtol": 0})
    assert abs(res.fun - f_star) / f_star < 1e-6


@pytest.mark.slow
def test_minibatch_adam_with_decaying_schedule_reaches_it_within_1000_epochs(
        digits_problem):
    args, f_star, p = digits_problem
    n = args[0].shape[0]
    steps = 1000 * -(-n // 128)
    res = numadam.minimize(experiments.logistic_fg, np.zeros(p), args=args, jac=True,
                           method="adam",
                           options={"batch_size": 128, "epochs": 1000, "seed": 0,
                                    "learning_rate": schedules.cosine(0.01, steps),
                                    "gtol": 0, "compiled": False})
    assert res.nit == steps
    assert abs(res.fun - f_star) / f_star < 1e-3


@pytest.mark.parametrize("fg, data, extra", [
    (experiments.logistic_fg, "dense", (1e-3, 3)),
    (experiments.mlp_fg, "dense", (1e-3, 4, 3)),
    (experiments.logistic_ell_fg, "ell", (1e-3, 3, 12)),
    (experiments.mlp_ell_fg, "ell", (1e-3, 4, 3, 12)),
])
def test_model_gradients_match_finite_differences(fg, data, extra):
    rng = np.random.default_rng(1)
    if data == "dense":
        inputs = (rng.standard_normal((7, 5)),)
        d = 5
    else:
        inputs = (rng.integers(0, 12, (7, 4)).astype(np.int32), rng.random((7, 4)))
        d = 12
    y = rng.integers(0, 3, 7).astype(np.int64)
    hidden = extra[1] if fg in (experiments.mlp_fg, experiments.mlp_ell_fg) else None
    p = d * 3 + 3 if hidden is None else d * hidden + hidden + hidden * 3 + 3
    w = rng.standard_normal(p) * 0.5
    args = inputs + (y,) + extra
    f, g = fg(w, *args)
    h = 1e-6
    fd = np.array([(fg(w + h * e, *args)[0] - fg(w - h * e, *args)[0]) / (2 * h)
                   for e in np.eye(p)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_bag_of_words_is_sparse_with_rare_words():
    data = experiments.bag_of_words(n_docs=2000, seed=3)
    idx, val, y = data.train
    assert idx.dtype == np.int32 and idx.shape == val.shape
    counts = np.bincount(idx[val > 0].ravel(), minlength=data.n_features)
    assert np.mean(counts <= 5) > 0.5            # most words are rare
    np.testing.assert_allclose(np.linalg.norm(val, axis=1), 1.0)
    assert set(np.unique(y)) == {0, 1}


def test_compare_command_prints_a_table_and_writes_the_plot(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curves.png"
    proc = subprocess.run(
        [sys.executable, "-m", "numadam", "compare", "--problem", "digits-logistic",
         "--methods", "adam", "sgd", "--epochs", "3", "--out", str(out)],
        capture_output=True, text=True, check=True)
    lines = proc.stdout.splitlines()
    rows = [ln for ln in lines if ln.startswith("digits logistic regression")]
    assert len(rows) == 2
    for row in rows:
        loss, acc, ms = (float(v) for v in row.split()[-3:])
        assert 0 < loss < 2.5 and 0.5 < acc <= 1.0 and ms > 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_with_an_empty_out_writes_no_plot(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "numadam", "compare", "--problem", "digits-logistic",
         "--methods", "adam", "--epochs", "1", "--out", ""],
        capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "digits logistic regression" in proc.stdout
    assert "plot" not in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_model_losses_are_taken_at_read_only_parameters():
    # the type minimize passes its objective, so that a model compiles once
    from dataclasses import replace

    model = experiments.logistic(experiments.digits())
    seen = []

    def fg(w, *args):
        seen.append(w.flags.writeable)
        return model.fg(w, *args)

    loss = replace(model, fg=fg).loss(model.x0.copy())
    assert seen == [False]
    assert loss == model.fg(model.x0, *model.args)[0]


@pytest.mark.parametrize("argv, message", [
    (["compare", "--batch-size", "0"], "argument --batch-size: must be an integer >= 1, "
                                       "got '0'"),
    (["compare", "--epochs", "0"], "argument --epochs: must be an integer >= 1, got '0'"),
    (["compare", "--seed", "-1"], "argument --seed: must be an integer >= 0, got '-1'"),
    (["sparse", "--learning-rate", "nan"], "argument --learning-rate: must be a number "
                                           "> 0.0, got 'nan'"),
    (["--cond", "0.5"], "argument --cond: must be a number >= 1.0, got '0.5'"),
])
def test_the_command_line_refuses_bad_numbers_before_running(argv, message, capsys):
    from numadam.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_ctrl_c_ends_the_command_line_with_status_130(monkeypatch, capsys):
    import numadam.__main__ as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_demo", interrupted)
    assert cli.main([]) == 130
    assert "interrupted (Ctrl-C)" in capsys.readouterr().err


def test_the_command_lines_help_is_plain_text_and_every_option_has_help(capsys):
    import argparse

    from numadam.__main__ import build_parser

    parser = build_parser()
    parsers = [parser] + [p for a in parser._actions
                          if isinstance(a, argparse._SubParsersAction)
                          for p in a.choices.values()]
    assert len(parsers) == 4
    for p in parsers:
        for action in p._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, (p.prog, action.dest)
        text = p.format_help()
        assert "``" not in text and ":ref:" not in text, p.prog
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"numadam {numadam.__version__}"


@pytest.mark.parametrize("command", ["compare", "sparse"])
def test_a_plot_without_matplotlib_is_refused_before_training(command, monkeypatch,
                                                              capsys):
    import numadam.__main__ as cli
    from numadam import experiments as exp

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    trained = []
    monkeypatch.setattr(exp, "run_comparison", lambda **kw: trained.append(kw))
    monkeypatch.setattr(exp, "sparse_comparison", lambda **kw: trained.append(kw))
    assert cli.main([command, "--out", "curves.png"]) == 2
    assert trained == []
    err = capsys.readouterr().err
    assert "--out 'curves.png' needs matplotlib" in err and "--out ''" in err
