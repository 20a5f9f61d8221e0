"""Noise covariance: empirical, Ledoit-Wolf shrinkage, diagonal loading, and
the whitener.

The whitener is the symmetric inverse square root ``W = U diag(1/sqrt(l)) U'``
over the ``rank`` largest eigenvalues (zero elsewhere), MNE-Python's
convention for a covariance without projections, so ``W C W'`` is the
identity on the data subspace (rank deficiency from an average reference is
handled by passing ``rank``).
"""

from __future__ import annotations

import numpy as np

from .._core.errors import ParameterError


def empirical_covariance(data, demean=True):
    """Sample covariance of ``data`` (n_channels, n_times)."""
    x = np.asarray(data, float)
    if x.ndim != 2 or x.shape[1] < 2 or not np.all(np.isfinite(x)):
        raise ParameterError(
            "data", f"array of shape {x.shape}", "finite (n_channels, n_times >= 2)"
        )
    if demean:
        x = x - x.mean(1, keepdims=True)
    return x @ x.T / (x.shape[1] - 1)


def ledoit_wolf(data):
    """Ledoit-Wolf (2004) shrinkage towards a scaled identity; returns (cov, shrinkage)."""
    x = np.asarray(data, float)
    x = x - x.mean(1, keepdims=True)
    n_ch, n = x.shape
    s = x @ x.T / n
    mu = np.trace(s) / n_ch
    delta = np.sum((s - mu * np.eye(n_ch)) ** 2)
    beta = sum(np.sum((np.outer(x[:, t], x[:, t]) - s) ** 2) for t in range(n)) / n**2
    shrink = min(beta, delta) / delta if delta > 0 else 1.0
    return shrink * mu * np.eye(n_ch) + (1 - shrink) * s, float(shrink)


def regularize(cov, reg=0.1):
    """Diagonal loading: ``cov + reg * mean(diag(cov)) * I``."""
    cov = np.asarray(cov, float)
    if reg < 0:
        raise ParameterError("reg", reg, "a non-negative regularisation")
    return cov + reg * np.mean(np.diag(cov)) * np.eye(len(cov))


def whitener(cov, rank=None):
    """Symmetric whitening matrix of a covariance (n, n), restricted to ``rank``."""
    cov = np.asarray(cov, float)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or not np.allclose(cov, cov.T):
        raise ParameterError("cov", f"array of shape {cov.shape}", "a symmetric square matrix")
    w, u = np.linalg.eigh(cov)
    order = np.argsort(w)[::-1]
    w, u = w[order], u[:, order]
    rank = int(np.sum(w > w[0] * 1e-12)) if rank is None else int(rank)
    if w[rank - 1] <= 0:
        raise ParameterError(
            "cov",
            "a matrix with non-positive eigenvalues",
            "a positive definite covariance on the data subspace",
        )
    inv_sqrt = np.zeros_like(w)
    inv_sqrt[:rank] = 1.0 / np.sqrt(w[:rank])
    return (u * inv_sqrt) @ u.T, rank
