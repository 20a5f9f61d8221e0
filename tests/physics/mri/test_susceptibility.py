import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biosim import ParameterError
from biosim.physics.mri.susceptibility import (
    dipole_kernel,
    field_map_hz,
    field_shift,
    field_shift_components,
    shift_for_direction,
    shim,
    through_slice_dephasing,
)


def _sphere(n, a, sub=4):
    """Partial-volume sphere of radius a (grid units of a unit box) on an n^3 grid."""
    h = 1.0 / n
    x = (np.arange(n) + 0.5) * h - 0.5
    off = ((np.arange(sub) + 0.5) / sub - 0.5) * h
    chi = np.zeros((n, n, n))
    for dx in off:
        for dy in off:
            for dz in off:
                X, Y, Z = np.meshgrid(x + dx, x + dy, x + dz, indexing="ij")
                chi += (X**2 + Y**2 + Z**2 < a**2) / sub**3
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    return chi, X, Y, Z, h


def _sphere_errors(n, a=0.12):
    chi, X, Y, Z, h = _sphere(n, a)
    shift = np.asarray(field_shift(chi, h))  # delta chi = 1 ppm
    r = np.sqrt(X**2 + Y**2 + Z**2)
    out = (r >= 1.5 * a) & (r <= 3 * a)
    cos2 = Z[out] ** 2 / r[out] ** 2
    exact = (a / r[out]) ** 3 * (3 * cos2 - 1) / 3
    err_out = np.sqrt(np.mean((shift[out] - exact) ** 2)) / np.sqrt(np.mean(exact**2))
    inside = r < 0.5 * a
    return err_out, np.abs(shift[inside]).max()


def test_sphere_field_matches_the_analytic_dipole_and_converges():
    e32, in32 = _sphere_errors(32)
    e64, in64 = _sphere_errors(64)
    # relative RMS error outside (r in [1.5a, 3a]): 0.70 % at 32^3, 0.18 % at 64^3
    assert e64 < 0.005 and e64 < 0.5 * e32
    assert in64 < 0.002 and in32 < 0.01  # Lorentz-corrected: ~0 inside a uniform sphere


def test_components_recombine_for_any_direction():
    rng = np.random.default_rng(1)
    chi = rng.normal(size=(12, 10, 8))
    vs = (2e-3, 2.5e-3, 3e-3)
    comps = field_shift_components(chi, vs)
    np.testing.assert_allclose(
        shift_for_direction(comps, (0, 0, 1)), field_shift(chi, vs), atol=1e-12
    )
    b = np.array([0.3, -0.2, 0.93])
    np.testing.assert_allclose(
        shift_for_direction(comps, b), field_shift(chi, vs, b0_direction=b), atol=1e-12
    )
    k = dipole_kernel((12, 10, 8), vs)
    assert k[0, 0, 0] == 0 and k.max() <= 1 / 3 + 1e-12 and k.min() >= -2 / 3 - 1e-12
    # off-resonance in Hz: gamma_bar B0 shift, and differentiable
    np.testing.assert_allclose(
        field_map_hz(chi, vs, 3.0), 42.577478 * 3.0 * np.asarray(field_shift(chi, vs)), rtol=1e-6
    )
    g = jax.grad(lambda c: jnp.sum(field_shift(c, vs) ** 2))(jnp.asarray(chi))
    assert np.all(np.isfinite(np.asarray(g)))
    with pytest.raises(ParameterError, match="b0_direction"):
        field_shift(chi, vs, b0_direction=(0, 0, 0))
    with pytest.raises(ParameterError, match="chi_ppm"):
        field_shift(np.full((4, 4, 4), np.nan), vs)


def test_through_slice_dephasing_is_the_slice_profile_sinc():
    g = 150.0 / 0.003  # Hz/m: 150 Hz across a 3 mm slice
    z = np.arange(6) * 0.003
    field = np.broadcast_to(g * z, (3, 4, 6))
    te = 0.03
    out = np.asarray(through_slice_dephasing(field, (0.003, 0.003, 0.003), te))
    np.testing.assert_allclose(out, abs(np.sinc(g * 0.003 * te)), rtol=1e-12)
    # numeric integration of the phase over a rectangular slice profile
    s = np.linspace(-0.0015, 0.0015, 20001)
    numeric = abs(np.trapezoid(np.exp(2j * np.pi * g * s * te), s) / 0.003)
    np.testing.assert_allclose(out[0, 0, 0], numeric, rtol=1e-6)
    with pytest.raises(ParameterError, match="slice_axis"):
        through_slice_dephasing(field, 0.003, te, slice_axis=3)


