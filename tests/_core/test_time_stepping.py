"""Fixed-step Runge-Kutta stepping: tableaux, convergence order, the zero-order-hold
driver, pytree states, gradients and input checks."""

from fractions import Fraction
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from biosim import ParameterError
from biosim._core.time_stepping import (
    EULER,
    HEUN,
    RK4,
    TABLEAUX,
    ButcherTableau,
    get_tableau,
    integrate_fixed_step,
    rk_step,
)


def _order_conditions(tab):
    """Butcher's order conditions up to order 4 (Hairer et al. I, Table II.2.1)."""
    b, c = np.array(tab.b, object), np.array(tab.c, object)
    s = tab.stages
    a = np.array(
        [[tab.a[i][j] if j < i else Fraction(0) for j in range(s)] for i in range(s)], object
    )
    ac, ac2 = a.dot(c), a.dot(c * c)
    return {
        1: [(b.sum(), Fraction(1))],
        2: [(b.dot(c), Fraction(1, 2))],
        3: [(b.dot(c * c), Fraction(1, 3)), (b.dot(ac), Fraction(1, 6))],
        4: [
            (b.dot(c**3), Fraction(1, 4)),
            (b.dot(c * ac), Fraction(1, 8)),
            (b.dot(ac2), Fraction(1, 12)),
            (b.dot(a.dot(ac)), Fraction(1, 24)),
        ],
    }


@pytest.mark.parametrize("tab", [EULER, HEUN, RK4], ids=lambda t: t.name)
def test_tableau_consistency(tab):
    assert sum(tab.b) == 1
    for i, row in enumerate(tab.a):
        assert len(row) == i and sum(row) == tab.c[i]
    conds = _order_conditions(tab)
    for p in range(1, tab.order + 1):
        assert all(lhs == rhs for lhs, rhs in conds[p]), p
    if tab.order < 4:  # the order is exact: some condition of the next order fails
        assert any(lhs != rhs for lhs, rhs in conds[tab.order + 1])
    assert TABLEAUX[tab.name] is tab and get_tableau(tab.name) is tab


@partial(jax.jit, static_argnames="tab")
def _solve(tab, n, t_end):
    """x' = x cos t, x(0) = 1 on [0, t_end] in n steps (exact: exp(sin t))."""
    h = t_end / n

    def body(i, x):
        return rk_step(tab, lambda x, t, _c: x * jnp.cos(t), x, i * h, h)

    return jax.lax.fori_loop(0, n, body, jnp.ones(()))


@pytest.mark.parametrize("tab", [EULER, HEUN, RK4], ids=lambda t: t.name)
def test_convergence_order(tab):
    ns = np.array([8, 16, 32, 64])
    err = [abs(float(_solve(tab, n, 2.0)) - np.exp(np.sin(2.0))) for n in ns]
    slope = np.polyfit(np.log(2.0 / ns), np.log(err), 1)[0]
    assert abs(slope - tab.order) < 0.2, (tab.name, slope, err)


def test_stage_times_and_nodes():
    calls = []

    def rhs(x, t, c):
        calls.append((t, c))
        return x

    rk_step(RK4, rhs, jnp.ones(2), 1.0, 0.5)
    assert calls == [(1.0, 0.0), (1.25, 0.5), (1.25, 0.5), (1.5, 1.0)]
    assert all(isinstance(c, float) for _, c in calls)


def test_matches_hand_written_rk4_bit_for_bit():
    def f(x, _t, _c):
        return jnp.array([x[1], -jnp.sin(x[0])])

    x, h = jnp.array([1.0, 0.3]), 0.37
    k1 = f(x, 0, 0)
    k2 = f(x + 0.5 * h * k1, 0, 0)
    k3 = f(x + 0.5 * h * k2, 0, 0)
    k4 = f(x + h * k3, 0, 0)
    ref = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    assert np.array_equal(rk_step(RK4, f, x, 0.0, h), ref)


def _decay_reference(k, x0, u, dt):
    """Exact solution of x' = -k x + u with u held over each sample: states at k dt."""
    xs = [x0]
    for uk in u:
        e = np.exp(-k * dt)
        xs.append(xs[-1] * e + uk / k * (1 - e))
    return np.array(xs)


