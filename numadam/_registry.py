r"""The method table: every numadam method, declared once.

Each method is a :class:`MethodSpec`: its name, the rule that computes it
(a module of :mod:`numadam._rules`), its options with defaults and allowed
ranges, the options it fixes, the sparse modes it offers, its update written
as math, its references, and the settings its examples, its demo runs and
its tests start from. Everything that lists methods reads :data:`METHODS`
(public as :data:`numadam.methods`): the front door and option validation,
:func:`numadam.show_options`, the method callables and their docstrings, the
sparse modes, the command line, the documentation, the tests'
parametrisation and the asv benchmarks.

Adding a method means adding its rule module (for a new family) and one
declaration in :data:`_SPECS` below; see the guide "Adding a method".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

from . import schedules
from ._options import COMMON_OPTIONS, UPDATE_OPTIONS, Option, closest
from ._rules import get_rule

__all__ = ["MethodSpec", "METHODS", "SCIPY_METHODS", "SPARSE_MODES", "get_spec",
           "lookup"]

#: The values of option 'sparse' besides None.
SPARSE_MODES = ("lazy", "catchup", "dense")


@dataclass(frozen=True)
class MethodSpec:
    """The declaration of one method."""

    name: str
    rule: str
    summary: str
    #: The method's options (:class:`~numadam._options.Option`); the update
    #: options every method takes (:data:`~numadam._options.UPDATE_OPTIONS`:
    #: ``clip_norm``) are appended to them when the spec is made.
    options: tuple
    math: str
    symbols: str
    references: tuple
    fixed: Mapping = field(default_factory=dict)
    notes: str = ""
    check: Callable | None = None
    #: The sparse modes besides 'dense' (which every method has): 'lazy'
    #: and 'catchup' (which needs the rule's catch-up functions).
    sparse_modes: tuple = ()
    #: Options of the runnable example in the method's docstring
    #: (Rosenbrock from the standard start, with scipy's rosen_der).
    example: Mapping = field(default_factory=dict)
    #: Options with which the method solves the standard problems of
    #: :mod:`numadam.problems` (the command line's demo, tests, benchmarks).
    demo: Mapping = field(default_factory=dict)
    #: Option sets that together switch every flag of the rule on and off:
    #: the configurations the tests check against the reference.
    variants: tuple = ({},)

    def __post_init__(self):
        for name in ("fixed", "example", "demo"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        object.__setattr__(self, "variants",
                           tuple(MappingProxyType(dict(v)) for v in self.variants))
        shared = {o.name for o in UPDATE_OPTIONS}
        object.__setattr__(self, "options", tuple(
            o for o in self.options if o.name not in shared) + UPDATE_OPTIONS)
        unknown = set(self.sparse_modes) - {"lazy", "catchup"}
        if unknown:
            raise ValueError(f"{self.name}: unknown sparse modes {sorted(unknown)}")

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

    def sparse_mode(self, values, mode, averaging=False):
        """Validate ``options['sparse']`` for this method with resolved
        options ``values``; return the mode, or None for dense gradients."""
        if mode is None:
            return None
        if mode not in SPARSE_MODES:
            raise ValueError(f"option 'sparse' must be None, 'lazy', 'catchup' or "
                             f"'dense', got {mode!r}")
        if mode == "dense":
            return mode
        if mode not in self.sparse_modes:
            having = [name for name, other in METHODS.items() if mode in other.sparse_modes]
            raise ValueError(f"option sparse={mode!r} is not available for method "
                             f"{self.name!r}: {'lazy' if mode == 'lazy' else 'catch-up'} "
                             f"updates exist for {', '.join(having)}; sparse='dense' "
                             "works with every method")
        if averaging:
            raise ValueError(f"option 'average' reads every coordinate each step, which "
                             f"sparse={mode!r} avoids; use sparse='dense' to average")
        if mode == "catchup" and values.get("weight_decay", 0.0) != 0.0 and not values.get(
                "decoupled_weight_decay", False):
            raise ValueError("sparse='catchup' cannot replay coupled weight decay over the "
                             "skipped steps (the decay enters the gradient); use "
                             "decoupled_weight_decay=True (adamw), or sparse='lazy' or "
                             "'dense'")
        return mode


def _is_schedule(value):
    return isinstance(value, schedules.Schedule) or (
        callable(value) and not isinstance(value, type))


# ---------------------------------------------------------------- options --

def _lr(default):
    return Option("learning_rate", default,
                  "Step size: a float, a :mod:`numadam.schedules` schedule, or a "
                  "Python callable of k, the number of updates done so far (0 for "
                  "the first; Python loop only).",
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
_BIAS = Option("bias_correction", True, "Divide m by ``1 - beta1**t`` and v by "
               "``1 - beta2**t`` (the Adam paper's bias correction). False uses "
               "them as they are, the paper's ablation (Section 6.4, Fig. 4): every "
               "factor ``1 - beta**t`` of the update is 1.", kind="flag")
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
                 r"gradient at :math:`x_{t-1}`; :math:`m_0 = v_0 = 0`. With "
                 r"``bias_correction=False`` every factor :math:`1 - \beta^t` (and "
                 r"nadam's :math:`1 - P_t`) is 1.")

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

_ADAM_OPTIONS = (_lr(1e-3), _BETA1, _BETA2, _eps(1e-8), _wd(), _AMSGRAD, _DECOUPLED,
                 _BIAS)

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
        sparse_modes=("lazy", "catchup"),
        example=dict(learning_rate=1e-3, momentum=0.9, nesterov=True, maxiter=2000),
        demo=dict(learning_rate=1e-3, momentum=0.9, nesterov=True),
        variants=({}, dict(momentum=0.9),
                  dict(momentum=0.9, dampening=0.1, weight_decay=0.01),
                  dict(momentum=0.9, nesterov=True)),
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
        sparse_modes=("lazy", "catchup"),
        example=dict(learning_rate=0.5, maxiter=2000),
        demo=dict(learning_rate=0.5),
        variants=({}, dict(lr_decay=0.01, initial_accumulator_value=0.1,
                           weight_decay=0.01)),
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
        sparse_modes=("lazy", "catchup"),
        example=dict(learning_rate=1e-3, maxiter=2000),
        demo=dict(learning_rate=5e-5, momentum=0.9),
        variants=({}, dict(centered=True), dict(momentum=0.9),
                  dict(centered=True, momentum=0.9, weight_decay=0.01)),
    ),
    MethodSpec(
        name="adadelta",
        rule="adadelta",
        summary="Adadelta: steps scaled by running root-mean-squares of past "
                "updates and gradients.",
        options=(
            _lr(1.0),
            Option("rho", 0.9, "Decay rate of the running means of squared "
                   "gradients and squared updates.", lower=0.0, upper=1.0,
                   symbol=r"\rho"),
            _eps(1e-6),
            _wd(),
        ),
        math=r"""
