r"""The method declarations.

Every numadam method is declared here once, as a :class:`MethodSpec`: its
name, the rule family that computes it, its options with defaults and allowed
ranges, the options it fixes, its update written as math, and its references.
The front door, option validation, :func:`numadam.show_options`, the method
callables and their docstrings, the kernels and the tests all read these
declarations; adding a method means adding a spec here and, for a new family,
a rule in :mod:`numadam._rules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

from ._options import COMMON_OPTIONS, Option, closest
from ._rules import get_rule

__all__ = ["MethodSpec", "METHODS", "SCIPY_METHODS", "get_spec", "lookup"]


@dataclass(frozen=True)
class MethodSpec:
    """The declaration of one method."""

    name: str
    rule: str
    summary: str
    options: tuple
    math: str
    symbols: str
    references: tuple
    fixed: Mapping = field(default_factory=dict)
    notes: str = ""
    check: Callable | None = None

    def __post_init__(self):
        object.__setattr__(self, "fixed", MappingProxyType(dict(self.fixed)))

    # ------------------------------------------------------------------
    @property
    def option_names(self):
        return tuple(o.name for o in self.options)

    def defaults(self):
        """The default value of every hyperparameter, as a dict."""
        return {o.name: o.default for o in self.options}

    def resolve(self, given):
        """Validate ``given`` hyperparameters and fill in the defaults.

        Returns a dict with every option of the rule family (the fixed ones
        included).  Raises TypeError/ValueError naming the option.
        """
        owner = self.name
        for name in given:
            if name in self.fixed:
                if given[name] != self.fixed[name]:
                    raise ValueError(
                        f"{owner}: option {name!r} is fixed to "
                        f"{self.fixed[name]!r} by this method, got {given[name]!r}")
        values = dict(self.fixed)
        for opt in self.options:
            value = given.get(opt.name, opt.default)
            if opt.name == "learning_rate" and _is_schedule(value):
                values["learning_rate_schedule"] = value
                value = value.lr if hasattr(value, "lr") else opt.default
            values[opt.name] = opt.check(value, owner)
        if self.check is not None:
            self.check(values, owner)
        return values

    def rule_impl(self):
        return get_rule(self.rule)


def _is_schedule(value):
    from .schedules import Schedule

    return isinstance(value, Schedule) or (callable(value) and not isinstance(value, type))


# ---------------------------------------------------------------- options --

def _lr(default):
    return Option("learning_rate", default,
                  "Step size: a float, a :mod:`numadam.schedules` schedule, or a "
                  "Python callable of the step number t (Python loop only).",
                  lower=0.0, symbol=r"\gamma")


def _eps(default):
    return Option("eps", default, "Added to the denominator for numerical "
                  "stability.", lower=0.0, symbol=r"\epsilon")


def _wd(default=0.0, coupled=True):
    how = ("added to the gradient as ``weight_decay * x``" if coupled else
           "decoupled: x is multiplied by ``1 - learning_rate * weight_decay``")
    return Option("weight_decay", default, f"L2 penalty, {how}.", lower=0.0,
                  symbol=r"\lambda")


_BETA1 = Option("beta1", 0.9, "Decay rate of the running mean of gradients.",
                lower=0.0, upper=1.0, upper_open=True, symbol=r"\beta_1")
_BETA2 = Option("beta2", 0.999, "Decay rate of the running mean of squared "
                "gradients.", lower=0.0, upper=1.0, upper_open=True,
                symbol=r"\beta_2")
_AMSGRAD = Option("amsgrad", False, "Use the running maximum of v "
                  "(AMSGrad) in the denominator.", kind="flag")
_DECOUPLED = Option("decoupled_weight_decay", False, "Apply weight decay "
                    "to x directly, as AdamW does, instead of adding it to the "
                    "gradient.", kind="flag")

_WD_MATH = r"""
   \text{if decoupled: } & x_{t-1} \leftarrow x_{t-1}(1 - \gamma\lambda)
       \quad\text{else: } g_t \leftarrow g_t + \lambda x_{t-1} \\"""

_ADAM_MOMENTS = r"""
   m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
   v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\"""

_ADAM_SYMBOLS = (r":math:`\gamma` is ``learning_rate``, :math:`\beta_1, "
                 r"\beta_2` are ``beta1, beta2``, :math:`\epsilon` is ``eps``, "
                 r":math:`\lambda` is ``weight_decay`` and :math:`g_t` the "
                 r"gradient at :math:`x_{t-1}`; :math:`m_0 = v_0 = 0`.")

_KINGMA = ("D. P. Kingma and J. Ba, \"Adam: A Method for Stochastic "
           "Optimization\", ICLR 2015, arXiv:1412.6980.")
_REDDI = ("S. J. Reddi, S. Kale and S. Kumar, \"On the Convergence of Adam and "
          "Beyond\", ICLR 2018.")
_LOSHCHILOV = ("I. Loshchilov and F. Hutter, \"Decoupled Weight Decay "
               "Regularization\", ICLR 2019, arXiv:1711.05101.")


def _check_sgd(values, owner):
    if values["nesterov"] and (values["momentum"] <= 0.0 or values["dampening"] != 0.0):
        raise ValueError(
            f"{owner}: nesterov=True requires momentum > 0 and dampening == 0, "
            f"got momentum={values['momentum']!r}, dampening={values['dampening']!r}")


# ---------------------------------------------------------------- methods --

_ADAM_OPTIONS = (_lr(1e-3), _BETA1, _BETA2, _eps(1e-8), _wd(), _AMSGRAD, _DECOUPLED)

_ADAM_MATH = r"""
.. math::

   \begin{aligned}""" + _WD_MATH + _ADAM_MOMENTS + r"""
   \hat v_t &= \max(\hat v_{t-1}, v_t) \text{ if amsgrad, else } v_t \\
   x_t &= x_{t-1} - \frac{\gamma}{1 - \beta_1^t}\,
          \frac{m_t}{\sqrt{\hat v_t}/\sqrt{1 - \beta_2^t} + \epsilon}
   \end{aligned}
