"""NUTS posterior sampling: exact on a linear-Gaussian model (the oracle), and a
posterior check of variational Laplace on a small nonlinear model."""

import jax.numpy as jnp
import numpy as np
import pytest

from biosim.inference.dcm import invert
from biosim.inference.dcm.sampling import log_joint, sample_posterior

pytest.importorskip("blackjax")


def test_nuts_matches_the_exact_gaussian_posterior():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    theta_true = np.array([0.5, -1.0, 0.3])
    lam = np.log(4.0)  # noise sd 0.5
    y = (x @ theta_true + 0.5 * rng.normal(size=40))[:, None]
    mu0, var0 = np.zeros(3), np.full(3, 2.0)
    post_cov = np.linalg.inv(np.exp(lam) * x.T @ x + np.diag(1 / var0))
    post_mean = post_cov @ (np.exp(lam) * x.T @ y[:, 0])
    res = sample_posterior(
        lambda th, xx: (xx @ th)[:, None],
        y,
        mu0,
        var0,
        args=(jnp.asarray(x),),
        fixed_log_precision=[lam],
        n_samples=1000,
        n_warmup=300,
        seed=1,
    )
    sd = np.sqrt(np.diag(post_cov))
    # Monte Carlo error of the mean ~ sd / sqrt(ESS) (ESS of NUTS here ~ 1000+)
    assert np.all(np.abs(res.mean - post_mean) < 0.1 * sd), (res.mean - post_mean) / sd
    assert np.all(np.abs(np.sqrt(np.diag(res.cov)) / sd - 1) < 0.1)
    assert res.divergences == 0 and 0.6 < res.acceptance < 0.99


def test_vl_posterior_check_on_a_nonlinear_model():
    """y = a (1 - exp(-t / tau)): the VL Gaussian and the NUTS posterior agree in mean
    (within 0.2 SD) and SD (within 25 %) when the data are informative."""
    t = jnp.linspace(0.1, 5, 60)

    def model(th):
        return (jnp.exp(th[0]) * (1 - jnp.exp(-t / jnp.exp(th[1]))))[:, None]

    rng = np.random.default_rng(2)
    y = np.asarray(model(jnp.array([0.2, 0.3]))) + 0.05 * rng.normal(size=(60, 1))
    vl = invert(model, y, np.zeros(2), np.ones(2))
    res = sample_posterior(
        model,
        y,
        np.zeros(2),
        np.ones(2),
        init=np.r_[vl.mean, vl.log_precision],
        n_samples=1000,
        n_warmup=300,
        seed=3,
    )
    sd_vl = np.sqrt(np.diag(vl.cov))
    assert np.all(np.abs(res.mean - vl.mean) < 0.2 * sd_vl)
    assert np.all(np.abs(np.sqrt(np.diag(res.cov)) / sd_vl - 1) < 0.25)
    assert res.divergences == 0


def test_log_joint_is_the_gaussian_log_density():
    y = np.array([[1.0], [2.0]])
    f = log_joint(
        lambda th: jnp.stack([th, 2 * th]), y, np.zeros(1), np.ones(1), fixed_log_precision=[0.0]
    )
    th = 0.7
    expected = -0.5 * ((1 - th) ** 2 + (2 - 2 * th) ** 2) - 0.5 * th**2
    assert float(f(jnp.array([th]))) == pytest.approx(expected)
