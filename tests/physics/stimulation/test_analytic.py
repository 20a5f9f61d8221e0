"""Analytic stimulation oracles: Heller-van Hulsteyn checked by its defining properties,
Rush-Driscoll TES checked against the EEG sphere series by reciprocity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biosim import ParameterError
from biosim._core.errors import GeometryError
from biosim.physics.electromag.sphere_eeg import SphereHead, eeg_gain
from biosim.physics.stimulation import (
    dipole_coil,
    figure8_dipole_coil,
    place_on_sphere,
    sphere_tes_field,
    sphere_tes_potential,
    sphere_tms_field,
    vector_potential,
)
from biosim.physics.stimulation.analytic import _hvh


def test_hvh_is_the_sphere_solution():
    """E = -dA/dt - grad(phi): curl(E + dA/dt) = 0, div E = 0 and E . r = 0 on the
    surface determine the field uniquely; a radial dipole induces no charge."""
    r0 = jnp.array([[0.02, -0.01, 0.1]])
    m = jnp.array([[1e-3, 2e-3, -5e-4]])
    coil = dipole_coil(r0, m)

    def e_plus_a(x):
        return _hvh(x[None], r0, m)[0] + vector_potential(coil, x[None])[0]

    for x in (jnp.array([0.01, 0.02, 0.05]), jnp.array([-0.03, 0.0, 0.07])):
        J = jax.jacfwd(e_plus_a)(x)
        np.testing.assert_allclose(J - J.T, 0.0, atol=1e-9 * np.abs(J).max())
        Je = jax.jacfwd(lambda y: _hvh(y[None], r0, m)[0])(x)
        assert abs(np.trace(Je)) < 1e-9 * np.abs(Je).max()
    pts = np.random.default_rng(0).normal(size=(30, 3)) * 0.03
    e = np.asarray(sphere_tms_field(coil, pts))
    assert np.max(np.abs(np.sum(e * pts, 1))) < 1e-12 * np.abs(e).max() * 0.1
    radial = dipole_coil([[0, 0, 0.1]], [[0, 0, 1e-3]])
    np.testing.assert_allclose(
        sphere_tms_field(radial, pts), -np.asarray(vector_potential(radial, pts)), rtol=1e-12
    )


def test_hvh_errors_and_placement():
    coil = figure8_dipole_coil(0.03, n_rings=3)
    pl = place_on_sphere(0.3, 0.2, 0.0, 0.005, radius=0.09)
    pts = np.array([[0.0, 0.0, 0.07]])
    assert np.all(np.isfinite(sphere_tms_field(coil, pts, 1e6, pl, outer_radius=0.09)))
    with pytest.raises(GeometryError, match="intersects"):
        sphere_tms_field(
            coil, pts, placement=place_on_sphere(0.3, 0.2, 0.0, 0.0, radius=0.08), outer_radius=0.09
        )


@pytest.mark.slow
def test_tes_series_matches_eeg_reciprocity():
    head = SphereHead.three_shell()
    el = np.array([[0.0, 0.0, 0.09], [0.09, 0.0, 0.0], [0.0, -0.09, 0.0]])
    cur = np.array([1.0, -0.4, -0.6])
    r0 = np.array([[0.01, 0.02, 0.05], [0.03, -0.01, 0.06]])
    E = np.asarray(sphere_tes_field(head, el, cur, r0, n_terms=300))
    G = np.asarray(eeg_gain(head, el, r0))  # (electrodes, sources, 3)
    # Helmholtz reciprocity: q . E_TES(r0) = -sum_k I_k V_k(q at r0)
    np.testing.assert_allclose(E, -np.einsum("k,ksj->sj", cur, G), rtol=1e-9)
    phi = sphere_tes_potential(head, el, cur, r0)
    assert np.all(np.isfinite(phi))
    with pytest.raises(ParameterError, match="sum to zero"):
        sphere_tes_potential(head, el, [1.0, -0.5, 0.0], r0)
