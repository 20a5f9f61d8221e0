"""Symmetric EEG-fMRI fusion: canonical correlation analysis and joint ICA.

* CCA (Hotelling 1936; Correa et al. 2010 for EEG-fMRI): for trial-wise (or
  subject-wise) features X (n, p) and Y (n, q), the directions a, b that
  maximise corr(X a, Y b); computed from the SVD of the whitened
  cross-covariance ``Cxx^-1/2 Cxy Cyy^-1/2`` with ridge ``reg`` on each
  covariance (needed when p or q approaches n).
* Joint ICA (Calhoun et al. 2006): the EEG and fMRI feature vectors of each
  subject are concatenated, and ICA (FastICA with a tanh contrast and
  symmetric decorrelation; Hyvarinen 1999) finds joint sources that share one
  mixing (loading) per subject across modalities.
"""

from __future__ import annotations

import numpy as np

from .._core.errors import ConvergenceError, ParameterError


def _inv_sqrt(c):
    w, v = np.linalg.eigh(c)
    return (v / np.sqrt(np.maximum(w, 1e-15))) @ v.T


def cca(x, y, n_components=None, reg=1e-6):
    """Canonical correlations and weights.

    Returns
    -------
    rho : (k,) canonical correlations, decreasing
    a : (p, k), b : (q, k) canonical weights
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.shape[0] != y.shape[0] or x.ndim != 2 or y.ndim != 2:
        raise ParameterError("y", f"shape {y.shape}", f"({x.shape[0]}, q): same rows as x")
    x = x - x.mean(0)
    y = y - y.mean(0)
    n = x.shape[0]
    cxx = x.T @ x / (n - 1)
    cyy = y.T @ y / (n - 1)
    cxy = x.T @ y / (n - 1)
    cxx += reg * np.trace(cxx) / len(cxx) * np.eye(len(cxx))
    cyy += reg * np.trace(cyy) / len(cyy) * np.eye(len(cyy))
    wx, wy = _inv_sqrt(cxx), _inv_sqrt(cyy)
    u, s, vt = np.linalg.svd(wx @ cxy @ wy)
    k = min(len(s), n_components or len(s))
    return s[:k], wx @ u[:, :k], wy @ vt[:k].T


def fastica(data, n_components, max_iter=500, tol=1e-8, seed=0):
    """FastICA of ``data`` (n_samples, n_features) -> (sources (n_comp, n_features),
    mixing (n_samples, n_comp)).  Components are along the feature axis (spatial
    ICA, as joint ICA uses)."""
    x = np.asarray(data, float)
    x = x - x.mean(1, keepdims=True)
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    k = int(n_components)
    if not 1 <= k <= len(s):
        raise ParameterError("n_components", n_components, f"an integer in [1, {len(s)}]")
    z = vt[:k] * np.sqrt(x.shape[1])  # whitened (k, n_features)
    w = np.linalg.qr(np.random.default_rng(seed).normal(size=(k, k)))[0]
    for _ in range(max_iter):
        wz = w @ z
        g, gp = np.tanh(wz), 1 - np.tanh(wz) ** 2
        w_new = g @ z.T / z.shape[1] - gp.mean(1)[:, None] * w
        uu, _, vv = np.linalg.svd(w_new)
        w_new = uu @ vv  # symmetric decorrelation
        if np.max(np.abs(np.abs(np.diag(w_new @ w.T)) - 1)) < tol:
            w = w_new
            break
        w = w_new
    else:
        raise ConvergenceError(f"FastICA did not converge in {max_iter} iterations")
    sources = w @ z
    mixing = (u[:, :k] * s[:k] / np.sqrt(x.shape[1])) @ w.T
    return sources, mixing


def joint_ica(eeg_features, fmri_features, n_components, seed=0):
    """Joint ICA of per-subject EEG (n, p) and fMRI (n, q) features.

    Each modality is scaled to unit Frobenius norm before concatenation so that
    neither dominates.  Returns (eeg_sources (k, p), fmri_sources (k, q),
    mixing (n, k)).
    """
    e = np.asarray(eeg_features, float)
    f = np.asarray(fmri_features, float)
    if e.shape[0] != f.shape[0]:
        raise ParameterError(
            "fmri_features", f"{f.shape[0]} rows", f"{e.shape[0]} rows like the EEG"
        )
    e = e / np.linalg.norm(e)
    f = f / np.linalg.norm(f)
    src, mix = fastica(np.c_[e, f], n_components, seed=seed)
    return src[:, : e.shape[1]], src[:, e.shape[1] :], mix
