"""k-space acoustic solver: plane waves against analytic transmission and absorption,
set-up checks, and gradients against finite differences (small 2D grids)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biosim._core.errors import ParameterError
from biosim.physics.acoustics import (
    Grid,
    Medium,
    cw_settings,
    db_to_neper,
    piston,
    point_source,
    simulate_cw,
    source_map,
)

F = 5e5  # Hz
C1, R1 = 1500.0, 1000.0


def _plane_setup(ppw, n):
    """A 1D-like grid: n points along x (PML 20), 4 periodic points across."""
    dx = C1 / F / ppw
    grid = Grid(shape=(n, 4), spacing=dx, pml_size=(20, 0))
    ax = grid.axes()
    src = piston([ax[0][40], ax[1][0] + 1.5 * dx], [1, 0], 4 * dx, point_spacing=dx / 2)
    return grid, src, ax[0]


@pytest.fixture(scope="module")
def plane():
    return _plane_setup(10, 200)


def test_plane_wave_through_layer_matches_analytic_transmission(plane):
    """|T| of a cortical-bone layer in water (normal incidence): 2 Z1 / |2 Z1 cos(k2 d) +
    i (Z2 + Z1^2 / Z2) sin(k2 d)|."""
    grid, src, x = plane
    c2, r2 = 2800.0, 1850.0  # ITRUSST cortical bone
    i1, nl = 100, 10  # layer of 10 cells = 3.0 mm
    c = np.full(grid.shape, C1)
    rho = np.full(grid.shape, R1)
    c[i1 : i1 + nl], rho[i1 : i1 + nl] = c2, r2
    fld = simulate_cw(Medium(sound_speed=c, density=rho), src, grid, F, settle_time=60e-6)
    d = nl * grid.spacing[0]
    z1, z2, k2 = R1 * C1, r2 * c2, 2 * math.pi * F / c2
    t_exact = 2 * z1 / abs(2 * z1 * math.cos(k2 * d) + 1j * (z2 + z1**2 / z2) * math.sin(k2 * d))
    a = np.asarray(fld.amplitude)[i1 + nl + 10 : -25, 0]
    assert np.std(a) < 2e-3 * t_exact  # a single transmitted plane wave
    assert abs(np.mean(a) - t_exact) < 5e-3 * t_exact
    # incident side: exp(-ikx) + R exp(ikx) with |R| = sqrt(1 - T^2) (lossless layer)
    k1 = 2 * math.pi * F / C1
    xs = x[50:95]
    basis = np.stack([np.exp(-1j * k1 * xs), np.exp(1j * k1 * xs)], axis=1)
    (a_inc, a_ref), *_ = np.linalg.lstsq(basis, np.asarray(fld.complex)[50:95, 0], rcond=None)
    assert abs(abs(a_inc) - 1) < 2e-3
    assert abs(abs(a_ref) - math.sqrt(1 - t_exact**2)) < 5e-3


def _tc_wavenumber(omega, c0, a_np, y):
    """Complex k of the Treeby-Cox (2010) model, omega^2 = c0^2 k^2 [1 + 2 i omega alpha0
    c0^(y-1) |k|^(y-2) - eta |k|^(y-1)], by fixed-point iteration (p ~ exp(i(omega t - k x)))."""
    eta = 2 * a_np * c0**y * math.tan(math.pi * y / 2)
    k = omega / c0 + 0j
    for _ in range(50):
        kr = abs(k.real)
        k = (
            omega
            / c0
            / np.sqrt(1 + 2j * omega * a_np * c0 ** (y - 1) * kr ** (y - 2) - eta * kr ** (y - 1))
        )
    return k


@pytest.mark.parametrize("alpha0,y", [(0.6, 1.3), (3.0, 2.0)])  # y = 2: the FFT-free loss path
def test_plane_wave_absorption_follows_power_law(plane, alpha0, y):
    """Decay rate and phase speed of a plane wave against the model's dispersion relation;
    against alpha0 f^y within the model's first-order error 2 (alpha/k) |tan(pi y / 2)|."""
    grid, src, x = plane
    med = Medium(sound_speed=C1, density=R1, alpha0=alpha0, alpha_power=y)
    fld = simulate_cw(med, src, grid, F, settle_time=60e-6)
    sl = slice(60, -25)
    amp = np.asarray(fld.amplitude)[sl, 0]
    ph = np.unwrap(np.asarray(fld.phase)[sl, 0])
    alpha = -np.polyfit(x[sl], np.log(amp), 1)[0]
    kr = -np.polyfit(x[sl], ph, 1)[0]
    omega = 2 * math.pi * F
    k = _tc_wavenumber(omega, C1, db_to_neper(alpha0, y), y)
    assert abs(alpha - (-k.imag)) < 2e-3 * alpha
    assert abs(kr - k.real) < 5e-4 * kr
    power_law = float(med.attenuation_np(F))
    model_err = 2 * power_law / k.real * abs(math.tan(math.pi * y / 2))
    assert abs(alpha - power_law) < (1.5 * model_err + 2e-3) * power_law