def test_driver_zero_order_hold_substeps_and_records():
    k, dt = 1.5, 0.2
    u = np.array([0.0, 1.0, 1.0, 0.5, 0.0, 0.0, 2.0, 0.0])
    ref = _decay_reference(k, 0.3, u, dt)
    start, final = integrate_fixed_step(
        lambda x, uk: -k * x + uk, jnp.asarray(0.3), jnp.asarray(u), dt, substeps=4, record_every=2
    )
    np.testing.assert_allclose(start, ref[:-1:2], rtol=1e-6)
    np.testing.assert_allclose(final, ref[-1], rtol=1e-6)
    end, _ = integrate_fixed_step(
        lambda x, uk: -k * x + uk,
        jnp.asarray(0.3),
        jnp.asarray(u),
        dt,
        substeps=4,
        record_every=2,
        record="end",
        observe=lambda x: 2 * x,
    )
    np.testing.assert_allclose(end, 2 * ref[2::2], rtol=1e-6)
    # substeps refine the step: Euler's error falls about 4x from 1 to 4 substeps
    errs = [
        abs(
            float(
                integrate_fixed_step(
                    lambda x, uk: -k * x + uk,
                    jnp.asarray(0.3),
                    jnp.asarray(u),
                    dt,
                    method="euler",
                    substeps=s,
                )[1]
            )
            - ref[-1]
        )
        for s in (1, 4)
    ]
    assert 3 < errs[0] / errs[1] < 5


def test_pytree_state_matches_flat_state():
    """A dict/tuple state steps exactly as the same state packed in one array."""

    def rhs_tree(x, uk):
        return {"p": x["v"][0], "v": (-x["p"] - 0.1 * x["v"][0] + uk,)}

    def rhs_flat(x, uk):
        return jnp.stack([x[1], -x[0] - 0.1 * x[1] + uk])

    u = jnp.sin(jnp.arange(12.0))
    x0 = {"p": jnp.asarray(1.0), "v": (jnp.asarray(0.0),)}
    rec, fin = integrate_fixed_step(rhs_tree, x0, u, 0.1, substeps=2, record_every=3)
    rec_f, fin_f = integrate_fixed_step(
        rhs_flat, jnp.array([1.0, 0.0]), u, 0.1, substeps=2, record_every=3
    )
    assert rec["p"].shape == (4,) and rec["v"][0].shape == (4,)
    np.testing.assert_array_equal(rec["p"], rec_f[:, 0])
    np.testing.assert_array_equal(rec["v"][0], rec_f[:, 1])
    np.testing.assert_array_equal(fin["p"], fin_f[0])


def test_gradient_of_driver():
    u = jnp.array([0.0, 1.0, 1.0, 0.0, 0.5, 0.0])

    def f(k, x0):
        rec, fin = integrate_fixed_step(
            lambda x, uk: -k * x + uk * x**2 / (1 + x**2),
            x0,
            u,
            0.25,
            method="heun",
            substeps=2,
            record_every=3,
        )
        return jnp.sum(rec) + fin

    check_grads(f, (1.3, 0.4), order=1, modes=("fwd", "rev"))


def test_bad_input():
    f = lambda x, uk: -x + uk
    u = jnp.zeros(6)
    with pytest.raises(ParameterError, match="method = 'rk5'"):
        integrate_fixed_step(f, 0.0, u, 0.1, method="rk5")
    with pytest.raises(ParameterError, match="method = 'rk5'"):
        get_tableau("rk5")
    for name, kw in [
        ("substeps", {"substeps": 0}),
        ("substeps", {"substeps": 1.5}),
        ("record_every", {"record_every": -1}),
        ("record_every", {"record_every": 4}),
    ]:
        with pytest.raises(ParameterError, match=f"{name} = {kw[name]}"):
            integrate_fixed_step(f, 0.0, u, 0.1, **kw)
    with pytest.raises(ParameterError, match="dt = -0.1"):
        integrate_fixed_step(f, 0.0, u, -0.1)
    for h in (0.0, -1.0):
        with pytest.raises(ParameterError, match=f"h = {h}"):
            rk_step(RK4, lambda x, t, c: x, jnp.ones(1), 0.0, h)
    with pytest.raises(ParameterError, match="b = "):
        ButcherTableau("bad", a=((), (1,)), b=(1, 1), c=(0, 1), order=1)
    with pytest.raises(ParameterError, match="c = "):
        ButcherTableau("bad", a=((), (1,)), b=("1/2", "1/2"), c=(0, "1/2"), order=1)
    with pytest.raises(ParameterError, match="exact rational"):
        ButcherTableau("bad", a=((),), b=(1.0,), c=(0,), order=1)


def test_integer_and_boolean_state_and_inputs_become_floats():
    """A lax.scan carry must keep its dtype: integer x0 and inputs are cast."""
    u = np.array([[1], [0], [1], [1]])
    ref, ref_final = integrate_fixed_step(lambda x, v: v - x, np.zeros(1), u * 1.0, 0.1)
    for x0, given in ((np.zeros(1, int), u), (np.zeros(1), u.astype(bool))):
        rec, final = integrate_fixed_step(lambda x, v: v - x, x0, given, 0.1)
        np.testing.assert_array_equal(np.asarray(rec), np.asarray(ref))
        np.testing.assert_array_equal(np.asarray(final), np.asarray(ref_final))
    assert float(ref_final[0]) > 0
