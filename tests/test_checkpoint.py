"""Checkpoints: a run's state written atomically, and numadam.resume
continuing it bitwise as if it had never stopped, after a crash or SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import numadam
from numadam import schedules
from numadam._checkpoint import FORMAT, read

from test_stochastic import _least_squares, ls_fun, ls_fun_nb, ls_jac, ls_jac_nb

A, B = _least_squares(n=200, d=5)
N = 50


class Crash(Exception):
    pass


def crash_at(step):
    def callback(intermediate_result):
        if intermediate_result.nit == step:
            raise Crash
    return callback


def noisy_fun(x, rng):
    return 0.5 * float(x @ x)


def sparse_jac(x, rng):
    idx = rng.choice(N, 5, replace=False)
    return idx, x[idx] + 0.1


def dense_jac(x, rng):
    return x + 0.01 * rng.standard_normal(N)


def dense_jac_out(x, rng, out):
    out[:] = x + 0.01 * rng.standard_normal(N)


X_SPARSE = np.linspace(-1.0, 1.0, N)

# name: (fun, jac, args, x0, options)
CASES = {
    "python": (ls_fun, ls_jac, (A, B), np.zeros(5), {}),
    "compiled": (ls_fun_nb, ls_jac_nb, (A, B), np.zeros(5), {}),
    "minibatch history average": (ls_fun, ls_jac, (A, B), np.zeros(5),
                                  dict(batch_size=9, seed=2, history="step",
                                       average="polyak")),
    "compiled minibatch plateau": (
        ls_fun_nb, ls_jac_nb, (A, B), np.zeros(5),
        dict(batch_size=9, seed=2, method="nadam",
             learning_rate=schedules.reduce_on_plateau(1e-2, patience=5))),
    "sparse lazy": (noisy_fun, sparse_jac, (numadam.RNG,), X_SPARSE,
                    dict(sparse="lazy", seed=4, learning_rate=1e-2)),
    "sparse catchup": (noisy_fun, sparse_jac, (numadam.RNG,), X_SPARSE,
                       dict(sparse="catchup", seed=4, learning_rate=1e-2)),
    "jac_out, smoothed tests": (noisy_fun, dense_jac_out, (numadam.RNG,), X_SPARSE,
                                dict(jac_out=True, seed=4, smoothing=0.9, patience=20,
                                     ftol=1e-12)),
}


def _run(name, **options):
    fun, jac, args, x0, opts = CASES[name]
    opts = dict(dict(gtol=0.0, learning_rate=1e-3, maxiter=1000), **opts)
    method = opts.pop("method", "adam")
    callback = options.pop("callback", None)
    return numadam.minimize(fun, x0, args=args, jac=jac, method=method,
                            callback=callback, options=dict(opts, **options))


def _same(a, b):
    assert np.array_equal(a.x, b.x)
    assert (a.fun, a.nit, a.nfev, a.njev, a.status, a.message) == \
        (b.fun, b.nit, b.nfev, b.njev, b.status, b.message)
    np.testing.assert_array_equal(a.jac, b.jac)
    assert a.state == b.state
    for key in ("history", "x_last"):
        if key in b:
            if key == "history":
                for k in b.history:
                    np.testing.assert_array_equal(a.history[k], b.history[k])
            else:
                np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("name", list(CASES))
def test_a_run_resumed_after_a_crash_is_the_uninterrupted_run_bitwise(name, tmp_path):
    path = tmp_path / "run.npz"
    whole = _run(name)
    # checkpoints leave the run as it was
    _same(_run(name, checkpoint=path, checkpoint_every=100), whole)
    os.remove(path)
    with pytest.raises(Crash):
        _run(name, checkpoint=path, checkpoint_every=100, callback=crash_at(537))
    arrays, meta = read(path)
    assert meta["format"] == FORMAT and meta["k"] == 500
    fun, jac, args, _, _ = CASES[name]
    _same(numadam.resume(path, fun, args=args, jac=jac), whole)


def test_the_same_call_with_the_checkpoint_as_state_goes_on(tmp_path):
    path = tmp_path / "run.npz"
    opts = dict(gtol=0.0, learning_rate=1e-3, maxiter=1000, batch_size=9, seed=2,
                checkpoint=path, checkpoint_every=100)
    with pytest.raises(Crash):
        numadam.minimize(ls_fun_nb, np.zeros(5), args=(A, B), jac=ls_jac_nb,
                         options=opts, callback=crash_at(537))
    res = numadam.minimize(ls_fun_nb, np.zeros(5), args=(A, B), jac=ls_jac_nb,
                           options=dict(opts, state=str(path)))
    _same(res, _run("compiled", batch_size=9, seed=2))
    with pytest.raises(FileNotFoundError, match="which is not a file"):
        numadam.minimize(ls_fun_nb, np.zeros(5), args=(A, B), jac=ls_jac_nb,
                         options=dict(opts, state=tmp_path / "none.npz"))


def test_checkpoints_by_seconds(tmp_path):
    path = tmp_path / "run.npz"

    def slow(x, A, b):
        time.sleep(0.002)
        return ls_fun(x, A, b)

    opts = dict(gtol=0.0, learning_rate=1e-3, maxiter=300, checkpoint=path,
                checkpoint_every=0.05)
    with pytest.raises(Crash):
        numadam.minimize(slow, np.zeros(5), args=(A, B), jac=ls_jac, options=opts,
                         callback=crash_at(250))
    k = read(path)[1]["k"]
    assert 150 <= k < 250                      # written every 25 steps or so
    res = numadam.resume(path, slow, args=(A, B), jac=ls_jac)
    whole = numadam.minimize(ls_fun, np.zeros(5), args=(A, B), jac=ls_jac,
                             options=dict(gtol=0.0, learning_rate=1e-3, maxiter=300))
    assert np.array_equal(res.x, whole.x) and res.nit == 300


def test_the_file_is_an_npz_with_a_json_description(tmp_path):
    path = tmp_path / "run.npz"
    _run("compiled", checkpoint=str(path), checkpoint_every=400)
    with np.load(path) as data:
        meta = json.loads(str(data["meta"][()]))
        assert {"x", "W", "P", "G0", "G1"} <= set(data.files)
        np.testing.assert_array_equal(data["x"].shape, (5,))
    assert meta["format"] == "numadam-checkpoint-1" and meta["k"] == 800
    assert meta["run"]["method"] == "adam" and meta["options"]["maxiter"] == 1000
    assert not os.path.exists(str(path) + ".tmp")


def test_bad_checkpoint_options_and_files_are_refused(tmp_path):
    with pytest.raises(TypeError, match="option 'checkpoint_every' must be an integer "
                                        ">= 1 \\(steps\\) or a float > 0"):
        _run("python", checkpoint=tmp_path / "a.npz", checkpoint_every=True)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="option 'checkpoint_every'"):
            _run("python", checkpoint=tmp_path / "a.npz", checkpoint_every=bad)
    with pytest.raises(TypeError, match="option 'checkpoint' must be a file path"):
        _run("python", checkpoint=3)
    with pytest.raises(ValueError, match="which is not a directory"):
        _run("python", checkpoint=tmp_path / "missing" / "a.npz")
    with pytest.raises(ValueError, match="must name a file"):
        _run("python", checkpoint=tmp_path)
    not_one = tmp_path / "other.npz"
    np.savez(not_one, x=np.zeros(3))
    with pytest.raises(ValueError, match="is not a numadam checkpoint"):
        numadam.resume(not_one, ls_fun, args=(A, B), jac=ls_jac)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="is not a numadam checkpoint"):
        numadam.resume(tmp_path / "text.npz", ls_fun, args=(A, B), jac=ls_jac)


def test_a_resume_must_be_the_same_kind_of_run(tmp_path):
    path = tmp_path / "run.npz"
    _run("minibatch history average", checkpoint=path, checkpoint_every=100)
    fun, jac, _, _, _ = CASES["minibatch history average"]
    with pytest.raises(ValueError, match="the checkpoint holds a run with rows=\\[200, 9\\]"):
        numadam.resume(path, fun, args=(A[:100], B[:100]), jac=jac)
    with pytest.raises(ValueError, match="with bounded=False"):
        numadam.resume(path, fun, args=(A, B), jac=jac, bounds=[(-1, 1)] * 5)


def test_a_resume_keeps_the_runs_hyperparameters_and_bounds(tmp_path):
    path = tmp_path / "run.npz"
    bounds = [(-0.2, 0.2)] * 5
    numadam.minimize(ls_fun, np.zeros(5), args=(A, B), jac=ls_jac, bounds=bounds,
                     options=dict(maxiter=50, checkpoint=path, checkpoint_every=20))
    for change in ({"beta1": 0.8}, {"eps": 1e-6}, {"maximize": True}):
        with pytest.raises(ValueError, match="other hyperparameters"):
            numadam.resume(path, ls_fun, args=(A, B), jac=ls_jac, bounds=bounds,
                           options=change)
    with pytest.raises(ValueError, match="other bounds"):
        numadam.resume(path, ls_fun, args=(A, B), jac=ls_jac, bounds=[(-0.3, 0.2)] * 5)
    assert numadam.resume(path, ls_fun, args=(A, B), jac=ls_jac, bounds=bounds,
                          options={"maxiter": 80}).nit == 80


def test_a_checkpoint_that_cannot_be_written_does_not_end_the_run(
        tmp_path, monkeypatch):
    from numadam import _checkpoint

    def full_disk(path, arrays, meta):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_checkpoint, "write", full_disk)
    with pytest.warns(RuntimeWarning, match="could not write the checkpoint .* at step "
                                            "100 .*No space left on device.*the run goes"):
        res = _run("python", checkpoint=tmp_path / "run.npz", checkpoint_every=100)
    _same(res, _run("python"))


def test_device_runs_neither_write_nor_resume_checkpoints(tmp_path):
    path = tmp_path / "run.npz"
    _run("python", checkpoint=path, checkpoint_every=100)
    with pytest.raises(ValueError, match="device runs neither write nor resume"):
        numadam.resume(path, ls_fun, args=(A, B), jac=ls_jac, options={"device": "cuda"})
    cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    if not cuda.is_available():  # pragma: no cover - a broken driver
        pytest.skip("no CUDA GPU and no simulator")
    with pytest.raises(ValueError, match="option 'checkpoint' is not supported by "
                                         "device runs"):
        numadam.minimize(lambda x: 0.0, cuda.to_device(np.zeros(3)),
                         jac=lambda x: x, options={"checkpoint": str(path)})


def test_a_python_learning_rate_must_be_given_again(tmp_path):
    path = tmp_path / "run.npz"

    def rate(k):
        return 1e-3 / (1 + k) ** 0.5

    with pytest.raises(Crash):
        numadam.minimize(ls_fun, np.zeros(5), args=(A, B), jac=ls_jac,
                         callback=crash_at(150),
                         options=dict(gtol=0.0, maxiter=300, learning_rate=rate,
                                      checkpoint=path, checkpoint_every=100))
    with pytest.raises(ValueError, match="option 'learning_rate', which a checkpoint "
                                         "cannot hold"):
        numadam.resume(path, ls_fun, args=(A, B), jac=ls_jac)
    res = numadam.resume(path, ls_fun, args=(A, B), jac=ls_jac,
                         options={"learning_rate": rate})
    whole = numadam.minimize(ls_fun, np.zeros(5), args=(A, B), jac=ls_jac,
                             options=dict(gtol=0.0, maxiter=300, learning_rate=rate))
    assert np.array_equal(res.x, whole.x)


#: The killed run: started, then SIGKILL at a random moment.
CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import numadam
    sys.path.insert(0, {tests!r})
    from test_checkpoint import killed_run
    killed_run(sys.argv[1], int(sys.argv[2]), warm=True)
    print("started", flush=True)
    killed_run(sys.argv[1], int(sys.argv[2]))
""")


