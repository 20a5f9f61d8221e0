"""ERP neural mass (SPM12 spm_fx_erp): rest, exact delays, convergence order, SPM's
delay operator, continuous runs with events."""

import jax.numpy as jnp
import numpy as np
import pytest

from biosim import ParameterError
from biosim.physics.neural import (
    ERPParams,
    event_related_activity,
    gaussian_input,
    integrate_erp,
    integrate_erp_spm,
    simulate_neural_mass,
)


def _two_sources(delay=0.016):
    f = np.array([[0.0, 0.0], [32.0, 0.0]])
    p = ERPParams.spm(f, f.T / 2, np.zeros((2, 2)), [[1.0], [0.0]])
    return ERPParams(**{**p.__dict__, "delay_extrinsic": p.delay_extrinsic * delay / 0.016})


def _run(p, h, mode="exact", t_end=0.04, amplitude=1.0):
    """States at t = h, 2h, ..., t_end (one compiled integrator per (h, mode))."""
    n = int(round(t_end / h))
    u = amplitude * gaussian_input(jnp.arange(2 * n + 1) * (h / 2), 0.03, 0.016)[:, None]
    return np.asarray(integrate_erp(p, u, h, n, 1, mode))


def test_rest_is_fixed_point_and_delays_are_exact():
    p = _two_sources()
    assert np.abs(_run(p, 1e-3, amplitude=0.0)).max() == 0.0
    # the input reaches source 0's stellate cells at once, its pyramidal cells (x9) only
    # through the 2 ms intrinsic delay, and source 1 only through a further 16 ms
    # extrinsic delay, read from a history at rest before t = 0: exactly zero until then
    x = np.abs(_run(p, 1e-3))  # samples at t = 1, 2, ... ms
    assert x[0, 0, 0] > 0
    assert x[:2, 0, 8].max() == 0.0 and x[2, 0, 8] > 0
    assert x[:18, 1].max() == 0.0 and x[18, 1].max() > 0


def test_exact_delays_converge_at_fourth_order():
    p = _two_sources(0.0137)  # delay off the step grid
    ref = _run(p, 2.5e-4)[7::8, :, 8]
    err = [
        np.abs(_run(p, 2e-3)[:, :, 8] - ref).max(),
        np.abs(_run(p, 1e-3)[1::2, :, 8] - ref).max(),
    ]
    assert err[1] < 1e-4 * np.abs(ref).max()
    assert np.log2(err[0] / err[1]) > 3.5  # RK4 + cubic Hermite history: order 4


def test_delay_operator_reduces_to_instantaneous_model_without_delays():
    p = _two_sources()
    p0 = ERPParams(
        **{
            **p.__dict__,
            "delay_extrinsic": p.delay_extrinsic * 0,
            "delay_intrinsic": jnp.asarray(0.0),
        }
    )
    none = _run(p, 1e-3, "none")[..., 8]
    np.testing.assert_allclose(_run(p0, 1e-3, "operator")[..., 8], none, atol=1e-14)
    # with SPM's delays the delayed responses differ from the instantaneous ones
    assert np.abs(_run(p, 1e-3)[..., 8] - none).max() > 1e-2 * np.abs(none).max()
    assert np.abs(_run(p, 1e-3, "operator")[..., 8] - none).max() > 1e-2 * np.abs(none).max()


def test_event_related_activity_over_a_run_matches_epochs():
    """A run with a short history window reproduces the whole-history epoch response,
    and well-separated events (the response has decayed to < 1e-6 of its peak after
    1 s) give the same response again."""
    p = _two_sources()
    t, x9 = event_related_activity(p, [np.array([0.03])], duration=0.25, dt=1e-3)
    epoch = _run(p, 1e-3, t_end=0.25)[..., 8]  # whole history, same input
    assert x9.shape == (250, 2) and t[0] == pytest.approx(1e-3)
    np.testing.assert_allclose(x9, epoch, atol=1e-12 * np.abs(epoch).max())
    _, x9 = event_related_activity(p, [np.array([0.15, 1.15])], duration=2.0, dt=1e-3)
    np.testing.assert_allclose(x9[1000:1250], x9[:250], atol=1e-6 * np.abs(x9).max())
    with pytest.raises(ParameterError, match="onsets"):
        event_related_activity(p, [np.array([2.0])], duration=1.0)


