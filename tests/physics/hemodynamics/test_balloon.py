"""Balloon-Windkessel: analytic steady state, impulse response shape,
linearised kernel vs canonical HRF, presets and errors."""

import numpy as np
import pytest

from biosim import ParameterError
from biosim.physics.hemodynamics import (
    BalloonParams,
    BOLDParams,
    balloon_rhs,
    bold_signal,
    simulate_bold,
    spm_hrf,
    steady_state,
)
from biosim.physics.hemodynamics.balloon import preset
from biosim.physics.hemodynamics.linearisation import first_order_kernel


@pytest.mark.parametrize("params", [BalloonParams.spm(), BalloonParams.friston2000()])
def test_steady_state_is_fixed_point_and_limit(params):
    z = np.array([0.0, 0.05, 0.2, 0.5])
    xs = steady_state(z, params)
    np.testing.assert_allclose(balloon_rhs(xs, z, params), 0.0, atol=1e-14)
    # integrating a constant input for 300 s converges to the analytic fixed point
    u = np.broadcast_to(z, (3000, 4))
    bold = BOLDParams(resting_extraction=params.resting_extraction)
    res = simulate_bold(u, 0.1, params, bold)
    x_end = res.states[-1]
    np.testing.assert_allclose(x_end, xs, atol=1e-9)
    # closed form: f* = 1 + z/gamma, v* = f*^alpha
    np.testing.assert_allclose(np.exp(xs[:, 1]), 1 + z / params.autoregulation_rate, rtol=1e-14)
    np.testing.assert_allclose(
        np.exp(xs[:, 2]), np.exp(xs[:, 1]) ** params.grubb_exponent, rtol=1e-14
    )


def _impulse_response(params, bold, dt=0.01, duration=40.0):
    n = int(round(duration / dt))
    u = np.zeros((n, 1))
    u[:10, 0] = 1.0  # 0.1 s pulse of unit input
    res = simulate_bold(u, dt, params, bold)
    return np.asarray(res.times), np.asarray(res.bold[:, 0])


def test_spm_impulse_response_peak_and_undershoot():
    t, y = _impulse_response(BalloonParams.spm(), BOLDParams.at_field(3.0))
    t_peak = t[np.argmax(y)]
    assert 4.0 <= t_peak <= 6.0
    after = y[t > t_peak + 2.0]
    assert after.min() < -0.05 * y.max()  # post-stimulus undershoot
    assert t[np.argmin(y)] > t_peak


def test_linearised_kernel_matches_canonical_hrf():
    dt = 0.1
    k = np.asarray(first_order_kernel(BalloonParams.spm(), BOLDParams.spm(), dt, 320))
    h = np.asarray(spm_hrf(dt))  # SPM's canonical HRF at 0.1 s
    n = min(k.size, h.size)
    r = np.corrcoef(k[:n], h[:n])[0, 1]
    assert r > 0.9
    # and it is the small-amplitude limit of the nonlinear response
    u = np.zeros((400, 1))
    u[0, 0] = 1e-4 / dt
    y = np.asarray(simulate_bold(u, dt, BalloonParams.spm(), BOLDParams.spm()).bold[:, 0])
    k_full = np.asarray(first_order_kernel(BalloonParams.spm(), BOLDParams.spm(), dt, 401))
    y_lin = 1e-4 / dt * 0.5 * (k_full[:-1] + k_full[1:]) * dt
    y_lin = np.concatenate([[0.0], y_lin[:-1]])
    assert np.max(np.abs(y - y_lin)) < 2e-3 * np.max(np.abs(y_lin))


def test_presets_and_rate_names():
    spm = preset("spm")
    assert (spm.decay_rate, spm.autoregulation_rate, spm.transit_time) == (0.64, 0.32, 2.0)
    f = preset("friston2000")
    assert (f.decay_rate, f.autoregulation_rate, f.transit_time, f.resting_extraction) == (
        0.65,
        0.41,
        0.98,
        0.34,
    )
    scaled = BalloonParams.spm(log_decay=np.log(2.0), log_transit=np.log(0.5))
    assert float(scaled.decay_rate) == pytest.approx(1.28)
    assert float(scaled.transit_time) == pytest.approx(1.0)
    with pytest.raises(ParameterError, match="preset"):
        preset("spm8")