"""

_SPECS = (
    MethodSpec(
        name="sgd",
        rule="sgd",
        summary="Stochastic gradient descent with optional (Nesterov) momentum.",
        options=(
            _lr(1e-3),
            Option("momentum", 0.0, "Momentum factor; 0 keeps no buffer.",
                   lower=0.0, symbol=r"\mu"),
            Option("dampening", 0.0, "Dampening of the momentum buffer's "
                   "gradient term.", lower=0.0, upper=1.0, symbol=r"\tau"),
            Option("nesterov", False, "Nesterov momentum (needs momentum > 0 "
                   "and dampening == 0).", kind="flag"),
            _wd(),
        ),
        math=r"""
.. math::

   \begin{aligned}
   g_t &\leftarrow g_t + \lambda x_{t-1} \\
   b_t &= g_t \text{ if } t = 1, \text{ else } \mu b_{t-1} + (1 - \tau) g_t \\
   d_t &= g_t + \mu b_t \text{ if nesterov, else } b_t
          \quad (d_t = g_t \text{ when } \mu = 0) \\
   x_t &= x_{t-1} - \gamma d_t
   \end{aligned}
""",
        symbols=(r":math:`\gamma` is ``learning_rate``, :math:`\mu` is "
                 r"``momentum``, :math:`\tau` is ``dampening`` and "
                 r":math:`\lambda` is ``weight_decay``."),
        references=(
            "I. Sutskever, J. Martens, G. Dahl and G. Hinton, \"On the "
            "importance of initialization and momentum in deep learning\", "
            "ICML 2013.",
        ),
        check=_check_sgd,
    ),
    MethodSpec(
        name="adagrad",
        rule="adagrad",
        summary="Adagrad: steps scaled by the root of the summed squared gradients.",
        options=(
            _lr(1e-2),
            Option("lr_decay", 0.0, "Learning-rate decay: step t uses "
                   "``learning_rate / (1 + (t - 1) * lr_decay)``.", lower=0.0,
                   symbol=r"\eta"),
            _wd(),
            Option("initial_accumulator_value", 0.0, "Initial value of the "
                   "sum of squared gradients.", lower=0.0, symbol=r"s_0"),
            _eps(1e-10),
        ),
        math=r"""
.. math::

   \begin{aligned}
   g_t &\leftarrow g_t + \lambda x_{t-1} \\
   \tilde\gamma_t &= \gamma / (1 + (t - 1)\eta) \\
   s_t &= s_{t-1} + g_t^2 \\
   x_t &= x_{t-1} - \tilde\gamma_t\, g_t / (\sqrt{s_t} + \epsilon)
   \end{aligned}