.. math::

   \begin{aligned}
   g_t &\leftarrow g_t + \lambda x_{t-1} \\
   u_t &= \rho u_{t-1} + (1 - \rho) g_t^2 \\
   d_t &= \frac{\sqrt{a_{t-1} + \epsilon}}{\sqrt{u_t + \epsilon}}\, g_t \\
   a_t &= \rho a_{t-1} + (1 - \rho) d_t^2 \\
   x_t &= x_{t-1} - \gamma d_t
   \end{aligned}
""",
        symbols=(r":math:`\gamma` is ``learning_rate``, :math:`\rho` is ``rho``, "
                 r":math:`\epsilon` is ``eps`` and :math:`\lambda` is "
                 r"``weight_decay``; :math:`u_0 = a_0 = 0`."),
        notes=("The original method has no learning rate (it is 1.0 here, as "
               "in torch.optim.Adadelta)."),
        references=(
            "M. D. Zeiler, \"ADADELTA: An Adaptive Learning Rate Method\", "
            "arXiv:1212.5701, 2012.",
        ),
        sparse_modes=("lazy", "catchup"),
        example=dict(learning_rate=1.0, maxiter=2000),
        demo=dict(learning_rate=schedules.exponential(1.0, 0.9998), rho=0.95,
                  eps=1e-4),
        variants=({}, dict(weight_decay=0.01), dict(rho=0.5, eps=1e-4)),
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
        sparse_modes=("lazy", "catchup"),
        example=dict(learning_rate=0.01, maxiter=2000),
        demo=dict(learning_rate=1e-2),
        variants=({}, dict(amsgrad=True), dict(weight_decay=0.01),
                  dict(weight_decay=0.01, decoupled_weight_decay=True),
                  dict(bias_correction=False)),
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
        sparse_modes=("lazy", "catchup"),
        example=dict(learning_rate=0.01, maxiter=2000),
        demo=dict(learning_rate=1e-2),
        variants=({}, dict(weight_decay=0.01)),
    ),
    MethodSpec(
        name="adamw",
        rule="adam",
        summary="AdamW: Adam with decoupled weight decay.",
        options=(_lr(1e-3), _BETA1, _BETA2, _eps(1e-8), _wd(1e-2, coupled=False),
                 _AMSGRAD, _BIAS),
        fixed={"decoupled_weight_decay": True},
        math=_ADAM_MATH.replace(_WD_MATH, r"""
   x_{t-1} &\leftarrow x_{t-1}(1 - \gamma\lambda) \\"""),
        symbols=_ADAM_SYMBOLS,
        notes="This is ``adam`` with ``decoupled_weight_decay=True``.",
        references=(_LOSHCHILOV, _KINGMA, _REDDI),
        sparse_modes=("lazy", "catchup"),
        example=dict(learning_rate=0.01, weight_decay=0.0, maxiter=2000),
        demo=dict(learning_rate=1e-2, weight_decay=0.0),
        variants=({}, dict(amsgrad=True), dict(amsgrad=True, bias_correction=False)),
    ),
    MethodSpec(
        name="adamax",
        rule="adamax",
        summary="Adamax: Adam with the infinity norm in place of the second moment.",
        options=(_lr(2e-3), _BETA1, _BETA2, _eps(1e-8), _wd(), _BIAS),
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
        example=dict(learning_rate=0.01, maxiter=2000),
        demo=dict(learning_rate=1e-2),
        variants=({}, dict(weight_decay=0.01), dict(bias_correction=False)),
    ),
    MethodSpec(
        name="nadam",
        rule="nadam",
        summary="NAdam: Adam with Nesterov momentum and a momentum schedule.",
        options=(_lr(2e-3), _BETA1, _BETA2, _eps(1e-8), _wd(),
                 Option("momentum_decay", 4e-3, "Decay of the momentum "
                        "schedule.", lower=0.0, symbol=r"\psi"),
                 _DECOUPLED, _BIAS),
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
        example=dict(learning_rate=0.01, maxiter=2000),
        demo=dict(learning_rate=1e-3),
        variants=({}, dict(weight_decay=0.01, decoupled_weight_decay=True),
                  dict(weight_decay=0.01, momentum_decay=0.01), dict(bias_correction=False)),
    ),
    MethodSpec(
        name="radam",
        rule="radam",
        summary="RAdam: Adam with a rectified adaptive learning rate.",
        options=(_lr(1e-3), _BETA1, _BETA2, _eps(1e-8), _wd(), _DECOUPLED, _BIAS),
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
        example=dict(learning_rate=3e-3, maxiter=2000),
        demo=dict(learning_rate=3e-3),
        variants=({}, dict(weight_decay=0.01, decoupled_weight_decay=True),
                  dict(beta2=0.9), dict(bias_correction=False)),
    ),
    MethodSpec(
        name="lion",
        rule="lion",
        summary="Lion: the sign of an interpolated momentum, with decoupled "
                "weight decay.",
        options=(_lr(1e-4),
                 Option("beta1", 0.9, "Interpolation between the momentum and "
                        "the gradient that gives the step's sign.", lower=0.0,
                        upper=1.0, symbol=r"\beta_1"),
                 Option("beta2", 0.99, "Decay rate of the momentum.", lower=0.0,
                        upper=1.0, symbol=r"\beta_2"),
                 _wd(coupled=False)),
        fixed={"decoupled_weight_decay": True},
        math=r"""
