"""Multi-shell sphere EEG: closed form, series, shells, truncation, Berg-Scherg, gradients,
errors."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from biosim import GeometryError, ParameterError
from biosim.physics.electromag import sphere_eeg as se


def _electrodes(n=40, radius=0.09, seed=0):
    e = np.random.default_rng(seed).normal(size=(n, 3))
    e[:, 2] = np.abs(e[:, 2])
    return e / np.linalg.norm(e, axis=1)[:, None] * radius


def _rdm(a, b):
    a, b = a - a.mean(), b - b.mean()
    return np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b))


Q = np.array([1e-8, -2e-8, 0.5e-8])


@pytest.mark.parametrize("ecc", [0.0, 0.3, 0.7, 0.95])
def test_one_shell_series_equals_closed_form(ecc):
    e = _electrodes()
    r0 = np.array([0.3, 0.2, 0.9]) / np.linalg.norm([0.3, 0.2, 0.9]) * ecc * 0.09
    closed = np.asarray(se.homogeneous_sphere_potential(e, r0, Q, 0.09, 0.33))
    series = np.asarray(
        se._series_terms(jnp.asarray(e), jnp.asarray(r0), jnp.asarray(Q), 0.09, 800)
    ).sum(0) / (4 * np.pi * 0.33)
    assert np.max(np.abs(closed - series)) < 1e-10 * np.max(np.abs(closed))


def test_homogeneous_sphere_against_infinite_medium_plus_image_limit():
    # a dipole at the centre: V = 3 q.r_hat / (4 pi sigma R^2)
    e = _electrodes()
    v = np.asarray(se.homogeneous_sphere_potential(e, np.zeros(3), Q, 0.09, 0.33))
    np.testing.assert_allclose(v, 3 * (e / 0.09) @ Q / (4 * np.pi * 0.33 * 0.09**2), rtol=1e-12)


def test_equal_conductivity_shells_equal_one_shell():
    e = _electrodes(radius=0.092)
    one = se.SphereHead.create([0.092], [0.33])
    three = se.SphereHead.create([0.085, 0.09, 0.092], [0.33, 0.33, 0.33])
    r0 = np.array([0.0, 0.05, 0.06])
    np.testing.assert_allclose(
        se.eeg_potential(three, e, r0, Q), se.eeg_potential(one, e, r0, Q), rtol=1e-12, atol=1e-20
    )


def test_truncation_converges_to_eccentricity_0999():
    head = se.SphereHead.three_shell()
    e = _electrodes()
    r0 = np.array([0.3, 0.2, 0.9]) / np.linalg.norm([0.3, 0.2, 0.9]) * 0.999 * 0.0783
    ref = np.asarray(se.eeg_potential(head, e, r0, Q, n_terms=1500))
    errs = [
        np.max(np.abs(np.asarray(se.eeg_potential(head, e, r0, Q, n_terms=n)) - ref))
        / np.max(np.abs(ref))
        for n in (50, 100)
    ]
    assert errs[0] < 1e-4 and errs[1] < 1e-9
    default = np.asarray(se.eeg_potential(head, e, r0, Q))
    assert np.max(np.abs(default - ref)) < 1e-12 * np.max(np.abs(ref))
    # and the accelerated sum equals the plain series where the latter converges
    r0b = r0 / 0.999 * 0.8
    w = se.transfer_weights(head, 1500)
    plain = np.asarray(
        (
            w[:, None]
            * se._series_terms(jnp.asarray(e), jnp.asarray(r0b), jnp.asarray(Q), 0.09, 1500)
        ).sum(0)
    )
    plain = plain / (4 * np.pi * 0.3)
    np.testing.assert_allclose(
        se.eeg_potential(head, e, r0b, Q), plain, rtol=1e-10, atol=1e-12 * np.abs(plain).max()
    )


def test_skull_attenuates_and_smears():
    e = _electrodes(200)
    hom = se.SphereHead.create([0.0783, 0.0828, 0.09], [0.3, 0.3, 0.3])
    skull = se.SphereHead.three_shell()
    # tangential dipole: amplitude drops by about half through a 50x less conductive skull
    r0, q = np.array([0.0, 0.0, 0.06]), np.array([1e-8, 0.0, 0.0])
    v_h, v_s = (np.asarray(se.eeg_potential(h, e, r0, q)) for h in (hom, skull))
    assert np.ptp(v_s) < 0.7 * np.ptp(v_h)
    # radial dipole near the surface: the skull spreads the peak over more electrodes
    r0, q = np.array([0.0, 0.0, 0.07]), np.array([0.0, 0.0, 1e-8])
    spread = [
        np.mean(np.abs(v) > 0.5 * np.abs(v).max())
        for v in (np.asarray(se.eeg_potential(h, e, r0, q)) for h in (hom, skull))
    ]
    assert spread[1] > 2 * spread[0]


def test_berg_scherg_accuracy():
    head = se.SphereHead.four_shell()
    berg = se.fit_berg_parameters(head)
    e = _electrodes(60, 0.09)
    rdms = []
    rng = np.random.default_rng(1)
    for ecc in (0.1, 0.5, 0.8, 0.95):
        for _ in range(4):
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            r0 = d * ecc * head.radii[0]
            for q in (d * 1e-8, np.cross(d, [0.0, 0.0, 1.0]) * 1e-8 + 1e-12):
                exact = np.asarray(se.eeg_potential(head, e, r0, q))
                approx = np.asarray(se.berg_scherg_potential(head, e, r0, q, berg))
                rdms.append(_rdm(approx, exact))
    # MNE-Python's Berg-Scherg fit reaches median 0.01 / max 0.04; ours is tighter
    assert np.median(rdms) < 1e-3 and np.max(rdms) < 0.01


def test_gradients_wrt_position_and_conductivity():
    e = _electrodes(12)

    def f(pos, log_skull):
        head = se.SphereHead(
            jnp.array([0.0783, 0.0828, 0.09]),
            jnp.array([0.3, 0.3 * jnp.exp(log_skull), 0.3]),
            jnp.zeros(3),
        )
        return jnp.sum(se._gain(head, jnp.asarray(e), pos[None], 60)[:, 0, :] @ Q) * 1e6

    check_grads(
        f,
        (jnp.array([0.01, 0.02, 0.05]), jnp.log(0.02)),
        order=1,
        modes=["rev"],
        atol=1e-6,
        rtol=1e-4,
    )


def test_bad_input():
    with pytest.raises(GeometryError, match="increasing"):
        se.SphereHead.create([0.09, 0.08], [0.3, 0.3])
    with pytest.raises(ParameterError, match="conductivities"):
        se.SphereHead.create([0.08, 0.09], [0.3, -0.3])
    head = se.SphereHead.three_shell()
    with pytest.raises(GeometryError, match="outside the innermost shell"):
        se.eeg_gain(head, _electrodes(), np.array([[0.0, 0.0, 0.079]]))
    with pytest.raises(GeometryError, match="inside the head"):
        se.eeg_gain(head, _electrodes(radius=0.06), np.array([[0.0, 0.0, 0.05]]))
