"""An independent NumPy reference of every update rule (the test oracle).

Written from FORMULAS.md alone: one vectorised NumPy step per method, scalars
computed per step as Python floats (``beta ** t``), element arithmetic in the
array's dtype. Defaults are spelled out here again on purpose, so that a
wrong default in numadam's declarations fails the parity tests.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULTS = {
    "sgd": dict(learning_rate=1e-3, momentum=0.0, dampening=0.0, nesterov=False,
                weight_decay=0.0),
    "adagrad": dict(learning_rate=1e-2, lr_decay=0.0, weight_decay=0.0,
                    initial_accumulator_value=0.0, eps=1e-10),
    "rmsprop": dict(learning_rate=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
                    momentum=0.0, centered=False),
    "adam": dict(learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 weight_decay=0.0, amsgrad=False, decoupled_weight_decay=False,
                 bias_correction=True),
    "amsgrad": dict(learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.0, amsgrad=True, decoupled_weight_decay=False,
                    bias_correction=True),
    "adamw": dict(learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                  weight_decay=1e-2, amsgrad=False, decoupled_weight_decay=True,
                  bias_correction=True),
    "adamax": dict(learning_rate=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                   weight_decay=0.0, bias_correction=True),
    "nadam": dict(learning_rate=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                  weight_decay=0.0, momentum_decay=4e-3,
                  decoupled_weight_decay=False, bias_correction=True),
    "radam": dict(learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                  weight_decay=0.0, decoupled_weight_decay=False, bias_correction=True),
    "adadelta": dict(learning_rate=1.0, rho=0.9, eps=1e-6, weight_decay=0.0),
    "lion": dict(learning_rate=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.0),
}


def clip_grad_norm(grads, clip_norm):
    """torch.nn.utils.clip_grad_norm_ written from its formula (FORMULAS.md,
    "Gradient clipping by global norm"): the arrays ``grads`` scaled by
    ``min(1, clip_norm / (n + 1e-6))``, ``n`` the L2 norm of all of them
    together, summed here in float64 with NumPy; each scaled in its own
    dtype by the factor rounded to it. Returns ``(scaled, factor)``."""
    n = math.sqrt(sum(float(np.sum(np.square(np.asarray(g, dtype=np.float64))))
                      for g in grads))
    factor = min(1.0, clip_norm / (n + 1e-6))
    return [np.asarray(g) * np.asarray(g).dtype.type(factor) for g in grads], factor


class Reference:
    """``Reference(method, x0, **options)``; ``step(g)`` updates ``self.x``.

    ``clip_norm`` clips each gradient first (:func:`clip_grad_norm`)."""

    def __init__(self, method, x0, clip_norm=None, **options):
        self.method = method
        self.clip_norm = clip_norm
        self.o = dict(DEFAULTS[method])
        unknown = set(options) - set(self.o)
        if unknown:
            raise KeyError(unknown)
        self.o.update(options)
        self.x = np.array(x0, copy=True)
        self.dt = self.x.dtype.type
        self.t = 0
        self.state = {}
        self.mu_product = 1.0
        if method == "adagrad":
            self.state["s"] = np.full_like(self.x, self.o["initial_accumulator_value"])

    def _zeros(self, name):
        if name not in self.state:
            self.state[name] = np.zeros_like(self.x)
        return self.state[name]

    def step(self, g):
        g = np.asarray(g, dtype=self.x.dtype)
        if self.clip_norm is not None:
            g = clip_grad_norm([g], self.clip_norm)[0][0]
        self.t += 1
        fn = {"sgd": self._sgd, "adagrad": self._adagrad, "rmsprop": self._rmsprop,
              "adam": self._adam, "amsgrad": self._adam, "adamw": self._adam,
              "adamax": self._adamax, "nadam": self._nadam,
              "radam": self._radam, "adadelta": self._adadelta,
              "lion": self._lion}[self.method]
        fn(g)
        return self.x

    # ------------------------------------------------------------ rules --
    def _sgd(self, g):
        o, dt, x, t = self.o, self.dt, self.x, self.t
        g = g + dt(o["weight_decay"]) * x
        if o["momentum"] != 0:
            if t == 1:
                b = g.copy()
            else:
                b = dt(o["momentum"]) * self.state["b"] + dt(1 - o["dampening"]) * g
            self.state["b"] = b
            d = g + dt(o["momentum"]) * b if o["nesterov"] else b
        else:
            d = g
        self.x = x - dt(o["learning_rate"]) * d

    def _adagrad(self, g):
        o, dt, x, t = self.o, self.dt, self.x, self.t
        g = g + dt(o["weight_decay"]) * x
        clr = o["learning_rate"] / (1 + (t - 1) * o["lr_decay"])
        s = self.state["s"] + g * g
        self.state["s"] = s
        self.x = x - dt(clr) * g / (np.sqrt(s) + dt(o["eps"]))

    def _rmsprop(self, g):
        o, dt, x = self.o, self.dt, self.x
        alpha, eps, lr = dt(o["alpha"]), dt(o["eps"]), dt(o["learning_rate"])
        g = g + dt(o["weight_decay"]) * x
        v = alpha * self._zeros("v") + dt(1 - o["alpha"]) * (g * g)
        self.state["v"] = v
        if o["centered"]:
            a = alpha * self._zeros("a") + dt(1 - o["alpha"]) * g
            self.state["a"] = a
            den = np.sqrt(v - a * a) + eps
        else:
            den = np.sqrt(v) + eps
        if o["momentum"] > 0:
            b = dt(o["momentum"]) * self._zeros("b") + g / den
            self.state["b"] = b
            self.x = x - lr * b
        else:
            self.x = x - lr * g / den

    def _weight_decay(self, x, g, decoupled):
        o, dt = self.o, self.dt
        if decoupled:
            return x * dt(1 - o["learning_rate"] * o["weight_decay"]), g
        return x, g + dt(o["weight_decay"]) * x

    def _moments(self, g):
        o, dt = self.o, self.dt
        m = dt(o["beta1"]) * self._zeros("m") + dt(1 - o["beta1"]) * g
        v = dt(o["beta2"]) * self._zeros("v") + dt(1 - o["beta2"]) * (g * g)
        self.state["m"], self.state["v"] = m, v
        return m, v

    def _corrections(self):
        """``(1 - beta1**t, 1 - beta2**t)``, or ``(1, 1)`` without bias
        correction (the Adam paper's ablation)."""
        o, t = self.o, self.t
        if not o["bias_correction"]:
            return 1.0, 1.0
        return 1 - o["beta1"] ** t, 1 - o["beta2"] ** t

    def _adam(self, g):
        o, dt = self.o, self.dt
        x, g = self._weight_decay(self.x, g, o["decoupled_weight_decay"])
        m, v = self._moments(g)
        bc1, bc2 = self._corrections()
        if o["amsgrad"]:
            vv = np.maximum(self._zeros("vmax"), v)
            self.state["vmax"] = vv
        else:
            vv = v
        self.x = x - dt(o["learning_rate"] / bc1) * m / (
            np.sqrt(vv) / dt(math.sqrt(bc2)) + dt(o["eps"]))

    def _adamax(self, g):
        o, dt, x = self.o, self.dt, self.x
        g = g + dt(o["weight_decay"]) * x
        m = dt(o["beta1"]) * self._zeros("m") + dt(1 - o["beta1"]) * g
        u = np.maximum(dt(o["beta2"]) * self._zeros("u"), np.abs(g) + dt(o["eps"]))
        self.state["m"], self.state["u"] = m, u
        bc1, _ = self._corrections()
        self.x = x - dt(o["learning_rate"] / bc1) * m / u

    def _nadam(self, g):
        o, dt, t = self.o, self.dt, self.t
        x, g = self._weight_decay(self.x, g, o["decoupled_weight_decay"])
        beta1, psi, lr = o["beta1"], o["momentum_decay"], o["learning_rate"]
        mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_t1 = beta1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        self.mu_product *= mu_t
        P = self.mu_product
        m, v = self._moments(g)
        _, bc2 = self._corrections()
        den = np.sqrt(v / dt(bc2)) + dt(o["eps"])
        on = o["bias_correction"]
        self.x = (x - dt(lr * (1 - mu_t) / ((1 - P) if on else 1)) * g / den
                  - dt(lr * mu_t1 / ((1 - P * mu_t1) if on else 1)) * m / den)

    def _radam(self, g):
        o, dt, t = self.o, self.dt, self.t
        x, g = self._weight_decay(self.x, g, o["decoupled_weight_decay"])
        m, v = self._moments(g)
        beta2, lr = o["beta2"], dt(o["learning_rate"])
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * beta2 ** t / (1 - beta2 ** t)
        bc1, bc2 = self._corrections()
        bc1 = dt(bc1)
        if rho_t > 5:
            r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                          / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            self.x = x - lr * (m / bc1) * dt(r) * dt(math.sqrt(bc2)) / (
                np.sqrt(v) + dt(o["eps"]))
        else:
            self.x = x - lr * m / bc1

    def _adadelta(self, g):
        o, dt, x = self.o, self.dt, self.x
        rho, eps = dt(o["rho"]), dt(o["eps"])
        g = g + dt(o["weight_decay"]) * x
        u = rho * self._zeros("u") + dt(1 - o["rho"]) * g * g
        a = self._zeros("a")
        d = np.sqrt(a + eps) / np.sqrt(u + eps) * g
        self.state["u"] = u
        self.state["a"] = rho * a + dt(1 - o["rho"]) * d * d
        self.x = x - dt(o["learning_rate"]) * d

    def _lion(self, g):
        o, dt, x = self.o, self.dt, self.x
        b1, b2 = dt(o["beta1"]), dt(o["beta2"])
        m = self._zeros("m")
        c = dt(1 - o["beta1"]) * g + b1 * m
        self.x = x - dt(o["learning_rate"]) * (np.sign(c) + dt(o["weight_decay"]) * x)
        self.state["m"] = dt(1 - o["beta2"]) * g + b2 * m


def run(method, x0, grad, steps, **options):
    """Take ``steps`` reference steps with gradients ``grad(x)``."""
    ref = Reference(method, x0, **options)
    for _ in range(steps):
        ref.step(grad(ref.x))
    return ref


class SparseAdamReference:
    """torch.optim.SparseAdam's rule (FORMULAS.md, "lazy semantics"), written
    from the formulas: only the coordinates with a gradient move."""

    def __init__(self, x0, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        self.x = np.array(x0, dtype=np.float64, copy=True)
        self.m = np.zeros_like(self.x)
        self.v = np.zeros_like(self.x)
        self.lr, self.b1, self.b2, self.eps = lr, beta1, beta2, eps
        self.t = 0

    def step(self, indices, values):
        idx = np.asarray(indices)
        g = np.zeros_like(self.x)
        np.add.at(g, idx, values)              # duplicates are summed
        rows = np.unique(idx)
        g_rows = g[rows]
        self.t += 1
        b1, b2 = self.b1, self.b2
        self.m[rows] = self.m[rows] + (g_rows - self.m[rows]) * (1 - b1)
        self.v[rows] = self.v[rows] + (g_rows * g_rows - self.v[rows]) * (1 - b2)
        step_size = self.lr * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        move = step_size * (self.m[rows] / (np.sqrt(self.v[rows]) + self.eps))
        self.x[rows] = self.x[rows] - move
        return self.x