.. math::

   \begin{aligned}
   c_t &= (1 - \beta_1) g_t + \beta_1 m_{t-1} \\
   x_t &= x_{t-1} - \gamma \left(\operatorname{sign}(c_t) + \lambda x_{t-1}\right) \\
   m_t &= (1 - \beta_2) g_t + \beta_2 m_{t-1}
   \end{aligned}
""",
        symbols=(r":math:`\gamma` is ``learning_rate``, :math:`\beta_1, \beta_2` "
                 r"are ``beta1, beta2``, :math:`\lambda` is ``weight_decay`` and "
                 r":math:`g_t` the gradient at :math:`x_{t-1}`; :math:`m_0 = 0`."),
        notes=("The numerics are optax.lion's. optax's default weight_decay is "
               "1e-3 and it has no default learning rate; numadam's defaults "
               "are those of the paper's experiments and of torch.optim's other "
               "methods: learning_rate=1e-4, weight_decay=0. The step's size does "
               "not depend on the gradient's, so the learning rate is usually "
               "3 to 10 times smaller than adam's."),
        references=(
            "X. Chen, C. Liang, D. Huang, E. Real, K. Wang, Y. Liu, H. Pham, "
            "X. Dong, T. Luong, C.-J. Hsieh, Y. Lu and Q. V. Le, \"Symbolic "
            "Discovery of Optimization Algorithms\", NeurIPS 2023, "
            "arXiv:2302.06675.",
        ),
        sparse_modes=("lazy", "catchup"),
        example=dict(learning_rate=1e-3, maxiter=2000),
        demo=dict(learning_rate=schedules.exponential(3e-3, 0.9995)),
        variants=({}, dict(weight_decay=0.01), dict(beta1=0.0, beta2=0.9)),
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