""",
        symbols=(r":math:`\gamma` is ``learning_rate``, :math:`\eta` is "
                 r"``lr_decay``, :math:`s_0` is ``initial_accumulator_value``, "
                 r":math:`\epsilon` is ``eps`` and :math:`\lambda` is "
                 r"``weight_decay``."),
        notes=("optax's adagrad starts the sum at 0.1 and puts eps inside the "
               "square root; numadam follows torch.optim."),
        references=(
            "J. Duchi, E. Hazan and Y. Singer, \"Adaptive Subgradient Methods "
            "for Online Learning and Stochastic Optimization\", JMLR 12, 2011.",
        ),
    ),
    MethodSpec(
        name="rmsprop",
        rule="rmsprop",
        summary="RMSprop, optionally centred and with momentum.",
        options=(
            _lr(1e-2),
            Option("alpha", 0.99, "Decay rate of the running mean of squared "
                   "gradients.", lower=0.0, upper=1.0, symbol=r"\alpha"),
            _eps(1e-8),
            _wd(),
            Option("momentum", 0.0, "Momentum factor; 0 keeps no buffer.",
                   lower=0.0, symbol=r"\mu"),
            Option("centered", False, "Normalise by an estimate of the "
                   "gradient's variance instead of its second moment.",
                   kind="flag"),
        ),
        math=r"""
.. math::

   \begin{aligned}
   g_t &\leftarrow g_t + \lambda x_{t-1} \\
   v_t &= \alpha v_{t-1} + (1 - \alpha) g_t^2 \\
   a_t &= \alpha a_{t-1} + (1 - \alpha) g_t, \quad
   \delta_t = \sqrt{v_t - a_t^2} + \epsilon \text{ if centered, else }
   \sqrt{v_t} + \epsilon \\
   b_t &= \mu b_{t-1} + g_t / \delta_t, \quad x_t = x_{t-1} - \gamma b_t
   \quad\text{if } \mu > 0, \text{ else } x_t = x_{t-1} - \gamma g_t/\delta_t
   \end{aligned}
""",
        symbols=(r":math:`\gamma` is ``learning_rate``, :math:`\alpha` is "
                 r"``alpha``, :math:`\mu` is ``momentum``, :math:`\epsilon` is "
                 r"``eps`` and :math:`\lambda` is ``weight_decay``."),
        references=(
            "T. Tieleman and G. Hinton, Lecture 6.5 - RMSProp, COURSERA: Neural "
            "Networks for Machine Learning, 2012.",
            "A. Graves, \"Generating Sequences With Recurrent Neural "
            "Networks\", arXiv:1308.0850, 2013.",
        ),
    ),
    MethodSpec(
        name="adam",
        rule="adam",
        summary="Adam: bias-corrected running means of the gradient and its square.",
        options=_ADAM_OPTIONS,
        math=_ADAM_MATH,
        symbols=_ADAM_SYMBOLS,
        notes=("TensorFlow/Keras, scikit-learn and torch's SparseAdam put eps "
               "outside the bias correction (the 'eps-hat' form); numadam follows "
               "torch.optim.Adam."),
        references=(_KINGMA, _REDDI, _LOSHCHILOV),
    ),
    MethodSpec(
        name="amsgrad",
        rule="adam",
        summary="AMSGrad: Adam with the running maximum of the second moment.",
        options=tuple(o for o in _ADAM_OPTIONS if o.name != "amsgrad"),
        fixed={"amsgrad": True},
        math=_ADAM_MATH.replace(r"\text{ if amsgrad, else } v_t", ""),
        symbols=_ADAM_SYMBOLS + r" :math:`\hat v_0 = 0`; the maximum is over the raw :math:`v_t`.",
        notes=("This is ``adam`` with ``amsgrad=True``. optax's amsgrad takes the "
               "maximum of the bias-corrected v; numadam follows torch.optim."),
        references=(_REDDI, _KINGMA),
    ),
    MethodSpec(
        name="adamw",
        rule="adam",
        summary="AdamW: Adam with decoupled weight decay.",
        options=(_lr(1e-3), _BETA1, _BETA2, _eps(1e-8), _wd(1e-2, coupled=False),
                 _AMSGRAD),
        fixed={"decoupled_weight_decay": True},
        math=_ADAM_MATH.replace(_WD_MATH, r"""
   x_{t-1} &\leftarrow x_{t-1}(1 - \gamma\lambda) \\"""),
        symbols=_ADAM_SYMBOLS,
        notes="This is ``adam`` with ``decoupled_weight_decay=True``.",
        references=(_LOSHCHILOV, _KINGMA, _REDDI),
    ),
    MethodSpec(
        name="adamax",
        rule="adamax",
        summary="Adamax: Adam with the infinity norm in place of the second moment.",
        options=(_lr(2e-3), _BETA1, _BETA2, _eps(1e-8), _wd()),
        math=r"""
.. math::

   \begin{aligned}
   g_t &\leftarrow g_t + \lambda x_{t-1} \\
   m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
   u_t &= \max(\beta_2 u_{t-1}, |g_t| + \epsilon) \\
   x_t &= x_{t-1} - \frac{\gamma}{1 - \beta_1^t}\, \frac{m_t}{u_t}
   \end{aligned}
