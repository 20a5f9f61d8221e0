"""The ``"spm_d"`` DCM integrator against SPM's ``spm_int_D`` (values stored
from an Octave run: ``data/spm_int_d_reference.m`` writes
``data/spm_int_d_reference.json``)."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from biosim.inference.dcm import DCMStructure, predict_bold
from biosim.inference.dcm.model import (
    _structured_jacobian_applies,
    second_order_reduction,
    spm_int_d_events,
    spm_int_d_states,
)
from biosim.physics.hemodynamics.bold import bold_from_states
from biosim.physics.neural import NeuralParams

REF = json.loads((pathlib.Path(__file__).parent / "data" / "spm_int_d_reference.json").read_text())
N = 2


def _perm():
    """biosim state index -> SPM state index (SPM: vec of the n x 5 state array)."""
    hemo = [N * c + r for r in range(N) for c in range(1, 5)]
    return np.array(list(range(N)) + hemo)


@pytest.fixture(scope="module")
def model():
    d_spm = np.asarray(REF["D"])
    d = np.moveaxis(d_spm, -1, 0)  # biosim d[k] = SPM D(:, :, k)
    s = DCMStructure(
        np.ones((N, N), bool),
        np.zeros((1, N, N), bool),
        np.array([[True], [False]]),
        d != 0,
        tr=float(REF["tr"]),
        n_micro=int(REF["nm"]),
        field_strength=1.5,
        echo_time=0.04,
        integrator="spm_d",
        convention="spm25",
        delays=tuple(REF["delays"]),
    )
    neural = NeuralParams(
        np.asarray(REF["A"]), np.zeros((1, N, N)), np.asarray(REF["C"])[:, None], d
    )
    theta = jnp.asarray(
        s.pack(neural, transit=REF["transit"], decay=REF["decay"], epsilon=REF["epsilon"])
    )
    u = np.asarray(REF["u"])[:, None]
    return s, theta, u


def test_scheme_reproduces_spm_int_d(model):
    """SPM's own (finite-difference) reduction through biosim's scheme gives
    spm_int_D's BOLD to rounding: the events, the re-evaluated Jacobian and the
    sampling are SPM's."""
    s, theta, u = model
    p = _perm()
    m0, m1, m2 = (np.asarray(REF[k]) for k in ("M0", "M1", "M2"))
    j0 = m0[1:, 1:][np.ix_(p, p)]
    reduction = (
        m0[1:, 0][p],
        j0,
        m1[1:, 0][p][:, None],
        m1[1:, 1:][np.ix_(p, p)][None],
        m2[p][:, 1:, 1:][:, p][:, :, p],
    )
    # SPM's state-dependent columns are its J0 columns (their use in the scheme)
    np.testing.assert_array_equal(m2[:, 1:, 0], m0[1:, 1:].T)
    n_scans = len(REF["y"])
    idx = s.sample_index(n_scans)
    events = spm_int_d_events(jnp.asarray(u), idx, s.tr)
    states = spm_int_d_states(
        tuple(jnp.asarray(a) for a in reduction), jnp.asarray(u), events, s.tr / s.n_micro, N
    )
    hs = states[:, N:].reshape(-1, N, 4)[idx, np.arange(N)[None, :]]
    y = bold_from_states(hs, s.bold_params(theta[-1]))
    y_spm = np.asarray(REF["y"]) / 100.0  # spm_gx_fmri returns percent
    np.testing.assert_allclose(y, y_spm, rtol=1e-10, atol=1e-10 * np.abs(y_spm).max())
    # the exact forward-mode Jacobian (never the structured RK4 path) serves the fit
    assert not _structured_jacobian_applies(s)


@pytest.mark.slow
def test_predict_bold_matches_spm_int_d(model):
    """End to end (exact JAX derivatives where SPM takes finite differences,
    step exp(-8)): within the finite-difference error of SPM's reduction."""
    s, theta, u = model
    red = second_order_reduction(theta, s)
    p = _perm()
    m0, m2 = np.asarray(REF["M0"]), np.asarray(REF["M2"])
    scale = np.abs(m0).max()
    np.testing.assert_allclose(red[1], m0[1:, 1:][np.ix_(p, p)], atol=1e-3 * scale)
    np.testing.assert_allclose(
        red[4][:N], m2[p[:N]][:, 1:, 1:][:, p][:, :, p], atol=2e-3 * np.abs(m2).max()
    )
    y = predict_bold(theta, u, s)
    y_spm = np.asarray(REF["y"]) / 100.0
    err = np.abs(np.asarray(y) - y_spm).max() / np.abs(y_spm).max()
    assert err < 2e-3, err
    # and the scheme is not the exact one: the RK4 BOLD differs by far more
    y_rk4 = predict_bold(theta, u, s.replace(integrator="rk4", substeps=4))
    assert np.abs(np.asarray(y_rk4) - y_spm).max() / np.abs(y_spm).max() > 10 * err


@pytest.mark.slow
def test_gradient(model):
    s, theta, u = model
    u = jnp.asarray(u[:16])

    def f(t):
        return jnp.sum(predict_bold(t, u, s) ** 2)

    check_grads(f, (theta,), order=1, modes=("fwd",), atol=1e-6, rtol=1e-5)
    assert np.all(np.isfinite(jax.grad(f)(theta)))