def test_shim_removes_polynomials_exactly():
    x, y, z = np.meshgrid(*(np.arange(n, dtype=float) for n in (8, 9, 7)), indexing="ij")
    bump = np.exp(-((x - 4) ** 2 + (y - 4) ** 2 + (z - 3) ** 2) / 4)
    field = 30 + 2 * x - 3 * z + 0.5 * x * y + bump
    mask = np.ones(field.shape, bool)
    r2 = shim(field, mask, order=2)
    r0 = shim(bump, mask, order=2)
    np.testing.assert_allclose(r2, r0, atol=1e-9)  # the polynomial part is gone
    np.testing.assert_allclose(shim(field, mask, 0).mean(), 0, atol=1e-9)
    with pytest.raises(ParameterError, match="order"):
        shim(field, mask, order=3)


def test_field_map_of_the_shipped_head_at_3t():
    from biosim.geometry.anatomy import mni_anatomy
    from biosim.physics.mri.tissue import susceptibility_map, tissue_properties

    a = mni_anatomy()
    aff = np.array(a.affine, float)
    aff[:3, :3] *= 4.0
    aff[:3, 3] += 1.5
    head = a.resample(aff, tuple(int(np.ceil(n / 4)) for n in a.shape), supersample=2)
    chi = susceptibility_map(head.fractions, tissue_properties(3.0))
    field = np.asarray(field_map_hz(chi, 4e-3, 3.0))
    brain = head.fractions[:2].sum(0) > 0.5
    r = shim(field, brain, order=1)[brain]
    p1, p99 = np.percentile(r, [1, 99])
    assert 40 < p99 - p1 < 300  # Hz: tens of Hz, strongest near the sinuses and mastoids
    xyz = np.argwhere(brain) * 4.0 + aff[:3, 3]
    inferior_frontal = (xyz[:, 2] < -5) & (xyz[:, 1] > 10)
    superior = xyz[:, 2] > 40
    centre = np.linalg.norm(xyz - [0, -18, 10], axis=1) < 30
    # after a first-order shim: -135 .. +153 Hz, the extreme in orbitofrontal cortex next to
    # the frontal sinus and ethmoid cells, a few Hz in the brain's centre
    assert np.abs(r[inferior_frontal]).max() > 2 * np.abs(r[superior]).max()
    assert np.percentile(np.abs(r[centre]), 90) < 20


def test_infinite_cylinder_perpendicular_to_b0():
    # a cylinder along x through the whole grid: edge padding continues it, so it is
    # infinite; outside dB/B0 = (dchi/2)(a/r)^2 cos(2 phi), inside -dchi/6 (Lorentz-corrected).
    # Its 1/r^2 field makes the periodic images matter: 2.5 % error with the default padding
    # (period 2x the grid), 0.7 % with pad=3 (period 4x)
    n, a, sub = 48, 0.12, 4
    h = 1.0 / n
    x = (np.arange(n) + 0.5) * h - 0.5
    off = ((np.arange(sub) + 0.5) / sub - 0.5) * h
    chi = np.zeros((n, n))
    for dy in off:
        for dz in off:
            Y, Z = np.meshgrid(x + dy, x + dz, indexing="ij")
            chi += (Y**2 + Z**2 < a**2) / sub**2
    Y, Z = np.meshgrid(x, x, indexing="ij")
    r = np.hypot(Y, Z)
    out = (r >= 1.5 * a) & (r <= 3 * a)
    exact = 0.5 * (a / r[out]) ** 2 * (Z[out] ** 2 - Y[out] ** 2) / r[out] ** 2
    errs = []
    for pad in (1.0, 3.0):
        shift = np.asarray(field_shift(np.broadcast_to(chi, (4, n, n)), h, pad=pad))[2]
        errs.append(np.sqrt(np.mean((shift[out] - exact) ** 2)) / np.sqrt(np.mean(exact**2)))
        np.testing.assert_allclose(shift[r < 0.5 * a], -1 / 6, atol=0.003)
    assert errs[1] < 0.01 and errs[1] < 0.5 * errs[0] < 0.015