def test_response_is_differentiable_in_the_delays():
    """Forward-mode derivative of the delayed response with respect to the extrinsic
    delay and the forward coupling against central differences (delays off the grid)."""
    import jax

    p = _two_sources(0.0137)
    h, n = 1e-3, 40
    u = gaussian_input(jnp.arange(2 * n + 1) * (h / 2), 0.03, 0.016)[:, None]

    def response(d, a):
        q = ERPParams(
            **{
                **p.__dict__,
                "delay_extrinsic": p.delay_extrinsic / 0.0137 * d,
                "forward": p.forward * a,
            }
        )
        return integrate_erp(q, u, h, n, 1, "exact")[:, 1, 8]

    f = jax.jit(response)
    x0 = (0.0137, 1.1)
    for tangent in ((1.0, 0.0), (0.0, 1.0)):
        jv = jax.jvp(f, x0, tangent)[1]
        eps = (1e-6, 1e-5)
        plus = f(*(x + e * t for x, e, t in zip(x0, eps, tangent)))
        minus = f(*(x - e * t for x, e, t in zip(x0, eps, tangent)))
        fd = (plus - minus) / (2 * (eps[0] * tangent[0] + eps[1] * tangent[1]))
        assert float(jnp.abs(jv).max()) > 0
        np.testing.assert_allclose(jv, fd, rtol=1e-5, atol=1e-7 * float(jnp.abs(fd).max()))


def test_integer_and_boolean_inputs_equal_float_inputs():
    # inputs are cast before the delay modes split: one mode (one compilation) suffices
    p, h, n = _two_sources(), 0.002, 10
    u = (np.arange(2 * n + 1) < 6)[:, None]
    ref = np.asarray(integrate_erp(p, u.astype(float), h, n, 2, "none"))
    assert np.abs(ref).max() > 0
    for given in (u, u.astype(int)):
        np.testing.assert_array_equal(np.asarray(integrate_erp(p, given, h, n, 2, "none")), ref)
    sim = simulate_neural_mass(p, lambda t: (t < 0.005)[:, None], 2 * h, n // 2, 2, "none")
    ref_sim = simulate_neural_mass(
        p, lambda t: (t < 0.005)[:, None] * 1.0, 2 * h, n // 2, 2, "none"
    )
    np.testing.assert_array_equal(np.asarray(sim), np.asarray(ref_sim))


def _spm_run(p, h, mode="operator", t_end=0.04):
    """SPM's scheme (spm_int_L): states at t = h, 2h, ..., t_end."""
    n = int(round(t_end / h))
    u = gaussian_input(h * jnp.arange(1, n + 1), 0.03, 0.016)[:, None]
    return np.asarray(integrate_erp_spm(p, u, h, mode))


def test_spm_scheme_converges_at_first_order_to_the_operator_model():
    """spm_int_L's frozen-Jacobian exponential update integrates dx/dt = Q f(x) (SPM's
    delay operator Q) to first order; at rest it stays at rest."""
    p = _two_sources()
    ref = _run(p, 2.5e-4, "operator")[7::8, :, 8]  # t = 2, 4, ... ms
    err = [
        np.abs(_spm_run(p, 2e-3)[:, :, 8] - ref).max(),
        np.abs(_spm_run(p, 1e-3)[1::2, :, 8] - ref).max(),
    ]
    assert err[1] < 0.05 * np.abs(ref).max()
    assert 0.8 < np.log2(err[0] / err[1]) < 1.3
    zero = integrate_erp_spm(p, jnp.zeros((10, 1)), 4e-3, "operator")
    assert np.abs(np.asarray(zero)).max() == 0.0
    with pytest.raises(ParameterError):
        integrate_erp_spm(p, jnp.zeros((10, 1)), 4e-3, "exact")


def test_spm_scheme_gradient():
    import jax
    from jax.test_util import check_grads

    p = _two_sources()
    u = gaussian_input(4e-3 * jnp.arange(1, 21), 0.03, 0.016)[:, None]

    def response(a, d):
        q = ERPParams(
            **{**p.__dict__, "forward": p.forward * a, "delay_extrinsic": p.delay_extrinsic * d}
        )
        return integrate_erp_spm(q, u, 4e-3)[:, 1, 8]

    check_grads(jax.jit(response), (1.1, 0.9), order=1, modes=("fwd", "rev"), eps=1e-4)
