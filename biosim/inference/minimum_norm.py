"""Distributed source imaging: MNE, dSPM, sLORETA and eLORETA.

Follows MNE-Python's linear inverse operator (Hamalainen & Ilmoniemi 1994;
Dale et al. 2000; Pascual-Marqui 2002, 2011) on any biosim gain matrix:

1. whiten: ``G_w = W G`` (W from :func:`covariance.whitener`, rank r);
2. source standard deviations ``s_k = sqrt(depth_k * orient_k)`` with the
   depth prior ``depth_k = ||G_w,k||_2^(-2 p)`` (spectral norm of the k-th
   source's block, exponent p = ``depth``, capped at ``limit^2`` times the
   smallest) and the loose-orientation prior (1 normal, ``loose`` tangential);
3. scale: ``s *= sqrt(r / ||G_w diag(s)||_F^2)`` so that trace(G R G') = r;
4. SVD ``G_w diag(s) = U diag(sigma) V'``, regularised inverse
   ``sigma / (sigma^2 + lambda2)`` (lambda2 = 1 / SNR^2);
5. kernel ``K = diag(s) V diag(sigma / (sigma^2 + lambda2)) U' W``;
6. noise normalisation: dSPM divides source k by
   ``|| s_k V_k (sigma / (sigma^2 + lambda2)) ||``; sLORETA by the same with
   the weights multiplied by ``sqrt(1 + sigma^2 / lambda2)`` (the square root
   of the resolution-matrix diagonal up to lambda); free orientations combine
   the three components' norms.
eLORETA iterates the source weights so the inverse has zero localisation
error for single sources in the noiseless case (Pascual-Marqui 2011).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._core.errors import ConvergenceError, ParameterError
from .covariance import whitener

METHODS = ("MNE", "dSPM", "sLORETA", "eLORETA")


@dataclasses.dataclass(frozen=True)
class InverseOperator:
    kernel_parts: tuple  # (lead weights (n_src_cols, k), reginv (k,), U'W (k, n_ch))
    sing: np.ndarray
    source_std: np.ndarray
    whitener: np.ndarray
    n_orient: int
    lambda2: float
    gain_whitened: np.ndarray  # G_w diag(s) (for eLORETA)
    rank: int


def _as_columns(gain):
    g = np.asarray(gain, float)
    if g.ndim == 2:
        return g, 1
    if g.ndim == 3 and g.shape[2] == 3:
        return g.reshape(g.shape[0], -1), 3
    raise ParameterError(
        "gain", f"array of shape {g.shape}", "(n_channels, n_sources) or (n_channels, n_sources, 3)"
    )


def make_inverse_operator(
    gain,
    noise_cov,
    *,
    depth=0.8,
    limit=10.0,
    loose=None,
    normals=None,
    snr=3.0,
    rank=None,
    source_weights=None,
) -> InverseOperator:
    """Build a linear inverse operator.

    Parameters
    ----------
    gain : (C, S) fixed or (C, S, 3) free orientation
    noise_cov : (C, C)
    depth : float or None
        Depth-weighting exponent (MNE default 0.8); None for none.
    limit : float
        Cap on the depth weights' dynamic range (MNE default 10).
    loose : float, optional
        Weight (0..1) of tangential orientations; needs ``normals`` (S, 3).
    snr : float
        Assumed SNR; lambda2 = 1 / snr^2.
    rank : int, optional
        Rank of the noise covariance (e.g. n - 1 after an average reference).
    source_weights : (S,) array, optional
        Prior source variance weights (e.g. fMRI-informed, see
        :mod:`biosim.inference.fmri_prior`), multiplied into the source
        covariance before the trace scaling.
    """
    g, n_orient = _as_columns(gain)
    if g.shape[0] != np.shape(noise_cov)[0]:
        raise ParameterError(
            "noise_cov",
            f"shape {np.shape(noise_cov)}",
            f"({g.shape[0]}, {g.shape[0]}) like the gain's channels",
        )
    if snr <= 0:
        raise ParameterError("snr", snr, "a positive SNR")
    w, r = whitener(noise_cov, rank)
    gw = w @ g
    n_src = g.shape[1] // n_orient
    prior = np.ones(g.shape[1])
    if loose is not None:
        if n_orient != 3 or normals is None:
            raise ParameterError("loose", loose, "free-orientation gain and source normals")
        gw = _rotate_to_normal(gw, normals)
        prior = np.tile([loose, loose, 1.0], n_src)
    if depth is not None:
        blocks = gw.reshape(gw.shape[0], n_src, n_orient)
        norms = np.array([np.linalg.norm(blocks[:, k, :], 2) ** 2 for k in range(n_src)])
        d = norms ** (-depth)
        d = np.minimum(d, d.min() * limit**2)
        prior = prior * np.repeat(d, n_orient)
    if source_weights is not None:
        sw = np.asarray(source_weights, float)
        if sw.shape != (n_src,) or np.any(sw < 0):
            raise ParameterError(
                "source_weights", f"array of shape {sw.shape}", f"({n_src},) non-negative weights"
            )
        prior = prior * np.repeat(sw, n_orient)
    std = np.sqrt(prior)
    gs = gw * std
    scale = np.sqrt(r / np.linalg.norm(gs, "fro") ** 2)
    std, gs = std * scale, gs * scale
    u, sing, vt = np.linalg.svd(gs, full_matrices=False)
    sing = sing[:r]
    u, vt = u[:, :r], vt[:r]
    lambda2 = 1.0 / snr**2
    reginv = sing / (sing**2 + lambda2)
    leads = std[:, None] * vt.T
    return InverseOperator((leads, reginv, u.T @ w), sing, std, w, n_orient, lambda2, gs, r)


def _rotate_to_normal(gw, normals):
    """Express each source's 3 columns in a (tangential, tangential, normal) frame."""
    n = np.asarray(normals, float)
    n = n / np.linalg.norm(n, axis=1, keepdims=True)
    out = gw.reshape(gw.shape[0], -1, 3).copy()
    for k, nk in enumerate(n):
        helper = np.array([1.0, 0, 0]) if abs(nk[0]) < 0.9 else np.array([0, 1.0, 0])
        t1 = np.cross(nk, helper)
        t1 /= np.linalg.norm(t1)
        t2 = np.cross(nk, t1)
        out[:, k, :] = out[:, k, :] @ np.stack([t1, t2, nk], 1)
    return out.reshape(gw.shape)


