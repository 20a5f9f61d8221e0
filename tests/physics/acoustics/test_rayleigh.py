"""Rayleigh-sum CW path for homogeneous media against exact on-axis solutions."""

import math

import jax
import numpy as np
import pytest

from biosim import ParameterError
from biosim.physics.acoustics import bowl, oneil_on_axis, piston, rayleigh_cw

F, C = 1e6, 1500.0
LAM = C / F
K = 2 * math.pi / LAM


def _axis(z):
    return np.stack([z, 0 * z, 0 * z], axis=1)


def test_piston_on_axis_converges_to_the_exact_integral():
    """Circular piston (radius 4 mm): P(z) = exp(-ikz) - exp(-ik sqrt(z^2 + a^2)) exactly;
    the quadrature error (staircased rim) falls by more than 4x when the spacing halves."""
    a = 4e-3
    z = np.linspace(2e-3, 30e-3, 120)
    exact = np.exp(-1j * K * z) - np.exp(-1j * K * np.sqrt(z**2 + a**2))
    errs = []
    for sp in (LAM / 8, LAM / 16):
        p = np.asarray(
            rayleigh_cw(piston([0, 0, 0], [1, 0, 0], 2 * a, point_spacing=sp), _axis(z), F)
        )
        errs.append(np.abs(p - exact).max() / np.abs(exact).max())
    assert errs[1] < 2e-3
    assert errs[1] < errs[0] / 4


def test_bowl_on_axis_matches_oneil_and_absorption_decays():
    """O'Neil (1949) is the exact on-axis integral over the cap: agreement to 1e-5."""
    R, A = 10e-3, 8e-3
    src = bowl([R, 0, 0], [1, 0, 0], R, A, point_spacing=LAM / 8)
    z = np.linspace(2e-3, R + 5e-3, 301)
    p = np.abs(np.asarray(rayleigh_cw(src, _axis(z), F, C)))
    ref = oneil_on_axis(z, R, A, F, C, 1.0)
    assert np.abs(p - ref).max() < 1e-5 * ref.max()
    # absorption: the piston's exact on-axis integral holds for complex k = omega / c - i alpha
    alpha, a = 30.0, 4e-3
    kc = K - 1j * alpha
    zz = np.linspace(2e-3, 30e-3, 40)
    pa = rayleigh_cw(
        piston([0, 0, 0], [1, 0, 0], 2 * a, point_spacing=LAM / 16), _axis(zz), F, C, alpha
    )
    exact = np.exp(-1j * kc * zz) - np.exp(-1j * kc * np.sqrt(zz**2 + a**2))
    assert np.abs(np.asarray(pa) - exact).max() < 2e-3 * np.abs(exact).max()


def test_phase_gradient_matches_finite_differences_and_bad_input_is_refused():
    src = bowl([10e-3, 0, 0], [1, 0, 0], 10e-3, 8e-3, point_spacing=LAM / 4, n_elements=4)
    tgt = _axis(np.array([9e-3, 10e-3, 11e-3])) + np.array([0.0, 0.4e-3, 0.0])

    def power(ph):
        p = rayleigh_cw(src.with_drive(phase=ph), tgt, F, C)
        return jax.numpy.sum(jax.numpy.abs(p) ** 2)

    ph0 = np.array([0.3, -0.5, 1.1, 0.0])
    g = np.asarray(jax.grad(power)(ph0))
    h = 1e-4
    fd = [(float(power(ph0 + h * e)) - float(power(ph0 - h * e))) / (2 * h) for e in np.eye(4)]
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max())
    with pytest.raises(ParameterError):
        rayleigh_cw(src, tgt, -1.0)
    with pytest.raises(ParameterError):
        rayleigh_cw(src, tgt, F, attenuation=-1.0)
    with pytest.raises(ParameterError):
        rayleigh_cw(src, tgt[:, :2], F)
    with pytest.raises(ParameterError):
        rayleigh_cw(piston([0, 0], [1, 0], 1e-3, point_spacing=1e-4), np.zeros((1, 2)), F)
