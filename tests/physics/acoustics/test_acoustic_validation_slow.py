"""Heavy acoustic validations (slow): O'Neil's focused bowl in 3D at 6 points per
wavelength, and convergence of the layer transmission with points per wavelength."""

import math

import numpy as np
import pytest

from biosim.physics.acoustics import (
    Grid,
    Medium,
    bowl,
    cw_settings,
    oneil_on_axis,
    piston,
    simulate_cw,
)

pytestmark = pytest.mark.slow


def _peak(z, p):
    """Parabolic refinement of the maximum of samples p(z)."""
    i = int(np.argmax(p))
    y0, y1, y2 = p[i - 1], p[i], p[i + 1]
    d = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    return z[i] + d * (z[1] - z[0]), y1 - 0.25 * (y0 - y2) * d


def test_focused_bowl_matches_oneil_at_6_points_per_wavelength():
    """1 MHz bowl, radius of curvature 20 mm, aperture 16 mm, in water (grid 136 x 93 x 93):
    focal pressure within 2 % and focal position within 0.5 mm of O'Neil (1949)."""
    f, c, R, A = 1e6, 1500.0, 20e-3, 16e-3
    dx, pml = c / f / 6, 10
    nx = int(math.ceil((R + 7e-3) / dx)) + 2 * pml + 8
    nl = int(math.ceil((A + 2e-3) / dx)) + 2 * pml
    nl += (nl + 1) % 2
    apex = -R / 2 - 2e-3
    origin = (apex - (pml + 5) * dx, -(nl - 1) / 2 * dx, -(nl - 1) / 2 * dx)
    grid = Grid(shape=(nx, nl, nl), spacing=dx, pml_size=pml, origin=origin)
    src = bowl([apex + R, 0, 0], [1, 0, 0], R, A, point_spacing=dx / 2)
    med = Medium(sound_speed=c, density=1000.0)
    settings = cw_settings(med, grid, f, settle_time=3 / f + 1.2 * nx * dx / c)
    amp = np.asarray(simulate_cw(med, src, grid, f, settings=settings).amplitude)
    j = (nl - 1) // 2
    z = grid.axes()[0] - apex
    sel = (z > 2e-3) & (z < R + 5e-3)
    z_sim, p_sim = _peak(z[sel], amp[sel, j, j])
    zz = np.linspace(2e-3, R + 5e-3, 40001)
    ref = oneil_on_axis(zz, R, A, f, c, 1.0)
    z_ref, p_ref = zz[np.argmax(ref)], ref.max()
    assert abs(p_sim / p_ref - 1) < 0.02
    assert abs(z_sim - z_ref) < 0.5e-3
    # the whole on-axis profile beyond the near field
    far = sel & (z > R / 2)
    on_ref = oneil_on_axis(z[far], R, A, f, c, 1.0)
    assert np.abs(amp[far, j, j] - on_ref).max() < 0.05 * p_ref


def test_layer_transmission_converges_with_points_per_wavelength():
    """|T| of a ~3 mm cortical-bone layer (a whole number of cells) at 500 kHz: the error
    falls as the grid is refined (4 -> 16 points per wavelength in water), below 0.5 % at 16."""
    f, c1, r1, c2, r2, d = 5e5, 1500.0, 1000.0, 2800.0, 1850.0, 3e-3
    z1, z2, k2 = r1 * c1, r2 * c2, 2 * math.pi * f / c2
    errs = []
    for ppw in (4, 6, 8, 12, 16):
        dx = c1 / f / ppw
        nl = int(round(d / dx))
        n = 40 + 60 + nl + 4 * ppw + 40
        grid = Grid(shape=(n, 4), spacing=dx, pml_size=(20, 0))
        x, y = grid.axes()
        cmap = np.full(grid.shape, c1)
        rmap = np.full(grid.shape, r1)
        cmap[60 : 60 + nl], rmap[60 : 60 + nl] = c2, r2
        src = piston([x[30], y[0] + 1.5 * dx], [1, 0], 4 * dx, point_spacing=dx / 2)
        fld = simulate_cw(Medium(sound_speed=cmap, density=rmap), src, grid, f)
        t_num = np.asarray(fld.amplitude)[60 + nl + 2 * ppw : -22, 0].mean()
        t_ref = (
            2
            * z1
            / abs(2 * z1 * math.cos(k2 * nl * dx) + 1j * (z2 + z1**2 / z2) * math.sin(k2 * nl * dx))
        )
        errs.append(abs(t_num / t_ref - 1))
    assert errs[-1] < 5e-3
    assert errs[-1] < errs[0] / 4
    assert all(b < a * 1.2 for a, b in zip(errs, errs[1:]))