def test_bold_coefficients_field_dependence():
    b = BOLDParams(field_strength=3.0, echo_time=0.03, epsilon=1.0)
    k1, k2, k3 = b.coefficients()
    assert float(k1) == pytest.approx(4.3 * 28.265 * 3.0 * 0.4 * 0.03)
    assert float(k2) == pytest.approx(110.0 * 0.4 * 0.03)
    assert float(k3) == pytest.approx(0.0)
    assert float(BOLDParams(field_strength=7.0).coefficients()[1]) == pytest.approx(
        340.0 * 0.4 * 0.04
    )
    c = BOLDParams.friston2000().coefficients()
    np.testing.assert_allclose(c, (7 * 0.34, 2.0, 2 * 0.34 - 0.2))
    with pytest.raises(ParameterError, match="field_strength"):
        BOLDParams(field_strength=9.4).coefficients()
    assert float(BOLDParams(field_strength=9.4, r0=500.0).coefficients()[1]) > 0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(balloon=BalloonParams(transit_time=-1.0)), "transit_time"),
        (dict(balloon=BalloonParams(decay_rate=0.0)), "decay_rate"),
        (dict(balloon=BalloonParams(autoregulation_rate=-0.3)), "autoregulation_rate"),
        (dict(tr=0.0), "tr"),
        (dict(tr=-2.0), "tr"),
        (dict(tr=0.25), "tr"),  # not a multiple of dt = 0.1... (0.25/0.1)
        (dict(tr=0.1, bold=BOLDParams(echo_time=0.2, field_strength=3.0)), "echo_time"),
    ],
)
def test_bad_input_raises_clear_error(kwargs, name):
    u = np.zeros((20, 2))
    with pytest.raises(ParameterError, match=name):
        simulate_bold(u, 0.1, **kwargs)


def test_nan_input_raises():
    u = np.zeros((20, 2))
    u[3, 1] = np.nan
    with pytest.raises(ParameterError, match="neural_input.*non-finite"):
        simulate_bold(u, 0.1)
    with pytest.raises(ParameterError, match="dt"):
        simulate_bold(np.zeros((20, 2)), -0.1)


def test_mismatched_resting_extraction_is_refused():
    with pytest.raises(ParameterError, match="resting_extraction"):
        simulate_bold(np.zeros((20, 1)), 0.1, BalloonParams.friston2000(), BOLDParams.spm())


def test_spm_bold_constants_are_spm_gx_fmri_at_any_field():
    # spm_gx_fmri (SPM12 r7771 and SPM25): TE 0.04, V0 4 %, r0 25, nu0 40.3, E0 0.4
    b = BOLDParams.spm(log_epsilon=0.3)
    ep = np.exp(0.3)
    k = [float(c) for c in b.coefficients()]
    np.testing.assert_allclose(k, [4.3 * 40.3 * 0.4 * 0.04, ep * 25 * 0.4 * 0.04, 1 - ep], 1e-15)
    v, q = 1.1, 0.9
    g = 4 * (k[0] - k[0] * q + k[1] - k[1] * q / v + k[2] - k[2] * v) / 100  # % -> fraction
    assert float(bold_signal(v, q, b)) == pytest.approx(g, rel=1e-14)
    # the field-dependent preset scales nu0 with B0: 42.4 Hz at 1.5 T, not SPM's 40.3 Hz
    k15 = BOLDParams.at_field(1.5).coefficients()
    assert float(k15[0]) == pytest.approx(4.3 * 28.265 * 1.5 * 0.4 * 0.04, rel=1e-14)
    assert float(BOLDParams.at_field(3.0).coefficients()[1]) == pytest.approx(110 * 0.4 * 0.04)
    with pytest.raises(ParameterError, match="nu0"):
        BOLDParams(nu0=-1.0).validate()