""",
        symbols=_ADAM_SYMBOLS.replace("v_0", "u_0"),
        references=(_KINGMA,),
    ),
    MethodSpec(
        name="nadam",
        rule="nadam",
        summary="NAdam: Adam with Nesterov momentum and a momentum schedule.",
        options=(_lr(2e-3), _BETA1, _BETA2, _eps(1e-8), _wd(),
                 Option("momentum_decay", 4e-3, "Decay of the momentum "
                        "schedule.", lower=0.0, symbol=r"\psi"),
                 _DECOUPLED),
        math=r"""
.. math::

   \begin{aligned}""" + _WD_MATH + r"""
   \mu_t &= \beta_1\left(1 - \tfrac12\, 0.96^{t\psi}\right), \quad
   P_t = \textstyle\prod_{j=1}^{t} \mu_j \\""" + _ADAM_MOMENTS + r"""
   \delta_t &= \sqrt{v_t / (1 - \beta_2^t)} + \epsilon \\
   x_t &= x_{t-1} - \frac{\gamma(1 - \mu_t)}{1 - P_t}\,\frac{g_t}{\delta_t}
          - \frac{\gamma\mu_{t+1}}{1 - P_t\mu_{t+1}}\,\frac{m_t}{\delta_t}
   \end{aligned}
""",
        symbols=_ADAM_SYMBOLS + r" :math:`\psi` is ``momentum_decay``.",
        notes=("optax's nadam has no momentum schedule and gives different "
               "numbers; numadam follows torch.optim.NAdam."),
        references=(
            "T. Dozat, \"Incorporating Nesterov Momentum into Adam\", ICLR "
            "2016 workshop.",
            _KINGMA,
        ),
    ),
    MethodSpec(
        name="radam",
        rule="radam",
        summary="RAdam: Adam with a rectified adaptive learning rate.",
        options=(_lr(1e-3), _BETA1, _BETA2, _eps(1e-8), _wd(), _DECOUPLED),
        math=r"""
.. math::

   \begin{aligned}""" + _WD_MATH + _ADAM_MOMENTS + r"""
   \rho_\infty &= 2/(1 - \beta_2) - 1, \quad
   \rho_t = \rho_\infty - 2 t \beta_2^t / (1 - \beta_2^t) \\
   r_t &= \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}
                     {(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} \\
   x_t &= x_{t-1} - \gamma\,\frac{m_t}{1 - \beta_1^t}\, r_t\,
          \frac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon}
          \text{ if } \rho_t > 5, \text{ else }
          x_{t-1} - \gamma\,\frac{m_t}{1 - \beta_1^t}
   \end{aligned}
""",
        symbols=_ADAM_SYMBOLS,
        references=(
            "L. Liu, H. Jiang, P. He, W. Chen, X. Liu, J. Gao and J. Han, \"On "
            "the Variance of the Adaptive Learning Rate and Beyond\", ICLR 2020.",
            _KINGMA,
        ),
    ),
)

#: The numadam methods, by lower-case name, in documentation order.
METHODS = MappingProxyType({s.name: s for s in _SPECS})

#: scipy.optimize.minimize's own methods, passed to scipy unchanged.
SCIPY_METHODS = ("Nelder-Mead", "Powell", "CG", "BFGS", "Newton-CG", "L-BFGS-B",
                 "TNC", "COBYLA", "COBYQA", "SLSQP", "trust-constr", "dogleg",
                 "trust-ncg", "trust-exact", "trust-krylov")
_SCIPY_LOWER = {m.lower(): m for m in SCIPY_METHODS}


def get_spec(name):
    """The spec of a numadam method (case-insensitive), or None."""
    return METHODS.get(name.lower()) if isinstance(name, str) else None


def lookup(method):
    """Classify a method name: ``("numadam", spec)`` or ``("scipy", name)``.

    Raises ValueError for an unknown name, listing the valid names and the
    closest match, and TypeError for something that is not a string.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a string or a callable, got "
                        f"{method!r} ({type(method).__name__})")
    key = method.lower()
    if key in METHODS:
        return "numadam", METHODS[key]
    if key in _SCIPY_LOWER:
        return "scipy", method
    close = closest(key, list(METHODS) + list(SCIPY_METHODS))
    hint = f" Did you mean {close!r}?" if close else ""
    raise ValueError(
        f"Unknown method {method!r}.{hint} Valid methods are numadam's "
        f"{', '.join(METHODS)} and scipy's {', '.join(SCIPY_METHODS)} "
        "(case-insensitive).")


def common_option_names():
    return tuple(o.name for o in COMMON_OPTIONS)
