"""Pennes bioheat against the exact Gaussian solution, schedules, CEM43 and safety indices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biosim import ParameterError
from biosim.physics.thermal import (
    ITIS_TISSUES,
    SonicationSchedule,
    ThermalMaps,
    acoustic_heat_source,
    bioheat_gaussian,
    cem43,
    mechanical_index,
    safety_indices,
    solve_bioheat,
    thermal_maps_from_labels,
)

GM = ITIS_TISSUES["grey_matter"]


def _uniform(shape, h):
    full = lambda v: np.full(shape, v)  # noqa: E731
    return ThermalMaps(
        full(GM.density), full(GM.specific_heat), full(GM.conductivity), full(GM.perfusion_rate), h
    )


N, H = 24, 1e-3  # one grid and signature for the fast tests: one compilation
X = (np.arange(N) - (N - 1) / 2) * H
R2 = X[:, None] ** 2 + X[None, :] ** 2


def _solve(maps, q, **kw):
    """4 s in 1 s steps, a frame per step (the shared compiled signature)."""
    return solve_bioheat(maps, q, 4.0, 1.0, frame_interval=1.0, tol=1e-10, **kw)


def _gaussian_error(n, h, dt, t_end=20.0, width=2e-3):
    maps = _uniform((n, n), h)
    x = (np.arange(n) - (n - 1) / 2) * h
    r2 = x[:, None] ** 2 + x[None, :] ** 2
    th0 = 4.0 * np.exp(-r2 / (2 * width**2))
    res = solve_bioheat(maps, np.zeros((n, n)), t_end, dt, initial_rise=th0, tol=1e-10)
    return np.abs(np.asarray(res.delta_t[-1]) - _exact(r2, t_end, 4.0, width, maps)).max() / 4.0


def _exact(r2, t, amplitude, width, maps):
    rc = GM.density * GM.specific_heat
    decay = GM.perfusion_rate * maps.blood_heat_capacity / rc
    return bioheat_gaussian(r2, t, amplitude, width, GM.conductivity / rc, decay, 2)


def test_gaussian_in_perfused_medium_matches_the_exact_solution():
    maps = _uniform((N, N), H)
    width = 3e-3
    res = _solve(maps, np.zeros((N, N)), initial_rise=4.0 * np.exp(-R2 / (2 * width**2)))
    for t, frame in zip(res.times, np.asarray(res.delta_t)):
        exact = _exact(R2, t, 4.0, width, maps)
        assert np.abs(frame - exact).max() < 3e-3 * 4.0
    # without perfusion the peak is higher by exactly exp(m t), m = w_b rho_b c_b / (rho c)
    slow = _solve(
        ThermalMaps(maps.density, maps.specific_heat, maps.conductivity, 0 * maps.density, H),
        np.zeros((N, N)),
        initial_rise=4.0 * np.exp(-R2 / (2 * width**2)),
    )
    m = GM.perfusion_rate * maps.blood_heat_capacity / (GM.density * GM.specific_heat)
    ratio = float(slow.delta_t[-1].max()) / float(res.delta_t[-1].max())
    assert ratio == pytest.approx(np.exp(4.0 * m), rel=1e-3)


@pytest.mark.slow
def test_gaussian_converges_at_second_order():
    # 2D, 24 mm box: the Gaussian (2 -> 3 mm wide over 20 s) never reaches the boundary
    coarse = _gaussian_error(24, 1e-3, 1.0)
    fine = _gaussian_error(48, 0.5e-3, 0.5)
    assert fine < 2e-3
    assert np.log2(coarse / fine) > 1.7  # second order in space and time (Crank-Nicolson)


def test_constant_source_linearity_and_derivative():
    # constant source: the rise grows monotonically and is linear in Q; d(peak)/d(k) < 0,
    # checked against a central difference through the implicit solve
    q = 2e5 * np.exp(-R2 / (2 * (2e-3) ** 2))
    maps = _uniform((N, N), H)

    def peak(k):
        m = ThermalMaps(
            maps.density, maps.specific_heat, k * jnp.ones((N, N)), maps.perfusion_rate, H
        )
        return _solve(m, q).delta_t[-1].max()

    r1, r2 = _solve(maps, q), _solve(maps, 2 * q)
    assert np.all(np.diff(np.asarray(r1.delta_t).max(axis=(1, 2))) > 0)
    np.testing.assert_allclose(r2.delta_t, 2 * np.asarray(r1.delta_t), rtol=1e-8)
    # forward mode (one tangent solve per step): a cheaper compilation than reverse mode,
    # which the slow test checks
    _, g = jax.jvp(peak, (0.55,), (1.0,))
    fd = (peak(0.56) - peak(0.54)) / 0.02
    assert g < 0
    np.testing.assert_allclose(g, fd, rtol=1e-3)


def test_schedule_on_fraction_and_duty_cycle():
    s = SonicationSchedule(
        duration=10.0,
        onset=2.0,
        pulse_duration=0.02,
        pulse_repetition_frequency=10.0,
        burst_duration=1.0,
        burst_interval=2.0,
    )
    assert s.duty_cycle == pytest.approx(0.1)
    # over the whole window: 5 bursts x 10 pulses x 20 ms = 1 s
    assert float(s.on_time(20.0)) == pytest.approx(1.0)
    frac = s.on_fraction(np.arange(0.0, 13.0, 1.0))
    np.testing.assert_allclose(frac[:2], 0.0)
    np.testing.assert_allclose(frac[2:12], [0.2, 0.0] * 5)
    with pytest.raises(ParameterError, match="pulse_duration"):
        SonicationSchedule(1.0, pulse_duration=0.2, pulse_repetition_frequency=10.0)


def test_cem43_against_hand_computed_doses():
    # 60 s at 44 degC: 0.5^-1 = 2 min; 120 s at 41 degC: 2 min x 0.25^2 = 0.125 min;
    # 30 s at 43 degC: 0.5 min
    np.testing.assert_allclose(cem43(np.full(60, 44.0), 1.0), 2.0)
    np.testing.assert_allclose(cem43(np.full(120, 41.0), 1.0), 0.125)
    np.testing.assert_allclose(cem43([43.0, 45.0], [30.0, 15.0]), 0.5 + 1.0)


def test_solver_dose_matches_cem43_of_its_frames():
    maps = _uniform((N, N), H)
    q = np.where(R2 < (2e-3) ** 2, 3e7, 0.0)
    res = _solve(maps, q, arterial_temperature=40.0)
    assert float(res.max_delta_t.max()) > 3.0  # above 43 degC: both branches of R
    np.testing.assert_allclose(res.cem43, cem43(40.0 + np.asarray(res.delta_t), 1.0), rtol=1e-10)
    np.testing.assert_allclose(res.max_delta_t, np.asarray(res.delta_t).max(0), rtol=1e-12)


def test_heat_source_and_safety_indices():
    # Q = alpha p^2 / (rho c): 1 MPa, 10 Np/m in water -> 10 x 1e12 / 1.5e6 W/m^3
    q = acoustic_heat_source(1e6, 10.0, 1000.0, 1500.0)
    assert float(q) == pytest.approx(1e13 / 1.5e6)
    assert float(mechanical_index(0.5e6, 250e3)) == pytest.approx(1.0)
    labels = np.array([[0, 1], [2, 2]])
    ind = safety_indices(
        np.array([[2e6, 0.4e6], [0.5e6, 0.2e6]]),
        250e3,
        np.array([[0.0, 1.0], [3.0, 0.5]]),
        np.array([[0.0, 0.01], [0.5, 0.0]]),
        labels,
        ("water", "skin", "brain"),
    )
    assert ind.tissues == ("skin", "brain")
    assert ind.peak_pressure == 0.5e6  # the water outside the head is left out
    assert ind.max_delta_t == (1.0, 3.0) and ind.max_cem43 == (0.01, 0.5)
    # brain: 3 K > 2 K but 0.5 CEM43 <= 2 CEM43 (ITRUSST 2025 levels): still low risk
    assert ind.mechanical_ok and ind.thermal_ok
    hot = safety_indices(
        np.full((2, 2), 1e5),
        250e3,
        np.full((2, 2), 3.0),
        np.full((2, 2), 2.5),
        labels,
        ("water", "skin", "brain"),
    )
    assert not hot.thermal_ok  # brain: 3 K and 2.5 CEM43 > 2
    assert hot.limits.cem43("cortical") == 16.0 and hot.limits.cem43("skin") == 21.0


def test_bad_inputs_are_refused():
    maps = thermal_maps_from_labels(np.zeros((4, 4), int), ("brain",), 1e-3)
    with pytest.raises(ParameterError, match="duration"):
        solve_bioheat(maps, np.zeros((4, 4)), 1.0, 0.3)
    with pytest.raises(ParameterError, match="heat_source"):
        solve_bioheat(maps, np.full((4, 4), np.nan), 1.0, 0.5)
    with pytest.raises(ParameterError, match="conductivity"):
        ThermalMaps(*(np.ones((4, 4)),) * 2, -np.ones((4, 4)), np.zeros((4, 4)), 1e-3).check()
    with pytest.raises(ParameterError, match="label_names"):
        thermal_maps_from_labels(np.zeros((4, 4), int), ("unobtainium",), 1e-3)


@pytest.mark.slow
def test_reverse_mode_gradient_matches_finite_differences():
    n = 12
    x = (np.arange(n) - (n - 1) / 2) * H
    r2 = x[:, None] ** 2 + x[None, :] ** 2
    q = 2e5 * np.exp(-r2 / (2 * (2e-3) ** 2))
    maps = _uniform((n, n), H)

    def peak(w):  # perfusion map -> source-weighted mean rise (smooth, unlike a max)
        m = ThermalMaps(maps.density, maps.specific_heat, maps.conductivity, w, H)
        return jnp.sum(_solve(m, q).delta_t[-1] * q) / q.sum()

    w0 = jnp.asarray(maps.perfusion_rate)
    g = jax.grad(peak)(w0)
    d = np.zeros((n, n))
    d[n // 2, n // 2] = 1e-3
    fd = (peak(w0 + d) - peak(w0 - d)) / 2e-3
    np.testing.assert_allclose(g[n // 2, n // 2], fd, rtol=1e-4)
    assert float(jnp.sum(g)) < 0
