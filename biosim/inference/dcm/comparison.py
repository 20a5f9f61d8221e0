"""Bayesian model comparison for DCM.

* posterior model probabilities from free energies (flat model prior):
  p(m | y) = softmax(F_m);
* family probabilities: sums over the models of each family;
* Bayesian model averaging of Gaussian posteriors: the mixture's mean and
  covariance;
* Bayesian model reduction (Friston & Penny 2011, NeuroImage 56:2089; SPM's
  ``spm_log_evidence``): the evidence and posterior of a model that differs
  only in its priors, from the full model's posterior without refitting::

      Pi_q = Pi + Pi_r - Pi_p
      mu_q = Pi_q^-1 (Pi mu + Pi_r mu_r - Pi_p mu_p)
      dF   = 1/2 (ln|Pi| + ln|Pi_r| - ln|Pi_p| - ln|Pi_q|)
             - 1/2 (mu' Pi mu + mu_r' Pi_r mu_r - mu_p' Pi_p mu_p - mu_q' Pi_q mu_q)

  Switching a parameter off is a reduced prior variance of ~0 (1e-8 here).
"""

from __future__ import annotations

import numpy as np

from ..._core.errors import ParameterError


def model_probabilities(free_energies):
    """Posterior probabilities of models from their free energies (flat prior)."""
    f = np.asarray(free_energies, float)
    p = np.exp(f - f.max())
    return p / p.sum()


def family_probabilities(free_energies, families):
    """Posterior probability of each family (``families[i]`` labels model i)."""
    p = model_probabilities(free_energies)
    labels = sorted(set(families))
    return {lab: float(sum(pi for pi, f in zip(p, families) if f == lab)) for lab in labels}


def bayesian_model_average(means, covs, free_energies):
    """Mixture mean and covariance of Gaussian posteriors weighted by p(m | y)."""
    p = model_probabilities(free_energies)
    means = [np.asarray(m, float) for m in means]
    mean = sum(pi * m for pi, m in zip(p, means))
    cov = sum(
        pi * (np.asarray(c) + np.outer(m - mean, m - mean)) for pi, m, c in zip(p, means, covs)
    )
    return mean, cov


def reduce_model(post_mean, post_cov, prior_mean, prior_cov, reduced_mean, reduced_cov):
    """Bayesian model reduction.

    Returns
    -------
    dF : float
        Log evidence of the reduced model minus that of the full model.
    mean, cov : posterior of the reduced model.
    """
    mu, mp, mr = (np.asarray(a, float) for a in (post_mean, prior_mean, reduced_mean))
    c, cp, cr = (np.atleast_2d(np.asarray(a, float)) for a in (post_cov, prior_cov, reduced_cov))
    if not (c.shape == cp.shape == cr.shape == (mu.size, mu.size)):
        raise ParameterError(
            "covariances",
            f"shapes {c.shape}, {cp.shape}, {cr.shape}",
            f"({mu.size}, {mu.size}) each",
        )
    pi, pp, pr = np.linalg.inv(c), np.linalg.inv(cp), np.linalg.inv(cr)
    pq = pi + pr - pp
    cq = np.linalg.inv(pq)
    mq = cq @ (pi @ mu + pr @ mr - pp @ mp)
    ld = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    df = 0.5 * (ld(pi) + ld(pr) - ld(pp) - ld(pq)) - 0.5 * (
        mu @ pi @ mu + mr @ pr @ mr - mp @ pp @ mp - mq @ pq @ mq
    )
    return float(df), mq, cq
