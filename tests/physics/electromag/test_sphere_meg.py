"""Sarvas MEG: radial silence, Biot-Savart check, coil integration, gradients, errors."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from biosim import GeometryError, ParameterError
from biosim._core.units import MU0
from biosim.physics.electromag import sensors, sphere_meg
from biosim.physics.electromag import sphere_eeg as se


def test_radial_dipole_is_silent():
    helmet = sensors.squid_helmet_306(accuracy="point")
    r0 = np.array([[0.01, 0.02, 0.06]])
    g = np.asarray(sphere_meg.meg_gain(helmet, r0))
    radial = r0[0] / np.linalg.norm(r0[0])
    assert np.max(np.abs(g[:, 0, :] @ radial)) < 1e-12 * np.max(np.abs(g))


def test_sarvas_equals_biot_savart_of_primary_plus_volume_currents():
    # homogeneous sphere: B = B_primary - sigma/(4 pi) mu0 * surface integral of
    # V n x (r - r')/|r-r'|^3
    # (Geselowitz), with V the closed-form surface potential; fine surface quadrature.
    radius, sigma = 0.09, 0.33
    r0 = np.array([0.01, -0.015, 0.05])
    q = np.array([1e-8, 2e-8, -0.3e-8])
    point = np.array([[0.02, 0.03, 0.12]])
    # Gauss-Legendre in cos(theta) x uniform in phi
    nt, nphi = 400, 800
    x, w = np.polynomial.legendre.leggauss(nt)
    phi = (np.arange(nphi) + 0.5) * 2 * np.pi / nphi
    st = np.sqrt(1 - x**2)
    n = np.stack(
        [np.outer(st, np.cos(phi)), np.outer(st, np.sin(phi)), np.outer(x, np.ones(nphi))], -1
    ).reshape(-1, 3)
    da = (np.outer(w, np.full(nphi, 2 * np.pi / nphi)) * radius**2).ravel()
    surf = n * radius
    v = np.asarray(se.homogeneous_sphere_potential(surf, r0, q, radius, sigma))
    d = point[0] - surf
    dist3 = np.linalg.norm(d, axis=1) ** 3
    b_vol = (
        -sigma * MU0 / (4 * np.pi) * np.sum((v * da)[:, None] * np.cross(n, d) / dist3[:, None], 0)
    )
    dp = point[0] - r0
    b_prim = MU0 / (4 * np.pi) * np.cross(q, dp) / np.linalg.norm(dp) ** 3
    b_sarvas = (
        np.asarray(sphere_meg.sarvas_field_matrix(jnp.asarray(point), jnp.asarray(r0)))[0] @ q
    )
    np.testing.assert_allclose(
        b_prim + b_vol, b_sarvas, rtol=1e-4, atol=1e-4 * np.abs(b_sarvas).max()
    )


def test_coil_integration_converges_and_gradiometer_is_derivative():
    r0 = np.array([[0.0, 0.01, 0.05]])
    pos, nrm = np.array([0.0, 0.0, 0.11]), np.array([0.0, 0.0, 1.0])
    vals = [
        float(sphere_meg.meg_gain(sensors.magnetometer("m", pos, nrm, accuracy=a), r0)[0, 0, 0])
        for a in (1, 4, 16)
    ]
    assert abs(vals[1] - vals[2]) < 0.1 * abs(vals[0] - vals[2])
    g = sensors.planar_gradiometer("g", pos, nrm, [1.0, 0, 0], baseline=1e-4, side=1e-5, accuracy=2)
    h = 1e-6
    mp = sensors.opm("p", pos + [h, 0, 0], nrm)
    mm = sensors.opm("m", pos - [h, 0, 0], nrm)
    fd = (np.asarray(sphere_meg.meg_gain(mp, r0)) - np.asarray(sphere_meg.meg_gain(mm, r0))) / (
        2 * h
    )
    np.testing.assert_allclose(np.asarray(sphere_meg.meg_gain(g, r0)), fd, rtol=1e-3)


def test_arrays_and_opm_modes():
    assert sensors.squid_helmet_306().n_channels == 306
    assert sensors.squid_helmet_306().select(["mag"]).n_channels == 102
    assert sensors.axial_system_275().n_channels == 275
    tri = sensors.opm_array(20, axes="triaxial")
    assert tri.n_channels == 60 and set(tri.kinds) == {"opm"}
    # OPMs close to the scalp see more field than a SQUID helmet
    src = np.array([[0.0, 0.03, 0.06]])
    b_opm = np.abs(np.asarray(sphere_meg.meg_gain(sensors.opm_array(60), src))).max()
    b_sq = np.abs(
        np.asarray(sphere_meg.meg_gain(sensors.squid_helmet_306().select(["mag"]), src))
    ).max()
    assert b_opm > 2 * b_sq
    with pytest.raises(ParameterError, match="axes"):
        sensors.opm_array(5, axes="oblique")


def test_gradient_wrt_dipole_position():
    helmet = sensors.squid_helmet_306(accuracy="point").select(["mag"])

    def f(p):
        return (
            jnp.sum(
                sphere_meg._meg_gain(
                    jnp.asarray(helmet.points),
                    jnp.asarray(helmet.normals),
                    jnp.asarray(helmet.weights),
                    jnp.asarray(helmet.channel),
                    p[None],
                    jnp.zeros(3),
                    helmet.n_channels,
                )[:, 0, 1]
            )
            * 1e12
        )

    check_grads(f, (jnp.array([0.01, 0.02, 0.05]),), order=1, modes=["rev"], atol=1e-6, rtol=1e-4)


def test_sensors_inside_head_rejected():
    with pytest.raises(GeometryError, match="outside the head"):
        sphere_meg.meg_gain(
            sensors.opm_array(10, scalp_radius=0.03, standoff=0.0), np.array([[0.0, 0.0, 0.06]])
        )
