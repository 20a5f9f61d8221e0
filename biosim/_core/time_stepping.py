"""Fixed-step explicit Runge-Kutta time stepping shared by every layer.

A one-step method is data, a :class:`ButcherTableau` (a, b, c); one generic
:func:`rk_step` advances any right-hand side by one step of any tableau, and
:func:`integrate_fixed_step` drives it over inputs held constant over each
sample (zero-order hold), with ``substeps`` steps per sample and a record every
``record_every`` samples.  The matrix-exponential ("spm") integrator of DCM is
a different scheme and stays in :mod:`biosim.inference.dcm.model`.

Coefficients are exact rationals.  A step combines the stages as
``(h / d) * sum_i w_i k_i`` with integer weights ``w_i = d b_i`` over their
common denominator ``d`` -- the way the methods are written by hand, e.g.
``x + h/6 (k1 + 2 k2 + 2 k3 + k4)`` -- so the generic step reproduces such
hand-written loops bit for bit (sums are taken in stage order).

References
----------
J. C. Butcher, *Numerical Methods for Ordinary Differential Equations*,
2nd ed., Wiley, 2008, ch. 23.
E. Hairer, S. P. Norsett, G. Wanner, *Solving Ordinary Differential Equations I*,
2nd ed., Springer, 1993, sec. II.1.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from functools import reduce

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .errors import ParameterError
from .validation import is_concrete


def _rational(name, value):
    if isinstance(value, (bool, float, np.floating)) or not isinstance(
        value, (int, np.integer, Fraction, str)
    ):
        raise ParameterError(
            name, value, "an exact rational (int, fractions.Fraction or a string such as '1/6')"
        )
    return Fraction(value)


def _weights(coefs):
    """(d, w) with integer w_i = d coefs_i over the least common denominator d."""
    d = reduce(math.lcm, (q.denominator for q in coefs), 1)
    return d, tuple(int(q * d) for q in coefs)


@dataclasses.dataclass(frozen=True)
class ButcherTableau:
    """Explicit Runge-Kutta method ``k_i = f(x + h sum_j a_ij k_j, t + c_i h)``,
    ``x_new = x + h sum_i b_i k_i``.

    Parameters
    ----------
    name : str
    a : tuple of tuples
        Strictly lower-triangular stage matrix: row i holds a_i0 ... a_i(i-1)
        (row 0 is empty).
    b : tuple
        Weights, sum 1.
    c : tuple
        Nodes (stage times as fractions of the step), c_i = sum_j a_ij.
    order : int
        Global order of accuracy.

    All coefficients are exact rationals (int, :class:`fractions.Fraction` or a
    string such as ``"1/6"``); they are stored as :class:`~fractions.Fraction`.
    """

    name: str
    a: tuple
    b: tuple
    c: tuple
    order: int

    def __post_init__(self):
        b = tuple(_rational("b", v) for v in self.b)
        c = tuple(_rational("c", v) for v in self.c)
        a = tuple(tuple(_rational("a", v) for v in row) for row in self.a)
        s = len(b)
        if s < 1 or len(c) != s or len(a) != s or any(len(row) != i for i, row in enumerate(a)):
            raise ParameterError(
                "a, b, c",
                (self.a, self.b, self.c),
                "s weights, s nodes and a strictly lower-triangular "
                "stage matrix with rows of length 0, 1, ..., s - 1",
            )
        if sum(b) != 1:
            raise ParameterError("b", self.b, "weights summing to 1")
        if any(sum(row) != ci for row, ci in zip(a, c)):
            raise ParameterError("c", self.c, "c_i = sum_j a_ij")
        if not isinstance(self.order, (int, np.integer)) or self.order < 1:
            raise ParameterError("order", self.order, "a positive integer")
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "c", c)

    @property
    def stages(self) -> int:
        return len(self.b)


#: Forward Euler (order 1).
EULER = ButcherTableau("euler", a=((),), b=(1,), c=(0,), order=1)
#: Heun's method, the explicit trapezoidal rule (order 2).
HEUN = ButcherTableau("heun", a=((), (1,)), b=("1/2", "1/2"), c=(0, 1), order=2)
#: Classic fourth-order Runge-Kutta.
RK4 = ButcherTableau(
    "rk4",
    a=((), ("1/2",), (0, "1/2"), (0, 0, 1)),
    b=("1/6", "1/3", "1/3", "1/6"),
    c=(0, "1/2", "1/2", 1),
    order=4,
)
#: Tableaux by name.
TABLEAUX = {t.name: t for t in (EULER, HEUN, RK4)}


def get_tableau(method) -> ButcherTableau:
    """The tableau named ``method`` (a key of :data:`TABLEAUX`), or ``method`` itself."""
    if isinstance(method, ButcherTableau):
        return method
    if isinstance(method, str) and method in TABLEAUX:
        return TABLEAUX[method]
    raise ParameterError("method", method, f"one of {tuple(TABLEAUX)} or a ButcherTableau")


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(name, value, "a positive integer")
    return int(value)


def _check_step(name, value):
    if is_concrete(value) and not (np.all(np.isfinite(value)) and np.all(np.asarray(value) > 0)):
        raise ParameterError(name, value, "a finite step > 0 s")


def _combine(x, h, coefs, ks):
    """x + (h / d) * sum_i w_i k_i over the nonzero coefficients, on every leaf."""
    d, weights = _weights(coefs)
    terms = [(w, k) for w, k in zip(weights, ks) if w]
    if not terms:
        return x
    scale = h if d == 1 else h / d

    def leaf(xl, *kl):
        acc = None
        for (w, _), k in zip(terms, kl):
            term = k if w == 1 else w * k
            acc = term if acc is None else acc + term
        return xl + scale * acc

    return jax.tree_util.tree_map(leaf, x, *(k for _, k in terms))


def rk_step(tableau, rhs, x, t, h, args=()):
    """One explicit Runge-Kutta step of ``tableau``.

    Parameters
    ----------
    tableau : ButcherTableau or str
    rhs : callable
        ``rhs(x, t, c, *args)`` -> dx/dt (same pytree structure as ``x``), called
        at stage time ``t + c h`` with the stage's node ``c`` as a Python float
        (0, 0.5, 0.5, 1 for RK4), so inputs sampled on the node grid can be
        looked up exactly.
    x : array or pytree
        State at time ``t``.
    t : float
        Time at the start of the step, s.
    h : float
        Step, s (> 0).
    args : tuple
        Extra arguments passed to ``rhs``.

    Returns
    -------
    State at ``t + h`` (same structure as ``x``).
    """
    tab = get_tableau(tableau)
    _check_step("h", h)
    ks = []
    for a_row, c in zip(tab.a, tab.c):
        xi = _combine(x, h, a_row, ks)
        ks.append(rhs(xi, t + float(c) * h if c else t, float(c), *args))
    return _combine(x, h, tab.b, ks)


def _as_inexact(tree):
    """Integer and boolean leaves as floats (a ``lax.scan`` carry must keep its dtype)."""

    def cast(v):
        v = jnp.asarray(v)
        return v if jnp.issubdtype(v.dtype, jnp.inexact) else v.astype(jnp.result_type(float))

    return jax.tree_util.tree_map(cast, tree)


def integrate_fixed_step(
    rhs, x0, inputs, dt, *, method="rk4", substeps=1, record_every=1, record="start", observe=None
):
    """Integrate ``dx/dt = rhs(x, u)`` with ``u`` held over each input sample.

    Parameters
    ----------
    rhs : callable
        ``rhs(x, u)`` -> dx/dt for one input sample ``u`` (held constant over
        ``[k dt, (k + 1) dt)``).
    x0 : array or pytree
        State at t = 0.
    inputs : array or pytree, leading axis n_t
        Input samples at times ``k dt`` (integer and boolean leaves of ``x0``
        and ``inputs`` are converted to floats).
    dt : float
        Input sampling step, s (> 0); may be traced.
    method : str or ButcherTableau
        ``"euler"``, ``"heun"``, ``"rk4"`` or any explicit tableau.
    substeps : int
        Steps of ``h = dt / substeps`` per input sample.
    record_every : int
        Record every this many input samples; must divide n_t.
    record : {"start", "end"}
        Record the state at the start (``records[0]`` is ``x0``) or at the end
        of each block of ``record_every`` samples.
    observe : callable, optional
        Applied to each recorded state (e.g. a readout), default identity.

    Returns
    -------
    records : pytree with leading axis n_t // record_every
    x_final : state at ``n_t dt``.
    """
    tab = get_tableau(method)
    substeps = _check_count("substeps", substeps)
    record_every = _check_count("record_every", record_every)
    if record not in ("start", "end"):
        raise ParameterError("record", record, "'start' or 'end'")
    _check_step("dt", dt)
    observe = (lambda x: x) if observe is None else observe
    x0, inputs = _as_inexact(x0), _as_inexact(inputs)
    leaves = jax.tree_util.tree_leaves(inputs)
    n_t = leaves[0].shape[0] if leaves and np.ndim(leaves[0]) else 0
    if n_t < 1 or any(np.shape(v)[:1] != (n_t,) for v in leaves):
        raise ParameterError(
            "inputs",
            f"leaves of shapes {[np.shape(v) for v in leaves]}",
            "arrays sharing a leading axis n_t >= 1",
        )
    if n_t % record_every:
        raise ParameterError(
            "record_every", record_every, f"a divisor of the number of input samples ({n_t})"
        )
    h = dt / substeps

    def one_sample(x, u):
        def f(xs, _t, _c):
            return rhs(xs, u)

        if substeps == 1:
            return rk_step(tab, f, x, 0.0, h), None
        x, _ = lax.scan(lambda xx, _: (rk_step(tab, f, xx, 0.0, h), None), x, None, length=substeps)
        return x, None

    def one_record(x, u_block):
        x_next, _ = lax.scan(one_sample, x, u_block)
        return x_next, observe(x if record == "start" else x_next)

    n_records = n_t // record_every
    blocks = jax.tree_util.tree_map(
        lambda v: v.reshape((n_records, record_every) + v.shape[1:]), inputs
    )
    x_final, records = lax.scan(one_record, x0, blocks)
    return records, x_final