def killed_run(path, case, warm=False):
    """The run the SIGKILL test kills (``case`` 0: full batch, 1: minibatch),
    or its reference (``path`` None)."""
    opts = dict(gtol=0.0, learning_rate=1e-4, maxiter=3_000 if warm else 600_000)
    if case == 1:
        opts.update(batch_size=7, seed=5, history="step")
    if path is not None and not warm:
        opts.update(checkpoint=path, checkpoint_every=20_011)
    return numadam.minimize(ls_fun_nb, np.zeros(5), args=(A, B), jac=ls_jac_nb,
                            method="amsgrad" if case else "adam", options=opts)


def _kill_and_resume(tmp_path, kills):
    here = os.path.dirname(os.path.abspath(__file__))
    whole = [killed_run(None, case) for case in (0, 1)]
    rng = np.random.default_rng(11)
    resumed = killed = 0
    for trial in range(kills):
        case = trial % 2
        path = tmp_path / f"kill{trial}.npz"
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD.format(tests=here), str(path), str(case)],
            stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "started"
            time.sleep(float(rng.uniform(0.0, 0.8)))
            child.send_signal(signal.SIGKILL)
        finally:
            killed += child.wait(60) == -signal.SIGKILL     # not finished first
            child.stdout.close()
        if not path.exists():
            continue                     # killed before its first checkpoint
        read(path)                       # whole, never a part of one
        res = numadam.resume(path, ls_fun_nb, args=(A, B), jac=ls_jac_nb)
        _same(res, whole[case])
        resumed += 1
    assert killed == kills
    return resumed


def test_sigkill_then_resume_gives_the_uninterrupted_run(tmp_path):
    assert _kill_and_resume(tmp_path, 4) >= 2


@pytest.mark.slow
def test_sigkill_at_twenty_random_moments(tmp_path):
    assert _kill_and_resume(tmp_path, 20) >= 14
