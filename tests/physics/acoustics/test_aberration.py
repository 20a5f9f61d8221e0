"""Aberration correction through a heterogeneous slab (tiny 2D problem): time reversal
(phase conjugation) and gradient-based phase optimisation both refocus; gradient ascent
reaches the phase-conjugation optimum."""

import numpy as np
import pytest

from biosim.physics.acoustics import (
    Grid,
    Medium,
    cw_settings,
    focal_pressure,
    focus_phases,
    linear_array,
    optimise_phases,
    simulate_cw,
    time_reversal_phases,
)

pytestmark = pytest.mark.slow  # three compiled simulations and a reverse-mode compile (~40 s)

F, C = 1e6, 1500.0


@pytest.fixture(scope="module")
def problem():
    dx = C / F / 6
    grid = Grid(shape=(64, 64), spacing=dx, pml_size=10)
    x, y = grid.axes()
    arr = linear_array([x[15], 0.0], [1, 0], 8, 1e-3, 0.8e-3, point_spacing=dx / 2)
    target = np.array([x[48], 0.3e-3])
    c = np.full(grid.shape, C)
    rho = np.full(grid.shape, 1000.0)
    slab = (np.arange(64) >= 24) & (np.arange(64) < 32)
    c[slab] = 2300.0 + 500.0 * np.sin(2 * np.pi * y / 5e-3)[None, :]  # trabecular-bone-like
    rho[slab] = 1700.0
    med = Medium(sound_speed=c, density=rho)
    settings = cw_settings(med, grid, F, n_dft_periods=2)
    return grid, arr, target, med, settings


def _focal(problem, phases):
    grid, arr, target, med, settings = problem
    fld = simulate_cw(med, arr.with_drive(phase=phases), grid, F, settings=settings)
    return abs(complex(focal_pressure(fld.complex, target, grid)))


def test_time_reversal_and_gradient_ascent_refocus_through_a_slab(problem):
    grid, arr, target, med, settings = problem
    geometric = focus_phases(arr, target, C, F)
    p_geo = _focal(problem, geometric)
    tr = time_reversal_phases(med, arr, grid, F, target, settings=settings)
    p_tr = _focal(problem, tr)
    assert p_tr > 1.15 * p_geo
    opt = optimise_phases(
        med, arr, grid, F, target, n_iter=12, initial_phases=geometric, settings=settings
    )
    hist = np.asarray(opt.focal_pressure)
    assert abs(hist[0] - p_geo) < 1e-9 * p_geo
    assert hist[-1] > 0.98 * p_tr  # reaches the phase-conjugation optimum
    assert hist[-1] < 1.02 * p_tr  # which it cannot beat (linear in the drives)
    assert hist[-1] > hist[len(hist) // 2] > hist[0]
