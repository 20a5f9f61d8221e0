"""DCM for fMRI: recovery, free energy, gradients, model comparison, errors."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from biosim import ParameterError
from biosim.inference.dcm import (
    DCMStructure,
    fit_dcm,
    model_probabilities,
    predict_bold,
    simulate_dcm,
)
from biosim.physics.neural import NeuralParams

T, NM, TR = 160, 4, 3.22


def _design():
    t = np.arange(T * NM) * TR / NM
    u = np.zeros((T * NM, 2))
    u[:, 0] = (t % 40) < 20  # visual motion blocks
    u[:, 1] = ((t % 80) < 40) * u[:, 0]  # attention during half of them
    return u


def _structures():
    a = np.ones((3, 3), bool)
    c = np.zeros((3, 2), bool)
    c[0, 0] = True
    b_true = np.zeros((2, 3, 3), bool)
    b_true[1, 1, 0] = True  # attention modulates region 1 -> 2
    b_alt = np.zeros((2, 3, 3), bool)
    b_alt[1, 2, 1] = True  # ... or region 2 -> 3
    return (
        DCMStructure(a, b_true, c, tr=TR, n_micro=NM),
        DCMStructure(a, b_alt, c, tr=TR, n_micro=NM),
    )


TRUE_A = np.array([[0.0, -0.1, 0.0], [0.4, 0.0, -0.1], [0.0, 0.3, 0.0]])


def _truth(structure):
    b = np.zeros((2, 3, 3))
    b[1, 1, 0] = 0.4
    c = np.zeros((3, 2))
    c[0, 0] = 1.0
    return structure.pack(NeuralParams(TRUE_A, b, c, np.zeros((3, 3, 3))))


@pytest.fixture(scope="module")
def fitted():
    s_true, s_alt = _structures()
    u = _design()
    y, clean = simulate_dcm(s_true, _truth(s_true), u, snr=3.0, seed=1)
    return s_true, s_alt, u, y, fit_dcm(s_true, y, u), fit_dcm(s_alt, y, u)


def test_parameter_recovery(fitted):
    s_true, _, u, y, res, _ = fitted
    a, b, c = res.connectivity()
    assert res.vl.converged
    assert a[1, 0] == pytest.approx(0.4, abs=0.12) and a[2, 1] == pytest.approx(0.3, abs=0.12)
    assert b[1, 1, 0] == pytest.approx(0.4, abs=0.15)
    assert c[0, 0] == pytest.approx(1.0, abs=0.3)
    # posterior SDs are positive and the truth lies within 3 SD for the key connections
    sd = np.sqrt(np.diag(res.vl.cov))
    truth = _truth(s_true)
    z = np.abs(res.vl.mean - truth) / sd
    assert np.median(z) < 3


def test_free_energy_increases_over_accepted_iterations(fitted):
    res = fitted[4]
    assert np.all(np.diff(res.vl.history) >= 0) and len(res.vl.history) > 2


def test_true_model_is_selected(fitted):
    _, _, _, _, res, alt = fitted
    p = model_probabilities([res.free_energy, alt.free_energy])
    assert p[0] > 0.95


def test_gradient_of_log_likelihood():
    s_true, _ = _structures()
    u = jnp.asarray(_design()[: 40 * NM])
    y = np.asarray(predict_bold(jnp.asarray(_truth(s_true)), u, s_true)) + 1e-4

    def loglik(theta):
        return -0.5 * jnp.sum((100 * (y - predict_bold(theta, u, s_true))) ** 2)

    theta0 = jnp.asarray(_truth(s_true)) * 0.9 + 0.01
    check_grads(loglik, (theta0,), order=1, modes=["fwd", "rev"], atol=1e-5, rtol=1e-4)


def test_bad_input():
    s_true, _ = _structures()
    with pytest.raises(ParameterError, match="inputs"):
        fit_dcm(s_true, np.zeros((10, 3)), np.zeros((10, 2)))
    with pytest.raises(ParameterError, match="y"):
        fit_dcm(s_true, np.zeros((10, 2)), np.zeros((10 * NM, 2)))
    with pytest.raises(ParameterError, match="c"):
        DCMStructure(np.ones((3, 3), bool), np.zeros((2, 3, 3), bool), np.zeros((2, 2), bool))
    d = np.zeros((3, 3, 3), bool)
    d[1, 0, 2] = True
    with pytest.raises(ParameterError, match="nonlinear DCM"):
        DCMStructure(s_true.a, s_true.b, s_true.c, d=d, integrator="spm")


def _int_input_problem(integrator):
    st = DCMStructure(
        np.array([[1, 0], [1, 1]]),
        np.zeros((1, 2, 2)),
        np.array([[1], [0]]),
        tr=2.0,
        n_micro=4,
        integrator=integrator,
    )
    theta = 0.1 * jnp.ones(st.free_index().max() + 1)
    u = np.zeros((40, 1), int)
    u[4:12] = 1
    return st, theta, u


@pytest.mark.parametrize("integrator", ["rk4", "spm"])
def test_integer_and_boolean_inputs_equal_float_inputs(integrator):
    """A design given as 0/1 integers or booleans is the same design (the SPM-style
    integrator's scan carry used to reject non-float inputs with a TypeError)."""
    st, theta, u = _int_input_problem(integrator)
    ref = np.asarray(predict_bold(theta, u.astype(float), st))
    assert np.abs(ref).max() > 0
    for given in (u, u.astype(bool), jnp.asarray(u)):
        np.testing.assert_array_equal(np.asarray(predict_bold(theta, given, st)), ref)


@pytest.mark.parametrize("integrator", ["spm", "rk4"])
def test_simulate_dcm_accepts_integer_and_boolean_inputs(integrator):
    st, theta, u = _int_input_problem(integrator)  # same compiled predictor as above
    _, clean = simulate_dcm(st, theta, u.astype(float))
    assert np.abs(clean).max() > 0
    for given in (u, u.astype(bool)):
        np.testing.assert_array_equal(simulate_dcm(st, theta, given)[1], clean)


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["spm", "rk4"])
def test_fit_dcm_accepts_integer_and_boolean_inputs(integrator):
    st, theta, u = _int_input_problem(integrator)
    u = np.tile(u, (2, 1))
    y, _ = simulate_dcm(st, theta, u.astype(float))
    ref = fit_dcm(st, y, u.astype(float), max_iter=2)
    for given in (u, u.astype(bool)):
        fit = fit_dcm(st, y, given, max_iter=2)
        np.testing.assert_array_equal(np.asarray(fit.vl.mean), np.asarray(ref.vl.mean))