def apply_inverse(inv: InverseOperator, data, method="dSPM", eloreta_iter=50):
    """Source estimates (n_sources, n_times) (or (n_sources, 3, n_times) for free orientation).

    Parameters
    ----------
    inv : InverseOperator
    data : (C, T) array
    method : "MNE" | "dSPM" | "sLORETA" | "eLORETA"
    """
    if method not in METHODS:
        raise ParameterError("method", method, f"one of {METHODS}")
    data = np.asarray(data, float)
    if not np.all(np.isfinite(data)):
        raise ParameterError("data", "array with non-finite values", "finite data")
    leads, reginv, utw = inv.kernel_parts
    if method == "eLORETA":
        kernel = _eloreta_kernel(inv, eloreta_iter)
    else:
        kernel = (leads * reginv) @ utw
    sol = kernel @ data
    if method in ("dSPM", "sLORETA"):
        weight = reginv if method == "dSPM" else reginv * np.sqrt(1 + inv.sing**2 / inv.lambda2)
        nn = np.linalg.norm(leads * weight, axis=1)
        if inv.n_orient == 3:
            nn = np.repeat(np.sqrt((nn.reshape(-1, 3) ** 2).sum(1)), 3)
        sol = sol / nn[:, None]
    if inv.n_orient == 3:
        return sol.reshape(-1, 3, sol.shape[-1])
    return sol


def _eloreta_kernel(inv: InverseOperator, n_iter):
    """eLORETA (Pascual-Marqui 2011): weights W_k = (G_k' M G_k)^(1/2) with
    M = (G W^-1 G' + lambda2 I)^+, iterated to a fixed point."""
    g = inv.gain_whitened / inv.source_std  # whitened gain without the priors
    n_ch = g.shape[0]
    n_o = inv.n_orient
    n_src = g.shape[1] // n_o
    winv = np.tile(np.eye(n_o), (n_src, 1, 1))
    lam = inv.lambda2 * np.trace(g @ g.T) / n_ch
    for _ in range(n_iter):
        gwg = np.einsum(
            "csa,sab,dsb->cd", g.reshape(n_ch, n_src, n_o), winv, g.reshape(n_ch, n_src, n_o)
        )
        m = np.linalg.pinv(gwg + lam * np.eye(n_ch))
        blocks = g.reshape(n_ch, n_src, n_o)
        new = np.einsum("csa,cd,dsb->sab", blocks, m, blocks)
        vals, vecs = np.linalg.eigh(new)
        vals = np.maximum(vals, 1e-30)
        new_winv = np.einsum("sab,sb,scb->sac", vecs, 1 / np.sqrt(vals), vecs)
        if np.max(np.abs(new_winv - winv)) < 1e-6 * np.max(np.abs(winv)):
            winv = new_winv
            break
        winv = new_winv
    else:
        raise ConvergenceError(f"eLORETA weights did not converge in {n_iter} iterations")
    blocks = g.reshape(n_ch, n_src, n_o)
    gwg = np.einsum("csa,sab,dsb->cd", blocks, winv, blocks)
    m = np.linalg.pinv(gwg + lam * np.eye(n_ch))
    gk = blocks.transpose(1, 2, 0)  # (S, o, C)
    kernel = np.einsum("sab,sbc,cd->sad", winv, gk, m).reshape(n_src * n_o, n_ch)
    return kernel @ inv.whitener