def test_under_resolved_and_unstable_setups_are_refused():
    grid = Grid(shape=(64, 64), spacing=1e-3, pml_size=10)
    with pytest.raises(ParameterError, match="points per\\s+wavelength"):
        cw_settings(Medium(sound_speed=1500.0), grid, 1e6)  # 1.5 points per wavelength
    ok = Grid(shape=(64, 64), spacing=2e-4, pml_size=10)
    with pytest.raises(ParameterError, match="cfl"):
        cw_settings(Medium(sound_speed=1500.0), ok, 1e6, cfl=1.5)
    # a strongly absorbing medium at a long step: the loss term is explicit and blows up
    lossy = Medium(sound_speed=1500.0, alpha0=2e4, alpha_power=2.0)
    with pytest.raises(ParameterError, match="unstable"):
        cw_settings(lossy, ok, 1e6, cfl=0.9)
    with pytest.raises(ParameterError, match="alpha_power"):
        Medium(sound_speed=1500.0, alpha_power=1.0)
    with pytest.raises(ParameterError, match="sound_speed"):
        Medium(sound_speed=-1.0)
    src = point_source([0.0, 0.0], weight=1e-3)
    far = point_source([0.0063, 0.0], weight=1e-3)  # inside the PML
    with pytest.raises(ParameterError, match="transducer.points"):
        source_map(far, ok)
    assert np.isfinite(np.asarray(source_map(src, ok))).all()


@pytest.fixture(scope="module")
def tiny():
    """32 x 32 grid, 2 MHz in water, 6 points per wavelength, two point elements."""
    f = 2e6
    dx = C1 / f / 6
    grid = Grid(shape=(32, 32), spacing=dx, pml_size=6)
    ax = grid.axes()
    src_a = point_source([ax[0][11], ax[1][13]], weight=dx)
    src_b = point_source([ax[0][11], ax[1][18] + 0.3 * dx], weight=dx)
    smap_a = source_map(src_a, grid)
    smap_b = source_map(src_b, grid)
    rng = np.random.default_rng(0)
    c0 = C1 + 30 * rng.standard_normal(grid.shape)
    settings = cw_settings(
        Medium(sound_speed=c0), grid, f, settle_time=6 / f, n_dft_periods=1, c_ref=1700.0
    )
    rec = (21, 15)

    def loss(c, phase):
        smap = smap_a + jnp.exp(1j * phase) * smap_b
        fld = simulate_cw(Medium(sound_speed=c, density=R1), smap, grid, f, settings=settings)
        return fld.amplitude[rec] ** 2

    return jax.jit(loss), c0, rng.standard_normal(grid.shape)


@pytest.mark.slow  # the reverse-mode compile alone takes ~12 s on 2 cores
def test_gradients_match_finite_differences(tiny):
    loss, c0, v = tiny
    g_c, g_ph = jax.grad(loss, argnums=(0, 1))(c0, 0.4)
    eps = 1e-2
    fd_c = (loss(c0 + eps * v, 0.4) - loss(c0 - eps * v, 0.4)) / (2 * eps)
    assert abs(float(jnp.sum(g_c * v)) - float(fd_c)) < 1e-5 * abs(float(fd_c))
    fd_ph = (loss(c0, 0.4 + 1e-5) - loss(c0, 0.4 - 1e-5)) / 2e-5
    assert abs(float(g_ph) - float(fd_ph)) < 1e-5 * abs(float(fd_ph))
