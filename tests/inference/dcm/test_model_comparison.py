"""Model probabilities, families, BMA and Bayesian model reduction against an exact oracle."""

import numpy as np
import pytest

from biosim.inference.dcm import (
    bayesian_model_average,
    family_probabilities,
    invert,
    model_probabilities,
    reduce_model,
)


def _log_evidence_linear(y, x, prior_var, noise_var):
    """Exact log evidence of y = X theta + e, theta ~ N(0, diag(prior_var)),
    e ~ N(0, noise_var I)."""
    cov = x @ np.diag(prior_var) @ x.T + noise_var * np.eye(len(y))
    sign, ld = np.linalg.slogdet(cov)
    return -0.5 * (y @ np.linalg.solve(cov, y) + ld + len(y) * np.log(2 * np.pi))


def test_bayesian_model_reduction_is_exact_for_linear_gaussian_models():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4))
    theta = np.array([1.0, -0.5, 0.0, 0.0])
    y = x @ theta + rng.normal(scale=0.3, size=40)
    nv, pv = 0.09, np.full(4, 2.0)
    # full posterior (exact: conjugate Gaussian)
    post_cov = np.linalg.inv(x.T @ x / nv + np.diag(1 / pv))
    post_mean = post_cov @ x.T @ y / nv
    red_var = pv.copy()
    red_var[2:] = 1e-8  # switch parameters 3 and 4 off
    df, m_red, c_red = reduce_model(
        post_mean, post_cov, np.zeros(4), np.diag(pv), np.zeros(4), np.diag(red_var)
    )
    exact = _log_evidence_linear(y, x, red_var, nv) - _log_evidence_linear(y, x, pv, nv)
    assert df == pytest.approx(exact, abs=1e-4)
    np.testing.assert_allclose(m_red[2:], 0.0, atol=1e-6)
    assert df > 0  # the true zeros are preferred


def test_variational_laplace_evidence_on_linear_model_matches_exact():
    # with the noise precision known tightly, VL's F equals the exact log evidence
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 3))
    y = x @ np.array([0.5, -1.0, 2.0]) + rng.normal(scale=0.1, size=60)
    res = invert(
        lambda th: (x @ th)[:, None],
        y[:, None],
        np.zeros(3),
        np.full(3, 4.0),
        hyper_mean=np.log(100.0),
        hyper_var=1e-8,
    )
    exact = _log_evidence_linear(y, x, np.full(3, 4.0), 0.01)
    assert res.free_energy == pytest.approx(exact, abs=0.05)
    np.testing.assert_allclose(
        res.mean, np.linalg.solve(x.T @ x / 0.01 + np.eye(3) / 4.0, x.T @ y / 0.01), rtol=1e-6
    )


def test_probabilities_families_and_averaging():
    p = model_probabilities([0.0, 3.0, -10.0])
    assert p.sum() == pytest.approx(1.0) and np.argmax(p) == 1
    fam = family_probabilities([0.0, 3.0, 2.0], ["fwd", "bwd", "bwd"])
    assert fam["bwd"] > 0.9
    mean, cov = bayesian_model_average(
        [np.zeros(2), np.ones(2)], [np.eye(2), np.eye(2)], [0.0, 0.0]
    )
    np.testing.assert_allclose(mean, 0.5)
    np.testing.assert_allclose(np.diag(cov), 1.25)
