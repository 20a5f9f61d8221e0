"""Gradient-based posterior sampling (NUTS) for posterior checks of variational Laplace.

Variational Laplace (:mod:`.variational_laplace`) approximates the posterior
by a Gaussian.  :func:`sample_posterior` draws from the exact posterior of the
same model, ``y_k ~ N(g_k(theta), exp(-lambda_k))`` per column with Gaussian
priors on ``theta`` (and on the log precisions ``lambda`` unless they are
fixed), with the No-U-Turn sampler (Hoffman & Gelman 2014) and Stan-style
window adaptation of the step size and a diagonal mass matrix, from BlackJAX
(optional dependency: ``pip install 'biosim[sampling]'``).  The gradients of
the log density are JAX autodiff through the model's integrator.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ..._core.errors import ParameterError


@dataclasses.dataclass
class SamplingResult:
    """Posterior draws.

    Attributes
    ----------
    theta : (n_samples, p)
    log_precision : (n_samples, k)
    acceptance : float
        Mean acceptance probability after warm-up.
    divergences : int
        Divergent transitions after warm-up (should be 0).
    step_size : float
    """

    theta: np.ndarray
    log_precision: np.ndarray
    acceptance: float
    divergences: int
    step_size: float

    @property
    def mean(self):
        return self.theta.mean(axis=0)

    @property
    def cov(self):
        return np.cov(self.theta, rowvar=False)


def log_joint(
    model,
    y,
    prior_mean,
    prior_var,
    hyper_mean=6.0,
    hyper_var=1 / 128,
    args=(),
    fixed_log_precision=None,
):
    """The unnormalised log posterior density as a function of a flat vector
    ``[theta, lambda]`` (or ``theta`` alone when the log precisions are fixed)."""
    y = jnp.asarray(y, float)
    mu, var = jnp.asarray(prior_mean, float), jnp.asarray(prior_var, float)
    p, n = mu.size, y.shape[0]

    def logdensity(x):
        theta = x[:p]
        lam = jnp.asarray(fixed_log_precision, float) if fixed_log_precision is not None else x[p:]
        resid = y - model(theta, *args)
        ll = 0.5 * n * jnp.sum(lam) - 0.5 * jnp.sum(jnp.exp(lam) * jnp.sum(resid**2, axis=0))
        lp = -0.5 * jnp.sum((theta - mu) ** 2 / var)
        if fixed_log_precision is None:
            lp = lp - 0.5 * jnp.sum((lam - hyper_mean) ** 2) / hyper_var
        return ll + lp

    return logdensity


def sample_posterior(
    model,
    y,
    prior_mean,
    prior_var,
    *,
    args=(),
    hyper_mean=6.0,
    hyper_var=1 / 128,
    fixed_log_precision=None,
    init=None,
    n_samples=1000,
    n_warmup=500,
    seed=0,
) -> SamplingResult:
    """Draw from the posterior of ``y ~ model(theta, *args)`` with NUTS.

    Parameters
    ----------
    model : callable (theta, *args) -> (T, k)
    y : (T, k)
    prior_mean, prior_var : (p,)
    fixed_log_precision : (k,), optional
        Keep the noise log precisions fixed (e.g. at the VL posterior) instead
        of sampling them under the N(hyper_mean, hyper_var) prior.
    init : (p,) or (p + k,), optional
        Starting point (e.g. the VL posterior mean); default the prior mean.
    n_samples, n_warmup : int
    seed : int
    """
    try:
        import blackjax
    except ImportError as err:
        raise ImportError(
            "posterior sampling needs BlackJAX: pip install 'biosim[sampling]'"
        ) from err
    y = np.asarray(y, float)
    if y.ndim != 2 or not np.all(np.isfinite(y)):
        raise ParameterError("y", f"array of shape {y.shape}", "finite data of shape (T, k)")
    if n_samples < 1 or n_warmup < 0:
        raise ParameterError("n_samples", n_samples, "a positive number of draws")
    p, k = np.size(prior_mean), y.shape[1]
    logdensity = log_joint(
        model, y, prior_mean, prior_var, hyper_mean, hyper_var, args, fixed_log_precision
    )
    if init is None:
        init = np.asarray(prior_mean, float)
        if fixed_log_precision is None:
            init = np.r_[init, np.full(k, hyper_mean)]
    init = jnp.asarray(init, float)
    key_warm, key_draw = jax.random.split(jax.random.key(seed))
    adapt = blackjax.window_adaptation(blackjax.nuts, logdensity)
    (state, params), _ = adapt.run(key_warm, init, num_steps=n_warmup)
    kernel = jax.jit(blackjax.nuts(logdensity, **params).step)

    def one(state, key):
        state, info = kernel(key, state)
        return state, (state.position, info.acceptance_rate, info.is_divergent)

    _, (pos, acc, div) = jax.lax.scan(one, state, jax.random.split(key_draw, n_samples))
    pos = np.asarray(pos)
    lam = (
        np.tile(np.asarray(fixed_log_precision, float), (n_samples, 1))
        if fixed_log_precision is not None
        else pos[:, p:]
    )
    return SamplingResult(
        theta=pos[:, :p],
        log_precision=lam,
        acceptance=float(np.mean(acc)),
        divergences=int(np.sum(div)),
        step_size=float(params["step_size"]),
    )
