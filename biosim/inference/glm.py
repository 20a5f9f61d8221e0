"""Mass-univariate fMRI GLM: OLS and AR(1) prewhitening, t and F contrasts, z maps.

OLS: beta = pinv(X) Y, dispersion = RSS / (n - p), with RSS = Y'Y - beta' X'X beta
(no residual matrix) wherever that identity loses less than ~2e-11 to
cancellation, explicit residuals elsewhere.  AR(1) as nilearn's
``run_glm(noise_model="ar1")`` (Worsley et al. 2002 approach): rho per voxel
from the Yule-Walker lag-1 autocorrelation of the OLS residuals (global mean
removed, biased/unbiased lag normalisation as nilearn),
truncated to bins of 1/``bins``; voxels sharing a bin are refitted on data and
design whitened by ``x_t - rho x_(t-1)`` (first row unchanged).
t = c' beta / sqrt(dispersion c' (Xw' Xw)^-1 c) with n - p degrees of freedom;
F for a contrast matrix; z = the standard-normal quantile of the same tail
probability (computed in log space, finite for extreme statistics).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

from .._core.errors import ParameterError


@dataclasses.dataclass
class GLMResult:
    beta: np.ndarray  # (p, V)
    dispersion: np.ndarray  # (V,)
    xtx_inv: np.ndarray  # (p, p) or (V, p, p) for AR(1) (one per voxel, from its bin)
    df: int
    rho: np.ndarray | None  # (V,) AR(1) coefficients used (None for OLS)

    def t_contrast(self, c):
        c = np.asarray(c, float)
        eff = c @ self.beta
        var = np.einsum("i,...ij,j->...", c, self.xtx_inv, c) * self.dispersion
        t = eff / np.sqrt(var)
        return t, _z_from_t(t, self.df)

    def f_contrast(self, c):
        c = np.atleast_2d(np.asarray(c, float))
        eff = c @ self.beta  # (q, V)
        if self.xtx_inv.ndim == 2:
            cov = c @ self.xtx_inv @ c.T
            inv = np.linalg.inv(cov)
            f = np.einsum("qv,qr,rv->v", eff, inv, eff) / (c.shape[0] * self.dispersion)
        else:
            cov = np.einsum("qi,vij,rj->vqr", c, self.xtx_inv, c)
            f = np.einsum("qv,vqr,rv->v", eff, np.linalg.inv(cov), eff) / (
                c.shape[0] * self.dispersion
            )
        logp = stats.f.logsf(f, c.shape[0], self.df)
        return f, stats.norm.isf(np.exp(logp))


def _z_from_t(t, df):
    logp = stats.t.logsf(t, df)
    z = -stats.norm.ppf(np.exp(logp))
    # for very significant t, exp(logp) underflows; use the log-space tail expansion
    small = ~np.isfinite(z)
    if np.any(small):
        lp = logp[small]
        z[small] = np.sqrt(-2 * lp - np.log(-4 * np.pi * lp))
    return z


#: Largest y'y / RSS for which the residual sum of squares is taken from the
#: Gram identity (relative round-off about sqrt(n) eps y'y / RSS, i.e. about
#: 2e-11 for a few hundred scans); voxels above it get explicit residuals.
GRAM_RSS_MAX_RATIO = 1e4


def _design_terms(x):
    pinv = np.linalg.pinv(x)
    return pinv, pinv @ pinv.T, x.shape[0] - np.linalg.matrix_rank(x)


def _fit(x, y):
    """Least squares with explicit residuals (returned)."""
    pinv, xtx, df = _design_terms(x)
    beta = pinv @ y
    resid = y - x @ beta
    return beta, resid, np.einsum("ij,ij->j", resid, resid) / df, xtx, df


def _gram_rss(y, beta, gram):
    """RSS = y'y - b' (X'X) b and the voxels where that cancels too much."""
    yy = np.einsum("ij,ij->j", y, y)
    rss = yy - np.einsum("ij,ij->j", beta, gram @ beta)
    return rss, ~(yy <= GRAM_RSS_MAX_RATIO * rss)  # also rss <= 0 and non-finite yy


def _fit_gram(x, y):
    """Least squares without forming the (n, V) residuals.

    RSS = y'y - b' (X'X) b (exact for the least-squares b): one pass over y
    for b and one for y'y.  Where y'y / RSS exceeds :data:`GRAM_RSS_MAX_RATIO`
    (a large baseline) and the constants lie in the design's span, the
    identity is applied again to the data minus their mean (the mean of the
    fitted values; the residuals are unchanged), refitted so that the
    identity's first-order sensitivity to round-off in b stays small; voxels
    that still cancel, or whose y'y overflows, get explicit residuals.
    """
    pinv, xtx, df = _design_terms(x)
    beta = pinv @ y
    gram = x.T @ x
    rss, bad = _gram_rss(y, beta, gram)
    idx = np.flatnonzero(bad)
    w = pinv @ np.ones(x.shape[0])
    if idx.size and np.allclose(x @ w, 1.0, rtol=0, atol=1e-10):
        sel = slice(None) if 2 * idx.size > y.shape[1] else idx
        yc = y[:, sel] - x.mean(0) @ beta[:, sel]
        rss_c, bad_c = _gram_rss(yc, pinv @ yc, gram)
        if isinstance(sel, slice):
            rss[bad], idx = rss_c[bad], np.flatnonzero(bad & bad_c)
        else:
            rss[idx], idx = rss_c, idx[bad_c]
    if idx.size:
        r = y[:, idx] - x @ beta[:, idx]
        rss[idx] = np.einsum("ij,ij->j", r, r)
    return beta, rss / df, xtx, df


def fit_glm(y, x, noise_model="ar1", bins=100, bias_correction=False) -> GLMResult:
    """Fit the GLM to data ``y`` (n_scans, n_voxels) with design ``x`` (n_scans, p).

    Parameters
    ----------
    noise_model : {"ar1", "ols"}
    bins : int
        AR(1) coefficients are truncated to multiples of 1/bins (nilearn).
    bias_correction : bool
        Correct the lag-1 autocorrelation of the OLS residuals for the
        projection onto the design (Worsley et al. 2002): with R = I - X X+ and
        S the lag-1 shift plus its transpose, the residual autocovariances
        satisfy E[r'r] = g0 tr(R) + g1 tr(RS), E[r'Sr]/2 = g0 tr(SR)/2 +
        g1 tr(SRSR)/2, solved for rho = g1/g0 (bounded to [-0.99, 0.99], the
        stationary range the prewhitening needs; noise-only voxels can
        otherwise give |rho| >= 1).  False reproduces nilearn, whose
        uncorrected estimate is biased low (liberal false-positive rate).
    """
    y = np.asarray(y, float)
    x = np.asarray(x, float)
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ParameterError("y", f"array of shape {y.shape}", f"({x.shape[0]}, n_voxels)")
    if noise_model not in ("ols", "ar1"):
        raise ParameterError("noise_model", noise_model, "'ols' or 'ar1'")
    if noise_model == "ols":
        with np.errstate(invalid="ignore", over="ignore"):
            beta, disp, xtx, df = _fit_gram(x, y)
        # non-finite data give a non-finite dispersion: checked after the fit (no extra pass)
        if not np.all(np.isfinite(disp)) and not np.all(np.isfinite(y)):
            raise ParameterError("y", "data with NaN or inf", "finite data")
        return GLMResult(beta, disp, xtx, df, None)
    if not np.all(np.isfinite(y)):
        raise ParameterError("y", "data with NaN or inf", "finite data")
    beta, resid, disp, xtx, df = _fit(x, y)
    n = resid.shape[0]
    if bias_correction:
        proj = np.eye(n) - x @ np.linalg.pinv(x)
        shift = np.eye(n, k=1) + np.eye(n, k=-1)
        m = np.array(
            [
                [np.trace(proj), np.trace(proj @ shift)],
                [np.trace(shift @ proj) / 2, np.trace(shift @ proj @ shift @ proj) / 2],
            ]
        )
        g = np.linalg.solve(m, np.stack([np.sum(resid**2, 0), np.sum(resid[1:] * resid[:-1], 0)]))
        rho = np.clip(g[1] / g[0], -0.99, 0.99)
    else:
        r = resid - resid.mean()  # global mean, as nilearn's Yule-Walker
        rho = (np.sum(r[1:] * r[:-1], 0) / (n - 1)) / (np.sum(r**2, 0) / n)
    rho = (rho * bins).astype(int) / bins
    beta = np.empty_like(beta)
    disp = np.empty(y.shape[1])
    xtx_all = np.empty((y.shape[1], x.shape[1], x.shape[1]))
    for val in np.unique(rho):
        sel = rho == val
        xw = x.copy()
        xw[1:] = x[1:] - val * x[:-1]
        yw = y[:, sel].copy()
        yw[1:] = y[1:, sel] - val * y[:-1, sel]
        b, d, xtx_v, df = _fit_gram(xw, yw)
        beta[:, sel], disp[sel], xtx_all[sel] = b, d, xtx_v
    return GLMResult(beta, disp, xtx_all, df, rho)
