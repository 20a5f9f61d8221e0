"""B0 shimming: the scanner cancels the low-order part of the field over the brain.

Shim coils produce the solid spherical harmonics up to second order (1, x, y,
z, xy, xz, yz, x^2 - y^2, 2z^2 - x^2 - y^2); a scanner's automatic shim chooses
their currents to minimise the field's variance over a region (here by least
squares).  Up to second order these harmonics span the same space as the
monomials of degree <= 2 restricted to harmonic functions; the least-squares fit
uses that harmonic basis (Juchem & de Graaf 2017, Analytical Biochemistry 529:17).
"""

from __future__ import annotations

import numpy as np

from ..._core.errors import ParameterError

#: Shim orders of clinical scanners: 0 (frequency), 1 (linear gradients), 2 (five 2nd-order coils).
SHIM_ORDERS = (0, 1, 2)


def shim_basis(points, order: int = 2) -> np.ndarray:
    """Solid spherical harmonics up to ``order`` at ``points`` (n, 3) m -> (n, n_terms)."""
    if order not in SHIM_ORDERS:
        raise ParameterError("order", order, f"one of {SHIM_ORDERS}")
    p = np.asarray(points, dtype=float)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ParameterError("points", f"array of shape {p.shape}", "(n, 3) positions in m")
    x, y, z = (p / 0.1).T  # decimetres keep the columns of similar size
    cols = [np.ones_like(x)]
    if order >= 1:
        cols += [x, y, z]
    if order >= 2:
        cols += [x * y, x * z, y * z, x * x - y * y, 2 * z * z - x * x - y * y]
    return np.stack(cols, 1)


def shim(field, mask, affine, order: int = 2):
    """The field after the scanner's least-squares shim over ``mask``.

    Parameters
    ----------
    field : array (X, Y, Z)
        Off-resonance (Hz) or relative shift (ppm).
    mask : bool array (X, Y, Z)
        Voxels the shim is optimised over (the brain).
    affine : array (4, 4)
        Voxel -> mm.
    order : int
        Highest harmonic order of the shim coils.

    Returns
    -------
    shimmed : array (X, Y, Z)
        ``field`` minus the fitted shim field, everywhere.
    coefficients : array (n_terms,)
        Shim-field amplitudes in the basis of :func:`shim_basis`.
    """
    f = np.asarray(field, dtype=float)
    m = np.asarray(mask, dtype=bool)
    if m.shape != f.shape or f.ndim != 3:
        raise ParameterError("mask", f"array of shape {m.shape}", f"a 3D mask of shape {f.shape}")
    n_terms = shim_basis(np.zeros((1, 3)), order).shape[1]
    if m.sum() < n_terms:
        raise ParameterError("mask", f"{int(m.sum())} voxels", f">= {n_terms} voxels to shim over")
    aff = np.asarray(affine, dtype=float)
    idx = np.argwhere(m)
    coef, *_ = np.linalg.lstsq(
        shim_basis((idx @ aff[:3, :3].T + aff[:3, 3]) * 1e-3, order), f[m], rcond=None
    )
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in f.shape], indexing="ij"), -1)
    pts = (grid.reshape(-1, 3) @ aff[:3, :3].T + aff[:3, 3]) * 1e-3
    return f - (shim_basis(pts, order) @ coef).reshape(f.shape), coef
