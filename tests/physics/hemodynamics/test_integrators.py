"""Observed convergence order of the integrators and gradient checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from biosim.physics.hemodynamics import BalloonParams, BOLDParams, integrate_balloon, simulate_bold
from biosim.physics.hemodynamics.integrate import METHOD_ORDER


def _blocks():
    # piecewise-constant input on 2 s blocks, 3 regions of different strength
    rng = np.random.default_rng(0)
    return rng.uniform(0.0, 0.6, size=(12, 3))


@pytest.mark.parametrize("method", ["euler", "heun", "rk4"])
def test_observed_order_matches_theory(method):
    u = _blocks()
    dt = 2.0
    params = BalloonParams.spm()
    _, ref = integrate_balloon(u, dt, params, method="rk4", substeps=512)
    subs = {"euler": [8, 16, 32, 64], "heun": [4, 8, 16, 32], "rk4": [4, 8, 16, 32]}[method]
    errs = []
    for s in subs:
        _, x = integrate_balloon(u, dt, params, method=method, substeps=s)
        errs.append(float(jnp.max(jnp.abs(x - ref))))
    h = dt / np.array(subs)
    slope = np.polyfit(np.log(h), np.log(errs), 1)[0]
    assert abs(slope - METHOD_ORDER[method]) < 0.25, (method, errs, slope)


def test_record_every_samples_the_same_trajectory():
    u = np.tile(_blocks(), (5, 1))[:60]
    full, _ = integrate_balloon(u, 0.5, method="rk4")
    every, _ = integrate_balloon(u, 0.5, method="rk4", record_every=4)
    np.testing.assert_allclose(every, full[::4], rtol=0, atol=1e-15)
    res = simulate_bold(u, 0.5, tr=2.0)
    np.testing.assert_allclose(res.times, np.arange(15) * 2.0)


_U = np.zeros((120, 2))
_U[5:45, 0] = 0.4
_U[20:30, 1] = 0.8


def _bold_of(log_decay, log_transit, log_eps, amp):
    res = simulate_bold(
        _U * amp,
        0.25,
        BalloonParams.spm(log_decay, log_transit),
        BOLDParams.at_field(3.0, log_epsilon=log_eps),
        tr=2.5,
    )
    return res.bold


def test_gradients_of_bold_match_finite_differences():
    args = (0.1, -0.2, 0.05, 1.1)
    f = jax.jit(lambda *a: jnp.sum(_bold_of(*a) ** 2) * 1e4)
    check_grads(f, args, order=1, modes=["rev", "fwd"], atol=1e-6, rtol=1e-5)


def test_gradient_with_respect_to_neural_input():
    def loss(u):
        res = simulate_bold(u, 0.25, tr=2.5)
        return jnp.sum(res.bold[:, 0] ** 2) * 1e4

    check_grads(jax.jit(loss), (_U,), order=1, modes=["rev"], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", sorted(METHOD_ORDER))
def test_integer_and_boolean_inputs_equal_float_inputs(method):
    u = np.zeros((30, 1), int)
    u[2:8] = 1
    ref = np.asarray(integrate_balloon(u.astype(float), 0.1, method=method)[0])
    assert np.abs(ref[-1] - ref[0]).max() > 0
    for given in (u, u.astype(bool)):
        np.testing.assert_array_equal(
            np.asarray(integrate_balloon(given, 0.1, method=method)[0]), ref
        )
    y = simulate_bold(u.astype(bool), 0.1, method=method).bold
    np.testing.assert_array_equal(
        np.asarray(y), np.asarray(simulate_bold(u * 1.0, 0.1, method=method).bold)
    )
